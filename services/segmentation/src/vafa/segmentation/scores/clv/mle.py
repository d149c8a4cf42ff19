"""Maximum likelihood over log-parameters, shared by BG/NBD and Gamma-Gamma."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize


@dataclass(frozen=True, slots=True)
class Minimum:
    params: tuple[float, ...]
    # The objective at the minimum (the caller's scale: a mean negative log-likelihood).
    value: float
    converged: bool
    iterations: int
    message: str


def minimise(
    objective: Callable[[NDArray[np.float64]], float],
    start: NDArray[np.float64],
    *,
    max_iter: int,
) -> Minimum:
    """Minimises `objective` over log-parameters from `start` (log space); returns the
    parameters back in natural space. L-BFGS-B first; a Nelder-Mead polish from where it stopped
    only when it did not converge: robust where the finite-difference gradient is poor (flat
    likelihoods, small shops), but slow on large ones."""
    res = optimize.minimize(
        objective, start, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-12}
    )
    best = res
    if not res.success:
        polish = optimize.minimize(
            objective,
            res.x,
            method="Nelder-Mead",
            options={"maxiter": max_iter, "xatol": 1e-8, "fatol": 1e-12},
        )
        best = polish if polish.fun <= res.fun else res
    return Minimum(
        params=tuple(float(v) for v in np.exp(best.x)),
        value=float(best.fun),
        converged=bool(best.success),
        iterations=int(res.nit) + (int(best.nit) if best is not res else 0),
        message=str(best.message),
    )
