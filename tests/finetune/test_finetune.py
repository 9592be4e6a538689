"""Fine-tuning: a frozen backbone stays bit-identical, load_backbone refuses mismatches clearly, labelled
fractions are nested and shared by every method, the data-efficiency table is right, and kill-and-resume of
pretraining reproduces the uninterrupted run exactly."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures.train import kill_and_resume, make_split_dataset

from jetfm.finetune.efficiency import plot_efficiency, write_efficiency
from jetfm.finetune.labelled import LabelledStream, count_labelled, labelled_selection
from jetfm.finetune.objective import load_backbone
from jetfm.finetune.run import run_finetuning
from jetfm.models import build_model
from jetfm.pretrain.run import run_pretraining

TINY = {"embed_dim": 16, "depth": 1, "heads": 2, "cls_depth": 1, "pair_dims": [8], "dropout": 0.0}
FAST = {"progress": False, "log_every": 1, "batch_size": 16, "warmup_steps": 2, "block_size": 64,
        "shuffle_buffer": 128, "eval_every": 1000, "checkpoint_every": 1000}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_split_dataset(tmp_path_factory.mktemp("h5"), n_events=160, n_view_events=40, max_particles=24)


def _config(**extra: object) -> dict:
    return {"dataset": "fx", "seed": 5, "train": FAST, "preprocess": {"shards_per_split": 1},
            "pretrain": {"size": TINY, "train": {"max_steps": 6}, "rs3l": {"events_per_batch": 4}},
            "finetune": {"train": {"max_steps": 6}}, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(data: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpm")
    run_pretraining(_config(), "mpm", data, out)
    return out / "checkpoint.pt"


def test_frozen_backbone_is_bit_identical_and_full_finetuning_moves_it(
    data: dict[str, list[str]], pretrained: Path, tmp_path: Path
) -> None:
    saved = torch.load(pretrained, weights_only=True)["model"]
    backbone = {k.removeprefix("backbone."): v for k, v in saved.items() if k.startswith("backbone.")}
    for mode, label in (("frozen", "mpm-probe"), ("full", "mpm")):
        out = tmp_path / mode
        result = run_finetuning(_config(), label, 1.0, 0, data, str(out), backbone=str(pretrained))
        after = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
        same = [torch.equal(after[f"backbone.{k}"], v) for k, v in backbone.items()]
        assert all(same) if mode == "frozen" else not all(same), mode
        assert result["metrics"]["pretrained"]["path"] == str(pretrained)
        assert result["metrics"]["method"] == label and result["metrics"]["labelled_jets"] > 0


def test_load_backbone_loads_and_refuses_mismatches(pretrained: Path, tmp_path: Path) -> None:
    model = build_model("part", 17, 8, 10, **TINY)
    info = load_backbone(model, pretrained)
    saved = torch.load(pretrained, weights_only=True)["model"]
    assert torch.equal(model.backbone.cls_token, saved["backbone.cls_token"]) and info["step"] == 6
    load_backbone(
        build_model("part", 17, 8, 10, **{**TINY, "dropout": 0.2}), pretrained
    )  # regularisation only
    with pytest.raises(ValueError, match="does not match the module: embed_dim: checkpoint 16, module 32"):
        load_backbone(build_model("part", 17, 8, 10, **{**TINY, "embed_dim": 32}), pretrained)
    with pytest.raises(ValueError, match="num_features: checkpoint 17, module 12"):
        load_backbone(build_model("part", 12, 8, 10, **TINY), pretrained)
    with pytest.raises(TypeError, match="no ParT backbone"):
        load_backbone(build_model("mlp", 17, 8, 10), pretrained)
    with pytest.raises(FileNotFoundError):
        load_backbone(model, tmp_path / "missing.pt")


def test_labelled_fractions_are_nested_and_the_stream_reads_only_them(data: dict[str, list[str]]) -> None:
    ids = np.arange(20_000, dtype=np.uint64)
    small, large = labelled_selection(ids, 0.01), labelled_selection(ids, 0.1)
    assert not (small & ~large).any() and 0.008 < small.mean() < 0.012 and 0.09 < large.mean() < 0.11
    n = count_labelled(data["train"], 0.3)
    stream = LabelledStream(data["train"], 16, fraction=0.3, seed=0, drop_last=False, block_size=64)
    assert stream.rows == n and 0 < n < count_labelled(data["train"], 1.0)
    assert sum(len(b["label"]) for b in stream) == n
    with pytest.raises(ValueError, match="no labelled jets"):
        LabelledStream(data["train"], 16, fraction=1e-9)


def test_small_labelled_subsets_are_cached_with_the_same_batches(
    data: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached (read once) and uncached (read every epoch) labelled streams give identical batches."""
    import jetfm.finetune.labelled as labelled

    def epochs(stream: LabelledStream) -> list[dict[str, torch.Tensor]]:
        out = []
        for epoch in (0, 1):
            stream.epoch = epoch
            out += list(stream)
        return out

    cached = LabelledStream(data["train"], 8, fraction=0.3, seed=0, block_size=64, shuffle_buffer=64)
    monkeypatch.setattr(labelled, "CACHE_JETS", 0)
    uncached = LabelledStream(data["train"], 8, fraction=0.3, seed=0, block_size=64, shuffle_buffer=64)
    assert cached.cache is not None and uncached.cache is None
    a, b = epochs(cached), epochs(uncached)
    assert len(a) == len(b) > 2
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a[0]["label"], a[len(a) // 2]["label"])  # epochs differ: a real shuffle


def test_efficiency_table_has_mean_and_spread_over_seeds(tmp_path: Path) -> None:
    rows = [
        {"method": m, "fraction": f, "jets": int(1000 * f), "seed": s, "accuracy": acc + 0.01 * s,
         "macro_auc": 0.9, "macro_f1": 0.5, "rejection50": 10.0 * (s + 1)}
        for m, acc in (("scratch", 0.5), ("mpm", 0.6)) for f in (0.01, 1.0) for s in range(3)
    ]  # fmt: skip
    summary = write_efficiency(rows, tmp_path / "e.csv", tmp_path / "e.json")
    cell = next(s for s in summary if s["method"] == "mpm" and s["fraction"] == 0.01)
    assert cell["jets"] == 10 and cell["seeds"] == 3
    assert cell["accuracy_mean"] == pytest.approx(0.61) and cell["accuracy_std"] == pytest.approx(0.01)
    gains = json.loads((tmp_path / "e.json").read_text())["gains"]["accuracy"]
    assert [round(g["gain"], 6) for g in gains] == [0.1, 0.1]
    assert (
        (tmp_path / "e.csv")
        .read_text()
        .splitlines()[0]
        .startswith("method,fraction,jets,seeds,accuracy_mean")
    )
    plot_efficiency(summary, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 0


def _history(path: Path) -> list[dict[str, str]]:
    """history.csv rows without the wall-time column."""
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(fh)]


def _cli(config: Path, data: dict[str, list[str]], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jetfm", "pretrain", "--config", str(config), "--method", "mpm",
            "--train", *data["train"], "--val", *data["val"], "--test", *data["test"], "--out", str(out),
            *extra]  # fmt: skip


@pytest.mark.slow
def test_kill_and_resume_of_pretraining_reproduces_the_uninterrupted_run(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    cfg = _config()
    cfg["pretrain"]["train"] = {"max_steps": 40, "checkpoint_every": 4, "eval_every": 20}
    config.write_text(yaml.safe_dump(cfg))
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    sa, sb = kill_and_resume(lambda out, *extra: _cli(config, data, out, *extra), ref, killed, 40)
    a, b = _history(ref / "history.csv"), _history(killed / "history.csv")
    assert len(a) == 40 and a == b
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
