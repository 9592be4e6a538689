"""High-level synthesis with the vendor tool when it exists, and the parser of its C-synthesis report.

`synthesise` runs hls4ml's `build(csim=False, synth=True)` only when `vitis-run` (Vitis backend) or
`vivado_hls` (Vivado backend) is on PATH, and parses `<project>_csynth.xml`, the report Vivado HLS and Vitis
HLS write under `<prj>/solution1/syn/report/` (the fields hls4ml's own `report/vivado_report.py` reads:
UserAssignments/{Part,TargetClockPeriod}, PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod,
PerformanceEstimates/SummaryOfOverallLatency/{Best,Worst}-caseLatency and Interval-{min,max},
AreaEstimates/{Resources,AvailableResources}/{BRAM_18K,DSP|DSP48E,FF,LUT,URAM}). Without a tool it writes
the reason; with `required` it fails instead. Where no licence exists, `jetfm.fpga.yosys` gives the
open-source estimate beside it.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLS = {"Vitis": "vitis-run", "Vivado": "vivado_hls"}
RESOURCES = ("BRAM_18K", "DSP", "FF", "LUT", "URAM")


def find_tool(backend: str) -> str | None:
    """Path of the synthesis tool hls4ml's `backend` runs, or None."""
    tool = TOOLS.get(backend)
    if tool is None:
        raise ValueError(f"fpga.hls.backend {backend!r}: synthesis supports {sorted(TOOLS)}")
    return shutil.which(tool)


def _text(root: ET.Element, path: str, report: Path) -> str:
    node = root.find(path)
    if node is None or node.text is None:
        raise ValueError(f"HLS report {report} lacks {path}: not a Vivado/Vitis HLS csynth.xml")
    return node.text.strip()


def _int(text: str) -> int | None:
    return int(text) if text.strip().lstrip("-").isdigit() else None  # "undef" for unbounded loops


def parse_csynth_xml(report: str | Path) -> dict[str, Any]:
    """Latency (cycles, ns), initiation interval, resources and their % of the device from csynth.xml."""
    report = Path(report)
    try:
        root = ET.parse(report).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"HLS report {report} is unreadable: {exc}") from exc
    target = float(_text(root, "UserAssignments/TargetClockPeriod", report))
    estimated = float(
        _text(root, "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod", report)
    )
    lat = "PerformanceEstimates/SummaryOfOverallLatency/"
    best, worst = (
        _int(_text(root, lat + "Best-caseLatency", report)),
        _int(_text(root, lat + "Worst-caseLatency", report)),
    )
    used: dict[str, int] = {}
    available: dict[str, int] = {}
    for section, into in (("AreaEstimates/Resources", used), ("AreaEstimates/AvailableResources", available)):
        node = root.find(section)
        if node is None:
            raise ValueError(f"HLS report {report} lacks {section}")
        for child in node:
            name = "DSP" if child.tag.startswith("DSP") else child.tag
            if name in RESOURCES and child.text is not None:
                into[name] = int(child.text)
    return {
        "part": _text(root, "UserAssignments/Part", report),
        "target_clock_ns": target,
        "estimated_clock_ns": estimated,
        "latency_cycles": {"best": best, "worst": worst},
        "latency_ns": {
            k: None if v is None else round(v * target, 3) for k, v in (("best", best), ("worst", worst))
        },
        # Vivado/Vitis HLS's own post-C-synthesis estimate of the clock; logic synthesis (vsynth) refines it
        "timing_met": estimated <= target,
        "interval_cycles": {
            "min": _int(_text(root, lat + "Interval-min", report)),
            "max": _int(_text(root, lat + "Interval-max", report)),
        },
        "resources": used,
        "available": available,
        "utilisation_percent": {
            k: round(100.0 * v / available[k], 3) for k, v in used.items() if available.get(k)
        },
        "report": str(report),
    }


def find_report(project_dir: str | Path, project: str = "myproject") -> Path:
    reports = sorted(Path(project_dir).glob(f"**/syn/report/{project}_csynth.xml"))
    if not reports:
        raise FileNotFoundError(f"no {project}_csynth.xml under {project_dir}: did C synthesis run?")
    return reports[0]


def synthesise(
    make_model: Callable[[], Any], backend: str, enabled: bool, required: bool, vsynth: bool = False
) -> dict[str, Any]:
    """Vendor C synthesis (and, with `vsynth`, Vivado logic synthesis) of `make_model()` (an hls4ml model,
    written but not compiled) when `enabled` and the tool exists: the parsed report, or the reason it was
    skipped (then no project is made at all)."""
    if not enabled:
        return {"status": "skipped", "reason": "fpga.synthesis.vendor is false (open-source estimate only)"}
    tool = find_tool(backend)
    if tool is None:
        reason = f"{TOOLS[backend]} (the {backend} HLS tool) is not on PATH; C synthesis was not run"
        if required:
            raise RuntimeError(f"fpga.synthesis.required is true but {reason}")
        return {"status": "skipped", "reason": reason}
    model = make_model()
    report = model.build(csim=False, synth=True, vsynth=vsynth)
    result = {"status": "done", "tool": tool, "vsynth": vsynth,
              **parse_csynth_xml(find_report(model.config.get_output_dir()))}  # fmt: skip
    if vsynth and isinstance(report, dict) and "VivadoSynthReport" in report:
        result["vivado_synth"] = {k: str(v) for k, v in report["VivadoSynthReport"].items()}
    return result
