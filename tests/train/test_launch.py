"""The launcher of every training rule (jetfm.train.launch): the layout from the config, the Slurm resources
and commands it produces, and real 2-rank runs through it (torchrun, gloo): metrics.json says world size 2,
and a 2-rank run stopped by SIGTERM exits 75 with one checkpoint of both ranks and, resumed, ends with the
uninterrupted run's metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.train import make_dataset

from jetfm.train import launch
from jetfm.train.signals import RETRY_EXIT_CODE

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_layout_per_stage_and_the_slurm_resources_it_asks_for() -> None:
    config = {"train": {"gpus": 2, "num_workers": 3}, "pretrain": {"train": {"gpus": 4, "nodes": 2}}}
    assert launch.layout(config, "train") == launch.Layout(gpus=2, nodes=1, workers=3)
    spec = launch.layout(config, "pretrain")
    assert (spec.world_size, spec.cpus_per_rank) == (8, 4)
    res = launch.rule_resources(config, "pretrain")
    assert res == {"nodes": 2, "tasks": 8, "cpus_per_task": 4, "mpi": "srun",
                   "slurm_extra": "--signal=TERM@300 --ntasks-per-node=4 --gpus-per-task=1"}  # fmt: skip
    assert launch.rule_threads(config, "pretrain") == 16  # 4 ranks x (3 workers + 1) on a node
    one = launch.rule_resources({}, "finetune", minimum=2)
    assert "mpi" not in one and one["tasks"] == 1 and one["cpus_per_task"] == 2  # one rank: srun -n1 as ever
    cpu = launch.rule_resources({"train": {"gpus": 2, "device": "cpu"}}, "train")
    assert "gpus-per-task" not in cpu["slurm_extra"]
    with pytest.raises(ValueError, match="unknown training stage"):
        launch.layout({}, "simulate")


def test_commands_srun_in_a_slurm_job_torchrun_elsewhere(tmp_path: Path) -> None:
    spec, call = launch.Layout(gpus=4, nodes=2, workers=7), tmp_path / "call.json"
    srun = launch.command(spec, call, {"SLURM_JOB_ID": "77"})
    assert srun[:6] == ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=8",
                        "--kill-on-bad-exit=1"]  # fmt: skip
    assert (
        "--gpus-per-task=1" in srun
        and "--overlap" not in srun
        and srun[-2:] == ["jetfm.train.launch", str(call)]
    )
    assert "--overlap" in launch.command(spec, call, {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"})
    local = launch.command(launch.Layout(gpus=2), call, {})
    assert local[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    with pytest.raises(ValueError, match="needs a Slurm job"):
        launch.command(spec, call, {})
    assert launch.in_rank({"RANK": "0"}) and not launch.in_rank({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"})


STEPS = 60


def test_the_outcome_is_a_failure_if_any_rank_failed_else_a_stop_else_success(tmp_path: Path) -> None:
    def outcome(**ranks: dict) -> dict:
        for old in tmp_path.glob("rank*.json"):
            old.unlink()
        for name, value in ranks.items():
            (tmp_path / f"{name}.json").write_text(json.dumps(value))
        return launch.read_outcome(tmp_path)

    stop = {"exit": 75, "stop": {"signal": "SIGTERM", "step": 3, "checkpoint": "c.pt"}}
    assert outcome(rank1=stop)["exit"] == 75  # rank 0 killed by the launcher after the checkpoint
    assert outcome(rank0={"exit": 0}, rank1=stop)["exit"] == 75
    failed = outcome(rank0=stop, rank1={"exit": 1, "error": "ValueError: bad"})
    assert failed["exit"] == 1 and failed["error"] == "rank 1: ValueError: bad"
    assert outcome(rank1={"exit": 0})["exit"] == 0 and outcome() == {}


def _spec(tmp_path: Path, name: str, max_steps: int = STEPS) -> Path:
    files = make_dataset(tmp_path / "h5", n_train=256, n_val=64, n_test=64, chunk=16)
    train = {"gpus": 2, "max_steps": max_steps, "batch_size": 32, "warmup_steps": 2, "eval_every": 10,
             "checkpoint_every": 100, "log_every": 1, "shuffle_buffer": 64, "block_size": 16,
             "eval_batches": 0, "sizes": {"part": {"preset": "tiny", "dropout": 0.0}}}  # fmt: skip
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"config": {"dataset": "fx", "seed": 5, "train": train}, "files": files,
                                "out": str(tmp_path / name)}))  # fmt: skip
    return spec


def _launch(spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), "launch", str(spec)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.slow
def test_sigterm_stops_both_ranks_at_one_step_and_the_retry_ends_as_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    whole = _launch(_spec(tmp_path, "whole"))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    assert whole.stdout.splitlines()[0].startswith(
        "training: device cpu, dtype fp32, world size 2 on 1 node(s)"
    )
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    shape = ("world_size", "nodes", "global_batch", "per_rank_batch")
    assert [reference[k] for k in shape] == [2, 1, 32, 16]

    spec = _spec(tmp_path, "stopped")
    proc = subprocess.Popen([sys.executable, str(WORKER), "launch", str(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines = []
    for line in proc.stdout:  # the progress lines of rank 0 ("step 5/60 ..."): stop it mid-run
        lines.append(line)
        if line.startswith(f"step 5/{STEPS} "):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == RETRY_EXIT_CODE, "".join(lines) + rest
    ckpt = torch.load(tmp_path / "stopped" / ".resume" / "checkpoint.pt", weights_only=True)
    assert 5 <= ckpt["step"] < STEPS and len(ckpt["ranks"]) == 2
    assert ckpt["ranks"][0]["batch_in_epoch"] == ckpt["ranks"][1]["batch_in_epoch"]  # both ranks, one step
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    again = _launch(spec)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resumed {tmp_path / 'stopped' / 'checkpoint.pt'} at step {ckpt['step']}" in again.stdout
    resumed = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    for key in ("accuracy", "macro_auc", "ece", "jets_seen", "steps", "world_size"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6, abs=1e-9), key
    h1 = (tmp_path / "whole" / "history.csv").read_text().splitlines()
    h2 = (tmp_path / "stopped" / "history.csv").read_text().splitlines()
    assert [r.rsplit(",", 1)[0] for r in h1] == [r.rsplit(",", 1)[0] for r in h2]  # all but time_s
