"""Maximum likelihood by FOCE-I: NONMEM's ``$ESTIMATION METHOD=1 INTERACTION``, its objective and its SEs.

Each subject's random effects η (log-parameter deviations, covariance Ω) are integrated out by a
Laplace approximation around the conditional mode η̂ᵢ, with the curvature taken as the expected
(Fisher) information of the observations instead of their observed second derivative — what makes
FOCE-I "first order" (Wang, J Pharmacokinet Pharmacodyn 34:575, 2007; Almquist et al., J Pharmacokinet
Pharmacodyn 42:191, 2015).  Per subject, without NONMEM's n·log 2π constant,

    OFVᵢ = Σⱼ [log Vᵢⱼ + (yᵢⱼ − fᵢⱼ)² / Vᵢⱼ] + η̂ᵢᵀΩ⁻¹η̂ᵢ + log|Ω| + log|Hᵢ|,
    Hᵢ = Ω⁻¹ + Σⱼ gᵢⱼ gᵢⱼᵀ (1/Vᵢⱼ + ½ (∂V/∂f)² / Vᵢⱼ²),   gᵢⱼ = ∂fᵢⱼ/∂η at η̂ᵢ,

with f and V evaluated at η̂ᵢ (the "interaction").  The second term of the information is the part the
residual variance carries when it depends on the prediction (proportional and combined errors); with it,
the objective equals NONMEM's to a few thousandths on the phenobarbital example (tests/test_foce.py).
Observations below a limit of quantification (M3) enter with their observed curvature.

The conditional modes of all subjects — and of every point of a finite-difference stencil of the
population parameters — are found together by damped Gauss–Newton steps, each one batched model solve.
The population parameters are estimated on unconstrained scales: the log of positive typical values,
a logit-type map of bounded ones (``Model.bounds``), a Cholesky factor with log-diagonal for Ω (one per
block of correlated IIV) and the log of the residual error parameters.  The OFV is minimised by BFGS
with central-difference gradients, then polished by Newton steps with the finite-difference Hessian.

Standard errors: NONMEM's default ``$COVARIANCE`` matrix, the sandwich R⁻¹SR⁻¹, with R = ½ ∂²OFV
(the Hessian of −log L) and S = Σᵢ ∇(½OFVᵢ)∇(½OFVᵢ)ᵀ (the cross-product of the subjects' gradients), both
by central differences; ``covariance="r"`` gives R⁻¹ alone (NONMEM's ``MATRIX=R``).  They are mapped
to the reported scales (typical values, omegas as SDs of the log, correlations, residual error
parameters) by the delta method.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize

from koopnb.distributions import MvLogNormal
from koopnb.errors import FitError
from koopnb.inference.likelihood import Additive, Exponential, log_likelihood, residual_error
from koopnb.inference.modes import conditional_modes
from koopnb.inference.posterior import PopulationPosterior, Posterior
from koopnb.inference.simulation import StackedSubjects

LOG_2PI = np.log(2.0 * np.pi)


def fit_maximum_likelihood(model, subjects, output: str, *, covariance: str = "sandwich",
                           individual_draws: int = 1000, seed: Any = None) -> PopulationEstimate:
    """FOCE-I maximum-likelihood estimates of the population of ``subjects`` (checked Subject objects).

    ``covariance``: ``"sandwich"`` (R⁻¹SR⁻¹, NONMEM's default) or ``"r"`` (R⁻¹) for the standard errors.
    ``individual_draws`` per subject are drawn from N(η̂ᵢ, Hᵢ⁻¹) for ``.individuals``.
    """
    if covariance not in ("sandwich", "r"):
        raise FitError(f"covariance must be 'sandwich' or 'r', not {covariance!r}")
    started = time.perf_counter()
    objective = FoceObjective(model, subjects, output)
    estimate, evaluations = objective.minimise()
    ofv, per_subject, hessian, gradients = objective.curvature(estimate)
    natural = objective.scales.quantities(estimate)
    matrix = _covariance(hessian, gradients, covariance)
    jacobian = objective.scales.jacobian(estimate)
    quantity_covariance = jacobian @ matrix @ jacobian.T
    modes, curvature = objective.modes(estimate)
    diagnostics = {"method": "FOCE-I maximum likelihood", "covariance": "R⁻¹SR⁻¹ (sandwich)"
                   if covariance == "sandwich" else "R⁻¹", "objective_evaluations": evaluations,
                   "elapsed": time.perf_counter() - started,
                   "gradient": dict(zip(objective.scales.names, objective.gradient(estimate).tolist(), strict=True))}
    return PopulationEstimate(objective, estimate, natural, float(ofv), per_subject, quantity_covariance, modes,
                              curvature, diagnostics, individual_draws, np.random.default_rng(seed))


def objective_value(model, subjects, output: str, estimates: Mapping[str, float]) -> float:
    """NONMEM's FOCE-I OFV of ``subjects`` at population ``estimates`` (typical values by parameter name,
    ``omega_NAME`` as SDs of the log, ``corr_A_B`` correlations, ``OUTPUT.ERROR``); quantities not given take
    the model's values."""
    objective = FoceObjective(model, subjects, output)
    scales = objective.scales
    typical = {name: estimates.get(name, model.typical[name]) for name in model.parameters}
    omega = np.asarray(model.omega, dtype=float)[np.ix_(scales.random, scales.random)]
    sd = np.sqrt(np.diag(omega))
    correlation = omega / np.outer(sd, sd)
    for i, j in scales.correlated:
        name = f"corr_{scales.random_names[i]}_{scales.random_names[j]}"
        correlation[i, j] = correlation[j, i] = estimates.get(name, correlation[i, j])
    given = np.array([estimates.get(f"omega_{name}", sd[r]) for r, name in enumerate(scales.random_names)])
    omega = correlation * np.outer(given, given)
    errors = np.exp(scales.start[scales.size - len(scales.error_names):])
    errors = [estimates.get(name, errors[i]) for i, name in enumerate(scales.error_names)]
    return float(objective(scales.coordinates(typical, omega, errors)[None])[0][0])


class Scales:
    """Population quantities ⇄ unconstrained coordinates.

    Coordinates, in order: one per typical value (log; a logit-type map inside ``Model.bounds``), the
    Cholesky factor of Ω among the parameters with IIV (log-diagonal; off-diagonals only within a block
    of correlated IIV), the log of each residual error parameter.  ``names`` label the reported
    quantities: typical values, ``omega_NAME`` (SD of the log), ``corr_A_B``, ``OUTPUT.ERROR``.
    """

    def __init__(self, model, error_names: tuple[str, ...], error_values: tuple[float, ...], output: str):
        parameters = model.parameters
        bounds = dict(getattr(model, "bounds", None) or {})
        omega = np.asarray(model.omega, dtype=float)
        self.random = np.flatnonzero(np.diag(omega) > 0)
        if self.random.size == 0:
            raise FitError("the model has no parameter with IIV ('~ omega'), so there is no population to fit")
        self.random_names = [parameters[i] for i in self.random]
        self.bounds = []
        for name in parameters:
            low, high = bounds.get(name, (0.0, np.inf))
            value = model.typical[name]
            if name not in bounds and value <= 0:
                raise FitError(f"parameter {name!r} has typical value {value:g}; without bounds ('in (LOW, HIGH)') a "
                               "typical value must be positive to be estimated on the log scale")
            self.bounds.append((float(low), float(high)))
        self.parameters = tuple(parameters)
        self.n_parameters = len(parameters)
        # a block of Ω is what ``corr`` lines join (even a correlation of 0 starts an estimated covariance)
        linked = np.abs(omega[np.ix_(self.random, self.random)]) > 0
        position = {name: r for r, name in enumerate(self.random_names)}
        for first, second in getattr(model.spec, "correlations", {}):
            if first in position and second in position:
                linked[position[first], position[second]] = linked[position[second], position[first]] = True
        self._blocks(linked)
        self.error_names = [f"{output}.{name}" for name in error_names]
        self.names = (list(parameters) + [f"omega_{name}" for name in self.random_names]
                      + [f"corr_{self.random_names[i]}_{self.random_names[j]}" for i, j in self.correlated]
                      + self.error_names)
        if any(v <= 0 for v in error_values):
            raise FitError("every residual error parameter must be positive to be estimated")
        self.start = self.coordinates(model.typical, omega[np.ix_(self.random, self.random)], error_values)
        self.size = self.start.size

    def coordinates(self, typical: Mapping[str, float], omega: np.ndarray, error_values) -> np.ndarray:
        """(size,) coordinates of typical values (name -> value), Ω among the IIV parameters (r, r) in the
        model's order, and the residual error parameters."""
        factor = np.linalg.cholesky(np.asarray(omega, dtype=float)[np.ix_(self.order, self.order)])
        free = [self._to_free(typical[name], low, high) for name, (low, high) in zip(self.parameters, self.bounds,
                                                                                     strict=True)]
        return np.concatenate([free, np.log(np.diag(factor)), factor[self.lower[0], self.lower[1]],
                               np.log(np.asarray(error_values, dtype=float))])

    def _blocks(self, linked: np.ndarray) -> None:
        """Order the IIV parameters block by block (connected by ``linked``, (r, r) bool) and list the
        Cholesky entries below the diagonal that are free: those within a block."""
        r = linked.shape[0]
        block = -np.ones(r, dtype=int)
        for start in range(r):
            if block[start] >= 0:
                continue
            block[start] = start
            frontier = [start]
            while frontier:
                i = frontier.pop()
                for j in np.flatnonzero(linked[i] & (block < 0)):
                    block[j] = start
                    frontier.append(j)
        self.order = np.argsort(block, kind="stable")
        self.inverse_order = np.argsort(self.order)
        ordered = block[self.order]
        rows, columns = np.tril_indices(r, -1)
        keep = ordered[rows] == ordered[columns]
        self.lower = (rows[keep], columns[keep])
        # correlations to report, as (i, j) in the model's order of IIV parameters
        self.correlated = sorted((min(a, b), max(a, b)) for a, b in zip(self.order[self.lower[0]],
                                                                        self.order[self.lower[1]], strict=True))

    @staticmethod
    def _to_free(value: float, low: float, high: float) -> float:
        if np.isfinite(low) and np.isfinite(high):
            u = (value - low) / (high - low)
            return float(np.log(u / (1 - u)))
        if np.isfinite(low):
            return float(np.log(value - low))
        if np.isfinite(high):
            return float(np.log(high - value))
        return float(value)

    def typical(self, x: np.ndarray) -> np.ndarray:
        """(m, n_parameters) typical values of coordinates ``x`` (m, size)."""
        columns = []
        for i, (low, high) in enumerate(self.bounds):
            z = x[:, i]
            if np.isfinite(low) and np.isfinite(high):
                columns.append(low + (high - low) / (1 + np.exp(-z)))
            elif np.isfinite(low):
                columns.append(low + np.exp(z))
            elif np.isfinite(high):
                columns.append(high - np.exp(z))
            else:
                columns.append(z)
        return np.stack(columns, axis=1)

    def omega(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ω among the IIV parameters (m, r, r), in the model's order, and log|Ω| (m,)."""
        r = self.random.size
        start = self.n_parameters
        log_diagonal = x[:, start:start + r]
        factor = np.zeros((len(x), r, r))
        factor[:, np.arange(r), np.arange(r)] = np.exp(log_diagonal)
        factor[:, self.lower[0], self.lower[1]] = x[:, start + r:start + r + len(self.lower[0])]
        omega = factor @ np.swapaxes(factor, 1, 2)
        omega = omega[:, self.inverse_order][:, :, self.inverse_order]
        return omega, 2 * log_diagonal.sum(axis=1)

    def errors(self, x: np.ndarray) -> np.ndarray:
        """(m, n_errors) residual error parameters."""
        return np.exp(x[:, self.size - len(self.error_names):])

    def quantities(self, x: np.ndarray) -> np.ndarray:
        """(k,) reported quantities (``names``) of one coordinate vector."""
        x = np.atleast_2d(x)
        omega, _ = self.omega(x)
        sd = np.sqrt(np.diagonal(omega, axis1=1, axis2=2))
        correlations = [omega[:, i, j] / (sd[:, i] * sd[:, j]) for i, j in self.correlated]
        parts = [self.typical(x), sd, np.stack(correlations, axis=1) if correlations else np.zeros((len(x), 0)),
                 self.errors(x)]
        return np.concatenate(parts, axis=1)[0]

    def jacobian(self, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
        """(k, size) derivative of the reported quantities in the coordinates (central differences)."""
        eye = step * np.eye(x.size)
        return np.stack([(self.quantities(x + e) - self.quantities(x - e)) / (2 * step) for e in eye], axis=1)


class FoceObjective:
    """NONMEM's FOCE-I objective of a batch of coordinate vectors (m, size) → (m,), per subject (m, n_s)."""

    JACOBIAN_STEP = 1e-6
    MAX_ITERATIONS = 60
    MODE_TOLERANCE = 1e-11
    GRADIENT_STEP = 1e-4
    HESSIAN_STEP = 2e-3

    def __init__(self, model, subjects, output: str):
        self.model = model
        self.subjects = list(subjects)
        self.output = output
        self.stack = StackedSubjects(model, self.subjects, output)
        self.error, error_values = residual_error(model.error_models[output])
        self.scales = Scales(model, self.error.names, error_values, output)
        self.random = self.scales.random
        stack = self.stack
        self.measured = (stack.used & ~stack.below).sum(axis=1)  # normally distributed points per subject
        self.psi_start: np.ndarray | None = None  # warm start: each subject's log-parameters with IIV
        self.evaluations = 0

    # -- the objective ------------------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total OFV (m,) and each subject's term (m, n_subjects) for coordinates ``x`` (m, size)."""
        x = np.atleast_2d(x)
        per_row, _, _ = self._evaluate(x)
        per_subject = per_row.reshape(len(x), len(self.subjects))
        self.evaluations += len(x)
        return per_subject.sum(axis=1), per_subject

    def _evaluate(self, x: np.ndarray):
        """Per (point, subject) row: OFVᵢ, the conditional mode η̂ᵢ and the curvature Hᵢ."""
        n_s = len(self.subjects)
        inner, eta, valid, log_det_omega = self.inner(x)
        eta, state = inner.solve(eta)
        sign, log_det_h = np.linalg.slogdet(state.curvature)
        quadratic = np.einsum("br,brs,bs->b", eta, inner.precision, eta)
        ofv = (-2 * state.log_likelihood - LOG_2PI * self.measured[inner.subjects] + quadratic
               + log_det_omega.repeat(n_s) + log_det_h)
        ofv = np.where(valid & (sign > 0) & np.isfinite(ofv), ofv, np.inf)
        return ofv, eta, state.curvature

    def inner(self, x: np.ndarray):
        """The conditional-mode problem of every (point, subject) row of coordinates ``x`` (m, size): the
        problem, the starting η, which rows have valid typical values, and log|Ω| per point."""
        n_s = len(self.subjects)
        scales = self.scales
        with np.errstate(all="ignore"):
            typical = scales.typical(x)
            omega, log_det_omega = scales.omega(x)
            precision = np.linalg.inv(omega)
            errors = scales.errors(x)
        rows_subject = np.tile(np.arange(n_s), len(x))
        typical_rows = typical.repeat(n_s, axis=0)
        valid = np.isfinite(typical_rows).all(axis=1) & (typical_rows[:, self.random] > 0).all(axis=1)
        log_typical = np.log(np.where(valid[:, None], np.abs(typical_rows[:, self.random]), 1.0))
        inner = _Inner(self, rows_subject, typical_rows, log_typical, precision.repeat(n_s, axis=0),
                       tuple(e[:, None] for e in errors.repeat(n_s, axis=0).T))
        if self.psi_start is None:
            eta = np.zeros((len(rows_subject), self.random.size))
        else:
            eta = self.psi_start[rows_subject] - log_typical
        return inner, eta, valid, log_det_omega

    def modes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditional modes η̂ (n_subjects, r) and curvatures H (n_subjects, r, r) at coordinates ``x``."""
        _, eta, curvature = self._evaluate(np.atleast_2d(x))
        return eta, curvature

    def warm_start(self, x: np.ndarray) -> None:
        """Start later inner searches from the subjects' log-parameters at ``x`` (kept fixed as ψ = log θ + η,
        so a move of the typical values does not move the start away from the data)."""
        _, eta, _ = self._evaluate(np.atleast_2d(x))
        log_typical = np.log(self.scales.typical(np.atleast_2d(x))[0, self.random])
        if np.all(np.isfinite(eta)):
            self.psi_start = log_typical + eta

    # -- minimisation and curvature -----------------------------------------------------------------
    def gradient(self, x: np.ndarray) -> np.ndarray:
        """(size,) central-difference gradient of the OFV, one batch of 2·size + 1 points."""
        step = self.GRADIENT_STEP
        eye = step * np.eye(x.size)
        total, _ = self(np.concatenate([x[None], x + eye, x - eye]))
        return (total[1:x.size + 1] - total[x.size + 1:]) / (2 * step)

    def minimise(self) -> tuple[np.ndarray, int]:
        """Coordinates of the minimum OFV (BFGS, then Newton steps with the FD Hessian) and the number of
        objective evaluations (population points, each one inner solve of every subject)."""
        start = self.scales.start
        self.warm_start(start)
        if not np.isfinite(self(start[None])[0][0]):
            raise FitError("the objective is not finite at the model's initial estimates: check the data against "
                           "the model (units, dose amounts, observation times)")
        k, step = start.size, self.GRADIENT_STEP
        offsets = np.concatenate([np.zeros((1, k)), step * np.eye(k), -step * np.eye(k)])

        def value_and_gradient(x):
            total, _ = self(x[None] + offsets)
            if not np.isfinite(total[0]):
                return np.inf, np.zeros(k)
            return total[0], (total[1:k + 1] - total[k + 1:]) / (2 * step)

        result = scipy.optimize.minimize(value_and_gradient, start, jac=True, method="BFGS",
                                         options={"gtol": 1e-3, "maxiter": 500})
        x = result.x
        self.warm_start(x)
        for _ in range(4):
            value, _, hessian, gradients = self.curvature(x)
            gradient = gradients.sum(axis=0) * -2  # back from ∇(−½ OFVᵢ) to ∇OFV
            try:
                newton = np.linalg.solve(hessian, gradient)
            except np.linalg.LinAlgError:
                break
            if not np.all(np.isfinite(newton)) or 0.5 * gradient @ newton < 1e-8:
                break
            candidate = x - newton
            if self(candidate[None])[0][0] < value:
                x = candidate
                self.warm_start(x)
            else:
                break
        return x, self.evaluations

    def curvature(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """At ``x``: the OFV, each subject's OFVᵢ (n_s,), the Hessian of the OFV (size, size) and each
        subject's gradient of −½OFVᵢ, its log-likelihood (n_s, size); one batch of 2·size² + 1 points.

        Central differences with one fixed step, by hand rather than ``scipy.differentiate.hessian``, measured
        on the theophylline objective at its ML estimate (7 coordinates, 2026-11-26, loaded 2-core machine):
        this is 99 points in one batched call, 0.17 s; scipy's adaptive Richardson extrapolation (defaults)
        evaluated 35,721 points in 7.4 s and did not converge (status −1/−2: its error estimates grow as the
        step shrinks, because the OFV carries the conditional modes' solver tolerance), its result 7 % off
        this one; cut down to ``order=2, initial_step=0.01, maxiter=3`` it still took 2,401 points (0.42 s),
        unconverged, 0.06 % off.  The gradients per subject (the sandwich's S) come from the same batch."""
        k, h = x.size, self.HESSIAN_STEP
        eye = h * np.eye(k)
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        points = [x, *(x + eye), *(x - eye)]
        for i, j in pairs:
            points += [x + eye[i] + eye[j], x + eye[i] - eye[j], x - eye[i] + eye[j], x - eye[i] - eye[j]]
        total, per_subject = self(np.array(points))
        centre, plus, minus = total[0], total[1:k + 1], total[k + 1:2 * k + 1]
        hessian = np.diag((plus - 2 * centre + minus) / h**2)
        for n, (i, j) in enumerate(pairs):
            pp, pm, mp, mm = total[2 * k + 1 + 4 * n: 2 * k + 5 + 4 * n]
            hessian[i, j] = hessian[j, i] = (pp - pm - mp + mm) / (4 * h**2)
        gradients = -0.5 * (per_subject[1:k + 1] - per_subject[k + 1:2 * k + 1]).T / (2 * h)
        return float(centre), per_subject[0], hessian, gradients


class _InnerState:
    """Per-row objective l(η) − ½ηᵀΩ⁻¹η, its log-likelihood part, gradient and curvature."""

    def __init__(self, objective, log_likelihood, gradient, curvature):
        self.objective, self.log_likelihood = objective, log_likelihood
        self.gradient, self.curvature = gradient, curvature

    def update(self, rows: np.ndarray, other: _InnerState, mask: np.ndarray) -> None:
        for name in ("objective", "log_likelihood", "gradient", "curvature"):
            getattr(self, name)[rows] = getattr(other, name)[mask]


class _Inner:
    """The conditional-mode problem of rows (population point, subject), solved for all rows at once."""

    def __init__(self, problem: FoceObjective, subjects, typical, log_typical, precision, error_values):
        self.problem = problem
        self.subjects, self.typical, self.log_typical = subjects, typical, log_typical
        self.precision, self.error_values = precision, error_values

    def solve(self, eta: np.ndarray) -> tuple[np.ndarray, _InnerState]:
        """Damped Gauss–Newton from ``eta`` (rows, r) to each row's conditional mode."""
        problem = self.problem
        return conditional_modes(self.evaluate, eta, problem.MAX_ITERATIONS, problem.MODE_TOLERANCE, 1e-8)

    def predictions(self, eta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions f (rows, T) and their Jacobian ∂f/∂η (rows, T, r) by forward differences."""
        problem = self.problem
        n_r, h = eta.shape[1], problem.JACOBIAN_STEP
        stencil = np.concatenate([eta[None], eta[None] + h * np.eye(n_r)[:, None, :]])  # (1 + r, rows, r)
        parameters = np.broadcast_to(self.typical[rows], (n_r + 1, *self.typical[rows].shape)).copy()
        parameters[..., problem.random] = np.exp(self.log_typical[rows] + stencil)
        subjects = self.subjects[rows]
        predicted = problem.stack.predict(np.tile(subjects, n_r + 1), parameters.reshape(-1, parameters.shape[-1]))
        predicted = predicted.reshape(n_r + 1, len(rows), -1)
        jacobian = np.moveaxis((predicted[1:] - predicted[0]) / h, 0, -1)
        return predicted[0], np.where(np.isfinite(jacobian), jacobian, 0.0)

    def evaluate(self, eta: np.ndarray, rows: np.ndarray) -> _InnerState:
        problem, stack = self.problem, self.problem.stack
        f, jacobian = self.predictions(eta, rows)
        subjects = self.subjects[rows]
        values = tuple(v[rows] for v in self.error_values)
        observed, below, used = stack.values[subjects], stack.below[subjects], stack.used[subjects]
        slope, information, _ = observation_derivatives(problem.error, observed, below, used, f, values)
        precision = self.precision[rows]
        likelihood = log_likelihood(problem.error, values, observed, below, used, f)
        objective = likelihood - 0.5 * np.einsum("br,brs,bs->b", eta, precision, eta)
        gradient = np.einsum("btr,bt->br", jacobian, slope) - np.einsum("brs,bs->br", precision, eta)
        curvature = np.einsum("btr,bt,bts->brs", jacobian, information, jacobian) + precision
        return _InnerState(objective, likelihood, gradient, curvature)


def observation_derivatives(error, observed, below, used, f, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per observation: the slope of its log-likelihood in the prediction f, the curvature FOCE-I uses and the
    observed curvature −∂²/∂f² (which Newton steps towards the conditional mode use).

    The curvature is the expected information 1/V + ½(∂V/∂f)²/V² of y ~ N(f, V(f)) (for exponential
    error, 1/(s²f²) of log y ~ N(log f, s²)); for an observation below the quantification limit (M3) it
    is the observed −∂²/∂f² of the log-probability (never negative).  Slopes and the observed curvature are
    central differences, except for additive error without censoring, where all three are exact.
    """
    if isinstance(error, Additive) and not below.any():
        # y ~ N(f, a²): slope (y − f)/a², expected and observed curvature 1/a², in closed form
        (a,) = values
        precision = np.broadcast_to(1.0 / np.square(a), f.shape)
        measured = used & np.isfinite(f)
        with np.errstate(invalid="ignore"):
            slope = np.where(measured, (observed - f) * precision, 0.0)
        return slope, np.where(used, precision, 0.0), np.where(measured, precision, 0.0)
    delta = 1e-5 * (1.0 + np.abs(np.where(np.isfinite(f), f, 0.0)))
    at = np.stack([f, f + delta, f - delta])  # one call of each density for the three points
    with np.errstate(all="ignore"):
        inside = error.log_density(observed, at, values)
        if below.any():
            inside = np.where(below, error.log_below(observed, at, values), inside)
    middle, up, down = np.where(used & np.isfinite(inside), inside, 0.0)
    slope = (up - down) / (2 * delta)
    with np.errstate(all="ignore"):
        if isinstance(error, Exponential):
            (s,) = values
            information = 1.0 / (s * f) ** 2
        else:
            sd, sd_up, sd_down = np.broadcast_to(error.sd(at, values), at.shape)
            sd_slope = (sd_up - sd_down) / (2 * delta)
            information = 1.0 / sd**2 + 2.0 * (sd_slope / sd) ** 2
    observed_curvature = -(up - 2 * middle + down) / delta**2
    if below.any():
        information = np.where(below, np.maximum(observed_curvature, 0.0), information)
    information = np.where(used & np.isfinite(information), information, 0.0)
    return slope, information, observed_curvature


def _covariance(hessian: np.ndarray, gradients: np.ndarray, kind: str) -> np.ndarray:
    """R⁻¹SR⁻¹ or R⁻¹ in coordinates, R = ½ Hessian of the OFV, S = Σᵢ gᵢgᵢᵀ; NaN when R is singular."""
    r_matrix = 0.25 * (hessian + hessian.T)  # ½ of the symmetrised Hessian
    try:
        r_inverse = np.linalg.inv(r_matrix)
    except np.linalg.LinAlgError:
        return np.full_like(hessian, np.nan)
    if kind == "r":
        return r_inverse
    s_matrix = gradients.T @ gradients
    return r_inverse @ s_matrix @ r_inverse


class PopulationEstimate(PopulationPosterior):
    """A FOCE-I maximum-likelihood fit: the population as NONMEM reports it.

    ``ofv`` is NONMEM's objective (−2 log L without the n·log 2π constant); ``estimates`` maps each
    population quantity (typical values, ``omega_NAME`` as the SD of the log, ``corr_A_B``,
    ``OUTPUT.ERROR``) to its estimate and ``standard_errors`` to its standard error (from
    ``diagnostics["covariance"]``: R⁻¹SR⁻¹ by default, as NONMEM's ``$COVARIANCE``); ``omega`` is the
    full IIV covariance of the log-parameters (``Model.omega`` order); ``etas`` the conditional modes η̂
    (one row per subject); ``individuals`` maps each subject to a :class:`Posterior` of draws from the
    Laplace approximation N(η̂ᵢ, Hᵢ⁻¹), its ``map`` the parameters at η̂ᵢ; ``shrinkage`` is NONMEM's
    η-shrinkage (SD), 1 − SD(η̂)/ω (sample SD over subjects), and ``epsilon_shrinkage`` NONMEM's ε-shrinkage,
    1 − RMS(IWRES).
    """

    def __init__(self, objective: FoceObjective, x: np.ndarray, natural: np.ndarray, ofv: float,
                 per_subject: np.ndarray, covariance: np.ndarray, modes: np.ndarray, curvature: np.ndarray,
                 diagnostics: dict, individual_draws: int, rng: np.random.Generator):
        scales = objective.scales
        self.objective, self.coordinates = objective, x
        self.estimates = dict(zip(scales.names, natural.tolist(), strict=True))
        self.covariance = pd.DataFrame(covariance, index=scales.names, columns=scales.names)
        ids = [s.id for s in objective.subjects]
        self.subject_ofv = dict(zip(ids, per_subject.tolist(), strict=True))
        self.etas = pd.DataFrame(modes, index=pd.Index(ids, name="ID"),
                                 columns=[f"eta_{name}" for name in scales.random_names])
        self.curvatures = curvature
        omega_random, _ = scales.omega(x[None])
        n_p = scales.n_parameters
        self._omega = np.zeros((n_p, n_p))
        self._omega[np.ix_(scales.random, scales.random)] = omega_random[0]
        sd = np.sqrt(np.diag(omega_random[0]))
        # NONMEM's ETASHRINKSD: the sample SD (n − 1) of the modes over ω; EPSSHRINKSD: 1 − RMS(IWRES).
        shrinkage = {name: float(1 - np.std(modes[:, r], ddof=1) / sd[r]) if len(modes) > 1 else np.nan
                     for r, name in enumerate(scales.random_names)}
        names = list(scales.names)
        individuals = self._individuals(objective, individual_draws, rng)
        super().__init__(names, natural[None, None, :], np.array([[-0.5 * ofv]]), dict(self.estimates),
                         diagnostics, objective.model, objective.output, individuals, shrinkage, ofv=ofv,
                         standard_errors=dict(zip(scales.names, np.sqrt(np.diag(covariance)).tolist(), strict=True)))
        from koopnb.inference.diagnostics import residuals_at

        iwres = residuals_at(objective, x, npde=False)["IWRES"].to_numpy()
        self.epsilon_shrinkage = float(1 - np.sqrt(np.nanmean(iwres**2)))

    @property
    def typical(self) -> dict[str, float]:
        """The estimated typical value of each parameter."""
        return {name: self.estimates[name] for name in self.model.parameters}

    @property
    def omega(self) -> np.ndarray:
        """(n_parameters, n_parameters) estimated IIV covariance of the log-parameters, correlations included."""
        return self._omega.copy()

    @property
    def sigma(self) -> dict[str, float]:
        """The estimated residual error parameters, e.g. ``{"conc.proportional": 0.115}``."""
        return {name: self.estimates[name] for name in self.objective.scales.error_names}

    def summary(self) -> pd.DataFrame:
        """One row per population quantity: estimate, standard error, RSE %, η-shrinkage %."""
        rows = {}
        for name, value in self.estimates.items():
            se = self.standard_errors[name]
            rows[name] = {"estimate": value, "SE": se, "RSE%": 100 * se / abs(value) if value else np.nan,
                          "shrinkage%": 100 * self.shrinkage[name[6:]] if name.startswith("omega_") else np.nan}
        return pd.DataFrame.from_dict(rows, orient="index")

    def to_distribution(self, kind: str = "lognormal", n: int = 4000, seed=0):
        """The distribution of a new patient's parameters with IIV: log-normal with the estimated typical
        values and Ω (``kind="lognormal"``; the estimates' own uncertainty is not included)."""
        if kind != "lognormal":
            return super().to_distribution(kind, n, seed)
        random = self.objective.scales.random
        names = [self.model.parameters[i] for i in random]
        return MvLogNormal({name: self.estimates[name] for name in names}, self._omega[np.ix_(random, random)])

    def _individuals(self, objective: FoceObjective, n: int, rng: np.random.Generator) -> dict[Any, Posterior]:
        scales, model = objective.scales, objective.model
        typical = scales.typical(self.coordinates[None])[0]
        modes = self.etas.to_numpy()
        factor = np.linalg.cholesky(np.linalg.inv(self.curvatures))
        noise = rng.standard_normal((len(modes), n, scales.random.size))
        log_centre = np.log(typical[scales.random]) + modes
        draws = np.exp(log_centre[:, None, :] + np.einsum("bij,bkj->bki", factor, noise))
        fixed = {p: float(typical[i]) for i, p in enumerate(model.parameters) if i not in set(scales.random)}
        result = {}
        for s, subject in enumerate(objective.subjects):
            result[subject.id] = Posterior(
                scales.random_names, draws[s][:, None, :], np.zeros((n, 1)),
                dict(zip(scales.random_names, np.exp(log_centre[s]).tolist(), strict=True)),
                {"method": "Laplace approximation N(η̂, H⁻¹) at the FOCE-I estimates"},
                model, subject, objective.output, fixed)
        return result

    def __repr__(self) -> str:
        parts = [f"{name} {value:.4g} (SE {self.standard_errors[name]:.2g})" for name, value in self.estimates.items()]
        return f"<PopulationEstimate (FOCE-I) of {len(self.individuals)} subjects: OFV {self.ofv:.3f}; " + \
            "; ".join(parts) + ">"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain and text/html: estimates, standard errors, OFV (no sampler card: nothing was sampled)."""
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        title = f"FOCE-I estimate of {len(self.individuals)} subjects: OFV {self.ofv:.3f}"
        return f"<div class='koopnb-posterior'><b>{title}</b>{self.summary().to_html(float_format='%.4g')}</div>"
