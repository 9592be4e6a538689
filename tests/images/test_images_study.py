"""The average-image figure and the transfer-vs-random study on fixture shards (tiny CNN, a few steps)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fixtures.train import make_dataset

from jetfm.config import validate_config
from jetfm.finetune.labelled import count_labelled
from jetfm.images.plots import average_images, write_average_images
from jetfm.images.study import class_subset, run_transfer_study
from jetfm.models.jetimage import ImageSpec, jet_images


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return make_dataset(tmp_path_factory.mktemp("h5"), n_train=192, n_val=64, n_test=96, max_particles=32)


def test_average_image_is_the_class_mean(shards: dict[str, list[str]], tmp_path: Path) -> None:
    spec = ImageSpec(size=8, channels=("total", "photon"))
    means, counts, classes = average_images(shards["test"], spec)
    with h5py.File(shards["test"][0]) as f:
        arrays = {
            k: torch.from_numpy(f[k][:]) for k in ("part_features", "part_vectors", "part_mask", "label")
        }
    images = jet_images(arrays["part_features"], arrays["part_vectors"], arrays["part_mask"], spec)
    for k in np.unique(arrays["label"].numpy()):
        sel = arrays["label"] == int(k)
        assert counts[k] == int(sel.sum())
        np.testing.assert_allclose(means[k], images[sel].double().mean(0).numpy(), rtol=1e-5, atol=1e-7)
    summary = write_average_images(shards["test"], spec, tmp_path / "avg.png")
    assert (tmp_path / "avg.png").stat().st_size > 0 and sum(summary["jets_per_class"].values()) == 96
    assert summary["jets_per_class"][classes[0]] == counts[0]


def test_class_subset(shards: dict[str, list[str]], tmp_path: Path) -> None:
    qcd = class_subset(shards["train"], tmp_path / "c", ["QCD"])
    with h5py.File(qcd[0]) as f, h5py.File(shards["train"][0]) as src:
        assert set(f["label"][:].tolist()) == {0} and f["part_features"].shape[1:] == (32, 17)
        assert len(f["label"]) == int((src["label"][:] == 0).sum())
    with pytest.raises(ValueError, match="empty"):
        class_subset(shards["train"], tmp_path / "d", ["Hcc"])  # the fixture has QCD, Hbb, Tbqq only


def test_transfer_study_runs_every_arm_and_says_what_it_skipped(
    shards: dict[str, list[str]], tmp_path: Path
) -> None:
    config = validate_config({
        "train": {"batch_size": 32, "warmup_steps": 1, "eval_every": 3, "device": "cpu"},
        "images": {"transfer": {"source_classes": ["QCD", "Tbqq"], "fractions": [0.5], "seeds": [1, 2],
                                "size": {"preset": "tiny"}, "train_overrides": {"max_steps": 3}}},
    })  # fmt: skip
    summary = run_transfer_study(config, shards, tmp_path / "study")
    assert [(r["method"], r["seeds"]) for r in summary] == [("scratch", 2), ("source", 2)]
    labelled = count_labelled(shards["train"], 0.5)
    assert all(r["jets"] == labelled for r in summary) and 0.3 * 192 < labelled < 0.7 * 192
    result = json.loads((tmp_path / "study" / "efficiency.json").read_text())
    for row in summary:  # the spread is the seeds' sample std of the runs' accuracies
        accs = [r["accuracy"] for r in result["runs"] if r["method"] == row["method"]]
        assert row["accuracy_std"] == pytest.approx(float(np.std(accs, ddof=1)))
    assert "no images.transfer.pretrained_file" in result["skipped"]["pretrained"]
    assert len(result["runs"]) == 4 and result["gains"]["accuracy"][0]["method"] == "source"
    with open(tmp_path / "study" / "efficiency.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (tmp_path / "study" / "efficiency.png").stat().st_size > 0
    run = json.loads((tmp_path / "study" / "runs" / "source_0.5_1" / "metrics.json").read_text())
    assert run["pretrained"]["kind"] == "jetfm" and run["labelled_jets"] == labelled
    # a second invocation with the same settings reuses the finished runs (no retraining)
    ckpt = tmp_path / "study" / "runs" / "scratch_0.5_2" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    source = str(tmp_path / "study" / "source" / "checkpoint.pt")
    again = run_transfer_study(config, shards, tmp_path / "study", source_checkpoint=source)
    assert again == summary and ckpt.stat().st_mtime_ns == stamp
