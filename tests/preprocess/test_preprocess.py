"""Preprocessing stage: features, padding, counts, splits, determinism across executors, bad inputs."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
from fixtures.preprocess import make_jets, write_jetclass_file, write_tree

from jetfm import CLASSES
from jetfm.config import validate_config
from jetfm.jetclass import LABEL_BRANCHES
from jetfm.preprocess.features import JET_FEATURE_NAMES, PARTICLE_FEATURE_NAMES
from jetfm.preprocess.inputs import DERIVED_STREAM, InputFileError
from jetfm.preprocess.run import output_paths, preprocess
from jetfm.splits import SPLITS

P = 24  # small max_particles so that truncation happens often


def make_config(**pre: object) -> dict:
    dask = pre.pop("dask", {"cluster": "none"})
    return validate_config({"preprocess": {"max_particles": P, "chunksize": 150, "dask": dask, **pre}})


def read_shards(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for split in SPLITS:
        with h5py.File(out_dir / split / "0000.h5", "r") as f:
            out[split] = {k: f[k][()] for k in f}
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("root")
    return [
        str(write_jetclass_file(d / "QCD_0000.root", "QCD", 300, 1, max_particles=60)),
        str(write_jetclass_file(d / "Tbqq_0000.root", "Tbqq", 200, 2, unsorted=True, max_particles=60)),
        str(write_jetclass_file(d / "Hbb_0000.views.root", "Hbb", 160, 3, views=4, max_particles=40)),
        str(
            write_jetclass_file(d / "HToCC_120.root", "Hcc", 120, 4, with_event_id=False)
        ),  # public-file style
    ]


@pytest.fixture(scope="module")
def run_none(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("h5") / "none"
    summary = preprocess(make_config(), inputs, str(out), progress=False)
    return out, summary


def reference_jet(raw: dict, i: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Plain-Python ParT features of jet i (JetClass_full.yaml), pT-sorted and truncated to P."""
    n = len(raw["part_px"][i])
    parts = [{k: raw[k][i][j] for k in raw if k.startswith("part_")} for j in range(n)]
    parts.sort(key=lambda q: -math.hypot(q["part_px"], q["part_py"]))  # stable, like the JetClass files
    jet_pt, jet_e = raw["jet_pt"][i], raw["jet_energy"][i]
    feats = np.zeros((P, 17))
    vecs = np.zeros((P, 4))
    for j, q in enumerate(parts[:P]):
        pt = math.hypot(q["part_px"], q["part_py"])

        def std(x: float, shift: float, scale: float) -> float:
            return min(max((x - shift) * scale, -5.0), 5.0)

        feats[j] = [
            std(math.log(pt), 1.7, 0.7),
            std(math.log(q["part_energy"]), 2.0, 0.7),
            std(math.log(pt / jet_pt), -4.7, 0.7),
            std(math.log(q["part_energy"] / jet_e), -4.7, 0.7),
            std(math.hypot(q["part_deta"], q["part_dphi"]), 0.2, 4.0),
            q["part_charge"], q["part_isChargedHadron"], q["part_isNeutralHadron"], q["part_isPhoton"],
            q["part_isElectron"], q["part_isMuon"],
            math.tanh(q["part_d0val"]), min(max(q["part_d0err"], 0.0), 1.0),
            math.tanh(q["part_dzval"]), min(max(q["part_dzerr"], 0.0), 1.0),
            q["part_deta"], q["part_dphi"],
        ]  # fmt: skip
        vecs[j] = [q["part_px"], q["part_py"], q["part_pz"], q["part_energy"]]
    return feats, vecs, n


def test_features_equal_plain_loop_reference(inputs: list[str], run_none: tuple[Path, dict]) -> None:
    out, _ = run_none
    shards = read_shards(out)
    rows = {}
    for split, d in shards.items():
        for r, (eid, view) in enumerate(zip(d["event_id"], d["view"], strict=True)):
            rows[(int(eid), int(view))] = (split, r)
    checked = 0
    for path in inputs[:3]:  # files with event_id; the unsorted Tbqq file checks the pT sort
        raw = uproot.open(path)["tree"].arrays(library="np")
        raw = {k: (v.tolist() if v.dtype == object else v) for k, v in raw.items()}
        raw = {k: ([list(map(float, x)) for x in v] if k.startswith("part_") else v) for k, v in raw.items()}
        views = raw.get("view", np.full(len(raw["event_id"]), -1))
        for i in range(0, len(raw["event_id"]), 23):  # a handful of jets per file
            split, r = rows[(int(raw["event_id"][i]), int(views[i]))]
            d = shards[split]
            feats, vecs, n = reference_jet(raw, i)
            np.testing.assert_allclose(d["part_features"][r], feats, rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(d["part_vectors"][r], vecs, rtol=1e-6)
            assert d["part_mask"][r].sum() == min(n, P)
            jf = dict(zip(JET_FEATURE_NAMES, d["jet_features"][r], strict=True))
            assert jf["jet_pt"] == pytest.approx(raw["jet_pt"][i])
            assert jf["jet_tau21"] == pytest.approx(raw["jet_tau2"][i] / raw["jet_tau1"][i], rel=1e-5)
            e, pt, eta = (float(raw[k][i]) for k in ("jet_energy", "jet_pt", "jet_eta"))
            assert jf["jet_mass"] == pytest.approx(
                math.sqrt(max(e**2 - (pt * math.cosh(eta)) ** 2, 0)), rel=1e-3
            )
            onehot = [raw[b][i] for b in LABEL_BRANCHES]
            assert d["label"][r] == int(np.argmax(onehot))
            checked += 1
    assert checked >= 20


def test_padding_mask_and_truncation_counts(inputs: list[str], run_none: tuple[Path, dict]) -> None:
    out, summary = run_none
    n_truncated = 0
    for path in inputs:
        counts = uproot.open(path)["tree"]["part_px"].array(library="ak")
        n = np.asarray([len(x) for x in counts])
        n_truncated += int(np.maximum(n - P, 0).sum())
    assert n_truncated > 0, "fixture must exercise truncation"
    assert summary["counts"]["particles_truncated"] == n_truncated
    for d in read_shards(out).values():
        mask = d["part_mask"]
        # mask is a prefix: True for the first n particles, then False; padded slots are exactly zero
        assert np.all(mask[:, :-1] | ~mask[:, 1:])
        assert np.all(d["part_features"][~mask] == 0) and np.all(d["part_vectors"][~mask] == 0)
        assert np.all(mask.sum(axis=1) >= 1)
        # pT-sorted: log pT feature non-increasing along real particles
        ptlog = np.where(mask, d["part_features"][..., 0], -1e9)
        assert np.all(np.diff(ptlog, axis=1)[mask[:, 1:]] <= 1e-6)
        assert d["part_features"].shape[1:] == (P, len(PARTICLE_FEATURE_NAMES))


def test_jets_in_equal_out_and_splits_disjoint(inputs: list[str], run_none: tuple[Path, dict]) -> None:
    out, summary = run_none
    shards = read_shards(out)
    n_in = sum(uproot.open(p)["tree"].num_entries for p in inputs)
    assert sum(len(d["label"]) for d in shards.values()) == n_in == summary["counts"]["jets_in"]
    assert summary["counts"]["jets_out"] == n_in
    assert {s: len(d["label"]) for s, d in shards.items()} == summary["counts"]["per_split"]
    ids = {s: set(d["event_id"].tolist()) for s, d in shards.items()}
    assert (
        not (ids["train"] & ids["val"])
        and not (ids["train"] & ids["test"])
        and not (ids["val"] & ids["test"])
    )
    # the 40 views events keep all 4 views together in one split
    for d in shards.values():
        eid, view = d["event_id"][d["view"] >= 0], d["view"][d["view"] >= 0]
        assert np.all(np.unique(eid, return_counts=True)[1] == 4) and set(view.tolist()) <= {0, 1, 2, 3}
    # labels per class as written by the fixtures
    per_class = {
        CLASSES[c]: int(k)
        for c, k in enumerate(np.bincount(np.concatenate([d["label"] for d in shards.values()])))
        if k
    }
    assert per_class == {"QCD": 300, "Tbqq": 200, "Hbb": 160, "Hcc": 120} == summary["counts"]["per_class"]
    for path, pf in summary["counts"]["per_file"].items():
        assert pf["jets_in"] == pf["jets_out"] == uproot.open(path)["tree"].num_entries
    with h5py.File(out / "train" / "0000.h5", "r") as f:
        assert list(f.attrs["feature_names"]) == list(PARTICLE_FEATURE_NAMES)
        assert list(f.attrs["classes"]) == list(CLASSES)
        prov = json.loads(f.attrs["provenance"])
        assert prov["counts"]["jets_in"] == n_in and prov["shard"]["n_jets"] == len(shards["train"]["label"])
        assert f["part_features"].chunks[0] <= 256 and f["part_features"].dtype == np.float32
    for split in SPLITS:
        d = shards[split]
        assert (d["event_id"].dtype, d["view"].dtype, d["label"].dtype) == (np.uint64, np.int16, np.int64)


def test_rows_mix_classes_and_keep_views_together(run_none: tuple[Path, dict]) -> None:
    """Rows are in hashed event order: the classes (one per input file) interleave from the first rows on,
    so a loader's shuffle buffer of a few chunks sees every class; views of an event stay contiguous."""
    out, _ = run_none
    d = read_shards(out)["train"]
    first = d["label"][: len(d["label"]) // 4]
    assert len(np.unique(first)) == len(np.unique(d["label"])) > 1
    assert not np.all(np.diff(d["event_id"].astype(np.float64)) >= 0)  # not sorted by event_id
    change = np.flatnonzero(d["event_id"][1:] != d["event_id"][:-1])
    assert len(change) + 1 == len(np.unique(d["event_id"]))  # each event's rows are one run


def test_derived_event_ids_for_files_without_them(inputs: list[str], run_none: tuple[Path, dict]) -> None:
    out, _ = run_none
    eid = np.concatenate(
        [d["event_id"][d["label"] == CLASSES.index("Hcc")] for d in read_shards(out).values()]
    )
    assert len(np.unique(eid)) == 120
    assert np.all((eid >> np.uint64(60)) == DERIVED_STREAM)
    assert sorted((eid & np.uint64(0xFFFFFFFF)).tolist()) == list(range(120))  # low 32 bits: the entry


def test_identical_output_on_dask_with_other_chunking(inputs: list[str], tmp_path: Path) -> None:
    """Same input -> identical HDF5 datasets, whatever the executor (Dask, 2 workers), chunking, filter."""
    cfg_a = make_config(shards_per_split=2, chunksize=1000)
    cfg_b = make_config(
        shards_per_split=2, chunksize=70, compression="lzf", dask={"cluster": "local", "workers": 2}
    )
    preprocess(cfg_a, inputs, str(tmp_path / "a"), progress=False)
    preprocess(cfg_b, inputs, str(tmp_path / "b"), progress=False)
    files = [Path(p) for k, v in output_paths(tmp_path / "a", 2).items() if k != "summary" for p in v]
    assert len(files) == 6
    for fa in files:
        fb = tmp_path / "b" / fa.relative_to(tmp_path / "a")
        with h5py.File(fa, "r") as a, h5py.File(fb, "r") as b:
            assert set(a) == set(b)
            for k in a:
                assert np.array_equal(a[k][()], b[k][()]), (fa, k)
    assert not list((tmp_path / "a").glob(".parts-*")) and not list((tmp_path / "b").glob(".parts-*"))


def _chunks(ds: h5py.Dataset) -> list[bytes]:
    """Every stored chunk of a dataset, as written (compressed)."""
    zeros = (0,) * (ds.ndim - 1)
    return [ds.id.read_direct_chunk((a, *zeros))[1] for a in range(0, ds.shape[0], ds.chunks[0])]


def test_merge_in_row_ranges_equals_one_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards padded in row-range pieces and assembled by chunk copy hold the very chunks one writer makes,
    also when the rows of two files interleave (every range reads a covering slice of each part)."""
    from jetfm.preprocess import run, writer

    files = []
    for k, cls in enumerate(("QCD", "Wqq")):  # one file holds the even event ids, the other the odd ones
        b = make_jets(cls, 700, 20 + k, max_particles=40)
        b["event_id"] = np.arange(700, dtype=np.uint64) * np.uint64(2) + np.uint64(k)
        files.append(str(write_tree(tmp_path / f"{cls}.root", b)))
    cfg = make_config(chunksize=90, compression="gzip")
    preprocess(cfg, files, str(tmp_path / "one"), progress=False)
    monkeypatch.setattr(writer, "ROWS_PER_TASK", 256)
    monkeypatch.setattr(run, "_split_merge", lambda client, compression, layout, n_ranges: n_ranges > 1)
    pieces: list[int] = []
    monkeypatch.setattr(run, "merge_rows", lambda *a: pieces.append(a[1]) or writer.merge_rows(*a))
    preprocess(cfg, files, str(tmp_path / "ranges"), progress=False)
    n_train = 0
    for split in SPLITS:
        with (
            h5py.File(tmp_path / "one" / split / "0000.h5") as a,
            h5py.File(tmp_path / "ranges" / split / "0000.h5") as b,
        ):
            assert set(a) == set(b)
            for k in a:
                assert np.array_equal(a[k][()], b[k][()]), (split, k)
                assert _chunks(a[k]) == _chunks(b[k]), (split, k)
            n_train += len(a["label"]) if split == "train" else 0
    assert len(writer.row_ranges(n_train)) >= 3 and pieces.count(0) >= 2  # train and test in pieces
    assert not list((tmp_path / "ranges").rglob(".staging-*/*"))


def test_gzip_chunks_are_hdf5_filter_bytes(tmp_path: Path) -> None:
    """The merge's own gzip + shuffle (reused buffers) stores the very bytes HDF5's filters store, edge
    chunk included, so shards read the same anywhere and do not depend on which path wrote them."""
    from jetfm.preprocess import writer

    rng = np.random.default_rng(3)
    n = 600  # two whole chunks of 256 and an edge chunk of 88 rows
    arrays = {
        "f": (rng.normal(size=(n, 8, 5)) * (rng.random((n, 8, 1)) < 0.5)).astype(np.float32),
        "m": rng.random((n, 8)) < 0.4,
    }
    with h5py.File(tmp_path / "hdf5.h5", "w") as a, h5py.File(tmp_path / "own.h5", "w") as b:
        for k, x in arrays.items():
            opts = dict(
                chunks=(256, *x.shape[1:]), maxshape=(None, *x.shape[1:]), **writer.COMPRESSION["gzip"]
            )
            a.create_dataset(k, data=x, **opts)
            ds = b.create_dataset(k, x.shape, x.dtype, **opts)
            buf = np.ones((768, *x.shape[1:]), x.dtype)  # stale values beyond row n must not leak
            buf[:n] = x
            writer._write_rows(ds, buf, 0, n, np.empty(buf[:256].nbytes, np.uint8))
        for k in arrays:
            assert np.array_equal(b[k][()], arrays[k]) and _chunks(a[k]) == _chunks(b[k]), k


def test_empty_shards_are_written(tmp_path: Path) -> None:
    """More shards than jets: every expected shard exists, empty ones with zero rows of the right shape."""
    f = str(write_jetclass_file(tmp_path / "QCD_0000.root", "QCD", 3, 7))
    summary = preprocess(make_config(shards_per_split=4), [f], str(tmp_path / "o"), progress=False)
    n = 0
    for split, paths in output_paths(tmp_path / "o", 4).items():
        for path in paths if split != "summary" else []:
            with h5py.File(path, "r") as h:
                assert h["part_features"].shape[1:] == (P, len(PARTICLE_FEATURE_NAMES))
                assert h["part_mask"].shape == (len(h["label"]), P)
                n += len(h["label"])
    assert n == summary["counts"]["jets_out"] == 3


# ---------------------------------------------------------------- bad inputs


def _bad_missing_branch(d: Path) -> Path:
    b = make_jets("QCD", 50, 5)
    del b["part_dzerr"]
    return write_tree(d / "missing.root", b)


def _bad_mistyped_branch(d: Path) -> Path:
    b = make_jets("QCD", 50, 5)
    b["jet_sdmass"] = b["part_px"]  # jagged where one number per jet is expected
    return write_tree(d / "mistyped.root", b)


def _bad_truncated(d: Path) -> Path:
    p = write_jetclass_file(d / "truncated.root", "QCD", 200, 5)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _bad_corrupt_basket(d: Path) -> Path:
    p = write_jetclass_file(d / "corrupt.root", "QCD", 200, 5)
    seek = int(uproot.open(p)["tree"]["part_energy"].member("fBasketSeek")[0])
    with open(p, "r+b") as f:
        f.seek(seek + 120)
        f.write(os.urandom(400))
    return p


def _bad_empty_tree(d: Path) -> Path:
    return write_tree(d / "empty.root", {k: v[:0] for k, v in make_jets("QCD", 5, 5).items()})


def _bad_zero_bytes(d: Path) -> Path:
    p = d / "zero.root"
    p.write_bytes(b"")
    return p


def _bad_two_labels(d: Path) -> Path:
    b = make_jets("QCD", 50, 5)
    b["label_Hbb"] = np.ones(50, dtype=bool)
    return write_tree(d / "twolabels.root", b)


BAD = {
    "missing_branch": (_bad_missing_branch, "part_dzerr"),
    "mistyped_branch": (_bad_mistyped_branch, "jet_sdmass"),
    "truncated": (_bad_truncated, "truncated"),
    "corrupt_basket": (_bad_corrupt_basket, "part_energy"),
    "empty_tree": (_bad_empty_tree, "no entries"),
    "zero_bytes": (_bad_zero_bytes, "empty"),
    "two_labels": (_bad_two_labels, "exactly one"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_fails_clearly_then_is_skipped(kind: str, tmp_path: Path) -> None:
    make, needle = BAD[kind]
    good = str(write_jetclass_file(tmp_path / "good.root", "Wqq", 80, 9))
    bad = str(make(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(InputFileError) as err:
        preprocess(make_config(), [good, bad], str(out), progress=False)
    msg = str(err.value)
    assert Path(bad).name in msg and needle in msg, msg
    assert not list(out.rglob("*.h5")) and not list(out.rglob("*.tmp")), "no (half-)written HDF5 on failure"

    summary = preprocess(make_config(skip_bad_files=True), [good, bad], str(out), progress=False)
    assert [Path(s["file"]).name for s in summary["skipped_files"]] == [Path(bad).name]
    assert needle in summary["skipped_files"][0]["error"]
    assert summary["counts"]["jets_out"] == 80 and summary["counts"]["files_skipped"] == 1
    with h5py.File(out / "train" / "0000.h5", "r") as f:
        assert json.loads(f.attrs["provenance"])["skipped_files"][0]["file"].endswith(Path(bad).name)


def test_duplicate_input_is_an_error(inputs: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more than once"):
        preprocess(make_config(), [inputs[0], inputs[0]], str(tmp_path), progress=False)
    copy = tmp_path / "copy.root"
    shutil.copy(inputs[0], copy)  # same events under another name: caught at merge time
    with pytest.raises(ValueError, match="appears twice"):
        preprocess(make_config(), [inputs[0], str(copy)], str(tmp_path / "o"), progress=False)


def test_cli_runs_the_same_function(inputs: list[str], tmp_path: Path) -> None:
    from jetfm.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("preprocess: {max_particles: 16, dask: {cluster: none}}\n")
    rc = main(
        ["preprocess", "--config", str(cfg), "--out-dir", str(tmp_path / "o"), "--no-progress", *inputs[:2]]
    )
    assert rc == 0
    with h5py.File(tmp_path / "o" / "val" / "0000.h5", "r") as f:
        assert f["part_mask"].shape[1] == 16
    bad = tmp_path / "zero.root"
    bad.write_bytes(b"")
    assert main(["preprocess", "--config", str(cfg), "--out-dir", str(tmp_path / "p"), str(bad)]) == 1


def test_flat_helpers_on_a_handmade_example() -> None:
    from jetfm.preprocess import features as F

    counts = np.array([3, 0, 2])
    flat = np.arange(5, dtype=np.float32)[:, None]  # particle k carries value k
    assert F.particle_index(counts, np.array([2, 0])).tolist() == [3, 4, 0, 1, 2]
    assert F.truncation_mask(counts, 3) is None
    assert F.truncation_mask(counts, 2).tolist() == [True, True, False, True, True]
    padded = F.pad_particles(counts, flat, np.repeat(flat, 4, axis=1), 2)
    assert padded.part_mask.tolist() == [[True, True], [False, False], [True, True]]
    assert padded.part_features[..., 0].tolist() == [[0, 1], [0, 0], [3, 4]]
    assert padded.n_truncated.tolist() == [1, 0, 0]
    # unsorted jets are reordered by descending pT, stable within ties; sorted input costs no permutation
    assert F.pt_order(np.array([2, 2]), np.array([5.0, 4.0, 1.0, 3.0])).tolist() == [0, 1, 3, 2]
    assert F.pt_order(np.array([2, 2]), np.array([5.0, 4.0, 3.0, 1.0])) is None
