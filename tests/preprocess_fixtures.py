"""Small ROOT files in the JetClass layout for preprocessing tests and the benchmark.

Particles are physically consistent: (px, py, pz, E) from (pT, eta, phi, mass), the jet four-vector is
their sum, and part_deta = sign(eta_jet) * (eta - eta_jet), part_dphi = phi - phi_jet wrapped to (-pi, pi].
Written with `uproot.recreate` + `mktree` + `extend` (a TTree; `file["tree"] = ...` would write an RNTuple).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from jetfm import CLASSES
from jetfm.ids import NOMINAL_STREAM, RESIM_STREAM, make_event_ids
from jetfm.jetclass import (
    EVENT_ID_BRANCH,
    JET_BRANCHES,
    LABEL_DTYPES,
    PARTICLE_BRANCHES,
    PARTICLE_FLOAT_BRANCHES,
    PARTICLE_INT_BRANCHES,
    TREE_NAME,
    VIEW_BRANCH,
)

PION_MASS = 0.13957


def make_jets(
    cls: str,
    n_jets: int,
    seed: int,
    *,
    min_particles: int = 5,
    max_particles: int = 80,
    unsorted: bool = False,
) -> dict[str, np.ndarray | ak.Array]:
    """JetClass branches (awkward for particles, numpy for the rest) for `n_jets` jets of class `cls`."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(min_particles, max_particles + 1, size=n_jets)
    n = int(counts.sum())
    jet_of = np.repeat(np.arange(n_jets), counts)
    axis_eta = rng.uniform(-2.0, 2.0, n_jets)
    axis_phi = rng.uniform(-np.pi, np.pi, n_jets)
    target_pt = rng.uniform(500.0, 1000.0, n_jets)
    # pT fractions: exponential-ish spectrum, normalised per jet.
    w = rng.exponential(1.0, n) ** 2 + 1e-3
    frac = w / np.bincount(jet_of, weights=w, minlength=n_jets)[jet_of]
    pt = frac * target_pt[jet_of]
    eta = axis_eta[jet_of] + rng.normal(0, 0.15, n)
    phi = axis_phi[jet_of] + rng.normal(0, 0.15, n)
    kind = rng.choice(5, size=n, p=[0.55, 0.1, 0.3, 0.03, 0.02])  # ch.had, neu.had, photon, e, mu
    charged = (kind == 0) | (kind == 3) | (kind == 4)
    charge = np.where(charged, rng.choice([-1.0, 1.0], size=n), 0.0)
    mass = np.where(kind == 0, PION_MASS, np.where(kind == 1, 0.4976, np.where(kind == 4, 0.10566, 0.0)))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    # Jet four-vector = sum of its particles; deta/dphi relative to that axis.
    jpx, jpy, jpz, je = (np.bincount(jet_of, weights=v, minlength=n_jets) for v in (px, py, pz, energy))
    jpt = np.hypot(jpx, jpy)
    jeta = np.arcsinh(jpz / jpt)
    jphi = np.arctan2(jpy, jpx)
    deta = np.sign(jeta)[jet_of] * (eta - jeta[jet_of])
    dphi = (phi - jphi[jet_of] + np.pi) % (2 * np.pi) - np.pi
    d0 = np.where(charged, rng.normal(0, 0.05, n), 0.0)
    dz = np.where(charged, rng.normal(0, 0.08, n), 0.0)
    d0err = np.where(charged, rng.uniform(0.005, 1.5, n), 0.0)
    dzerr = np.where(charged, rng.uniform(0.01, 1.5, n), 0.0)
    flat = {
        "part_px": px, "part_py": py, "part_pz": pz, "part_energy": energy, "part_deta": deta,
        "part_dphi": dphi, "part_d0val": d0, "part_d0err": d0err, "part_dzval": dz, "part_dzerr": dzerr,
        "part_charge": charge,
        "part_isChargedHadron": kind == 0, "part_isNeutralHadron": kind == 1, "part_isPhoton": kind == 2,
        "part_isElectron": kind == 3, "part_isMuon": kind == 4,
    }  # fmt: skip
    order = np.lexsort((-pt, jet_of))  # JetClass is pT-sorted within each jet
    if unsorted:
        order = np.lexsort((rng.random(n), jet_of))
    out: dict[str, np.ndarray | ak.Array] = {}
    for b in PARTICLE_FLOAT_BRANCHES:
        out[b] = ak.unflatten(flat[b][order].astype(np.float32), counts)
    for b in PARTICLE_INT_BRANCHES:
        out[b] = ak.unflatten(flat[b][order].astype(np.int32), counts)
    tau1 = rng.uniform(0.1, 0.5, n_jets)
    taus = np.cumprod(np.stack([tau1] + [rng.uniform(0.3, 1.0, n_jets) for _ in range(3)]), axis=0)
    jet = {
        "jet_pt": jpt, "jet_eta": jeta, "jet_phi": jphi, "jet_energy": je,
        "jet_nparticles": counts.astype(np.float64), "jet_sdmass": rng.uniform(10, 250, n_jets),
        "jet_tau1": taus[0], "jet_tau2": taus[1], "jet_tau3": taus[2], "jet_tau4": taus[3],
    }  # fmt: skip
    for b in JET_BRANCHES:
        out[b] = jet[b].astype(np.float32)
    for c in CLASSES:
        out[f"label_{c}"] = np.full(n_jets, c == cls).astype(LABEL_DTYPES[f"label_{c}"])
    return out


def write_tree(path: str | Path, branches: dict[str, np.ndarray | ak.Array], step: int = 0) -> Path:
    """Write branches as a TTree; jagged particle branches share one counter branch `npart`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = {b[len("part_") :]: branches[b] for b in PARTICLE_BRANCHES if b in branches}
    flat = {b: v for b, v in branches.items() if not b.startswith("part_")}
    data: dict[str, object] = dict(flat)
    types: dict[str, object] = {
        b: v.type if isinstance(v, ak.Array) else np.asarray(v).dtype for b, v in flat.items()
    }
    if part:
        data["part"] = ak.zip(part)
        types["part"] = data["part"].type
    n = len(next(iter(branches.values())))
    step = step or max(n, 1)
    with uproot.recreate(path) as f:
        tree = f.mktree(TREE_NAME, types)
        for start in range(0, n, step):
            tree.extend({k: v[start : start + step] for k, v in data.items()})
    return path


def write_jetclass_file(
    path: str | Path,
    cls: str,
    n_jets: int,
    seed: int,
    *,
    shard: int = 0,
    with_event_id: bool = True,
    views: int = 0,
    **kwargs: object,
) -> Path:
    """A nominal file (views=0) or a views file with `views` views of n_jets // views events."""
    branches = make_jets(cls, n_jets, seed, **kwargs)  # type: ignore[arg-type]
    if views:
        n_events = n_jets // views
        idx = np.repeat(np.arange(n_events), views)
        branches = {k: v[: len(idx)] for k, v in branches.items()}
        branches[EVENT_ID_BRANCH] = make_event_ids(RESIM_STREAM, CLASSES.index(cls), shard, idx)
        branches[VIEW_BRANCH] = np.tile(np.arange(views), n_events).astype(np.int16)
    elif with_event_id:
        branches[EVENT_ID_BRANCH] = make_event_ids(
            NOMINAL_STREAM, CLASSES.index(cls), shard, np.arange(n_jets)
        )
    return write_tree(path, branches)
