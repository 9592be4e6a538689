"""The typed training config: one dataclass, built from the workflow's `train:` section + CLI overrides.

Unknown keys are errors (a typo must not silently train with a default). The resolved config is saved in
every checkpoint; resuming with a config that differs in anything that changes the result is refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Keys that may change between a run and its resumption: they do not change the numbers.
RESUME_MUTABLE = frozenset(
    {"progress", "checkpoint_every", "compile", "threads", "eval_every", "eval_at", "eval_batches",
     "eval_batch_size"}
)  # fmt: skip

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile(mode=...)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "part"  # registry name: part | pfn | mlp | cnn
    size: dict[str, Any] = field(default_factory=dict)  # size fields or {"preset": "small"}
    seed: int = 12345  # model init, dropout, data order
    batch_size: int = 64  # jets per micro-batch, all ranks together (per rank: batch_size / world size)
    grad_accum: int = 1  # micro-batches per optimiser step (global batch = batch_size * grad_accum)
    max_steps: int = 300  # optimiser steps (the run ends here; epochs follow from the data size)
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    warmup_steps: int = 30  # linear warmup from 0
    weight_decay: float = 0.01  # on matrices only, not on biases / norms / tokens
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    label_smoothing: float = 0.0
    eval_every: int = 100  # steps between validation passes (and at the end)
    eval_at: tuple[int, ...] = ()  # extra validation steps (e.g. log-spaced: a scaling cell's learning curve)
    eval_batches: int = 200  # validation batches per pass (bounded at any split size); 0 = the whole split
    eval_batch_size: int = 256
    log_every: int = 10  # steps between history rows
    checkpoint_every: int = 100  # steps between atomic checkpoints (and at the end)
    block_size: int = 256  # rows per contiguous read (rounded up to the HDF5 chunk length)
    shuffle_buffer: int = 4096  # rows pooled and permuted before batching; 0 = block order only
    bucket_by_length: bool = False  # batches from multiplicity-sorted buffer rows (less padding, less mixing)
    num_workers: int = 0  # DataLoader worker processes per rank
    nominal_only: bool = True  # train on view == -1 rows only (the re-simulation views are for pretraining)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    compile: bool | str = False  # torch.compile the model: false, true or one of COMPILE_MODES
    threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_at", tuple(sorted({int(s) for s in self.eval_at})))
        if self.eval_at and self.eval_at[0] < 1:
            raise ValueError(f"train.eval_at steps must be >= 1, got {list(self.eval_at)}")
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "eval_batch_size", "log_every")
        for name in (*positive, "checkpoint_every", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_batches", "shuffle_buffer", "num_workers", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.compile not in (False, True, *COMPILE_MODES):
            raise ValueError(f"train.compile must be a bool or one of {COMPILE_MODES}, got {self.compile!r}")
        choices = {"device": ("auto", "cpu", "cuda"), "precision": ("auto", "fp32", "bf16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict; unknown keys raise naming the key and the allowed ones."""
        from jetfm.configkeys import strict_fields

        return cls(**strict_fields(cls, values, "training config"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


# Keys of the workflow's `train:` section that are not TrainConfig fields; gpus and nodes are the launcher's
# (jetfm.train.launch), also in a stage's own training section (pretrain.train.gpus, ...).
WORKFLOW_ONLY = ("models", "sizes", "model_overrides", "gpus", "nodes")
LAUNCH_ONLY = ("gpus", "nodes")


def from_workflow(config: dict[str, Any], model: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig for `model` from a validated workflow config: `train:` + per-model size/overrides."""
    section = dict(config.get("train", {}))
    values = {k: v for k, v in section.items() if k not in WORKFLOW_ONLY}
    values.setdefault("seed", config.get("seed", TrainConfig.seed))
    if values.get("seed") is None:
        values["seed"] = config.get("seed", TrainConfig.seed)
    values["model"] = model
    values["size"] = dict(section.get("sizes", {}).get(model, {}))
    values.update(section.get("model_overrides", {}).get(model, {}))
    values.update({k: v for k, v in (overrides or {}).items() if k not in LAUNCH_ONLY})
    return TrainConfig.from_dict(values)


def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences that matter for resuming (keys in RESUME_MUTABLE are ignored)."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))  # tuples == lists
    keys = sorted((set(saved) | set(current)) - RESUME_MUTABLE)
    missing = object()
    return [
        f"{k}: checkpoint has {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r}"
        for k in keys
        if saved.get(k, missing) != current.get(k, missing)
    ]
