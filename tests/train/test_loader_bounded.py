"""Bounded memory in training's readers: open files, the mean particle count, the scaling fit sample."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from fixtures.train import make_jets, write_shard

from jetfm.preprocess.sample import sample_rows
from jetfm.train.data import H5JetStream, make_loader, mean_particles


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """12 shards of 40..62 jets; jet_features[:, 0] holds a row id unique over all shards."""
    root, rng, paths, row = tmp_path_factory.mktemp("shards"), np.random.default_rng(3), [], 0
    for s in range(12):
        n = 40 + 2 * s
        arrays = make_jets(n, rng, max_particles=16)
        arrays["jet_features"][:, 0] = np.arange(row, row + n)
        row += n
        paths.append(str(write_shard(root / f"{s:04d}.h5", arrays, chunk=8)))
    return paths


def test_more_shards_than_open_file_limit_epoch_reads_every_row_once(
    shards: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    most = [0]
    real_read = H5JetStream._read

    ours = {os.path.realpath(p) for p in shards}

    def open_shards() -> set[str]:  # this stream's shards open in the process (other tests' files aside)
        ids = h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
        return ours & {os.path.realpath(f.name.decode()) for f in ids}

    def counting_read(self, files, block):  # after each block read
        out = real_read(self, files, block)
        most[0] = max(most[0], len(open_shards()))
        return out

    stream = H5JetStream(
        shards, 16, seed=1, block_size=8, shuffle_buffer=64, drop_last=False, max_open_files=3
    )
    monkeypatch.setattr(H5JetStream, "_read", counting_read)
    for epoch in (0, 1):
        stream.epoch = epoch
        ids = np.concatenate([b["jet_features"][:, 0].numpy() for b in make_loader(stream)]).astype(np.int64)
        assert len(ids) == stream.rows == sum(40 + 2 * s for s in range(12))
        assert np.array_equal(np.sort(ids), np.arange(len(ids))), "every row exactly once"
    assert most[0] == 3, f"{most[0]} shards open at once (limit 3)"
    assert not open_shards(), "every shard closed at the end of the epoch"


def test_mean_particles_streams_and_sample_is_bounded_and_spread(shards: list[str]) -> None:
    masks = []
    for p in shards:
        with h5py.File(p, "r") as f:
            masks.append(f["part_mask"][()])
    exact = float(np.concatenate(masks).sum(1).mean())
    assert mean_particles(shards, block=7) == pytest.approx(exact)
    s = sample_rows(shards, ("jet_features", "label"), 100, nominal_only=True)
    assert 100 <= len(s["label"]) <= 100 + len(shards)
    ids = s["jet_features"][:, 0]
    assert len(np.unique(ids)) == len(ids)
    assert len(np.unique(np.searchsorted(np.cumsum([40 + 2 * i for i in range(12)]), ids, "right"))) == 12
    everything = sample_rows(shards, ("label",), 10**6)
    assert len(everything["label"]) == sum(40 + 2 * i for i in range(12))
