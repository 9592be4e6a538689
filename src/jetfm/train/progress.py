"""Plain progress lines for logs (Snakemake, Slurm): with tqdm's bar off, a line every `log_every` steps.

`step 40/200 (20%)  loss 1.2345  val 1.3012  812 jets/s  ETA 0:03:17`: enough to see from `tail -f` of
logs/train/<run>.log that a job is alive, learning, and when it will end.
"""

from __future__ import annotations

import datetime
import time


class ProgressLog:
    """Throughput and ETA between successive lines (excludes time before the first step of this process)."""

    def __init__(self, start_step: int, max_steps: int, start_jets: int) -> None:
        self.max_steps = max_steps
        self._step, self._jets, self._t = start_step, start_jets, time.perf_counter()

    def line(self, step: int, jets: int, loss: str, val_loss: str | None = None) -> str:
        now = time.perf_counter()
        elapsed = max(now - self._t, 1e-9)
        jets_per_s = (jets - self._jets) / elapsed
        s_per_step = elapsed / max(step - self._step, 1)
        self._step, self._jets, self._t = step, jets, now
        eta = datetime.timedelta(seconds=round(s_per_step * (self.max_steps - step)))
        val = f"  val {val_loss}" if val_loss else ""
        return (
            f"step {step}/{self.max_steps} ({100 * step // self.max_steps}%)  loss {loss}{val}  "
            f"{jets_per_s:.0f} jets/s  ETA {eta}"
        )
