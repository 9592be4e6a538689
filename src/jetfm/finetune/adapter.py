"""Input adapter: a user's HDF5 with only particle 4-vectors -> jetfm shards with the backbone's features.

Which choice and why: the features are *computed*, not learned. Seven of the 17 jetfm particle features
(log pT, log E, log pT/pT_jet, log E/E_jet, ΔR, Δη, Δφ to the jet axis) are functions of the 4-vectors, so
they are computed exactly as preprocessing computes them (same formulae, same standardisation: the backbone
file's normalisation, else `jetfm.preprocess.features`), and the backbone sees them as in pretraining. The
others (charge, particle ID, impact parameters) cannot be recovered from a 4-vector: they are set to 0, a
value the backbone saw for neutral particles' track features but never for all ID flags at once; fine-tuning
(whose first layers are a LayerNorm and a Linear on the features) adapts to it. A learned input projection
(4 -> 17) would instead start from weights the backbone never saw and needs labels to learn them. The
shards record which features were computed and which filled (`adapter` attr, metrics.json).

The user's file: `part_px`, `part_py`, `part_pz`, `part_energy` (N, P) each, or `part_vectors` (N, P, 4)
(px, py, pz, E in GeV; padded slots zero or masked by an optional `part_mask` (N, P)); `label` (N,) integer
classes; optional `event_id` (N,) and `classes` attribute. Rows are split into train/val/test by a hash of
event_id (the row number when absent), as preprocessing splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm.preprocess.features import feature_transforms
from jetfm.splits import SPLITS, assign_splits

ADAPTERS = ("four_vectors",)
COMPONENTS = ("part_px", "part_py", "part_pz", "part_energy")
JET_FEATURE_NAMES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass", "jet_nparticles")
DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def read_vectors(path: str | Path) -> dict[str, np.ndarray]:
    """The user's file -> vectors (N, P, 4) float64, mask (N, P), label (N,), event_id (N,), classes."""
    with h5py.File(path, "r") as f:
        if "part_vectors" in f:
            vec = f["part_vectors"][:].astype(np.float64)
        elif all(c in f for c in COMPONENTS):
            vec = np.stack([f[c][:] for c in COMPONENTS], axis=-1).astype(np.float64)
        else:
            raise ValueError(
                f"{path}: no particle 4-vectors: expected datasets {list(COMPONENTS)} (N, P) or "
                f"'part_vectors' (N, P, 4); found {sorted(f)}"
            )
        if vec.ndim != 3 or vec.shape[-1] != 4:
            raise ValueError(f"{path}: particle 4-vectors have shape {vec.shape}, expected (N, P, 4)")
        if "label" not in f:
            raise ValueError(f"{path}: no 'label' dataset (N,) of integer classes; found {sorted(f)}")
        label = f["label"][:].astype(np.int64)
        mask = f["part_mask"][:].astype(bool) if "part_mask" in f else vec[..., 3] > 0
        event_id = (
            f["event_id"][:].astype(np.uint64) if "event_id" in f else np.arange(len(label), dtype=np.uint64)
        )
        classes = f.attrs.get("classes")
    if len(label) != len(vec) or mask.shape != vec.shape[:2]:
        raise ValueError(
            f"{path}: label {label.shape}, mask {mask.shape} and vectors {vec.shape} disagree in N/P"
        )
    if (label < 0).any():
        raise ValueError(f"{path}: dataset 'label' has negative values (first {int(label[label < 0][0])})")
    if isinstance(classes, bytes):
        classes = classes.decode()
    if isinstance(classes, str):
        classes = json.loads(classes) if classes.startswith("[") else [classes]
    classes = (
        [str(c) for c in classes] if classes is not None else [f"class_{i}" for i in range(label.max() + 1)]
    )
    if label.max() >= len(classes):
        raise ValueError(f"{path}: label {int(label.max())} outside the {len(classes)} classes {classes}")
    return {"vectors": vec, "mask": mask, "label": label, "event_id": event_id, "classes": classes}


def _kinematics(vec: np.ndarray, mask: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw (unstandardised) kinematic particle features and the jet features of padded 4-vectors."""
    v = np.where(mask[..., None], vec, 0.0)
    jet = v.sum(1)
    jpt = np.hypot(jet[:, 0], jet[:, 1])
    jeta = np.arcsinh(jet[:, 2] / np.maximum(jpt, 1e-9))
    jphi = np.arctan2(jet[:, 1], jet[:, 0])
    pt = np.hypot(v[..., 0], v[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(v[..., 2] / np.maximum(pt, 1e-9))
        dphi = (np.arctan2(v[..., 1], v[..., 0]) - jphi[:, None] + np.pi) % (2 * np.pi) - np.pi
        deta = eta - jeta[:, None]
        raw = {
            "part_pt_log": np.log(pt), "part_e_log": np.log(v[..., 3]),
            "part_logptrel": np.log(pt / jpt[:, None]), "part_logerel": np.log(v[..., 3] / jet[:, 3:4]),
            "part_deltaR": np.hypot(deta, dphi), "part_deta": deta, "part_dphi": dphi,
        }  # fmt: skip
    mass = np.sqrt(np.maximum(jet[:, 3] ** 2 - (jet[:, :3] ** 2).sum(1), 0))
    jets = np.stack([jpt, jeta, jphi, jet[:, 3], mass, mask.sum(1)], axis=1)
    return raw, jets


def four_vector_features(
    vec: np.ndarray, mask: np.ndarray, names: tuple[str, ...], normalisation: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """(N, P, F) standardised features in the order `names`, jet features, and {computed, filled} names."""
    transforms = normalisation or feature_transforms()
    raw, jets = _kinematics(vec, mask)
    out = np.zeros((*mask.shape, len(names)), np.float32)
    computed, filled = [], []
    for j, name in enumerate(names):
        if name not in raw:
            filled.append(name)
            continue
        x = raw[name]
        t = transforms.get(name, {})
        if t.get("shift") is not None:
            x = np.clip((x - t["shift"]) * t["scale"], t["clip_lo"], t["clip_hi"])
        out[..., j] = np.where(mask, np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
        computed.append(name)
    return out, jets.astype(np.float32), {"computed": computed, "filled_with_zero": filled}


def adapt_hdf5(
    path: str | Path, out_dir: str | Path, names: tuple[str, ...],
    normalisation: dict[str, Any] | None = None, fractions: dict[str, float] | None = None,
    adapter: str = "four_vectors",
) -> dict[str, list[str]]:  # fmt: skip
    """Write out_dir/{train,val,test}/0000.h5 (jetfm padded layout) from the user's file; the splits."""
    if adapter not in ADAPTERS:
        raise ValueError(f"finetune --adapter: {adapter!r} is not one of {ADAPTERS}")
    data = read_vectors(path)
    pt = np.hypot(data["vectors"][..., 0], data["vectors"][..., 1])
    order = np.argsort(-np.where(data["mask"], pt, -1), axis=1, kind="stable")  # pT-ordered, as preprocessing
    vec = np.take_along_axis(data["vectors"], order[..., None], 1)
    mask = np.take_along_axis(data["mask"], order, 1)
    feats, jets, record = four_vector_features(vec, mask, names, normalisation)
    split = assign_splits(data["event_id"], fractions or DEFAULT_FRACTIONS)
    files: dict[str, list[str]] = {}
    for i, name in enumerate(SPLITS):
        sel = split == i
        if not sel.any():
            raise ValueError(f"{path}: no row falls in the {name} split ({len(sel)} rows); give more jets")
        target = Path(out_dir) / name / "0000.h5"
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "part_features": feats[sel],
            "part_vectors": np.where(mask[..., None], vec, 0)[sel].astype(np.float32),
            "part_mask": mask[sel], "jet_features": jets[sel], "label": data["label"][sel],
            "event_id": data["event_id"][sel], "view": np.full(int(sel.sum()), -1, np.int16),
        }  # fmt: skip
        with h5py.File(target, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v, chunks=(min(256, len(v)), *v.shape[1:]))
            f.attrs["feature_names"] = json.dumps({"particle": list(names), "jet": list(JET_FEATURE_NAMES)})
            f.attrs["classes"] = json.dumps(data["classes"])
            f.attrs["adapter"] = json.dumps({"adapter": adapter, "source": str(path), **record})
            f.attrs["provenance"] = json.dumps({"stage": "finetune-adapter", "source": str(path)})
        files[name] = [str(target)]
    return files
