"""The image transfer study and the FPGA students through the one launcher (jetfm.train.stage_layout): their
ranks come from their own sections; 2 ranks (torchrun, gloo) run every run of the stage, metrics.json says
world size 2, and the FPGA students' two phases equal one process at the same global batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fixtures.train import make_dataset

from jetfm.config import load_config, validate_config
from jetfm.train import launch
from jetfm.train.run import run_training
from jetfm.train.stage_layout import layout_config

ROOT = Path(__file__).parents[2]


def test_layouts_of_the_image_study_and_the_fpga_students() -> None:
    config = {"train": {"gpus": 2, "num_workers": 1},
              "images": {"transfer": {"train_overrides": {"gpus": 4, "max_steps": 9}}},
              "fpga": {"train": {"nodes": 2}, "qat": {"lr": 0.1}}}  # fmt: skip
    images = layout_config(config, "images")
    assert launch.layout(images, "train") == launch.Layout(gpus=4, nodes=1, workers=1)
    res = launch.rule_resources(images, "train", minimum=2)
    assert res["tasks"] == 4 and res["mpi"] == "srun" and "--gpus-per-task=1" in res["slurm_extra"]
    assert launch.rule_threads(images, "train", minimum=2) == 8
    fpga = layout_config(config, "fpga")
    assert launch.layout(fpga, "train") == launch.Layout(gpus=2, nodes=2, workers=1, cuda=False)
    assert "gpus-per-task" not in launch.rule_resources(fpga, "train")["slurm_extra"]  # tiny: CPU ranks
    on_gpus = {**config, "fpga": {"train": {"device": "cuda"}}}
    assert launch.layout(layout_config(on_gpus, "fpga"), "train").cuda
    assert config["train"] == {"gpus": 2, "num_workers": 1}  # the workflow config is left as it was
    one = layout_config({}, "fpga")  # defaults: one rank, one thread, no mpi (the job as before)
    assert launch.rule_threads(one, "train") == 1 and "mpi" not in launch.rule_resources(one, "train")
    with pytest.raises(ValueError, match=r"set fpga\.train\.gpus instead"):
        layout_config({"fpga": {"overrides": {"jet_mlp": {"qat": {"gpus": 2}}}}}, "fpga")
    with pytest.raises(ValueError, match="unknown stage"):
        layout_config(config, "simulate")


def test_the_cnn_normalises_over_the_global_batch_on_gpu_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP on GPUs (NCCL) the CNN's BatchNorm layers become SyncBatchNorm (statistics of the global
    batch, as one process has them), with the same state-dict keys; alone or on gloo they stay as built."""
    import torch
    import torch.distributed as dist

    from jetfm.train.config import TrainConfig
    from jetfm.train.data import ShardMeta
    from jetfm.train.objectives import Supervised

    cfg = TrainConfig(model="cnn", size={"preset": "tiny"})
    meta = ShardMeta(17, 8, 32, ("QCD", "Hbb", "Tbqq"), None)
    plain = Supervised().build(cfg, meta)
    kinds = {type(m) for m in plain.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.SyncBatchNorm not in kinds
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    assert torch.nn.SyncBatchNorm not in {type(m) for m in Supervised().build(cfg, meta).modules()}
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    synced = Supervised().build(cfg, meta)
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    assert synced.state_dict().keys() == plain.state_dict().keys()


def _history(path: Path) -> list[dict[str, float]]:
    with open(path) as fh:
        return [{k: float(v) for k, v in r.items() if k != "time_s" and v} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_fpga_students_train_on_two_ranks_as_one_process(tmp_path: Path) -> None:
    """Both phases in one launch of 2 ranks; the float distillation's and the pruning + QAT run's histories
    and test accuracy equal one process's (blocks of one per-rank batch, no shuffle buffer: the same jets per
    step, see test_ddp_objectives)."""
    files = make_dataset(tmp_path / "h5", n_train=256, n_val=64, n_test=64, max_particles=32, chunk=16)
    config = load_config(ROOT / "config" / "config.yaml")
    config["train"].update(max_steps=20, eval_every=20, checkpoint_every=20, progress=False, warmup_steps=3,
                           batch_size=32, block_size=16, shuffle_buffer=0, eval_batches=0)  # fmt: skip
    config["train"]["sizes"]["pfn"] = {"phi_dims": [16], "f_dims": [16]}
    run_training(config, "pfn", files, tmp_path / "teacher")
    phase = {"max_steps": 12, "eval_every": 12, "checkpoint_every": 12, "warmup_steps": 2, "log_every": 1}
    config["fpga"].update(teacher=str(tmp_path / "teacher" / "checkpoint.pt"), overrides={},
                          sizes={"jet_mlp": {"dims": [8]}}, train=dict(phase), qat=dict(phase))  # fmt: skip
    kwargs = {"student": "jet_mlp", "files": files, "overrides": {"progress": False, "threads": 1}}
    for name, gpus in (("one", 1), ("two", 2)):
        config["fpga"]["train"]["gpus"] = gpus
        out = str(tmp_path / name)
        launch.run("jetfm.fpga.stage:train_student", {"config": config, "out_dir": out, **kwargs},
                   layout_config(config, "fpga"), "train", out)  # fmt: skip
    for run in ("float", "qat"):
        m1, m2 = (json.loads((tmp_path / n / run / "metrics.json").read_text()) for n in ("one", "two"))
        assert (m1["world_size"], m2["world_size"], m2["per_rank_batch"]) == (1, 2, 16), run
        assert m2["accuracy"] == pytest.approx(m1["accuracy"]) and m2["sparsity" if run == "qat" else "n"]
        one, two = (_history(tmp_path / n / run / "history.csv") for n in ("one", "two"))
        assert len(one) == len(two) == 12
        for r1, r2 in zip(one, two, strict=True):
            for k in r1:
                assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-5), f"{run} step {r1['step']}: {k}"


@pytest.mark.slow
def test_image_transfer_study_runs_every_run_on_two_ranks(tmp_path: Path) -> None:
    files = make_dataset(tmp_path / "h5", n_train=1200, n_val=64, n_test=64, max_particles=32, chunk=16)
    config = validate_config({
        "train": {"batch_size": 32, "warmup_steps": 1, "eval_every": 3, "device": "cpu", "block_size": 16},
        "images": {"transfer": {"source_classes": ["QCD", "Tbqq"], "fractions": [1.0], "seeds": [1],
                                "size": {"preset": "tiny"}, "train_overrides": {"max_steps": 3, "gpus": 2}}},
    })  # fmt: skip
    from jetfm.images.study import run_transfer_study

    # the source subset (2 of 3 classes, ~800 jets) is written in chunks of 256 rows: 2 blocks per rank
    summary = run_transfer_study(config, files, tmp_path / "study", threads=1)
    assert [r["method"] for r in summary] == ["scratch", "source"]
    for run in ("scratch_1.0_1", "source_1.0_1"):
        m = json.loads((tmp_path / "study" / "runs" / run / "metrics.json").read_text())
        assert (m["world_size"], m["global_batch"], m["per_rank_batch"]) == (2, 32, 16), run
    ckpt = tmp_path / "study" / "source" / "checkpoint.pt"
    assert ckpt.is_file() and not (tmp_path / "study" / "source" / ".launch").exists()
