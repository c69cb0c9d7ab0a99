"""Residual error models of the model language and the observation log-likelihood, batched.

Each residual error model is a small object that turns a prediction ``f`` and its parameter values
into the log-density of an observation ``y`` and, for observations below a limit of quantification,
the log-probability of being below it (Beal's M3 method: Beal, J Pharmacokinet Pharmacodyn 28:481,
2001).  Arrays broadcast: predictions are ``(batch, n_obs)``; parameter values are ``(batch, 1)`` or
numbers.  Variances follow MODEL_LANGUAGE.md:

- additive(a):       y ~ Normal(f, a²)
- proportional(b):   y ~ Normal(f, (b f)²)
- combined(a, b):    y ~ Normal(f, a² + b² f²)
- exponential(s):    log y ~ Normal(log f, s²)
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import log_ndtr

from koopnb.model.spec import ErrorModel

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


class ResidualError(ABC):
    """A residual error model: ``names`` are its parameters, in the order ``values`` are passed."""

    kind: str
    names: tuple[str, ...]

    @abstractmethod
    def log_density(self, y: np.ndarray, f: np.ndarray, values: tuple) -> np.ndarray:
        """Log-density of observations ``y`` given predictions ``f`` (same broadcast shape)."""

    @abstractmethod
    def log_below(self, limit: np.ndarray, f: np.ndarray, values: tuple) -> np.ndarray:
        """Log-probability that an observation falls below ``limit`` given predictions ``f``."""

    @abstractmethod
    def interval(self, f: np.ndarray, values: tuple, z: float) -> tuple[np.ndarray, np.ndarray]:
        """The central interval of observations, ±z standard deviations (on the log scale if exponential)."""


class _NormalError(ResidualError):
    """y ~ Normal(f, sd(f)²); subclasses give the standard deviation."""

    @abstractmethod
    def sd(self, f: np.ndarray, values: tuple) -> np.ndarray:
        """Standard deviation of an observation whose prediction is ``f``."""

    def log_density(self, y, f, values):
        sd = self.sd(f, values)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (y - f) / sd
            density = -0.5 * z * z - (np.log(sd) + _LOG_SQRT_2PI)
        if np.ndim(sd) == 0:  # additive error with a fixed standard deviation: one test, not one per entry
            return density if sd > 0 else np.full_like(density, -np.inf)
        return np.where(sd > 0, density, -np.inf)

    def log_below(self, limit, f, values):
        sd = self.sd(f, values)
        with np.errstate(divide="ignore", invalid="ignore"):
            below = log_ndtr((limit - f) / sd)
        return np.where(sd > 0, below, np.where(f < limit, 0.0, -np.inf))

    def interval(self, f, values, z):
        sd = self.sd(f, values)
        return f - z * sd, f + z * sd


class Additive(_NormalError):
    """additive(a): constant standard deviation a (units of the output)."""

    kind = "additive"
    names = ("additive",)

    def sd(self, f, values):
        (a,) = values
        return np.asarray(a, dtype=float)  # broadcasts against f where it is used


class Proportional(_NormalError):
    """proportional(b): standard deviation b·|f| (b is a fraction, 0.1 = 10 %)."""

    kind = "proportional"
    names = ("proportional",)

    def sd(self, f, values):
        (b,) = values
        return b * np.abs(f)


class Combined(_NormalError):
    """combined(a, b): variance a² + b² f²."""

    kind = "combined"
    names = ("additive", "proportional")

    def sd(self, f, values):
        a, b = values
        return np.sqrt(a**2 + (b * f) ** 2)


class Exponential(ResidualError):
    """exponential(s): log y ~ Normal(log f, s²); needs f > 0 and y > 0."""

    kind = "exponential"
    names = ("sigma",)

    def log_density(self, y, f, values):
        (s,) = values
        with np.errstate(divide="ignore", invalid="ignore"):
            log_y = np.log(y)
            density = -0.5 * ((log_y - np.log(f)) / s) ** 2 - np.log(s) - _LOG_SQRT_2PI - log_y
        return np.where((f > 0) & (y > 0), density, -np.inf)

    def log_below(self, limit, f, values):
        (s,) = values
        with np.errstate(divide="ignore", invalid="ignore"):
            below = log_ndtr((np.log(limit) - np.log(f)) / s)
        return np.where(f > 0, below, 0.0)

    def interval(self, f, values, z):
        (s,) = values
        return f * np.exp(-z * s), f * np.exp(z * s)


_KINDS = {kind.kind: kind for kind in (Additive, Proportional, Combined, Exponential)}


def residual_error(spec: ErrorModel) -> tuple[ResidualError, tuple[float, ...]]:
    """The residual error object for a parsed ``OUTPUT ~ ...`` line, and its parameter values."""
    error = _KINDS[spec.kind]()
    values = {"additive": spec.additive, "proportional": spec.proportional, "sigma": spec.sigma}
    return error, tuple(float(values[name]) for name in error.names)


def log_likelihood(error: ResidualError, values: tuple, observed: np.ndarray, below: np.ndarray,
                   used: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Sum over observations of the log-likelihood, one value per row: (batch,).

    ``observed`` (batch, n_obs) holds the observations, or the quantification limit where ``below``
    is True (M3); ``used`` masks padding; ``predicted`` (batch, n_obs).  A row whose prediction is
    not finite gets -inf.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        terms = error.log_density(observed, predicted, values)
        if below.any():
            # The probability of being below a limit stays finite for a prediction of -inf: mark it.
            censored = np.where(np.isfinite(predicted), error.log_below(observed, predicted, values), np.nan)
            terms = np.where(below, censored, terms)
    total = (terms if used.all() else np.where(used, terms, 0.0)).sum(axis=-1)
    # A prediction that is not finite makes its term -inf or NaN: either way the row is impossible.
    return np.where(np.isnan(total), -np.inf, total)
