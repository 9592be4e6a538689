"""FPGA stage: fixed-point arithmetic, pruning, HCCS, distillation -> hls4ml (real g++ builds) -> emulation
(bit-exact against the QAT model's own forward, on unquantised inputs) -> Verilog, Verilator and yosys.

The hls4ml builds (tiny widths) dominate the time: ~10 s of g++ each on a free core; tests that need a
compiler or an open-source tool skip on their own when it is missing (the others run everywhere).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.fpga import config_with_teacher, phase
from fixtures.train import make_dataset
from torch import nn

from jetfm.config import load_config
from jetfm.fpga import stage
from jetfm.fpga.compress import CompressSpec, FixedType, Quantize, QuantReLU, apply_compression, prune_to
from jetfm.fpga.convert import (
    HLSSettings,
    convert,
    emulate,
    first_disagreement,
    qat_forward,
    quantised_logits,
)
from jetfm.fpga.hccs import HCCSSoftmax, calibrate, hccs, kl_to_softmax
from jetfm.fpga.opcount import operation_counts
from jetfm.fpga.students import build_student
from jetfm.fpga.synth import parse_csynth_xml, synthesise

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C++ emulation needs g++")
OPEN_TOOLS = all(shutil.which(t) for t in ("g++", "verilator", "yosys")) and bool(
    importlib.util.find_spec("da4ml")
)

# A real Vivado HLS 2018.2 report of an hls4ml project (source named inside the file).
REPORT = Path(__file__).parents[1] / "data" / "fpga" / "vivado_hls_2018_myproject_csynth.xml"


def test_fixed_point_matches_ap_fixed_rules() -> None:
    t = FixedType.parse("ap_fixed<6,3,AP_RND_CONV,AP_SAT>")  # step 1/8, range [-4, 3.875]
    x = torch.tensor([0.0625, 0.1875, -0.0625, 3.99, -9.0, 1.3], dtype=torch.float64)
    assert t.quantize(x).tolist() == [0.0, 0.25, 0.0, 3.875, -4.0, 1.25]  # ties to even, saturation
    trn = FixedType.parse("fixed<6,3>")  # hls4ml spelling; defaults TRN (floor), WRAP
    assert trn.quantize(torch.tensor([-0.01, 4.0, 1.3], dtype=torch.float64)).tolist() == [-0.125, -4.0, 1.25]
    u = FixedType.parse("ap_ufixed<4,2,AP_RND,AP_SAT>")
    assert u.quantize(torch.tensor([-1.0, 0.125, 9.0], dtype=torch.float64)).tolist() == [0.0, 0.25, 3.75]
    assert t.hls() == "ap_fixed<6,3,AP_RND_CONV,AP_SAT>"
    with pytest.raises(ValueError, match="rounding must be"):
        FixedType.parse("ap_fixed<8,3,AP_RND_MIN_INF,AP_SAT>")
    with pytest.raises(ValueError, match=r"expected e\.g\."):
        FixedType.parse("float<8>")


def test_iterative_pruning_reaches_the_asked_sparsity_and_only_grows() -> None:
    torch.manual_seed(0)
    student = build_student("jet_mlp", 17, 8, 10, {"dims": [16, 12]})
    spec = CompressSpec(sparsity=0.7, prune_stages=3, prune_until=0.5)
    apply_compression(student.core, spec)
    schedule = [spec.sparsity_at(s, 60) for s in range(60)]
    assert schedule[0] == pytest.approx(0.7 / 3) and schedule[-1] == pytest.approx(0.7)
    assert all(a <= b for a, b in itertools.pairwise(schedule))
    previous = None
    for s in sorted(set(schedule)):
        prune_to(student.core, s)
        masks = [m.parametrizations.weight[0].mask.clone() for m in student.core if isinstance(m, nn.Linear)]
        for mask in masks:
            assert int((mask == 0).sum()) == round(s * mask.numel())
        if previous is not None:  # a pruned weight never comes back
            assert all(bool((old >= new).all()) for old, new in zip(previous, masks, strict=True))
        previous = masks
    for m in student.core:
        if isinstance(m, nn.Linear):  # the smallest magnitudes went first
            w, mask = m.parametrizations.weight.original.abs(), m.parametrizations.weight[0].mask
            assert w[mask == 0].max() <= w[mask == 1].min()


def test_hccs_matches_its_formula_and_calibration_beats_defaults() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 7, generator=g, dtype=torch.float64) * 3
    b, s, d = 10.0, 2.0, 4.0
    p = hccs(x, torch.tensor(b), torch.tensor(s), torch.tensor(d))
    for row in x.reshape(-1, 7):  # the formula of reference.md, one row at a time in plain Python
        m = max(row.tolist())
        scores = [b - s * min(m - v, d) for v in row.tolist()]
        expected = [sc / sum(scores) for sc in scores]
        got = hccs(row, torch.tensor(b), torch.tensor(s), torch.tensor(d))
        assert got.tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(p.sum(-1), torch.ones(2, 5, dtype=torch.float64))
    # Two heads with different logit scales: per-head (B, S, D) fits each; the default set fits neither.
    logits = torch.stack([torch.randn(256, 16, generator=g) * 0.5, torch.randn(256, 16, generator=g) * 4])
    grid = {"b": tuple(float(v) for v in range(1, 33)), "s": (1.0, 2.0, 4.0), "d": (0.5, 1, 2, 3, 4, 6, 8)}
    params, kl = calibrate(logits, grid)
    default = HCCSSoftmax(heads=2)
    calibrated = HCCSSoftmax(heads=2)
    calibrated.set_params(params)
    scores = logits.unsqueeze(0).float()  # (batch 1, heads, rows, length)
    for h in range(2):
        kl_default = kl_to_softmax(logits[h], default(scores)[0, h])
        kl_cal = kl_to_softmax(logits[h], calibrated(scores)[0, h])
        assert kl_cal < kl_default
        assert float(kl_cal) == pytest.approx(float(kl[h]), rel=1e-4)
    shared, _ = calibrate(logits.reshape(1, -1, 16), grid)  # one set for both heads
    kl_shared = [kl_to_softmax(logits[h], hccs(logits[h], *shared[0])) for h in range(2)]
    assert sum(kl) < sum(kl_shared)
    assert not torch.equal(params[0], params[1])


def test_csynth_report_parser_reads_a_real_vivado_hls_report(tmp_path: Path) -> None:
    r = parse_csynth_xml(REPORT)
    assert r["part"] == "xcku115-flva1517-2-e"
    assert r["latency_cycles"] == {"best": 14, "worst": 14}
    assert r["latency_ns"] == {"best": 70.0, "worst": 70.0}  # 14 cycles at the 5.00 ns target
    assert r["interval_cycles"] == {"min": 1, "max": 1}
    assert r["resources"] == {"BRAM_18K": 18, "DSP": 792, "FF": 43219, "LUT": 21809}  # DSP48E -> DSP
    assert r["estimated_clock_ns"] == 4.168 and r["timing_met"] is True
    assert r["utilisation_percent"]["DSP"] == pytest.approx(100 * 792 / 5520, abs=1e-3)
    slow = tmp_path / "slow_csynth.xml"
    slow.write_text(REPORT.read_text().replace("<EstimatedClockPeriod>4.168<", "<EstimatedClockPeriod>5.3<"))
    assert parse_csynth_xml(slow)["timing_met"] is False
    broken = tmp_path / "broken_csynth.xml"
    broken.write_text(REPORT.read_text().replace("<Best-caseLatency>14</Best-caseLatency>", ""))
    with pytest.raises(
        ValueError, match="lacks PerformanceEstimates/SummaryOfOverallLatency/Best-caseLatency"
    ):
        parse_csynth_xml(broken)


def test_vendor_synthesis_off_missing_or_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    never = lambda: pytest.fail("no project must be made without a tool")  # noqa: E731
    off = synthesise(never, "Vitis", enabled=False, required=True)
    assert off["status"] == "skipped" and "vendor is false" in off["reason"]
    skipped = synthesise(never, "Vitis", enabled=True, required=False)
    assert skipped["status"] == "skipped" and "vitis-run" in skipped["reason"]
    with pytest.raises(RuntimeError, match="required is true but vivado_hls"):
        synthesise(never, "Vivado", enabled=True, required=True)


def _random_compressed(name: str, size: dict, spec: CompressSpec, sparsity: float) -> nn.Module:
    torch.manual_seed(3)
    student = build_student(name, 17, 8, 10, size)
    apply_compression(student.core, spec)
    student.input_quant = Quantize(spec.types()["input"])
    prune_to(student.core, sparsity)
    return student.eval()


@needs_gxx
def test_jet_mlp_emulation_rounds_raw_inputs_bit_exactly_and_trace_finds_a_planted_difference(
    tmp_path: Path,
) -> None:
    spec = CompressSpec()
    student = _random_compressed("jet_mlp", {"dims": [16, 8]}, spec, 0.5)
    model, _ = convert(student.core, student.input_shape, spec, HLSSettings(), tmp_path / "hls")
    rng = np.random.default_rng(0)
    t = spec.types()["input"]
    raw = rng.normal(0, 3, (300, 8))  # unquantised: hls4ml's input conversion rounds them (RND_CONV, SAT)
    raw[:4] = [[t.hi + 7.3] * 8, [t.lo - 2.1] * 8, [t.hi] * 8, [t.lo] * 8]  # saturation and range corners
    raw[4, :] = 2.0 ** -(t.frac + 1) * 3  # exactly half-way between two steps: ties to even
    assert not np.array_equal(t.quantize(torch.from_numpy(raw)).numpy(), raw)  # rounding really happens
    emulated, _ = emulate(model, raw)
    assert np.array_equal(emulated, qat_forward(student, raw))  # bit-exact with the QAT model itself
    x = t.quantize(torch.from_numpy(raw)).numpy()
    assert np.array_equal(emulated, quantised_logits(student.core, x))  # and with its export
    assert first_disagreement(model, student.core, x[:4]) is None
    # Plant a difference: the PyTorch side rounds the second ReLU's output coarser than the firmware.
    planted = student.core
    planted[3] = QuantReLU(FixedType.parse("ap_ufixed<6,5,AP_RND_CONV,AP_SAT>"))
    found = first_disagreement(model, planted, x[:4])
    assert found is not None and found["layer"] == "_3" and found["module"] == "QuantReLU"
    ops = operation_counts(model)
    nonzero = sum(int((m.weight != 0).sum()) for m in student.core if isinstance(m, nn.Linear))
    assert ops["totals"]["nonzero_weights"] == nonzero
    assert ops["totals"]["multiplications"] + ops["totals"]["shifts"] == nonzero


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, list[str]], Path]:
    root = tmp_path_factory.mktemp("fpga")
    files = make_dataset(root / "h5", n_train=384, n_val=64, n_test=250, max_particles=32)
    sizes = {"deepsets": {"particles": 8, "phi_dims": [8], "f_dims": [8]}, "jet_mlp": {"dims": [8]}}
    config = config_with_teacher(files, root, phase(30, warmup=3), {"phi_dims": [16, 16], "f_dims": [16]},
                                 phase(20), phase(16), sizes=sizes)  # fmt: skip
    config["fpga"]["compress"]["sparsity"] = 0.6
    return config, files, root


@needs_gxx
def test_deepsets_distils_compresses_and_emulates_the_whole_test_split(teacher_run) -> None:  # type: ignore[no-untyped-def]
    config, files, root = teacher_run
    out = root / "deepsets"
    results = stage.train_student(config, "deepsets", files, out)
    for run in ("float", "qat"):
        history = (out / run / "history.csv").read_text().splitlines()
        assert len(history) > 2 and (out / run / "checkpoint.pt").is_file()
    assert results["qat"]["objective"] == "distill" and results["qat"]["teacher"]["model"] == "pfn"
    for layer, frac in results["qat"]["sparsity"].items():  # Conv1d / Linear layers of the firmware
        n = {"0": 9 * 8, "4": 8 * 8, "6": 8 * 10}[layer]
        assert round(frac * n) >= round(0.6 * n)  # quantisation may add zeros, never remove them
    e = stage.convert_student(config, "deepsets", files["test"], out)
    assert e["n_test"] == 250  # every test jet
    assert e["argmax_agreement"] >= 0.999 and e["bit_exact"] and e["first_disagreeing_layer"] is None
    assert e["exported_model_vs_qat"]["bit_exact"]
    assert {"float_teacher", "float_student", "quantised_student", "emulation"} <= set(e["summary"])
    assert e["summary"]["emulation"] == e["summary"]["quantised_student"]
    ratio, acc = e["ratio_to_teacher"]["emulation"], e["summary"]
    assert ratio["ratio"] == pytest.approx(acc["emulation"]["accuracy"] / acc["float_teacher"]["accuracy"])
    assert ratio["n"] == 250 and 0 <= ratio["se"] < 0.5  # 0 when student and teacher err on the same jets
    assert e["operations"]["layers"][0]["positions"] == 8  # Φ runs once per particle slot
    saved = json.loads((out / "emulation.json").read_text())
    assert saved["max_abs_output_diff"] == 0.0 and (out / "hls" / "firmware" / "myproject.cpp").is_file()
    if OPEN_TOOLS:  # the RTL of the trained student, simulated on test jets, one jet per clock
        rtl = e["rtl"]
        assert rtl["simulation"] == "done" and rtl["vs_emulation"]["jets"] == 250
        assert rtl["vs_emulation"]["bit_exact"] and rtl["vs_quantised_pytorch"]["bit_exact"]
        assert e["summary"]["rtl"] == e["summary"]["emulation"] and rtl["interval_cycles"] == 1
    s = stage.synthesise_student(config, "deepsets", files["test"], out)
    assert s["vendor"]["status"] == "skipped" and "vendor is false" in s["vendor"]["reason"]
    assert set(s["tools"]) == {"hls4ml", "da4ml", "verilator", "yosys"} and s["tools"]["hls4ml"]
    if OPEN_TOOLS:
        o = s["open_source"]
        assert o["status"] == "done" and o["label"].startswith("open-source estimate")
        assert o["resources"]["LUT"] > 0 and o["resources"]["FF"] > 0 and o["logic_depth"]["cells"] > 0
        assert o["latency_cycles"] == e["rtl"]["latency_cycles"] and isinstance(
            o["timing_estimate"]["timing_met"], bool
        )
        assert s["tools"]["yosys"].startswith("Yosys")
    tables = [str(root / name) for name in ("accuracy.csv", "synthesis.csv", "headline.rst", "trigger.csv")]
    stage.write_tables([str(out / "emulation.json")], [str(out / "synthesis.json")], *tables)
    trigger = (root / "trigger.csv").read_text().splitlines()  # signal classes x 2 rates, emulated logits
    assert trigger[0].startswith("student,signal,background")
    assert len(trigger) == 1 + 2 * len(e["trigger"]["classes"])
    assert all(r[0]["student"]["background_efficiency"] <= 0.01 for r in e["trigger"]["classes"].values())
    headline = (root / "headline.rst").read_text()  # the front page's line: accuracy, exactness, hardware
    acc = e["summary"]["emulation"]["accuracy"]
    assert f"``deepsets``: accuracy {acc:.3f}" in headline and "emulation bit-exact" in headline
    assert "LUT" in headline and ("open-source estimate" in headline or not OPEN_TOOLS)
    table = (root / "accuracy.csv").read_text().splitlines()
    assert len(table) >= 5 and table[0].startswith("student,model,accuracy,macro_auc")
    synth_table = (root / "synthesis.csv").read_text().splitlines()
    assert len(synth_table) == 2 and "open_status" in synth_table[0] and "vendor_status" in synth_table[0]
    if OPEN_TOOLS:  # above fpga.open_flow.yosys_max_luts of da4ml's estimate, yosys is not run: said so
        flow = {**config["fpga"].get("open_flow", {}), "yosys_max_luts": 1}
        capped_config = {**config, "fpga": {**config["fpga"], "open_flow": flow}}
        capped = stage.synthesise_student(capped_config, "deepsets", files["test"], out)["open_source"]
        assert capped["status"] == "written" and "yosys_max_luts = 1" in capped["reason"]
        assert capped["da4ml_cost_estimate_luts"] > 1 and "resources" not in capped
    assert ("open_LUT" in synth_table[0]) == OPEN_TOOLS


def test_distillation_caches_the_teacher_once_and_matches_it(teacher_run) -> None:  # type: ignore[no-untyped-def]
    from jetfm.fpga.distill import Distill
    from jetfm.train.config import from_workflow
    from jetfm.train.objectives import classify

    config, files, _ = teacher_run
    objective = Distill("jet_mlp", config["fpga"]["teacher"], size={"dims": [8]}, temperature=2.0, alpha=0.5)
    cfg = from_workflow(config, "jet_mlp", config["fpga"]["train"])
    stream = objective.stream(files["train"], cfg, 0, 1)
    student = objective.build(cfg, stream.meta)
    objective.prepare(student, files["train"], cfg)
    assert len(objective._teacher_logits) == 384  # one entry per training jet
    batch = next(iter(stream))
    direct = classify(objective.teacher, batch, torch.device("cpu"))
    torch.testing.assert_close(objective.teacher_logits(batch, torch.device("cpu")), direct)
    loss = objective.loss(student, batch, torch.device("cpu"))
    loss.backward()
    assert loss.item() > 0 and student.core[0].weight.grad is not None


def test_phase_configs_layer_train_section_fpga_phase_and_student_overrides() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "config.yaml")
    config["fpga"]["overrides"] = {"jet_mlp": {"train": {"lr": 0.002}}}
    mlp, deepsets = (stage._phase_config(config, s, "train", None) for s in ("jet_mlp", "deepsets"))
    assert mlp.lr == 0.002 and deepsets.lr == config["fpga"]["train"]["lr"]
    assert mlp.batch_size == config["train"].get("batch_size", 64)  # from the train section
    assert stage._phase_config(config, "jet_mlp", "qat", {"threads": 1}).lr == config["fpga"]["qat"]["lr"]
    config["fpga"]["overrides"] = {"deepsets": {"qat": {"not_a_key": 1}}}
    with pytest.raises(ValueError, match="unknown training config key"):
        stage._phase_config(config, "deepsets", "qat", None)


def test_distillation_temperature_and_alpha_are_chosen_on_validation(teacher_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, files, _ = teacher_run
    fpga = {**config["fpga"], "distill": {"temperature": 4.0, "alpha": 0.7, "choose": {"alpha": [0.0, 1.0]}}}
    assert stage.distill_grid(fpga["distill"]) == [
        {"temperature": 4.0, "alpha": 0.0}, {"temperature": 4.0, "alpha": 1.0},
    ]  # fmt: skip
    assert stage.distill_grid({"temperature": 2.0, "choose": {"temperature": [2.0]}}) == []  # one point: off
    out = tmp_path / "jet_mlp"
    results = stage.train_student({**config, "fpga": fpga}, "jet_mlp", files, out)
    choice = json.loads((out / "distill_choice.json").read_text())
    points = choice["points"]
    assert [p["alpha"] for p in points] == [0.0, 1.0] and all(p["n_val"] == 64 for p in points)
    best = max(points, key=lambda p: p["val_accuracy"])
    assert choice["chosen"] == {"temperature": 4.0, "alpha": best["alpha"]}
    chosen_run = out / "distill_sweep" / f"T4_a{best['alpha']:g}"
    assert (out / "float" / "metrics.json").read_bytes() == (chosen_run / "metrics.json").read_bytes()
    assert results["train"]["accuracy"] == json.loads((chosen_run / "metrics.json").read_text())["accuracy"]
    assert results["qat"]["objective"] == "distill" and (out / "qat" / "checkpoint.pt").is_file()
