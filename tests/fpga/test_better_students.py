"""Issue 25, better students: distillation on a transfer set with the re-simulation views (`fpga.transfer`),
and the jet observables as extra channels of the Deep Sets student's Φ (`sizes.deepsets.jet_features`).

Tiny data (nominal jets + 4 views of other events, split by the event hash as preprocessing does), a PFN
teacher of a few steps; the one end-to-end test builds the hls4ml project (g++) and, with the open tools, the
RTL.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fixtures.fpga import config_with_teacher, phase
from fixtures.train import make_split_dataset

from jetfm.fpga import stage
from jetfm.fpga.distill import Distill
from jetfm.fpga.students import build_student
from jetfm.fpga.transfer import TransferSet, check_views, view_shards
from jetfm.train.config import from_workflow
from jetfm.train.objectives import classify

OPEN_TOOLS = all(shutil.which(t) for t in ("g++", "verilator", "yosys")) and bool(
    importlib.util.find_spec("da4ml")
)
DEEPSETS = {"particles": 8, "phi_dims": [8], "f_dims": [8], "jet_features": True}


def _rows(files: list[str]) -> tuple[int, int]:
    """(nominal, view) rows of the shards, read directly."""
    views = np.concatenate([h5py.File(f, "r")["view"][:] for f in files])
    return int((views == -1).sum()), int((views >= 0).sum())


@pytest.fixture(scope="module")
def views_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, list[str]], Path]:
    root = tmp_path_factory.mktemp("transfer")
    files = make_split_dataset(root / "h5", n_events=500, n_view_events=100, views=4, max_particles=32)
    pfn, students = {"phi_dims": [16], "f_dims": [16]}, {"deepsets": DEEPSETS}
    config = config_with_teacher(
        files, root, phase(20), pfn, phase(12), phase(8), sizes=students, transfer={"views": True}
    )
    return config, files, root


def _objective(config: dict, views: bool) -> tuple[Distill, object]:
    objective = Distill("jet_mlp", config["fpga"]["teacher"], size={"dims": [8]}, transfer=TransferSet(views))
    return objective, from_workflow(config, "jet_mlp", config["fpga"]["train"])


@pytest.mark.parametrize("views", [False, True])
def test_the_distillation_reads_the_views_only_with_the_transfer_set(views_run, views: bool) -> None:  # type: ignore[no-untyped-def]
    config, files, _ = views_run
    nominal, view_rows = _rows(files["train"])
    assert nominal > 0 and view_rows > 0
    objective, cfg = _objective(config, views)
    stream = objective.stream(files["train"], cfg, 0, 1)
    expected = nominal + view_rows if views else nominal
    assert stream.rows == expected
    seen = objective.training_set
    assert seen["jets"] == expected and seen["view_jets"] == (view_rows if views else 0)
    assert seen["nominal_jets"] == nominal and seen["files"] == files["train"]
    stream.shuffle_buffer, stream.drop_last = 0, False  # one epoch, every jet: count what the loop gets
    assert sum(len(b["label"]) for b in stream) == expected
    student = objective.build(cfg, stream.meta)
    objective.prepare(student, files["train"], cfg)
    assert len(objective._teacher_logits) == expected  # one cached row per jet, views keyed apart
    batch = next(iter(stream))
    direct = classify(objective.teacher, batch, torch.device("cpu"))
    torch.testing.assert_close(objective.teacher_logits(batch, torch.device("cpu")), direct)


def test_teacher_logits_are_computed_per_batch_above_the_cache_bound(views_run) -> None:  # type: ignore[no-untyped-def]
    config, files, _ = views_run
    objective, cfg = _objective(config, True)
    objective.cache_limit = 10
    stream = objective.stream(files["train"], cfg, 0, 1)
    objective.prepare(objective.build(cfg, stream.meta), files["train"], cfg)
    assert objective._teacher_logits == {}  # nothing kept
    batch = next(iter(stream))
    direct = classify(objective.teacher, batch, torch.device("cpu"))
    torch.testing.assert_close(objective.teacher_logits(batch, torch.device("cpu")), direct)


def test_views_asked_for_but_not_produced_fail_in_one_line(views_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = views_run[0]
    off = {**config, "resimulate": {**config["resimulate"], "enabled": False}}
    with pytest.raises(ValueError, match=r"^fpga\.transfer\.views is true but resimulate\.enabled is false"):
        check_views(off)
    check_views({**off, "fpga": {**config["fpga"], "transfer": {}}})  # off: nothing asked
    groups = {0: ["sim/QCD/0000.root", "sim/QCD/0000.views.root"], 1: ["sim/QCD/0001.root"]}
    shards = view_shards({**config, "resimulate": {**config["resimulate"], "enabled": True}}, groups)
    assert [Path(s).parts[-2:] for s in shards] == [("train", "0000.h5")]
    with pytest.raises(ValueError, match="unknown"):
        TransferSet.from_config({"fpga": {"transfer": {"view": True}}})
    nominal_only = make_split_dataset(tmp_path, n_events=60, n_view_events=0)["train"]
    objective, cfg = _objective(config, True)
    with pytest.raises(ValueError, match="hold no re-simulation view rows"):
        objective.stream(nominal_only, cfg, 0, 1)


def test_jet_observables_reach_phi_on_real_particles_only() -> None:
    torch.manual_seed(0)
    student = build_student("deepsets", 5, 3, 4, DEEPSETS)
    student.fit_input(torch.randn(64, 3) * 50 + 100)
    assert student.input_shape == (5 + 1 + 3, 8) and isinstance(student.core, torch.nn.Sequential)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, :4], mask[1, :1] = True, True
    parts, jets = torch.randn(2, 6, 5), torch.randn(2, 3) * 50 + 100
    x = student.features(parts, None, mask, jets)
    assert x.shape == (2, 9, 8)
    torch.testing.assert_close(x[0, 6:, 0], ((jets[0] - student.shift) * student.scale).clamp(-10, 10))
    assert (x[0, :, 4:] == 0).all() and (x[1, :, 1:] == 0).all()  # padded slots: every channel zero
    assert (student.core[:2](x)[0, :, 4:] == 0).all()  # Φ(padding) = 0, exactly
    plain = build_student("deepsets", 5, 3, 4, {**DEEPSETS, "jet_features": False})
    assert plain.input_shape == (6, 8) and "shift" not in plain.state_dict()  # default: unchanged


@pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C++ emulation needs g++")
def test_deepsets_with_jet_observables_on_the_transfer_set_is_bit_exact_in_firmware(views_run) -> None:  # type: ignore[no-untyped-def]
    config, files, root = views_run
    out = root / "deepsets"
    choose = {"temperature": 4.0, "alpha": 0.7, "choose": {"alpha": [0.5, 0.9]}}
    config = {**config, "fpga": {**config["fpga"], "distill": choose}}
    results = stage.train_student(config, "deepsets", files, out)
    nominal, view_rows = _rows(files["train"])
    sweep = [json.loads(p.read_text()) for p in sorted((out / "distill_sweep").glob("*/metrics.json"))]
    assert len(sweep) == 2  # the T / alpha choice, both phases: all saw the views; test stays nominal
    for seen, n in [(m["training_set"], m["n"]) for m in sweep] + [
        (results[p]["training_set"], results[p]["n"]) for p in ("train", "qat")
    ]:
        assert seen["view_jets"] == view_rows and seen["jets"] == nominal + view_rows
        assert n == _rows(files["test"])[0]
    choice = json.loads((out / "distill_choice.json").read_text())
    assert all(p["n_val"] == _rows(files["val"])[0] for p in choice["points"])  # validation: nominal
    metrics = json.loads((out / "qat" / "metrics.json").read_text())
    assert metrics["provenance"]["counts"]["train_rows"] == nominal + view_rows
    e = stage.convert_student(config, "deepsets", files["test"], out)
    assert e["n_test"] == _rows(files["test"])[0]
    assert e["bit_exact"] and e["exported_model_vs_qat"]["bit_exact"] and e["first_disagreeing_layer"] is None
    if OPEN_TOOLS:  # da4ml's RTL of the same core, simulated on every test jet
        rtl = e["rtl"]
        assert rtl["simulation"] == "done" and rtl["vs_emulation"]["jets"] == e["n_test"]
        assert rtl["vs_emulation"]["bit_exact"] and rtl["vs_quantised_pytorch"]["bit_exact"]
