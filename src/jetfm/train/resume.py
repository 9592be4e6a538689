"""Where a run resumes from, and a copy of every checkpoint that survives Snakemake's output cleanup.

Snakemake deletes the declared outputs of a job that failed (and of one it is about to rerun), and
`checkpoint.pt` is one. So each checkpoint is also hard-linked (no extra disk: the same inode) to
`<run dir>/.resume/checkpoint.pt`, which is no declared output; a rerun finds it there when `checkpoint.pt` is
gone. Modes: `resume=True` (`jetfm train --resume`) must continue and refuses a checkpoint of another config;
`resume="auto"` (the Snakemake rule) continues the `.resume` copy if it has the same config, else starts from
scratch. The copy is removed when a run completes, so a rerun after success (a changed config, `--forcerun`
after a code change) retrains instead of resuming a finished run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from jetfm.stale import owner_tag
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig

RESUME_DIR = ".resume"
ResumeMode = bool | Literal["auto"]


def resume_copy(checkpoint: Path) -> Path:
    return checkpoint.parent / RESUME_DIR / checkpoint.name


def keep_for_resume(checkpoint: Path) -> None:
    """Point `.resume/<name>` at the checkpoint just written (hard link, else a copy), atomically."""
    target = resume_copy(checkpoint)
    target.parent.mkdir(exist_ok=True)
    tmp = target.with_name(f".{target.name}.{owner_tag()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(checkpoint, tmp)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, target)


def discard_resume_copy(checkpoint: Path) -> None:
    """The run finished: drop the `.resume` link (checkpoint.pt keeps the data, the same inode)."""
    with contextlib.suppress(FileNotFoundError):
        resume_copy(checkpoint).unlink()


def resume_checkpoint(
    checkpoint: Path,
    cfg: TrainConfig,
    world_size: int,
    mode: ResumeMode,
    verbose: bool = True,
    objective: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint to continue from (validated against cfg and the objective's settings), or None."""
    if not mode:
        return None
    copy = resume_copy(checkpoint)
    # auto: only the .resume copy, which exists only while a run is unfinished (removed when it completes)
    source = copy if mode == "auto" or not checkpoint.exists() else checkpoint
    if not source.exists():
        if verbose:
            print(f"resume: no unfinished checkpoint at {source}, starting from scratch", flush=True)
        return None
    if mode != "auto":
        ckpt = load_checkpoint(source, cfg, world_size, objective)
    else:
        try:
            ckpt = load_checkpoint(source, cfg, world_size, objective)
        except ValueError as exc:
            if verbose:
                print(f"resume: not continuing {source} ({str(exc).splitlines()[0]}); starting from scratch")
            return None
    if verbose:
        print(f"resume: continuing {source} at step {ckpt['step']}", flush=True)
    return ckpt
