"""Seeds derived from (config seed, keys...), so any shard can be produced on any node in any order."""

from __future__ import annotations

import hashlib

PYTHIA_SEED_MAX = 900_000_000  # Pythia's Random:seed accepts 1..900000000


def derive_seed(base_seed: int, *keys: object, upper: int = PYTHIA_SEED_MAX) -> int:
    """A deterministic seed in [1, upper] from the base seed and any keys (class, shard, view, ...)."""
    text = "/".join([str(int(base_seed)), *map(str, keys)])
    digest = hashlib.sha256(text.encode()).digest()
    return 1 + int.from_bytes(digest[:8], "little") % upper


def validate_pythia_seed(seed: int) -> int:
    """Reject seeds Pythia would silently remap."""
    if not isinstance(seed, int) or not 1 <= seed <= PYTHIA_SEED_MAX:
        raise ValueError(f"seed {seed!r} is outside Pythia's range 1..{PYTHIA_SEED_MAX}")
    return seed
