"""fit_individual: one patient's parameters from their concentrations and the population prior.

The sampled coordinates are the logs of the parameters with IIV; their prior is the model's
log-normal population distribution (or a fitted population's), so in these coordinates it is a
multivariate normal.  With inter-occasion variability (``CL = 2.8 ~ 27% iov 12%``) one random effect
per occasion and IOV parameter is sampled jointly with them.  Parameters without IIV stay at their
typical values, as does the residual error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

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
from koopnb.inference.subjects import iov_of, kappa_name, one_subject
from koopnb.regimen import Regimen

N_STARTS = 4
"""Optimiser starts for the posterior mode: the prior median and draws from the prior."""


def fit_individual(model, data, regimen: Regimen | None = None, covariates: Mapping | pd.DataFrame | None = None,
                   walkers: int | None = None, steps: int = 2000, burn: int | None = None, seed: Any = None,
                   progress: bool = True, *, prior: PopulationPosterior | None = None, subject: Any = None,
                   output: str | None = None, covariate_interpolation: str | None = None,
                   occasions: str | None = None) -> Posterior:
    """Sample one patient's posterior with emcee.

    ``data``: a NONMEM-style table (one subject, or choose with ``subject=``) with dose rows, or
    ``(times, values)`` — or ``(times, values, below)`` with a BLQ mask, values then holding the
    limit — with the doses in ``regimen``.  ``covariates`` override the table's: a dict of constants or a
    DataFrame history (TIME and covariate columns).  A covariate that changes within the patient is used as it
    changes, read with ``covariate_interpolation`` ("nocb", NONMEM's rule and the default, or "locf").
    With inter-occasion variability in the model, occasions come from the data's OCC column, or
    ``occasions="dose"`` starts a new occasion at each dose (one occasion without either).  ``prior``: a
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
    patient = one_subject(model, data, regimen, covariates, subject, output,
                          covariate_interpolation=covariate_interpolation, occasions=occasions)
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
    natural = problem.natural
    return Posterior(problem.names, natural(chain.points), chain.log_density,
                     dict(zip(problem.names, natural(mode).tolist(), strict=True)), diagnostics, model, patient,
                     output, fixed)


class IndividualProblem:
    """The log-posterior of one patient's log-parameters, for a batch of points (batch, k) → (batch,).

    With inter-occasion variability the coordinates are the logs of the parameters with IIV followed by
    one random effect κ per occasion and IOV parameter (occasion-major, names ``kappa_CL_occ2``), with
    prior N(0, kappa²): the parameter on occasion j is exp(log θ + κ_j), θ the patient's own value.
    """

    def __init__(self, model, patient, output: str):
        prior = model.prior()  # covariate effects live in derived quantities, not in the prior
        iov = iov_of(model)
        occasions = patient.occasions.labels if patient.occasions is not None else np.ones(1, dtype=int)
        self.iov_parameters = list(iov)
        self.n_occasions = len(occasions) if iov else 1
        kappa_names = [kappa_name(name, label) for label in occasions for name in iov] if iov else []
        self.names = (*prior.names, *kappa_names)
        self.n_iiv = len(prior.names)
        self.location = np.concatenate([np.log([prior.median()[name] for name in prior.names]),
                                        np.zeros(len(kappa_names))])
        covariance = scipy.linalg.block_diag(np.asarray(prior.covariance),
                                             np.diag(np.tile([iov[name] ** 2 for name in iov], self.n_occasions)))
        self.factor = np.linalg.cholesky(covariance)
        self._whiten = np.linalg.inv(self.factor).T  # (x - location) @ _whiten is standard normal
        self._log_normaliser = -np.log(np.diag(self.factor)).sum() - 0.5 * len(self.names) * np.log(2 * np.pi)
        self.stack = StackedSubjects(model, [patient], output)
        self.error, self.error_values = residual_error(model.error_models[output])
        self.typical = np.array([[model.typical[name] for name in model.parameters]])  # (1, n_parameters)
        self.index = [model.parameters.index(name) for name in prior.names]
        self.iov_index = [model.parameters.index(name) for name in iov]
        self._all_random = self.index == list(range(len(model.parameters)))
        stack = self.stack
        # The usual case (a closed-form model, every level measured, none below a limit) skips the
        # general layers of prediction and likelihood: emcee calls this 4,000 times in a fit of
        # 2,000 steps, and on 16 walkers the layers cost as much as the arithmetic.
        self._closed_form = stack.closed_form if not stack.below.any() and not stack.piecewise else None

    def log_prior(self, points: np.ndarray) -> np.ndarray:
        """Multivariate normal log-density of the log-parameters, (batch, k) → (batch,)."""
        standard = (points - self.location) @ self._whiten
        return -0.5 * np.einsum("ij,ij->i", standard, standard) + self._log_normaliser

    def log_likelihood(self, points: np.ndarray) -> np.ndarray:
        """Log-likelihood of the patient's levels, (batch, k) → (batch,).

        -inf or NaN where a prediction is not finite (the caller turns both into -inf).
        """
        rows = np.zeros(len(points), dtype=int)
        parameters = self.parameters(points)
        stack = self.stack
        if self._closed_form is None:
            predicted = stack.predict(rows, parameters)
            return log_likelihood(self.error, self.error_values, stack.values, stack.below, stack.used, predicted)
        if parameters.ndim == 3:  # inter-occasion variability on a single occasion: one parameter vector
            parameters = parameters[:, 0]
        predicted, usable = self._closed_form(rows, stack.arguments(rows, parameters))
        if not usable.all():  # near-equal eigenvalues and the like: the general solver, for those sets only
            other = ~usable
            predicted[other] = stack.predict(rows[other], parameters[other])
        return self.error.log_density(stack.values, predicted, self.error_values).sum(axis=1)

    def natural(self, points: np.ndarray) -> np.ndarray:
        """Coordinates as the posterior reports them: parameters with IIV on their own scale, κ as they are."""
        points = np.array(points, dtype=float)
        points[..., :self.n_iiv] = np.exp(points[..., :self.n_iiv])
        return points

    def parameters(self, points: np.ndarray) -> np.ndarray:
        """The model's parameters (batch, n_parameters) of log-coordinates (batch, k); with inter-occasion
        variability one vector per occasion, (batch, n_occasions, n_parameters)."""
        iiv = points[:, :self.n_iiv]
        if self._all_random:
            parameters = np.exp(iiv)
        else:
            parameters = np.repeat(self.typical, len(points), axis=0)
            parameters[:, self.index] = np.exp(iiv)
        if not self.iov_parameters:
            return parameters
        kappa = points[:, self.n_iiv:].reshape(len(points), self.n_occasions, len(self.iov_parameters))
        per_occasion = np.repeat(parameters[:, None], self.n_occasions, axis=1)
        per_occasion[:, :, self.iov_index] *= np.exp(kappa)
        return per_occasion

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        with np.errstate(all="ignore"):
            total = self.log_prior(points) + self.log_likelihood(points)
        return np.where(np.isfinite(total), total, -np.inf)
