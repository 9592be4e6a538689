"""Held-out robustness samples with real Pythia (reshower views), detector and jets; and the rule graph:
no training or pretraining rule can read them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from jetfm.config import validate_config
from jetfm.ids import ROBUSTNESS_STREAM, decode_event_id
from jetfm.jetclass import TREE_NAME
from jetfm.robustness.samples import write_sample_shard

pytestmark = pytest.mark.slow  # Pythia re-showering and a Snakemake rule graph
REPO = Path(__file__).resolve().parents[2]
EVENTS = 3
SHIFTS = [
    {"name": "replica"},
    {"name": "fsr_up", "settings": ["TimeShower:renormMultFac = 4.0"]},
    {"name": "tracking", "detector": {"track_pt_resolution_scale": 2.0, "tracking_efficiency_scale": 0.8}},
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict:
    config = validate_config({
        "seed": 99, "classes": ["Wqq"], "simulate": {"batch_size": 8},
        "robustness": {"events_per_shard": EVENTS, "shifts": SHIFTS},
    })  # fmt: skip
    out = tmp_path_factory.mktemp("rob") / "0000.views.root"
    counts = write_sample_shard(config, "Wqq", 0, out)
    with uproot.open(out) as f:
        arrays = f[TREE_NAME].arrays(
            ["event_id", "view", "part_px", "jet_pt", "aux_genpart_pt"], library="np"
        )
        prov = json.loads(str(f["provenance"]))
    return {"arrays": arrays, "provenance": prov, "counts": counts}


def test_each_shifted_version_shares_its_event_id_with_a_nominal_version(sample: dict) -> None:
    a = sample["arrays"]
    ids, view = a["event_id"], a["view"]
    assert sample["counts"]["events_written"] == EVENTS == len(np.unique(ids))
    for e in np.unique(ids):
        rows = np.flatnonzero(ids == e)
        assert sorted(view[rows]) == [0, 1, 2, 3]  # nominal + 3 shifted versions of the same hard event
        assert decode_event_id(e)["stream"] == ROBUSTNESS_STREAM
        nominal = rows[view[rows] == 0][0]
        for k in (1, 2, 3):
            shifted = rows[view[rows] == k][0]
            differs = len(a["part_px"][shifted]) != len(a["part_px"][nominal]) or not np.allclose(
                a["part_px"][shifted], a["part_px"][nominal]
            )
            assert differs, f"event {e}: view {k} has the nominal version's particles"


def test_sample_provenance_names_stream_seeds_and_shifts(sample: dict) -> None:
    prov = sample["provenance"]
    assert prov["stream"] == ROBUSTNESS_STREAM and prov["mode"] == "reshower"
    assert prov["view_settings"] == [[], [], ["TimeShower:renormMultFac = 4.0"], []]
    assert prov["view_detectors"][3] == {"track_pt_resolution_scale": 2.0, "tracking_efficiency_scale": 0.8}
    assert prov["view_detectors"][0] == {"track_pt_resolution_scale": 1.0, "tracking_efficiency_scale": 1.0}
    # Common random numbers for the real shifts, fresh ones for the replica.
    engine, detector = prov["seeds"]["views"], prov["seeds"]["detector"]
    assert engine[2] == engine[3] == engine[0] != engine[1]
    assert detector[3] == detector[0] != detector[1]


def test_tracker_shift_sees_the_nominal_particles(sample: dict) -> None:
    """Same shower seed and settings: the tracker-shifted version has the nominal version's truth object,
    while the replica's independent reshower moves it (ISR recoil)."""
    a = sample["arrays"]
    order = np.lexsort((a["view"], a["event_id"]))
    truth_pt = a["aux_genpart_pt"][order].reshape(EVENTS, 4)
    np.testing.assert_array_equal(truth_pt[:, 3], truth_pt[:, 0])
    assert not np.array_equal(truth_pt[:, 1], truth_pt[:, 0])


def _rule_edges(target: str, tmp_path: Path) -> set[tuple[str, str]]:
    """(upstream rule, downstream rule) pairs of the workflow's rule graph for `target` (dry, no jobs run)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(snakemake), "-s", str(REPO / "Snakefile"), "--rulegraph", "--forceall", target,
         "--configfile", str(REPO / "config/config.yaml"), "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', proc.stdout, re.M))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, re.M)}


def test_no_training_rule_reads_the_held_out_sample(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    edges = _rule_edges("all", tmp_path)
    sample_rules = {"robustness_sample", "robustness_preprocess"}
    downstream, frontier = set(), set(sample_rules)
    while frontier:
        nxt = {b for a, b in edges if a in frontier} - downstream
        downstream |= nxt
        frontier = nxt
    assert "robustness_evaluate" in downstream
    # Only the evaluation (and the table and targets built on it) ever sees the held-out events.
    allowed = sample_rules | {"robustness_evaluate", "robustness_table", "robustness_all", "all"}
    assert downstream <= allowed, downstream
    assert not any(r.startswith(("train", "pretrain", "finetune")) for r in downstream)
