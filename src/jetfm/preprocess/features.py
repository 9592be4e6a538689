"""Pure feature functions: flat JetClass particle arrays -> padded, standardised ParT inputs.

Definitions follow `data/JetClass/JetClass_full.yaml` of jet-universe/particle_transformer (weaver-core):
a feature with a (shift, scale) is transformed as clip((x - shift) * scale, lo, hi) with (lo, hi) = (-5, 5)
unless given; features listed there as `[name, null]` are passed through unchanged (weaver does not clip
them). Padding is with zeros and a False mask (weaver's `wrap` padding of the features is irrelevant once
the model applies the mask, and zeros make shards compress well).

Everything works on *flat* per-particle arrays plus per-jet counts, so no Python loop over jets runs and
no intermediate padded array larger than the output is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (name, shift, scale, clip_lo, clip_hi); shift None = pass through unchanged (weaver `[name, null]`).
PARTICLE_FEATURES: tuple[tuple[str, float | None, float, float, float], ...] = (
    ("part_pt_log", 1.7, 0.7, -5.0, 5.0),
    ("part_e_log", 2.0, 0.7, -5.0, 5.0),
    ("part_logptrel", -4.7, 0.7, -5.0, 5.0),
    ("part_logerel", -4.7, 0.7, -5.0, 5.0),
    ("part_deltaR", 0.2, 4.0, -5.0, 5.0),
    ("part_charge", None, 1.0, -5.0, 5.0),
    ("part_isChargedHadron", None, 1.0, -5.0, 5.0),
    ("part_isNeutralHadron", None, 1.0, -5.0, 5.0),
    ("part_isPhoton", None, 1.0, -5.0, 5.0),
    ("part_isElectron", None, 1.0, -5.0, 5.0),
    ("part_isMuon", None, 1.0, -5.0, 5.0),
    ("part_d0", None, 1.0, -5.0, 5.0),  # tanh(d0val)
    ("part_d0err", 0.0, 1.0, 0.0, 1.0),
    ("part_dz", None, 1.0, -5.0, 5.0),  # tanh(dzval)
    ("part_dzerr", 0.0, 1.0, 0.0, 1.0),
    ("part_deta", None, 1.0, -5.0, 5.0),
    ("part_dphi", None, 1.0, -5.0, 5.0),
)
PARTICLE_FEATURE_NAMES: tuple[str, ...] = tuple(f[0] for f in PARTICLE_FEATURES)
VECTOR_NAMES: tuple[str, ...] = ("part_px", "part_py", "part_pz", "part_energy")
JET_FEATURE_NAMES: tuple[str, ...] = (
    "jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass", "jet_sdmass", "jet_nparticles",
    "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4", "jet_tau21", "jet_tau32", "jet_tau43",
)  # fmt: skip

# Inputs copied unchanged into the raw feature table (the transforms above still apply, e.g. d0err clip).
_PASSTHROUGH_INPUTS: tuple[str, ...] = (
    "part_charge", "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron",
    "part_isMuon", "part_d0err", "part_dzerr", "part_deta", "part_dphi",
)  # fmt: skip


@dataclass(frozen=True)
class PaddedJets:
    """Padded tensors of one batch of jets, rows in input order."""

    part_features: np.ndarray  # (N, P, F) float32
    part_vectors: np.ndarray  # (N, P, 4) float32
    part_mask: np.ndarray  # (N, P) bool
    n_truncated: np.ndarray  # (N,) int64: particles dropped per jet (softest first)


def feature_transforms() -> dict[str, dict[str, float | None]]:
    """The standardisation of every particle feature, stored in shard attrs so it can be inverted."""
    return {
        n: {"shift": s, "scale": k, "clip_lo": lo, "clip_hi": hi} for n, s, k, lo, hi in PARTICLE_FEATURES
    }


def standardise(x: np.ndarray, shift: float | None, scale: float, lo: float, hi: float) -> np.ndarray:
    """weaver's manual standardisation: clip((x - shift) * scale, lo, hi); identity when shift is None."""
    if shift is None:
        return x
    return np.clip((x - shift) * scale, lo, hi)


def raw_particle_features(
    p: dict[str, np.ndarray], jet_pt: np.ndarray, jet_energy: np.ndarray
) -> dict[str, np.ndarray]:
    """Unstandardised features per flat particle, by name (float32, like the JetClass branches).

    `jet_pt`/`jet_energy` are already broadcast to particles. log of a zero pT or energy gives -inf, which
    standardisation clips to -5; a negative energy gives NaN, which the caller maps to 0 as weaver does.
    """
    pt = np.hypot(p["part_px"], p["part_py"])
    energy = p["part_energy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = {
            "part_pt_log": np.log(pt),
            "part_e_log": np.log(energy),
            "part_logptrel": np.log(pt / jet_pt),
            "part_logerel": np.log(energy / jet_energy),
        }
    cols["part_deltaR"] = np.hypot(p["part_deta"], p["part_dphi"])
    for name in _PASSTHROUGH_INPUTS:
        cols[name] = p[name]
    cols["part_d0"] = np.tanh(p["part_d0val"])
    cols["part_dz"] = np.tanh(p["part_dzval"])
    return cols


def standardised_particle_features(
    p: dict[str, np.ndarray], jet_pt: np.ndarray, jet_energy: np.ndarray
) -> np.ndarray:
    """(n_particles, F) float32 ParT inputs (JetClass_full.yaml transforms applied)."""
    raw = raw_particle_features(p, jet_pt, jet_energy)
    # feature-major scratch so every operation runs on contiguous memory, in place; one transpose at the end
    out = np.empty((len(PARTICLE_FEATURES), len(jet_pt)), dtype=np.float32)
    for j, (name, shift, scale, lo, hi) in enumerate(PARTICLE_FEATURES):
        row = out[j]
        if shift is None:
            row[:] = raw[name]
        else:
            np.subtract(raw[name], shift, out=row)
            row *= scale
            np.clip(row, lo, hi, out=row)
    if np.isnan(out).any():  # log of a negative energy: weaver's np.nan_to_num, i.e. 0
        np.nan_to_num(out, copy=False, nan=0.0)
    return np.ascontiguousarray(out.T)


def pt_order(counts: np.ndarray, pt: np.ndarray) -> np.ndarray | None:
    """Permutation of flat particles sorting each jet by descending pT (stable); None if already sorted.

    JetClass files are pT-sorted, so the common case costs one vectorised comparison.
    """
    jet_of = np.repeat(np.arange(len(counts)), counts)
    same_jet = jet_of[1:] == jet_of[:-1]
    if not np.any(same_jet & (pt[1:] > pt[:-1])):
        return None
    return np.lexsort((-pt, jet_of))


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """(N + 1,) start offsets of each jet's particles in the flat arrays."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def truncation_mask(counts: np.ndarray, max_particles: int) -> np.ndarray | None:
    """Flat mask keeping the first (hardest, once sorted) max_particles of each jet; None if none is cut."""
    counts = np.asarray(counts, dtype=np.int64)
    if not np.any(counts > max_particles):
        return None
    offsets = offsets_of(counts)
    rank = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    return rank < max_particles


def particle_index(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat particle indices of jets `rows` (in that order): gathers a subset or permutation of jets."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = offsets_of(counts)[:-1][rows]
    sub = counts[rows]
    sub_offsets = offsets_of(sub)
    return np.repeat(starts - sub_offsets[:-1], sub) + np.arange(sub_offsets[-1], dtype=np.int64)


def pad_particles(
    counts: np.ndarray, feats: np.ndarray, vectors: np.ndarray, max_particles: int
) -> PaddedJets:
    """Scatter flat (already pT-sorted) particles into (N, P, ·) arrays, truncating the softest."""
    counts = np.asarray(counts, dtype=np.int64)
    n_jets = len(counts)
    keep = truncation_mask(counts, max_particles)
    if keep is not None:
        feats, vectors = feats[keep], vectors[keep]
    kept = np.minimum(counts, max_particles)
    offsets = offsets_of(kept)
    # flat slot of each kept particle in the (N * P) padded layout
    slot = np.repeat(np.arange(n_jets, dtype=np.int64) * max_particles - offsets[:-1], kept)
    slot += np.arange(offsets[-1], dtype=np.int64)
    out_f = np.zeros((n_jets * max_particles, feats.shape[1]), dtype=np.float32)
    out_v = np.zeros((n_jets * max_particles, vectors.shape[1]), dtype=np.float32)
    mask = np.zeros(n_jets * max_particles, dtype=bool)
    out_f[slot] = feats
    out_v[slot] = vectors
    mask[slot] = True
    return PaddedJets(
        out_f.reshape(n_jets, max_particles, -1),
        out_v.reshape(n_jets, max_particles, -1),
        mask.reshape(n_jets, max_particles),
        np.maximum(counts - max_particles, 0),
    )


def jet_features(j: dict[str, np.ndarray]) -> np.ndarray:
    """(N, J) float32 raw jet-level observables (not standardised: baselines and plots use physical units).

    jet_mass comes from (pt, eta, energy); tau ratios are 0 where the denominator is 0.
    """
    pt, eta, energy = (np.asarray(j[k], dtype=np.float64) for k in ("jet_pt", "jet_eta", "jet_energy"))
    m2 = energy**2 - (pt * np.cosh(eta)) ** 2
    cols = {k: np.asarray(j[k], dtype=np.float64) for k in JET_FEATURE_NAMES if k in j}
    cols["jet_mass"] = np.sqrt(np.maximum(m2, 0.0))

    def ratio(a: str, b: str) -> np.ndarray:
        num, den = cols[a], cols[b]
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    cols["jet_tau21"] = ratio("jet_tau2", "jet_tau1")
    cols["jet_tau32"] = ratio("jet_tau3", "jet_tau2")
    cols["jet_tau43"] = ratio("jet_tau4", "jet_tau3")
    return np.stack([cols[k] for k in JET_FEATURE_NAMES], axis=1).astype(np.float32)


def labels_from_onehot(onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels from the (N, C) label branches (any numeric/bool dtype).

    Returns (label, bad_rows): bad_rows are jets without exactly one non-zero label, which the caller turns
    into an error naming the file and entries.
    """
    hot = np.asarray(onehot) != 0
    n_hot = hot.sum(axis=1)
    return np.argmax(hot, axis=1).astype(np.int64), np.flatnonzero(n_hot != 1)
