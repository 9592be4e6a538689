"""Trigger operating points: thresholds on the logit difference against hand-counted efficiencies."""

import numpy as np
import pytest

from jetfm.fpga.trigger import operating_points, table_rows, threshold_at


def test_threshold_keeps_at_most_the_rate_and_reports_ties_below_it() -> None:
    bkg = np.arange(100, dtype=float)  # 100 distinct values: rate 0.1 -> the top 10 pass
    t, achieved = threshold_at(bkg, 0.1)
    assert t == 90.0 and achieved == pytest.approx(0.1)
    tied = np.array([0.0] * 90 + [5.0] * 10 + [7.0] * 3)  # fixed-point ties: 13 of 103 jets at >= 5
    t, achieved = threshold_at(tied, 0.1)
    assert t == 7.0 and achieved == pytest.approx(3 / 103)
    t, achieved = threshold_at(np.full(10, 2.0), 0.05)  # every jet ties: nothing can pass only 5 %
    assert t > 2.0 and achieved == 0.0


def test_operating_points_count_signal_on_the_logit_difference() -> None:
    classes = ["QCD", "Hbb", "Tbqq"]
    # background: l_Hbb - l_QCD = 0..9 (10 jets); Hbb signal: differences 3, 8, 9, 12
    bkg = np.stack([np.zeros(10), np.arange(10.0), np.zeros(10)], axis=1)
    sig = np.array([[1.0, 4.0, 0.0], [0.0, 8.0, 0.0], [-1.0, 8.0, 0.0], [0.0, 12.0, 0.0]])
    scores, labels = np.concatenate([bkg, sig]), np.array([0] * 10 + [1] * 4)
    teacher = scores.copy()
    teacher[10:, 1] -= 5.0  # the teacher separates worse: differences -2, 3, 4, 7
    points = operating_points(scores, labels, classes, rates=(0.1, 0.3), reference=teacher)
    assert set(points["classes"]) == {"Hbb"}  # no Tbqq jets: no operating point
    at10, at30 = (row["student"] for row in points["classes"]["Hbb"])
    assert at10["threshold"] == 9.0 and at10["background_efficiency"] == pytest.approx(0.1)
    assert at10["signal"]["efficiency"] == pytest.approx(2 / 4)  # 9 and 12
    assert at10["signal"]["stat_unc"] == pytest.approx(np.sqrt(0.5 * 0.5 / 4))
    assert at30["threshold"] == 7.0 and at30["signal"]["efficiency"] == pytest.approx(3 / 4)
    reference = points["classes"]["Hbb"][1]["reference"]
    assert reference["signal"]["efficiency"] == pytest.approx(1 / 4)  # only 7 >= 7
    assert all(row["resolved"] for row in points["classes"]["Hbb"])
    rows = table_rows("deepsets", points)
    assert [r["signal_efficiency"] for r in rows] == ["0.5000", "0.7500"]
    assert rows[1]["teacher_signal_efficiency"] == "0.2500" and rows[0]["threshold_logit_difference"] == "9"
    assert operating_points(scores, labels, ["A", "B", "C"]) == {}  # no background class: nothing to cut on
