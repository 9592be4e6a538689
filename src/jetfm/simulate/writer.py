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
from jetfm.simulate.jets import empty_jets

PARTICLE_COUNTER = "npart"
FLAT_BRANCHES = LABEL_BRANCHES + JET_BRANCHES + AUX_BRANCHES
PROVENANCE_KEY = "provenance"


def _check(jets: Mapping[str, Any], extra: Mapping[str, np.ndarray]) -> int:
    """Every JetClass branch and `event_id` present, all of one length; returns the number of jets."""
    missing = [b for b in (*PARTICLE_BRANCHES, *FLAT_BRANCHES, EVENT_ID_BRANCH) if b not in jets]
    if missing:
        raise ValueError(f"write_jetclass_root: missing branches {missing}")
    n = len(jets[EVENT_ID_BRANCH])
    bad = {b: len(jets[b]) for b in (*PARTICLE_BRANCHES, *FLAT_BRANCHES) if len(jets[b]) != n}
    bad.update({b: len(v) for b, v in extra.items() if len(v) != n})
    if bad:
        raise ValueError(f"write_jetclass_root: branch lengths differ from {n} jets: {bad}")
    return n


def _tree_data(jets: Mapping[str, Any], extra: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Branch arrays as uproot's `extend` wants them: one `part` record, flat branches in JetClass dtypes."""
    dtypes = branch_dtypes()
    part = ak.zip(
        {b[len("part_") :]: ak.values_astype(jets[b], dtypes[b]) for b in PARTICLE_BRANCHES}, depth_limit=2
    )
    data: dict[str, Any] = {"part": part}
    data.update({b: np.asarray(jets[b]).astype(dtypes[b]) for b in FLAT_BRANCHES})
    data[EVENT_ID_BRANCH] = np.asarray(jets[EVENT_ID_BRANCH]).astype(np.uint64)
    data.update({b: np.asarray(v) for b, v in extra.items()})
    return data


class JetClassWriter:
    """Stream jets into one JetClass ROOT file, atomically; memory bounded by `flush_every` jets.

    Use as a context manager: `append` jet tables (same layout as `write_jetclass_root` takes), set
    `provenance`, leave the block. Buffered jets go out as one basket per branch every `flush_every` jets
    (baskets of ~10k jets read efficiently). The file appears at `path` only when the block exits cleanly;
    on an exception the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 10_000) -> None:
        self.path = path
        self.flush_every = flush_every
        self.provenance: Mapping[str, Any] = {}
        self.n_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffered = 0
        self._tree: Any = None

    def __enter__(self) -> JetClassWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = uproot.recreate(tmp)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    @property
    def n_jets(self) -> int:
        """Jets appended so far (written or still buffered)."""
        return self.n_written + self._buffered

    def append(self, jets: Mapping[str, Any], extra_branches: Mapping[str, np.ndarray] | None = None) -> None:
        """Queue a table of jets (checked now, written at the next flush)."""
        extra = dict(extra_branches or {})
        n = _check(jets, extra)
        self._buffer.append(_tree_data(jets, extra))
        self._buffered += n
        if self._buffered >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        first = self._buffer[0]
        data = {
            k: ak.concatenate([d[k] for d in self._buffer]) if k == "part" else
            np.concatenate([d[k] for d in self._buffer])
            for k in first
        }  # fmt: skip
        if self._tree is None:
            types: dict[str, Any] = {"part": data["part"].type.content}
            types.update({b: v.dtype for b, v in data.items() if b != "part"})
            self._tree = self._file.mktree(TREE_NAME, types, counter_name=lambda counted: PARTICLE_COUNTER)
        if len(data[EVENT_ID_BRANCH]):
            self._tree.extend(data)
        self.n_written += len(data[EVENT_ID_BRANCH])
        self._buffer, self._buffered = [], 0

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                if self._tree is None and not self._buffer:  # no jets at all: an empty, typed tree
                    self.append({**empty_jets(), EVENT_ID_BRANCH: np.zeros(0, np.uint64)})
                self.flush()
                self._file[PROVENANCE_KEY] = json.dumps(self.provenance, sort_keys=True, default=str)
        except BaseException as err:
            self._file.close()
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)


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
    with JetClassWriter(path, flush_every=max(1, len(jets.get(EVENT_ID_BRANCH, ())))) as writer:
        writer.append(jets, extra_branches)
        writer.provenance = provenance


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance record stored in a simulation ROOT file."""
    with uproot.open(path) as f:
        return json.loads(str(f[PROVENANCE_KEY]))
