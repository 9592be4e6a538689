"""Pretraining objectives on the ParT backbone and the entry that runs one pretraining method.

Methods (`pretrain.methods` in the workflow config):
- `mpm`: masked particle modelling with continuous targets (`pretrain/masking.py`);
- `mpm_tok`: masked particle modelling with VQ-VAE token targets; needs the tokenizer run first
  (`tokenizer`, `pretrain/vq.py`);
- `rs3l`: re-simulation contrastive (`pretrain/contrastive.py`).
Each is an `Objective` of the one training loop (`train/loop.py`): DDP, bf16, checkpoints and exact resume,
history, progress and provenance are the loop's. The checkpoint's model is `backbone.*` + the method's head;
fine-tuning, scaling and FPGA load the backbone with `jetfm.finetune.objective.load_backbone`. No labels are
read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jetfm.configkeys import strict_fields
from jetfm.models import make_size
from jetfm.models.part import ParTBackbone
from jetfm.preprocess.sample import sample_rows
from jetfm.pretrain.contrastive import (
    ContrastiveModel,
    ViewStream,
    ddp_nt_xent,
    evaluate_views,
)
from jetfm.pretrain.masking import (
    GROUPS,
    LOSSES,
    LossSettings,
    MaskedParticleDecoder,
    MaskedParticleModel,
    TargetScaler,
    TargetSpec,
    choose_hidden,
    continuous_loss,
    skills,
    token_loss,
)
from jetfm.pretrain.unsupervised import SeededStream, Unsupervised
from jetfm.pretrain.vq import TokenizerObjective, load_tokenizer
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream, ShardMeta, make_loader
from jetfm.train.ddp import global_count
from jetfm.train.objectives import Objective, RunEnd, to_device

METHODS = ("mpm", "mpm_tok", "rs3l")
TOKENIZER = "tokenizer"
VALIDATION_EPOCH = 999_999  # the masks of validation jets: an epoch no training run reaches


@dataclass(frozen=True)
class MPMSettings:
    mask_fraction: float = 0.3  # of each jet's real particles (the jetssl sweep peaks at 20-30 %)
    decoder_depth: int = 1  # attention blocks of the decoder
    use_views: bool = True  # also mask the re-simulation views of training events (more unlabelled jets)
    loss: str = "l1"  # l1 | mse on each standardised continuous target (JetSSL uses L1-like losses)
    weights: dict[str, float] = field(default_factory=dict)  # per group (kinematics, track, id); default 1
    id_smoothing: float = 0.1  # label smoothing of the joint charge x particle-type class
    fit_jets: int = 5000  # training jets sampled to fit the target normalisation and the baselines

    def __post_init__(self) -> None:
        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"pretrain.mpm.mask_fraction must be in (0, 1), got {self.mask_fraction}")
        if self.loss not in LOSSES:
            raise ValueError(f"pretrain.mpm.loss must be one of {LOSSES}, got {self.loss!r}")
        unknown = sorted(set(self.weights) - set(GROUPS))
        if unknown or any(w < 0 for w in self.weights.values()):
            raise ValueError(
                f"pretrain.mpm.weights: {dict(self.weights)}; expected non-negative weights for {GROUPS}"
            )
        if not 0 <= self.id_smoothing < 1:
            raise ValueError(f"pretrain.mpm.id_smoothing must be in [0, 1), got {self.id_smoothing}")

    def loss_settings(self) -> LossSettings:
        weights = tuple((g, float(self.weights.get(g, 1.0))) for g in GROUPS)
        return LossSettings(self.loss, weights, self.id_smoothing)


@dataclass(frozen=True)
class TokenizerSettings:
    codebook_size: int = 512
    latent_dim: int = 16
    hidden: int = 128
    beta: float = 0.25  # commitment weight
    train: dict[str, Any] = field(default_factory=dict)  # training overrides of the tokenizer run


@dataclass(frozen=True)
class RS3LSettings:
    temperature: float = 0.1  # NT-Xent temperature (RS3L follow-up code)
    projection_dim: int = 64
    events_per_batch: int = 16  # events per step, all ranks together (x K views = jets); per rank: / ranks

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"pretrain.rs3l.temperature must be > 0, got {self.temperature}")


class MaskedParticleObjective(Unsupervised):
    """MPM: hide `mask_fraction` of each jet's particles, predict them (continuous features or tokens);
    every head is scored against its marginal baseline (skill, `masking.skills`)."""

    def __init__(self, settings: MPMSettings, tokenizer: str | Path | None = None) -> None:
        self.settings = settings
        self.tokenizer_path = str(tokenizer) if tokenizer else None
        self.name = "mpm_tok" if tokenizer else "mpm"
        self.history_columns = ("val_loss", "val_token_acc", "val_skill_token") if tokenizer else ()
        self.spec: TargetSpec | None = None
        self.tokenizer: nn.Module | None = None

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        backbone = ParTBackbone(meta.num_features, make_size("part", cfg.size))
        self.spec = TargetSpec.from_names(meta.feature_names, meta.num_features)
        tokenizer = load_tokenizer(self.tokenizer_path, meta.num_features) if self.tokenizer_path else None
        self.tokenizer = tokenizer
        if tokenizer is not None:
            out_dim, scaler = tokenizer.codebook_size, TargetScaler(0, tokenizer.codebook_size)
        else:
            out_dim, scaler = (
                self.spec.output_dim,
                TargetScaler(len(self.spec.regression), self.spec.id_classes),
            )
            heads = [g for g, _ in self.spec.groups] + (["id"] if self.spec.id_classes else [])
            id_extra = ("val_id_nll", "val_id_acc") if self.spec.id_classes else ()
            self.history_columns = (
                "val_loss", *(f"val_{h}" for h in heads), *id_extra, *(f"val_skill_{h}" for h in heads),
            )  # fmt: skip
        size = backbone.size
        decoder = MaskedParticleDecoder(
            size.embed_dim, size.heads, meta.max_particles, out_dim, self.settings.decoder_depth
        )
        return MaskedParticleModel(backbone, decoder, tokenizer, scaler)

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        """Fit the target normalisation and the marginal baselines on a sample of training particles."""
        rows = sample_rows(train_files, ("part_features", "part_mask"), self.settings.fit_jets,
                           nominal_only=not self.settings.use_views)  # fmt: skip
        parts = torch.from_numpy(rows["part_features"][rows["part_mask"].astype(bool)]).float()
        assert self.spec is not None
        if self.tokenizer is not None:
            with torch.no_grad():
                module.scaler.fit(torch.zeros(len(parts), 0), self.tokenizer.encode(parts))
        else:
            classes = self.spec.id_target(parts) if self.spec.id_classes else None
            module.scaler.fit(parts[:, list(self.spec.regression)], classes)

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> H5JetStream:
        return SeededStream(
            files, cfg.batch_size, seed=cfg.seed, block_size=cfg.block_size,
            shuffle_buffer=cfg.shuffle_buffer,
            bucket_by_length=cfg.bucket_by_length, nominal_only=not self.settings.use_views, rank=rank,
            world_size=world_size,
        )  # fmt: skip

    def hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's hidden particles, each jet's drawn from its own seed (`SeededStream`)."""
        return choose_hidden(batch["part_mask"], self.settings.mask_fraction, batch["jet_seed"])

    def parts(
        self, model: nn.Module, batch: dict[str, torch.Tensor], hidden: torch.Tensor, device: torch.device,
        count: torch.Tensor | float | None = None,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """The loss and its parts on one batch with `hidden` particles: means over them, i.e. sums divided
        by `count` (default: how many there are)."""
        b = to_device({**batch, "hidden": hidden}, device)
        pred = model(b["part_features"], b["part_vectors"], b["part_mask"], b["hidden"])
        target = b["part_features"][b["hidden"]]
        scaler = _unwrap(model).scaler
        if self.tokenizer is not None:  # the frozen submodule of the model (moved to the device with it)
            return token_loss(pred, self.tokenizer.encode(target), scaler.log_prior, count)
        assert self.spec is not None
        return continuous_loss(pred, target, self.spec, scaler, self.settings.loss_settings(), count)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The mean over the hidden particles of the global batch (ranks hide different numbers of them)."""
        hidden = self.hidden(batch)
        return self.parts(model, batch, hidden, device, global_count(hidden.sum(), device).float())["loss"]

    @torch.no_grad()
    def validation(
        self, module: nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        """Mean loss parts over the validation jets' hidden particles with fixed masks (seeded per jet, as in
        training, with an epoch no training run reaches), and the skill of every head over its marginal
        baseline."""
        stream = SeededStream(val_files, cfg.eval_batch_size, seed=cfg.seed, shuffle=False,
                              block_size=cfg.block_size, nominal_only=not self.settings.use_views,
                              drop_last=False)  # fmt: skip
        stream.epoch = VALIDATION_EPOCH
        was = module.training
        module.eval()
        sums: dict[str, float] = {}
        n = 0
        for i, batch in enumerate(make_loader(stream)):
            if cfg.eval_batches and i >= cfg.eval_batches:
                break
            hidden = self.hidden(batch)
            w = int(hidden.sum())
            for k, v in self.parts(module, batch, hidden, device).items():
                sums[k] = sums.get(k, 0.0) + float(v) * w
            n += w
        module.train(was)
        means = {k: v / max(n, 1) for k, v in sums.items()}
        means.update(skills(means))
        self.baselines = {k: v for k, v in means.items() if k.startswith("base_")}
        return {f"val_{k}": v for k, v in means.items() if f"val_{k}" in self.history_columns}

    def finish(self, module: nn.Module, end: RunEnd) -> dict[str, Any] | None:
        """summary.json with the validation numbers, skills and the baselines' own losses."""
        baselines = {f"val_{k}": v for k, v in getattr(self, "baselines", {}).items()}
        return super().finish(module, end.with_metrics(baselines))

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"name": self.name, "mask_fraction": s.mask_fraction, "decoder_depth": s.decoder_depth,
                "use_views": s.use_views, "tokenizer": self.tokenizer_path, "loss": s.loss,
                "weights": dict(s.loss_settings().weights), "id_smoothing": s.id_smoothing,
                "mask_order": "among-hidden"}  # fmt: skip


def _unwrap(model: nn.Module) -> nn.Module:
    """The MaskedParticleModel under a DDP / torch.compile wrapper (its buffers are read, not trained)."""
    for attr in ("module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model


class ContrastiveObjective(Unsupervised):
    """RS3L: NT-Xent over the re-simulation views of each event in a batch of whole events; under DDP the
    negatives come from every rank's part of the global batch (`contrastive.ddp_nt_xent`)."""

    name = "rs3l"
    history_columns = ("val_loss", "val_positive_top1")

    def __init__(self, settings: RS3LSettings) -> None:
        self.settings = settings

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        return ContrastiveModel(
            ParTBackbone(meta.num_features, make_size("part", cfg.size)), self.settings.projection_dim
        )

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> ViewStream:
        return ViewStream(
            files, self.settings.events_per_batch, seed=cfg.seed, rank=rank, world_size=world_size
        )

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        b = to_device(batch, device)
        return ddp_nt_xent(
            model(b["part_features"], b["part_vectors"], b["part_mask"]),
            b["event"],
            self.settings.temperature,
        )

    def validation(
        self, module: nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        s = self.settings
        return evaluate_views(module, val_files, s.events_per_batch, s.temperature, device, cfg.eval_batches)

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"name": self.name, "temperature": s.temperature, "projection_dim": s.projection_dim,
                "events_per_batch": s.events_per_batch}  # fmt: skip


def _settings(cls: type, section: dict[str, Any], name: str) -> Any:
    message = "unknown key(s) {unknown} in {what}; allowed: {allowed}"
    return cls(**strict_fields(cls, section, f"pretrain.{name}", message))


def make_objective(config: dict[str, Any], method: str, tokenizer: str | Path | None = None) -> Objective:
    """The objective of a pretraining method from the workflow config's `pretrain:` section."""
    section = config.get("pretrain", {})
    if method == TOKENIZER:
        s = _settings(TokenizerSettings, section.get("tokenizer", {}), "tokenizer")
        return TokenizerObjective(s.codebook_size, s.latent_dim, s.hidden, s.beta)
    if method in ("mpm", "mpm_tok"):
        if method == "mpm_tok" and not tokenizer:
            raise ValueError(
                "pretraining method 'mpm_tok' needs a trained tokenizer checkpoint (--tokenizer)"
            )
        return MaskedParticleObjective(_settings(MPMSettings, section.get("mpm", {}), "mpm"),
                                       tokenizer if method == "mpm_tok" else None)  # fmt: skip
    if method == "rs3l":
        return ContrastiveObjective(_settings(RS3LSettings, section.get("rs3l", {}), "rs3l"))
    raise ValueError(f"unknown pretraining method {method!r}; known: {[*METHODS, TOKENIZER]}")
