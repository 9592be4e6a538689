"""Re-simulation shards end to end (real Pythia, detector, fastjet, uproot): the views file contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import uproot

from jetfm.cli import main as cli_main
from jetfm.config import validate_config
from jetfm.ids import RESIM_STREAM, decode_event_id
from jetfm.jetclass import PARTICLE_BRANCHES, TREE_NAME
from jetfm.simulate.resim.plot import plot_view_spread
from jetfm.simulate.resim.run import resimulate_shard
from jetfm.simulate.resim.views import ViewJets, common_truth_object, take_jets

K = 3
EVENTS = 4


def _config(**resim: object) -> dict:
    section = {"mode": "rehadronize", "views": K, "events_per_shard": EVENTS, **resim}
    return validate_config(
        {"seed": 777, "classes": ["Wqq"], "simulate": {"batch_size": 8}, "resimulate": section}
    )


def _read(path) -> dict:
    with uproot.open(path) as f:
        arrays = f[TREE_NAME].arrays(library="ak")
        prov = json.loads(str(f["provenance"]))
    return {"arrays": arrays, "provenance": prov}


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    out = tmp_path_factory.mktemp("resim") / "0000.views.root"
    counts = resimulate_shard(_config(), "Wqq", 0, out, progress=False)
    return out, counts


def test_k_views_per_kept_event_with_resim_ids(shard):
    path, counts = shard
    data = _read(path)
    a, prov = data["arrays"], data["provenance"]
    event_id, view = np.asarray(a["event_id"]), np.asarray(a["view"])
    assert a["view"].type.content.primitive == "int16" and a["event_id"].type.content.primitive == "uint64"
    ids, n_per = np.unique(event_id, return_counts=True)
    assert counts["events_written"] == EVENTS == len(ids)
    assert set(n_per) == {K}
    for e in ids:
        assert sorted(view[event_id == e]) == list(range(K))
        dec = decode_event_id(e)
        assert dec["stream"] == RESIM_STREAM and dec["class_index"] == 7 and dec["shard"] == 0
    # Counts in provenance add up: every generated event is written, dropped (with a reason) or spare.
    c = prov["counts"]
    assert c["jets_written"] == len(event_id) == K * c["events_written"]
    accounted = (
        c["events_written"] + c["events_no_jet_any_view"] + c["events_dropped_lost_view"]
        + c["events_outside_window"] + c["events_beyond_target"] + c["events_failed_generation"]
    )  # fmt: skip
    assert accounted == c["events_generated"]
    assert sum(c["views_lost_match"]) >= c["events_dropped_lost_view"]  # each lost event names >= 1 view
    assert prov["mode"] == "rehadronize" and len(prov["seeds"]["views"]) == K
    assert len(set(prov["seeds"]["views"])) == K


def test_views_share_the_truth_object_but_differ_in_constituents(shard):
    a = _read(shard[0])["arrays"]
    event_id = np.asarray(a["event_id"])
    for e in np.unique(event_id):
        rows = a[event_id == e]
        for b in ("aux_genpart_pt", "aux_genpart_eta", "aux_genpart_phi", "aux_genpart_pid"):
            assert len(set(np.asarray(rows[b]).tolist())) == 1, b  # same W, same kinematics
        assert np.all(np.asarray(rows["aux_truth_match"]) == 1)
        # Different hadrons (and detector response) in each view.
        signatures = {
            (int(n), float(px[0])) for n, px in zip(rows["jet_nparticles"], rows["part_px"], strict=True)
        }
        assert len(signatures) == K
    for b in PARTICLE_BRANCHES:
        assert b in a.fields


def test_same_seed_same_file_other_shard_other_events(shard, tmp_path):
    again = tmp_path / "again.views.root"
    resimulate_shard(_config(), "Wqq", 0, again, progress=False)
    first, second = _read(shard[0])["arrays"], _read(again)["arrays"]
    for b in first.fields:
        assert first[b].tolist() == second[b].tolist(), b
    other = tmp_path / "other.views.root"
    resimulate_shard(_config(events_per_shard=2), "Wqq", 1, other, progress=False)
    o = _read(other)["arrays"]
    assert not set(np.asarray(o["event_id"]).tolist()) & set(np.asarray(first["event_id"]).tolist())
    assert not set(np.asarray(o["jet_pt"]).tolist()) & set(np.asarray(first["jet_pt"]).tolist())


def test_reshower_shard_records_view_settings(tmp_path):
    out = tmp_path / "rs.views.root"
    settings = [[], ["TimeShower:alphaSvalue = 0.125"]]
    counts = resimulate_shard(
        _config(mode="reshower", views=2, events_per_shard=2, view_settings=settings), "Wqq", 0, out,
        progress=False,
    )  # fmt: skip
    data = _read(out)
    ids, n_per = np.unique(np.asarray(data["arrays"]["event_id"]), return_counts=True)
    assert counts["events_written"] == len(ids) == 2 and set(n_per) == {2}
    assert data["provenance"]["view_settings"] == settings
    assert data["provenance"]["mode"] == "reshower"


@pytest.mark.parametrize(
    ("resim", "needle"),
    [
        ({"views": 1}, "views"),
        ({"view_settings": [["StringZ:notAKey = 1"]]}, "StringZ:notAKey"),
        ({"view_settings": [["MultipartonInteractions:pT0Ref = 2.0"]]}, "MultipartonInteractions:pT0Ref"),
    ],
)
def test_bad_settings_fail_before_generation(tmp_path, resim, needle):
    out = tmp_path / "bad.views.root"
    section = {"mode": "rehadronize", "views": K, "events_per_shard": EVENTS, **resim}
    config = {"seed": 1, "simulate": validate_config({})["simulate"], "resimulate": section}
    with pytest.raises(ValueError, match=needle):
        resimulate_shard(config, "Wqq", 0, out, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="Zbb"):
        resimulate_shard(_config(), "Zbb", 0, out, progress=False)


def test_spread_figure_views_closer_than_events(shard, tmp_path):
    summary = plot_view_spread([shard[0]], tmp_path / "spread.png", tmp_path / "spread.json")
    assert (tmp_path / "spread.png").stat().st_size > 1000
    for obs in ("jet_sdmass", "jet_nparticles"):
        s = summary["Wqq"][obs]
        assert s["events"] == EVENTS and s["view_std"] > 0  # views are not copies


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        cli_main(["resimulate", "--help"])
    assert exc.value.code == 0


def _view(events: list[int], keys: list[int]) -> ViewJets:
    n = len(events)
    jets = {"jet_pt": np.arange(n, dtype=np.float32) + 100 * np.asarray(events, dtype=np.float32)}
    return ViewJets(jets, np.asarray(events, np.int64), np.asarray(keys, np.int64), {})


def test_lost_views_are_counted_per_view_and_never_written():
    # Event 0: object 1 in all views (object 0 only in view 0). Event 1: object 0 lost in view 2.
    # Event 2: no jet anywhere. Event 3: unmatched jets only (key -1).
    views = [
        _view([0, 0, 1, 3], [0, 1, 0, -1]),
        _view([0, 1], [1, 0]),
        _view([0, 3], [1, -1]),
    ]
    chosen, info = common_truth_object(views, n_events=4)
    assert chosen.tolist() == [1, -1, -1, -1]
    assert info == {"events_no_jet_any_view": 2, "events_dropped_lost_view": 1, "views_lost_match": [0, 0, 1]}
    rows = [take_jets(v, np.array([0]), chosen[:1]) for v in views]
    assert [float(r["jet_pt"][0]) for r in rows] == [1.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match="no jet"):
        take_jets(views[2], np.array([1]), np.array([0]))
