"""A job given GPUs while torch sees none stops at start with one line (the torch build and the fix);
`train.device: cpu` runs it on the CPU on purpose; the log's first line names device, dtype, world size and
torch build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fixtures.train import make_dataset

from jetfm.train.device import allocated_gpus, check_device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch sees no GPU")


def _train(tmp_path: Path, device: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    files = make_dataset(tmp_path / "h5", n_train=64, n_val=32, n_test=32)
    config = tmp_path / f"{device}.yaml"
    train = {"max_steps": 2, "batch_size": 16, "eval_every": 2, "progress": False, "device": device,
             "sizes": {"mlp": {"dims": [8]}}}  # fmt: skip
    config.write_text(yaml.safe_dump({"dataset": "fx", "train": train}))
    cmd = [sys.executable, "-m", "jetfm", "train", "--config", str(config), "--model", "mlp",
           "--h5-dir", str(Path(files["train"][0]).parents[1]), "--out", str(tmp_path / device)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_gpu_job_without_cuda_torch_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = _train(tmp_path, "auto", {"SLURM_JOB_GPUS": "0"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SLURM_JOB_GPUS=0" in lines[0] and f"torch {torch.__version__}" in lines[0]
    assert "make install-cuda" in lines[0] and "train.device: cpu" in lines[0]
    assert not (tmp_path / "auto" / "checkpoint.pt").exists()


def test_explicit_cpu_device_runs_and_the_log_starts_with_the_device(tmp_path: Path) -> None:
    proc = _train(tmp_path, "cpu", {"SLURM_JOB_GPUS": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("training: device cpu, dtype fp32, world size 1 on 1 node(s), torch ")
    assert (tmp_path / "cpu" / "metrics.json").exists()


def test_which_variables_count_as_an_allocation() -> None:
    assert allocated_gpus({"SLURM_STEP_GPUS": "0,1"}) == ("SLURM_STEP_GPUS", "0,1")
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": ""}) is None  # set empty: no GPU given
    assert allocated_gpus({}) is None
    check_device("auto", {})  # a laptop without GPUs trains on its CPU
    with pytest.raises(ValueError, match=r"train\.device is cuda"):
        check_device("cuda", {})


def test_the_rules_log_gets_the_refusal_as_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What scripts/train.py runs in a Slurm job given GPUs: the rule's log (the one Snakemake shows for a
    failed job) ends with the refusal, not only the job's stderr."""
    from jetfm.logs import redirect_to_log
    from jetfm.train.run import run_training
    from jetfm.train.signals import exit_for_retry

    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    files = make_dataset(tmp_path / "h5", n_train=64, n_val=32, n_test=32)
    config = {"dataset": "fx", "train": {"max_steps": 2, "batch_size": 16, "sizes": {"mlp": {"dims": [8]}}}}
    log = tmp_path / "logs" / "train" / "fx_mlp.log"
    with pytest.raises(ValueError), redirect_to_log(str(log)), exit_for_retry():
        run_training(config, "mlp", files, tmp_path / "run", overrides={"progress": False}, resume="auto")
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("error: ValueError: this job was given GPUs (SLURM_JOB_GPUS=0)"), last
    assert "make install-cuda" in last and "train.device: cpu" in last
