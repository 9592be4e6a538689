"""Simulation stage: real Pythia 8, real detector response, fastjet and uproot, at small counts."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from jetfm import CLASSES
from jetfm.config import validate_config
from jetfm.ids import NOMINAL_STREAM, decode_event_id
from jetfm.jetclass import (
    AUX_BRANCHES,
    EVENT_ID_BRANCH,
    JET_BRANCHES,
    LABEL_BRANCHES,
    PARTICLE_BRANCHES,
    TREE_NAME,
    branch_dtypes,
    class_index,
)
from jetfm.simulate import run as sim_run
from jetfm.simulate.detector import detector_response
from jetfm.simulate.particles import (
    final_state_from_batch,
    final_state_from_event,
    truth_from_batch,
    truth_from_event,
)
from jetfm.simulate.processes import make_pythia, pythia_settings
from jetfm.simulate.writer import read_provenance, write_jetclass_root

JETCLASS_BRANCHES = (*PARTICLE_BRANCHES, *LABEL_BRANCHES, *JET_BRANCHES, *AUX_BRANCHES)


def small_config(**sim: object) -> dict:
    cfg = {"dataset": "test", "seed": 4242, "classes": list(CLASSES),
           "simulate": {"shards": 2, "jets_per_shard": 12, "batch_size": 40, **sim}}  # fmt: skip
    return validate_config(cfg)


def read(path: Path) -> dict[str, ak.Array]:
    with uproot.open(path) as f:
        return {b: f[TREE_NAME][b].array(library="ak") for b in (*JETCLASS_BRANCHES, EVENT_ID_BRANCH)}


@pytest.fixture(scope="module")
def hbb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("sim") / "Hbb" / "0000.root"
    counts = sim_run.simulate_shard(small_config(), "Hbb", 0, path, progress=False)
    return path, counts


@pytest.fixture(scope="module")
def qcd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "QCD" / "0000.root"
    sim_run.simulate_shard(small_config(), "QCD", 0, path, progress=False)
    return path


def test_branch_names_and_dtypes_equal_jetclass(hbb: tuple[Path, dict]) -> None:
    path, _ = hbb
    expected = branch_dtypes()
    with uproot.open(path) as f:
        tree = f[TREE_NAME]
        assert f.classname_of(TREE_NAME) == "TTree"
        names = set(tree.keys())
        assert set(JETCLASS_BRANCHES) <= names
        assert names - set(JETCLASS_BRANCHES) == {EVENT_ID_BRANCH, "npart"}
        for b in JETCLASS_BRANCHES:
            arr = tree[b].array(library="ak")
            dtype = np.asarray(ak.flatten(arr) if b.startswith("part_") else arr).dtype
            assert dtype == expected[b], (b, dtype, expected[b])
        assert tree[EVENT_ID_BRANCH].array(library="np").dtype == np.uint64


def test_requested_jets_written_one_label_window_and_ids(hbb: tuple[Path, dict]) -> None:
    path, counts = hbb
    data = read(path)
    n = len(data["jet_pt"])
    assert n == counts["jets_written"] == counts["jets_requested"] == 12 and counts["shortfall"] == 0
    labels = np.stack([np.asarray(data[b]).astype(int) for b in LABEL_BRANCHES], axis=1)
    assert (labels.sum(axis=1) == 1).all() and (labels.argmax(axis=1) == class_index("Hbb")).all()
    pt, eta = np.asarray(data["jet_pt"]), np.asarray(data["jet_eta"])
    assert ((pt > 500) & (pt < 1000) & (np.abs(eta) < 2.0)).all()
    assert (np.asarray(data["aux_truth_match"]) == 1).all()
    assert (np.asarray(data["aux_genpart_pid"]) == 25).all()
    # Substructure is sane: tau_N falls with N, grooming only removes mass.
    taus = np.stack([np.asarray(data[f"jet_tau{k}"]) for k in range(1, 5)], axis=1)
    assert (taus > 0).all() and (np.diff(taus, axis=1) <= 1e-6).all()
    mass = np.sqrt(np.maximum(np.asarray(data["jet_energy"]) ** 2 - (pt * np.cosh(eta)) ** 2, 0))
    assert (np.asarray(data["jet_sdmass"]) <= mass * 1.001 + 0.1).all()
    decoded = [decode_event_id(e) for e in np.asarray(data[EVENT_ID_BRANCH])]
    assert {(d["stream"], d["class_index"], d["shard"]) for d in decoded} == {(NOMINAL_STREAM, 1, 0)}
    prov = read_provenance(path)
    assert prov["counts"]["jets_written"] == n and prov["cls"] == "Hbb" and prov["stage"] == "simulate"
    assert (
        prov["counts"]["jets_in_window"] == prov["counts"]["jets_selected"] + prov["counts"]["jets_unmatched"]
    )


def test_particles_pt_sorted_and_relative_coordinates(hbb: tuple[Path, dict]) -> None:
    data = read(hbb[0])
    pt = np.hypot(data["part_px"], data["part_py"])
    assert ak.all(pt[:, :-1] >= pt[:, 1:])
    assert (ak.to_numpy(ak.num(pt)) == np.asarray(data["jet_nparticles"])).all()
    eta = np.arcsinh(data["part_pz"] / pt)
    jet_eta = np.asarray(data["jet_eta"])
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(data["part_deta"])),
        ak.to_numpy(ak.flatten(np.sign(jet_eta) * (eta - jet_eta))), atol=1e-3,
    )  # fmt: skip
    # Constituents lie near the anti-kT radius of the jet in rapidity-phi (fastjet's metric; the jet's
    # pseudorapidity, used by part_deta as in JetClass, differs from its rapidity for massive jets).
    e, pz = data["part_energy"], data["part_pz"]
    je = np.asarray(data["jet_energy"])
    jpz = np.asarray(data["jet_pt"]) * np.sinh(jet_eta)
    dy = 0.5 * np.log((e + pz) / (e - pz)) - 0.5 * np.log((je + jpz) / (je - jpz))
    assert ak.max(np.hypot(dy, data["part_dphi"])) < 1.0
    # Each particle carries exactly one PID flag; neutrals have no impact parameter.
    flags = sum(data[b] for b in PARTICLE_BRANCHES if b.startswith("part_is"))
    assert ak.all(flags == 1)
    neutral = data["part_charge"] == 0
    assert ak.all(data["part_d0err"][neutral] == 0) and ak.all(data["part_d0err"][~neutral] > 0)


def test_physics_mass_peak_and_b_displacement(hbb: tuple[Path, dict], qcd: Path) -> None:
    h, q = read(hbb[0]), read(qcd)
    # H -> bb jets: soft-drop mass around m_H; QCD jets mostly light.
    assert 90 < np.median(np.asarray(h["jet_sdmass"])) < 140
    assert np.median(np.asarray(q["jet_sdmass"])) < np.median(np.asarray(h["jet_sdmass"]))

    def displaced_fraction(d: dict) -> float:
        charged = d["part_charge"] != 0
        sig = np.abs(d["part_d0val"][charged]) / d["part_d0err"][charged]
        return float(ak.mean(sig > 3))

    # b-hadron decays give displaced tracks: more significant d0 in H->bb jets than in QCD jets.
    assert displaced_fraction(h) > displaced_fraction(q)


def test_same_config_identical_and_shards_independent(hbb: tuple[Path, dict], tmp_path: Path) -> None:
    again = tmp_path / "again.root"
    sim_run.simulate_shard(small_config(), "Hbb", 0, again, progress=False)
    a, b = read(hbb[0]), read(again)
    for name in a:
        assert ak.all(a[name] == b[name]) if a[name].ndim > 1 else np.array_equal(a[name], b[name]), name
    other = tmp_path / "shard1.root"
    sim_run.simulate_shard(small_config(), "Hbb", 1, other, progress=False)
    c = read(other)
    assert {decode_event_id(e)["shard"] for e in np.asarray(c[EVENT_ID_BRANCH])} == {1}
    assert not np.intersect1d(np.asarray(a["jet_pt"]), np.asarray(c["jet_pt"])).size


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["simulate"].update(jet_pt_min=900.0, jet_pt_max=600.0), "reversed"),
        (lambda c: c["simulate"].update(jets_per_shard=-5), "jets_per_shard"),
        (lambda c: c.update(seed=900_000_001), "seed"),
        (lambda c: c.update(seed=0), "seed"),
        (lambda c: c.update(classes=["QCD"]), "not in config"),
    ],
)
def test_bad_config_fails_before_generation(change, message, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def no_generation(*args: object, **kwargs: object) -> None:
        raise AssertionError("generation started despite a bad config")

    monkeypatch.setattr(sim_run, "make_pythia", no_generation)
    cfg = copy.deepcopy(small_config())
    change(cfg)
    out = tmp_path / "x.root"
    with pytest.raises(ValueError, match=message):
        sim_run.simulate_shard(cfg, "Hbb", 0, out, progress=False)
    assert not out.exists()


def test_unknown_class_and_bad_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown class 'Hxx'"):
        sim_run.simulate_shard(small_config(), "Hxx", 0, tmp_path / "x.root", progress=False)
    with pytest.raises(ValueError, match="rejected setting 'HiggsSM:gg2Hgggg"):
        make_pythia("QCD", {"pythia_settings": ["HiggsSM:gg2Hgggg = on"]}, 1)
    with pytest.raises(ValueError, match="invalid config"):
        validate_config({"dataset": "t", "seed": 1, "simulate": {"jets_per_shard": -1}})


def test_all_classes_have_valid_processes_and_truth() -> None:
    for cls in CLASSES:
        pythia = make_pythia(cls, {}, 17)
        batch = pythia.nextBatch(3, "none")
        truth = truth_from_batch(batch, cls)
        # Every event of a signal class carries its resonance (QCD: two hard partons).
        assert ak.all(ak.num(truth) >= 1), cls
        settings = pythia_settings(cls, {})
        assert "Beams:eCM = 13600.0" in settings


def test_shortfall_is_bounded_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = small_config(jets_per_shard=50, max_events_per_jet=0.2)  # at most 10 events for 50 jets
    out = tmp_path / "short.root"
    with caplog.at_level(logging.WARNING):
        counts = sim_run.simulate_shard(cfg, "Tbl", 0, out, progress=False)
    assert counts["events_generated"] == 10
    assert counts["jets_written"] < 50 and counts["shortfall"] == 50 - counts["jets_written"]
    assert read_provenance(out)["counts"]["shortfall"] == counts["shortfall"]
    assert len(read(out)["jet_pt"]) == counts["jets_written"]
    assert "shortfall" in caplog.text


def test_failure_mid_write_leaves_no_file(hbb: tuple[Path, dict], tmp_path: Path) -> None:
    jets = read(hbb[0])
    out = tmp_path / "broken.root"
    # An object-dtype extra branch passes the length check but fails inside uproot, after the file is opened.
    bad = {"view": np.array([object()] * len(jets["jet_pt"]), dtype=object)}
    with pytest.raises(Exception):  # noqa: B017 (uproot's own error type)
        write_jetclass_root(out, jets, {"stage": "test"}, extra_branches=bad)
    assert list(tmp_path.iterdir()) == []
    write_jetclass_root(
        out, jets, {"stage": "test"}, extra_branches={"view": np.zeros(len(jets["jet_pt"]), np.int16)}
    )
    with uproot.open(out) as f:
        assert f[TREE_NAME]["view"].array(library="np").dtype == np.int16
        assert json.loads(str(f["provenance"])) == {"stage": "test"}


def test_single_event_helpers_match_batch_reader() -> None:
    """The re-simulation path (one pythia.event at a time) gives the same records as nextBatch."""
    a, b = make_pythia("Tbqq", {}, 99), make_pythia("Tbqq", {}, 99)
    batch = a.nextBatch(1, "none")
    assert b.next()
    fs_batch, fs_event = final_state_from_batch(batch), final_state_from_event(b.event)
    assert ak.num(fs_batch).tolist() == ak.num(fs_event).tolist()
    for f in ("px", "pz", "energy", "pid", "charge", "vx", "vz"):
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(fs_batch[f])), ak.to_numpy(ak.flatten(fs_event[f])))
    assert truth_from_batch(batch, "Tbqq").to_list() == truth_from_event(b.event, "Tbqq").to_list()


def test_truth_level_detector_keeps_visible_particles() -> None:
    pythia = make_pythia("Hbb", {}, 5)
    particles = final_state_from_batch(pythia.nextBatch(4, "none"))
    truth = detector_response(particles, "truth", np.random.default_rng(0))
    n_visible = ak.sum(
        ~((np.abs(particles.pid) == 12) | (np.abs(particles.pid) == 14) | (np.abs(particles.pid) == 16))
    )
    assert ak.sum(ak.num(truth)) == n_visible
    cms = detector_response(particles, "delphes_cms", np.random.default_rng(0))
    # Inefficiency, acceptance and thresholds lose particles; charged ones keep their per-track errors.
    assert ak.sum(ak.num(cms)) < n_visible
    assert ak.all(cms.d0err[cms.charge != 0] > 0) and ak.all(truth.d0err == 0)


def test_snakemake_simulate_all(tmp_path: Path) -> None:
    """The rule family end to end in a scratch directory: shards, validation figure and its JSON."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(
        "dataset: smk\nseed: 7\nclasses: [Hbb, Wqq]\n"
        "simulate: {shards: 1, jets_per_shard: 4, batch_size: 20}\nresimulate: {enabled: false}\n"
    )
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(snakemake), "-s", str(root / "Snakefile"), "--cores", "2", "simulate_all"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for cls in ("Hbb", "Wqq"):
        assert len(read(tmp_path / "results" / "sim" / "smk" / cls / "0000.root")["jet_pt"]) == 4
    summary = json.loads((tmp_path / "results" / "plots" / "smk" / "sim_validation.json").read_text())
    assert set(summary) == {"Hbb", "Wqq"} and summary["Wqq"]["jets"] == 4
    assert (tmp_path / "results" / "plots" / "smk" / "sim_validation.png").stat().st_size > 10_000


def _single_particles(
    pid: int, charge: float, pt: float, eta: float, n: int, vertex=(0.0, 0.0, 0.0)
) -> ak.Array:
    """n events with one particle each (so calorimeter towers never merge), moving along phi = pi/2."""
    mass = 0.13957 if abs(pid) == 211 else 0.0
    pz = pt * np.sinh(eta)
    cols = {
        "px": np.zeros(n), "py": np.full(n, pt), "pz": np.full(n, pz),
        "energy": np.full(n, np.sqrt(pt**2 + pz**2 + mass**2)), "pid": np.full(n, pid, np.int32),
        "charge": np.full(n, charge, np.float32), "vx": np.full(n, vertex[0]), "vy": np.full(n, vertex[1]),
        "vz": np.full(n, vertex[2]),
    }  # fmt: skip
    return ak.unflatten(ak.zip(cols, depth_limit=1), np.ones(n, dtype=np.int64))


def test_detector_reproduces_delphes_cms_card_numbers() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    # Charged pions, pT 10 GeV, barrel: 95 % tracked, sigma(pT)/pT = sqrt(0.06^2 + (10 * 1.3e-3)^2).
    out = detector_response(
        _single_particles(211, 1.0, 10.0, 0.2, n, vertex=(1.0, 0.0, 0.0)), "delphes_cms", rng
    )
    flat = ak.flatten(out)
    tracks = flat[flat.isChargedHadron == 1]
    assert abs(len(tracks) / n - 0.95) < 0.01
    rel = np.hypot(ak.to_numpy(tracks.px), ak.to_numpy(tracks.py)) / 10.0 - 1.0
    assert abs(np.std(rel) / np.hypot(0.06, 10 * 1.3e-3) - 1) < 0.05
    # A track from x = 1 mm moving along y has d0 = 1 mm; the smearing matches the per-track error.
    d0 = ak.to_numpy(tracks.d0val)
    assert abs(np.mean(d0) - 1.0) < 0.01
    assert abs(np.std(d0) / float(np.mean(ak.to_numpy(tracks.d0err))) - 1) < 0.05
    # Untracked pions reach the HCAL as neutral hadrons (energy flow), none are lost below 5 %.
    assert abs(len(flat) / n - 1.0) < 0.05 and ak.all(flat.isNeutralHadron[flat.charge == 0] == 1)
    # Photons, 50 GeV at eta = 0: ECAL sigma(E) = sqrt((0.008 E)^2 + 0.11^2 E + 0.40^2).
    photons = ak.flatten(detector_response(_single_particles(22, 0.0, 50.0, 0.0, n), "delphes_cms", rng))
    assert ak.all(photons.isPhoton == 1) and ak.all(photons.charge == 0)
    e = ak.to_numpy(photons.energy)
    assert abs(np.mean(e) / 50.0 - 1) < 0.002
    assert abs(np.std(e) / np.sqrt((0.008 * 50) ** 2 + 0.11**2 * 50 + 0.40**2) - 1) < 0.05
    # Neutrinos are invisible; soft neutral hadrons below the HCAL threshold vanish.
    assert (
        ak.sum(ak.num(detector_response(_single_particles(14, 0.0, 50.0, 0.0, 10), "delphes_cms", rng))) == 0
    )
    soft = detector_response(_single_particles(130, 0.0, 0.5, 0.0, 1000), "delphes_cms", rng)
    assert ak.sum(ak.num(soft)) < 100


@pytest.mark.parametrize(("cls", "low", "high"), [("Wqq", 65, 95), ("Zqq", 75, 105), ("Tbqq", 140, 195)])
def test_soft_drop_mass_peaks_where_physics_puts_them(
    cls: str, low: float, high: float, tmp_path: Path
) -> None:
    out = tmp_path / f"{cls}.root"
    sim_run.simulate_shard(small_config(jets_per_shard=30), cls, 0, out, progress=False)
    masses = np.asarray(read(out)["jet_sdmass"])
    assert low < np.median(masses) < high, (cls, np.median(masses))


def test_streaming_writer_baskets_and_empty_shard(hbb: tuple[Path, dict], tmp_path: Path) -> None:
    from jetfm.simulate.writer import JetClassWriter

    jets = read(hbb[0])
    with JetClassWriter(tmp_path / "stream.root", flush_every=5) as writer:
        for lo in range(0, 12, 4):  # 3 appends of 4 jets, flushed in baskets of >= 5
            writer.append({k: v[lo : lo + 4] for k, v in jets.items()})
        writer.provenance = {"stage": "test"}
    again = read(tmp_path / "stream.root")
    for name in jets:
        assert ak.all(ak.Array(jets[name]) == again[name]), name
    with uproot.open(tmp_path / "stream.root") as f:
        assert f[TREE_NAME]["jet_pt"].num_baskets == 2
    write_jetclass_root(tmp_path / "empty.root", {k: v[:0] for k, v in jets.items()}, {"stage": "test"})
    with uproot.open(tmp_path / "empty.root") as f:
        assert f[TREE_NAME].num_entries == 0 and set(JETCLASS_BRANCHES) <= set(f[TREE_NAME].keys())
