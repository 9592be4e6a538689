"""The HGQ2 students (Keras models in a torch wrapper, the `hgq` route): trained by the one loop with
`Distill`, converted by hls4ml's Keras-3 frontend, and emulated bit for bit; the attention student's padding
handled as docs/fpga.md says; an `hgq_mlp` under its own name (`kind: hgq_mlp`) through the whole stage.

Skips without hgq2 (the `fpga` extra) or g++; the RTL checks need da4ml and Verilator. ~2 min on one free
core: three hls4ml builds of ~10 s each and two Verilator builds (~50 s for the 4-particle attention).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.train import make_dataset

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("hgq", reason="the attention student needs hgq2 (pip install -e .[fpga])")
pytestmark = [
    pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C++ emulation needs g++"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # Keras 3.15, numpy 2
]

from fixtures.fpga import config_with_teacher, phase  # noqa: E402

from jetfm.fpga import stage  # noqa: E402
from jetfm.fpga.hgq import convert_hgq  # noqa: E402
from jetfm.fpga.students import build_student  # noqa: E402

SIZE = {"particles": 8, "embed_dim": 8, "heads": 2, "key_dim": 4, "head_dims": [8]}
TINY = {"particles": 4, "embed_dim": 4, "heads": 1, "key_dim": 2, "head_dims": [4]}  # Verilator: ~50 s
RTL_TOOLS = bool(shutil.which("verilator")) and importlib.util.find_spec("da4ml") is not None


def _jets(n: int, slots: int, features: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    count = torch.randint(1, slots + 1, (n,), generator=g)
    mask = torch.arange(slots)[None] < count[:, None]
    return torch.randn(n, slots, features, generator=g) * 2, mask


def test_attention_student_emulates_bit_exactly_and_padding_is_inert(tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = build_student("attention", 17, 8, 10, SIZE)
    pf, mask = _jets(600, 11, 17, 0)  # 11 slots: the student keeps the leading 8
    labels = torch.randint(0, 10, (600,))
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student.train()
    for i in range(0, 600, 100):  # a few steps, so weights and bit widths are not the initial ones
        batch = slice(i, i + 100)
        loss = torch.nn.functional.cross_entropy(student(pf[batch], None, mask[batch]), labels[batch])
        opt.zero_grad()
        (loss + student.regularisation()).backward()
        opt.step()
    student.eval()
    x = student.features(pf, None, mask).numpy()
    student.calibrate(x[:400])  # the test rows' ranges may exceed these: Keras and firmware wrap alike

    # checkpoints: the state dict (fixed-order keys) restores the same model in a fresh build
    again = build_student("attention", 17, 8, 10, SIZE)
    again.load_state_dict(student.state_dict())
    reference = student.logits(x)
    assert np.array_equal(again.eval().logits(x), reference)

    model, compile_s = convert_hgq(student, "Vivado", "xcvu13p-flga2577-2-e", 5.0, 1, "Latency",
                                         "io_parallel", tmp_path / "hls")  # fmt: skip
    emulated = np.asarray(model.predict(x.astype(np.float64))).reshape(reference.shape)
    assert np.array_equal(emulated, reference), f"{int((emulated != reference).any(1).sum())} of 600 differ"
    assert compile_s > 0 and (tmp_path / "hls" / "firmware" / "myproject.cpp").is_file()

    # padding: an empty slot's contents never reach the firmware (features() zeros it) ...
    noisy = pf.clone()
    noisy[~mask] = 1e3
    assert np.array_equal(student.features(noisy, None, mask).numpy(), x)
    # ... its embedding is exactly 0 (no bias, the real-particle flag is 0 there) ...
    embed = student.keras_model.get_layer("embed")
    e = embed(torch.from_numpy(x), training=False).detach().numpy()
    assert (e[~mask[:, :8].numpy()] == 0).all() and (e[mask[:, :8].numpy()] != 0).any()
    # ... and where the empty slots sit does not matter (slot permutation invariance, bit for bit)
    perm = np.random.default_rng(1).permutation(8)
    assert np.array_equal(student.logits(x[:, perm]), reference)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, list[str]], Path]:
    root = tmp_path_factory.mktemp("attention")
    files = make_dataset(root / "h5", n_train=256, n_val=64, n_test=200, max_particles=16)
    sizes = {"attention": TINY, "hgq_mlp_t": {"kind": "hgq_mlp", "dims": [4], "ebops_beta": 1e-6}}
    pfn = {"phi_dims": [8], "f_dims": [8]}
    config = config_with_teacher(files, root, phase(10), pfn, phase(12), phase(8), sizes=sizes)
    config["fpga"]["hls"]["backend"] = "Vivado"
    config["fpga"]["open_flow"] = {"rtl_jets": 120, "yosys_max_luts": 1}  # RTL simulated; yosys not run
    return config, files, root


def test_attention_student_through_the_stage(teacher_run) -> None:  # type: ignore[no-untyped-def]
    config, files, root = teacher_run
    out = root / "attention"
    results = stage.train_student(config, "attention", files, out)
    assert results["qat"]["objective"] == "distill" and "sparsity" not in results["qat"]  # no pruning
    assert (out / "qat" / "calibrated.pt").is_file()
    e = stage.convert_student(config, "attention", files["test"], out)
    assert e["n_test"] == 200 and e["bit_exact"] and e["argmax_agreement"] == 1.0
    assert e["summary"]["emulation"] == e["summary"]["quantised_student"]
    saved = json.loads((out / "emulation.json").read_text())
    assert saved["max_abs_output_diff"] == 0.0 and saved["calibration_jets"] > 0
    rtl = e["rtl"]
    if RTL_TOOLS:  # da4ml's trace of the HGQ2 model, simulated by Verilator: bit for bit, one jet per clock
        assert rtl["simulation"] == "done" and rtl["vs_emulation"]["jets"] == 120
        assert rtl["vs_emulation"]["bit_exact"] and rtl["vs_quantised_pytorch"]["bit_exact"]
        assert rtl["interval_cycles"] == 1 and rtl["latency_cycles"] > 0
    else:
        assert rtl["status"] == "skipped" or rtl.get("simulation") == "skipped"
    s = stage.synthesise_student(config, "attention", files["test"], out)
    assert s["vendor"]["status"] == "skipped" and "vendor is false" in s["vendor"]["reason"]
    if RTL_TOOLS:
        o = s["open_source"]
        assert o["status"] == "written" and "yosys_max_luts = 1" in o["reason"]
        assert o["da4ml_cost_estimate_luts"] > 1 and o["latency_cycles"] == rtl["latency_cycles"]
    tables = [str(root / name) for name in ("accuracy.csv", "synthesis.csv", "headline.rst")]
    stage.write_tables([str(out / "emulation.json")], [str(out / "synthesis.json")], *tables)
    headline = (root / "headline.rst").read_text()
    assert "``attention``" in headline and "emulation bit-exact" in headline
    assert ("RTL bit-exact" in headline) == RTL_TOOLS


def test_hgq_mlp_under_its_own_name_through_the_stage(teacher_run) -> None:  # type: ignore[no-untyped-def]
    config, files, root = teacher_run
    out = root / "hgq_mlp_t"
    results = stage.train_student(config, "hgq_mlp_t", files, out)
    assert "sparsity" not in results["qat"] and (out / "qat" / "calibrated.pt").is_file()
    e = stage.convert_student(config, "hgq_mlp_t", files["test"], out)
    assert (e["kind"], e["route"], e["quantiser"]) == ("hgq_mlp", "hgq", "HGQ2")
    assert e["n_test"] == 200 and e["bit_exact"] and e["ebops"] > 0  # emulation == HGQ2's own inference
    assert e["operations"]["counted"] == "every layer" and "padding" not in e["notes"]
    rtl = e["rtl"]
    if RTL_TOOLS:
        assert rtl["vs_emulation"]["jets"] == 120 and rtl["vs_emulation"]["bit_exact"]
        assert rtl["vs_quantised_pytorch"]["bit_exact"] and rtl["interval_cycles"] == 1
    config = {**config, "fpga": {**config["fpga"], "open_flow": {"rtl_jets": 120, "yosys_max_luts": 0}}}
    s = stage.synthesise_student(config, "hgq_mlp_t", files["test"], out)  # yosys on the HGQ2 route's Verilog
    if RTL_TOOLS and shutil.which("yosys"):
        o = s["open_source"]
        assert o["status"] == "done" and o["da4ml_cost_estimate_luts"] > 1, o
        assert o["resources"]["LUT"] > 0 and o["resources"]["FF"] > 0 and o["resources"]["DSP"] == 0
    tables = [str(root / f"mlp_{name}") for name in ("accuracy.csv", "synthesis.csv", "headline.rst")]
    stage.write_tables([str(out / "emulation.json")], [str(out / "synthesis.json")], *tables,
                       pareto_out=str(root / "pareto.csv"), pareto_plot=str(root / "pareto.png"))  # fmt: skip
    pareto = (root / "pareto.csv").read_text().splitlines()
    assert pareto[0].startswith("student,kind,route,quantiser,accuracy") and len(pareto) == 2
    assert pareto[1].startswith("hgq_mlp_t,hgq_mlp,hgq,HGQ2,")
    assert pareto[1].endswith(",True") == RTL_TOOLS  # on the front when it has LUTs (alone: undominated)
    assert (root / "pareto.png").stat().st_size > 0
