"""A simulated ward: NONMEM-style histories of many patients drawn from a model, for trials and tutorials."""

from __future__ import annotations

import numpy as np
import pandas as pd

from koopnb.errors import KoopnbError
from koopnb.regimen import Regimen


def simulate_ward(model, n: int, regimen: Regimen | str, sample_times, population=None, *, seed: int = 0,
                  output: str | None = None) -> pd.DataFrame:
    """``n`` patients on ``regimen``, each with levels at ``sample_times`` (h), as a NONMEM-style table.

    Each patient's covariates are drawn from ``population`` (a distribution over covariate names, e.g.
    ``kn.Joint({"CRCL": kn.Uniform(20, 130)})``; None keeps the model's reference values), the parameters
    from the model's population distribution, and each level gets the output's residual error (combined:
    sd² = a² + b²f²; exponential: f·exp(σε)); levels are floored at 0 only if the error model could make
    them negative (a drug level is never below zero).  Returns ID, TIME, AMT, DV, EVID, MDV, DUR and one
    column per drawn covariate, dose rows first at equal times.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise KoopnbError(f"n must be a positive number of patients, not {n!r}")
    regimen = Regimen.parse(regimen) if isinstance(regimen, str) else regimen
    times = np.asarray(sample_times, dtype=float)
    output = output or model.default_output
    if output not in model.error_models:
        raise KoopnbError(f"output {output!r} has no residual error model to simulate levels with")
    rng = np.random.default_rng(seed)
    covariates = population.sample(n, rng) if population is not None else {}
    params = model.prior().sample(n, rng)
    predicted = model.simulate(params, regimen, times, covariates=covariates)[output]  # (n, n_times)
    levels = _with_residual_error(model.error_models[output], predicted, rng)
    dose_rows = pd.DataFrame([{"TIME": d.time, "AMT": d.amount, "DV": np.nan, "EVID": 1, "MDV": 1,
                               "DUR": d.duration} for d in regimen.doses])
    tables = []
    for i in range(n):
        levels_i = pd.DataFrame({"TIME": times, "AMT": 0.0, "DV": levels[i], "EVID": 0, "MDV": 0, "DUR": 0.0})
        patient = pd.concat([dose_rows, levels_i]).sort_values("TIME", kind="stable")
        patient.insert(0, "ID", i + 1)
        for name, values in covariates.items():
            patient[name] = values[i]
        tables.append(patient)
    return pd.concat(tables, ignore_index=True)


def _with_residual_error(error, predicted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(predicted.shape)
    if error.kind == "exponential":
        return predicted * np.exp(error.sigma * noise)
    sd = np.sqrt(error.additive**2 + (error.proportional * predicted) ** 2)
    return np.maximum(predicted + sd * noise, 0.0)
