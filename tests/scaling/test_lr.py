"""The learning-rate search extends past an edge once; the rule's calibration recovers known exponents."""

from __future__ import annotations

import math

import pytest

from jetfm.scaling.lr import calibrate, centre, check_multipliers, search


def test_a_best_lr_on_the_grid_edge_is_extended_once() -> None:
    tried: list[float] = []

    def loss(lr: float) -> float:  # optimum at 0.04, above the grid 0.001..0.01
        tried.append(lr)
        return (math.log(lr) - math.log(0.04)) ** 2

    out = search(loss, [0.001, 0.0032, 0.01], extend=1)
    assert (
        out["extended"] == 1
        and len(tried) == 4
        and tried[-1] == pytest.approx(0.01 * 0.01 / 0.0032, rel=1e-5)
    )
    assert out["lrs"][out["best"]] == pytest.approx(tried[-1], rel=1e-5) and out["at_edge"]
    inside = search(lambda lr: (math.log(lr) - math.log(0.003)) ** 2, [0.001, 0.0032, 0.01])
    assert inside["extended"] == 0 and not inside["at_edge"]
    with pytest.raises(ValueError, match="must span >= 8x"):
        check_multipliers([0.5, 1.0, 2.0])


def test_calibration_recovers_the_width_and_step_exponents() -> None:
    rule = {"base": 0.005, "ref_width": 64, "width_exponent": 0.37, "ref_steps": 2048, "steps_exponent": 0.62}
    points = []
    for w in (8, 64, 512):
        for t in (100, 5000):
            best = centre(rule, w, t)
            lrs = [best * m for m in (0.25, 0.5, 1.0, 2.0, 4.0)]
            points.append(
                {"width": w, "steps": t, "lrs": lrs, "losses": [math.log(x / best) ** 2 for x in lrs]}
            )
    fitted = calibrate(points, 64, 2048)
    assert fitted["width_exponent"] == pytest.approx(0.37, abs=1e-3)
    assert fitted["steps_exponent"] == pytest.approx(0.62, abs=1e-3) and fitted["base"] == pytest.approx(
        0.005, rel=1e-3
    )
