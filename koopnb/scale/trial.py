"""A virtual trial: probability of target attainment (PTA) of candidate regimens across a population.

Two nested sums.  Inside, each virtual patient's covariates are fixed and the random effects are integrated
out by a Koopman expectation (a deterministic quadrature with an error estimate).  Outside, the PTA of a
stratum is the mean of its patients' probabilities — a Monte Carlo sum over the covariate population.  So
the PTA carries two errors of different kinds: the quadrature error (the mean of the patients' error
estimates: how well the PTA *of these patients* is known) and the sampling error (standard error of the
mean over patients: how far these patients' PTA may be from the population's).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from koopnb.errors import KoopnbError
from koopnb.scale.candidates import (
    FAILED,
    CandidateJob,
    candidate_regimens,
    checked_target,
    failure,
    outcome,
    warnings_in_row,
)
from koopnb.scale.execution import checked_seed, run_jobs

COVERAGE = 2.0
"""Sampling standard errors added to the quadrature error in ``error`` (about a 95% interval)."""


def virtual_trial(model, regimens, target, population, n: int | None = None, client=None, *,
                  strata: Mapping[str, Sequence[float]] | None = None, dist=None, seed: int = 0,
                  rtol: float = 1e-4, atol: float = 1e-3, progress: bool = True,
                  batch_size: int | None = None) -> pd.DataFrame:
    """PTA of every candidate regimen in every stratum of a virtual population.

    ``population``: a distribution over covariate names (e.g. ``kn.Joint({"CRCL": kn.Uniform(20, 130)})``)
    from which ``n`` patients are drawn with ``seed``, or a DataFrame with one column per covariate (every
    row a patient; with ``n``, ``n`` rows are drawn with replacement).  ``strata`` maps a covariate to bin
    edges (e.g. ``{"CRCL": [0, 30, 60, 90, 150]}``, bins closed on the left); every patient must fall in
    a bin.  ``dist``: the random effects (default the model's population distribution).

    Returns one row per stratum and regimen: the stratum's interval per covariate ('CRCL stratum'), regimen, n (patients
    counted), failed (patients whose probability could not be computed — left out of the mean and listed in
    ``table.attrs["patients"]``), PTA, quadrature_error, sampling_error, error = quadrature_error +
    2·sampling_error (about a 95% bound on the distance to the population's PTA).  The per-patient
    probabilities are in ``table.attrs["patients"]``.
    """
    target = checked_target(target)
    candidates = candidate_regimens(regimens)
    patients = _patients(model, population, n, checked_seed(seed))
    labels = _strata(patients, strata or {})
    job = CandidateJob(model, target, candidates, dist if dist is not None else model.prior(), rtol, atol)
    covariate_rows = patients.to_dict("records")
    rows = run_jobs(_patient_row, job, covariate_rows, client=client, label="virtual trial", progress=progress,
                    batch_size=batch_size)
    per_patient = pd.concat([labels, pd.DataFrame(rows)], axis=1)
    table = _summary(per_patient, list(labels.columns), list(candidates))
    table.attrs["patients"] = per_patient
    table.attrs["target"] = str(target)
    return table


def _patients(model, population, n: int | None, seed: int) -> pd.DataFrame:
    """The virtual patients' covariates, one row each."""
    rng = np.random.default_rng(seed)
    if isinstance(population, pd.DataFrame):
        if n is not None:
            population = population.iloc[rng.integers(0, len(population), size=n)]
        patients = population.reset_index(drop=True)
    elif hasattr(population, "sample"):
        if n is None:
            raise KoopnbError("give the number of virtual patients n= to draw from the population distribution")
        patients = pd.DataFrame(population.sample(n, rng))
    else:
        raise KoopnbError("population must be a distribution over covariates or a DataFrame of covariates, "
                          f"not {type(population).__name__}")
    unknown = [name for name in patients.columns if name not in model.covariates]
    if unknown:
        raise KoopnbError(f"population column {unknown[0]!r} is not one of the model's covariates "
                          f"{list(model.covariates)}")
    if patients.empty:
        raise KoopnbError("the population has no patients")
    return patients.astype(float)


def _strata(patients: pd.DataFrame, strata: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Each patient's bin per stratifying covariate, column 'NAME stratum' (e.g. '[30, 60)'); one 'all' stratum
    without any."""
    if not strata:
        return pd.DataFrame({"stratum": ["all"] * len(patients)})
    labels = {}
    for name, edges in strata.items():
        if name not in patients:
            raise KoopnbError(f"stratum covariate {name!r} is not a column of the population")
        edges = np.asarray(edges, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise KoopnbError(f"the strata edges of {name!r} must be at least two increasing numbers")
        values = patients[name].to_numpy()
        outside = (values < edges[0]) | (values >= edges[-1])
        if outside.any():
            raise KoopnbError(f"{int(outside.sum())} of {len(values)} virtual patients have {name} outside the strata "
                              f"edges [{edges[0]:g}, {edges[-1]:g}) (e.g. {values[outside][0]:g}); widen the edges")
        bins = np.searchsorted(edges, values, side="right") - 1
        names = [f"[{low:g}, {high:g})" for low, high in itertools.pairwise(edges)]
        labels[f"{name} stratum"] = pd.Categorical.from_codes(bins, categories=names, ordered=True)
    return pd.DataFrame(labels)


def _patient_row(job: CandidateJob, covariates: dict[str, float]) -> dict:
    """One virtual patient's probability per regimen; never raises (a failure becomes the row's status)."""
    started = time.perf_counter()
    row: dict[str, Any] = dict(covariates)
    try:
        with warnings_in_row() as caught:
            results = job.probabilities(covariates)
        for label, result in results.items():
            row[f"P {label}"], row[f"error {label}"] = result.value, result.error
        row.update(outcome(caught, results))
    except Exception as error:  # one patient's failure must not stop the trial
        row.update(failure(error))
    row["time"] = time.perf_counter() - started
    return row


def _summary(per_patient: pd.DataFrame, strata: list[str], labels: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in per_patient.groupby(strata, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        counted = group[group["status"] != FAILED]
        for label in labels:
            values = counted[f"P {label}"].to_numpy(dtype=float) if len(counted) else np.array([])
            m = len(values)
            quadrature = float(counted[f"error {label}"].mean()) if m else np.nan
            sampling = float(np.std(values, ddof=1) / np.sqrt(m)) if m > 1 else np.nan
            rows.append({**dict(zip(strata, key, strict=True)), "regimen": label, "n": m,
                         "failed": len(group) - m, "PTA": float(values.mean()) if m else np.nan,
                         "quadrature_error": quadrature, "sampling_error": sampling,
                         "error": quadrature + COVERAGE * sampling})
    return pd.DataFrame(rows)
