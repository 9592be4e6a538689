"""The average-image figure and the transfer-vs-random study on fixture shards (tiny CNN, a few steps)."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from train_fixtures import make_dataset

from jetfm.config import validate_config
from jetfm.images.build import ImageSpec, jet_images
from jetfm.images.plots import average_images, write_average_images
from jetfm.images.study import class_subset, labelled_subset, run_transfer_study


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


def test_subsets_are_nested_and_by_class(shards: dict[str, list[str]], tmp_path: Path) -> None:
    small = labelled_subset(shards["train"], tmp_path / "a", 0.3)
    large = labelled_subset(shards["train"], tmp_path / "b", 0.6)
    ids = [set(h5py.File(p)["event_id"][:].tolist()) for p in (small[0], large[0])]
    assert ids[0] < ids[1] and 0.15 * 192 < len(ids[0]) < 0.45 * 192
    qcd = class_subset(shards["train"], tmp_path / "c", ["QCD"])
    with h5py.File(qcd[0]) as f:
        assert set(f["label"][:].tolist()) == {0} and f["part_features"].shape[1:] == (32, 17)
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
    rows = run_transfer_study(config, shards, tmp_path / "study")
    assert sorted((r["init"], r["seed"]) for r in rows) == [
        ("random", 1),
        ("random", 2),
        ("source", 1),
        ("source", 2),
    ]
    with open(tmp_path / "study" / "transfer_summary.csv") as f:
        summary = list(csv.DictReader(f))
    skipped = [r for r in summary if r["init"] == "pretrained"]
    assert skipped and "no images.transfer.pretrained_file" in skipped[0]["skipped"]
    half = next(r for r in summary if r["init"] == "source")
    labelled = sum(len(h5py.File(p)["label"]) for p in labelled_subset(shards["train"], tmp_path / "l", 0.5))
    assert half["seeds"] == "2" and int(half["labelled_jets"]) == labelled and half["accuracy_std"] != ""
    assert (tmp_path / "study" / "transfer.png").stat().st_size > 0
