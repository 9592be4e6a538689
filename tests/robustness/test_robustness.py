"""Robustness stage without Pythia: calibration, distances, detector variation, and the evaluation of real
(briefly trained) taggers on a synthetic held-out sample in the preprocessing layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from fixtures.train import make_dataset, make_jets, write_shard

from jetfm.config import validate_config
from jetfm.ids import NOMINAL_STREAM, RESIM_STREAM, ROBUSTNESS_STREAM, decode_event_id, make_event_ids
from jetfm.robustness import calibration
from jetfm.robustness.distance import jensen_shannon, output_distance, total_variation
from jetfm.robustness.evaluate import check_held_out, run_evaluation
from jetfm.robustness.plots import plot_robustness
from jetfm.robustness.samples import resim_config, sample_names, shifts_from_config
from jetfm.robustness.table import write_table
from jetfm.simulate.detector import DetectorVariation, detector_response
from jetfm.train.config import TrainConfig
from jetfm.train.loop import train
from jetfm.train.metrics import expected_calibration_error


# --- ECE --------------------------------------------------------------------------------------------------
def _two_class(conf: np.ndarray) -> np.ndarray:
    return np.stack([conf, 1 - conf], axis=1)


def test_ece_of_a_perfectly_calibrated_predictor_is_zero() -> None:
    # Exactly calibrated by construction: in each bin the accuracy equals the confidence.
    conf = np.repeat([0.55, 0.75, 0.95], 20)
    correct = np.concatenate([np.arange(20) < 11, np.arange(20) < 15, np.arange(20) < 19])
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(_two_class(conf), labels, bins=10) == pytest.approx(0.0, abs=1e-12)
    # Sampled: labels drawn with the predicted probabilities; ECE -> 0 up to sampling noise.
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(5), size=200_000)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    assert expected_calibration_error(p, y, bins=10) < 0.005


def test_ece_of_a_miscalibrated_predictor_equals_the_hand_value() -> None:
    # Half the jets at confidence 0.9 with accuracy 0.5, half at 0.6 with accuracy 0.6:
    # ECE = 0.5 * |0.5 - 0.9| + 0.5 * |0.6 - 0.6| = 0.2.
    conf = np.repeat([0.9, 0.6], 10)
    correct = np.concatenate([np.arange(10) < 5, np.arange(10) < 6])
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(_two_class(conf), labels, bins=10) == pytest.approx(0.2, abs=1e-12)
    curve = calibration.reliability(_two_class(conf), labels, bins=10)
    assert curve["count"][5] == 10 and curve["count"][8] == 10
    assert curve["accuracy"][8] == pytest.approx(0.5) and curve["confidence"][5] == pytest.approx(0.6)


# --- temperature scaling ----------------------------------------------------------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("true_t", [0.4, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_scaling_never_worsens_nll_and_keeps_argmax(true_t: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(400, 10))
    labels = np.array([rng.choice(10, p=p) for p in _softmax(logits)])
    # A model reporting logits * true_t is over- (true_t > 1) or under-confident (true_t < 1).
    probs = _softmax(logits * true_t)
    fit = calibration.fit_temperature(probs, labels)
    assert fit["val_nll_after"] <= fit["val_nll_before"]
    assert calibration.nll(calibration.scale(probs, fit["temperature"]), labels) == pytest.approx(
        fit["val_nll_after"]
    )
    assert np.array_equal(calibration.scale(probs, fit["temperature"]).argmax(1), probs.argmax(1))
    if true_t != 1.0:  # the fit undoes the miscalibration (roughly: 400 jets)
        assert fit["temperature"] == pytest.approx(true_t, rel=0.35)
        assert fit["val_nll_after"] < fit["val_nll_before"]


def test_temperature_keeps_one_when_nothing_improves() -> None:
    # Two jets, both predicted 50/50: every T gives the same NLL, so T stays exactly 1.
    fit = calibration.fit_temperature(np.full((2, 2), 0.5), np.array([0, 1]))
    assert fit["temperature"] == 1.0 and fit["val_nll_after"] == fit["val_nll_before"]


def test_scaling_handles_probabilities_that_underflowed() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    scaled = calibration.scale(probs, 2.0)
    assert np.all(np.isfinite(scaled)) and np.allclose(scaled.sum(1), 1)
    assert np.array_equal(scaled.argmax(1), probs.argmax(1))


# --- distances and ensembles ------------------------------------------------------------------------------
def test_robustness_distance_is_zero_for_identical_outputs() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(10), size=50)
    assert output_distance(p, p.copy()) == {"output_tv": 0.0, "output_js": 0.0, "argmax_flip": 0.0}


def test_robustness_distance_hand_values() -> None:
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.7, 0.3]])
    assert total_variation(p, q) == pytest.approx([1.0, 0.2])
    js = jensen_shannon(p, q)
    assert js[0] == pytest.approx(1.0)  # disjoint support: 1 bit
    m = np.array([0.6, 0.4])
    hand = 0.5 * sum(a * np.log2(a / b) for a, b in zip(p[1], m, strict=True)) + 0.5 * sum(
        a * np.log2(a / b) for a, b in zip(q[1], m, strict=True)
    )
    assert js[1] == pytest.approx(hand)
    assert output_distance(p, q)["argmax_flip"] == 0.5
    with pytest.raises(ValueError, match="paired outputs"):
        output_distance(p, q[:1])


def test_ensemble_spread_is_zero_for_identical_members_and_positive_otherwise() -> None:
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=30)
    same = calibration.ensemble_spread(np.stack([p, p, p]))
    assert same["spread"] == pytest.approx(0.0, abs=1e-12) and same["mutual_info"] == pytest.approx(
        0.0, abs=1e-12
    )
    assert np.allclose(same["probs"], p)
    q = np.random.default_rng(1).dirichlet(np.ones(4), size=30)
    diff = calibration.ensemble_spread(np.stack([p, q]))
    assert diff["spread"] > 0 and diff["mutual_info"] > 0


# --- detector variation -----------------------------------------------------------------------------------
def _pions(n: int, pt: float = 10.0) -> ak.Array:
    cols = {
        "px": np.zeros(n), "py": np.full(n, pt), "pz": np.zeros(n),
        "energy": np.full(n, np.hypot(pt, 0.1396)),
        "pid": np.full(n, 211, np.int32), "charge": np.ones(n, np.float32),
        "vx": np.zeros(n), "vy": np.zeros(n), "vz": np.zeros(n),
    }  # fmt: skip
    return ak.unflatten(ak.zip(cols, depth_limit=1), np.ones(n, dtype=np.int64))


def test_nominal_detector_variation_is_bit_identical_and_shifts_act() -> None:
    particles = _pions(20_000)
    plain = detector_response(particles, "delphes_cms", np.random.default_rng(3))
    nominal = detector_response(particles, "delphes_cms", np.random.default_rng(3), DetectorVariation())
    assert ak.to_list(plain) == ak.to_list(nominal)

    def tracks(variation: DetectorVariation) -> np.ndarray:
        flat = ak.flatten(detector_response(particles, "delphes_cms", np.random.default_rng(3), variation))
        t = flat[flat.isChargedHadron == 1]
        return np.hypot(ak.to_numpy(t.px), ak.to_numpy(t.py)) / 10.0 - 1.0

    base = tracks(DetectorVariation())
    wide = tracks(DetectorVariation(track_pt_resolution_scale=2.0))
    assert np.std(wide) / np.std(base) == pytest.approx(2.0, rel=0.06)
    fewer = tracks(DetectorVariation(tracking_efficiency_scale=0.8))
    assert len(fewer) / len(base) == pytest.approx(0.8, rel=0.03)  # 0.95 -> 0.76


def test_detector_variation_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"tracking_efficiency_scale = 1\.5"):
        DetectorVariation(tracking_efficiency_scale=1.5)
    with pytest.raises(ValueError, match="unknown key"):
        DetectorVariation.from_dict({"pt_resolution": 2})
    with pytest.raises(ValueError, match="no tracker"):
        detector_response(_pions(2), "truth", np.random.default_rng(0), DetectorVariation(2.0))


# --- sample configuration ---------------------------------------------------------------------------------
def test_shift_config_becomes_resimulation_views() -> None:
    config = validate_config({"seed": 5})
    names = sample_names(config["robustness"])
    assert names[0] == "nominal" and len(names) == 1 + len(config["robustness"]["shifts"])
    resim = resim_config(config)["resimulate"]
    assert resim["views"] == len(names) and resim["view_settings"][0] == []
    assert resim["mode"] == config["robustness"]["mode"]
    shifts = shifts_from_config(config["robustness"])
    assert any(not s.detector.nominal for s in shifts)
    bad = {"shifts": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(ValueError, match=r"robustness\.shifts\.1\.name"):
        shifts_from_config(bad)
    with pytest.raises(ValueError, match=r"shifts\.0\.detector"):
        shifts_from_config({"shifts": [{"name": "x", "detector": {"tracking_efficiency_scale": 0}}]})


def test_robustness_event_ids_never_collide_with_other_streams() -> None:
    idx = np.arange(1000)
    rob = make_event_ids(ROBUSTNESS_STREAM, 3, 0, idx)
    for stream in (NOMINAL_STREAM, RESIM_STREAM):
        assert np.intersect1d(rob, make_event_ids(stream, 3, 0, idx)).size == 0
    assert decode_event_id(rob[5])["stream"] == ROBUSTNESS_STREAM


# --- evaluation of real taggers on a synthetic held-out sample ---
SHIFTS = [{"name": "replica"}, {"name": "smeared", "detector": {"track_pt_resolution_scale": 2.0}}]


def _held_out_sample(path: Path, n_events: int = 90) -> Path:
    """Views file layout after preprocessing: per event, view 0 nominal, view 1 a copy (replica), view 2 with
    particle features smeared (a shift the taggers should feel)."""
    rng = np.random.default_rng(42)
    base = make_jets(n_events, rng)
    ids = make_event_ids(ROBUSTNESS_STREAM, 0, 0, np.arange(n_events))
    versions = []
    for view in range(3):
        v = {k: a.copy() for k, a in base.items()}
        if view == 2:
            v["part_features"] = (
                v["part_features"]
                + rng.normal(0, 1.5, v["part_features"].shape).astype(np.float32) * v["part_mask"][..., None]
            )
            v["jet_features"] = v["jet_features"] * rng.normal(1, 0.5, v["jet_features"].shape).astype(
                np.float32
            )
        v["event_id"], v["view"] = ids, np.full(n_events, view, np.int16)
        versions.append(v)
    rows = {k: np.stack([v[k] for v in versions], axis=1).reshape(-1, *base[k].shape[1:]) for k in base}
    return write_shard(path, rows)


def _train(files: dict[str, list[str]], model: str, seed: int, out: Path) -> Path:
    cfg = TrainConfig(
        model=model, size={"preset": "small"} if model != "mlp" else {}, seed=seed, max_steps=20,
        batch_size=32, warmup_steps=3, eval_every=20, checkpoint_every=20, log_every=10, progress=False,
        threads=1, lr=3e-3,
    )  # fmt: skip
    train(cfg, files["train"], files["val"], files["test"], out)
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("robustness")
    files = make_dataset(root / "h5", n_train=192, n_val=96, n_test=96)
    sample = _held_out_sample(root / "h5_robustness" / "test" / "0000.h5")
    config = validate_config(
        {"seed": 1, "robustness": {"shifts": SHIFTS, "bins": 10}, "train": {"device": "cpu"}}
    )
    runs = {
        "mlp": _train(files, "mlp", 1, root / "models" / "t_mlp"),
        "pfn": _train(files, "pfn", 1, root / "models" / "t_pfn"),
    }
    members = [_train(files, "mlp", 1 + k, root / "models" / f"t_mlp_seed{k}") for k in (1, 2)]
    dataset = files["train"] + files["val"] + files["test"]
    inputs = {"sample": [str(sample)], "val": files["val"], "test": files["test"], "dataset": dataset}
    results, evaluation_files = {}, []
    for name, run in runs.items():
        outputs = {
            "temperature": str(run / "temperature.json"),
            "evaluation": str(root / "robustness" / name / "evaluation.json"),
            "reliability": str(root / "robustness" / name / "reliability.png"),
        }
        member_dirs = [str(m) for m in members] if name == "mlp" else []
        results[name] = run_evaluation(config, name, str(run), inputs, outputs, member_dirs, threads=1)
        evaluation_files.append(outputs["evaluation"])
    write_table(evaluation_files, root / "robustness" / "robustness.csv")
    plot_robustness([results["pfn"], results["mlp"]], root / "robustness" / "robustness.png")
    return {"root": root, "results": results, "files": files, "sample": sample, "runs": runs}


@pytest.mark.slow
def test_evaluation_rows_drops_and_distances(evaluated: dict) -> None:
    res = evaluated["results"]["pfn"]
    assert res["samples"] == ["test", "nominal", "replica", "smeared"]
    single = res["single"]
    assert single["nominal"]["events"] == single["smeared"]["events"] == 90
    # The replica is the same input: zero distance, zero drop. The smeared copy moves the outputs.
    assert single["replica"]["output_tv"] == 0.0 and single["replica"]["accuracy_drop"] == 0.0
    assert single["smeared"]["output_tv"] > 0.02
    assert single["smeared"]["accuracy_drop"] == pytest.approx(
        single["nominal"]["accuracy"] - single["smeared"]["accuracy"]
    )
    assert "accuracy_drop" not in single["test"] and "accuracy_drop" not in single["nominal"]
    # Temperature scaling: stored in the run dir, never worse on validation.
    stored = json.loads((evaluated["runs"]["pfn"] / "temperature.json").read_text())
    assert stored["temperature"] == res["temperature"]["temperature"] > 0
    assert stored["val_nll_after"] <= stored["val_nll_before"]
    assert "provenance" in stored and (evaluated["runs"]["pfn"] / "metrics.json").is_file()


@pytest.mark.slow
def test_ensemble_rows_have_member_spread(evaluated: dict) -> None:
    ens = evaluated["results"]["mlp"]["ensemble"]
    assert ens["smeared"]["members"] == 3
    sm, nom = ens["smeared"], ens["nominal"]
    # per member, drop = nominal - smeared accuracy, so the means obey the same identity
    assert sm["accuracy_drop_seed_mean"] == pytest.approx(
        nom["accuracy_seed_mean"] - sm["accuracy_seed_mean"]
    )
    assert sm["output_tv_seed_std"] > 0 and nom["spread"] > 0  # three seeds: three different taggers
    assert "ensemble" not in evaluated["results"]["pfn"]
    assert set(evaluated["results"]["mlp"]["reliability"]["nominal"]) == {"single", "single_ts", "ensemble"}


@pytest.mark.slow
def test_table_and_figures_written(evaluated: dict) -> None:
    root = evaluated["root"] / "robustness"
    with open(root / "robustness.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["model"], r["kind"]) for r in rows} == {
        ("mlp", "single"),
        ("pfn", "single"),
        ("mlp", "ensemble"),
    }
    assert len(rows) == 3 * 4
    smeared = next(r for r in rows if r["model"] == "pfn" and r["sample"] == "smeared")
    assert float(smeared["output_tv"]) > 0 and smeared["ece_ts"] != ""
    for path in (root / "robustness.png", root / "mlp" / "reliability.png", root / "pfn" / "reliability.png"):
        assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_held_out_check_refuses_a_sample_that_shares_events(evaluated: dict) -> None:
    files = evaluated["files"]
    ids = np.array([7], np.uint64)  # make_dataset numbers its events 0..n-1 per shard: 7 is a training event
    with pytest.raises(ValueError, match="not held out"):
        check_held_out(ids, files["train"])
    held_out = make_event_ids(ROBUSTNESS_STREAM, 0, 0, np.arange(90))
    assert check_held_out(held_out, files["train"] + files["val"] + files["test"]) == 384


@pytest.mark.slow
def test_a_run_without_a_classifier_is_refused_by_name(evaluated: dict, tmp_path: Path) -> None:
    import torch

    from jetfm.robustness.evaluate import load_tagger
    from jetfm.train.checkpoint import save_checkpoint

    ckpt = torch.load(evaluated["runs"]["pfn"] / "checkpoint.pt", weights_only=True)
    ckpt["config"] = {**ckpt["config"], "model": "mlp", "size": {}}
    ckpt["objective"] = {"name": "masked_particles"}
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(ValueError, match="objective 'masked_particles' did not store a 'mlp' classifier"):
        load_tagger(tmp_path)
