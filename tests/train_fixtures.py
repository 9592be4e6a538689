"""Small HDF5 shards in the preprocessing layout (shared/design.md) with learnable class structure.

Each class gets its own multiplicity, prong structure (number of hard sub-clusters) and angular width, so a
model that learns anything lowers the loss; the 4-vectors are consistent with the particle features.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from jetfm import CLASSES

FEATURES = (
    "part_pt_log", "part_e_log", "part_logptrel", "part_logerel", "part_deltaR", "part_charge",
    "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
    "part_d0", "part_d0err", "part_dz", "part_dzerr", "part_deta", "part_dphi",
)  # fmt: skip
JET_FEATURES = (
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "jet_energy",
    "jet_sdmass",
    "jet_nparticles",
    "jet_tau21",
    "jet_tau32",
)


def make_jets(
    n: int, rng: np.random.Generator, max_particles: int = 64, classes: tuple[int, ...] = (0, 1, 8)
):
    """n jets of the given JetClass labels: dict of arrays in the shard layout (view = -1)."""
    label = rng.choice(np.asarray(classes), size=n).astype(np.int64)
    feats = np.zeros((n, max_particles, len(FEATURES)), np.float32)
    vecs = np.zeros((n, max_particles, 4), np.float32)
    mask = np.zeros((n, max_particles), bool)
    jets = np.zeros((n, len(JET_FEATURES)), np.float32)
    for i, c in enumerate(label):
        prongs = 1 + int(c > 0) + int(c >= 8)  # QCD 1, bosons 2, top 3
        npart = int(np.clip(rng.poisson(12 + 5 * prongs), 3, max_particles))
        jet_pt, jet_eta, jet_phi = rng.uniform(500, 1000), rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        centres = rng.normal(0, 0.25, size=(prongs, 2)) if prongs > 1 else np.zeros((1, 2))
        which = rng.integers(0, prongs, npart)
        deta = centres[which, 0] + rng.normal(0, 0.05, npart)
        dphi = centres[which, 1] + rng.normal(0, 0.05, npart)
        frac = rng.dirichlet(np.full(npart, 0.6))
        pt = np.sort(frac * jet_pt)[::-1]
        eta, phi = jet_eta + deta, jet_phi + dphi
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px**2 + py**2 + pz**2)
        charge = rng.choice([-1, 0, 1], npart)
        dr = np.hypot(deta, dphi)
        f = np.zeros((npart, len(FEATURES)))
        f[:, 0] = (np.log(pt) - 1.7) * 0.7
        f[:, 1] = (np.log(e) - 2.0) * 0.7
        f[:, 2] = (np.log(pt / jet_pt) + 4.7) * 0.7
        f[:, 3] = (np.log(e / e.sum()) + 4.7) * 0.7
        f[:, 4] = (dr - 0.2) * 4.0
        f[:, 5] = charge
        f[np.arange(npart), 6 + rng.integers(0, 5, npart)] = 1
        f[:, 15], f[:, 16] = deta, dphi
        feats[i, :npart] = np.clip(f, -5, 5)
        vecs[i, :npart] = np.stack([px, py, pz, e], 1)
        mask[i, :npart] = True
        p4 = vecs[i, :npart].astype(np.float64).sum(0)
        mass = np.sqrt(max(p4[3] ** 2 - (p4[:3] ** 2).sum(), 0))
        jets[i] = [jet_pt, jet_eta, jet_phi, p4[3], mass, npart, rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.9)]
    return {
        "part_features": feats, "part_vectors": vecs, "part_mask": mask, "jet_features": jets, "label": label,
        "event_id": np.arange(n, dtype=np.uint64), "view": np.full(n, -1, np.int16),
    }  # fmt: skip


def write_shard(
    path: str | Path, arrays: dict[str, np.ndarray], chunk: int = 64, compression: str | None = None
) -> Path:
    """Write one shard with datasets chunked along N and the attrs of the layout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            opts = {"compression": compression, "compression_opts": 1, "shuffle": True} if compression else {}
            f.create_dataset(k, data=v, chunks=(min(chunk, len(v)), *v.shape[1:]), **opts)
        f.attrs["feature_names"] = json.dumps({"particle": list(FEATURES), "jet": list(JET_FEATURES)})
        f.attrs["classes"] = json.dumps(list(CLASSES))
        f.attrs["provenance"] = json.dumps({"stage": "test-fixture"})
    return path


def make_dataset(
    root: str | Path,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 256,
    seed: int = 0,
    shards: int = 1,
    max_particles: int = 64,
    chunk: int = 64,
) -> dict[str, list[str]]:
    """`root/{split}/{i:04d}.h5` for train/val/test; returns the file lists per split."""
    rng = np.random.default_rng(seed)
    files: dict[str, list[str]] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        files[split] = []
        for s in range(shards):
            arrays = make_jets(n // shards, rng, max_particles)
            files[split].append(str(write_shard(Path(root) / split / f"{s:04d}.h5", arrays, chunk)))
    return files


def make_views(arrays: dict[str, np.ndarray], views: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`views` re-simulation-like copies of every jet (one event each): the particle features jittered and the
    softest particle dropped at random, as a rerun shower would shift them; view = 0..views-1."""
    n = len(arrays["label"])
    out = {k: np.repeat(v, views, axis=0) for k, v in arrays.items()}
    noise = rng.normal(0, 0.1, out["part_features"].shape).astype(np.float32)
    out["part_features"] = np.where(out["part_mask"][..., None], out["part_features"] + noise, 0).astype(
        np.float32
    )
    n_real = out["part_mask"].sum(1)
    drop = (rng.random(len(n_real)) < 0.5) & (n_real > 3)
    out["part_mask"][np.flatnonzero(drop), n_real[drop] - 1] = False
    out["part_features"][~out["part_mask"]] = 0
    out["part_vectors"][~out["part_mask"]] = 0
    out["view"] = np.tile(np.arange(views, dtype=np.int16), n)
    return out


def make_split_dataset(
    root: str | Path,
    n_events: int = 600,
    n_view_events: int = 120,
    views: int = 4,
    seed: int = 0,
    max_particles: int = 48,
    fractions: dict[str, float] | None = None,
) -> dict[str, list[str]]:
    """Nominal jets and re-simulated views with unique event ids, assigned to train/val/test by the event hash
    (`jetfm.splits`) as preprocessing does: the layout pretraining reads. Returns the file lists per split."""
    from jetfm.splits import SPLITS, assign_splits

    rng = np.random.default_rng(seed)
    nominal = make_jets(n_events, rng, max_particles)
    nominal["event_id"] = np.arange(n_events, dtype=np.uint64) + np.uint64(10_000)
    resim = make_views(make_jets(n_view_events, rng, max_particles), views, rng)
    resim["event_id"] = np.repeat(np.arange(n_view_events, dtype=np.uint64) + np.uint64(900_000), views)
    rows = {k: np.concatenate([nominal[k], resim[k]]) for k in nominal}
    split = assign_splits(rows["event_id"], fractions or {"train": 0.6, "val": 0.2, "test": 0.2})
    files = {}
    for i, name in enumerate(SPLITS):
        sel = split == i
        files[name] = [str(write_shard(Path(root) / name / "0000.h5", {k: v[sel] for k, v in rows.items()}))]
    return files
