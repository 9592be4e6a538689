"""Firmware shape and the open-source flow: a fully parallel, pipelined particle loop in the generated hls4ml
project; interval-sized accumulators; Verilog of a student simulated with Verilator bit for bit against the C
emulation; yosys synth_xilinx resource counts. Each tool-dependent test skips on its own without its tool."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from jetfm.fpga.compress import (
    CompressSpec,
    FixedType,
    Quantize,
    QuantReLU,
    apply_compression,
    export_plain,
    prune_to,
)
from jetfm.fpga.convert import HLSSettings, convert, emulate, exact_types, qat_forward, quantised_logits
from jetfm.fpga.rtl import run_rtl
from jetfm.fpga.students import build_student
from jetfm.fpga.yosys import count_cells, family_of, parse_ltp, synthesise_verilog

TOOLS = {t: shutil.which(t) for t in ("g++", "verilator", "yosys")}
TOOLS["da4ml"] = importlib.util.find_spec("da4ml") and "da4ml"  # the Python package (pip install hls4ml[da])


def needs(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if not TOOLS[t]]
    return pytest.mark.skipif(
        bool(missing), reason=f"needs {', '.join(missing)} (envs/fpga-tools.sh, .[fpga])"
    )


def _student(name: str, size: dict, sparsity: float = 0.5, seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    student = build_student(name, 17, 8, 10, size)
    spec = CompressSpec()
    apply_compression(student.core, spec)
    student.input_quant = Quantize(spec.types()["input"])
    prune_to(student.core, sparsity)
    return student.eval()


def test_particle_student_project_is_one_pipeline_with_ii_1_and_a_partial_loop_is_not(tmp_path: Path) -> None:
    spec = CompressSpec()
    student = _student("deepsets", {"particles": 8, "phi_dims": [6, 6], "f_dims": [6]})
    convert(student.core, student.input_shape, spec, HLSSettings(), tmp_path / "full", compile=False)
    top = (tmp_path / "full" / "firmware" / "myproject.cpp").read_text()
    assert "#pragma HLS PIPELINE II=1" in top and "DATAFLOW" not in top
    params = (tmp_path / "full" / "firmware" / "parameters.h").read_text()
    partitions = re.findall(r"n_partitions = (\d+);", params)
    assert partitions == ["1", "1"]  # both Φ layers: all 8 particles in one go
    assert set(re.findall(r"reuse_factor = (\d+);", params)) == {"1"}
    # What the default avoids: two partitions make hls4ml's automatic style a top-level DATAFLOW.
    partial = HLSSettings(parallelization_factor=4, pipeline_style="auto")
    convert(student.core, student.input_shape, spec, partial, tmp_path / "partial", compile=False)
    assert "#pragma HLS DATAFLOW" in (tmp_path / "partial" / "firmware" / "myproject.cpp").read_text()
    with pytest.raises(ValueError, match="pipeline_style 'loop'"):
        HLSSettings(pipeline_style="loop")


def test_accumulators_are_sized_by_the_weights_interval_not_the_worst_case() -> None:
    spec = CompressSpec()
    student = _student("jet_mlp", {"dims": [16, 8]}, sparsity=0.9)
    plain = export_plain(student.core)
    types = exact_types(plain, spec)
    t = spec.types()
    x, w = t["input"], t["weight"]
    # Worst case: I_in + I_w + ceil(log2 n_in) + 1 = 6 + 2 + 3 + 1 for the first layer (8 inputs).
    first = re.match(r"ap_fixed<(\d+),(\d+)>", types[0]["accum"])
    assert first is not None
    width, integer = int(first[1]), int(first[2])
    assert width - integer == x.frac + w.frac  # fraction bits: exact products
    assert integer < x.integer + w.integer + 3 + 1  # 90 % pruned: far from the worst case
    # ... and still exact: the largest |W x + b| over the input box fits in the type.
    lin = plain[0]
    bound = (lin.weight.abs().sum(1) * max(-x.lo, x.hi) + lin.bias.abs()).max().item()
    assert bound <= 2.0 ** (integer - 1)


@needs("g++")
def test_interval_sized_jet_mlp_stays_bit_exact_at_the_corners_of_its_input_box(tmp_path: Path) -> None:
    spec = CompressSpec()
    student = _student("jet_mlp", {"dims": [8]}, sparsity=0.5)
    model, _ = convert(student.core, student.input_shape, spec, HLSSettings(), tmp_path / "hls")
    t = spec.types()["input"]
    w = export_plain(student.core)[0].weight.detach().numpy()
    # Inputs that drive each first-layer neuron to its extremes (each weight's sign, at the type's limits).
    corners = np.concatenate([np.where(w >= 0, t.hi, t.lo), np.where(w >= 0, t.lo, t.hi)])
    emulated, _ = emulate(model, corners)
    assert np.array_equal(emulated, qat_forward(student, corners))


@needs("g++", "verilator", "da4ml")
def test_jet_mlp_verilog_simulates_bit_for_bit_like_the_c_emulation(tmp_path: Path) -> None:
    spec = CompressSpec()
    student = _student("jet_mlp", {"dims": [8]}, sparsity=0.5)
    model, _ = convert(student.core, student.input_shape, spec, HLSSettings(), tmp_path / "hls")
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 4, (400, 8))
    x = spec.types()["input"].quantize(torch.from_numpy(raw)).numpy()
    emulated, _ = emulate(model, raw)
    summary, rtl = run_rtl(student.core, student.input_shape, spec, tmp_path / "rtl", 5.0, 2.0,
                           "xcvu13p-flga2577-2-e", simulate=x)  # fmt: skip
    assert summary["simulation"] == "done" and rtl is not None
    assert np.array_equal(rtl, emulated) and np.array_equal(rtl, quantised_logits(student.core, x))
    assert summary["latency_cycles"] == summary["pipeline_stages"] >= 2 and summary["interval_cycles"] == 1
    assert summary["verilator"].startswith("Verilator")


@needs("verilator", "da4ml")
def test_deepsets_verilog_takes_particles_in_order_and_rejects_round_half_even(tmp_path: Path) -> None:
    spec = CompressSpec()
    student = _student("deepsets", {"particles": 4, "phi_dims": [4], "f_dims": [4]}, sparsity=0.3)
    rng = np.random.default_rng(2)
    x = spec.types()["input"].quantize(torch.from_numpy(rng.normal(0, 2, (64, 18, 4)))).numpy()
    _, rtl = run_rtl(student.core, student.input_shape, spec, tmp_path / "rtl", 5.0, 3.0,
                     "xcvu13p-flga2577-2-e", simulate=x)  # fmt: skip
    assert rtl is not None and np.array_equal(rtl, quantised_logits(student.core, x))
    student.core[1] = QuantReLU(FixedType.parse("ap_ufixed<12,5,AP_RND_CONV,AP_SAT>"))  # Φ's ReLU
    with pytest.raises(ValueError, match="AP_RND_CONV is not supported by da4ml"):
        run_rtl(student.core, student.input_shape, spec, tmp_path / "rne", 5.0, 3.0, "xcvu13p-flga2577-2-e")


@needs("yosys", "da4ml")
def test_yosys_maps_each_student_to_luts_and_flip_flops(tmp_path: Path) -> None:
    spec = CompressSpec()
    sizes = {"jet_mlp": {"dims": [4]}, "deepsets": {"particles": 2, "phi_dims": [3], "f_dims": [3]}}
    for name, size in sizes.items():
        student = _student(name, size, sparsity=0.5)
        summary, _ = run_rtl(student.core, student.input_shape, spec, tmp_path / name, 5.0, 3.0,
                             "xcvu13p-flga2577-2-e")  # fmt: skip
        r = synthesise_verilog(summary["verilog"], "jet_student", "xcup", tmp_path / name / "yosys",
                               5.0, 0.45, 0.1)  # fmt: skip
        assert r["status"] == "done" and r["tool"].startswith("Yosys"), name
        assert r["resources"]["LUT"] > 0 and r["resources"]["FF"] > 0, name
        assert r["resources"]["DSP"] == 0, name  # distributed arithmetic: adders, no multipliers
        depth, timing = r["logic_depth"], r["timing_estimate"]
        assert depth["cells"] == depth["lut_levels"] + depth["carry_cells"] > 0
        expected = depth["lut_levels"] * 0.45 + depth["carry_cells"] * 0.1
        assert timing["critical_path_ns"] == pytest.approx(expected, abs=1e-3)
        assert timing["timing_met"] == (expected <= 5.0)
    late = synthesise_verilog(summary["verilog"], "jet_student", "xcup", tmp_path / "late", 5.0, 0.45, 0.1,
                              timeout_s=0.01)  # fmt: skip
    assert late["status"] == "timeout" and "yosys_timeout_s" in late["reason"]


def test_yosys_report_parsers_and_part_families(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cells = {"LUT2": 10, "LUT6": 3, "LUT6_2": 1, "FDRE": 7, "FDSE": 1, "CARRY8": 2, "DSP48E2": 1, "MUXF7": 4}
    assert count_cells(cells) == {"LUT": 14, "FF": 8, "CARRY": 2, "DSP": 1, "BRAM": 0}
    ltp = """Longest topological path in jet_student (length=3):
    0: \\stage1_inp [3]
    1: $auto$alumacc.cc:485:replace_alu$1.X [3] (via $abc$1$auto$blifparse.cc:525:parse_blif$2)
    2: \\stage1.op_2.out [0] (via $auto$alumacc.cc:485:replace_alu$1.genblk1.slice[0].genblk1.carry4)
"""
    assert parse_ltp(ltp) == {"cells": 2, "carry_cells": 1, "lut_levels": 1}
    assert family_of("xcvu13p-flga2577-2-e") == "xcup" and family_of("xcku115-flva1517-2-e") == "xcu"
    assert family_of("xc7a100tcsg324-1") == "xc7"
    with pytest.raises(ValueError, match=r"set fpga\.open_flow\.family"):
        family_of("agfb014r24a2e2v")
    monkeypatch.setenv("PATH", "/nonexistent")
    skipped = synthesise_verilog([], "top", "xcup", tmp_path, 5.0, 0.45, 0.1)
    assert skipped["status"] == "skipped" and "yosys is not on PATH" in skipped["reason"]
    pytest.importorskip("da4ml")
    student = _student("jet_mlp", {"dims": [4]})
    x = np.zeros((3, 8))
    summary, out = run_rtl(student.core, student.input_shape, CompressSpec(), tmp_path / "rtl", 5.0, 3.0,
                           "xcvu13p-flga2577-2-e", simulate=x)  # fmt: skip
    assert out is None and summary["status"] == "written" and Path(summary["verilog"][0]).is_file()
    assert summary["simulation"] == "skipped" and "verilator is not on PATH" in summary["reason"]


@pytest.mark.parametrize("kind", ["ap_fixed", "ap_ufixed"])
@pytest.mark.parametrize("rounding", ["TRN", "RND", "RND_CONV"])
@pytest.mark.parametrize("overflow", ["WRAP", "SAT"])
def test_fixed_type_agrees_with_the_quantizers_library(kind: str, rounding: str, overflow: str) -> None:
    """`FixedType` (our ap_fixed arithmetic) against `quantizers`, the library HGQ2 and da4ml use."""
    quantizers = pytest.importorskip("quantizers.fixed_point.fixed_point_ops_np")
    t = FixedType.parse(f"{kind}<7,3,AP_{rounding},AP_{overflow}>")
    rng = np.random.default_rng(5)
    step = 2.0**-t.frac
    ties = (np.arange(-200, 200) + 0.5) * step  # exactly half-way: where TRN, RND and RND_CONV differ
    x = np.concatenate([rng.uniform(-12, 12, 2000), ties, [t.hi, t.lo, t.hi + step / 2, t.lo - step / 2]])
    ours = t.quantize(torch.from_numpy(x)).numpy()
    k, i, f = int(t.signed), t.integer - int(t.signed), t.frac
    theirs = quantizers.get_fixed_quantizer_np(rounding, overflow)(x, k, i, f)
    np.testing.assert_array_equal(ours, theirs)
