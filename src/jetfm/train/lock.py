"""One training per run directory: an exclusive `flock` on `<run dir>/.lock`, held while the run writes.

The kernel drops the lock when the process dies (even on SIGKILL), so a killed run never leaves a stale lock,
and a second training into the same directory fails at once, naming the owner, instead of the last writer
silently winning. The lock also proves that temporary files left in the directory belong to no live run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirectoryLocked(ValueError):
    """Another live process is training into this run directory."""


@contextlib.contextmanager
def lock_run_directory(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock for the block; raise RunDirectoryLocked if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunDirectoryLocked(
                f"run directory {run_dir} is in use by {owner} (lock {path}); wait for that training to end "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock
