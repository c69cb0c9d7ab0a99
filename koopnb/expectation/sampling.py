"""Sampling baselines on the same problem: Monte Carlo and randomised quasi-Monte Carlo."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import qmc

from koopnb.errors import ExpectationError
from koopnb.expectation.adaptive import Outcome, within

MAX_DRAWS = 100_000_000
"""Most Monte Carlo draws one expectation may take (drawn in chunks, so memory is not the limit: time is)."""


def monte_carlo(f: Callable, sample: Callable[[int, np.random.Generator], dict], n: int, seed,
                chunk: int) -> Outcome:
    """Plain Monte Carlo with n draws; error = standard error of the mean (Welford-free two-pass per chunk)."""
    if n < 2:
        raise ExpectationError("Monte Carlo needs n >= 2 draws to estimate its standard error")
    if n > MAX_DRAWS:
        raise ExpectationError(f"Monte Carlo with {n:,} draws is refused: at most {MAX_DRAWS:,} draws run in one "
                               "call (minutes for a linear model; the Koopman rule reaches that accuracy with far "
                               "fewer model evaluations)")
    rng = np.random.default_rng(seed)
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, n, chunk):
        values = f(sample(min(chunk, n - start), rng))
        total = total + values.sum(axis=0)
        total_sq = total_sq + (values**2).sum(axis=0)
        count += len(values)
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 0.0) * count / (count - 1)
    error = np.sqrt(variance / count)
    return Outcome(mean, error, True, f"Monte Carlo, {n} draws", [(count, mean, error)])


def randomized_qmc(f: Callable, from_cube: Callable, dim: int, rtol: float, atol: float, seed,
                   replicates: int = 16, start_log2: int = 6, max_nodes: int = 1_000_000,
                   counter: Callable[[], int] = lambda: 0, indicator: bool = False) -> Outcome:
    """Scrambled Sobol' points (Owen 1997), ``replicates`` independent scramblings of 2^m points each,
    doubling m until the standard error over replicates meets the tolerance.

    ``indicator``: f takes the values 0 and 1 only (a window).  Then replicates that all saw the event never
    (or always) are no evidence of accuracy — a rare event may simply not have been hit yet — and the error is
    the rule of three, 3 / (points so far), instead of their zero spread.
    """
    rng = np.random.default_rng(seed)
    engines = [qmc.Sobol(dim, scramble=True, seed=rng) for _ in range(replicates)]
    sums, count, history = None, 0, []
    m = start_log2
    while True:
        new = 2**m - count  # Sobol' prefixes of length 2^m keep their balance properties
        points = np.concatenate([engine.random(new) for engine in engines])
        values = f(from_cube(points)).reshape(replicates, new, -1).sum(axis=1)
        sums = values if sums is None else sums + values
        count += new
        means = sums / count
        value = means.mean(axis=0)
        error = means.std(axis=0, ddof=1) / np.sqrt(replicates)
        if indicator:
            error = np.where(error == 0, 3.0 / (count * replicates), error)
        history.append((counter(), value, error))
        if within(value, error, rtol, atol):
            return Outcome(value, error, True, f"randomised QMC, {replicates} x 2^{m} scrambled Sobol' points",
                           history)
        if 2 ** (m + 1) * replicates > max_nodes:
            return Outcome(value, error, False, f"randomised QMC, {replicates} x 2^{m} scrambled Sobol' points",
                           history, [f"stopped at max_nodes={max_nodes} points before reaching the tolerance"])
        m += 1
