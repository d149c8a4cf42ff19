"""Gamma-Gamma spend model: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves
for customer base analysis", Journal of Marketing Research 42(4), with the notation of Fader &
Hardie's note "The Gamma-Gamma model of monetary value" (2013).

The value of each transaction of a customer is Gamma(p, nu), nu ~ Gamma(q, gamma) across
customers; independent of the purchase process. Fitted on the repeat buyers: x = repeat
purchases, zbar = mean value of those purchases (any money unit; gamma comes out in it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from vafa.segmentation.scores.clv.mle import minimise

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


@dataclass(frozen=True, slots=True)
class Fit:
    params: GammaGammaParams
    log_likelihood: float
    converged: bool
    iterations: int
    message: str


def log_likelihood_terms(params: GammaGammaParams, x: Array, zbar: Array) -> Array:
    """Each repeat buyer's log-likelihood of their mean spend (constants in zbar alone kept,
    so the total is comparable with published figures)."""
    p, q, g = params.p, params.q, params.gamma
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(zbar)
        + px * np.log(x)
        - (px + q) * np.log(g + x * zbar),
        dtype=np.float64,
    )


def fit(x: Array, zbar: Array, *, max_iter: int = 2000) -> Fit:
    """Maximum likelihood over log-parameters, on customers with x > 0 and zbar > 0."""
    keep = (x > 0) & (zbar > 0)
    x, zbar = x[keep], zbar[keep]
    n = max(len(x), 1)

    def objective(theta: Array) -> float:
        with np.errstate(all="ignore"):  # wild line-search steps are simply bad points
            params = GammaGammaParams(*np.exp(theta))
            value = -float(log_likelihood_terms(params, x, zbar).sum()) / n
        return value if np.isfinite(value) else 1e100

    start = np.log(np.array([1.0, 2.0, max(float(np.mean(zbar)), 1e-3)]))
    m = minimise(objective, start, max_iter=max_iter)
    return Fit(
        params=GammaGammaParams(*m.params),
        log_likelihood=-m.value * n,
        converged=m.converged,
        iterations=m.iterations,
        message=m.message,
    )


def population_mean(params: GammaGammaParams) -> float:
    """E[Z]: the mean transaction value of a customer we know nothing about (needs q > 1)."""
    if params.q <= 1:
        return float("nan")
    return params.p * params.gamma / (params.q - 1)


def conditional_expected_value(params: GammaGammaParams, x: Array, zbar: Array) -> Array:
    """E[Z | x, zbar] = (p (gamma + x zbar)) / (p x + q - 1): a weighted mean of the population
    mean and the customer's own; the population mean for customers without repeat purchases."""
    p, q, g = params.p, params.q, params.gamma
    xs = np.where(x > 0, x, 0.0)
    zs = np.where(x > 0, zbar, 0.0)
    return np.asarray(p * (g + xs * zs) / (p * xs + q - 1), dtype=np.float64)
