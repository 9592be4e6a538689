"""Our numpy metrics agree with scikit-learn; ECE against a hand computation; JetClass rejection."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from jetfm.train import metrics as m


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 600)
    logits = rng.normal(size=(600, 4)) + 1.5 * np.eye(4)[y]
    logits[:50] = np.round(logits[:50])  # ties
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return p, y


def test_roc_and_auc_match_sklearn(scores: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = scores
    for c in range(4):
        fpr, tpr, thr = m.roc_curve(y == c, p[:, c])
        sfpr, stpr, sthr = skm.roc_curve(y == c, p[:, c], drop_intermediate=False)
        np.testing.assert_allclose(fpr, sfpr)
        np.testing.assert_allclose(tpr, stpr)
        np.testing.assert_allclose(thr[1:], sthr[1:])
        assert m.roc_auc(y == c, p[:, c]) == pytest.approx(skm.roc_auc_score(y == c, p[:, c]), abs=1e-12)


def test_classification_metrics_match_sklearn(scores: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = scores
    out = m.classification_metrics(p, y, ["QCD", "Hbb", "Hcc", "Tbqq"])
    pred = p.argmax(1)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert out["macro_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(y, pred))
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    assert out["macro_f1"] == pytest.approx(f1.mean())
    assert [out["per_class"][c]["precision"] for c in ("QCD", "Hbb", "Hcc", "Tbqq")] == pytest.approx(prec)
    assert [out["per_class"][c]["recall"] for c in ("QCD", "Hbb", "Hcc", "Tbqq")] == pytest.approx(rec)


def test_rejection_follows_jetclass_convention(scores: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = scores
    rej = m.classification_metrics(p, y, ["QCD", "Hbb", "Hcc", "Tbqq"])["rejection"]["Tbqq_vs_QCD"]
    sel = (y == 3) | (y == 0)
    s = p[sel, 3] / (p[sel, 3] + p[sel, 0])
    fpr, tpr, _ = skm.roc_curve(y[sel] == 3, s)
    assert rej["rejection_at_50"] == pytest.approx(1 / np.interp(0.5, tpr, fpr))
    assert rej["auc"] == pytest.approx(skm.roc_auc_score(y[sel] == 3, s))
    assert rej["n_background"] == int((y == 0).sum())


def test_ece_by_hand() -> None:
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    # 15 bins: 0.9 -> bin 13, 0.8 -> bin 11, 0.7 -> bin 10, 0.55 -> bin 8; each alone
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 4
    assert m.expected_calibration_error(p, y) == pytest.approx(expected)
    perfect = np.eye(2)[y]
    assert m.expected_calibration_error(perfect, y) == 0.0


def test_auc_with_one_class_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="both classes"):
        m.roc_auc(np.ones(5, bool), np.arange(5.0))


def test_accuracy_ratio_se_matches_a_paired_bootstrap_and_is_below_the_independent_one():
    """A student right on mostly the teacher's jets: the delta-method SE of acc_s / acc_t equals the spread
    of the ratio over resampled jets, and is well below what independent binomial errors would give."""
    rng = np.random.default_rng(3)
    n = 4000
    teacher = rng.random(n) < 0.56
    student = np.where(rng.random(n) < 0.85, teacher, rng.random(n) < 0.5)  # mostly the teacher's calls
    got = m.accuracy_ratio(student, teacher)
    assert got["n"] == n and got["ratio"] == pytest.approx(student.mean() / teacher.mean())
    idx = rng.integers(0, n, size=(2000, n))
    boot = student[idx].mean(1) / teacher[idx].mean(1)
    assert got["se"] == pytest.approx(boot.std(ddof=1), rel=0.1)
    a, b = student.mean(), teacher.mean()
    independent = got["ratio"] * np.sqrt(a * (1 - a) / (n * a**2) + b * (1 - b) / (n * b**2))
    assert got["se"] < 0.7 * independent
    with pytest.raises(ValueError, match="accuracy_ratio"):
        m.accuracy_ratio(student, teacher[:10])
