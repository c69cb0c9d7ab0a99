"""Goodness-of-fit residuals of a population fit, one row per observation, as NONMEM tabulates them.

- PRED: the prediction at the typical values (η = 0); RES = DV − PRED.
- IPRED: the prediction at the subject's conditional mode η̂ᵢ; IWRES = (DV − IPRED) / SD(IPRED), the residual
  in units of the residual error's standard deviation there (on the log scale for exponential error).
- CWRES: conditional weighted residuals (Hooker, Staatz & Karlsson, Pharm Res 24:2187, 2007) — the model
  linearised around η̂ᵢ, as FOCE-I does: E[yᵢ] ≈ f(η̂ᵢ) − Gᵢη̂ᵢ and Cov[yᵢ] ≈ GᵢΩGᵢᵀ + diag V(f(η̂ᵢ)),
  Gᵢ = ∂f/∂η at η̂ᵢ; CWRESᵢ = Cov⁻¹ᐟ²(yᵢ − E[yᵢ]) with the symmetric (eigenvalue) square root, NONMEM's
  default (WRESCHOL=EIGENVALUE).  For exponential error the same is done for log y.
- NPDE: normalised prediction distribution errors (Brendel et al. 2006; Comets et al. 2008), with the predictive
  distribution integrated by Gauss–Hermite quadrature over η (no simulation); ``table.attrs["npde_error"]`` is
  the largest change from a rule with two fewer points per random effect.

A fit by emcee is evaluated at its posterior medians (``PopulationPosterior.to_model()``); a FOCE-I fit
at its estimates.  Observations below a quantification limit get NaN residuals (flagged in BLQ).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from koopnb.expectation.gauss import tensor_rule
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
    """One row per observation: ID, TIME, DV, PRED, IPRED, RES, IWRES, CWRES, NPDE, BLQ, then one η column
    per parameter with IIV (``ETA_NAME``, the subject's conditional mode)."""
    return residuals_at(*objective_of(population))


def residuals_at(objective: FoceObjective, x: np.ndarray, npde: bool = True) -> pd.DataFrame:
    """The table of :func:`residuals` for the subjects of ``objective`` at coordinates ``x`` (size,); without
    the NPDE column (its quadrature is most of the cost) when ``npde`` is False."""
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
        "CWRES": np.where(measured, cwres, np.nan)[used]})
    if npde:
        npde_values, table.attrs["npde_error"] = _npde(objective, inner, observed, measured)
        table["NPDE"] = np.where(measured, npde_values, np.nan)[used]
    table["BLQ"] = stack.below[used]
    names = [objective.model.parameters[i] for i in objective.random]
    for r, name in enumerate(names):
        table[f"ETA_{name}"] = np.repeat(eta[:, r], used.sum(axis=1))
    if all(isinstance(i, (int, np.integer)) for i in table["ID"]):
        table["ID"] = table["ID"].astype(int)
    return table


NPDE_NODES = 512
"""Largest tensor Gauss–Hermite rule (nodes per subject) for the NPDE integrals."""


def _npde(objective: FoceObjective, inner, observed, measured) -> tuple[np.ndarray, float]:
    """(n_subjects, T) normalised prediction distribution errors and an error estimate (the largest change
    from the rule with two fewer points per random effect); see :func:`_npde_with`."""
    r = objective.random.size
    points = 2
    while (points + 1) ** r <= NPDE_NODES:
        points += 1
    coarse, fine = (_npde_with(objective, inner, observed, measured, n) for n in (max(points - 2, 1), points))
    change = np.abs(fine - coarse)[measured]
    return fine, float(change.max()) if change.size else 0.0


def _npde_with(objective: FoceObjective, inner, observed, measured, points: int) -> np.ndarray:
    """NPDE (Brendel et al., Pharm Res 23:2036, 2006; Comets et al., Comput Methods Programs Biomed 90:154,
    2008) with the predictive distribution integrated by a tensor Gauss–Hermite rule instead of simulated.

    Per subject: E[y] and Cov[y] over η ~ N(0, Ω) and the residual error; y* = Cov⁻¹ᐟ²(y − E[y]) (symmetric
    square root); each simulated y* given η is normal, so pde_j is the mixture
    Σₙ wₙ Φ((y*_j − m_j(ηₙ)) / s_j(ηₙ)) exactly, and NPDE = Φ⁻¹(pde).  On the log scale for exponential error.
    """
    stack, error = objective.stack, objective.error
    n_s, r = len(objective.subjects), objective.random.size
    nodes, weights = tensor_rule((points,) * r)
    factor = np.linalg.cholesky(np.linalg.inv(inner.precision[0]))
    eta = nodes @ factor.T
    parameters = np.repeat(inner.typical, len(nodes), axis=0)  # subject-major: (n_s·n, n_p)
    parameters[:, objective.random] = np.exp(np.repeat(inner.log_typical, len(nodes), axis=0) + np.tile(eta, (n_s, 1)))
    subjects = np.repeat(inner.subjects, len(nodes))
    f = stack.predict(subjects, parameters).reshape(n_s, len(nodes), -1)
    values = tuple(np.asarray(v)[0] for v in inner.error_values)
    with np.errstate(all="ignore"):
        if isinstance(error, Exponential):
            (s,) = values
            g, variance, y = np.log(f), np.full(f.shape, float(s) ** 2), np.log(observed)
        else:
            g, variance, y = f, error.sd(f, values) ** 2, observed
    g = np.where(measured[:, None, :], g, 0.0)
    variance = np.where(measured[:, None, :], variance, 1.0)
    mean = np.einsum("n,snt->st", weights, g)
    centred = g - mean[:, None, :]
    covariance = np.einsum("n,snt,snu->stu", weights, centred, centred)
    covariance += np.einsum("n,snt,tu->stu", weights, variance, np.eye(g.shape[2]))
    pair = measured[:, :, None] & measured[:, None, :]
    diagonal = np.eye(g.shape[2], dtype=bool)[None]
    covariance = np.where(pair, covariance, np.where(diagonal, 1.0, 0.0))
    # decorrelated with the symmetric square root, as NONMEM (WRESCHOL=EIGENVALUE; the npde package's default
    # is Cholesky): agrees with NONMEM's own NPDE of the phenobarbital run to its simulation noise
    eigenvalues, vectors = np.linalg.eigh(covariance)
    whiten = np.einsum("stk,sk,suk->stu", vectors, 1 / np.sqrt(eigenvalues), vectors)
    target = np.einsum("stu,su->st", whiten, np.where(measured, y - mean, 0.0))
    location = np.einsum("stu,snu->snt", whiten, centred)
    scale = np.sqrt(np.einsum("stu,snu->snt", whiten**2, variance))
    pde = np.einsum("n,snt->st", weights, ndtr((target[:, None, :] - location) / scale))
    return ndtri(np.clip(pde, 1e-15, 1 - 1e-15))


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
