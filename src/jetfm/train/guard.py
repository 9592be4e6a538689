"""What surrounds one training run: the run directory's lock, stale temporaries, stop signals.

A decorator, so the loop stays one flat function: `@guarded_run` on `train(..., out_dir, ...)` takes the lock
(rank 0; others share rank 0's directory), removes what killed runs left in the directory (the lock proves
nobody else writes there), and records SIGTERM/SIGUSR1 for the loop to act on at the next step boundary.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jetfm.stale import remove_stale
from jetfm.train import ddp
from jetfm.train.lock import lock_run_directory
from jetfm.train.resume import RESUME_DIR
from jetfm.train.signals import stop_on_signals

F = TypeVar("F", bound=Callable[..., Any])


def guarded_run(train_fn: F) -> F:
    """Wrap a training function taking `out_dir` with the lock, the cleanup and the signal handlers."""
    signature = inspect.signature(train_fn)

    @functools.wraps(train_fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = Path(signature.bind(*args, **kwargs).arguments["out_dir"])
        with contextlib.ExitStack() as stack:
            if ddp.env_from_environ().rank == 0:
                stack.enter_context(lock_run_directory(out))
                remove_stale(out, (".*.tmp", f"{RESUME_DIR}/.*.tmp"))
            stack.enter_context(stop_on_signals())
            return train_fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
