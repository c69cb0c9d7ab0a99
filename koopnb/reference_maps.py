"""Maps from the reference spaces of quadrature to a distribution's parameters (the engine's side of a distribution).

A quadrature engine (the Koopman expectation, randomised QMC, adaptive cubature) integrates against a reference
measure — the standard normal N(0, I) or the unit cube U(0, 1)^dim — and needs each distribution to carry
reference points onto parameter values.  koopnb.distributions says what a distribution is (sample, logpdf,
moments, support, its quantile functions, its gaussian structure); this module says how it is reached from the
reference spaces, as mixins that the distribution classes inherit:

* ``ReferenceMaps``: the public ``from_normal(z)``, ``from_cube(u)``, ``to_normal``, ``to_cube`` with their
  checks, and the default "no map" for distributions without one (an Empirical: integrate over its points);
* ``GaussianMaps``: y = location + L z, then exp on the log-space coordinates (Normal, LogNormal, MvLogNormal);
* ``InverseCdfMaps``: the quantile function in log-probabilities, through the survival function in the upper
  half so that both tails keep full precision (Uniform, TruncatedNormal);
* ``ColumnwiseMaps``: each member of a Joint on its own columns.

Reference points are arrays (n, dim) whose columns follow the distribution's ``.names``; parameter values are
dicts name -> (n,).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri, ndtri_exp

from koopnb.errors import DistributionError


class ReferenceMaps:
    """The public maps and their checks; a host class provides ``dim``, ``_as_dict`` and ``_in_support``."""

    def from_normal(self, z: Any) -> dict[str, np.ndarray]:
        """Map standard normal points ``z`` of shape (n, dim) to parameters: dict name -> (n,)."""
        z = self._reference_points(z, "z")
        if not np.all(np.isfinite(z)):
            raise DistributionError("from_normal needs finite points z; an infinite z is an infinite parameter")
        return self._as_dict(self._from_normal(z))

    def from_cube(self, u: Any) -> dict[str, np.ndarray]:
        """Map points ``u`` of the open unit cube, shape (n, dim), to parameters: dict name -> (n,)."""
        u = self._reference_points(u, "u")
        if not np.all((u > 0.0) & (u < 1.0)):
            raise DistributionError("from_cube needs points u strictly between 0 and 1")
        return self._as_dict(self._from_cube(u))

    def to_normal(self, values: Mapping[str, Any]) -> np.ndarray:
        """Inverse of ``from_normal``: the standard normal points (batch, dim) of parameter sets."""
        return self._to_normal(self._in_support(values))

    def to_cube(self, values: Mapping[str, Any]) -> np.ndarray:
        """Inverse of ``from_cube``: the unit-cube points (batch, dim) of parameter sets."""
        return self._to_cube(self._in_support(values))

    def _from_normal(self, z: np.ndarray) -> np.ndarray:
        raise self._no_reference_map()

    def _from_cube(self, u: np.ndarray) -> np.ndarray:
        raise self._no_reference_map()

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        raise self._no_reference_map()

    def _to_cube(self, x: np.ndarray) -> np.ndarray:
        raise self._no_reference_map()

    def _no_reference_map(self) -> DistributionError:
        return DistributionError(f"{self!r} has no map from a reference space")

    def _reference_points(self, points: Any, symbol: str) -> np.ndarray:
        points = np.asarray(points, dtype=float)
        if points.ndim == 1 and self.dim == 1:
            points = points[:, None]
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise DistributionError(
                f"reference points {symbol} must have shape (n, {self.dim}) for {self!r}, got {points.shape}"
            )
        return points


class GaussianMaps(ReferenceMaps):
    """y = location + L z (z ~ N(0, I)), the parameter exp(y) where log_space, else y; the cube through Φ⁻¹."""

    def _from_normal(self, z: np.ndarray) -> np.ndarray:
        y = self._location + z @ self._factor.T
        x = np.where(self._log_space, np.exp(y), y)
        # a zero-variance parameter is exactly its median/mean, not exp(log(median))
        constant = ~np.any(self._factor, axis=1)
        return np.where(constant, self._centre, x)

    def _from_cube(self, u: np.ndarray) -> np.ndarray:
        return self._from_normal(ndtri(u))

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            y = np.where(self._log_space, np.log(np.where(self._log_space, x, 1.0)), x)
        if self.dim == 1:
            scale = self._factor[0, 0]
            return (y - self._location) / scale if scale > 0 else np.zeros_like(y)
        if not np.all(np.isfinite(y)):
            raise DistributionError(f"to_normal needs positive values of the log-normal parameters of {self!r}")
        # least squares: exact when L is invertible, the minimum-norm z on zero-variance directions
        return np.linalg.lstsq(self._factor, (y - self._location).T, rcond=None)[0].T

    def _to_cube(self, x: np.ndarray) -> np.ndarray:
        return ndtr(self._to_normal(x))


class InverseCdfMaps(ReferenceMaps):
    """A univariate reached by its quantile function (the host's ``_ppf_log``, ``_isf_log``, ``_logcdf``, ``_logsf``).

    The quantile functions take log-probabilities, and upper-half points go through the survival function, so
    both tails keep full precision: z = -40 (u below the smallest double) and u = 1 - 1e-16 map to finite,
    distinct values wherever the distribution allows.
    """

    def _from_cube(self, u: np.ndarray) -> np.ndarray:
        u = u[:, 0]
        lower = u <= 0.5
        with np.errstate(divide="ignore"):
            below, above = np.log(np.where(lower, u, 0.5)), np.log1p(-np.where(lower, 0.5, u))
        return np.where(lower, self._ppf_log(below), self._isf_log(above))[:, None]

    def _from_normal(self, z: np.ndarray) -> np.ndarray:
        z = z[:, 0]
        lower = z <= 0
        below, above = log_ndtr(np.minimum(z, 0.0)), log_ndtr(-np.maximum(z, 0.0))
        return np.where(lower, self._ppf_log(below), self._isf_log(above))[:, None]

    def _to_cube(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._logcdf(x[:, 0]))[:, None]

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        log_cdf, log_sf = self._logcdf(x[:, 0]), self._logsf(x[:, 0])
        return np.where(log_cdf <= np.log(0.5), ndtri_exp(log_cdf), -ndtri_exp(log_sf))[:, None]


class ColumnwiseMaps(ReferenceMaps):
    """Independent members (a Joint): each maps its own columns (the host's ``members`` and ``_slices``)."""

    def _columnwise(self, method: str, x: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [getattr(member, method)(x[:, part]) for member, part in zip(self.members, self._slices, strict=True)],
            axis=1,
        )

    def _from_normal(self, z: np.ndarray) -> np.ndarray:
        return self._columnwise("_from_normal", z)

    def _from_cube(self, u: np.ndarray) -> np.ndarray:
        return self._columnwise("_from_cube", u)

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        return self._columnwise("_to_normal", x)

    def _to_cube(self, x: np.ndarray) -> np.ndarray:
        return self._columnwise("_to_cube", x)
