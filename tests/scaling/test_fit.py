"""The loss-surface fit on synthetic cells from a known law: bootstrap coverage, identifiability verdicts,
the two minimisers agreeing, the noise model, the frontier with its band, approaches 1-3 agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from jetfm.scaling.approaches import envelope, isoflop
from jetfm.scaling.fit import NAMES, analyse, fit_law, law
from jetfm.scaling.frontier import flops_per_size
from jetfm.scaling.noise import Cells, training_scatter
from jetfm.scaling.optimise import (
    Problem,
    fit_central,
    init_grid,
    lbfgs,
    minimise_batch,
    objective,
    to_params,
)

TRUTH = np.array([0.5, 60.0, 0.34, 120.0, 0.28])  # E, A, alpha, B, beta
K = 6.0 * 40  # FLOPs per (parameter x jet): 6 x 40 particles


def _grid(sizes: int = 5, data: int = 5, d_max: float = 5) -> tuple[np.ndarray, np.ndarray]:
    n, d = np.meshgrid(np.logspace(3, 6, sizes), np.logspace(3, d_max, data), indexing="ij")
    return n.ravel(), d.ravel()


def _rows(rng: np.random.Generator, n: np.ndarray, d: np.ndarray, rel: float = 0.004,
          seeds: int = 1, train_rel: float = 0.0, k: float = K) -> list[dict]:  # fmt: skip
    rows = []
    for ni, di in zip(n, d, strict=True):
        true = law(TRUTH, ni, di)
        shared_val = rng.normal(0, rel * true)  # the same validation jets for every seed
        for s in range(seeds):
            rows.append({"cell": f"n{ni:.0f}-d{di:.0f}-s{s}", "N": ni, "D": di, "epochs": 1, "seed": s,
                         "val_loss": true + shared_val + rng.normal(0, train_rel * true),
                         "val_loss_sem": rel * true, "flops": k * ni * di, "jets_seen": di,
                         "steps": di / 64})  # fmt: skip
    return rows


def test_bootstrap_intervals_cover_the_true_parameters_in_50_trials() -> None:
    """Each parameter inside its 95 % bootstrap interval in >= 90 % of 50 noisy draws of a 5 x 5 grid."""
    n, d = _grid()
    true = law(TRUTH, n, d)
    sigma = 0.004 * true
    rng = np.random.default_rng(1)
    inside = np.zeros(len(NAMES))
    for trial in range(50):
        loss = true + rng.normal(0, sigma)
        cells = Cells(n, d, np.ones_like(n), loss, sigma, np.ones_like(n))
        fit = fit_law(cells, bootstrap=80, seed=trial, lbfgs_starts=0, grid_starts=2)
        for i, name in enumerate(NAMES):
            p = fit["parameters"][name]
            inside[i] += p["p2.5"] <= TRUTH[i] <= p["p97.5"]
        assert len(fit["bootstrap"]["samples"]) == 80
    coverage = inside / 50
    assert np.all(coverage >= 0.9), dict(zip(NAMES, coverage, strict=True))


def test_batched_minimiser_and_lbfgs_reach_the_same_minimum() -> None:
    n, d = _grid()
    loss = law(TRUTH, n, d) * (1 + np.random.default_rng(0).normal(0, 0.003, len(n)))
    for kind in ("huber", "wls"):
        p = Problem(np.log(n), np.log(d), loss, 0.003 * loss, kind)
        grid = init_grid(p.log_n, p.log_d, loss)
        batched = minimise_batch(grid, p)
        best = batched[np.argmin(objective(batched, p))]
        x, value = lbfgs(best, p)
        assert value == pytest.approx(float(objective(best, p)), rel=1e-6)
        assert to_params(x) == pytest.approx(to_params(best), rel=1e-3)
        central, _ = fit_central(p)
        assert to_params(central)[2] == pytest.approx(TRUTH[2], abs=0.03)


def test_grids_that_cannot_identify_the_law_are_underdetermined() -> None:
    rng = np.random.default_rng(0)
    n, d = _grid()
    two = [r for r in _rows(rng, n, d) if r["N"] in (1e3, 1e6)]  # 2 sizes: A and alpha from one difference
    fit = analyse(two, {"bootstrap": 30})
    assert fit["status"] == "underdetermined"
    assert any("2 distinct model sizes N" in r for r in fit["reasons"]), fit["reasons"]
    narrow_n, narrow_d = np.meshgrid(np.linspace(1e3, 5e3, 5), np.logspace(3, 5, 5), indexing="ij")
    fit = analyse(_rows(rng, narrow_n.ravel(), narrow_d.ravel()), {"bootstrap": 30})
    assert fit["status"] == "underdetermined" and any("span 0.70 decades" in r for r in fit["reasons"])
    full = analyse(_rows(rng, n, d), {"bootstrap": 60})
    assert full["status"] == "ok", full["reasons"]


def test_cells_below_the_minimum_step_count_are_left_out() -> None:
    n, d = _grid()
    rows = _rows(np.random.default_rng(2), n, d)
    fit = analyse(rows, {"bootstrap": 20, "min_steps": 20})  # steps = D / 64: D = 1000 has 15.6 steps
    short = [r["cell"] for r in rows if r["steps"] < 20]
    assert sorted(fit["excluded_cells"]) == sorted(short) and len(short) == 5
    assert fit["grid"]["cells_fitted"] == 20


def test_training_scatter_from_the_seed_axis_enters_chi2() -> None:
    """Seeds scatter by 1.5 % while the validation SEM says 0.2 %: without the seed term chi^2/ndf would be
    ~20; with it ~1."""
    rng = np.random.default_rng(5)
    n, d = _grid()
    rows = _rows(rng, n, d, rel=0.002, seeds=3, train_rel=0.015)
    scatter = training_scatter(rows)
    assert scatter["relative"] == pytest.approx(0.015, rel=0.25) and scatter["replicated_cells"] == 25
    fit = analyse(rows, {"bootstrap": 30})
    assert 0.4 < fit["goodness_of_fit"]["chi2_per_ndf"] < 2.0, fit["goodness_of_fit"]
    one_seed = [r for r in rows if r["seed"] == 0]
    blind = analyse(one_seed, {"bootstrap": 0})
    assert blind["goodness_of_fit"]["chi2_per_ndf"] > 5 and "no seed axis" in blind["notes"][0]


def test_frontier_uses_measured_compute_per_size_and_has_bands() -> None:
    n, d = _grid()
    k_small, k_large = 400.0, 250.0  # small models spend more per parameter (attention, pair MLP)
    rows = _rows(np.random.default_rng(3), n, d)
    for r in rows:
        r["flops"] = (k_small if r["N"] < 1e4 else k_large) * r["N"] * r["D"]
    _sizes, ks = flops_per_size(rows)
    assert ks[0] == pytest.approx(k_small) and ks[-1] == pytest.approx(k_large)
    fit = analyse(rows, {"bootstrap": 60, "budget": 1e12})
    front = fit["frontier"]
    # the last budget is 10x the largest measured compute: flagged; budgets inside the grid are not
    assert front["points"][-1]["extrapolated"] and any(not p["extrapolated"] for p in front["points"])
    for p in front["points"]:
        assert p["N_opt_p16"] <= p["N_opt"] * 1.01 and p["N_opt"] <= p["N_opt_p84"] * 1.01
    # at C = 1e12 the optimum's D (2.2e5) is beyond the grid's largest D (1e5): flagged; at 1e11 it is inside
    assert front["at_budget"]["C"] == 1e12 and front["at_budget"]["extrapolated"] is True
    inside = analyse(rows, {"bootstrap": 20, "budget": 1e11})["frontier"]["at_budget"]
    assert inside["extrapolated"] is False and inside["D_opt"] <= 1e5
    # with one k for every size the frontier is Chinchilla's closed form, a = beta / (alpha + beta)
    flat = analyse(_rows(np.random.default_rng(3), n, d), {"bootstrap": 60})["frontier"]
    true_a = TRUTH[4] / (TRUTH[2] + TRUTH[4])
    assert abs(flat["a"]["value"] - true_a) < 3 * flat["a"]["uncertainty"] + 0.01, flat["a"]
    # a k that falls with N makes large models cheaper: the measured-compute frontier leans to larger N
    assert front["a"]["value"] > flat["a"]["value"] + 3 * flat["a"]["uncertainty"]


def test_envelope_and_isoflop_exponents_agree_with_the_parametric_one() -> None:
    """On a noiseless known law and a dense grid that contains the frontier (N_opt within the sizes at the
    grid's budgets), approaches 1 and 2 give a = beta / (alpha + beta)."""
    n, d = _grid(sizes=13, data=13, d_max=7)
    rows = _rows(np.random.default_rng(4), n, d, rel=0.0)
    sizes, ks = flops_per_size(rows)
    true_a = TRUTH[4] / (TRUTH[2] + TRUTH[4])
    two = isoflop(rows, sizes, ks)
    assert two["budgets_used"] >= 3 and two["a"] == pytest.approx(true_a, abs=0.05), two
    curves = [{"N": ni, "jets_seen": t, "val_loss": law(TRUTH, ni, t)}
              for ni in np.unique(n) for t in np.logspace(2, 7, 40)]  # fmt: skip
    one = envelope(curves, sizes, ks)
    assert one["bins_used"] >= 3 and one["a"] == pytest.approx(true_a, abs=0.05), one
    fit = analyse(rows, {"bootstrap": 0}, curves)
    side = fit["approaches"]
    assert side["approach_3_parametric"]["a"] == pytest.approx(true_a, abs=0.02)
    assert side["approach_1_envelope"]["a"] == pytest.approx(side["approach_3_parametric"]["a"], abs=0.06)


def test_forecast_of_a_planned_grid_shrinks_with_more_test_jets() -> None:
    """A planned grid's expected uncertainties come from a reference sweep's law and noise; scoring cells on
    16x more jets (a quarter of the standard error) must shrink them."""
    from jetfm.config import validate_config
    from jetfm.scaling.forecast import forecast

    rows = _rows(np.random.default_rng(3), *_grid(), seeds=2, train_rel=0.002)
    for r in rows:
        r["val_jets"] = 1000
    reference = analyse(rows, {"bootstrap": 40})
    sizes = {f"w{w}": {"embed_dim": w, "depth": 2} for w in (8, 16, 32, 64, 128)}
    plan = {"sizes": sizes, "data_sizes": [1000, 3000, 10000, 30000, 100000], "val_jets": 1000,
            "fit": {"bootstrap": 40}}  # fmt: skip
    few = forecast(validate_config({"scaling": {**plan, "test_jets": 250}}), reference, rows, trials=2)
    many = forecast(validate_config({"scaling": {**plan, "test_jets": 4000}}), reference, rows, trials=2)
    assert few["cells"] == 25 and few["noise"]["cell_sem"] == pytest.approx(4 * many["noise"]["cell_sem"])
    assert many["noise"]["training_scatter"] == reference["training_noise"]["relative"] > 0
    for name in ("alpha", "beta"):
        assert many["uncertainty"][name] < few["uncertainty"][name], (name, few, many)
