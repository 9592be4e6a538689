"""Up-front checks of input ROOT files: readable, a TTree `tree`, every JetClass branch with the right kind.

Cheap (metadata only, no baskets are decompressed), so a typo in a branch name or a corrupt file fails in
seconds with the file, branch and expectation named, instead of minutes later inside a Dask worker.
Files without `event_id` (the public JetClass release) get a deterministic id: see `derived_id_prefix`.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uproot

from jetfm.jetclass import (
    EVENT_ID_BRANCH,
    JET_BRANCHES,
    LABEL_BRANCHES,
    PARTICLE_FLOAT_BRANCHES,
    PARTICLE_INT_BRANCHES,
    TREE_NAME,
    VIEW_BRANCH,
)

# Stream value of derived ids (ids.py uses 0 nominal, 1 re-simulation): top 4 bits all set.
DERIVED_STREAM = 0xF
MAX_ENTRIES_DERIVED = 2**32
CHECK_THREADS = 8  # concurrent file checks (I/O bound)

# branch -> (jagged?, allowed numpy kinds, human-readable expectation)
_FLOAT, _INTLIKE, _NUMERIC = "f", "iub", "fiub"
EXPECTED: dict[str, tuple[bool, str, str]] = {
    **{b: (True, _FLOAT, "jagged float (float[] / std::vector<float>)") for b in PARTICLE_FLOAT_BRANCHES},
    **{b: (True, _INTLIKE, "jagged integer or bool (int32_t[])") for b in PARTICLE_INT_BRANCHES},
    **{b: (False, _NUMERIC, "one number or bool per jet") for b in LABEL_BRANCHES},
    **{b: (False, _NUMERIC, "one number per jet") for b in JET_BRANCHES},
}
OPTIONAL: dict[str, tuple[bool, str, str]] = {
    EVENT_ID_BRANCH: (False, "iu", "one 64-bit integer per jet (uint64)"),
    VIEW_BRANCH: (False, "iu", "one integer per jet (int16)"),
}


class InputFileError(ValueError):
    """A malformed input file: names the file, the branch (if any) and what was expected."""

    def __init__(self, path: str, problem: str, branch: str | None = None, expected: str | None = None):
        self.path, self.problem, self.branch, self.expected = path, problem, branch, expected
        where = f"{path}" + (f", branch {branch!r}" if branch else "")
        super().__init__(f"{where}: {problem}" + (f" (expected {expected})" if expected else ""))


@dataclass(frozen=True)
class InputFile:
    """What the processor needs to know about one validated file."""

    path: str  # absolute
    n_entries: int
    has_event_id: bool
    has_view: bool
    id_prefix: int  # derived-id prefix (used only when has_event_id is False)


def derived_id_prefix(path: str) -> int:
    """High 32 bits of derived event ids: stream 0xF + 28 bits of BLAKE2b(file *basename*).

    event_id = prefix << 32 | entry. The basename (not the full path) keeps ids, and so splits, stable
    when files move between disks; the public JetClass file names are unique across its train/val/test
    folders. Collisions between files are checked and reported.
    """
    digest = hashlib.blake2b(os.path.basename(path).encode(), digest_size=8).digest()
    return (DERIVED_STREAM << 28) | (int.from_bytes(digest, "big") & 0x0FFFFFFF)


def _branch_kind(branch: uproot.TBranch) -> tuple[bool, np.dtype] | None:
    interp = branch.interpretation
    if isinstance(interp, uproot.interpretation.jagged.AsJagged):
        content = interp.content
        if isinstance(content, uproot.interpretation.numerical.AsDtype):
            return True, np.dtype(content.to_dtype)
        return None
    if isinstance(interp, uproot.interpretation.numerical.AsDtype):
        dt = np.dtype(interp.to_dtype)
        return (False, dt) if dt.shape == () else None
    return None


def _check_branch(path: str, tree: uproot.TTree, name: str, spec: tuple[bool, str, str]) -> None:
    jagged, kinds, expected = spec
    kind = _branch_kind(tree[name])
    found = f"found {tree[name].typename!r}"
    if kind is None or kind[0] != jagged or kind[1].kind not in kinds:
        raise InputFileError(path, f"branch has the wrong type: {found}", name, expected)


def inspect_file(path: str | os.PathLike[str]) -> InputFile:
    """Validate one file's readability and schema; raise InputFileError naming what is wrong."""
    path = str(Path(path).resolve())
    if not os.path.isfile(path):
        raise InputFileError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise InputFileError(path, "file is empty (0 bytes)", expected="a ROOT file")
    try:
        with uproot.open(path) as f:
            if TREE_NAME not in f:
                raise InputFileError(
                    path, f"no TTree {TREE_NAME!r}; keys are {f.keys()}", expected="JetClass layout"
                )
            tree = f[TREE_NAME]
            if not isinstance(tree, uproot.TTree):
                raise InputFileError(path, f"{TREE_NAME!r} is a {type(tree).__name__}", expected="a TTree")
            n = int(tree.num_entries)
            names = set(tree.keys())
            missing = [b for b in EXPECTED if b not in names]
            if missing:
                raise InputFileError(
                    path, f"missing branch(es) {', '.join(missing)}", missing[0], EXPECTED[missing[0]][2]
                )
            for name, spec in EXPECTED.items():
                _check_branch(path, tree, name, spec)
            for name, spec in OPTIONAL.items():
                if name in names:
                    _check_branch(path, tree, name, spec)
            if (
                EVENT_ID_BRANCH in names
                and np.dtype(tree[EVENT_ID_BRANCH].interpretation.to_dtype).itemsize != 8
            ):
                raise InputFileError(
                    path, "event_id is not 64-bit", EVENT_ID_BRANCH, OPTIONAL[EVENT_ID_BRANCH][2]
                )
    except InputFileError:
        raise
    except Exception as exc:  # uproot raises many types for truncated/corrupt files
        raise InputFileError(path, f"cannot be read as a ROOT file: {type(exc).__name__}: {exc}") from exc
    if n == 0:
        raise InputFileError(path, f"TTree {TREE_NAME!r} has no entries", expected="at least one jet")
    has_id, has_view = EVENT_ID_BRANCH in names, VIEW_BRANCH in names
    if has_view and not has_id:
        raise InputFileError(
            path, "has a view branch but no event_id", EVENT_ID_BRANCH, "views need event ids"
        )
    if not has_id and n >= MAX_ENTRIES_DERIVED:
        raise InputFileError(path, f"{n} entries is too many for derived event ids", expected="< 2**32")
    return InputFile(path, n, has_id, has_view, derived_id_prefix(path))


def _inspect_or_error(path: str) -> InputFile | InputFileError:
    try:
        return inspect_file(path)
    except InputFileError as exc:
        return exc


def validate_inputs(paths: list[str], skip_bad_files: bool) -> tuple[list[InputFile], list[dict[str, str]]]:
    """Inspect every file; return (good files, skipped [{file, error}]); raise on the first bad file
    unless skip_bad_files. Duplicate paths and derived-id collisions are always errors."""
    if not paths:
        raise ValueError("preprocess: no input files given")
    resolved = [str(Path(p).resolve()) for p in paths]
    dups = sorted(p for p, n in Counter(resolved).items() if n > 1)
    if dups:
        raise ValueError(f"preprocess: input files listed more than once (jets would be duplicated): {dups}")
    good: list[InputFile] = []
    bad: list[dict[str, str]] = []
    # Metadata reads wait on the filesystem (~30 ms a file on a shared one): threads overlap them.
    with ThreadPoolExecutor(max_workers=min(CHECK_THREADS, len(resolved))) as pool:
        results = list(pool.map(_inspect_or_error, resolved))
    for p, result in zip(resolved, results, strict=True):
        if isinstance(result, InputFile):
            good.append(result)
        elif not skip_bad_files:
            raise result
        else:
            bad.append({"file": p, "error": str(result)})
    prefixes: dict[int, str] = {}
    for f in good:
        if not f.has_event_id:
            other = prefixes.setdefault(f.id_prefix, f.path)
            if other != f.path:
                raise ValueError(
                    f"preprocess: derived event-id prefixes of {other} and {f.path} collide; rename one file "
                    "or add an event_id branch"
                )
    return good, bad
