"""Preprocessing on real simulated output (Pythia 8 via `jetfm simulate` / `jetfm resimulate`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot

from jetfm import CLASSES
from jetfm.cli import main
from jetfm.config import validate_config
from jetfm.preprocess.features import JET_FEATURE_NAMES
from jetfm.preprocess.run import preprocess

pytest.importorskip("jetfm.simulate.cli")


@pytest.mark.slow
def test_preprocess_real_simulation(tmp_path: Path) -> None:
    files = []
    for i, cls in enumerate(("QCD", "Tbqq")):
        out = tmp_path / f"{cls}.root"
        args = ["--cls", cls, "--shard", str(i), "--out", str(out), "--no-progress"]
        assert (
            main(["simulate", *args, "--set", "simulate.jets_per_shard=15", "--set", "simulate.shards=2"])
            == 0
        )
        files.append(str(out))
    views = tmp_path / "Hbb.views.root"
    args = ["--cls", "Hbb", "--shard", "0", "--out", str(views), "--no-progress"]
    assert (
        main(["resimulate", *args, "--set", "resimulate.events_per_shard=3", "--set", "resimulate.views=2"])
        == 0
    )
    files.append(str(views))

    cfg = validate_config({"preprocess": {"max_particles": 128, "dask": {"cluster": "none"}}})
    summary = preprocess(cfg, files, str(tmp_path / "h5"), progress=False)
    n_in = sum(uproot.open(f)["tree"].num_entries for f in files)
    assert summary["counts"]["jets_in"] == summary["counts"]["jets_out"] == n_in

    data: dict[str, list[np.ndarray]] = {}
    for split in ("train", "val", "test"):
        with h5py.File(tmp_path / "h5" / split / "0000.h5", "r") as f:
            for k in f:
                data.setdefault(k, []).append(f[k][()])
    d = {k: np.concatenate(v) for k, v in data.items()}
    assert sorted({CLASSES[i] for i in d["label"]}) == ["Hbb", "QCD", "Tbqq"]
    # physics: the particles' summed (px, py) reproduce the jet pT (no truncation at P = 128)
    vec = np.where(d["part_mask"][..., None], d["part_vectors"], 0).sum(axis=1)
    jet_pt = d["jet_features"][:, JET_FEATURE_NAMES.index("jet_pt")]
    np.testing.assert_allclose(np.hypot(vec[:, 0], vec[:, 1]), jet_pt, rtol=2e-3)
    assert np.all((jet_pt > 450) & (jet_pt < 1100))
    # every view of a re-simulated event sits in one split, with view ids 0..K-1
    is_view = d["view"] >= 0
    assert set(d["view"][is_view].tolist()) <= {0, 1}
    assert summary["counts"]["per_class"]["Hbb"] == int(is_view.sum())
