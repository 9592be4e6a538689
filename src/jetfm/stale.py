"""Temporary files and directories of killed runs: named after their owner, removed when the owner is dead.

Every temporary output (`jetfm.atomic`, preprocessing's `.parts-*` / `.staging-*`) carries an owner tag
`<host>~<pid>` in its name. At the start of a stage's run, `remove_stale` deletes the leftovers next to that
stage's outputs whose owner is gone: same host and no such process, or another host and untouched for
`OTHER_HOST_AFTER_S` (a pid on another node cannot be checked). Untagged leftovers (written before tags
existed) count as stale. Files of live owners are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

OTHER_HOST_AFTER_S = 3600.0
_TAG = re.compile(r"~\d+(?=[.-]|$)")  # <host>~<pid>, host of any name


def owner_tag() -> str:
    """`<host>~<pid>` of this process, for temporary names."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    return f"{host}~{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """True if the temporary `path` belongs to no live process (see the module docstring)."""
    host = owner_tag().split("~")[0]
    mine = re.search(rf"(?:^|[.-]){re.escape(host)}~(\d+)(?=[.-]|$)", path.name)
    if mine is not None:
        pid = int(mine[1])
        return pid != os.getpid() and not _pid_alive(pid)
    if _TAG.search(path.name) is None:
        return True
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > OTHER_HOST_AFTER_S


def remove_stale(directory: str | Path, patterns: tuple[str, ...]) -> list[Path]:
    """Delete stale leftovers in `directory` matching the glob `patterns`; returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for pattern in patterns:
        for path in directory.glob(pattern):
            if not is_stale(path):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
    for path in removed:
        log.info("removed %s left by a killed run", path)
    return removed


def temp_patterns(final: str | Path) -> tuple[str, ...]:
    """Glob of the temporary siblings `jetfm.atomic.atomic_path(final)` creates."""
    return (f".{Path(final).name}.*.tmp",)


def prepare_output(final: str | Path) -> None:
    """Start of a job writing the file `final`: refuse a directory there, remove stale temporaries of it."""
    final = Path(final)
    refuse_directory(final)
    remove_stale(final.parent, temp_patterns(final))


def refuse_directory(final: Path) -> None:
    """A file output must not name an existing directory (found now, not at the rename after the work)."""
    if final.is_dir():
        example = f"{final / 'out'}{final.suffix}"
        raise ValueError(f"output {final} is a directory; expected a file path, e.g. {example}")
