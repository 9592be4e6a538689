"""Atomic outputs: write to a temporary sibling, rename on success, remove on failure.

A crash or exception mid-write never leaves a half-written file at the final path.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jetfm.stale import owner_tag, refuse_directory


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `final` for the writer to create; on clean exit rename it onto `final`.

    The name is reserved with mkstemp and the empty file removed again: a writer that truncated it instead
    would make ext4 flush the file to disk on close (auto_da_alloc), a wait on every part, shard and
    checkpoint written.
    """
    final = Path(final)
    refuse_directory(final)  # else the rename at the very end of a long job would fail
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.{owner_tag()}.",  # the owner tag lets the next run remove it if we die
        suffix=suffix if suffix is not None else final.suffix + ".tmp",
        dir=final.parent,
    )
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (sorted keys, so reruns give byte-identical files)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
