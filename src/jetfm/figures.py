"""Saving report figures: atomically (temp file + rename), then closing them so long runs do not leak."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jetfm.atomic import atomic_path


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110, **savefig_kwargs: Any) -> None:
    """Write `fig` to `path` (format from the suffix, PNG by default) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, **savefig_kwargs)
    plt.close(fig)
