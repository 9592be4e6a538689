"""Open-source logic synthesis of a student's Verilog with yosys `synth_xilinx`: an estimate, not a sign-off.

What it gives: the Xilinx primitives yosys maps the design to (LUT1-6, flip-flops, CARRY4/8 carry chains,
DSP48E, block RAM) and the deepest register-to-register path in cells (`ltp` on the design without its
flip-flops and clock buffer, so every path ends at a register). What it cannot give: placement, routing or
timing. So the timing flag here is an estimate from that path: LUT levels x `lut_level_ns` + carry cells x
`carry_level_ns` (both in `fpga.open_flow`; defaults a rough UltraScale+ -2 LUT-plus-local-route and
CARRY-cell delay), compared with the clock period. Vivado's
numbers (`synthesis.json` "vendor") replace all of this where a licence exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

LUT = re.compile(r"^LUT[1-6](_2)?$")
FF = re.compile(r"^FD[RSCP]E(_1)?$")
CARRY = re.compile(r"^CARRY(4|8)$")
DSP = re.compile(r"^DSP48E[12]?$")
BRAM = re.compile(r"^RAMB(18|36)")
PATH_LINE = re.compile(r"^\s*(\d+):\s*(.*?)(?:\s+\(via\s+(.+)\))?\s*$")


def family_of(part: str) -> str:
    """yosys `synth_xilinx -family` of a Xilinx part: UltraScale+ (xcup), UltraScale (xcu), 7-series (xc7)."""
    p = part.lower()
    if p.startswith("xczu") or re.match(r"^xc(vu|ku)\d+p", p):
        return "xcup"
    if p.startswith(("xcvu", "xcku")):
        return "xcu"
    if p.startswith("xc7"):
        return "xc7"
    raise ValueError(f"fpga.hls.part {part!r}: set fpga.open_flow.family (xcup, xcu or xc7) for yosys")


def count_cells(by_type: dict[str, int]) -> dict[str, int]:
    """LUT / FF / CARRY / DSP / BRAM totals from yosys's `stat -json` cells by type."""
    totals: Counter[str] = Counter()
    for cell, n in by_type.items():
        for name, pattern in (("LUT", LUT), ("FF", FF), ("CARRY", CARRY), ("DSP", DSP), ("BRAM", BRAM)):
            if pattern.match(cell):
                totals[name] += int(n)
    return {k: int(totals[k]) for k in ("LUT", "FF", "CARRY", "DSP", "BRAM")}


def parse_ltp(text: str) -> dict[str, int]:
    """Longest topological path from `ltp -noff`: its length in cells, and how many of those are carry
    cells (yosys names them after the techmap's carry4/carry8 instances)."""
    vias = [m.group(3) for line in text.splitlines() if (m := PATH_LINE.match(line)) and m.group(3)]
    carry = sum(1 for v in vias if "carry" in v.lower())
    return {"cells": len(vias), "carry_cells": carry, "lut_levels": len(vias) - carry}


def synthesise_verilog(
    sources: list[str | Path], top: str, family: str, out_dir: str | Path, clock_period: float,
    lut_level_ns: float, carry_level_ns: float, timeout_s: float = 3600,
) -> dict[str, Any]:  # fmt: skip
    """Run yosys synth_xilinx on `sources` (top module `top`); resources, logic depth, timing estimate."""
    yosys = shutil.which("yosys")
    if yosys is None:
        return {"status": "skipped", "reason": "yosys is not on PATH (envs/fpga-tools.sh installs it)"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stat, ltp = out / "yosys_stat.json", out / "yosys_ltp.txt"
    script = (
        f"read_verilog {' '.join(str(Path(s).resolve()) for s in sources)}; "
        f"synth_xilinx -family {family} -top {top} -flatten -noiopad; "
        # flip-flops and the clock buffer left out of the selection: paths end at registers
        f"tee -q -o {stat} stat -json; tee -q -o {ltp} ltp -noff * t:FD* %d t:BUFG* %d"
    )
    t0 = time.perf_counter()
    try:
        run = subprocess.run([yosys, "-q", "-l", str(out / "yosys.log"), "-p", script], capture_output=True,
                             text=True, timeout=timeout_s, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:  # a large fully parallel student on a slow node: say so, keep the rest
        reason = f"yosys ran past fpga.open_flow.yosys_timeout_s = {timeout_s:g} s (log: {out / 'yosys.log'})"
        return {"status": "timeout", "tool": run_version(yosys), "reason": reason}
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"yosys synth_xilinx failed on {top}: {' | '.join(tail)}")
    by_type = json.loads(stat.read_text())["design"]["num_cells_by_type"]
    path = parse_ltp(ltp.read_text())
    path_ns = path["lut_levels"] * lut_level_ns + path["carry_cells"] * carry_level_ns
    return {
        "status": "done",
        "tool": run_version(yosys),
        "family": family,
        "resources": count_cells(by_type),
        "cells_by_type": {k: int(v) for k, v in sorted(by_type.items())},
        "logic_depth": path,
        "timing_estimate": {
            "method": "longest register-to-register path (yosys ltp -noff): LUT levels x lut_level_ns + "
            "carry cells x carry_level_ns; no placement or routing",
            "lut_level_ns": lut_level_ns,
            "carry_level_ns": carry_level_ns,
            "critical_path_ns": round(path_ns, 3),
            "clock_period_ns": clock_period,
            "timing_met": bool(path_ns <= clock_period),
        },
        "yosys_s": round(time.perf_counter() - t0, 1),
    }


def run_version(tool: str) -> str:
    out = subprocess.run([tool, "-V"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0]
