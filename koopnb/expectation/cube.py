"""Adaptive cubature in the unit cube for non-Gaussian parameter densities (scipy.integrate.cubature)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.integrate import cubature

from koopnb.expectation.adaptive import Outcome


def adaptive_cubature(f: Callable, from_cube: Callable, dim: int, rtol: float, atol: float,
                      max_subdivisions: int, counter: Callable[[], int]) -> Outcome:
    """Integrate f(params(u)) over u ∈ [0, 1]^dim with Genz–Malik (dim ≥ 2) or Gauss–Kronrod 21 (dim = 1)
    subdivision (Genz & Malik 1980; Berntsen, Espelid & Genz 1991), which reports its own error estimate."""
    def integrand(u: np.ndarray) -> np.ndarray:
        return f(from_cube(np.clip(u, 1e-300, 1 - 1e-16)))

    result = cubature(integrand, np.zeros(dim), np.ones(dim), rule="gk21" if dim == 1 else "genz-malik",
                      rtol=rtol, atol=atol, max_subdivisions=max_subdivisions)
    value, error = np.atleast_1d(result.estimate), np.atleast_1d(result.error)
    converged = result.status == "converged"
    warnings = [] if converged else [f"adaptive cubature stopped after {result.subdivisions} subdivisions "
                                     "before reaching the tolerance"]
    return Outcome(value, error, converged, f"adaptive cubature ({'gk21' if dim == 1 else 'genz-malik'}, "
                   f"{result.subdivisions} subdivisions)", [(counter(), value, error)], warnings)
