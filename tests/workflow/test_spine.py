"""The shared spine: config validation, ids, seeds, splits, atomic writes, CLI dispatch."""

from __future__ import annotations

import numpy as np
import pytest

from jetfm import CLASSES
from jetfm.atomic import atomic_path, write_json_atomic
from jetfm.cli import main as cli_main
from jetfm.config import load_config, validate_config
from jetfm.ids import decode_event_id, make_event_ids
from jetfm.seeds import PYTHIA_SEED_MAX, derive_seed, validate_pythia_seed
from jetfm.splits import SPLITS, assign_splits


def test_default_config_validates_and_fills_defaults():
    cfg = load_config("config/config.yaml")
    assert cfg["simulate"]["jet_pt_min"] < cfg["simulate"]["jet_pt_max"]
    assert cfg["preprocess"]["dask"]["cluster"] in {"local", "slurm", "none"}


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"classes": ["Zbb"]}, "classes.0"),
        ({"seed": 0}, "seed"),
        ({"seed": 900_000_001}, "seed"),
        ({"simulate": {"jets_per_shard": -5}}, "simulate.jets_per_shard"),
        ({"nonsense_key": 1}, "nonsense_key"),
    ],
)
def test_bad_config_names_the_key(patch, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        validate_config(patch)


def test_event_ids_unique_and_decodable():
    ids = np.concatenate(
        [make_event_ids(s, c, sh, np.arange(100)) for s in (0, 1) for c in range(10) for sh in (0, 7)]
    )
    assert ids.dtype == np.uint64
    assert len(np.unique(ids)) == len(ids)
    assert decode_event_id(make_event_ids(1, 9, 7, np.array([42]))[0]) == {
        "stream": 1, "class_index": 9, "shard": 7, "event_index": 42,
    }  # fmt: skip


def test_seeds_deterministic_distinct_and_in_range():
    seeds = {derive_seed(12345, cls, shard) for cls in CLASSES for shard in range(50)}
    assert len(seeds) == 500
    assert all(1 <= s <= PYTHIA_SEED_MAX for s in seeds)
    assert derive_seed(1, "Hbb", 3) == derive_seed(1, "Hbb", 3)
    with pytest.raises(ValueError, match="outside Pythia's range"):
        validate_pythia_seed(0)


def test_splits_stable_and_close_to_fractions():
    ids = make_event_ids(0, 3, 0, np.arange(20000))
    fr = {"train": 0.7, "val": 0.1, "test": 0.2}
    a = assign_splits(ids, fr)
    assert np.array_equal(a, assign_splits(ids, fr))
    counts = np.bincount(a, minlength=3) / len(ids)
    assert np.allclose(counts, [fr[s] for s in SPLITS], atol=0.015)
    assert not np.array_equal(a, assign_splits(ids, fr, salt=1))
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(ids, {"train": 0.7, "val": 0.1, "test": 0.1})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(target, {"b": 1, "a": 2})
    assert target.read_text().startswith('{\n  "a": 2')
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_cli_top_help_and_unknown_stage(capsys):
    assert cli_main(["--help"]) == 0
    assert "simulate" in capsys.readouterr().out
    assert cli_main(["nope"]) == 2
