"""Generator-level records shared by simulation and re-simulation: final-state particles and truth objects.

Particle records (`PARTICLE_FIELDS`), one list per event (`n_events * var * record`, awkward):

    px, py, pz, energy   float64, GeV     four-momentum
    pid                  int32            PDG id
    charge               float32, e       electric charge
    vx, vy, vz           float64, mm      production vertex (Pythia's vProd; 0 for prompt particles)

Only final-state particles (Pythia status > 0, hadron level) are kept, neutrinos included (the detector
drops them). Displaced production vertices of b/c-hadron daughters give the detector its true d0/dz.

Truth objects (`TRUTH_FIELDS`), one list per event (`n_events * var * record`):

    pid, pt, eta, phi    the top/W/Z/H (last copy, i.e. at its decay), or a hard outgoing parton for QCD
    prod_pid, prod_eta, prod_phi   var: visible decay products at the decay (quarks, gluons, charged leptons;
                                   neutrinos left out); empty for QCD partons (no containment requirement)

`final_state_from_batch` reads a `Pythia.nextBatch` array (vectorised); `final_state_from_event` and
`truth_from_event` read one `pythia.event` (e.g. after `forceHadronLevel`) into the same layout, so
re-simulated events go through the same detector, clustering and writer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np
import pythia8mc

PARTICLE_FIELDS = ("px", "py", "pz", "energy", "pid", "charge", "vx", "vy", "vz")
TRUTH_FIELDS = ("pid", "pt", "eta", "phi", "prod_pid", "prod_eta", "prod_phi")

NEUTRINOS = (12, 14, 16)
CHARGED_LEPTONS = (11, 13, 15)


@dataclass(frozen=True)
class TruthSpec:
    """What a signal class's truth object is: resonance |pid| and its visible decay products."""

    resonance: int
    n_partons: int  # quarks or gluons among the visible decay products
    n_leptons: int  # charged leptons (e, mu, tau) among them


TRUTH_SPECS: Mapping[str, TruthSpec | None] = {
    "QCD": None,
    "Hbb": TruthSpec(25, 2, 0),
    "Hcc": TruthSpec(25, 2, 0),
    "Hgg": TruthSpec(25, 2, 0),
    "H4q": TruthSpec(25, 4, 0),
    "Hqql": TruthSpec(25, 2, 1),
    "Zqq": TruthSpec(23, 2, 0),
    "Wqq": TruthSpec(24, 2, 0),
    "Tbqq": TruthSpec(6, 3, 0),
    "Tbl": TruthSpec(6, 1, 1),
}
_RESONANCES = (6, 23, 24, 25)


@functools.cache
def _particle_data() -> pythia8mc.ParticleData:
    """Pythia's particle table (charges), from one uninitialised quiet instance kept for the process."""
    return pythia8mc.Pythia("", False).particleData


@functools.lru_cache(maxsize=4096)
def _charge(pid: int) -> float:
    return float(_particle_data().charge(int(pid)))


_DENSE = 100_000  # |pid| below this (all hadrons and leptons) use a dense lookup table
_charge_table = np.full(2 * _DENSE + 1, np.nan, dtype=np.float32)


def charges(pids: np.ndarray) -> np.ndarray:
    """Electric charge of each PDG id (float32), via Pythia's particle table, cached in a dense lookup."""
    pids = np.asarray(pids, dtype=np.int64)
    dense = np.abs(pids) < _DENSE
    idx = np.where(dense, pids + _DENSE, 0)
    out = _charge_table[idx]
    missing = dense & np.isnan(out)
    if missing.any():
        for p in np.unique(pids[missing]):
            _charge_table[p + _DENSE] = _charge(int(p))
        out = _charge_table[idx]
    if not dense.all():  # nuclei and exotic ids: per unique id
        for p in np.unique(pids[~dense]):
            out[pids == p] = _charge(int(p))
    return out


def _zip_particles(counts: np.ndarray, cols: Mapping[str, np.ndarray]) -> ak.Array:
    return ak.unflatten(ak.zip({k: cols[k] for k in PARTICLE_FIELDS}, depth_limit=1), counts)


def _flat_record(batch: ak.Array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts per event and flat numpy columns of the whole event record of a `nextBatch` result.

    Events that failed (None, with errorMode "none") become empty, so event indices stay aligned.
    """
    prt = ak.fill_none(batch.prt, [], axis=0)
    counts = ak.to_numpy(ak.num(prt, axis=1))
    flat = ak.flatten(prt, axis=1)
    p, v = flat.p, flat.vProd
    cols = {
        "id": ak.to_numpy(flat.id), "status": ak.to_numpy(flat.status), "mother1": ak.to_numpy(flat.mother1),
        "daughter1": ak.to_numpy(flat.daughter1), "daughter2": ak.to_numpy(flat.daughter2),
        "px": ak.to_numpy(p.px), "py": ak.to_numpy(p.py), "pz": ak.to_numpy(p.pz), "e": ak.to_numpy(p.e),
    }  # fmt: skip
    # vProd is None where Pythia stored no vertex (prompt particles): at the origin.
    for name, comp in (("vx", "px"), ("vy", "py"), ("vz", "pz")):
        cols[name] = ak.to_numpy(ak.fill_none(v[comp], 0.0))
    return counts, cols


def _final_state(counts: np.ndarray, cols: Mapping[str, np.ndarray]) -> ak.Array:
    final = cols["status"] > 0
    event = np.repeat(np.arange(len(counts)), counts)
    pid = cols["id"][final].astype(np.int32)
    out = {
        "px": cols["px"][final], "py": cols["py"][final], "pz": cols["pz"][final], "energy": cols["e"][final],
        "pid": pid, "charge": charges(pid),
        "vx": cols["vx"][final], "vy": cols["vy"][final], "vz": cols["vz"][final],
    }  # fmt: skip
    return _zip_particles(np.bincount(event[final], minlength=len(counts)), out)


def _truth(counts: np.ndarray, cols: Mapping[str, np.ndarray], cls: str) -> ak.Array:
    offsets = np.concatenate([[0], np.cumsum(counts)])
    names = ("id", "status", "mother1", "daughter1", "daughter2", "px", "py", "pz")
    per_event = []
    for k in range(len(counts)):
        if not counts[k]:
            per_event.append([])
            continue
        sl = slice(offsets[k], offsets[k + 1])
        per_event.append(truth_from_arrays(cls, *(cols[n][sl] for n in names)))
    return _truth_array(per_event)


def final_state_from_batch(batch: ak.Array) -> ak.Array:
    """Final-state particle records of every event of a `Pythia.nextBatch` result (no Python loop)."""
    return _final_state(*_flat_record(batch))


def truth_from_batch(batch: ak.Array, cls: str) -> ak.Array:
    """Truth objects of every event of a `Pythia.nextBatch` result (loops over events, not particles)."""
    return _truth(*_flat_record(batch), cls)


def read_batch(batch: ak.Array, cls: str) -> tuple[ak.Array, ak.Array]:
    """(final-state particles, truth objects) of a `nextBatch` result, reading the record once."""
    counts, cols = _flat_record(batch)
    return _final_state(counts, cols), _truth(counts, cols, cls)


def final_state_from_event(event: pythia8mc.Event) -> ak.Array:
    """Final-state particles of ONE `pythia.event` as a length-1 batch.

    Same layout as `final_state_from_batch`.

    A Python loop over the event record: for re-simulation helpers and tests, not the nominal hot path.
    `ak.concatenate` of several results gives a multi-event batch.
    """
    rows = [event[i] for i in range(event.size()) if event[i].isFinal()]
    cols = {
        "px": np.array([p.px() for p in rows], dtype=np.float64),
        "py": np.array([p.py() for p in rows], dtype=np.float64),
        "pz": np.array([p.pz() for p in rows], dtype=np.float64),
        "energy": np.array([p.e() for p in rows], dtype=np.float64),
        "pid": np.array([p.id() for p in rows], dtype=np.int32),
        "charge": np.array([p.charge() for p in rows], dtype=np.float32),
        "vx": np.array([p.xProd() for p in rows], dtype=np.float64),
        "vy": np.array([p.yProd() for p in rows], dtype=np.float64),
        "vz": np.array([p.zProd() for p in rows], dtype=np.float64),
    }
    return _zip_particles(np.array([len(rows)]), cols)


# --- truth objects --------------------------------------------------------------------------------------


def _kinematics(px: float, py: float, pz: float) -> tuple[float, float, float]:
    pt = float(np.hypot(px, py))
    eta = float(np.arcsinh(pz / pt)) if pt > 0 else float(np.sign(pz) * 1e3)
    return pt, eta, float(np.arctan2(py, px))


def _last_copy(i: int, pid: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> int:
    """Follow recoil copies and shower branchings (t -> t g) down to the copy of `i` that decays."""
    while True:
        same = [d for d in _daughters(i, d1, d2) if pid[d] == pid[i]]
        if len(same) != 1:
            return i
        i = same[0]


def _daughters(i: int, d1: np.ndarray, d2: np.ndarray) -> list[int]:
    """Pythia's daughter convention: a range d1..d2, one daughter (d2 == 0 or d2 == d1), or two (d2 < d1)."""
    a, b = int(d1[i]), int(d2[i])
    if a <= 0:
        return []
    if b == 0 or b == a:
        return [a]
    if b < a:
        return [a, b]
    return list(range(a, b + 1))


def _decay_products(i: int, pid: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> list[int]:
    """Visible products of a resonance decay, descending through W/Z/t (e.g. t -> b W -> b q q')."""
    out: list[int] = []
    for d in _daughters(_last_copy(i, pid, d1, d2), d1, d2):
        a = abs(int(pid[d]))
        if a in _RESONANCES:
            out += _decay_products(d, pid, d1, d2)
        elif a not in NEUTRINOS and a != 22:  # photons radiated in the decay are not decay products
            out.append(d)
    return out


def truth_from_arrays(
    cls: str,
    pid: np.ndarray,
    status: np.ndarray,
    mother1: np.ndarray,
    daughter1: np.ndarray,
    daughter2: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
) -> list[dict[str, Any]]:
    """Truth objects of one event from its full record (index 0 = system, as in Pythia); see module doc.

    A resonance counts only when its visible products are what the class needs (e.g. for Tbl the top with
    W -> l nu, not the hadronic one); QCD gives the outgoing partons of the hardest process (status -23).
    """
    spec = TRUTH_SPECS.get(cls, "unknown")
    if spec == "unknown":
        raise ValueError(f"unknown jet class {cls!r}")
    objects: list[dict[str, Any]] = []
    if spec is None:
        for i in np.flatnonzero((status == -23) & ((np.abs(pid) <= 5) | (pid == 21))):
            pt, eta, phi = _kinematics(px[i], py[i], pz[i])
            objects.append({"pid": int(pid[i]), "pt": pt, "eta": eta, "phi": phi,
                            "prod_pid": [], "prod_eta": [], "prod_phi": []})  # fmt: skip
        return objects
    assert isinstance(spec, TruthSpec)
    apid = np.abs(pid)
    first = np.flatnonzero((apid == spec.resonance) & (apid[mother1] != spec.resonance))
    for i in first:
        last = _last_copy(int(i), pid, daughter1, daughter2)
        prods = _decay_products(last, pid, daughter1, daughter2)
        ap = np.abs(pid[prods]) if prods else np.zeros(0, dtype=int)
        n_lep = int(np.isin(ap, CHARGED_LEPTONS).sum())
        n_part = int(((ap <= 5) | (ap == 21)).sum())
        if n_lep != spec.n_leptons or n_part != spec.n_partons or len(prods) != n_lep + n_part:
            continue
        pt, eta, phi = _kinematics(px[last], py[last], pz[last])
        kin = [_kinematics(px[d], py[d], pz[d]) for d in prods]
        objects.append({
            "pid": int(pid[last]), "pt": pt, "eta": eta, "phi": phi,
            "prod_pid": [int(pid[d]) for d in prods],
            "prod_eta": [k[1] for k in kin], "prod_phi": [k[2] for k in kin],
        })  # fmt: skip
    return objects


def _truth_array(per_event: list[list[dict[str, Any]]]) -> ak.Array:
    empty = {
        "pid": 0,
        "pt": 0.0,
        "eta": 0.0,
        "phi": 0.0,
        "prod_pid": [0],
        "prod_eta": [0.0],
        "prod_phi": [0.0],
    }
    # A typed template row keeps the layout (and dtypes) fixed even when every event is empty.
    return ak.Array([[empty], *per_event])[1:]


def truth_from_event(event: pythia8mc.Event, cls: str) -> ak.Array:
    """Truth objects of ONE `pythia.event` as a length-1 batch (same layout as `truth_from_batch`).

    Needs the parton-level history (resonances and their decays), which a re-hadronised event keeps.
    """
    n = event.size()
    rows = [event[i] for i in range(n)]
    objects = truth_from_arrays(
        cls,
        np.array([p.id() for p in rows], dtype=np.int64),
        np.array([p.status() for p in rows], dtype=np.int64),
        np.array([p.mother1() for p in rows], dtype=np.int64),
        np.array([p.daughter1() for p in rows], dtype=np.int64),
        np.array([p.daughter2() for p in rows], dtype=np.int64),
        np.array([p.px() for p in rows]),
        np.array([p.py() for p in rows]),
        np.array([p.pz() for p in rows]),
    )
    return _truth_array([objects])
