"""Training as a Slurm job (issue 11, failure 3): a SIGTERM from Slurm to the running `train` job (what
`--signal=TERM@300` in profiles/slurm, walltime and preemption send) makes the loop checkpoint and exit; the
job fails, Snakemake's retry resubmits it, and it resumes from `.resume/checkpoint.pt` (Snakemake deleted
the declared `checkpoint.pt`) to the same weights as an uninterrupted run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures.train import make_dataset
from slurm_harness.cluster import SlurmCluster
from test_slurm import FAST_POLL, REPO, copy_workflow, jobs_by_rule

TRAIN = {"models": ["part"], "sizes": {"part": {"preset": "tiny"}}, "max_steps": 150, "warmup_steps": 5,
         "eval_every": 150, "checkpoint_every": 1000, "log_every": 5, "batch_size": 32, "shuffle_buffer": 128,
         "block_size": 32, "device": "cpu"}  # fmt: skip  # the harness's gpu partition has GRES, no CUDA
CONFIG = {"dataset": "fx", "classes": ["QCD"], "simulate": {"shards": 1}, "resimulate": {"enabled": False},
          "preprocess": {"shards_per_split": 1}, "train": TRAIN}  # fmt: skip


def _stage_inputs(workdir: Path) -> None:
    """Shards in the preprocessing layout, newer than a (stand-in) simulation file: only `train` must run."""
    sim = workdir / "results/sim/fx/QCD/0000.root"
    sim.parent.mkdir(parents=True)
    sim.touch()
    time.sleep(1)
    make_dataset(workdir / "results/h5/fx", n_train=256, n_val=64, n_test=64, chunk=32)
    (workdir / "results/h5/fx/summary.json").write_text("{}")


def _history(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return [{k: r[k] for k in ("step", "lr", "train_loss", "grad_norm", "val_loss", "jets")}
                for r in csv.DictReader(fh)]  # fmt: skip


def test_profile_resources_follow_the_config_and_training_gets_a_stop_signal(tmp_path: Path) -> None:
    """Failure 7: preprocessing was capped at 2 CPUs / 4000 MB whatever preprocess.dask.workers asked."""
    dask = {"cluster": "local", "workers": 6, "threads_per_worker": 1, "memory": "3GB"}
    config = {**CONFIG, "preprocess": {"shards_per_split": 1, "dask": dask}, "train": {**TRAIN, "gpus": 2}}
    workdir = copy_workflow(tmp_path, config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETFM_SLURM_")}
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--profile", "profiles/slurm",
                           "-n", "--forceall", "results/models/fx_part/metrics.json"], cwd=workdir, text=True,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    preprocess = proc.stdout.split("rule preprocess:")[1].split("\n\n")[0]
    assert "cpus_per_task=6" in preprocess and "mem_mb=19000," in preprocess, preprocess  # 6 x 3 GB + 1 GB
    train = proc.stdout.split("rule train:")[1].split("\n\n")[0]
    assert "--signal=TERM@300" in train and "tasks=2" in train and "--ntasks-per-node=2" in train, train
    assert "mpi=srun" in train and "--gpus-per-task" not in train, train  # 2 CPU ranks (train.device: cpu)
    profile = (REPO / "profiles/slurm/config.yaml").read_text()
    assert "\nretries: 3" in profile


@pytest.mark.slurm
@pytest.mark.slow
def test_sigterm_to_the_train_job_checkpoints_and_the_retry_resumes(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    workdir = copy_workflow(tmp_path / "wf", CONFIG)
    profile = workdir / "profiles/slurm/config.yaml"  # the harness node has a few GB, not a GPU node's 16
    text = profile.read_text()
    assert "    mem_mb: 16000 * attempt\n" in text
    profile.write_text(text.replace("    mem_mb: 16000 * attempt\n", "    mem_mb: 1500\n"))
    _stage_inputs(workdir)
    log = workdir / "logs/train/fx_part.log"
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--profile", "profiles/slurm", *FAST_POLL,
           "results/models/fx_part/metrics.json"]  # fmt: skip
    sm = subprocess.Popen(cmd, cwd=workdir, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while (
        not (log.exists() and "step 10/" in log.read_text()) and time.time() < deadline and sm.poll() is None
    ):
        time.sleep(0.5)
    assert log.exists() and "step 10/" in log.read_text(), sm.stdout.read() if sm.poll() is not None else ""
    job_id = slurm_cluster.run("squeue", "-h", "-o", "%i", "-u", "root").stdout.split()[0]
    slurm_cluster.run("scancel", "--signal=TERM", job_id)  # to the job's steps, as --signal=TERM@300 does
    out, _ = sm.communicate(timeout=600)
    assert sm.returncode == 0, out[-5000:]

    rows = jobs_by_rule(slurm_cluster, workdir)["train"]
    assert [r["State"] for r in rows] == ["FAILED", "COMPLETED"], rows
    # The stopped job's Slurm log says where it stopped (Snakemake empties the rule's log before the retry);
    # the retry's log says it continued from the copy that survived Snakemake's cleanup.
    first = next((workdir / "logs/slurm/rule_train").rglob(f"{rows[0]['JobID']}.log")).read_text()
    assert "received SIGTERM: stopped at step" in first, first[-3000:]
    stopped = int(first.split("received SIGTERM: stopped at step ")[1].split()[0])
    assert 10 <= stopped < TRAIN["max_steps"]
    text = log.read_text()
    assert f"resume: continuing results/models/fx_part/.resume/checkpoint.pt at step {stopped}" in text, text

    # The same run uninterrupted (same threads as the rule's job) ends with the same weights.
    ref = tmp_path / "ref"
    h5 = workdir / "results/h5/fx"
    config = str(workdir / "config/config.yaml")
    cmd = [sys.executable, "-m", "jetfm", "train", "--config", config, "--model", "part", "--h5-dir", str(h5),
           "--out", str(ref), "--train-set", "threads=2", "--train-set", "progress=false"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    run = workdir / "results/models/fx_part"
    assert _history(run / "history.csv") == _history(ref / "history.csv")
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
