"""Training as a cluster job (issue 11): exact resume of a ParT with dropout after SIGKILL, SIGTERM/SIGUSR1
-> checkpoint at the next step boundary and a retryable exit, a non-finite loss stops naming the step, shards
are checked against each other and labels range-checked, one training per run directory, progress lines."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from train_fixtures import make_dataset, make_jets, write_shard

from jetfm.logs import redirect_to_log
from jetfm.train.cli import run_training
from jetfm.train.config import TrainConfig
from jetfm.train.loop import train

# ParT tiny with its default dropout (0.1): the dropout masks draw from the global torch RNG every step.
PART = {"max_steps": 60, "warmup_steps": 2, "eval_every": 60, "checkpoint_every": 10, "log_every": 1,
        "progress": False, "batch_size": 32, "shuffle_buffer": 128, "block_size": 32, "threads": 1}  # fmt: skip
HISTORY_KEYS = ("step", "epoch", "lr", "train_loss", "grad_norm", "val_loss", "jets")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_dataset(tmp_path_factory.mktemp("h5"), n_train=256, n_val=64, n_test=64, chunk=32)


def _history(path: Path) -> list[list[str]]:
    with open(path) as fh:
        return [[r[k] for k in HISTORY_KEYS] for r in csv.DictReader(fh)]


def _config(path: Path, **train: object) -> Path:
    section = {"models": ["part"], "sizes": {"part": {"preset": "tiny"}}, **PART, **train}
    path.write_text(yaml.safe_dump({"dataset": "fx", "train": section}))
    return path


def _cli(config: Path, data: dict[str, list[str]], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jetfm", "train", "--config", str(config), "--model", "part",
            "--train", *data["train"], "--val", *data["val"], "--test", *data["test"], "--out", str(out), *extra]  # fmt: skip


def _reference(data: dict[str, list[str]], out: Path, **changes: object) -> Path:
    """The uninterrupted run, in process (the same function the CLI calls)."""
    cfg = TrainConfig(model="part", size={"preset": "tiny"}, **{**PART, **changes})
    train(cfg, data["train"], data["val"], data["test"], out)
    return out


def _assert_same_run(ref: Path, other: Path) -> None:
    assert _history(other / "history.csv") == _history(ref / "history.csv")
    a = torch.load(ref / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(other / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ from the uninterrupted run"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"no {path} after {timeout} s (exit {proc.poll()})"


def test_sigkilled_part_with_dropout_resumes_bit_for_bit(data: dict[str, list[str]], tmp_path: Path) -> None:
    """Failure 1: the resumed ParT diverged from the first step after the checkpoint (dropout RNG)."""
    ref = _reference(data, tmp_path / "ref")
    config = _config(tmp_path / "c.yaml")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(config, data, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(killed / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert step < PART["max_steps"], "the run finished before the kill"
    subprocess.run(_cli(config, data, killed, "--resume"), check=True, capture_output=True, timeout=300)
    _assert_same_run(ref, killed)
