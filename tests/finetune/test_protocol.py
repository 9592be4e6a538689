"""The comparison protocol: paired per-seed gains and their standard error against a hand computation, the
test-jet bootstrap against the binomial formula, the headline method chosen on validation (not test), a
labelled subset per seed (nested across fractions), the validation sweep's grid and choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jetfm.finetune.efficiency import bootstrap_se, gains, write_efficiency
from jetfm.finetune.labelled import labelled_selection, subset_salt
from jetfm.finetune.report import chosen_gain_lines, protocol_table


def _row(method: str, seed: int, acc: float, val: float | None = None) -> dict:
    row = {"method": method, "fraction": 0.01, "jets": 210, "seed": seed, "accuracy": acc, "macro_auc": 0.8,
           "macro_f1": 0.4, "rejection50": 5.0}  # fmt: skip
    if val is not None:
        row["val_accuracy"] = val
    return row


def test_paired_gain_and_its_standard_error_match_a_hand_computation() -> None:
    rs3l, scratch = [0.45, 0.50, 0.40], [0.35, 0.46, 0.38]
    rows = [_row("rs3l", s, a) for s, a in enumerate(rs3l)] + [
        _row("scratch", s, a) for s, a in enumerate(scratch)
    ]
    rows.append(_row("rs3l", 9, 0.99))  # no scratch run with seed 9: not paired, left out
    (g,) = gains(rows)
    # d = (0.10, 0.04, 0.02); mean 0.053333; sample sd sqrt(((0.046667)^2 + (0.013333)^2 + (0.033333)^2) / 2)
    # = 0.041633; SE = sd / sqrt(3) = 0.024037
    assert g["seeds"] == 3 and g["gain"] == pytest.approx(0.0533333, abs=1e-6)
    assert g["se"] == pytest.approx(0.0240370, abs=1e-6)
    assert g["per_seed"] == pytest.approx({"0": 0.10, "1": 0.04, "2": 0.02})
    # the old quadrature of the two arms' spreads is larger: pairing removes the shared seed variance
    assert g["se"] * math.sqrt(3) < math.hypot(np.std(rs3l, ddof=1), np.std(scratch, ddof=1))


def test_test_jet_bootstrap_matches_the_binomial_standard_error() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    base = np.zeros(n, bool)
    method = rng.random(n) < 0.5  # per-jet gain 0 or 1 with p = 0.5: SE of the mean sqrt(p (1 - p) / n)
    se = bootstrap_se([method], [base], n_boot=2000, seed=1)
    assert se == pytest.approx(math.sqrt(0.25 / n), rel=0.1)
    (g,) = gains([_row("m", 0, method.mean()), _row("scratch", 0, 0.0)], correct={
        ("m", 0.01, 0): method, ("scratch", 0.01, 0): base})  # fmt: skip
    assert g["bootstrap_se"] == pytest.approx(se, rel=0.1) and math.isnan(g["se"])  # one seed: no seed SE


def test_headline_method_is_chosen_on_validation_not_test(tmp_path: Path) -> None:
    rows = [
        *(_row("mpm", s, 0.60 + 0.01 * s, val=0.40) for s in range(3)),  # best on test, worse on validation
        *(_row("rs3l", s, 0.50 + 0.01 * s, val=0.55) for s in range(3)),
        *(_row("scratch", s, 0.45 + 0.02 * s, val=0.45) for s in range(3)),
    ]
    write_efficiency(rows, tmp_path / "e.csv", tmp_path / "e.json")
    eff = json.loads((tmp_path / "e.json").read_text())
    (line,) = chosen_gain_lines(eff["summary"], eff["gains"]["accuracy"])
    assert "**rs3l** (chosen on validation accuracy 0.550)" in line and "gain +4.0 ± 0.6 points" in line
    table = protocol_table(eff)
    assert "| 0.01 | 210 | mpm | 3 | 0.400 |" in table and "—" in table  # scratch has no gain to itself


def test_each_seed_draws_its_own_labelled_subset_nested_across_fractions() -> None:
    ids = np.arange(50_000, dtype=np.uint64)
    a1, a10 = (labelled_selection(ids, f, subset_salt(1)) for f in (0.01, 0.1))
    b1 = labelled_selection(ids, 0.01, subset_salt(2))
    assert not (a1 & ~a10).any()  # nested within a seed
    assert (a1 & b1).sum() < 0.1 * a1.sum()  # different seeds: nearly disjoint 1 % subsets
    assert np.array_equal(labelled_selection(ids, 0.01, subset_salt(0)), labelled_selection(ids, 0.01))
    with pytest.raises(ValueError, match="subset index must be >= 0"):
        subset_salt(-1)


def _demo() -> dict:
    from jetfm.config import load_config

    return load_config("config/pretrain-demo.yaml", {})


def test_demo_protocol_arms_sweep_and_pretraining_seeds() -> None:
    from jetfm.finetune.protocol import backbone_checkpoints, finetune_methods, hparams_inputs, sweep_grid

    config = _demo()
    assert finetune_methods(config) == [
        "scratch",
        "scratch-matched",
        "mpm",
        "mpm-probe",
        "rs3l",
        "rs3l-probe",
    ]
    assert len(sweep_grid(config)) == 4 and config["pretrain"]["seeds"] >= 2
    assert backbone_checkpoints(config, "demo", "rs3l-probe", 3) == [
        "results/pretrain/demo_rs3l-s1/checkpoint.pt"
    ]
    assert backbone_checkpoints(config, "demo", "scratch-matched", 0) == []
    # scratch-matched reuses scratch's choice; probes are not swept
    assert hparams_inputs(config, "demo", "scratch-matched", "0.01") == [
        "results/finetune/demo/sweep/scratch_0.01.json"
    ]
    assert hparams_inputs(config, "demo", "mpm-probe", "0.01") == []
    assert config["resimulate"]["mode"] == "reshower" and config["finetune"]["modes"] == ["full", "frozen"]


def test_compute_matched_scratch_gets_pretraining_plus_finetuning_steps() -> None:
    from jetfm.finetune.run import finetune_config

    config = _demo()
    plain, matched = finetune_config(config, 0), finetune_config(config, 0, method="scratch-matched")
    assert matched.max_steps == plain.max_steps + config["pretrain"]["train"]["max_steps"] == 1800


def test_sweep_choice_is_the_best_validation_point_and_is_required(tmp_path: Path) -> None:
    from jetfm.finetune.protocol import choose
    from jetfm.finetune.run import read_hparams, run_finetuning

    grid = [{"lr": 0.001, "dropout": 0.0}, {"lr": 0.002, "dropout": 0.0}, {"lr": 0.002, "dropout": 0.1}]
    files = []
    for i, val in enumerate((0.40, 0.52, 0.52)):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps({"selected": {"validation": {"val_accuracy": val, "val_loss": 1.0}}}))
        files.append(str(path))
    record = choose(files, grid, tmp_path / "choice.json")
    assert record["point"] == 1 and read_hparams(tmp_path / "choice.json") == grid[1]  # tie: the first
    (tmp_path / "bad.json").write_text(json.dumps({"chosen": {"momentum": 0.9}}))
    with pytest.raises(ValueError, match=r"bad.json: field 'chosen' has unknown key\(s\) \['momentum'\]"):
        read_hparams(tmp_path / "bad.json")
    config = _demo()
    config["dataset"] = "nowhere"
    with pytest.raises(FileNotFoundError, match=r"results/finetune/nowhere/sweep/scratch_0.01.json does not"):
        run_finetuning(config, "scratch", 0.01, 0, {"train": [], "val": [], "test": []}, str(tmp_path / "r"))


def test_the_rules_build_the_demo_and_study_dags() -> None:
    import os
    import subprocess
    import sys

    snakemake = Path(sys.executable).parent / "snakemake"
    for extra in ([], ["config/pretrain-heldout.yaml"], ["config/pretrain-unlabelled.yaml"]):
        cmd = [str(snakemake), "-n", "--quiet", "rules", "--configfile", "config/pretrain-demo.yaml", *extra]
        out = subprocess.run([*cmd, "--", "finetune_all", "pretrain_all"], capture_output=True, text=True,
                             env=os.environ, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        counts = dict(
            line.split()[:2] for line in out.stdout.splitlines() if line.startswith(("finetune", "pretrain"))
        )
        if not extra:
            assert (
                counts["finetune_sweep"] == "12" and counts["finetune"] == "18" and counts["pretrain"] == "4"
            )
        elif "heldout" in extra[0]:
            assert counts["pretrain"] == "2"
        else:
            assert counts["pretrain"] == "3" and counts["finetune"] == "24"  # RS3L at 3 sizes


def test_heldout_class_accuracy_is_the_accuracy_on_those_classes_jets(tmp_path: Path) -> None:
    from jetfm.finetune.report import efficiency_from_runs
    from jetfm.finetune.schedule import save_predictions

    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    classes = ["QCD", "Hbb", "Tbqq"]
    files = []
    for method, pred in (("scratch", [0, 1, 1, 1, 2, 0, 0, 0]), ("mpm", [0, 0, 1, 0, 2, 2, 2, 0])):
        run = tmp_path / method
        run.mkdir()
        probs = np.eye(3)[pred]
        save_predictions(run / "test_predictions.npz", probs, labels)
        acc = float((np.asarray(pred) == labels).mean())
        metrics = {"method": method, "labelled_fraction": 0.1, "labelled_jets": 20, "seed": 5,
                   "classes": classes, "accuracy": acc, "macro_auc": 0.7, "macro_f1": 0.5, "n": 8,
                   "rejection": {"Hbb": {"rejection_at_50": 4.0, "n_background": 2}}}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(metrics))
        files.append(str(run / "metrics.json"))
    summary = efficiency_from_runs(files, tmp_path / "e.csv", tmp_path / "e.json", tmp_path / "e.png",
                                   heldout=["Tbqq"])  # fmt: skip
    by = {s["method"]: s for s in summary}
    assert by["scratch"]["heldout_accuracy_mean"] == pytest.approx(1 / 4)  # Tbqq jets: 1 of 4 right
    assert by["mpm"]["heldout_accuracy_mean"] == pytest.approx(3 / 4)
    eff = json.loads((tmp_path / "e.json").read_text())
    assert eff["gains"]["heldout_accuracy"][0]["gain"] == pytest.approx(0.5)
    assert "bootstrap_se" in eff["gains"]["accuracy"][0]
