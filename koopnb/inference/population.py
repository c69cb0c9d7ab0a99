"""fit_population: typical values, IIV and residual error of a population, and each subject's parameters.

Formulation — emcee samples the population parameters only, with every subject's random effects
integrated out by a Laplace approximation:

    log p(y | θ) = Σᵢ log ∫ p(yᵢ | η) N(η; 0, Ω) dη
                 ≈ Σᵢ [ log p(yᵢ | η̂ᵢ) − ½ η̂ᵢᵀ Ω⁻¹ η̂ᵢ − ½ log|Ω| − ½ log|Hᵢ| ],

with η̂ᵢ the conditional mode and Hᵢ = Jᵢᵀ Wᵢ Jᵢ + Ω⁻¹ the Gauss–Newton curvature (J = ∂f/∂η, W the
per-observation expected information in f) — NONMEM's FOCE-I objective, the same as ``method="ml"`` maximises
(koopnb/inference/foce.py; Wang, J Pharmacokinet Pharmacodyn 34:575, 2007).  Ω is the full covariance of the
log-parameters: with ``corr(A, B)`` lines each correlation within a block is sampled as ``corr_A_B``.  Why this and
not a full hierarchical model: the sampled space stays small (typical values, omegas, correlations, residual
error: 7 coordinates for theophylline), where an ensemble sampler mixes well, instead of adding k coordinates
per subject, where ensemble moves degrade quickly with dimension.  emcee runs differential-evolution moves
(:func:`population_moves`), which mix this posterior about three times faster than the stretch move.

Cost: the inner problem is solved for all walkers × subjects at once, each step one batched solve of the model
with forward-difference first and second derivatives in η.  Rows take Newton steps with the observed Hessian
(quadratic convergence; Gauss–Newton converges only linearly where residuals are large) and fall back to
Gauss–Newton where it fails (koopnb/inference/modes.py), starting from a first-order prediction of the modes
around the posterior mode (:meth:`PopulationProblem.warm_start`): two or three batched solves per half-ensemble
instead of eight to ten.  Given the population draws, each subject's parameters are drawn from N(η̂ᵢ, Hᵢ⁻¹) (the
same Laplace approximation of p(ηᵢ | y, θ)).

Default priors (weakly informative, override any with ``priors={name: Distribution}``): each typical
value and residual error parameter log-normal around the model text's value with omega 2 (a factor
of 7.4 either way is one SD), each IIV omega and IOV kappa (SD of the log) half-normal with scale 1, each
correlation uniform on (−1, 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from koopnb.distributions import Distribution, Joint
from koopnb.errors import FitError
from koopnb.inference.ensemble import VectorisedDEMove, VectorisedDESnookerMove
from koopnb.inference.foce import Scales, fit_maximum_likelihood, objective_value, observation_derivatives
from koopnb.inference.likelihood import log_likelihood, residual_error
from koopnb.inference.modes import conditional_modes, positive_definite
from koopnb.inference.posterior import PopulationPosterior, Posterior
from koopnb.inference.sampler import (
    central_differences,
    default_walkers,
    find_mode,
    laplace_covariance,
    run_ensemble,
    seeds,
    start_walkers,
)
from koopnb.inference.simulation import StackedSubjects
from koopnb.inference.subjects import all_subjects, iov_of, kappa_name

PRIOR_SPREAD = 2.0
"""Omega (SD of the log) of the default log-normal priors of typical values and residual errors."""
OMEGA_SCALE = 1.0
"""Scale of the default half-normal prior of each omega."""
DEFAULT_STEPS = 2000
"""Default chain length: with :func:`population_moves` the theophylline fit (7 coordinates) has τ ≈ 23–27 steps
(with the stretch move alone 65–79), so 2,000 steps are 50 τ (koopnb's own check, sampler.TRUSTED_LENGTH) up to
τ = 40."""


def population_walkers(k: int) -> int:
    """The default number of walkers for ``k`` sampled coordinates: 16, or 2k + 2 (the fewest emcee's ensemble
    needs) when more, even.  With :func:`population_moves` the autocorrelation time in steps hardly depends on the
    walkers (theophylline: τ ≈ 27 steps with 16 walkers, 23–25 with 32), while each step costs about 40 % less
    with 16, and the convergence check counts steps."""
    walkers = max(16, 2 * k + 2)
    return walkers + walkers % 2


def population_moves() -> list:
    """emcee's differential-evolution moves (ter Braak, Stat. Comput. 16:239, 2006; ter Braak & Vrugt, Stat.
    Comput. 18:435, 2008), 80 % DEMove and 20 % DESnookerMove as the emcee documentation's example, with the
    acceptance step vectorised (koopnb/inference/ensemble.py; the same chain).  On the theophylline posterior they
    give τ ≈ 23–29 steps against 65–84 for the stretch move (3,000 and 2,000 steps, 16 and 32 walkers, several
    seeds), so a trusted chain is about three times shorter."""
    return [(VectorisedDEMove(), 0.8), (VectorisedDESnookerMove(), 0.2)]


def fit_population(model, data, covariates: Mapping[str, float] | None = None, walkers: int | None = None,
                   steps: int = DEFAULT_STEPS, burn: int | None = None, seed: Any = None, progress: bool = True, *,
                   method: str = "emcee", priors: Mapping[str, Distribution] | None = None,
                   output: str | None = None, individual_draws: int = 1000,
                   covariance: str = "sandwich", covariate_interpolation: str | None = None,
                   occasions: str | None = None) -> PopulationPosterior:
    """Estimate the population of a NONMEM-style table of many subjects.

    ``method="emcee"`` (default) samples the posterior with emcee; ``method="ml"`` gives FOCE-I maximum-likelihood
    estimates as NONMEM's ``METHOD=1 INTERACTION`` (koopnb/inference/foce.py; a
    :class:`~koopnb.inference.foce.PopulationEstimate` with standard errors from ``covariance="sandwich"``, R⁻¹SR⁻¹,
    or ``"r"``, R⁻¹).  Estimated: the typical value of every parameter, the omega of every parameter with IIV,
    and the residual error of ``output`` (the model's default output).  ``covariates`` apply to every subject
    (overriding the table).  ``priors`` (emcee only) maps sample names (``CL``, ``omega_CL``,
    ``conc.additive``) to univariate distributions on the natural scale.  ``individual_draws``: draws kept per
    subject.  Either way ``.ofv`` is NONMEM's FOCE-I objective at the estimate (the emcee posterior's mode).
    A covariate that changes within a subject is used as it changes, read with ``covariate_interpolation``
    ("nocb", NONMEM's rule and the default, or "locf").  With inter-occasion variability (``iov`` in the
    model) the emcee fit also estimates each ``iov_NAME`` (SD of the log), integrating every subject's
    per-occasion random effects with its IIV ones; occasions come from the OCC column, or
    ``occasions="dose"`` starts one at each dose.  The same ``seed`` gives the same answer.
    """
    output = output or model.default_output
    if output not in model.error_models:
        raise FitError(f"output {output!r} has no residual error model; add a line such as "
                       f"'{output} ~ additive(0.5)' to the model")
    if method not in ("emcee", "ml"):
        raise FitError(f"method must be 'emcee' (Bayesian, sampled) or 'ml' (FOCE-I maximum likelihood), "
                       f"not {method!r}")
    subjects = all_subjects(model, data, covariates, output, covariate_interpolation=covariate_interpolation,
                            occasions=occasions)
    if method == "ml":
        iov = iov_of(model)
        if iov:
            written = ", ".join(f"{name} (iov {kappa:g})" for name, kappa in iov.items())
            raise FitError(f"method='ml' (FOCE-I) does not estimate inter-occasion variability, which this model has "
                           f"on {written}; use method='emcee', which integrates each occasion's random effects, or "
                           "remove the 'iov' from the model")
        if priors:
            raise FitError("priors= applies to method='emcee'; maximum likelihood (method='ml') uses none")
        return fit_maximum_likelihood(model, subjects, output, covariance=covariance,
                                      individual_draws=individual_draws, seed=seed)
    problem = PopulationProblem(model, subjects, output, priors or {})
    walkers = default_walkers(len(problem.names), walkers) if walkers is not None else population_walkers(
        len(problem.names))
    optimiser_rng, walk_state = seeds(seed)
    mode, _ = find_mode(problem, problem.start[None], step=1e-5)
    covariance = laplace_covariance(problem, mode)
    problem.warm_start(mode)
    initial = start_walkers(problem, mode, covariance, walkers, optimiser_rng)
    chain = run_ensemble(problem, initial, steps, burn, walk_state, progress, "fit_population", population_moves())

    names = problem.names
    draws = problem.natural(chain.points)
    at_mode = problem.natural(mode)
    modes, _ = problem.conditional(mode[None])
    omega_at_mode = np.exp(mode[problem.omega_slice])
    shrinkage = {name: float(1 - np.std(modes[:, r], ddof=1) / omega_at_mode[r]) if len(subjects) > 1 else np.nan
                 for r, name in enumerate(problem.random_names)}
    individuals = problem.individuals(chain.points.reshape(-1, len(names)), individual_draws, optimiser_rng)
    diagnostics = {
        "acceptance_fraction": float(np.mean(chain.acceptance)),
        "autocorrelation_time": dict(zip(names, chain.autocorrelation.tolist(), strict=True)),
        "effective_sample_size": dict(zip(names, chain.effective_size.tolist(), strict=True)),
        "burn": chain.burn, "steps": chain.steps, "walkers": walkers, "method": "Laplace (FOCE-I-like) marginal",
    }
    estimates = dict(zip(names, at_mode.tolist(), strict=True))
    # NONMEM's FOCE-I objective is that of a model without IOV; with IOV it is not reported (NaN).
    ofv = objective_value(model, subjects, output, estimates) if not problem.iov_names else float("nan")
    return PopulationPosterior(names, draws, chain.log_density, estimates, diagnostics, model, output, individuals,
                               shrinkage, ofv=ofv)


class PopulationProblem:
    """The log-posterior of the population coordinates (batch, D) → (batch,): logs of typical values and of
    omegas, Fisher's z = atanh ρ of each IIV correlation (``corr_A_B``, every pair within a block of correlated
    IIV), logs of IOV kappas and of residual error parameters, in that order (``names``)."""

    JACOBIAN_STEP = 1e-5
    MAX_ITERATIONS = 40
    MODE_TOLERANCE = 1e-10
    # Sampling only needs each subject's term to 1e-4: twelve subjects then move the log-density by about
    # 1e-3, a 0.1 % change of acceptance ratios, far below the Monte Carlo error of the posterior summaries.
    SAMPLING_TOLERANCE = 1e-4

    def __init__(self, model, subjects, output: str, priors: Mapping[str, Distribution]):
        self.model = model
        self.subjects = subjects
        self.stack = StackedSubjects(model, subjects, output)
        self.error, error_values = residual_error(model.error_models[output])
        parameters = model.spec.parameters
        omega = np.asarray(model.omega, dtype=float)
        self.random = np.flatnonzero(np.diag(omega) > 0)
        if self.random.size == 0:
            raise FitError("the model has no parameter with IIV ('~ omega'), so there is no population to fit")
        self.random_names = [parameters[i].name for i in self.random]
        # the pairs of IIV parameters whose correlation is estimated: those within a block of Ω (as FOCE-I)
        self.pairs = Scales(model, self.error.names, error_values, output).correlated
        # Inter-occasion variability: each subject's random effects are its IIV η followed by κ for every
        # occasion slot and IOV parameter (occasion-major); a subject with fewer occasions than the most has
        # κ slots that touch no prediction, whose prior-only terms cancel exactly in the Laplace marginal.
        iov = iov_of(model)
        self.iov_names = list(iov)
        self.iov_index = np.array([model.parameters.index(name) for name in iov], dtype=int)
        self.n_occasions = max((len(s.occasions) for s in subjects if s.occasions is not None), default=1)
        self.names = ([p.name for p in parameters] + [f"omega_{name}" for name in self.random_names]
                      + [f"corr_{self.random_names[i]}_{self.random_names[j]}" for i, j in self.pairs]
                      + [f"iov_{name}" for name in self.iov_names] + [f"{output}.{name}" for name in self.error.names])
        n_p, n_r, n_c, n_i = len(parameters), self.random.size, len(self.pairs), len(self.iov_names)
        self.omega_slice = slice(n_p, n_p + n_r)
        self.corr_slice = slice(n_p + n_r, n_p + n_r + n_c)
        self.iov_slice = slice(n_p + n_r + n_c, n_p + n_r + n_c + n_i)
        self.error_slice = slice(n_p + n_r + n_c + n_i, None)
        sd = np.sqrt(np.diag(omega))
        correlations = [omega[self.random[i], self.random[j]] / (sd[self.random[i]] * sd[self.random[j]])
                        for i, j in self.pairs]
        positive = ([p.typical for p in parameters] + [parameters[i].omega for i in self.random] + list(iov.values())
                    + list(error_values))
        if any(v <= 0 for v in positive):
            raise FitError("every typical value and residual error parameter must be positive to fit a population")
        values = positive[:n_p + n_r] + correlations + positive[n_p + n_r:]
        self.start = np.concatenate([np.log(positive[:n_p + n_r]), np.arctanh(correlations),
                                     np.log(positive[n_p + n_r:])])
        self._priors(dict(priors), values)
        self.eta_start = np.zeros((len(subjects), n_r + self.n_occasions * n_i))
        # Forward-difference offsets of the inner problem: η, η + h·eₐ (the Jacobian) and η + h·(eₐ + e_b),
        # a ≥ b (second derivatives, for Newton steps).
        size = self.eta_start.shape[1]
        first, second = np.tril_indices(size)
        eye = np.eye(size)
        self.stencil = first, second, np.concatenate([np.zeros((1, size)), eye, eye[first] + eye[second]])
        self.start_mode: np.ndarray | None = None  # set by warm_start: s(mode), x at the mode, ∂s/∂x, ∂²s/∂x²
        self.start_point: np.ndarray | None = None
        self.start_slope: np.ndarray | None = None
        self.start_curvature: np.ndarray | None = None
        # Newton decrement at which the inner problem stops: tight while the optimiser differentiates the
        # marginal numerically, looser while sampling (SAMPLING_TOLERANCE).
        self.tolerance = self.MODE_TOLERANCE

    def _priors(self, given: dict, values) -> None:
        """The prior of every population quantity: those ``given`` (univariate, natural scale) evaluated as
        :class:`Distribution` objects, the defaults — log-normal typical values and residual errors (omega
        ``PRIOR_SPREAD`` around the model's value), half-normal omegas and kappas (scale ``OMEGA_SCALE``),
        uniform correlations on (−1, 1), which is LKJ(1), uniform over correlation matrices — in closed form
        for all walkers at once (through scipy.stats each would cost about as much as a Gauss–Newton step)."""
        unknown = [name for name in given if name not in self.names]
        if unknown:
            raise FitError(f"{unknown[0]!r} is not a population quantity of this fit; the names are "
                           f"{', '.join(self.names)}")
        self.given = Joint(given) if given else None
        self.given_columns = [self.names.index(name) for name in given]
        default = [i for i, name in enumerate(self.names) if name not in given]
        spread = [i for i in default if not self.names[i].startswith(("omega_", "iov_", "corr_"))]
        self.lognormal_columns = np.array(spread, dtype=int)
        self.lognormal_location = np.log(np.array([values[i] for i in spread], dtype=float))
        self.halfnormal_columns = np.array([i for i in default if self.names[i].startswith(("omega_", "iov_"))],
                                           dtype=int)
        self.uniform_columns = np.array([i for i in default if self.names[i].startswith("corr_")], dtype=int)

    def log_prior(self, points: np.ndarray) -> np.ndarray:
        """(batch,) log prior density of coordinates ``points`` (batch, D), the Jacobian of the map included."""
        natural = self.natural(points)
        log_x = points[:, self.lognormal_columns]  # log-normal in x is normal in log x: the Jacobian cancels
        total = np.sum(-0.5 * ((log_x - self.lognormal_location) / PRIOR_SPREAD) ** 2, axis=1)
        total += len(self.lognormal_columns) * -(np.log(PRIOR_SPREAD) + 0.5 * np.log(2 * np.pi))
        log_sd = points[:, self.halfnormal_columns]
        total += np.sum(-0.5 * (np.exp(log_sd) / OMEGA_SCALE) ** 2 + log_sd, axis=1)
        total += len(self.halfnormal_columns) * (0.5 * np.log(2 / np.pi) - np.log(OMEGA_SCALE))
        rho = natural[:, self.uniform_columns]
        total += np.sum(np.log1p(-rho**2), axis=1) - len(self.uniform_columns) * np.log(2.0)
        if self.given is not None:
            columns = self.given_columns
            chosen = natural[:, columns]
            total += self.given.logpdf(dict(zip([self.names[i] for i in columns], chosen.T, strict=True)))
            # the Jacobian of the map to coordinates: ρ = tanh z for a correlation, x = eᶻ for anything else
            correlation = np.array([self.names[i].startswith("corr_") for i in columns])
            rho = np.where(correlation, chosen, 0.0)
            total += np.sum(np.where(correlation, np.log1p(-rho**2), points[:, columns]), axis=1)
        return total

    def natural(self, points: np.ndarray) -> np.ndarray:
        """Coordinates → natural scale (typical values, omegas, correlations, kappas, residual errors)."""
        natural = np.exp(points)
        natural[..., self.corr_slice] = np.tanh(points[..., self.corr_slice])
        return natural

    def warm_start(self, mode: np.ndarray) -> None:
        """Start every later inner optimisation from a second-order prediction of the conditional modes.

        Each subject's individual log-parameters ψ = log θ_typical + η (and its κ) at a population point x are
        predicted as s(x) ≈ s(m) + ∂s/∂x·(x − m) + ½(x − m)ᵀ∂²s/∂x²(x − m) around the mode m, the derivatives
        by central differences (one batch of 2k² + 1 points).  The data pin ψ, so it moves little and smoothly
        with the population point, and a walker's inner problem starts close to its solution: on theophylline
        most half-ensembles then need two batched solves (first order: two or three, from ψ at the mode: eight
        to ten)."""
        points, assemble = central_differences(mode, 1e-3)
        eta, _ = self.conditional(points, details=True)
        n_s = len(self.subjects)
        starts = eta.reshape(len(points), n_s, -1).copy()
        starts[..., :self.random.size] += points[:, None, self.random]
        self.start_mode, self.start_slope, self.start_curvature = assemble(starts)
        self.start_point = mode.copy()
        self.eta_start = eta.reshape(len(points), n_s, -1)[0]
        self.tolerance = self.SAMPLING_TOLERANCE

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            log_prior = self.log_prior(points)
            total = log_prior + np.where(np.isfinite(log_prior), self.marginal(points), -np.inf)
        return np.where(np.isfinite(total), total, -np.inf)

    def precision(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ω⁻¹ of one subject's random effects (batch, n, n) — IIV block (Ω = D R D: D the omegas, R the
        correlations), then each occasion's kappas — and log|Ω| (batch,); NaN where R is not positive definite."""
        n_r = self.random.size
        sd = np.exp(points[:, self.omega_slice])
        correlation = np.broadcast_to(np.eye(n_r), (len(points), n_r, n_r)).copy()
        if self.pairs:
            first, second = np.array(self.pairs).T
            rho = np.tanh(points[:, self.corr_slice])
            correlation[:, first, second] = correlation[:, second, first] = rho
        valid = positive_definite(correlation)
        correlation[~valid] = np.eye(n_r)
        log_det_r = np.linalg.slogdet(correlation)[1]
        iiv = np.linalg.inv(correlation) / (sd[:, :, None] * sd[:, None, :])
        kappa = np.tile(np.exp(-2 * points[:, self.iov_slice]), self.n_occasions)
        size = n_r + kappa.shape[1]
        precision = np.zeros((len(points), size, size))
        precision[:, :n_r, :n_r] = iiv
        precision[:, np.arange(n_r, size), np.arange(n_r, size)] = kappa
        log_det = (2 * points[:, self.omega_slice].sum(axis=1) + log_det_r
                   + 2 * self.n_occasions * points[:, self.iov_slice].sum(axis=1))
        return precision, np.where(valid, log_det, np.nan)

    def marginal(self, points: np.ndarray) -> np.ndarray:
        """(batch,) Laplace approximation of log p(all data | population point)."""
        _, (objective, curvature, log_det_omega) = self.conditional(points, details=True)
        n_s = len(self.subjects)
        sign, log_det = np.linalg.slogdet(curvature)
        per_row = objective - 0.5 * log_det_omega.repeat(n_s) - 0.5 * log_det
        per_row = np.where(sign > 0, per_row, -np.inf)
        return per_row.reshape(len(points), n_s).sum(axis=1)

    def conditional(self, points: np.ndarray, details: bool = False):
        """Conditional modes η̂ (batch·n_subjects, n_random), rows walker-major; with ``details``, also the
        objective log p(y|η̂) − ½η̂ᵀΩ⁻¹η̂ and the Gauss–Newton curvature H per row, and log|Ω| per point."""
        n_s, n_r = len(self.subjects), self.eta_start.shape[1]
        batch = len(points)
        subjects = np.tile(np.arange(n_s), batch)
        log_typical = points[:, :len(self.model.parameters)].repeat(n_s, axis=0)
        precision, log_det_omega = self.precision(points)
        precision = precision.repeat(n_s, axis=0)
        error_values = tuple(v[:, None] for v in np.exp(points[:, self.error_slice]).repeat(n_s, axis=0).T)
        inner = _InnerProblem(self, subjects, log_typical, precision, error_values)
        if self.start_mode is None:
            eta = np.tile(self.eta_start, (batch, 1))
        else:
            shift = points - self.start_point
            predicted = (self.start_mode + np.einsum("bk,ksr->bsr", shift, self.start_slope)
                         + 0.5 * np.einsum("bk,bl,klsr->bsr", shift, shift, self.start_curvature))
            eta = predicted.reshape(batch * n_s, n_r)
            eta[:, :self.random.size] -= log_typical[:, self.random]
        eta, state = conditional_modes(inner.evaluate, eta, self.MAX_ITERATIONS, self.tolerance, 1e-6)
        if details:
            return eta, (state.objective, state.curvature, log_det_omega)
        return eta.reshape(batch, n_s, n_r)[0] if batch == 1 else eta, None

    def individuals(self, points: np.ndarray, n: int, rng: np.random.Generator) -> dict[Any, Posterior]:
        """Each subject's parameter draws: η ~ N(η̂, H⁻¹) at up to 200 population draws, ``n`` in all."""
        picks = np.linspace(0, len(points) - 1, min(200, len(points))).round().astype(int)
        chosen = points[picks]
        per_draw = int(np.ceil(n / len(picks)))
        n_s, n_r, n_iiv = len(self.subjects), self.eta_start.shape[1], self.random.size
        modes, (_, curvature, _) = self.conditional(chosen, details=True)
        factor = np.linalg.cholesky(np.linalg.inv(curvature))  # (draws·subjects, r, r)
        noise = rng.standard_normal((len(modes), per_draw, n_r))
        eta = modes[:, None, :] + np.einsum("bij,bkj->bki", factor, noise)
        log_typical = chosen[:, self.random].repeat(n_s, axis=0)
        eta[..., :n_iiv] = np.exp(log_typical[:, None, :] + eta[..., :n_iiv])  # IIV on their own scale, κ as is
        values = eta.reshape(len(picks), n_s, per_draw, n_r)
        typical = np.median(np.exp(points[:, :len(self.model.parameters)]), axis=0)
        fixed = {p: float(typical[i]) for i, p in enumerate(self.model.parameters) if p not in self.random_names}
        result = {}
        for s, subject in enumerate(self.subjects):
            labels = subject.occasions.labels if self.iov_names else []
            names = [*self.random_names, *(kappa_name(p, label) for label in labels for p in self.iov_names)]
            draws = values[:, s].reshape(-1, 1, n_r)[:n, :, :len(names)]
            centre = np.median(draws[:, 0], axis=0)
            centre[:n_iiv] = np.exp(np.median(np.log(draws[:, 0, :n_iiv]), axis=0))
            result[subject.id] = Posterior(
                names, draws, np.zeros(draws.shape[:2]),
                dict(zip(names, centre.tolist(), strict=True)),
                {"method": f"Laplace approximation of p(η | data, population) at {len(picks)} population draws"},
                self.model, subject, self.stack.output, fixed)
        return result


class _InnerState:
    """Per-row objective, gradient, Gauss–Newton curvature and observed negative Hessian (``newton``; modes.py
    takes Newton steps only where it is positive definite) of the inner (conditional mode) problem."""

    def __init__(self, objective, gradient, curvature, newton):
        self.objective, self.gradient, self.curvature, self.newton = objective, gradient, curvature, newton

    def update(self, rows: np.ndarray, other: _InnerState, mask: np.ndarray) -> None:
        for name in ("objective", "gradient", "curvature", "newton"):
            getattr(self, name)[rows] = getattr(other, name)[mask]


class _InnerProblem:
    """log p(yᵢ | η) − ½ ηᵀΩ⁻¹η for rows (walker, subject), its gradient and Gauss–Newton curvature."""

    def __init__(self, problem: PopulationProblem, subjects, log_typical, precision, error_values):
        self.problem = problem
        self.subjects, self.log_typical, self.precision, self.error_values = (subjects, log_typical, precision,
                                                                               error_values)

    def evaluate(self, eta: np.ndarray, rows: np.ndarray) -> _InnerState:
        problem, stack = self.problem, self.problem.stack
        n_r, h = eta.shape[1], problem.JACOBIAN_STEP
        first, second, offsets = problem.stencil
        stencil = eta[None] + h * offsets[:, None, :]  # (points, rows, r)
        n_points = len(offsets)
        log_parameters = np.broadcast_to(self.log_typical[rows], (n_points, *self.log_typical[rows].shape)).copy()
        n_iiv = problem.random.size
        log_parameters[..., problem.random] += stencil[..., :n_iiv]
        subjects = self.subjects[rows]
        flat = np.exp(log_parameters.reshape(-1, log_parameters.shape[-1]))
        if problem.iov_names:  # one parameter vector per occasion: θ_j = exp(log θ + η + κ_j)
            kappa = stencil[..., n_iiv:].reshape(-1, problem.n_occasions, len(problem.iov_names))
            flat = np.repeat(flat[:, None], problem.n_occasions, axis=1)
            flat[:, :, problem.iov_index] *= np.exp(kappa)
        predicted = stack.predict(np.tile(subjects, n_points), flat)
        predicted = predicted.reshape(n_points, len(rows), -1)
        f, shifted, paired = predicted[0], predicted[1:n_r + 1], predicted[n_r + 1:]
        jacobian = np.moveaxis((shifted - f) / h, 0, -1)  # (rows, T, r)
        values = tuple(v[rows] for v in self.error_values)
        observed, below, used = stack.values[subjects], stack.below[subjects], stack.used[subjects]
        slope, weight, observed_weight = observation_derivatives(problem.error, observed, below, used, f, values)
        precision = self.precision[rows]
        jacobian = np.where(np.isfinite(jacobian), jacobian, 0.0)
        prior_slope = np.einsum("brs,bs->br", precision, eta)
        objective = (log_likelihood(problem.error, values, observed, below, used, f)
                     - 0.5 * np.einsum("br,br->b", eta, prior_slope))
        gradient = np.einsum("btr,bt->br", jacobian, slope) - prior_slope
        prior = precision
        curvature = np.einsum("btr,bt,bts->brs", jacobian, weight, jacobian) + prior
        # Observed negative Hessian: Jᵀ(−l'')J − Σₜ l'ₜ ∂²fₜ/∂η∂ηᵀ + Ω⁻¹, for Newton steps.
        pair = (paired - shifted[first] - shifted[second] + f) / h**2  # (pairs, rows, T)
        mixed = np.zeros((len(rows), n_r, n_r))
        mixed[:, first, second] = mixed[:, second, first] = np.einsum("pbt,bt->bp", np.where(used, pair, 0.0), slope)
        observed_weight = np.where(used & np.isfinite(observed_weight), observed_weight, 0.0)
        newton = np.einsum("btr,bt,bts->brs", jacobian, observed_weight, jacobian) - mixed + prior
        return _InnerState(objective, gradient, curvature, newton)
