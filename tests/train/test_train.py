"""Training: the loss goes down, kill-and-resume is exact, bad checkpoints and configs fail clearly,
the loader shards without overlap and reads whole blocks."""

from __future__ import annotations

import csv
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.train import kill_and_resume, make_dataset

from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.data import H5JetStream
from jetfm.train.loop import train

FAST = {"max_steps": 40, "warmup_steps": 5, "eval_every": 20, "checkpoint_every": 10, "log_every": 1,
        "progress": False, "batch_size": 32, "shuffle_buffer": 256, "block_size": 64}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_dataset(tmp_path_factory.mktemp("h5"), n_train=768, n_val=128, n_test=192, shards=2)


def _history(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_part_learns_and_writes_outputs(data: dict[str, list[str]], tmp_path: Path) -> None:
    cfg = TrainConfig(model="part", size={"preset": "tiny"}, **{**FAST, "max_steps": 60, "lr": 2e-3})
    result = train(cfg, data["train"], data["val"], data["test"], tmp_path)
    hist = _history(tmp_path / "history.csv")
    first = np.mean([float(r["train_loss"]) for r in hist[:5]])
    last = np.mean([float(r["train_loss"]) for r in hist[-5:]])
    assert last < 0.8 * first, (first, last)
    metrics = result["metrics"]
    assert metrics["macro_auc"] > 0.75  # 3 separable classes; chance is 0.5
    assert metrics["n"] == 192 and metrics["provenance"]["counts"]["test_jets"] == 192
    for name in ("checkpoint.pt", "metrics.json", "loss.png", "roc.png", "confusion.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def _write_config(path: Path, h5_root: Path, **train: object) -> Path:
    cfg = {
        "dataset": "fx",
        "train": {"models": ["pfn"], "sizes": {"pfn": {"preset": "small"}}, **FAST, **train},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(config: Path, h5_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jetfm", "train", "--config", str(config), "--model", "pfn",
            "--h5-dir", str(h5_root), "--out", str(out), "--set", "preprocess.shards_per_split=2",
            *extra]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["lost-node", "walltime-chain"])
def test_kill_and_resume_reproduces_the_uninterrupted_run(
    data: dict[str, list[str]], tmp_path: Path, stop: signal.Signals
) -> None:
    """SIGKILL: a lost node. SIGTERM: the walltime of one job of a chain (jetfm.walltime; Slurm signals 5 min
    early): checkpoint, exit 75, and the next job resumes; both end as the uninterrupted run."""
    h5_root = Path(data["train"][0]).parents[1]
    # Enough steps that the kill lands mid-run; dropout-free PFN keeps it quick, the RNG states still matter
    # through the shuffled data order.
    config = _write_config(tmp_path / "c.yaml", h5_root, max_steps=400, checkpoint_every=25, eval_every=100)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    sa, sb = kill_and_resume(lambda out, *extra: _cli(config, h5_root, out, *extra), ref, killed, 400, stop)
    a, b = _history(ref / "history.csv"), _history(killed / "history.csv")
    keys = ("step", "epoch", "lr", "train_loss", "grad_norm", "val_loss", "jets")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_with_a_different_config_is_refused(data: dict[str, list[str]], tmp_path: Path) -> None:
    cfg = TrainConfig(model="mlp", **{**FAST, "max_steps": 10})
    train(cfg, data["train"], data["val"], None, tmp_path)
    with pytest.raises(
        ValueError, match=r"different training config[\s\S]*lr: checkpoint has 0.001, now 0.005"
    ):
        train(cfg.replace(lr=5e-3), data["train"], data["val"], None, tmp_path, resume=True)
    # Cosmetic keys may change.
    train(cfg.replace(progress=True, max_steps=10), data["train"], data["val"], None, tmp_path, resume=True)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "unreadable"),
        (b"not a checkpoint at all", "unreadable"),
        ("tensor", "not a jetfm-checkpoint-v1"),
    ],
)
def test_bad_checkpoint_gives_clear_error(tmp_path: Path, content: object, needle: str) -> None:
    path = tmp_path / "checkpoint.pt"
    if content == "tensor":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=needle) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint_is_refused(data: dict[str, list[str]], tmp_path: Path) -> None:
    train(TrainConfig(model="mlp", **{**FAST, "max_steps": 5}), data["train"], data["val"], None, tmp_path)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(path)


def test_unknown_training_keys_fail_loudly() -> None:
    with pytest.raises(ValueError, match=r"unknown training config key\(s\) \['learning_rate'\]"):
        from_workflow({"train": {}}, "part", {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"train\.device"):
        TrainConfig(device="tpu")


def test_loader_ranks_partition_the_data_and_trim_padding(data: dict[str, list[str]]) -> None:
    def jet_pts(rank: int, epoch: int) -> np.ndarray:
        stream = H5JetStream(
            data["train"], 32, seed=7, rank=rank, world_size=2, block_size=64, drop_last=False
        )
        stream.epoch = epoch
        pts = []
        for batch in stream:
            n = batch["part_mask"].shape[1]
            assert batch["part_mask"][:, n - 1].any()  # trimmed to the longest jet of the batch
            pts.append(batch["jet_features"][:, 0].numpy())  # jet pT: continuous, so unique per jet
        return np.concatenate(pts)

    rank0, rank1 = jet_pts(0, 3), jet_pts(1, 3)
    both = np.concatenate([rank0, rank1])
    assert len(both) == 768 and len(np.unique(both)) == 768  # no overlap, nothing lost
    assert not np.array_equal(np.sort(jet_pts(0, 4)), np.sort(rank0))  # each epoch deals the blocks anew
    np.testing.assert_array_equal(jet_pts(0, 3), rank0)  # same (seed, epoch): same stream


def test_length_bucketing_keeps_the_rows_cuts_less_padding_and_is_seeded(data: dict[str, list[str]]) -> None:
    def run(bucket: bool, seed: int = 7) -> tuple[np.ndarray, list[int]]:
        stream = H5JetStream(
            data["train"], 32, seed=seed, block_size=64, shuffle_buffer=256, bucket_by_length=bucket
        )
        stream.epoch = 2
        batches = list(stream)
        return np.concatenate([b["jet_features"][:, 0].numpy() for b in batches]), [
            b["part_mask"].shape[1] for b in batches
        ]

    plain, plain_len = run(False)
    bucketed, bucketed_len = run(True)
    np.testing.assert_array_equal(np.sort(bucketed), np.sort(plain))  # the same jets in the epoch
    assert not np.array_equal(bucketed, plain)
    assert sum(bucketed_len) < sum(plain_len)  # less padding in total
    np.testing.assert_array_equal(run(True)[0], bucketed)  # same (seed, epoch): same stream
    assert not np.array_equal(run(True, seed=8)[0], bucketed)


def test_missing_shard_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"0007\.h5"):
        H5JetStream([str(tmp_path / "0007.h5")], 8)
