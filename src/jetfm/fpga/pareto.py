"""The firmware students' accuracy / resource trade-off: hand-written fixed point (torch_core route) against
HGQ2's learned bit widths (hgq route), one row per student, and the Pareto front in (higher firmware
accuracy, fewer LUTs).

LUTs: yosys `synth_xilinx` of the Verilog when it ran, else da4ml's own cost estimate (the `luts_source`
column says which; they are not the same count, so a front across both is indicative). EBOPs: HGQ2's
effective bit operations at the calibrated widths; for the torch-core students the same sum at their type
widths (non-zero weights x input width x weight width, from `operations`), an upper bound of HGQ2's count,
which takes each weight's own effective width (`ebops_source` says which).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jetfm.figures import save_figure
from jetfm.fpga.kinds import KINDS, kind_of
from jetfm.fpga.routes import ROUTES


def luts_of(synthesis: dict[str, Any]) -> tuple[int | None, str]:
    """(LUTs, where from): yosys when it ran, else da4ml's estimate, else (None, "")."""
    o = synthesis.get("open_source") or {}
    if o.get("status") == "done" and (o.get("resources") or {}).get("LUT") is not None:
        return int(o["resources"]["LUT"]), "yosys"
    if o.get("da4ml_cost_estimate_luts"):
        return int(o["da4ml_cost_estimate_luts"]), "da4ml estimate"
    return None, ""


def _width(hls_type: str) -> int:
    """Total bits of an hls4ml precision string (`fixed<8,3,...>`, `ap_ufixed<6,0>`)."""
    return int(re.search(r"<\s*(\d+)", hls_type)[1])  # type: ignore[index]


def type_bit_operations(operations: dict[str, Any]) -> int:
    """Σ over weight layers of non-zero weights x positions x input width x weight width."""
    return sum(
        layer["nonzero_weights"]
        * layer["positions"]
        * _width(layer["input_type"])
        * _width(layer["weight_type"])
        for layer in operations.get("layers", [])
    )


def _ebops(e: dict[str, Any]) -> tuple[int | str, str]:
    if e.get("ebops") is not None:
        return e["ebops"], "HGQ2 (calibrated widths)"
    if e.get("route", "torch_core") == "torch_core" and (e.get("operations") or {}).get("layers"):
        return type_bit_operations(e["operations"]), "non-zero weights x type widths"
    return "", ""


def pareto_optimal(points: list[tuple[float, int | None]]) -> list[bool]:
    """Per (accuracy, LUTs): not dominated, i.e. no other point is at least as accurate with at most as many
    LUTs and strictly better in one. A point without a LUT count is neither optimal nor dominating."""
    known = [(a, n) for a, n in points if n is not None]

    def dominated(a: float, n: int) -> bool:
        return any(b >= a and m <= n and (b > a or m < n) for b, m in known)

    return [n is not None and not dominated(a, n) for a, n in points]


def pareto_rows(emulations: list[dict[str, Any]], syntheses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pareto.csv: per student its kind, route, quantiser, firmware (emulation) accuracy and its ratio to the
    teacher's, EBOPs, LUTs (and their source), latency, and whether it is on the front."""
    synth = {s["student"]: s for s in syntheses}
    rows = []
    for e in emulations:
        kind = e.get("kind") or kind_of(e["student"])  # emulation.json files from before the routes
        route = ROUTES[e.get("route") or KINDS[kind]]
        acc, teacher = e["summary"]["emulation"]["accuracy"], e["summary"]["float_teacher"]["accuracy"]
        luts, source = luts_of(synth.get(e["student"], {}))
        latency = (synth.get(e["student"], {}).get("open_source") or {}).get("latency_ns", "")
        rows.append({
            "student": e["student"], "kind": kind, "route": route.name, "quantiser": route.quantiser,
            "accuracy": acc, "accuracy_over_teacher": acc / teacher if teacher else "",
            **dict(zip(("ebops", "ebops_source"), _ebops(e), strict=True)),
            "luts": luts if luts is not None else "", "luts_source": source, "latency_ns": latency,
        })  # fmt: skip
    flags = pareto_optimal([(r["accuracy"], r["luts"] if r["luts"] != "" else None) for r in rows])
    for row, flag in zip(rows, flags, strict=True):
        row["pareto_optimal"] = flag
    return rows


def plot_pareto(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Firmware accuracy against LUTs (log x), hand-written and HGQ2 students marked apart, front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    placed = [r for r in rows if r["luts"] != ""]
    for quantiser, marker in (("hand-written fixed point", "o"), ("HGQ2", "^")):
        mine = [r for r in placed if r["quantiser"] == quantiser]
        if mine:
            ax.scatter([r["luts"] for r in mine], [r["accuracy"] for r in mine], marker=marker, s=40,
                       label=quantiser, zorder=3)  # fmt: skip
        for r in mine:
            ax.annotate(r["student"], (r["luts"], r["accuracy"]), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")  # fmt: skip
    front = sorted((r["luts"], r["accuracy"]) for r in placed if r["pareto_optimal"])
    if front:
        ax.step(*zip(*front, strict=True), where="post", color="0.4", lw=1, label="Pareto front", zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("LUTs (yosys, else da4ml estimate)")
    ax.set_ylabel("firmware accuracy (emulation, test jets)")
    missing = [r["student"] for r in rows if r["luts"] == ""]
    ax.set_title(
        "accuracy vs resources" + (f" (no LUTs: {', '.join(missing)})" if missing else ""), fontsize=9
    )
    ax.legend(fontsize=7)
    save_figure(fig, path, bbox_inches="tight")
