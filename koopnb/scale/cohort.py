"""A ward's nightly TDM run: every patient's history -> posterior -> recommended regimen, as one table."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from koopnb.data import read_raw, subject_covariates, subject_regimen
from koopnb.errors import DataError, KoopnbError
from koopnb.expectation import probability
from koopnb.inference import fit_individual
from koopnb.optimize import optimize_dose
from koopnb.regimen import Regimen
from koopnb.scale.candidates import (
    candidate_regimens,
    checked_target,
    failure,
    outcome,
    target_horizon,
    warnings_in_row,
    warnings_of,
)
from koopnb.scale.execution import checked_seed, run_jobs, subject_seed


def cohort(model, data, target, bounds: tuple[float, float] | None = None, step: float | None = None,
           regimens=None, client=None, *, seed: int = 0, steps: int = 2000, walkers: int | None = None,
           rtol: float = 1e-4, atol: float = 1e-3, progress: bool = True,
           batch_size: int | None = None) -> pd.DataFrame:
    """One row per subject of a NONMEM-style table: posterior, current regimen's probability, recommendation.

    For each subject (rows grouped by ID, in order of appearance): ``fit_individual`` on its rows (with
    ``steps``, ``walkers`` and a seed derived from ``seed`` and the subject's ID), then, with that posterior,
    the probability that ``target`` (a Window, or a list of Windows that must all hold) is met by

    - the *current regimen*: the subject's last recorded dose (amount, infusion duration, compartment) repeated
      every interval of its last two doses (or its II on a steady-state dose) from time 0 over the target's
      span — the target's times are those of a fresh plan, as in ``optimize_regimen``; place the windows late
      (e.g. ``AUC(120, 144)``) for steady state;
    - the *recommended regimen*: the best of ``regimens`` (a mapping label -> Regimen or regimen text, or a
      list), or, without candidates, the current regimen with every dose scaled by ``optimize_dose`` within
      ``bounds`` (mg) in multiples of ``step``.

    Covariates come from the subject's rows; when they change over time the plan uses the latest values
    (the message says so).  Probabilities are Koopman expectations to ``rtol``/``atol`` with error estimates.

    Returns a DataFrame: ID, status (``"ok"``, ``"warning"`` or ``"failed"``), message (fit warnings, the
    probabilities' own warnings after their labels, or the error that stopped this subject — the others go
    on), per sampled parameter its posterior median, 5% and 95% quantiles, current_regimen, current_P,
    current_error, regimen, dose (mg, first dose), P, error, converged, n_evals (model evaluations of the
    probabilities and the dose search; the fit's are not counted), time (s).  ``client`` as in
    :mod:`koopnb.scale.execution` (``"serial"``, None, a dask Client).
    """
    target = checked_target(target)
    candidates = candidate_regimens(regimens) if regimens is not None else None
    if candidates is None and bounds is None:
        raise KoopnbError("give the dose bounds= (low, high) to scale each current regimen, or candidate regimens=")
    job = CohortJob(model, target, bounds, step, candidates, checked_seed(seed), steps, walkers,
                    rtol, atol)
    rows = run_jobs(_subject_row, job, _split_subjects(data), client=client, label="cohort", progress=progress,
                    batch_size=batch_size)
    return _table(rows, model)


@dataclass(frozen=True)
class CohortJob:
    """What every subject's job needs (shipped to each worker once)."""

    model: Any
    target: Any
    bounds: tuple[float, float] | None
    step: float | None
    candidates: dict[str, Regimen] | None
    seed: int
    steps: int
    walkers: int | None
    rtol: float
    atol: float


@dataclass(frozen=True)
class SubjectRows:
    """One subject's raw rows, indexed by their 1-based data row numbers in the whole table."""

    id: Any
    rows: pd.DataFrame


def _split_subjects(data) -> list[SubjectRows]:
    """The raw table cut by ID, without reading it whole: a mistake in one subject's rows stays in that row."""
    raw = read_raw(data)
    names = {str(column).strip().upper(): column for column in raw.columns}
    if "ID" not in names:
        raise DataError("a cohort table needs an ID column", column="ID")
    cells = raw[names["ID"]].map(lambda cell: cell.strip() if isinstance(cell, str) else cell)
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    numeric = bool(np.all(np.isfinite(numbers) & (numbers == np.round(numbers))))
    keys = numbers.astype(np.int64) if numeric else cells.astype(str).to_numpy()
    found = []
    for key in pd.unique(keys):
        positions = np.flatnonzero(keys == key)
        found.append(SubjectRows(key.item() if numeric else key, raw.iloc[positions]))
    return found


def _subject_row(job: CohortJob, subject: SubjectRows) -> dict:
    """Everything about one subject; never raises (a failure becomes the row's status and message)."""
    started = time.perf_counter()
    row: dict[str, Any] = {"ID": subject.id}
    try:
        with warnings_in_row() as caught:
            row.update(_recommend(job, subject))
        row.update(outcome(caught + row.pop("notes")))
    except DataError as error:
        row.update(failure(_relocated(error, subject)))
    except Exception as error:  # one subject's failure must not stop the ward's run
        row.update(failure(error))
    row["time"] = time.perf_counter() - started
    return row


def _recommend(job: CohortJob, subject: SubjectRows) -> dict:
    model = job.model
    posterior = fit_individual(model, subject.rows, steps=job.steps, walkers=job.walkers,
                               seed=subject_seed(job.seed, subject.id), progress=False)
    row: dict[str, Any] = {}
    for name, summary in posterior.summary().iterrows():
        row.update({f"{name}_median": summary["median"], f"{name}_5%": summary["5%"], f"{name}_95%": summary["95%"]})
    dist = posterior.to_distribution()
    covariates, notes = _latest_covariates(model, subject)
    current, note = _current_regimen(subject, target_horizon(job.target))
    notes += [note] if note else []
    options = dict(covariates=covariates, rtol=job.rtol, atol=job.atol)
    n_evals = 0
    if current is not None:
        now = probability(job.target, model, current, dist, **options)
        row.update(current_regimen=str(current), current_P=now.value, current_error=now.error)
        n_evals += now.n_evals
        notes += warnings_of({"current regimen": now})
    if job.candidates is not None:
        results = {label: probability(job.target, model, regimen, dist, **options)
                   for label, regimen in job.candidates.items()}
        label = max(results, key=lambda name: results[name].value)  # the first of equals
        best = results[label]
        row.update(regimen=label, dose=job.candidates[label].doses[0].amount, P=best.value, error=best.error,
                   converged=best.converged)
        n_evals += sum(result.n_evals for result in results.values())
        notes += warnings_of(results)
    else:
        if current is None:
            raise KoopnbError(f"subject {subject.id}: {note}, so there is no regimen to scale; give regimens=")
        chosen = optimize_dose(model, current, dist, job.target, job.bounds, job.step, **options)
        row.update(regimen=str(chosen.regimen), dose=chosen.dose, P=chosen.objective, error=chosen.error,
                   converged=chosen.converged)
        n_evals += chosen.n_evals
        if not chosen.feasible:
            notes.append(chosen.message)
    row.update(n_evals=n_evals, notes=notes)
    return row


def _current_regimen(subject: SubjectRows, horizon: float) -> tuple[Regimen | None, str]:
    """The last recorded dose repeated at its interval from time 0 over ``horizon`` (h), or None and why not."""
    doses = subject_regimen(subject.rows).doses
    if not doses:
        return None, "no dose recorded"
    last = doses[-1]
    interval = last.interval  # the II of a steady-state dose
    if not interval and len(doses) > 1:
        interval = last.time - doses[-2].time
    if not interval:
        return None, "one dosing time recorded, so no current interval"
    count = math.ceil(horizon / interval) + 1
    return Regimen.repeat(last.amount, every=interval, count=count, cmt=last.cmt, duration=last.duration), ""


def _latest_covariates(model, subject: SubjectRows) -> tuple[dict[str, float], list[str]]:
    """The subject's covariates for the plan: constants as they are, a changing one at its latest value."""
    found = subject_covariates(subject.rows)
    if isinstance(found, pd.DataFrame):
        history = found
        latest = history.iloc[-1]
        changing = [name for name in model.covariates if name in history and history[name].nunique() > 1]
        notes = [f"plan uses the latest {name} ({latest[name]:g})" for name in changing]
        return {name: float(latest[name]) for name in model.covariates if name in history}, notes
    return {name: value for name, value in found.items() if name in model.covariates}, []


def _relocated(error: DataError, subject: SubjectRows) -> DataError:
    """A data error of one subject's rows, with the row counted in the whole table."""
    numbers = subject.rows.index
    row = int(numbers[error.row - 1]) if error.row is not None and 0 < error.row <= len(numbers) else None
    return DataError(error.message, row=row, column=error.column)


def _table(rows: list[dict], model) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    parameters = [f"{name}_{part}" for name in model.parameters for part in ("median", "5%", "95%")
                  if f"{name}_{part}" in table]
    order = ["ID", "status", "message", *parameters, "current_regimen", "current_P", "current_error", "regimen",
             "dose", "P", "error", "converged", "n_evals", "time"]
    table = table.reindex(columns=order)
    return table.astype({"n_evals": "Int64", "converged": "boolean"})
