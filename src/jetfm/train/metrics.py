"""Classifier metrics in numpy (cross-checked against scikit-learn in tests/test_train_metrics.py).

JetClass convention for background rejection: for signal class X, the discriminant is
s = p_X / (p_X + p_QCD) on X and QCD jets only, and the rejection is 1 / (QCD efficiency) at a fixed signal
efficiency (50 % or 99 %, per class in the paper's table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with thresholds decreasing; ties collapsed like sklearn (no point dropping)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size else np.array([], dtype=int)
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    thresholds = np.r_[np.inf, s[idx]]
    n_pos, n_neg = tps[-1], fps[-1]
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs both classes: {n_pos} positives, {n_neg} negatives")
    return fps / n_neg, tps / n_pos, thresholds


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes: {n_pos} positives, {n_neg} negatives")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rejection_at(fpr: np.ndarray, tpr: np.ndarray, signal_eff: float) -> float | None:
    """1 / background efficiency at the given signal efficiency (linear interpolation on the ROC).

    None when no background jet passes: the rejection is then only bounded, > number of background jets.
    """
    bkg_eff = float(np.interp(signal_eff, tpr, fpr))
    return None if bkg_eff <= 0 else 1.0 / bkg_eff


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(
        num_classes * np.asarray(y_true) + np.asarray(y_pred), minlength=num_classes**2
    ).reshape(num_classes, num_classes)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 from a confusion matrix (0 where undefined, as sklearn)."""
    tp = np.diag(cm).astype(np.float64)
    pred, true = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence: Σ_b (n_b / n) |accuracy_b − confidence_b|, equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # bins (k/B, (k+1)/B]
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def classification_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    classes: list[str] | tuple[str, ...],
    background: str = "QCD",
    signal_effs: tuple[float, ...] = (0.5, 0.99),
) -> dict[str, Any]:
    """Everything metrics.json reports, over the classes present in `y_true`."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    n_cls = probs.shape[1]
    present = [c for c in range(n_cls) if (y_true == c).any()]
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n_cls)
    precision, recall, f1 = precision_recall_f1(cm)
    per_class: dict[str, Any] = {}
    aucs = []
    for c in present:
        entry: dict[str, Any] = {
            "n": int((y_true == c).sum()),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
        }
        if len(present) > 1:
            entry["auc_ovr"] = roc_auc(y_true == c, probs[:, c])
            aucs.append(entry["auc_ovr"])
        per_class[classes[c]] = entry
    bkg = list(classes).index(background) if background in classes else None
    rejection: dict[str, Any] = {}
    if bkg is not None and bkg in present:
        for c in present:
            if c == bkg:
                continue
            sel = (y_true == c) | (y_true == bkg)
            s = probs[sel, c] / np.clip(probs[sel, c] + probs[sel, bkg], 1e-12, None)
            fpr, tpr, _ = roc_curve(y_true[sel] == c, s)
            rejection[f"{classes[c]}_vs_{background}"] = {
                "auc": roc_auc(y_true[sel] == c, s),
                "n_signal": int((y_true[sel] == c).sum()),
                "n_background": int((y_true[sel] == bkg).sum()),
                **{f"rejection_at_{round(100 * e)}": rejection_at(fpr, tpr, e) for e in signal_effs},
            }
    return {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_precision": float(np.mean(precision[present])),
        "macro_recall": float(np.mean(recall[present])),
        "macro_f1": float(np.mean(f1[present])),
        "ece": expected_calibration_error(probs, y_true),
        "per_class": per_class,
        "rejection": rejection,
        "confusion_matrix": cm[np.ix_(present, present)].tolist(),
        "confusion_classes": [classes[c] for c in present],
    }


def accuracy_ratio(correct: np.ndarray, reference: np.ndarray) -> dict[str, float | int]:
    """acc(correct) / acc(reference) on the same jets, with its standard error by the delta method on the
    paired per-jet correctness (a student and its teacher are right on mostly the same jets, so independent
    binomial errors would overstate the spread of the ratio)."""
    a, b = np.asarray(correct, np.float64), np.asarray(reference, np.float64)
    n = len(a)
    if n == 0 or len(b) != n or b.mean() == 0:
        raise ValueError(f"accuracy_ratio: {n} and {len(b)} jets, reference accuracy {b.mean() if n else 0}")
    ratio = a.mean() / b.mean()
    se = float((a - ratio * b).std(ddof=1) / b.mean() / np.sqrt(n)) if n > 1 else float("nan")
    return {"ratio": float(ratio), "se": se, "n": n}
