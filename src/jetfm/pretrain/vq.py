"""The particle tokenizer of tokenised masked particle modelling: a VQ-VAE on single particles (Golling et al.
2024 train one first and predict its codes).

Encoder MLP -> a unit-length latent -> nearest of K unit-length codes (cosine lookup; normalised codes are
used much more evenly than raw ones, Yu et al. 2022) -> decoder MLP back to the standardised features.
Straight-through gradients, codebook + beta x commitment loss. The codebook starts from the latents of
randomly chosen training particles (seeded), which avoids most dead codes from the start. Reported on the
validation split: reconstruction MSE next to that of predicting the per-feature mean (the VQ-VAE must beat
it), the fraction of codes used, and the perplexity exp(H(code usage)).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.pretrain.unsupervised import Unsupervised
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream, ShardMeta, make_loader
from jetfm.train.ddp import global_count
from jetfm.train.objectives import to_device


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ParticleVQVAE(nn.Module):
    """Particle features (N, F) -> token ids (N,) and reconstructions (N, F)."""

    def __init__(self, num_features: int, codebook_size: int = 512, latent_dim: int = 16, hidden: int = 128):
        super().__init__()
        self.encoder = mlp([num_features, hidden, hidden, latent_dim])
        self.decoder = mlp([latent_dim, hidden, hidden, num_features])
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, latent_dim), dim=1))
        self.codebook_size = codebook_size

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(x.float()), dim=-1)

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest code (cosine) of each latent: (ids, codes)."""
        codes = F.normalize(self.codebook, dim=1)
        ids = (z @ codes.t()).argmax(dim=-1)
        return ids, codes[ids]

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantise(self.latent(x))[0]

    def forward(
        self, x: torch.Tensor, beta: float = 0.25, count: torch.Tensor | float | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss = reconstruction MSE + codebook + beta x commitment, each a mean over particles and
        features: sums divided by `count` particles (default len(x); under DDP `ddp.global_count`, so W
        ranks optimise the mean over the global batch's particles) times the feature width."""
        n = len(x) if count is None else count
        z = self.latent(x)
        ids, q = self.quantise(z)
        recon = self.decoder(z + (q - z).detach())  # straight-through
        mse = F.mse_loss(recon, x.float(), reduction="sum") / (n * x.shape[1])
        sq = z.shape[1] * n
        vq = (
            F.mse_loss(q, z.detach(), reduction="sum") / sq
            + beta * F.mse_loss(z, q.detach(), reduction="sum") / sq
        )
        return {"loss": mse + vq, "mse": mse.detach(), "ids": ids, "recon": recon}

    @torch.no_grad()
    def init_codebook(self, particles: torch.Tensor, generator: torch.Generator) -> None:
        """Codes := latents of K randomly chosen particles (with replacement if fewer than K)."""
        z = self.latent(particles)
        idx = torch.randint(len(z), (self.codebook_size,), generator=generator)
        if len(z) >= self.codebook_size:
            idx = torch.randperm(len(z), generator=generator)[: self.codebook_size]
        self.codebook.copy_(z[idx])


def real_particles(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(T, F): the features of every real particle of a batch."""
    return batch["part_features"][batch["part_mask"].bool()]


def usage_stats(ids: np.ndarray, codebook_size: int) -> dict[str, float]:
    counts = np.bincount(ids, minlength=codebook_size).astype(np.float64)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    return {
        "codebook_usage": float((counts > 0).mean()),
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
    }


@torch.no_grad()
def evaluate_tokenizer(
    module: ParticleVQVAE, files: list[str], cfg: TrainConfig, device: torch.device, max_batches: int = 0
) -> dict[str, float]:
    """Validation MSE, the MSE of the per-feature mean of the same particles, code usage and perplexity."""
    stream = H5JetStream(files, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size,
                         nominal_only=False, drop_last=False)  # fmt: skip
    was = module.training
    module.eval()
    xs, recons, ids = [], [], []
    for i, batch in enumerate(make_loader(stream)):
        if max_batches and i >= max_batches:
            break
        x = real_particles(to_device(batch, device))
        out = module(x)
        xs.append(x.float().cpu())
        recons.append(out["recon"].float().cpu())
        ids.append(out["ids"].cpu())
    module.train(was)
    x, r = torch.cat(xs), torch.cat(recons)
    return {
        "val_mse": F.mse_loss(r, x).item(),
        "val_mse_of_mean": F.mse_loss(x.mean(0, keepdim=True).expand_as(x), x).item(),
        **{f"val_{k}": v for k, v in usage_stats(torch.cat(ids).numpy(), module.codebook_size).items()},
    }


class TokenizerObjective(Unsupervised):
    """Train the particle VQ-VAE on every real particle of the training jets and views (no labels)."""

    name = "vqvae"
    history_columns = ("val_loss", "val_mse", "val_mse_of_mean", "val_codebook_usage", "val_perplexity")

    def __init__(self, codebook_size: int = 512, latent_dim: int = 16, hidden: int = 128, beta: float = 0.25):
        self.codebook_size, self.latent_dim, self.hidden, self.beta = codebook_size, latent_dim, hidden, beta

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        return ParticleVQVAE(meta.num_features, self.codebook_size, self.latent_dim, self.hidden)

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        stream = H5JetStream(train_files[:1], 256, shuffle=False, nominal_only=False, drop_last=False)
        x = real_particles(next(iter(make_loader(stream))))
        module.init_codebook(x, torch.Generator().manual_seed(cfg.seed))

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> H5JetStream:
        return H5JetStream(
            files, cfg.batch_size, seed=cfg.seed, block_size=cfg.block_size,
            shuffle_buffer=cfg.shuffle_buffer,
            nominal_only=False, rank=rank, world_size=world_size,
        )  # fmt: skip

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The mean over every real particle of the global batch (ranks hold different particle counts)."""
        x = real_particles(to_device(batch, device))
        return model(x, self.beta, global_count(len(x), device).float())["loss"]

    def validation(
        self, module: nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        stats = evaluate_tokenizer(module, val_files, cfg, device, cfg.eval_batches)
        return {"val_loss": stats["val_mse"], **stats}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "codebook_size": self.codebook_size, "latent_dim": self.latent_dim,
                "hidden": self.hidden, "beta": self.beta}  # fmt: skip


def load_tokenizer(path: str | Path, num_features: int) -> ParticleVQVAE:
    """The trained tokenizer of a `vqvae` run's checkpoint (clear error for anything else)."""
    from jetfm.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    desc = ckpt.get("objective", {})
    if desc.get("name") != "vqvae":
        raise ValueError(
            f"checkpoint {path} is not a tokenizer (objective {desc.get('name')!r}, expected 'vqvae')"
        )
    if ckpt.get("num_features") != num_features:
        raise ValueError(
            f"tokenizer {path} has {ckpt.get('num_features')} input features, data has {num_features}"
        )
    tok = ParticleVQVAE(num_features, desc["codebook_size"], desc["latent_dim"], desc["hidden"])
    tok.load_state_dict(ckpt["model"])
    return tok
