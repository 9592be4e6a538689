"""Student names and kinds: a student's kind is `fpga.sizes.<name>.kind` if given, else its name, so one kind
can be configured several times under different names (`hgq_mlp_b0: {kind: hgq_mlp, ebops_beta: 0}`). The
kind picks the model class (`students.build_student`) and the route (`routes.route_of`).

The config schema lists the same kinds (`fpga.sizes.<name>.kind`'s enum; `tests/fpga/test_routes.py` keeps
the two equal), so validation needs no import of this package.
"""

from __future__ import annotations

from typing import Any

# kind -> route (`routes.ROUTES`): hand-written quantisers + PyTorch frontend, or HGQ2 + Keras-3 frontend
KINDS = {"jet_mlp": "torch_core", "deepsets": "torch_core", "attention": "hgq", "hgq_mlp": "hgq"}


def kind_of(name: str, size: dict[str, Any] | None = None) -> str:
    """The student's kind (`size` is its `fpga.sizes` entry); ValueError in one line when unknown."""
    kind = (size or {}).get("kind", name)
    if kind in KINDS:
        return kind
    expected = ", ".join(KINDS)
    if "kind" in (size or {}):
        raise ValueError(
            f"fpga.sizes.{name}.kind is {kind!r}, not a student kind (expected one of {expected})"
        )
    raise ValueError(
        f"student {name!r} is not a student kind and has no fpga.sizes.{name}.kind (expected one of "
        f"{expected}, or fpga.sizes.{name}.kind naming one)"
    )


def split_kind(name: str, size: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(kind, the size without `kind`): what the model constructor gets."""
    size = dict(size or {})
    kind = kind_of(name, size)
    size.pop("kind", None)
    return kind, size
