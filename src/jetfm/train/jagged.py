"""Jets with their particles back to back (no padding): what the loader pools, shuffles and cuts into batches.

Shuffling a pool of padded rows moves P = 128 slots per jet when a JetClass jet uses ~45, and each batch is
then trimmed again; here the pool moves only the real particles, and a batch is padded once, to its own
longest jet (exactly the arrays `trim_padding` makes of the padded rows: masks fill a row's first slots).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jetfm.preprocess.features import PaddedJets, offsets_of, pad_into, particle_index

PARTICLES = ("part_features", "part_vectors")


@dataclasses.dataclass(frozen=True)
class JaggedRows:
    """Per-jet arrays `jets`, particle `counts` (int64) and the flat particle arrays (T, ·) of `PARTICLES`."""

    jets: dict[str, np.ndarray]
    counts: np.ndarray
    particles: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.counts)

    def take(self, rows: np.ndarray) -> JaggedRows:
        """Jets `rows` (indices, in that order) with their particles."""
        idx = particle_index(self.counts, rows)
        return JaggedRows(
            {k: v[rows] for k, v in self.jets.items()},
            self.counts[rows],
            {k: v[idx] for k, v in self.particles.items()},
        )

    def rows(self, start: int, stop: int) -> JaggedRows:
        """Jets [start, stop): a view, no copy."""
        offsets = offsets_of(self.counts)
        a, b = int(offsets[start]), int(offsets[min(stop, len(self))])
        return JaggedRows(
            {k: v[start:stop] for k, v in self.jets.items()},
            self.counts[start:stop],
            {k: v[a:b] for k, v in self.particles.items()},
        )

    @staticmethod
    def concat(parts: list[JaggedRows]) -> JaggedRows:
        first = parts[0]
        return JaggedRows(
            {k: np.concatenate([p.jets[k] for p in parts]) for k in first.jets},
            np.concatenate([p.counts for p in parts]),
            {k: np.concatenate([p.particles[k] for p in parts]) for k in first.particles},
        )

    def padded(self) -> dict[str, np.ndarray]:
        """part_features, part_vectors, part_mask padded to the longest jet (at least 1 slot), then `jets`."""
        n, width = len(self), max(int(self.counts.max(initial=0)), 1)
        feats, vectors = (self.particles[k] for k in PARTICLES)
        out = PaddedJets(
            np.empty((n, width, feats.shape[1]), feats.dtype),
            np.empty((n, width, vectors.shape[1]), vectors.dtype),
            np.empty((n, width), np.bool_),
            np.zeros(0, np.int64),
        )
        pad_into(self.counts, offsets_of(self.counts)[:-1], feats, vectors, out)
        return {"part_features": out.part_features, "part_vectors": out.part_vectors,
                "part_mask": out.part_mask, **self.jets}  # fmt: skip
