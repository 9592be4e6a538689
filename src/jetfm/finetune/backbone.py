"""What a pretrained backbone file says about itself: its architecture and the inputs it was trained on.

`read_backbone(path)` reads either an exported backbone (`jetfm export`, format `jetfm-backbone-v1`: weights,
architecture and inputs, no optimiser or RNG state) or any jetfm training checkpoint of a ParT (pretraining,
fine-tuning, supervised). Fine-tuning builds its model from the returned size, so a user never restates the
backbone's size in config, and compares the returned inputs with the data before any training:
`check_inputs` refuses a mismatch naming both sides.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jetfm.models import make_size

EXPORT_FORMAT = "jetfm-backbone-v1"
VECTOR_NAMES = ("px", "py", "pz", "energy")  # part_vectors, in this order (the pair features use them)


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's weights and what they need: ParT size fields, particle features (names when known)."""

    path: str
    size: dict[str, Any]
    num_features: int
    feature_names: tuple[str, ...] | None
    normalisation: dict[str, Any] | None
    state: dict[str, torch.Tensor]
    step: int
    objective: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """The provenance record of a loaded backbone (no weights)."""
        return {
            "path": self.path, "step": self.step, "objective": self.objective,
            "size": json.loads(json.dumps(self.size)), "num_features": self.num_features,
            "feature_names": list(self.feature_names) if self.feature_names else None,
        }  # fmt: skip


def particle_feature_names(names: Any, num_features: int) -> tuple[str, ...] | None:
    """The particle feature names of a shard's `feature_names` attr (a list, or {"particle": [...]})."""
    if isinstance(names, dict):
        names = names.get("particle")
    if isinstance(names, (list, tuple)) and len(names) == num_features:
        return tuple(str(n) for n in names)
    return None


def size_fields(size: dict[str, Any] | None) -> dict[str, Any]:
    """Every ParTSize field of a size given as a preset and/or fields (plain values, tuples as lists)."""
    resolved = make_size("part", dict(size or {}))
    return json.loads(json.dumps(dataclasses.asdict(resolved)))


def _from_export(path: str, raw: dict[str, Any]) -> BackboneSpec:
    arch, inputs = raw.get("architecture", {}), raw.get("inputs", {})
    if arch.get("model") != "part":
        raise ValueError(
            f"backbone file {path}: architecture.model is {arch.get('model')!r}, expected 'part'"
        )
    names = inputs.get("feature_names")
    return BackboneSpec(
        path=path, size=dict(arch["size"]), num_features=int(inputs["num_features"]),
        feature_names=tuple(names) if names else None, normalisation=inputs.get("normalisation"),
        state=dict(raw["state"]), step=int(raw.get("step", 0)), objective=dict(raw.get("objective", {})),
    )  # fmt: skip


def _from_checkpoint(path: str) -> BackboneSpec:
    from jetfm.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    if config.get("model") != "part":
        raise ValueError(f"checkpoint {path} holds a {config.get('model')!r} model, not a ParT backbone")
    state = {k.removeprefix("backbone."): v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    if not state:
        raise ValueError(
            f"checkpoint {path} has no 'backbone.*' weights (keys: {sorted(ckpt['model'])[:5]}...)"
        )
    n = ckpt.get("num_features")
    if n is None:
        n = int(state["embed.net.1.weight"].shape[1])
    return BackboneSpec(
        path=path, size=size_fields(config.get("size")), num_features=int(n),
        feature_names=tuple(ckpt["feature_names"]) if ckpt.get("feature_names") else None,
        normalisation=None, state=state, step=int(ckpt["step"]),
        objective=dict(ckpt.get("objective", {"name": "supervised"})),
    )  # fmt: skip


def read_backbone(path: str | Path) -> BackboneSpec:
    """An exported backbone or a jetfm checkpoint of a ParT -> its spec and weights (CPU)."""
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"backbone file {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"backbone file {path} is unreadable (not a torch file?): {exc}") from exc
    if isinstance(raw, dict) and raw.get("format") == EXPORT_FORMAT:
        return _from_export(path, raw)
    return _from_checkpoint(path)


def check_inputs(
    spec: BackboneSpec, data_names: tuple[str, ...] | None, num_features: int, data_files: list[str]
) -> None:
    """Refuse data whose particle features differ from the backbone's, naming both lists (or counts)."""
    where = data_files[0] if data_files else "the data"
    if spec.feature_names is not None and data_names is not None and tuple(data_names) != spec.feature_names:
        missing = [n for n in spec.feature_names if n not in data_names]
        raise ValueError(
            f"backbone {spec.path} expects particle features {list(spec.feature_names)}, but {where} has "
            f"{list(data_names)} (missing {missing}); convert the data with `jetfm finetune --adapter "
            "four_vectors` or use a backbone trained on these features"
        )
    if spec.num_features != num_features:
        raise ValueError(
            f"backbone {spec.path} expects {spec.num_features} particle features "
            f"({list(spec.feature_names or [])}), but {where} has {num_features} "
            f"({list(data_names or [])}); the inputs do not match"
        )
