"""Calibration and uncertainty: temperature scaling, reliability curves, deep-ensemble spread.

Temperature scaling (Guo et al. 2017) divides the logits by one T > 0 fitted to minimise the validation NLL.
The tagger only hands out softmax probabilities (`jetfm.train.objectives.predict`); log p equals the logits up
to a per-event constant that the softmax cancels, so softmax(log p / T) = softmax(logits / T). NLL is convex
in 1/T, so a bounded scalar search finds its minimum; T = 1 is kept unless the fit lowers the NLL, so the
validation NLL never gets worse, and dividing by T > 0 never changes the argmax.

ECE is `jetfm.train.metrics.expected_calibration_error` (top-class confidence, equal-width bins), the same
number `metrics.json` reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from jetfm.train.metrics import expected_calibration_error

LOG_FLOOR = -745.0  # log of the smallest float64; probabilities that underflowed to 0 are clamped here
T_RANGE = (0.05, 20.0)


def log_probs(probs: np.ndarray) -> np.ndarray:
    """log p as float64 (logits up to a per-row constant)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(probs, dtype=np.float64)), LOG_FLOOR)


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the temperature-scaled probabilities."""
    z = log_probs(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    lp = log_probs(probs)
    return float(-lp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """T minimising the NLL of softmax(log p / T) on (validation) probs; never worse than T = 1."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("temperature scaling needs at least one validation jet")
    before = nll(probs, labels)

    def objective(log_t: float) -> float:
        return nll(scale(probs, float(np.exp(log_t))), labels)

    res = minimize_scalar(objective, bounds=tuple(np.log(T_RANGE)), method="bounded", options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    after = objective(res.x)
    if not after < before:
        t, after = 1.0, before
    return {"temperature": t, "val_nll_before": before, "val_nll_after": after, "val_jets": len(labels)}


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Per confidence bin (same bins as the ECE): mean confidence, accuracy and count (empty bins: NaN)."""
    conf = np.asarray(probs).max(axis=1)
    correct = np.asarray(probs).argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return {"confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(), "count": count.tolist()}


def calibration_numbers(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, float]:
    """ECE and NLL of one set of predictions."""
    return {"ece": expected_calibration_error(probs, labels, bins), "nll": nll(probs, labels)}


def ensemble_spread(member_probs: np.ndarray) -> dict[str, Any]:
    """Deep ensemble of M members (M, events, classes): mean prediction and its spread.

    `spread`: mean over events of the std over members of the probability of the ensemble's predicted class;
    `mutual_info`: mean epistemic part of the predictive entropy, H(mean p) - mean H(p), in nats.
    """
    m = np.asarray(member_probs, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] < 2:
        raise ValueError(f"an ensemble needs >= 2 members of (events, classes) outputs, got shape {m.shape}")
    mean = m.mean(axis=0)
    top = mean.argmax(axis=1)
    top_p = m[:, np.arange(m.shape[1]), top]

    def entropy(p: np.ndarray) -> np.ndarray:
        return -(p * log_probs(p)).sum(axis=-1)

    return {
        "probs": mean,
        "spread": float(top_p.std(axis=0, ddof=1).mean()),
        "mutual_info": float((entropy(mean) - entropy(m).mean(axis=0)).mean()),
    }
