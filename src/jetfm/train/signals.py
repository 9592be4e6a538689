"""Stop requests from the batch system: SIGTERM / SIGUSR1 -> checkpoint at the next step boundary, then exit.

Slurm sends SIGTERM at walltime and on preemption (then SIGKILL after KillWait / GraceTime), and a job can ask
for an earlier warning with `sbatch --signal=TERM@<seconds>` (or USR1). The handler only records the signal;
the training loop looks at it between optimiser steps, writes a checkpoint and raises `StopRequested`, which
the CLI turns into exit status `RETRY_EXIT_CODE`: a failed job that Snakemake's `retries` resubmits and that
then resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
RETRY_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"

_received: list[str] = []


class StopRequested(Exception):
    """Training stopped on a signal after writing a checkpoint; rerunning with --resume continues it."""

    exit_code = RETRY_EXIT_CODE  # jetfm.cli exits with it

    def __init__(self, signal_name: str, step: int, checkpoint: str) -> None:
        super().__init__(
            f"received {signal_name}: stopped at step {step} after writing {checkpoint}; "
            "run again (Snakemake: its retry) to resume from there"
        )
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


def requested() -> str | None:
    """Name of the first stop signal received while `stop_on_signals` is active, else None."""
    return _received[0] if _received else None


def _record(signum: int, frame: object) -> None:
    _received.append(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Record SIGTERM/SIGUSR1 instead of dying; restore the previous handlers on exit.

    Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _record) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()


@contextlib.contextmanager
def exit_for_retry() -> Iterator[None]:
    """For Snakemake scripts of training rules: a `StopRequested` becomes exit status RETRY_EXIT_CODE, said
    in the rule's log and in the job's stderr (the Slurm job log: Snakemake empties the rule log on retry)."""
    import sys

    try:
        yield
    except StopRequested as stop:
        for stream in (sys.stdout, sys.__stderr__):
            print(f"training: {stop}", file=stream, flush=True)
        sys.exit(stop.exit_code)
