"""Minimisers of the loss-surface objectives, for one data set or a whole batch of them at once.

The law is written as Chinchilla does, log L = LSE(a - alpha log N, b - beta log D, e) with A = e^a,
B = e^b, E = e^e, so every parameter is free and the objective is smooth. Two objectives:

- "huber": the sum of Huber(delta) of log L_pred - log L_obs (Hoffmann et al. 2022, approach 3): robust to a
  few bad cells, blind to the quoted errors;
- "wls": the sum of ((L_pred - L_obs) / sigma)^2, the chi^2 of the noise model.

The central fit runs scipy's L-BFGS-B from the best points of a grid of initialisations (Chinchilla's
recipe). Bootstraps need hundreds of refits, each from several starts; one scipy call per start would take
minutes, so `minimise_batch` runs a damped Gauss-Newton (Levenberg-Marquardt on the iteratively reweighted
Huber problem) on every (replicate, start) pair together in numpy. Both minimise the same objective; the
tests check they agree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

NAMES = ("E", "A", "alpha", "B", "beta")
N_PARAMS = len(NAMES)
EXPONENT_MAX = 3.0
# Box of the free parameters (e, a, alpha, b, beta): exponents in [0, EXPONENT_MAX]; log prefactors wide.
LOWER = np.array([-30.0, -30.0, 0.0, -30.0, 0.0])
UPPER = np.array([10.0, 80.0, EXPONENT_MAX, 80.0, EXPONENT_MAX])
HUBER_DELTA = 1e-3  # Chinchilla's delta on log residuals


@dataclass(frozen=True)
class Problem:
    """Data of one or a batch of fits: log N, log D (shape (n,)), losses and errors ((n,) or (B, n))."""

    log_n: np.ndarray
    log_d: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray
    kind: str = "huber"
    delta: float = HUBER_DELTA


def to_params(x: np.ndarray) -> np.ndarray:
    """(e, a, alpha, b, beta) -> (E, A, alpha, B, beta), for any leading shape."""
    x = np.asarray(x, float)
    return np.stack([np.exp(x[..., 0]), np.exp(x[..., 1]), x[..., 2], np.exp(x[..., 3]), x[..., 4]], -1)


def from_params(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, float)
    return np.stack([np.log(p[..., 0]), np.log(p[..., 1]), p[..., 2], np.log(p[..., 3]), p[..., 4]], -1)


def _terms(x: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log L_pred (..., n) and its softmax weights (..., n, 3) over the three terms (N, D, E)."""
    x = np.asarray(x, float)[..., None, :]
    t1 = x[..., 1] - x[..., 2] * log_n
    t2 = x[..., 3] - x[..., 4] * log_d
    t3 = x[..., 0]
    m = np.maximum(np.maximum(t1, t2), t3)
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = w1 + w2 + w3
    return m + np.log(s), np.stack([w1 / s, w2 / s, w3 / s], -1)


def _jacobian_log(s: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """d log L_pred / d (e, a, alpha, b, beta), shape (..., n, 5)."""
    return np.stack([s[..., 2], s[..., 0], -s[..., 0] * log_n, s[..., 1], -s[..., 1] * log_d], -1)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def objective(x: np.ndarray, p: Problem) -> np.ndarray:
    """The objective at x (shape (..., 5)) for data broadcastable against it; shape (...)."""
    log_pred, _ = _terms(x, p.log_n, p.log_d)
    if p.kind == "huber":
        return huber(log_pred - np.log(p.loss), p.delta).sum(-1)
    return (((np.exp(log_pred) - p.loss) / p.sigma) ** 2).sum(-1)


def _residuals_and_jacobian(x: np.ndarray, p: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals r, Jacobian J and IRLS weights w, so that the objective is ~ 1/2 sum w r^2 near x."""
    log_pred, s = _terms(x, p.log_n, p.log_d)
    jac = _jacobian_log(s, p.log_n, p.log_d)
    if p.kind == "huber":
        r = log_pred - np.log(p.loss)
        w = np.minimum(1.0, p.delta / np.maximum(np.abs(r), 1e-300))
        return r, jac, w
    pred = np.exp(log_pred)
    r = (pred - p.loss) / p.sigma
    return r, jac * (pred / p.sigma)[..., None], np.ones_like(r)


def minimise_batch(x0: np.ndarray, p: Problem, iterations: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Minimise the objective from every start in x0 (shape (B, 5)) for data p of batch shape (B, n) or
    (n,); returns the solutions (B, 5), projected into the box [LOWER, UPPER]."""
    x = np.clip(np.array(x0, float), LOWER, UPPER)
    lam = np.full(len(x), 1e-3)
    f = objective(x, p)
    eye = np.eye(N_PARAMS)
    for _ in range(iterations):
        r, jac, w = _residuals_and_jacobian(x, p)
        jtw = np.swapaxes(jac, -1, -2) * w[..., None, :]
        h = jtw @ jac
        g = (jtw @ r[..., None])[..., 0]
        diag = np.einsum("bii->bi", h)[:, :, None] * eye + 1e-12 * eye
        try:
            step = np.linalg.solve(h + lam[:, None, None] * diag, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (np.einsum("bii->bi", h) * (1 + lam[:, None]) + 1e-12)
        trial = np.clip(x + step, LOWER, UPPER)
        f_trial = objective(trial, p)
        better = np.isfinite(f_trial) & (f_trial < f)
        gain = np.where(better, f - f_trial, 0.0)
        x = np.where(better[:, None], trial, x)
        f = np.where(better, f_trial, f)
        lam = np.clip(np.where(better, lam * 0.3, lam * 10.0), 1e-12, 1e12)
        done = (better & (gain <= tol * np.maximum(f, 1e-300))) | (lam >= 1e8)
        if np.all(done):
            break
    return x


def init_grid(log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Chinchilla-style grid of starts (e, a, alpha, b, beta), placed on the data's scale: E a fraction of the
    smallest loss; A and B such that each term carries a share of the excess loss at the smallest N or D."""
    low, high = float(np.min(loss)), float(np.max(loss))
    starts = []
    for frac, alpha, beta, share in itertools.product(
        (0.02, 0.3, 0.6, 0.9), (0.1, 0.3, 0.6, 1.0), (0.1, 0.3, 0.6, 1.0), (0.25, 0.75)
    ):
        e = frac * low
        excess = max(high - e, 1e-3)
        a = np.log(share * excess) + alpha * float(np.min(log_n))
        b = np.log((1 - share) * excess) + beta * float(np.min(log_d))
        starts.append([np.log(e), a, alpha, b, beta])
    return np.clip(np.array(starts), LOWER, UPPER)


def lbfgs(x0: np.ndarray, p: Problem) -> tuple[np.ndarray, float]:
    """scipy L-BFGS-B on one data set from one start, with the analytic gradient."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        r, jac, w = _residuals_and_jacobian(x[None], p)
        value = float(objective(x[None], p)[0])
        if p.kind == "huber":  # d huber / d r = clip(r, -delta, delta) = w r
            grad = (jac[0] * (w[0] * r[0])[:, None]).sum(0)
        else:
            grad = 2.0 * (jac[0] * r[0][:, None]).sum(0)
        return value, grad

    res = minimize(
        fun,
        np.clip(x0, LOWER, UPPER),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(LOWER, UPPER, strict=True)),
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
    )
    return np.asarray(res.x), float(res.fun)


def best_starts(grid: np.ndarray, p: Problem, k: int) -> np.ndarray:
    """Indices of the k grid points with the lowest objective for each data set of the batch: (B, k)."""
    values = objective(
        grid[None, :, :],
        Problem(
            p.log_n,
            p.log_d,
            np.atleast_2d(p.loss)[:, None, :],
            np.atleast_2d(p.sigma)[:, None, :],
            p.kind,
            p.delta,
        ),
    )
    return np.argsort(values, axis=-1)[:, :k]


def fit_central(p: Problem, lbfgs_starts: int = 4) -> tuple[np.ndarray, float]:
    """The best minimum of one data set: the batched minimiser from every grid point, then L-BFGS-B from the
    `lbfgs_starts` best grid points and from the batched minimum; the lowest objective wins (0 = the batched
    minimiser alone: the same objective, for many repeated fits such as coverage studies)."""
    grid = init_grid(p.log_n, p.log_d, p.loss)
    solutions = minimise_batch(grid, p)
    values = objective(solutions, p)
    candidates = [(solutions[int(np.argmin(values))], float(np.min(values)))]
    if lbfgs_starts > 0:
        order = best_starts(grid, p, lbfgs_starts)[0]
        for x0 in [*grid[order], candidates[0][0]]:
            candidates.append(lbfgs(x0, p))
    x, value = min(candidates, key=lambda c: c[1])
    return x, value


def refit_batch(p: Problem, central: np.ndarray, grid_starts: int = 4) -> np.ndarray:
    """Refits of a batch of data sets (p.loss shape (B, n)): per replicate, starts at the central solution and
    at its `grid_starts` best points of the init grid; the lowest objective is kept. Returns (B, 5)."""
    loss = np.atleast_2d(p.loss)
    batch = len(loss)
    grid = init_grid(p.log_n, p.log_d, loss[0])
    picks = best_starts(grid, p, grid_starts)  # (B, k)
    starts = np.concatenate([np.broadcast_to(central, (batch, 1, N_PARAMS)), grid[picks]], axis=1)
    k = starts.shape[1]
    rep = Problem(
        p.log_n,
        p.log_d,
        np.repeat(loss, k, 0),
        np.repeat(np.atleast_2d(p.sigma), k, 0) if np.ndim(p.sigma) == 2 else p.sigma,
        p.kind,
        p.delta,
    )
    solutions = minimise_batch(starts.reshape(-1, N_PARAMS), rep).reshape(batch, k, N_PARAMS)
    values = objective(
        solutions,
        Problem(p.log_n, p.log_d, loss[:, None, :], np.atleast_2d(p.sigma)[:, None, :], p.kind, p.delta),
    )
    return solutions[np.arange(batch), np.argmin(values, axis=1)]
