"""Distributions of a patient's parameters.

A distribution answers the statistical questions: ``sample``, ``logpdf``, ``mean``, ``median``, ``cov``,
``std``, its support and quantile functions.  How a quadrature engine carries reference points onto parameter
values (``from_normal(z)`` for ``z ~ N(0, I)`` of shape ``(n, dim)``, ``from_cube(u)`` for
``u ~ U(0, 1)^dim``, and their inverses ``to_normal``, ``to_cube``) lives in koopnb.reference_maps, whose
mixins these classes inherit.

* A *gaussian* distribution (``LogNormal``, ``Normal``, ``MvLogNormal`` and a ``Joint`` of
  gaussian members) is exactly ``y = location + scale_matrix @ z`` followed by ``exp`` on the
  coordinates where ``log_space`` is True.  The engine uses this structure to integrate window
  probabilities along one direction in closed form ("pre-integration").
* ``Empirical`` is the discrete measure on posterior samples (``points()``) or, with
  ``kde=True``, a Gaussian kernel density exposed as a mixture (``mixture()``).

Every parameter value is a dict ``name -> ndarray (batch,)``; reference points are arrays
``(batch, dim)`` whose columns follow ``.names``.  Units are the user's.  Distributions are
immutable.  Zero-variance directions (``omega = 0``, ``sd = 0``, a covariance with a zero row)
are allowed: such a parameter is a constant.  Its "density" is then taken with respect to its
support (scipy's ``allow_singular`` convention): a constant contributes 0 to ``logpdf`` at its
value and -inf elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats
from scipy.special import log_ndtr, logsumexp, ndtr, ndtri_exp

from koopnb.errors import DistributionError
from koopnb.reference_maps import ColumnwiseMaps, GaussianMaps, InverseCdfMaps, ReferenceMaps

__all__ = [
    "Distribution",
    "Empirical",
    "Joint",
    "LogNormal",
    "MvLogNormal",
    "Normal",
    "TruncatedNormal",
    "Uniform",
]

Seed = int | np.random.Generator | np.random.SeedSequence | None
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


class Distribution(ReferenceMaps, ABC):
    """The common interface of every koopnb distribution (immutable)."""

    # ----------------------------------------------------------------- identity
    @property
    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Parameter names, in the order of the columns of every reference array."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of parameters."""

    @property
    def gaussian(self) -> bool:
        """True when the distribution is exactly a monotone transform of ``location + L z``, z ~ N(0, I)."""
        return False

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new distribution instead")

    def _freeze(self, **attributes: Any) -> None:
        """Set attributes once, at construction (arrays are made read-only)."""
        for key, value in attributes.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, key, value)

    # --------------------------------------------------------------- statistics
    def sample(self, n: int, seed: Seed = None) -> dict[str, np.ndarray]:
        """Draw ``n`` parameter sets with ``numpy.random.default_rng(seed)``: dict name -> (n,)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise DistributionError(f"the number of samples must be a non-negative integer, got {n!r}")
        return self._as_dict(self._sample(int(n), np.random.default_rng(seed)))

    def logpdf(self, values: Mapping[str, Any]) -> np.ndarray:
        """Log density at a batch of parameter sets, shape (batch,); -inf outside the support.

        ``values`` maps each name to a float or a 1-D array (broadcast together); other keys are ignored.
        """
        return self._logpdf(self._as_array(values))

    def mean(self) -> dict[str, float]:
        """Mean of each parameter."""
        return self._as_floats(self._mean())

    def median(self) -> dict[str, float]:
        """Median of each parameter's marginal distribution."""
        return self._as_floats(self._median())

    def cov(self) -> np.ndarray:
        """Covariance matrix of the parameters (not of their logs), shape (dim, dim), in ``.names`` order."""
        return self._cov()

    def std(self) -> dict[str, float]:
        """Standard deviation of each parameter."""
        return self._as_floats(np.sqrt(np.maximum(np.diag(self._cov()), 0.0)))

    # ---------------------------------------------- gaussian structure (engine)
    @property
    def log_space(self) -> tuple[bool, ...]:
        """Per name: True when the parameter is ``exp`` of the gaussian variable (gaussian distributions)."""
        raise self._not_gaussian("log_space")

    @property
    def location(self) -> np.ndarray:
        """Centre of the gaussian variable y (log-median or mean), shape (dim,)."""
        raise self._not_gaussian("location")

    @property
    def scale_matrix(self) -> np.ndarray:
        """Factor L, shape (dim, dim), with y = location + L z and cov(y) = L Lᵀ."""
        raise self._not_gaussian("scale_matrix")

    def _not_gaussian(self, what: str) -> DistributionError:
        return DistributionError(f"{self!r} is not a transform of a normal vector, so it has no {what}")

    # ------------------------------------------------- what subclasses provide
    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    @abstractmethod
    def _logpdf(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _mean(self) -> np.ndarray: ...

    @abstractmethod
    def _median(self) -> np.ndarray: ...

    @abstractmethod
    def _cov(self) -> np.ndarray: ...

    @abstractmethod
    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed bounds (low, high) of each parameter, shape (dim,) each."""

    # ---------------------------------------------------------------- plumbing
    def _as_dict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {name: x[:, i] for i, name in enumerate(self.names)}

    def _as_floats(self, x: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.names, x, strict=True)}

    def _as_array(self, values: Mapping[str, Any]) -> np.ndarray:
        if not isinstance(values, Mapping):
            raise DistributionError(f"parameter values must be a dict name -> array, got {type(values).__name__}")
        missing = [name for name in self.names if name not in values]
        if missing:
            raise DistributionError(f"parameter values are missing {', '.join(map(repr, missing))}")
        columns = [np.atleast_1d(np.asarray(values[name], dtype=float)) for name in self.names]
        for name, column in zip(self.names, columns, strict=True):
            if column.ndim != 1:
                raise DistributionError(f"parameter {name!r} must be a float or a 1-D array, got shape {column.shape}")
        try:
            return np.stack(np.broadcast_arrays(*columns), axis=1)
        except ValueError:
            shapes = ", ".join(f"{n}: {c.shape}" for n, c in zip(self.names, columns, strict=True))
            raise DistributionError(f"parameter arrays have different lengths ({shapes})") from None

    def _in_support(self, values: Mapping[str, Any]) -> np.ndarray:
        x = self._as_array(values)
        low, high = self._support()
        outside = ~((x >= low) & (x <= high))
        if np.any(outside):
            row, col = np.argwhere(outside)[0]
            raise DistributionError(
                f"{self.names[col]} = {float(x[row, col])!r} (row {row}) is outside the support "
                f"[{float(low[col])!r}, {float(high[col])!r}] of {self!r}"
            )
        return x



# ===================================================================== helpers
def _number(value: Any, what: str, *, allow_infinite: bool = False) -> float:
    """A float from user input, or a DistributionError naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DistributionError(f"{what} must be a number, got {value!r}") from None
    if np.isnan(number) or (np.isinf(number) and not allow_infinite):
        raise DistributionError(f"{what} must be a finite number, got {value!r}")
    return number


def _name(value: Any, owner: str) -> str:
    if not isinstance(value, str) or not value:
        raise DistributionError(f"{owner} needs parameter names that are non-empty strings, got {value!r}")
    return value


def _robust_factor(cov: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A factor F with F Fᵀ = cov: Cholesky when positive definite, pivoted Cholesky when semi-definite.

    The pivoted factor (LAPACK dpstrf) puts zero-variance directions last and leaves their rows
    exactly zero, so a parameter with no variance is an exact constant of ``from_normal``.
    """
    if not np.all(np.isfinite(cov)):
        raise DistributionError("the covariance matrix contains a non-finite entry")
    scale = float(np.max(np.abs(cov), initial=0.0))
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * scale):
        i, j = np.unravel_index(np.argmax(np.abs(cov - cov.T)), cov.shape)
        raise DistributionError(
            f"the covariance matrix is not symmetric: entry ({names[i]}, {names[j]}) = {float(cov[i, j])!r} "
            f"but ({names[j]}, {names[i]}) = {float(cov[j, i])!r}"
        )
    negative = np.flatnonzero(np.diag(cov) < 0)
    if negative.size:
        raise DistributionError(f"the covariance matrix has a negative variance for {names[negative[0]]!r}")
    cov = 0.5 * (cov + cov.T)
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass  # only positive semi-definite: checked and factorised with pivoting below
    eigenvalues = np.linalg.eigvalsh(cov)
    if eigenvalues[0] < -1e-10 * max(eigenvalues[-1], 0.0) or eigenvalues[-1] < 0:
        raise DistributionError(
            f"the covariance matrix is not positive semi-definite (smallest eigenvalue {eigenvalues[0]:.3g})"
        )
    pivoted, pivots, rank, _ = scipy.linalg.lapack.dpstrf(cov, lower=1)
    pivoted = np.tril(pivoted)
    pivoted[:, rank:] = 0.0
    factor = np.empty_like(pivoted)
    factor[pivots - 1] = pivoted  # LAPACK pivots are 1-based: cov[p][:, p] = L Lᵀ
    return factor


# ================================================================ univariates
class _Univariate(Distribution):
    """One parameter; its name comes from a ``Joint`` key or the ``name=`` keyword."""

    _name: str | None

    @property
    def names(self) -> tuple[str, ...]:
        if self._name is None:
            raise DistributionError(
                f"{self!r} has no parameter name; give it one with name='CL' or put it in a Joint({{'CL': ...}})"
            )
        return (self._name,)

    @property
    def dim(self) -> int:
        return 1

    def _renamed(self, name: str) -> _Univariate:
        """A copy carrying ``name`` (used by Joint)."""
        copy = object.__new__(type(self))
        for key, value in self.__dict__.items():
            object.__setattr__(copy, key, value)
        object.__setattr__(copy, "_name", name)
        return copy

    def __repr__(self) -> str:
        named = "" if self._name is None else f", name={self._name!r}"
        return f"{type(self).__name__}({self._arguments()}{named})"

    def _unnamed_repr(self) -> str:
        return f"{type(self).__name__}({self._arguments()})"

    @abstractmethod
    def _arguments(self) -> str:
        """The constructor arguments, e.g. ``median=2.8, omega=0.3``."""

    def _mean(self) -> np.ndarray:
        return np.array([self._mean_value()])

    def _median(self) -> np.ndarray:
        return np.array([self._median_value()])

    def _cov(self) -> np.ndarray:
        return np.array([[self._variance()]])

    @abstractmethod
    def _mean_value(self) -> float: ...

    @abstractmethod
    def _median_value(self) -> float: ...

    @abstractmethod
    def _variance(self) -> float: ...


class _Gaussian(GaussianMaps, Distribution):
    """y = location + L z, z ~ N(0, I); the parameter is exp(y) where log_space, else y."""

    _location: np.ndarray
    _factor: np.ndarray
    _log_space: tuple[bool, ...]
    _centre: np.ndarray  # the parameter values at z = 0

    @property
    def gaussian(self) -> bool:
        return True

    @property
    def log_space(self) -> tuple[bool, ...]:
        return self._log_space

    @property
    def location(self) -> np.ndarray:
        return self._location

    @property
    def scale_matrix(self) -> np.ndarray:
        return self._factor

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._from_normal(rng.standard_normal((n, self.dim)))

    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.where(self._log_space, 0.0, -np.inf)
        return low, np.full(self.dim, np.inf)


class LogNormal(_Univariate, _Gaussian):
    """log(X) ~ Normal(log(median), omega²): omega is the SD of the log (≈ the CV for small omega).

    ``omega = 0`` is allowed and makes X the constant ``median``.
    """

    def __init__(self, median: float, omega: float, *, name: str | None = None):
        median = _number(median, "LogNormal median")
        omega = _number(omega, "LogNormal omega")
        if median <= 0:
            raise DistributionError(f"LogNormal median must be positive, got {median!r}")
        if omega < 0:
            raise DistributionError(f"LogNormal omega (SD of the log) must be non-negative, got {omega!r}")
        self._freeze(
            median_value=median,
            omega=omega,
            _name=None if name is None else _name(name, "LogNormal"),
            _location=np.array([np.log(median)]),
            _centre=np.array([median]),
            _factor=np.array([[omega]]),
            _log_space=(True,),
        )

    def _arguments(self) -> str:
        return f"median={self.median_value!r}, omega={self.omega!r}"

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        x = x[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_x = np.log(np.where(x > 0, x, np.nan))
            if self.omega == 0:
                density = np.where(np.isclose(x, self.median_value, rtol=1e-12, atol=0), 0.0, -np.inf)
            else:
                standard = (log_x - self._location[0]) / self.omega
                density = -0.5 * standard**2 - np.log(self.omega) - _LOG_SQRT_2PI - log_x
        return np.where(x > 0, density, -np.inf)

    def _mean_value(self) -> float:
        return self.median_value * np.exp(0.5 * self.omega**2)

    def _median_value(self) -> float:
        return self.median_value

    def _variance(self) -> float:
        return self.median_value**2 * np.exp(self.omega**2) * np.expm1(self.omega**2)


class Normal(_Univariate, _Gaussian):
    """X ~ Normal(mean, sd²); ``sd = 0`` is allowed and makes X the constant ``mean``."""

    def __init__(self, mean: float, sd: float, *, name: str | None = None):
        mean = _number(mean, "Normal mean")
        sd = _number(sd, "Normal sd")
        if sd < 0:
            raise DistributionError(f"Normal sd must be non-negative, got {sd!r}")
        self._freeze(
            mean_value=mean,
            sd=sd,
            _name=None if name is None else _name(name, "Normal"),
            _location=np.array([mean]),
            _centre=np.array([mean]),
            _factor=np.array([[sd]]),
            _log_space=(False,),
        )

    def _arguments(self) -> str:
        return f"mean={self.mean_value!r}, sd={self.sd!r}"

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        x = x[:, 0]
        if self.sd == 0:
            return np.where(np.isclose(x, self.mean_value, rtol=1e-12, atol=0), 0.0, -np.inf)
        standard = (x - self.mean_value) / self.sd
        return -0.5 * standard**2 - np.log(self.sd) - _LOG_SQRT_2PI

    def _mean_value(self) -> float:
        return self.mean_value

    def _median_value(self) -> float:
        return self.mean_value

    def _variance(self) -> float:
        return self.sd**2


class _InverseCdf(InverseCdfMaps, _Univariate):
    """A univariate given by its quantile function in log-probabilities (lower half) and log-survival (upper
    half), so that both tails keep full precision; koopnb.reference_maps.InverseCdfMaps uses them."""

    @abstractmethod
    def _ppf_log(self, log_u: np.ndarray) -> np.ndarray:
        """The value with log CDF ``log_u`` (used for the lower half, u <= 1/2)."""

    @abstractmethod
    def _isf_log(self, log_q: np.ndarray) -> np.ndarray:
        """The value with log survival ``log_q`` (used for the upper half, q < 1/2)."""

    @abstractmethod
    def _logcdf(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _logsf(self, x: np.ndarray) -> np.ndarray: ...

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._from_cube(rng.random((n, 1)))



class Uniform(_InverseCdf):
    """X ~ Uniform(low, high), low < high, both finite."""

    def __init__(self, low: float, high: float, *, name: str | None = None):
        low = _number(low, "Uniform low")
        high = _number(high, "Uniform high")
        if not low < high:
            raise DistributionError(f"Uniform needs low < high, got low={low!r}, high={high!r}")
        self._freeze(low=low, high=high, _name=None if name is None else _name(name, "Uniform"))

    def _arguments(self) -> str:
        return f"low={self.low!r}, high={self.high!r}"

    def _ppf_log(self, log_u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * np.exp(log_u)

    def _isf_log(self, log_q: np.ndarray) -> np.ndarray:
        return self.high - (self.high - self.low) * np.exp(log_q)

    def _logcdf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0))

    def _logsf(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.clip((self.high - x) / (self.high - self.low), 0.0, 1.0))

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        x = x[:, 0]
        return np.where((x >= self.low) & (x <= self.high), -np.log(self.high - self.low), -np.inf)

    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.low]), np.array([self.high])

    def _mean_value(self) -> float:
        return 0.5 * (self.low + self.high)

    def _median_value(self) -> float:
        return 0.5 * (self.low + self.high)

    def _variance(self) -> float:
        return (self.high - self.low) ** 2 / 12.0


class TruncatedNormal(_InverseCdf):
    """Normal(mean, sd²) restricted to [low, high]; a bound may be infinite (e.g. ``high=np.inf``).

    Quantiles, tails and moments come from ``scipy.stats.truncnorm`` in standard units [a, b].
    Its lower tail is accurate far out but its upper tail is not (``isf`` goes through ``1 - q``),
    so the upper half uses the mirrored distribution on [-b, -a].  Towards an infinite bound the
    quantile is the closed form Φ(w) = u·Z (Z = Φ(b) - Φ(a)), solved in log space with
    ``ndtri_exp`` so that probabilities below the smallest double still give finite values.
    """

    def __init__(self, mean: float, sd: float, low: float, high: float, *, name: str | None = None):
        mean = _number(mean, "TruncatedNormal mean")
        sd = _number(sd, "TruncatedNormal sd")
        low = _number(low, "TruncatedNormal low", allow_infinite=True)
        high = _number(high, "TruncatedNormal high", allow_infinite=True)
        if sd <= 0:
            raise DistributionError(f"TruncatedNormal sd must be positive, got {sd!r}")
        if not low < high:
            raise DistributionError(f"TruncatedNormal needs low < high, got low={low!r}, high={high!r}")
        a, b = (low - mean) / sd, (high - mean) / sd
        self._freeze(
            mean_value=mean,
            sd=sd,
            low=low,
            high=high,
            _name=None if name is None else _name(name, "TruncatedNormal"),
            _standard=scipy.stats.truncnorm(a, b),
            _mirrored=scipy.stats.truncnorm(-b, -a),
        )

    def _arguments(self) -> str:
        return f"mean={self.mean_value!r}, sd={self.sd!r}, low={self.low!r}, high={self.high!r}"

    def _ppf_log(self, log_u: np.ndarray) -> np.ndarray:
        a, b = self._standard.args
        if np.isinf(a):
            standard = ndtri_exp(log_u + log_ndtr(b))
        else:
            standard = self._standard.ppf(np.exp(log_u))
        # rounding of mean + sd * a may step just outside the bounds
        return np.clip(self.mean_value + self.sd * standard, self.low, self.high)

    def _isf_log(self, log_q: np.ndarray) -> np.ndarray:
        a, b = self._standard.args
        if np.isinf(b):
            mirrored = ndtri_exp(log_q + log_ndtr(-a))
        else:
            mirrored = self._mirrored.ppf(np.exp(log_q))
        return np.clip(self.mean_value - self.sd * mirrored, self.low, self.high)

    def _logcdf(self, x: np.ndarray) -> np.ndarray:
        return self._standard.logcdf((x - self.mean_value) / self.sd)

    def _logsf(self, x: np.ndarray) -> np.ndarray:
        return self._mirrored.logcdf((self.mean_value - x) / self.sd)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return self._standard.logpdf((x[:, 0] - self.mean_value) / self.sd) - np.log(self.sd)

    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.low]), np.array([self.high])

    def _mean_value(self) -> float:
        return self.mean_value + self.sd * float(self._standard.mean())

    def _median_value(self) -> float:
        return float(self._ppf_log(np.log([0.5]))[0])

    def _variance(self) -> float:
        return self.sd**2 * float(self._standard.var())


# ============================================================== multivariate
class MvLogNormal(_Gaussian):
    """log(X) ~ Normal(log(median), cov), with ``cov`` in the order of the ``median`` dict.

    ``cov`` may be positive semi-definite: a zero row makes that parameter a constant, and the
    factor is then a pivoted Cholesky factor rather than a lower-triangular one.
    """

    def __init__(self, median: Mapping[str, float], cov: Any):
        if not isinstance(median, Mapping) or not median:
            raise DistributionError("MvLogNormal median must be a non-empty dict name -> positive number")
        names = tuple(_name(key, "MvLogNormal") for key in median)
        medians = np.array([_number(v, f"MvLogNormal median of {k!r}") for k, v in median.items()])
        nonpositive = np.flatnonzero(medians <= 0)
        if nonpositive.size:
            k = nonpositive[0]
            raise DistributionError(f"MvLogNormal median of {names[k]!r} must be positive, got {float(medians[k])!r}")
        try:
            cov = np.array(cov, dtype=float)
        except (TypeError, ValueError):
            raise DistributionError("MvLogNormal cov must be a 2-D array of numbers") from None
        if cov.shape != (len(names), len(names)):
            raise DistributionError(
                f"MvLogNormal cov must have shape ({len(names)}, {len(names)}) to match the median names "
                f"{names}, got {cov.shape}"
            )
        factor = _robust_factor(cov, names)
        self._freeze(
            _names=names,
            medians=medians,
            covariance=0.5 * (cov + cov.T),
            _location=np.log(medians),
            _centre=medians,
            _factor=factor,
            _log_space=(True,) * len(names),
        )
        self._freeze(_log_density=scipy.stats.multivariate_normal(self._location, self.covariance, allow_singular=True))

    def __repr__(self) -> str:
        median = {name: float(m) for name, m in zip(self._names, self.medians, strict=True)}
        return f"MvLogNormal(median={median!r}, cov={self.covariance.tolist()!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def dim(self) -> int:
        return len(self._names)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        positive = np.all(x > 0, axis=1)
        log_x = np.log(np.where(x > 0, x, 1.0))
        # constants (zero variance) are point masses: no Jacobian, matching LogNormal(omega=0)
        varying = np.diag(self.covariance) > 0
        density = np.atleast_1d(self._log_density.logpdf(log_x)) - log_x[:, varying].sum(axis=1)
        return np.where(positive, density, -np.inf)

    def _mean(self) -> np.ndarray:
        return self.medians * np.exp(0.5 * np.diag(self.covariance))

    def _median(self) -> np.ndarray:
        return self.medians.copy()

    def _cov(self) -> np.ndarray:
        mean = self._mean()
        return np.outer(mean, mean) * np.expm1(self.covariance)


# ====================================================================== joint
class Joint(ColumnwiseMaps, Distribution):
    """Independent members: ``Joint({'CL': LogNormal(3, 0.3), 'V': Normal(35, 5)})``.

    A univariate member is named by its key.  A member that carries its own names (an
    ``MvLogNormal``, an ``Empirical``, another ``Joint``) keeps them; its key is only a label.
    Columns follow the members in dict order.
    """

    def __init__(self, members: Mapping[str, Distribution]):
        if not isinstance(members, Mapping) or not members:
            raise DistributionError("Joint needs a non-empty dict name -> distribution")
        keys: list[str] = []
        named: list[Distribution] = []
        for key, member in members.items():
            key = _name(key, "Joint")
            if not isinstance(member, Distribution):
                raise DistributionError(f"Joint member {key!r} is not a distribution: {member!r}")
            if isinstance(member, _Univariate):
                if member._name is not None and member._name != key:
                    raise DistributionError(
                        f"Joint key {key!r} disagrees with the name {member._name!r} of its member {member!r}"
                    )
                member = member._renamed(key)
            keys.append(key)
            named.append(member)
        names = tuple(name for member in named for name in member.names)
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise DistributionError(f"Joint has the parameter {duplicated[0]!r} more than once")
        bounds = np.cumsum([0] + [member.dim for member in named])
        self._freeze(
            members=tuple(named),
            _keys=tuple(keys),
            _names=names,
            _slices=tuple(map(slice, bounds[:-1], bounds[1:])),
        )

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{key!r}: {member._unnamed_repr() if isinstance(member, _Univariate) else repr(member)}"
            for key, member in zip(self._keys, self.members, strict=True)
        )
        return f"Joint({{{inner}}})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def dim(self) -> int:
        return len(self._names)

    @property
    def gaussian(self) -> bool:
        return all(member.gaussian for member in self.members)

    @property
    def log_space(self) -> tuple[bool, ...]:
        self._require_gaussian("log_space")
        return tuple(flag for member in self.members for flag in member.log_space)

    @property
    def location(self) -> np.ndarray:
        self._require_gaussian("location")
        return np.concatenate([member.location for member in self.members])

    @property
    def scale_matrix(self) -> np.ndarray:
        self._require_gaussian("scale_matrix")
        return scipy.linalg.block_diag(*(member.scale_matrix for member in self.members))

    def _require_gaussian(self, what: str) -> None:
        if not self.gaussian:
            raise self._not_gaussian(what)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([member._sample(n, rng) for member in self.members], axis=1)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        return sum(member._logpdf(x[:, part]) for member, part in zip(self.members, self._slices, strict=True))

    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(member._support() for member in self.members), strict=True)
        return np.concatenate(lows), np.concatenate(highs)

    def _mean(self) -> np.ndarray:
        return np.concatenate([member._mean() for member in self.members])

    def _median(self) -> np.ndarray:
        return np.concatenate([member._median() for member in self.members])

    def _cov(self) -> np.ndarray:
        return scipy.linalg.block_diag(*(member._cov() for member in self.members))


# ================================================================== empirical
class Empirical(Distribution):
    """The distribution of samples (e.g. posterior draws): dict name -> 1-D array, equal lengths.

    ``kde=False``: the discrete measure with weight 1/n on each sample (``points()``).  It has no
    density, so ``logpdf`` raises.  ``sample`` resamples with replacement.

    ``kde=True``: a Gaussian kernel density estimate, in log space for strictly positive columns
    and linear otherwise, with Scott's bandwidth: kernel covariance = n^(-2/(dim+4)) × the sample
    covariance of the transformed samples, as ``scipy.stats.gaussian_kde``.  It is a mixture of n
    gaussians (``mixture()``), and sample/logpdf/mean/cov are exact for that mixture.
    """

    def __init__(self, samples: Mapping[str, Any], kde: bool = False):
        if not isinstance(samples, Mapping) or not samples:
            raise DistributionError("Empirical needs a non-empty dict name -> 1-D array of samples")
        names = tuple(_name(key, "Empirical") for key in samples)
        columns = []
        for name in names:
            try:
                column = np.asarray(samples[name], dtype=float)
            except (TypeError, ValueError):
                raise DistributionError(f"Empirical samples of {name!r} must be numbers") from None
            if column.ndim != 1:
                raise DistributionError(f"Empirical samples of {name!r} must be a 1-D array, got shape {column.shape}")
            if column.size < 2:
                raise DistributionError(f"Empirical needs at least 2 samples of {name!r}, got {column.size}")
            bad = np.flatnonzero(~np.isfinite(column))
            if bad.size:
                raise DistributionError(
                    f"Empirical sample {bad[0]} of {name!r} is not finite ({float(column[bad[0]])!r})"
                )
            columns.append(column)
        lengths = {name: column.size for name, column in zip(names, columns, strict=True)}
        if len(set(lengths.values())) > 1:
            raise DistributionError(f"Empirical samples must have equal lengths, got {lengths}")
        points = np.stack(columns, axis=1)
        self._freeze(_names=names, _points=points, kde=bool(kde))
        if self.kde:
            self._freeze(**self._kernel(points, names))

    @staticmethod
    def _kernel(points: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
        n, dim = points.shape
        log_space = np.all(points > 0, axis=0)
        centres = np.where(log_space, np.log(np.where(log_space, points, 1.0)), points)
        constant = np.flatnonzero(np.ptp(centres, axis=0) == 0)
        if constant.size:
            raise DistributionError(
                f"Empirical(kde=True) needs spread in {names[constant[0]]!r}; all its samples are equal"
            )
        bandwidth = np.atleast_2d(np.cov(centres, rowvar=False)) * n ** (-2.0 / (dim + 4))
        try:
            factor = np.linalg.cholesky(bandwidth)
        except np.linalg.LinAlgError:
            factor = np.zeros_like(bandwidth)
        # a column (almost) fully explained by the previous ones leaves a rounding-level pivot
        if np.any(np.diag(factor) ** 2 <= 1e-12 * np.diag(bandwidth)):
            raise DistributionError(
                "Empirical(kde=True) samples are linearly dependent (in log space for positive columns), "
                "so the kernel covariance is singular"
            )
        return {
            "_log_space": tuple(bool(flag) for flag in log_space),
            "_centres": centres,
            "_bandwidth": bandwidth,
            "_factor": factor,
        }

    def __repr__(self) -> str:
        return f"Empirical(<{len(self._points)} samples of {', '.join(self._names)}>, kde={self.kde})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def dim(self) -> int:
        return len(self._names)

    def points(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The discrete measure (kde=False): dict name -> (n,) sample values, and weights (n,) (sum 1)."""
        if self.kde:
            raise DistributionError("this Empirical is a kernel density (kde=True); use mixture() instead of points()")
        n = len(self._points)
        return self._as_dict(self._points), np.full(n, 1.0 / n)

    def mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[bool, ...]]:
        """The kernel density (kde=True) as a gaussian mixture in transformed space.

        Returns ``(centres (k, dim), L (dim, dim), weights (k,), log_space)``: component i is
        y ~ N(centres[i], L Lᵀ) and the parameter is exp(y) where log_space, else y.
        """
        if not self.kde:
            raise DistributionError(
                "this Empirical is a discrete measure (kde=False); use points() instead of mixture()"
            )
        k = len(self._centres)
        return self._centres, self._factor, np.full(k, 1.0 / k), self._log_space

    def _no_reference_map(self) -> DistributionError:
        use = "mixture()" if self.kde else "points()"
        return DistributionError(f"{self!r} has no map from a reference space; integrate over its {use}")

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        chosen = rng.integers(0, len(self._points), size=n)
        if not self.kde:
            return self._points[chosen]
        y = self._centres[chosen] + rng.standard_normal((n, self.dim)) @ self._factor.T
        return np.where(self._log_space, np.exp(y), y)

    def _logpdf(self, x: np.ndarray) -> np.ndarray:
        if not self.kde:
            raise DistributionError(
                "Empirical(kde=False) is a discrete measure with no density; use Empirical(samples, kde=True)"
            )
        positive = np.all(x[:, list(self._log_space)] > 0, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(self._log_space, np.log(np.where(self._log_space, x, 1.0)), x)
        # whitened |W_i - C_k|² expanded as |W|² + |C|² - 2 W·C: (batch, k) without a 3-D array
        shift = self._centres.mean(axis=0)
        whiten = np.linalg.inv(self._factor).T
        w, c = (y - shift) @ whiten, (self._centres - shift) @ whiten
        distance2 = np.maximum((w**2).sum(axis=1)[:, None] + (c**2).sum(axis=1)[None, :] - 2.0 * w @ c.T, 0.0)
        log_kernel = -0.5 * distance2 - np.log(np.diag(self._factor)).sum() - self.dim * _LOG_SQRT_2PI
        density = logsumexp(log_kernel, axis=1) - np.log(len(c))
        jacobian = np.where(self._log_space, y, 0.0).sum(axis=1)
        return np.where(positive, density - jacobian, -np.inf)

    def _support(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.kde:
            return self._points.min(axis=0), self._points.max(axis=0)
        return np.where(self._log_space, 0.0, -np.inf), np.full(self.dim, np.inf)

    def _mean(self) -> np.ndarray:
        if not self.kde:
            return self._points.mean(axis=0)
        log_space = np.array(self._log_space)
        lognormal_means = np.exp(np.where(log_space, self._centres + 0.5 * np.diag(self._bandwidth), 0.0))
        return np.where(log_space, lognormal_means.mean(axis=0), self._centres.mean(axis=0))

    def _cov(self) -> np.ndarray:
        if not self.kde:
            return np.atleast_2d(np.cov(self._points, rowvar=False, bias=True))
        return self._mixture_second_moment() - np.outer(self._mean(), self._mean())

    def _mixture_second_moment(self) -> np.ndarray:
        """E[x_i x_j] of the mixture, from the lognormal / normal moments of each component."""
        log_space = np.array(self._log_space)
        h = self._bandwidth
        c = self._centres
        # E[exp(y_i)] of each component, left as 0 on linear columns so exp never sees their values
        lognormal = np.where(log_space, np.exp(np.where(log_space, c + 0.5 * np.diag(h), 0.0)), 0.0)
        log_i, log_j = log_space[:, None], log_space[None, :]
        ci, cj = c[:, :, None], c[:, None, :]
        li, lj = lognormal[:, :, None], lognormal[:, None, :]
        both_log = li * lj * np.exp(np.where(log_i & log_j, h, 0.0))
        # y ~ N(c, H): E[exp(y_i) y_j] = E[exp(y_i)] (c_j + H_ij)
        log_linear = li * (cj + h)
        linear_log = lj * (ci + h)
        both_linear = ci * cj + h
        moment = np.where(
            log_i & log_j, both_log, np.where(log_i, log_linear, np.where(log_j, linear_log, both_linear))
        )
        return moment.mean(axis=0)

    def _median(self) -> np.ndarray:
        if not self.kde:
            return np.median(self._points, axis=0)
        spread = np.sqrt(np.diag(self._bandwidth))
        medians = np.empty(self.dim)
        for j in range(self.dim):  # one root per parameter, each over all components at once
            centres, s = self._centres[:, j], spread[j]
            medians[j] = scipy.optimize.brentq(
                lambda t, centres=centres, s=s: ndtr((t - centres) / s).mean() - 0.5,
                centres.min() - 10 * s,
                centres.max() + 10 * s,
                xtol=1e-14 * (1 + np.abs(centres).max()),
            )
        return np.where(self._log_space, np.exp(medians), medians)
