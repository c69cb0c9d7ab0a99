"""fit_individual: one patient's parameters from their concentrations and the population prior.

The sampled coordinates are the logs of the parameters with IIV; their prior is the model's
log-normal population distribution (or a fitted population's), so in these coordinates it is a
multivariate normal.  Parameters without IIV stay at their typical values, as does the residual error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from koopnb.errors import FitError
from koopnb.inference.likelihood import log_likelihood, residual_error
from koopnb.inference.posterior import PopulationPosterior, Posterior
from koopnb.inference.sampler import (
    default_walkers,
    find_mode,
    laplace_covariance,
    run_ensemble,
    seeds,
    start_walkers,
)
from koopnb.inference.simulation import StackedSubjects
from koopnb.inference.subjects import one_subject
from koopnb.regimen import Regimen

N_STARTS = 4
"""Optimiser starts for the posterior mode: the prior median and draws from the prior."""


def fit_individual(model, data, regimen: Regimen | None = None, covariates: Mapping[str, float] | None = None,
                   walkers: int | None = None, steps: int = 2000, burn: int | None = None, seed: Any = None,
                   progress: bool = True, *, prior: PopulationPosterior | None = None, subject: Any = None,
                   output: str | None = None) -> Posterior:
    """Sample one patient's posterior with emcee.

    ``data``: a NONMEM-style table (one subject, or choose with ``subject=``) with dose rows, or
    ``(times, values)`` — or ``(times, values, below)`` with a BLQ mask, values then holding the
    limit — with the doses in ``regimen``.  ``covariates`` override the table's.  ``prior``: a
    :class:`PopulationPosterior` whose fitted population replaces the model's.  ``walkers`` defaults
    to max(32, 4k) for k sampled parameters; ``steps`` per walker; ``burn`` defaults to twice the
    autocorrelation time.  The same ``seed`` gives the same draws.
    """
    if prior is not None:
        if not isinstance(prior, PopulationPosterior):
            raise FitError(f"prior must be a PopulationPosterior, not {type(prior).__name__}")
        model = prior.to_model()
    output = output or model.default_output
    if output not in model.error_models:
        raise FitError(f"output {output!r} has no residual error model; add a line such as "
                       f"'{output} ~ additive(0.5)' to the model")
    patient = one_subject(model, data, regimen, covariates, subject, output)
    problem = IndividualProblem(model, patient, output)
    k = len(problem.names)
    walkers = default_walkers(k, walkers)
    optimiser_rng, walk_state = seeds(seed)
    starts = np.vstack([problem.location, problem.location + optimiser_rng.standard_normal((N_STARTS - 1, k))
                        @ problem.factor.T])
    mode, _ = find_mode(problem, starts)
    covariance = laplace_covariance(problem, mode)
    initial = start_walkers(problem, mode, covariance, walkers, optimiser_rng)
    chain = run_ensemble(problem, initial, steps, burn, walk_state, progress, "fit_individual")
    diagnostics = {
        "acceptance_fraction": float(np.mean(chain.acceptance)),
        "autocorrelation_time": dict(zip(problem.names, chain.autocorrelation.tolist(), strict=True)),
        "effective_sample_size": dict(zip(problem.names, chain.effective_size.tolist(), strict=True)),
        "burn": chain.burn, "steps": chain.steps, "walkers": walkers,
    }
    fixed = {name: model.typical[name] for name in model.parameters if name not in problem.names}
    return Posterior(problem.names, np.exp(chain.points), chain.log_density,
                     dict(zip(problem.names, np.exp(mode).tolist(), strict=True)), diagnostics, model, patient,
                     output, fixed)


class IndividualProblem:
    """The log-posterior of one patient's log-parameters, for a batch of points (batch, k) → (batch,)."""

    def __init__(self, model, patient, output: str):
        prior = model.prior()  # covariate effects live in derived quantities, not in the prior
        self.names = prior.names
        self.location = np.log(np.array([prior.median()[name] for name in self.names]))
        self.factor = np.linalg.cholesky(np.asarray(prior.covariance))
        self._whiten = np.linalg.inv(self.factor).T  # (x - location) @ _whiten is standard normal
        self._log_normaliser = -np.log(np.diag(self.factor)).sum() - 0.5 * len(self.names) * np.log(2 * np.pi)
        self.stack = StackedSubjects(model, [patient], output)
        self.error, self.error_values = residual_error(model.error_models[output])
        self.typical = np.array([[model.typical[name] for name in model.parameters]])  # (1, n_parameters)
        self.index = [model.parameters.index(name) for name in self.names]
        self._all_random = self.index == list(range(len(model.parameters)))
        stack = self.stack
        # The usual case (a closed-form model, every level measured, none below a limit) skips the
        # general layers of prediction and likelihood: emcee calls this 4,000 times in a fit of
        # 2,000 steps, and on 16 walkers the layers cost as much as the arithmetic.
        self._closed_form = stack.closed_form if not stack.below.any() else None

    def log_prior(self, points: np.ndarray) -> np.ndarray:
        """Multivariate normal log-density of the log-parameters, (batch, k) → (batch,)."""
        standard = (points - self.location) @ self._whiten
        return -0.5 * np.einsum("ij,ij->i", standard, standard) + self._log_normaliser

    def log_likelihood(self, points: np.ndarray) -> np.ndarray:
        """Log-likelihood of the patient's levels, (batch, k) → (batch,).

        -inf or NaN where a prediction is not finite (the caller turns both into -inf).
        """
        rows = np.zeros(len(points), dtype=int)
        if self._all_random:
            parameters = np.exp(points)
        else:
            parameters = self.typical[rows]
            parameters[:, self.index] = np.exp(points)
        stack = self.stack
        if self._closed_form is None:
            predicted = stack.predict(rows, parameters)
            return log_likelihood(self.error, self.error_values, stack.values, stack.below, stack.used, predicted)
        predicted, usable = self._closed_form(rows, stack.arguments(rows, parameters))
        if not usable.all():  # near-equal eigenvalues and the like: the general solver, for those sets only
            other = ~usable
            predicted[other] = stack.predict(rows[other], parameters[other])
        return self.error.log_density(stack.values, predicted, self.error_values).sum(axis=1)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        with np.errstate(all="ignore"):
            total = self.log_prior(points) + self.log_likelihood(points)
        return np.where(np.isfinite(total), total, -np.inf)
