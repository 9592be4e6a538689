"""Atomic checkpoints with everything an exact resume needs, and loud errors for bad ones.

Contents: model, optimiser and scheduler states, step, per-rank data position (epoch, batches consumed) and
per-rank RNG states (torch, CUDA, numpy, python), the history so far, and the resolved TrainConfig. Only
tensors and plain containers are stored, so `torch.load(weights_only=True)` reads it (no pickle execution).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetfm.atomic import atomic_path
from jetfm.train.config import TrainConfig, config_diff

FORMAT = "jetfm-checkpoint-v1"
REQUIRED = ("format", "config", "model", "optimizer", "scheduler", "step", "ranks", "history", "world_size")


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors / plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what libraries use
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    missing = [k for k in REQUIRED if k not in payload and k != "format"]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(
    path: str | Path,
    config: TrainConfig | None = None,
    world_size: int | None = None,
    objective: dict[str, Any] | None = None,
) -> dict:
    """Read and validate a checkpoint; with `config` (and the objective's `describe()`), refuse one written
    with a different config or objective."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (nothing to resume)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(
            f"checkpoint {path} is unreadable (truncated, corrupt or not a torch file): {exc}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} is not a {FORMAT} file (format: {found!r})")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    if config is not None:
        diff = config_diff(ckpt["config"], config.to_dict())
        if diff:
            raise ValueError(
                f"checkpoint {path} was written with a different training config; resuming would not "
                "continue the same run. Differences:\n  "
                + "\n  ".join(diff)
                + "\nUse the original config or a new output directory."
            )
    if objective is not None:
        saved = ckpt.get("objective", {"name": "supervised"})
        diff = config_diff(saved, objective)
        if diff:
            raise ValueError(
                f"checkpoint {path} was written by another objective setting; differences:\n  "
                + "\n  ".join(diff)
                + "\nUse the original settings or a new output directory."
            )
    if world_size is not None and ckpt["world_size"] != world_size:
        raise ValueError(
            f"checkpoint {path} was written by {ckpt['world_size']} rank(s), now {world_size}: the data "
            "sharding would differ; resume with the same number of ranks"
        )
    return ckpt


class BestCheckpoint:
    """best.pt next to checkpoint.pt: the model weights at the best validation value so far (model selection /
    early stopping), for objectives that set `best_metric = (history column, "min" | "max")`.

    Weights only, with the step, the metric and the whole validation row; rank 0 writes it atomically when
    the value strictly improves. A fresh (not resumed) run removes a stale one first; a resumed run continues
    from the stored best value.
    """

    def __init__(self, path: str | Path, metric: str, mode: str, fresh: bool) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"best_metric mode must be 'min' or 'max', got {mode!r}")
        self.path, self.metric, self.sign = Path(path), metric, 1.0 if mode == "min" else -1.0
        if fresh:
            self.path.unlink(missing_ok=True)
        self.best = (
            float(torch.load(self.path, map_location="cpu", weights_only=True)["value"])
            if self.path.is_file()
            else None
        )

    @classmethod
    def for_objective(cls, out: Path, objective: Any, fresh: bool) -> BestCheckpoint | None:
        spec = getattr(objective, "best_metric", None)
        return cls(out / "best.pt", spec[0], spec[1], fresh) if spec else None

    def update(self, val: dict[str, float], model: torch.nn.Module, step: int) -> bool:
        value = val.get(self.metric)
        if value is None or (self.best is not None and self.sign * value >= self.sign * self.best):
            return False
        with atomic_path(self.path) as tmp:
            torch.save({"model": model.state_dict(), "step": step, "metric": self.metric, "value": value,
                        "validation": dict(val)}, tmp)  # fmt: skip
        self.best = value
        return True
