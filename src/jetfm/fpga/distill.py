"""Knowledge distillation as an objective of the one training loop (`train/loop.py`).

loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, label)
(Hinton et al. 2015: the T² keeps the soft-target gradients on the scale of the hard ones). The teacher is a
frozen registry model read from a training checkpoint and run under no_grad. With a `CompressSpec` the same
objective does the quantisation-aware, pruned second phase: the student starts from the float student's
checkpoint, carries the fixed-point quantisers, and its pruning masks follow the spec's staircase schedule.
With a `TransferSet` of views the training stream also reads the re-simulation views (`fpga/transfer.py`).

Teacher logits: computed once per training jet and kept in memory while the training set has at most
`TEACHER_CACHE_JETS` jets (one teacher pass instead of one per step: the teacher's forward would dominate the
student's training time); above that (a large transfer set) the teacher runs on each batch instead, so
memory stays bounded (~200 B per cached jet).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.fpga.compress import CompressSpec, Quantize, apply_compression, prune_to, sparsity
from jetfm.fpga.students import build_student
from jetfm.fpga.transfer import TransferSet
from jetfm.models import build_model, count_parameters
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream, ShardMeta, make_loader
from jetfm.train.objectives import Supervised, classify

TEACHER_CACHE_JETS = 1_000_000  # at most this many training jets' teacher logits kept in memory


def load_teacher(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A frozen registry model from a training checkpoint (its own saved config says which and how big)."""
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    for key in ("num_features", "num_jet_features", "classes"):
        if key not in ckpt:
            raise ValueError(f"teacher checkpoint {path} lacks {key!r}: not written by the training loop")
    model = build_model(
        cfg.model, ckpt["num_features"], ckpt["num_jet_features"], len(ckpt["classes"]), **cfg.size
    )
    model.load_state_dict(ckpt["model"])
    model.eval().requires_grad_(False)
    return model, {
        "path": str(path),
        "model": cfg.model,
        "classes": list(ckpt["classes"]),
        "step": ckpt["step"],
    }


class Distill(Supervised):
    """Soft targets at a temperature plus hard labels; `compress` turns on QAT and pruning."""

    name = "distill"

    def __init__(
        self,
        student: str,
        teacher_path: str | Path,
        *,
        size: dict[str, Any] | None = None,
        temperature: float = 4.0,
        alpha: float = 0.7,
        compress: CompressSpec | None = None,
        init_from: str | Path | None = None,
        transfer: TransferSet | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(
                f"fpga.distill: temperature must be > 0 and alpha in [0, 1]: {temperature}, {alpha}"
            )
        self.student, self.size = student, dict(size or {})
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.compress, self.init_from = compress, init_from
        self.transfer = transfer or TransferSet()
        self.teacher, self.teacher_info = load_teacher(teacher_path)
        self._calls = 0
        self.cache_limit = TEACHER_CACHE_JETS
        self._teacher_logits: dict[bytes, int] = {}  # jet key -> row of _logit_table
        self._logit_table = torch.zeros(0)
        self.training_set: dict[str, Any] = {}
        self._cfg: TrainConfig | None = None
        self._module: nn.Module | None = None

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        if list(meta.classes) != self.teacher_info["classes"]:
            raise ValueError(
                f"teacher {self.teacher_info['path']} has classes {self.teacher_info['classes']}, "
                f"the data {list(meta.classes)}"
            )
        student = build_student(
            self.student, meta.num_features, meta.num_jet_features, len(meta.classes), self.size
        )
        self._cfg, self._module = cfg, student
        return student

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        super().prepare(module, train_files, cfg)  # the jet MLP's input standardisation
        self._cache_teacher(train_files, cfg)
        if self.init_from is not None:
            module.load_state_dict(load_checkpoint(self.init_from)["model"])
        if self.compress is not None:
            apply_compression(module.core, self.compress)
            module.input_quant = Quantize(self.compress.types()["input"])

    def _nominal_only(self, cfg: TrainConfig) -> bool:
        """Training rows: the nominal jets, plus the views when the transfer set asks for them."""
        return cfg.nominal_only and self.transfer.nominal_only

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> H5JetStream:
        """The supervised stream over the transfer set; records what it holds (`training_set`) for the
        metrics, and refuses a transfer set of views whose shards hold none."""
        cfg = dataclasses.replace(cfg, nominal_only=self._nominal_only(cfg))
        stream = super().stream(files, cfg, rank, world_size)
        views = stream.rows - stream.nominal_rows  # 0 when the stream keeps nominal jets only
        if self.transfer.views and views == 0:
            raise ValueError(
                f"fpga.transfer.views is true but the training shards {files} hold no re-simulation view "
                "rows (view >= 0): expected shards preprocessed with resimulate.enabled: true"
            )
        self.training_set = {"files": list(files), "jets": stream.rows, "nominal_jets": stream.nominal_rows,
                             "view_jets": views, "transfer": vars(self.transfer)}  # fmt: skip
        return stream

    @staticmethod
    def _keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
        """A jet's identity in the stream (batches carry no ids): a digest of everything the teacher reads
        of it (jet features, real particles' features and vectors; the padding varies with the batch), so
        two jets share a key only if the teacher's input is the same, views of one event included."""
        jets, feats = batch["jet_features"].numpy(), batch["part_features"].numpy()
        vecs, mask = batch["part_vectors"].numpy(), batch["part_mask"].numpy()
        return [
            hashlib.blake2b(j.tobytes() + f[m].tobytes() + v[m].tobytes(), digest_size=16).digest()
            for j, f, v, m in zip(jets, feats, vecs, mask, strict=True)
        ]

    @torch.no_grad()
    def _cache_teacher(self, train_files: list[str], cfg: TrainConfig) -> None:
        """Teacher logits of every training jet, computed once, when there are at most `cache_limit`."""
        stream = H5JetStream(train_files, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size,
                             nominal_only=self._nominal_only(cfg), drop_last=False)  # fmt: skip
        self._teacher_logits, tables = {}, []
        if stream.rows > self.cache_limit:
            print(f"teacher logits: {stream.rows} training jets > {self.cache_limit}, computed per batch")
            return
        for batch in make_loader(stream):
            logits = classify(self.teacher, batch, torch.device("cpu")).float()
            fresh = []
            for i, key in enumerate(self._keys(batch)):
                if key not in self._teacher_logits:  # a jet twice in the shards: the same input, one row
                    self._teacher_logits[key] = len(self._teacher_logits)
                    fresh.append(i)
            tables.append(logits[fresh])
        self._logit_table = torch.cat(tables) if tables else torch.zeros(0)

    def teacher_logits(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        cached = [self._teacher_logits.get(k) for k in self._keys(batch)] if self._teacher_logits else [None]
        if None in cached:  # a jet not cached (another stream, or no cache): run the teacher
            self.teacher.to(device)
            with torch.no_grad():
                return classify(self.teacher, batch, device).float()
        return self._logit_table[torch.tensor(cached)].to(device)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        if self.compress is not None and self._cfg is not None and self._module is not None:
            step = self._calls // self._cfg.grad_accum
            prune_to(self._module.core, self.compress.sparsity_at(step, self._cfg.max_steps))
        self._calls += 1
        teacher = self.teacher_logits(batch, device)
        student = classify(model, batch, device).float()
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(student / t, -1),
            F.log_softmax(teacher / t, -1),
            log_target=True,
            reduction="batchmean",
        )
        hard = F.cross_entropy(student, batch["label"].to(device))
        loss = self.alpha * t * t * soft + (1 - self.alpha) * hard
        if hasattr(self._module, "regularisation"):  # HGQ2: EBOPs, bit-width penalties of this call
            loss = loss + self._module.regularisation().to(device)  # (the module: `model` may be wrapped)
        return loss

    def run_fields(self, module: nn.Module, test_files: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """The student, its teacher and, when compressed, its per-layer sparsity (no FLOP count: the fpga
        stage counts the firmware's operations)."""
        fields = {"model": self.student, "objective": self.name, "parameters": count_parameters(module),
                  "teacher": self.teacher_info, "training_set": self.training_set}  # fmt: skip
        if self.compress is not None:
            fields["sparsity"] = sparsity(module.core)
        return fields

    def report(
        self, metrics: dict[str, Any], probs: np.ndarray, labels: np.ndarray, classes: list[str],
        cfg: TrainConfig, out: Path,
    ) -> None:  # fmt: skip
        """No figures: the fpga stage's tables compare the students."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "student": self.student, "size": self.size, "temperature": self.temperature,
            "alpha": self.alpha, "teacher": self.teacher_info["path"],
            "compress": None if self.compress is None else vars(self.compress),
            "init_from": None if self.init_from is None else str(self.init_from),
            "transfer": vars(self.transfer),
        }  # fmt: skip
