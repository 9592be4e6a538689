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

from collections.abc import Iterator
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


# Particles per block of `particle_blocks`: its feature-major scratch (F x block float32, ~1 MB) and the
# block's inputs stay in cache, so every ufunc pass and the final transpose run on cached memory.
FEATURE_BLOCK = 16384
# Inputs copied unchanged into the raw feature table (the transforms above still apply, e.g. d0err clip).
_COPIED = {name: PARTICLE_FEATURE_NAMES.index(name) for name in _PASSTHROUGH_INPUTS}
_TANH = {  # input -> row of its tanh
    "part_d0val": PARTICLE_FEATURE_NAMES.index("part_d0"),
    "part_dzval": PARTICLE_FEATURE_NAMES.index("part_dz"),
}
_PT_LOG, _E_LOG, _LOGPTREL, _LOGEREL, _DELTAR = range(5)


def _raw_block(p: dict[str, np.ndarray], jet_pt: np.ndarray, jet_energy: np.ndarray, out: np.ndarray) -> None:
    """Unstandardised features of one block of particles into the (F, m) float32 rows of `out`.

    `jet_pt`/`jet_energy` are already broadcast to particles. log of a zero pT or energy gives -inf, which
    standardisation clips to -5; a negative energy gives NaN, which the caller maps to 0 as weaver does.
    """
    energy = p["part_energy"]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.hypot(p["part_px"], p["part_py"], out=out[_PT_LOG])
        np.divide(out[_PT_LOG], jet_pt, out=out[_LOGPTREL])
        np.log(out[_LOGPTREL], out=out[_LOGPTREL])
        np.log(out[_PT_LOG], out=out[_PT_LOG])
        np.log(energy, out=out[_E_LOG])
        np.divide(energy, jet_energy, out=out[_LOGEREL])
        np.log(out[_LOGEREL], out=out[_LOGEREL])
    np.hypot(p["part_deta"], p["part_dphi"], out=out[_DELTAR])
    for name, j in _COPIED.items():
        out[j] = p[name]
    for name, j in _TANH.items():
        np.tanh(p[name], out=out[j])


def _standardise_rows(out: np.ndarray) -> None:
    """JetClass_full.yaml transforms in place on (F, m) feature-major rows; NaN -> 0 (weaver's nan_to_num)."""
    for j, (_, shift, scale, lo, hi) in enumerate(PARTICLE_FEATURES):
        if shift is not None:
            row = out[j]
            np.subtract(row, shift, out=row)
            row *= scale
            np.clip(row, lo, hi, out=row)
    # NaN (log of a negative energy) propagates into the sum; the rows hold no inf (inputs are checked
    # finite, logs are clipped), so this test allocates nothing and misses no NaN
    if np.isnan(out.sum()):
        np.nan_to_num(out, copy=False, nan=0.0)


def particle_blocks(
    p: dict[str, np.ndarray],
    idx: np.ndarray | None,
    jet_pt: np.ndarray,
    jet_energy: np.ndarray,
    start: int,
    stop: int,
    block: int = FEATURE_BLOCK,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(offset from start, features (m, F), vectors (m, 4)) of kept particles [start, stop), block by block.

    Kept particle k is input row idx[k] (idx None: row k); `jet_pt`/`jet_energy` are per kept particle.
    Each block is gathered into small reused buffers, computed feature-major (every ufunc pass on cached
    memory, float32 throughout like the branches) and transposed once; no chunk-sized temporaries. The
    yielded arrays are overwritten by the next block: consume (write) them first.
    """
    m_max = max(min(block, stop - start), 1)
    cols = {k: np.empty(m_max, dtype=v.dtype) for k, v in p.items()}
    scratch = np.empty((len(PARTICLE_FEATURES), m_max), dtype=np.float32)
    feats = np.empty((m_max, len(PARTICLE_FEATURES)), dtype=np.float32)
    vectors = np.empty((m_max, len(VECTOR_NAMES)), dtype=np.float32)
    for a in range(start, stop, block):
        b = min(a + block, stop)
        m = b - a
        if idx is None:
            src = {k: v[a:b] for k, v in p.items()}
        else:
            src = {k: np.take(v, idx[a:b], out=cols[k][:m]) for k, v in p.items()}
        rows = scratch[:, :m]
        _raw_block(src, jet_pt[a:b], jet_energy[a:b], rows)
        _standardise_rows(rows)
        feats[:m] = rows.T
        for k, name in enumerate(VECTOR_NAMES):
            vectors[:m, k] = src[name]
        yield a - start, feats[:m], vectors[:m]


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


def particle_index(counts: np.ndarray, rows: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Flat particle indices of jets `rows` (in that order): gathers a subset or permutation of jets,
    with at most the first `limit` particles of each."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = offsets_of(counts)[:-1][rows]
    sub = counts[rows] if limit is None else np.minimum(counts[rows], limit)
    sub_offsets = offsets_of(sub)
    return np.repeat(starts - sub_offsets[:-1], sub) + np.arange(sub_offsets[-1], dtype=np.int64)


def particle_selection(
    counts: np.ndarray, rows: np.ndarray, max_particles: int, pt: np.ndarray
) -> np.ndarray | None:
    """Flat indices of the particles to keep, jets in `rows` order, each jet pT-sorted and cut to P.

    One gather then does the pT sort, the truncation and the routing to groups together; None when the
    result is the input itself (rows in order, already sorted, nothing cut), the common case for one group.
    """
    counts = np.asarray(counts, dtype=np.int64)
    order = pt_order(counts, pt)
    in_order = np.array_equal(rows, np.arange(len(counts)))
    if order is None and in_order and not np.any(counts > max_particles):
        return None
    idx = particle_index(counts, rows, max_particles)
    return idx if order is None else order[idx]


def pad_into(
    counts: np.ndarray,
    row_start: np.ndarray,
    feats: np.ndarray,
    vectors: np.ndarray,
    out: PaddedJets,
    gather: tuple[np.ndarray, np.ndarray] | None = None,
) -> PaddedJets:
    """Scatter jets (count <= P, start row in the flat `feats`/`vectors`) into the first len(counts) rows of
    `out`'s buffers, zeros and a False mask beyond each jet's count; returns views of those rows.

    Reusing `out` (and `gather`, scratch for the gathered particles) across blocks of rows keeps the
    padding in cache and off the allocator.
    """
    counts = np.asarray(counts, dtype=np.int64)
    m, max_particles = len(counts), out.part_mask.shape[1]
    f, v, mask = out.part_features[:m], out.part_vectors[:m], out.part_mask[:m]
    f.fill(0)
    v.fill(0)
    mask.fill(False)
    offsets = offsets_of(counts)
    within = np.arange(offsets[-1], dtype=np.int64)
    src = np.repeat(np.asarray(row_start, dtype=np.int64) - offsets[:-1], counts) + within
    slot = np.repeat(np.arange(m, dtype=np.int64) * max_particles - offsets[:-1], counts) + within
    if gather is None:
        gather = (
            np.empty((len(src), feats.shape[1]), feats.dtype),
            np.empty((len(src), vectors.shape[1]), vectors.dtype),
        )
    f.reshape(m * max_particles, -1)[slot] = np.take(feats, src, axis=0, out=gather[0][: len(src)])
    v.reshape(m * max_particles, -1)[slot] = np.take(vectors, src, axis=0, out=gather[1][: len(src)])
    mask.reshape(-1)[slot] = True
    return PaddedJets(f, v, mask, np.zeros(m, np.int64))


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
    out = PaddedJets(
        np.empty((n_jets, max_particles, feats.shape[1]), np.float32),
        np.empty((n_jets, max_particles, vectors.shape[1]), np.float32),
        np.empty((n_jets, max_particles), bool),
        np.maximum(counts - max_particles, 0),
    )
    padded = pad_into(kept, offsets_of(kept)[:-1], feats, vectors, out)
    return PaddedJets(padded.part_features, padded.part_vectors, padded.part_mask, out.n_truncated)


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
