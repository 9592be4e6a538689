"""Write jets to a ROOT file in the JetClass layout: TTree `tree`, exact branch names and dtypes.

uproot's `file[name] = {...}` writes an RNTuple; JetClass is a TTree, so we use `mktree` + `extend`. The
particle branches are written as one jagged record `part` (uproot names them `part_<field>`, exactly the
JetClass names) sharing the counter branch `npart`. Provenance is a JSON TObjString named `provenance`.
The file is written to a temporary sibling and renamed, so a failure never leaves a partial file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np
import uproot

from jetfm.atomic import atomic_path
from jetfm.jetclass import (
    AUX_BRANCHES,
    EVENT_ID_BRANCH,
    JET_BRANCHES,
    LABEL_BRANCHES,
    PARTICLE_BRANCHES,
    TREE_NAME,
    branch_dtypes,
)

PARTICLE_COUNTER = "npart"
FLAT_BRANCHES = LABEL_BRANCHES + JET_BRANCHES + AUX_BRANCHES
PROVENANCE_KEY = "provenance"


def _check(jets: Mapping[str, Any], extra: Mapping[str, np.ndarray]) -> int:
    missing = [b for b in (*PARTICLE_BRANCHES, *FLAT_BRANCHES, EVENT_ID_BRANCH) if b not in jets]
    if missing:
        raise ValueError(f"write_jetclass_root: missing branches {missing}")
    n = len(jets[EVENT_ID_BRANCH])
    bad = {b: len(jets[b]) for b in (*PARTICLE_BRANCHES, *FLAT_BRANCHES) if len(jets[b]) != n}
    bad.update({b: len(v) for b, v in extra.items() if len(v) != n})
    if bad:
        raise ValueError(f"write_jetclass_root: branch lengths differ from {n} jets: {bad}")
    return n


def write_jetclass_root(
    path: str | os.PathLike[str],
    jets: Mapping[str, Any],
    provenance: Mapping[str, Any],
    extra_branches: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write `jets` (JetClass branches + `event_id`) to `path` atomically.

    `jets` maps every JetClass branch to an array (awkward `n * var` for particle branches, numpy otherwise)
    and `event_id` to uint64 ids; values are cast to the JetClass dtypes. `extra_branches` adds flat numpy
    branches with their own dtype (re-simulation: `view` int16).
    """
    extra = dict(extra_branches or {})
    _check(jets, extra)
    dtypes = branch_dtypes()
    part = ak.zip(
        {b[len("part_") :]: ak.values_astype(jets[b], dtypes[b]) for b in PARTICLE_BRANCHES}, depth_limit=2
    )
    data: dict[str, Any] = {"part": part}
    data.update({b: np.asarray(jets[b]).astype(dtypes[b]) for b in FLAT_BRANCHES})
    data[EVENT_ID_BRANCH] = np.asarray(jets[EVENT_ID_BRANCH]).astype(np.uint64)
    data.update({b: np.asarray(v) for b, v in extra.items()})
    types: dict[str, Any] = {"part": part.type.content}
    types.update({b: v.dtype for b, v in data.items() if b != "part"})
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        tree = f.mktree(TREE_NAME, types, counter_name=lambda counted: PARTICLE_COUNTER)
        if len(data[EVENT_ID_BRANCH]):
            tree.extend(data)
        f[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str)


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance record stored in a simulation ROOT file."""
    with uproot.open(path) as f:
        return json.loads(str(f[PROVENANCE_KEY]))
