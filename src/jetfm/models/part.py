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

Two layouts compute the same function (`tests/test_part_layouts.py` checks them against each other):
- *packed* (CPU eager): per-particle layers run on the batch's real particles only and the pair MLP on its
  real pairs only. Fewest FLOPs, but the index lists come from `nonzero`, a host synchronisation with a
  data-dependent shape, which stalls a GPU and breaks `torch.compile`'s CUDA backward.
- *dense* (CUDA, or under `torch.compile`): static shapes. The particle axis is padded to a multiple of 16
  (few distinct shapes to compile, and SDPA's memory-efficient kernel wants 16-aligned bias rows), padded
  slots are computed and masked, the pair MLP runs on all i <= j slot pairs from a fixed index, and under
  autocast the pair MLP and its bias are built once, natively in the attention's dtype (no fp32 LayerNorm
  round trips, no per-layer casts of a (B, H, P, P) tensor).
`layout = "auto"` (the default) picks dense on CUDA and while compiling, packed otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.models.cost import linear_macs
from jetfm.models.pairwise import dense_pair_features, valid_pair_features, valid_pairs

LAYOUTS = ("auto", "packed", "dense")
PAD_MULTIPLE = 16  # the dense layout pads the particle axis to a multiple of this


def use_dense(layout: str, x: torch.Tensor) -> bool:
    """Whether `layout` means the dense (static-shape) formulation for a batch on x's device."""
    if layout not in LAYOUTS:
        raise ValueError(f"ParT layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        return x.is_cuda or torch.compiler.is_compiling()
    return layout == "dense"


def attention_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype SDPA will compute in: autocast's when it is on for x's device, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def key_mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, P) real-particle mask -> (B, 1, 1, P) additive key bias: 0 for real keys, -inf for padded ones.

    A jet with no particles would make every attention row fully masked (softmax of all -inf = NaN): such
    a jet attends to its (zero) first slot instead. No host synchronisation.
    """
    b, p = mask.shape
    keys = mask.clone()
    keys[:, 0] |= ~mask.any(dim=1)
    bias = torch.zeros(b, 1, 1, p, dtype=dtype, device=mask.device)
    return bias.masked_fill(~keys.view(b, 1, 1, p), float("-inf"))


def pad_particles(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pad the particle axis (dim 1) of mask and tensors to a multiple of PAD_MULTIPLE (new slots padded)."""
    extra = -mask.shape[1] % PAD_MULTIPLE
    if not extra:
        return (mask, *tensors)
    return (F.pad(mask, (0, extra)), *(F.pad(t, (0, 0, 0, extra)) for t in tensors))


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
    """Pointwise MLP on the 4 pair features -> one attention bias per head, for real pairs i <= j only.

    The features are symmetric in (i, j), so half of the pairs suffice, and pairs with a padded slot are
    masked out of attention, so they are skipped too (as the reference's sparse mode does): the MLP runs on
    the batch's M real pairs, not on B * P(P+1)/2. Their bias stays zero.
    """

    def __init__(self, dims: tuple[int, ...], heads: int, in_dim: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.Linear(in_dim, d), nn.LayerNorm(d), nn.GELU()]
            in_dim = d
        # No bias on the last layer: a per-head constant on every real pair of a row cancels in the softmax,
        # so its gradient is exactly zero and Adam would only amplify rounding noise into it.
        layers.append(nn.Linear(in_dim, heads, bias=False))
        self.net = nn.Sequential(*layers)
        self.heads = heads

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, p = mask.shape
        jet, i, j = valid_pairs(mask)
        upper = self.net(valid_pair_features(vectors, jet, i, j))  # (M, H)
        # Rows of H per (jet, i, j) into a (B * P * P, H) buffer, then one copy into SDPA's (B, H, P, P).
        bias = upper.new_zeros(b * p * p, self.heads)
        bias = bias.index_put((jet * (p * p) + i * p + j,), upper)
        bias = bias.index_put((jet * (p * p) + j * p + i,), upper)
        return bias.view(b, p, p, self.heads).permute(0, 3, 1, 2).contiguous()

    def forward_dense(self, vectors: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, P, 4) 4-vectors (zero in padded slots) -> (B, H, P, P) bias in `dtype`, static shapes.

        All i <= j slot pairs from a fixed index (no `nonzero`); pairs with a padded slot get a finite bias
        that the key mask then hides. The MLP's (B, P(P+1)/2, H) output is scattered straight into the
        contiguous (B, H, P * P) layout SDPA reads, so no (B, P, P, H) tensor is permuted or copied.
        """
        b, p, _ = vectors.shape
        i, j = torch.triu_indices(p, p, device=vectors.device)
        upper = self.run(dense_pair_features(vectors, i, j), dtype).transpose(1, 2)  # (B, H, N)
        bias = upper.new_zeros(b, self.heads, p * p)
        bias = bias.index_copy(2, i * p + j, upper).index_copy(2, j * p + i, upper)
        return bias.view(b, self.heads, p, p)

    def run(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The MLP on pair rows, computed in `dtype` throughout (autocast would run each LayerNorm in fp32
        and cast every (rows, d) activation back and forth; in bf16 the rows are half the bytes)."""
        if dtype == x.dtype and not torch.is_autocast_enabled(x.device.type):
            return self.net(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bias = None if layer.bias is None else layer.bias.to(dtype)
                    x = F.linear(x, layer.weight.to(dtype), bias)
                elif isinstance(layer, nn.LayerNorm):
                    w, c = layer.weight.to(dtype), layer.bias.to(dtype)
                    x = F.layer_norm(x, layer.normalized_shape, w, c, layer.eps)
                else:
                    x = layer(x)
        return x


class Attention(nn.Module):
    """Multi-head attention through SDPA with an additive float mask, plus the per-head scale of ParT."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        # No key bias: it adds q·b to a whole row of scores, which the softmax cancels (zero gradient that
        # Adam would only turn into rounding noise; the same holds for the pair MLP's last bias).
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.head_scale = nn.Parameter(torch.ones(heads))
        self.dropout = dropout

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(B, Lq, D), (B, Lk, D) x 2 -> (B, Lq, D) before the output projection."""
        b, lq, d = q.shape
        h = self.heads
        q, k, v = (t.view(b, t.shape[1], h, d // h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        y = y * self.head_scale.view(1, h, 1, 1)
        return y.transpose(1, 2).reshape(b, lq, d)

    def forward(self, xq: torch.Tensor, xkv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Dense inputs (B, Lq, D) and (B, Lk, D): the class-attention form."""
        return self.proj(self.attend(self.q(xq), self.k(xkv), self.v(xkv), bias))

    def forward_packed(self, x: torch.Tensor, tokens: Tokens, bias: torch.Tensor) -> torch.Tensor:
        """Self-attention over packed real particles (T, D) -> (T, D).

        Projections run on the T real particles only; queries, keys and values are scattered into the
        padded (B, P) layout just for SDPA (padded keys are masked by `bias`, padded queries dropped).
        """
        y = self.attend(tokens.unpack(self.q(x)), tokens.unpack(self.k(x)), tokens.unpack(self.v(x)), bias)
        return self.proj(tokens.pack(y))


class Tokens:
    """Where the real particles of a (B, P) batch sit, to move per-particle tensors between the padded
    (B, P, D) layout and a packed (T, D) one. Per-particle layers (embedding, projections, norms, FFN) then
    skip the padded slots, which are about a third of a batch at JetClass multiplicities."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.b, self.p = mask.shape
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # flat slot of each real particle

    def pack(self, dense: torch.Tensor) -> torch.Tensor:
        return dense.reshape(self.b * self.p, -1).index_select(0, self.index)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        dense = packed.new_zeros(self.b * self.p, packed.shape[-1])
        return dense.index_copy(0, self.index, packed).view(self.b, self.p, -1)


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

    def forward(self, x: torch.Tensor, tokens: Tokens, bias: torch.Tensor) -> torch.Tensor:
        """Particle attention on packed real particles x (T, D): every particle attends to every particle."""
        x = self.drop(self.post_attn_norm(self.attn.forward_packed(self.pre_attn_norm(x), tokens, bias))) + x
        return self.ffn(x)

    def forward_dense(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The same particle attention on the padded layout x (B, P, D); padded rows are computed, unused."""
        u = self.pre_attn_norm(x)
        x = self.drop(self.post_attn_norm(self.attn(u, u, bias))) + x
        return self.ffn(x)

    def forward_cls(self, x: torch.Tensor, x_cls: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Class attention: the token x_cls (B, 1, D) attends to itself and the padded particles x."""
        u = self.pre_attn_norm(torch.cat([x_cls, x], dim=1))
        # The reference queries with the un-normalised token.
        x_cls = self.drop(self.post_attn_norm(self.attn(x_cls, u, bias))) + x_cls
        return self.ffn(x_cls)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.post_fc_norm(F.gelu(self.fc1(self.pre_fc_norm(x)))))
        return self.drop(y) + self.resid_scale * x


def self_attention(
    blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor, dense: bool
) -> torch.Tensor:
    """Particle-attention blocks over the padded x (B, P, D) -> (B, P, D), zero in padded slots; `dense`
    picks the layout the blocks run in (the module docstring says when each is faster)."""
    if dense:
        for block in blocks:
            x = block.forward_dense(x, bias)
        return torch.where(mask.unsqueeze(-1), x, 0.0)
    tokens = Tokens(mask)
    h = tokens.pack(x)
    for block in blocks:
        h = block(h, tokens, bias)
    return tokens.unpack(h)


class ParTBackbone(nn.Module):
    """The ParT body shared by every objective: particles -> (particle embeddings, jet embedding).

    `forward(part_features, part_vectors, part_mask)` returns the particle embeddings (B, P, D), zero in
    padded slots, and the jet embedding (B, D): the normalised class token after the class-attention blocks.
    Heads sit on top: the classifier (`ParticleTransformer`), the MPM decoder (`jetfm.pretrain.masking`) and
    the contrastive projection (`jetfm.pretrain.contrastive`). Checkpoints store it under the `backbone.`
    prefix; `jetfm.finetune.objective.load_backbone` loads it.

    Masked particle modelling calls it with the hidden particles removed from `part_mask`: neither their
    features nor their 4-vectors (through the pair features) reach the backbone.
    """

    def __init__(self, num_features: int, size: ParTSize | None = None) -> None:
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
        self.layout = "auto"  # auto | packed | dense: how, not what, it computes (module docstring)

    @property
    def embed_dim(self) -> int:
        return self.size.embed_dim

    def forward(
        self, part_features: torch.Tensor, part_vectors: torch.Tensor, part_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = part_mask.bool()
        b, p = mask.shape
        if use_dense(self.layout, part_features):
            x, key_bias, bias, padded = self.embed_dense(part_features, part_vectors, mask)
            x = self_attention(self.blocks, x, padded, bias, dense=True)[:, :p]
            key_bias = key_bias[..., :p]
        else:
            tokens = Tokens(mask)  # padded slots are never read: exact invariance to their content
            x = self.embed(tokens.pack(part_features))  # (T, D)
            key_bias = bias = key_mask_bias(mask, x.dtype)
            if self.pair_embed is not None:
                bias = self.pair_embed(part_vectors, mask).to(x.dtype) + key_bias
            for block in self.blocks:
                x = block(x, tokens, bias)
            x = tokens.unpack(x)

        # Class attention: keys are [cls, particles]; the class token is never masked.
        cls_bias = torch.cat([key_bias.new_zeros(b, 1, 1, 1), key_bias], dim=-1)
        x_cls = self.cls_token.expand(b, -1, -1)
        for block in self.cls_blocks:
            x_cls = block.forward_cls(x, x_cls, cls_bias)
        return x, self.norm(x_cls).squeeze(1)

    def embed_dense(
        self, part_features: torch.Tensor, part_vectors: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded-layout embedding: x (B, P', D), key bias (B, 1, 1, P'), attention bias (B, H, P', P') and
        mask (B, P'), with P' the padded length.

        Padded slots are zeroed first (`where`, so even NaN there cannot leak through a zero attention
        weight): the output stays exactly invariant to their content, as in the packed layout.
        """
        mask, part_features, part_vectors = pad_particles(mask, part_features, part_vectors)
        m = mask.unsqueeze(-1)
        x = self.embed(torch.where(m, part_features, 0.0))
        dtype = attention_dtype(x)
        key_bias = bias = key_mask_bias(mask, dtype)
        if self.pair_embed is not None:
            bias = self.pair_embed.forward_dense(torch.where(m, part_vectors, 0.0), dtype) + key_bias
        return x, key_bias, bias, mask


class ParticleTransformer(nn.Module):
    """ParT classifier: `forward(part_features, part_vectors, part_mask, jet_features) -> logits`.

    A `ParTBackbone` and a linear head on its jet embedding. `freeze_backbone()` makes it a linear probe:
    the backbone's parameters stop requiring gradients and it stays in eval mode (no dropout) even when the
    classifier is put in training mode.
    """

    def __init__(self, num_features: int, num_classes: int, size: ParTSize | None = None) -> None:
        super().__init__()
        self.backbone = ParTBackbone(num_features, size)
        self.size = self.backbone.size
        self.head = nn.Linear(self.size.embed_dim, num_classes)
        self.backbone_frozen = False

    # Read-only views of the backbone's parts for code written before the split (tests).
    embed = property(lambda self: self.backbone.embed)
    pair_embed = property(lambda self: self.backbone.pair_embed)
    blocks = property(lambda self: self.backbone.blocks)
    cls_blocks = property(lambda self: self.backbone.cls_blocks)

    def forward_macs(self, p: float) -> float:
        """Multiply-accumulates of one jet with `p` particles: particle and pair embeddings, the particle
        blocks (projections, MLP, QK and AV over p x p), the class-attention blocks, the head."""
        d = self.size.embed_dim
        macs = p * linear_macs(self.embed)
        if self.pair_embed is not None:
            macs += p * (p + 1) / 2 * linear_macs(self.pair_embed)
        for blk in self.blocks:
            per_token = linear_macs(blk.attn) + blk.fc1.in_features * blk.fc1.out_features * 2
            macs += p * per_token + 2 * p * p * d
        for blk in self.cls_blocks:  # q, proj; kv over cls + particles; QK, AV; the MLP
            macs += d * d * 2 + (p + 1) * 2 * d * d + 2 * (p + 1) * d
            macs += blk.fc1.in_features * blk.fc1.out_features * 2
        return macs + linear_macs(self.head)

    def freeze_backbone(self) -> None:
        self.backbone_frozen = True
        self.backbone.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> ParticleTransformer:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.backbone(part_features, part_vectors, part_mask)[1])
