"""Particle Transformer (Qu, Li, Qian 2022; weaver-core ParticleTransformer.py), written for SDPA.

Particle embedding MLP -> particle-attention blocks whose attention carries a per-head bias from the
pairwise features (ln Δ, ln kT, ln z, ln m²) -> class-attention blocks (a learned class token attends to the
particles) -> linear head. Blocks follow NormFormer as in the reference: pre-LN, LN after attention and in
the FFN, learned per-head scale and residual scale.

One deliberate difference: the reference normalises the raw inputs with BatchNorm. Here the particle features
arrive standardised from preprocessing and the pair features get a fixed standardisation, with LayerNorm in
the pair MLP, so a jet's output depends only on that jet: it is exactly invariant to padding and batch
composition, and DDP on W ranks equals one process on the same global batch. The JetClass-full size has
2.14M parameters like the reference (see `tests/test_models.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.models.pairwise import pair_features_at


@dataclass(frozen=True)
class ParTSize:
    """Size knobs a scaling sweep varies; the defaults are the JetClass-full configuration."""

    embed_dim: int = 128
    depth: int = 8  # particle-attention blocks
    heads: int = 8
    cls_depth: int = 2  # class-attention blocks
    ffn_ratio: int = 4
    pair_dims: tuple[int, ...] = (64, 64, 64)
    embed_dims: tuple[int, ...] | None = None  # particle embedding MLP; default (E, 4E, E) as the reference
    dropout: float = 0.1  # on the attention and FFN outputs (the reference's `dropout`)
    attn_dropout: float = 0.0  # on attention probabilities; the reference uses 0.1, but it forces SDPA's
    # unfused path on CPU and costs ~10 % of a step for no measurable gain at this scale

    def __post_init__(self) -> None:
        if self.embed_dim % self.heads:
            raise ValueError(f"ParT embed_dim={self.embed_dim} must be divisible by heads={self.heads}")
        object.__setattr__(self, "pair_dims", tuple(self.pair_dims))
        if self.embed_dims is None:
            e = self.embed_dim
            object.__setattr__(self, "embed_dims", (e, 4 * e, e))
        object.__setattr__(self, "embed_dims", tuple(self.embed_dims))
        if self.embed_dims[-1] != self.embed_dim:
            raise ValueError(f"ParT embed_dims must end in embed_dim={self.embed_dim}, got {self.embed_dims}")


class ParticleEmbed(nn.Module):
    """Per-particle MLP (LN -> Linear -> GELU) x len(dims), as the reference's `Embed`."""

    def __init__(self, in_dim: int, dims: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.LayerNorm(in_dim), nn.Linear(in_dim, d), nn.GELU()]
            in_dim = d
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PairEmbed(nn.Module):
    """Pointwise MLP on the 4 pair features -> one attention bias per head; computed on i <= j only.

    The features are symmetric in (i, j), so half of the pairs suffice (the reference does the same).
    """

    def __init__(self, dims: tuple[int, ...], heads: int, in_dim: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.Linear(in_dim, d), nn.LayerNorm(d), nn.GELU()]
            in_dim = d
        layers.append(nn.Linear(in_dim, heads))
        self.net = nn.Sequential(*layers)
        self.heads = heads

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, p = mask.shape
        i, j = torch.triu_indices(p, p, device=mask.device)
        upper = self.net(pair_features_at(vectors, mask, i, j))  # (B, P(P+1)/2, H)
        # Scatter straight into the (B, H, P, P) layout SDPA reads (flat index i * P + j), so neither the
        # forward nor the backward gather works on a permuted, strided tensor.
        upper = upper.transpose(1, 2)  # (B, H, N)
        bias = upper.new_zeros(b, self.heads, p * p)
        bias[:, :, i * p + j] = upper
        bias[:, :, j * p + i] = upper
        return bias.view(b, self.heads, p, p)


class Attention(nn.Module):
    """Multi-head attention through SDPA with an additive float mask, plus the per-head scale of ParT."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head_scale = nn.Parameter(torch.ones(heads))
        self.dropout = dropout

    def forward(self, xq: torch.Tensor, xkv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, lq, d = xq.shape
        h = self.heads
        q = self.q(xq).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(xkv).view(b, xkv.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        y = y * self.head_scale.view(1, h, 1, 1)
        return self.proj(y.transpose(1, 2).reshape(b, lq, d))


class Block(nn.Module):
    """NormFormer block: x += LN(attn(LN(x))); x = w * x + FFN(x), FFN = Linear(LN(GELU(Linear(LN x))))."""

    def __init__(
        self, dim: int, heads: int, ffn_ratio: int, dropout: float, attn_dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = dim * ffn_ratio
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attn_dropout)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.post_fc_norm = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.resid_scale = nn.Parameter(torch.ones(dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, x_cls: torch.Tensor | None = None) -> torch.Tensor:
        if x_cls is None:  # particle attention: every particle attends to every particle
            residual = x
            x = self.pre_attn_norm(x)
            x = self.attn(x, x, bias)
        else:  # class attention: the class token attends to itself and the particles
            residual = x_cls
            u = self.pre_attn_norm(torch.cat([x_cls, x], dim=1))
            x = self.attn(x_cls, u, bias)  # the reference queries with the un-normalised token
        x = self.drop(self.post_attn_norm(x)) + residual
        residual = x
        x = self.fc2(self.post_fc_norm(F.gelu(self.fc1(self.pre_fc_norm(x)))))
        return self.drop(x) + self.resid_scale * residual


class ParticleTransformer(nn.Module):
    """ParT classifier: `forward(part_features, part_vectors, part_mask, jet_features) -> logits`."""

    def __init__(self, num_features: int, num_classes: int, size: ParTSize | None = None) -> None:
        super().__init__()
        size = size or ParTSize()
        self.size = size
        self.embed = ParticleEmbed(num_features, size.embed_dims)
        self.pair_embed = PairEmbed(size.pair_dims, size.heads) if size.pair_dims else None
        self.blocks = nn.ModuleList(
            Block(size.embed_dim, size.heads, size.ffn_ratio, size.dropout, size.attn_dropout)
            for _ in range(size.depth)
        )
        self.cls_blocks = nn.ModuleList(
            Block(size.embed_dim, size.heads, size.ffn_ratio, 0.0) for _ in range(size.cls_depth)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size.embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(size.embed_dim)
        self.head = nn.Linear(size.embed_dim, num_classes)

    def forward(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = part_mask.bool()
        b, p = mask.shape
        # A jet with no particles would make every attention row fully masked (softmax of all -inf = NaN):
        # let such a jet attend to its (zeroed) first slot instead.
        mask_keys = mask.clone()
        mask_keys[:, 0] |= ~mask.any(dim=1)
        keep = mask.unsqueeze(-1).to(part_features.dtype)
        x = self.embed(part_features * keep) * keep

        key_bias = torch.zeros(b, 1, 1, p, dtype=x.dtype, device=x.device)
        key_bias = key_bias.masked_fill(~mask_keys.view(b, 1, 1, p), float("-inf"))
        bias = key_bias
        if self.pair_embed is not None:
            bias = self.pair_embed(part_vectors, mask).to(x.dtype) + key_bias
        for block in self.blocks:
            x = block(x, bias)

        # Class attention: keys are [cls, particles]; the class token is never masked.
        cls_bias = torch.cat([key_bias.new_zeros(b, 1, 1, 1), key_bias], dim=-1)
        x_cls = self.cls_token.expand(b, -1, -1)
        for block in self.cls_blocks:
            x_cls = block(x, cls_bias, x_cls=x_cls)
        return self.head(self.norm(x_cls).squeeze(1))
