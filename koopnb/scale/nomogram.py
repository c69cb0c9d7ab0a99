"""A dosing nomogram: the a-priori best regimen for every covariate stratum, with its certified probability."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from koopnb.errors import KoopnbError
from koopnb.scale.candidates import CandidateJob, candidate_regimens, checked_target, failure, outcome, warnings_in_row
from koopnb.scale.execution import run_jobs


def nomogram(model, target, covariates: Mapping[str, Sequence[float]], regimens, client=None, *, dist=None,
             rtol: float = 1e-4, atol: float = 1e-3, progress: bool = True,
             batch_size: int | None = None) -> pd.DataFrame:
    """The best of ``regimens`` for every combination of the ``covariates`` grids, e.g.
    ``covariates={"WT": [50, 70, 90], "CRCL": [30, 60, 90, 120]}`` (12 strata).

    In each stratum the probability that ``target`` (a Window or a list of Windows that must all hold) is met
    is a Koopman expectation over ``dist`` (default: the model's population distribution, i.e. a patient
    before any level is measured) to ``rtol``/``atol``, for every candidate (a mapping label -> Regimen or
    regimen text, or a list).  Returns a DataFrame, one row per stratum (the first covariate varying slowest):
    the covariates, regimen (the best label), dose (its first amount), P, error, converged, decided (True
    when the best's P − error exceeds every other candidate's P + error), runner_up, runner_up_P, n_evals,
    status, message (warnings, each probability's own after its candidate's label), time (s).  ``client`` as
    in :mod:`koopnb.scale.execution`.
    """
    target = checked_target(target)
    candidates = candidate_regimens(regimens)
    grids = {name: np.atleast_1d(np.asarray(grid, dtype=float)) for name, grid in covariates.items()}
    unknown = [name for name in grids if name not in model.covariates]
    if not grids or unknown:
        raise KoopnbError(f"covariate {unknown[0]!r} is not one of the model's covariates {list(model.covariates)}"
                          if unknown else "give at least one covariate grid, e.g. covariates={'CRCL': [30, 60, 90]}")
    for name, grid in grids.items():
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
            raise KoopnbError(f"the grid of covariate {name!r} must be a non-empty 1-D list of finite numbers")
    strata = [dict(zip(grids, values, strict=True)) for values in itertools.product(*grids.values())]
    job = CandidateJob(model, target, candidates, dist if dist is not None else model.prior(), rtol, atol)
    rows = run_jobs(_stratum_row, job, strata, client=client, label="nomogram", progress=progress,
                    batch_size=batch_size)
    table = pd.DataFrame(rows)
    order = [*grids, "regimen", "dose", "P", "error", "converged", "decided", "runner_up", "runner_up_P",
             "n_evals", "status", "message", "time"]
    table = table.reindex(columns=order).astype({"n_evals": "Int64", "converged": "boolean", "decided": "boolean"})
    table.attrs["target"] = str(target)
    table.attrs["covariates"] = list(grids)
    return table


def _stratum_row(job: CandidateJob, stratum: dict[str, float]) -> dict:
    """The candidates ranked in one stratum; never raises (a failure becomes the row's status)."""
    started = time.perf_counter()
    row: dict[str, Any] = dict(stratum)
    try:
        with warnings_in_row() as caught:
            results = job.probabilities(stratum)
        ranked = sorted(results, key=lambda label: -results[label].value)  # stable: the first of equals wins
        best = results[ranked[0]]
        others = [results[label] for label in ranked[1:]]
        row.update(regimen=ranked[0], dose=job.candidates[ranked[0]].doses[0].amount, P=best.value,
                   error=best.error, converged=best.converged,
                   decided=all(best.value - best.error > other.value + other.error for other in others),
                   runner_up=ranked[1] if others else None, runner_up_P=others[0].value if others else np.nan,
                   n_evals=sum(result.n_evals for result in results.values()))
        row.update(outcome(caught, results))
    except Exception as error:  # one stratum's failure must not stop the nomogram
        row.update(failure(error))
    row["time"] = time.perf_counter() - started
    return row
