"""Goodness-of-fit residuals of a population fit, one row per observation, as NONMEM tabulates them.

- PRED: the prediction at the typical values (η = 0); RES = DV − PRED.
- IPRED: the prediction at the subject's conditional mode η̂ᵢ; IWRES = (DV − IPRED) / SD(IPRED), the residual
  in units of the residual error's standard deviation there (on the log scale for exponential error).
- CWRES: conditional weighted residuals (Hooker, Staatz & Karlsson, Pharm Res 24:2187, 2007) — the model
  linearised around η̂ᵢ, as FOCE-I does: E[yᵢ] ≈ f(η̂ᵢ) − Gᵢη̂ᵢ and Cov[yᵢ] ≈ GᵢΩGᵢᵀ + diag V(f(η̂ᵢ)),
  Gᵢ = ∂f/∂η at η̂ᵢ; CWRESᵢ = Cov⁻¹ᐟ²(yᵢ − E[yᵢ]) with the symmetric (eigenvalue) square root, NONMEM's
  default (WRESCHOL=EIGENVALUE).  For exponential error the same is done for log y.

A fit by emcee is evaluated at its posterior medians (``PopulationPosterior.to_model()``); a FOCE-I fit
at its estimates.  Observations below a quantification limit get NaN residuals (flagged in BLQ).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from koopnb.inference.foce import FoceObjective, PopulationEstimate
from koopnb.inference.likelihood import Exponential


def objective_of(population) -> tuple[FoceObjective, np.ndarray]:
    """The FOCE-I objective of a population fit's subjects and the coordinates of its estimates."""
    if isinstance(population, PopulationEstimate):
        return population.objective, population.coordinates
    subjects = [posterior.subject for posterior in population.individuals.values()]
    objective = FoceObjective(population.to_model(), subjects, population.output)
    return objective, objective.scales.start


def residuals(population) -> pd.DataFrame:
    """One row per observation: ID, TIME, DV, PRED, IPRED, RES, IWRES, CWRES, BLQ, then one η column
    per parameter with IIV (``ETA_NAME``, the subject's conditional mode)."""
    return residuals_at(*objective_of(population))


def residuals_at(objective: FoceObjective, x: np.ndarray) -> pd.DataFrame:
    """The table of :func:`residuals` for the subjects of ``objective`` at coordinates ``x`` (size,)."""
    inner, start, _, _ = objective.inner(x[None])
    eta, _ = inner.solve(start)
    rows = np.arange(len(eta))
    ipred, gradient = inner.predictions(eta, rows)
    pred, _ = inner.predictions(np.zeros_like(eta), rows)
    stack, error = objective.stack, objective.error
    values = tuple(v[rows] for v in inner.error_values)
    observed, measured = stack.values, stack.used & ~stack.below
    with np.errstate(all="ignore"):
        if isinstance(error, Exponential):
            # log y ~ N(log f, s²): residuals of log y, the Jacobian scaled by 1/f
            (s,) = values
            y, f, sd = np.log(observed), np.log(ipred), np.broadcast_to(s, ipred.shape)
            gradient = gradient / ipred[..., None]
        else:
            y, f, sd = observed, ipred, np.broadcast_to(error.sd(ipred, values), ipred.shape)
        iwres = (y - f) / sd
        cwres = _conditional_weighted(y - f + np.einsum("btr,br->bt", gradient, eta), gradient,
                                      inner.precision, sd**2, measured)
    used = stack.used
    table = pd.DataFrame({
        "ID": np.repeat(np.array([s.id for s in objective.subjects], dtype=object), used.sum(axis=1)),
        "TIME": stack.times[used], "DV": observed[used], "PRED": pred[used], "IPRED": ipred[used],
        "RES": (observed - pred)[used], "IWRES": np.where(measured, iwres, np.nan)[used],
        "CWRES": np.where(measured, cwres, np.nan)[used], "BLQ": stack.below[used]})
    names = [objective.model.parameters[i] for i in objective.random]
    for r, name in enumerate(names):
        table[f"ETA_{name}"] = np.repeat(eta[:, r], used.sum(axis=1))
    if all(isinstance(i, (int, np.integer)) for i in table["ID"]):
        table["ID"] = table["ID"].astype(int)
    return table


def _conditional_weighted(residual, gradient, precision, variance, measured) -> np.ndarray:
    """(n_subjects, T) Cov⁻¹ᐟ² residual with Cov = GΩGᵀ + diag(variance), over the measured entries only."""
    omega = np.linalg.inv(precision)
    covariance = np.einsum("btr,brs,bus->btu", gradient, omega, gradient)
    covariance += np.einsum("bt,tu->btu", np.where(measured, variance, 1.0), np.eye(variance.shape[1]))
    # Unmeasured entries (padding, BLQ) are decoupled: unit variance, no covariance, zero residual.
    pair = measured[:, :, None] & measured[:, None, :]
    diagonal = np.eye(variance.shape[1], dtype=bool)[None]
    covariance = np.where(pair | diagonal, covariance, 0.0)
    covariance = np.where(~measured[:, :, None] & diagonal, 1.0, covariance)
    values, vectors = np.linalg.eigh(covariance)
    root = np.einsum("btk,bk,buk->btu", vectors, 1.0 / np.sqrt(values), vectors)
    return np.einsum("btu,bu->bt", root, np.where(measured, residual, 0.0))
