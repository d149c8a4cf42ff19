"""BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to
the Pareto/NBD model", Marketing Science 24(2). While alive a customer buys as a Poisson process
with rate lambda ~ Gamma(r, alpha); after each purchase they drop out with probability
p ~ Beta(a, b).

Per customer: x = repeat purchases, t_x = time of the last purchase and T = time since the
first one, both from the first purchase, in the unit the caller chose (we use weeks, like the
paper, so alpha is comparable with the published fits). Arrays may carry a weight each: the
number of customers sharing that (x, t_x, T), which shrinks the fit on large shops a lot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaln, gammaln, hyp2f1

from vafa.segmentation.scores.clv.mle import minimise

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class Fit:
    params: BgNbdParams
    log_likelihood: float
    converged: bool
    iterations: int
    message: str


def log_likelihood_terms(params: BgNbdParams, x: Array, t_x: Array, T: Array) -> Array:
    """Each customer's log-likelihood, equation (6) of the paper in log form."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    # The second term exists only for repeat buyers (they may have dropped out after t_x);
    # np.where still evaluates it for x = 0, so keep its arguments valid there.
    xb = np.where(repeat, x, 1.0)
    a3 = betaln(a + 1, b + xb - 1) - betaln(a, b) - (r + xb) * np.log(alpha + t_x)
    return a1 + np.where(repeat, np.logaddexp(a2, a3), a2)


def fit(
    x: Array, t_x: Array, T: Array, weights: Array | None = None, *, max_iter: int = 2000
) -> Fit:
    """Maximum likelihood over log-parameters (so all four stay positive)."""
    w = np.ones_like(x) if weights is None else weights
    total = float(w.sum())

    def objective(theta: Array) -> float:
        # Wild steps of the line search overflow; they are simply bad points.
        with np.errstate(all="ignore"):
            p = BgNbdParams(*np.exp(theta))
            value = -float(np.dot(w, log_likelihood_terms(p, x, t_x, T))) / total
        return value if np.isfinite(value) else 1e100

    start = np.log(np.array([1.0, max(float(np.average(T, weights=w)), 1e-3), 1.0, 1.0]))
    m = minimise(objective, start, max_iter=max_iter)
    return Fit(
        params=BgNbdParams(*m.params),
        log_likelihood=-m.value * total,
        converged=m.converged,
        iterations=m.iterations,
        message=m.message,
    )


def _alive_ratio(params: BgNbdParams, x: Array, t_x: Array, T: Array) -> Array:
    """a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for repeat buyers, 0 for the others."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    xb = np.where(repeat, x, 1.0)
    log_ratio = (
        np.log(a) - np.log(b + xb - 1) + (r + xb) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    return np.where(repeat, np.exp(np.minimum(log_ratio, 700.0)), 0.0)


def probability_alive(params: BgNbdParams, x: Array, t_x: Array, T: Array) -> Array:
    """P(still a customer | x, t_x, T), equation (11)."""
    return 1.0 / (1.0 + _alive_ratio(params, x, t_x, T))


def conditional_expected_purchases(
    params: BgNbdParams, t: float, x: Array, t_x: Array, T: Array
) -> Array:
    """E[purchases in (T, T + t] | x, t_x, T], equation (10).

    The paper writes the numerator with ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x;
    a+b+x-1; t/(alpha+T+t)); by Pfaff's transformation that product is exactly
    2F1(r+x, a-1; a+b+x-1; -t/(alpha+T)), which stays finite for heavy buyers where the
    original overflows."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1(r + x, a - 1, a + b + x - 1, -t / (alpha + T))
    numerator = (a + b + x - 1) / (a - 1) * (1.0 - hyp)
    return np.asarray(numerator / (1.0 + _alive_ratio(params, x, t_x, T)), dtype=np.float64)


def expected_purchases(params: BgNbdParams, t: float) -> float:
    """E[X(t)] for a customer who has just made their first purchase, equation (7)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + t)
    return float(
        (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))
    )
