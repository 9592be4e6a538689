"""Parameter counts and measured training compute of a model on real batches.

N (non-embedding): trainable parameters outside the input embeddings (`embed`, the per-particle MLP, and
`pair_embed`, the pair-feature MLP), as Kaplan et al. count N without the token embedding. The total is
recorded too: unlike a vocabulary lookup, ParT's particle embedding does work per particle, so the
6·N·D rule (N per-token parameters, D tokens = real particles) holds best with all parameters; runs.csv
carries both ratios.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

EMBEDDING_MODULES = frozenset({"embed", "pair_embed"})


def _sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch 2.13's counter knows the CUDA attention kernels but not SDPA's fused CPU kernel, which runs wherever
# the mask is per-key only (ParT's class attention, or no pair bias): its matmuls would be missed. Counted
# like the CUDA flash kernel: QK and AV forward; the backward recomputes QK (5 matmuls).
_aten = torch.ops.aten
CPU_ATTENTION_FORMULAS = (
    {
        _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
        _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward,
    }
    if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu")
    else {}
)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """{'total': trainable parameters, 'non_embedding': those outside the input-embedding modules}."""
    total = embedding = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        total += p.numel()
        if EMBEDDING_MODULES & set(name.split(".")):  # also when wrapped, e.g. backbone.embed.*
            embedding += p.numel()
    return {"total": total, "non_embedding": total - embedding}


def training_step_flops(model: nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one forward + backward pass (cross-entropy) on `batch`, counted by torch's FlopCounterMode.

    The counter sees matrix products (mm, addmm, bmm, attention kernels, convolutions); norms, activations and
    the optimiser update are not counted (as in the 6·N·D convention). Gradients are cleared afterwards.
    SDPA's path decides the attention's backward count: the unfused (math) path stores the probabilities
    (4 matmuls), the fused kernels recompute QK (5).
    """
    was_training = model.training
    model.train()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS) as counter:
        logits = model(
            batch["part_features"], batch["part_vectors"], batch["part_mask"], batch["jet_features"]
        )
        F.cross_entropy(logits.float(), batch["label"]).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(counter.get_total_flops())


def measure_compute(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Training FLOPs per jet and per real particle, averaged over real batches, with the 6·N ratios."""
    if not batches:
        raise ValueError("no batches to measure the training compute on")
    flops = sum(training_step_flops(model, b) for b in batches)
    jets = sum(len(b["label"]) for b in batches)
    particles = int(sum(int(b["part_mask"].sum()) for b in batches))
    counts = parameter_counts(model)
    per_particle = flops / particles
    return {
        "flops_per_jet": flops / jets,
        "flops_per_particle": per_particle,
        "particles_per_jet": particles / jets,
        "ratio_to_6N_total": per_particle / (6 * counts["total"]),
        "ratio_to_6N_non_embedding": per_particle / (6 * counts["non_embedding"]),
        "probe_jets": jets,
        **{f"parameters_{k}": v for k, v in counts.items()},
    }
