"""Shard layouts: a packed shard (layout 2) reads back exactly as the padded shard (layout 1) of its input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
from fixtures.preprocess import make_jets, write_jetclass_file, write_tree

from jetfm import shards
from jetfm.config import validate_config
from jetfm.finetune.labelled import LabelledStream
from jetfm.ids import NOMINAL_STREAM, make_event_ids
from jetfm.preprocess.run import preprocess
from jetfm.preprocess.sample import sample_rows
from jetfm.preprocess.writer import DATASETS
from jetfm.scaling.subset import write_subset
from jetfm.shards import write_row_subset
from jetfm.splits import SPLITS
from jetfm.train.data import H5JetStream, mean_particles, read_arrays, read_meta

P = 24  # small max_particles: many jets fill every slot (truncated), the edge case of the padded layout


def make_config(**pre: object) -> dict:
    return validate_config(
        {"preprocess": {"max_particles": P, "chunksize": 150, "dask": {"cluster": "none"}, **pre}}
    )


def write_with_empty_jets(path: Path, n_jets: int, seed: int) -> str:
    """A nominal QCD file where every 17th jet has no particles (its jet-level branches stay finite)."""
    branches = make_jets("QCD", n_jets, seed, max_particles=40)
    empty = np.arange(n_jets) % 17 == 5
    limit = ak.Array(np.where(empty, 0, 1 << 20))
    for k, v in branches.items():
        if k.startswith("part_"):
            branches[k] = v[ak.local_index(v) < limit]
    branches["jet_nparticles"] = np.where(empty, 0, branches["jet_nparticles"]).astype(np.float32)
    branches["event_id"] = make_event_ids(NOMINAL_STREAM, 0, 0, np.arange(n_jets))
    return str(write_tree(path, branches))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("root")
    return [
        write_with_empty_jets(d / "QCD_0000.root", 400, 1),
        str(write_jetclass_file(d / "Hbb_0000.views.root", "Hbb", 120, 3, views=4, max_particles=30)),
    ]


@pytest.fixture(scope="module")
def runs(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same ROOT input preprocessed as padded + gzip, packed + lzf and packed + none."""
    d = tmp_path_factory.mktemp("h5")
    out = {}
    for name, pre in {
        "padded": {"layout": "padded", "compression": "gzip"},
        "packed": {"layout": "packed", "compression": "lzf"},
        "packed_none": {"layout": "packed", "compression": "none"},
    }.items():
        out[name] = d.parent / name
        preprocess(make_config(**pre), inputs, str(out[name]), progress=False)
    return out


def shard(run: Path, split: str = "train") -> str:
    return str(run / split / "0000.h5")


@pytest.mark.parametrize("packed", ["packed", "packed_none"])
def test_packed_round_trips_every_field(runs: dict[str, Path], packed: str) -> None:
    for split in SPLITS:
        with (
            h5py.File(shard(runs["padded"], split), "r") as v1,
            h5py.File(shard(runs[packed], split), "r") as v2,
        ):
            assert shards.layout_version(v1) == shards.PADDED and v1.attrs[shards.LAYOUT_ATTR] == 1
            assert shards.layout_version(v2) == shards.PACKED
            assert v2["part_features"].ndim == 2 and v2["part_features"].compression != "gzip"
            n = v1["label"].shape[0]
            expected = {k: v1[k][()] for k in DATASETS}
            counts = expected["part_mask"].sum(axis=1)
            assert v2["part_features"].shape[0] == counts.sum()  # particles in == particles out
            np.testing.assert_array_equal(v2["n_particles"][()], counts)
            for a, b in ((0, n), (3, min(n, 41)), (n, n)):  # whole shard, an unaligned range, an empty one
                got = shards.read_rows(v2, a, b, DATASETS)
                for k in DATASETS:
                    assert got[k].dtype == expected[k].dtype, k
                    np.testing.assert_array_equal(got[k], expected[k][a:b], err_msg=k)
            if split == "train":
                assert (counts == 0).any() and (counts == P).any()  # empty and full jets both present
            same_attrs = {k for k in v1.attrs if k not in (shards.LAYOUT_ATTR, "provenance")}
            assert same_attrs == {k for k in v2.attrs if k not in (shards.LAYOUT_ATTR, "provenance")}
            for k in same_attrs:
                np.testing.assert_array_equal(v1.attrs[k], v2.attrs[k])
            assert json.loads(v2.attrs["provenance"])["layout"] == "packed"
    summary = json.loads((runs[packed] / "summary.json").read_text())
    assert summary["layout"] == "packed"
    assert (
        summary["counts"]["jets_out"]
        == json.loads((runs["padded"] / "summary.json").read_text())["counts"]["jets_out"]
    )


def test_packed_on_dask_is_the_same(inputs: list[str], runs: dict[str, Path], tmp_path: Path) -> None:
    """Dask workers (2, other chunking) write the very packed datasets the in-process run writes."""
    cfg = make_config(
        layout="packed", compression="lzf", chunksize=70, dask={"cluster": "local", "workers": 2}
    )
    preprocess(cfg, inputs, str(tmp_path), progress=False)
    for split in SPLITS:
        with h5py.File(shard(runs["packed"], split), "r") as a, h5py.File(shard(tmp_path, split), "r") as b:
            assert set(a) == set(b)
            for k in a:
                np.testing.assert_array_equal(a[k][()], b[k][()], err_msg=k)


def test_unknown_layout_version_is_rejected(runs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "future.h5"
    shutil.copy(shard(runs["packed"]), path)
    with h5py.File(path, "a") as f:
        f.attrs[shards.LAYOUT_ATTR] = 3
    with pytest.raises(
        ValueError, match=r"layout_version' = 3; this jetfm reads layout versions \[1, 2\]"
    ) as err:
        read_meta([path])
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_inconsistent_packed_shard_is_rejected(runs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    shutil.copy(shard(runs["packed"]), path)
    with h5py.File(path, "a") as f:
        f["n_particles"][0] += 1
    with pytest.raises(ValueError, match=r"'n_particles' .* summing to the \d+ stored particles"):
        read_meta([path])


def test_gzip_packed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"compression = gzip with preprocess\.layout = packed"):
        preprocess(make_config(layout="packed", compression="gzip"), [], str(tmp_path), progress=False)


def test_loaders_yield_the_same_batches(runs: dict[str, Path]) -> None:
    v1, v2 = shard(runs["padded"]), shard(runs["packed"])
    assert read_meta([v1]) == read_meta([v2])
    assert mean_particles([v1]) == mean_particles([v2])
    keys = ("label", "jet_features", "part_mask")
    for a, b in ((read_arrays([v1], keys), read_arrays([v2], keys)), (sample_rows([v1], DATASETS, 50),
                 sample_rows([v2], DATASETS, 50))):  # fmt: skip
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    streams = [
        lambda p: H5JetStream([p], 16, seed=3, block_size=64, shuffle_buffer=64, bucket_by_length=True),
        lambda p: H5JetStream([p], 16, shuffle=False, nominal_only=False, drop_last=False),
        lambda p: LabelledStream([p], 16, fraction=0.5, seed=1, block_size=64, shuffle_buffer=64),
    ]
    for make in streams:
        padded, packed = list(make(v1)), list(make(v2))
        assert len(padded) == len(packed) > 1
        for x, y in zip(padded, packed, strict=True):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
                assert bool((x[k] == y[k]).all()), k


def test_row_copies_keep_the_layout(runs: dict[str, Path], tmp_path: Path) -> None:
    """Scaling subsets and image-study subsets copy rows: a packed source gives a packed copy, same rows."""
    out = {}
    for name in ("padded", "packed"):
        path = tmp_path / f"{name}.h5"
        write_subset([shard(runs[name])], 100, path, seed=5)
        copied = write_row_subset(
            [shard(runs[name])], tmp_path / name, lambda f: f["label"][:] == f["label"][0], "first class"
        )
        out[name] = [path, Path(copied[0])]
    for v1, v2 in zip(out["padded"], out["packed"], strict=True):
        with h5py.File(v1, "r") as a, h5py.File(v2, "r") as b:
            assert shards.layout_version(a) == shards.PADDED and shards.layout_version(b) == shards.PACKED
            n = a["label"].shape[0]
            assert n == b["label"].shape[0] > 0
            got, expected = shards.read_rows(b, 0, n, DATASETS), shards.read_rows(a, 0, n, DATASETS)
            for k in DATASETS:
                np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
        read_meta([v2])  # a consistent packed shard


def test_bucketed_stream_yields_every_jet_once(runs: dict[str, Path]) -> None:
    """With bucketing, the rows carried over to the next pool (beyond the last full batch) are kept."""
    path = shard(runs["packed"])
    stream = H5JetStream([path], 16, seed=2, block_size=64, shuffle_buffer=40, bucket_by_length=True,
                         drop_last=False)  # fmt: skip
    batches = list(stream)
    jets = np.concatenate([b["jet_features"].numpy() for b in batches])
    expected = read_arrays([path], ("jet_features",))["jet_features"]
    assert len(jets) == stream.rows == len(expected)
    np.testing.assert_array_equal(np.unique(jets, axis=0), np.unique(expected, axis=0))
    assert all(b["part_mask"].shape[1] == max(int(b["part_mask"].sum(1).max()), 1) for b in batches)
