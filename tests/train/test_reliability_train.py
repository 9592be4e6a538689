"""Training as a cluster job (issue 11): exact resume of a ParT with dropout after SIGKILL, SIGTERM/SIGUSR1
-> checkpoint at the next step boundary and a retryable exit, a non-finite loss stops naming the step, shards
are checked against each other and labels range-checked, one training per run directory, progress lines."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.train import make_dataset, write_shard

from jetfm.logs import redirect_to_log
from jetfm.train.config import TrainConfig
from jetfm.train.lock import RunDirectoryLocked
from jetfm.train.loop import train
from jetfm.train.numerics import NonFiniteError
from jetfm.train.run import run_training
from jetfm.train.signals import RETRY_EXIT_CODE

# ParT tiny with its default dropout (0.1): the dropout masks draw from the global torch RNG every step.
PART = {"max_steps": 60, "warmup_steps": 2, "eval_every": 60, "checkpoint_every": 10, "log_every": 1,
        "progress": False, "batch_size": 32, "shuffle_buffer": 128, "block_size": 32,
        "threads": 1}  # fmt: skip
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
            "--train", *data["train"], "--val", *data["val"], "--test", *data["test"],
            "--out", str(out), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def reference(data: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run, in process (the same function the CLI calls)."""
    out = tmp_path_factory.mktemp("reference")
    cfg = TrainConfig(model="part", size={"preset": "tiny"}, **PART)
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


@pytest.mark.slow
def test_sigkilled_part_with_dropout_resumes_bit_for_bit(
    data: dict[str, list[str]], reference: Path, tmp_path: Path
) -> None:
    """Failure 1: the resumed ParT diverged from the first step after the checkpoint (dropout RNG)."""
    ref = reference
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


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_next_step_exits_retryable_and_resumes_bit_for_bit(
    data: dict[str, list[str]], reference: Path, tmp_path: Path
) -> None:
    """Failures 3 and 6: a stop signal -> checkpoint + retryable exit; one training per run directory."""
    config = _config(tmp_path / "c.yaml", checkpoint_every=1000)  # no periodic checkpoint before the end
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cli(config, data, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # progress lines (train.progress is off): the loop is running
        if line.startswith("step 5/"):
            break
    # A second training into the same run directory fails at once, naming the owner: before it opens any
    # input (shards that do not exist would otherwise raise FileNotFoundError first).
    cfg = TrainConfig(model="part", size={"preset": "tiny"}, **PART)
    missing = [str(tmp_path / "missing.h5")]
    with pytest.raises(RunDirectoryLocked, match=rf"{run}.* in use by pid {proc.pid}"):
        train(cfg, missing, missing, missing, run)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == RETRY_EXIT_CODE, stderr
    assert "received SIGTERM: stopped at step" in stderr and "Traceback" not in stderr, stderr
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert 5 <= ckpt["step"] < PART["max_steps"]
    assert (run / ".resume" / "checkpoint.pt").samefile(run / "checkpoint.pt")
    assert not (run / "metrics.json").exists()
    subprocess.run(_cli(config, data, run, "--resume"), check=True, capture_output=True, timeout=300)
    _assert_same_run(reference, run)
    assert not (run / ".resume" / "checkpoint.pt").exists()  # finished: nothing left to resume


def _shard_variant(src: str, dest: Path, **changes: np.ndarray) -> str:
    """A copy of shard `src` with some arrays replaced."""
    import h5py

    with h5py.File(src, "r") as f:
        arrays = {k: f[k][()] for k in f}
    arrays.update(changes)
    return str(write_shard(dest, arrays, chunk=32))


SMALL = {**PART, "max_steps": 20, "checkpoint_every": 1, "eval_every": 20}


def test_nan_features_stop_training_naming_the_step_and_keep_the_last_good_checkpoint(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """Failure 4: NaN features trained to `train_loss nan` and an AUC-nan metrics.json, exit 0."""
    import h5py

    with h5py.File(data["train"][0], "r") as f:
        feats = f["part_features"][()]
    feats[200, 0, 0] = np.nan  # one particle of one jet, deep in the shard
    bad = _shard_variant(data["train"][0], tmp_path / "nan" / "0000.h5", part_features=feats)
    cfg = TrainConfig(model="pfn", size={"preset": "small"}, **SMALL)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"training diverged at step (\d+): loss nan") as err:
        train(cfg, [bad], data["val"], data["test"], out)
    step = int(str(err.value).split("at step ")[1].split(":")[0])
    assert step > 1, "the NaN jet must come after the first checkpoint (seeded order: it does, at step 5)"
    assert not (out / "metrics.json").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == step - 1 and f"last good checkpoint {out / 'checkpoint.pt'}" in str(err.value)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_val_shards_with_other_features_are_named_before_training(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """Failure 4: 16 training features vs 17 in val/test failed only at the first evaluation, unnamed."""
    import h5py

    with h5py.File(data["train"][0], "r") as f:
        feats = f["part_features"][()][:, :, :16]
    train16 = _shard_variant(data["train"][0], tmp_path / "t16" / "0000.h5", part_features=feats)
    cfg = TrainConfig(model="pfn", size={"preset": "small"}, **SMALL)
    with pytest.raises(ValueError, match=rf"HDF5 shard {data['val'][0]}: num_features = 17 differs"):
        train(cfg, [train16], data["val"], data["test"], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before the first step


def test_out_of_range_label_is_named_at_load(data: dict[str, list[str]], tmp_path: Path) -> None:
    """Failure 4: a label outside the class list gave a bare IndexError from the loss."""
    import h5py

    with h5py.File(data["train"][0], "r") as f:
        labels = f["label"][()]
    labels[17] = 10  # 10 classes: 0..9
    bad = _shard_variant(data["train"][0], tmp_path / "lab" / "0000.h5", label=labels)
    cfg = TrainConfig(model="pfn", size={"preset": "small"}, **SMALL)
    with pytest.raises(
        ValueError,
        match=rf"HDF5 shard {bad}: dataset 'label' has 1 value\(s\) outside \[0, 10\) \(first: 10 at row 17",
    ):
        train(cfg, [bad], data["val"], data["test"], tmp_path / "run")


def test_training_under_snakemake_logs_progress_lines(data: dict[str, list[str]], tmp_path: Path) -> None:
    """Failure 7: the Snakemake train log stayed empty; scripts/train.py's call logs loss, jets/s, ETA."""
    config = {
        "dataset": "fx",
        "seed": 1,
        "train": {"sizes": {"mlp": {}}, **PART, "max_steps": 12, "log_every": 4},
    }
    log = tmp_path / "logs" / "train.log"
    with redirect_to_log(str(log)):
        run_training(config, "mlp", data, tmp_path / "run", overrides={"progress": False, "threads": 1},
                     resume="auto")  # fmt: skip
    lines = [line for line in log.read_text().splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["4/12", "8/12", "12/12"], log.read_text()
    for line in lines:
        assert " loss " in line and " jets/s " in line and " ETA " in line, line
