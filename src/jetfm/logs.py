"""Send a job's stdout/stderr to its Snakemake log file, so cluster failures point at a readable log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def redirect_to_log(path: str | None) -> Iterator[None]:
    """Append stdout, stderr and `logging` output to `path` (no-op when path is None); an exception leaving
    the block is written there as one line `error: <type>: <first line of its message>` and re-raised."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)
        try:
            yield
        except Exception as exc:  # the reason as the log's last line: Snakemake shows this log for a failed
            # job, while the traceback goes to the job's stderr (the Slurm job log)
            first = next(iter(str(exc).splitlines()), "")
            print(f"error: {type(exc).__name__}: {first}", file=fh, flush=True)
            raise
        finally:
            root.removeHandler(handler)
