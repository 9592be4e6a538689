"""The names of the fine-tuning arms, shared by the run entry (`run`) and the protocol's bookkeeping
(`protocol`): `scratch`, `scratch-matched`, `<pretraining method>` and `<method>-probe`."""

from __future__ import annotations

SCRATCH = "scratch"
MATCHED = "scratch-matched"
PROBE = "-probe"
SWEEP_KEYS = ("lr", "weight_decay", "dropout")  # what the validation sweep may set (hparams files)


def method_label(pretrained: str | None, mode: str) -> str:
    """Run name of a fine-tuning method: 'scratch', '<pretraining method>' or '<method>-probe' (frozen)."""
    if pretrained is None:
        return SCRATCH
    return pretrained + (PROBE if mode == "frozen" else "")


def parse_method(label: str) -> tuple[str | None, str]:
    """Inverse of `method_label`: (pretraining method or None for scratch arms, mode)."""
    if label in (SCRATCH, MATCHED):
        return None, "full"
    if label.endswith(PROBE):
        return label[: -len(PROBE)], "frozen"
    return label, "full"
