"""A patient's data as the fits use it: doses, observations, covariates — checked, in plain words.

Observations are of one output of the model (its default output unless ``output=`` says otherwise);
the CMT column of observation rows is not used to choose it.  Observation rows flagged BLQ (or CENS)
hold the quantification limit in DV and enter the likelihood as "below the limit" (M3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from koopnb.data import read_nonmem, subject_covariates, subject_observations, subject_regimen
from koopnb.errors import DataError, FitError
from koopnb.regimen import Regimen


@dataclass(frozen=True)
class Subject:
    """One patient: ``times`` (h), ``values`` (observations, or the limit where ``below``), covariates."""

    id: Any
    regimen: Regimen
    times: np.ndarray
    values: np.ndarray
    below: np.ndarray
    covariates: dict[str, float] = field(default_factory=dict)


def one_subject(model, data, regimen: Regimen | None, covariates: Mapping | None, subject: Any,
                output: str) -> Subject:
    """The patient of ``fit_individual``: a NONMEM-style table or ``(times, values[, below])``."""
    if isinstance(data, (pd.DataFrame, str)) or hasattr(data, "__fspath__"):
        table = read_nonmem(data)
        ids = table["ID"].unique()
        if subject is None and len(ids) > 1:
            raise FitError(f"the table holds {len(ids)} subjects ({_list(ids)}); choose one with subject=ID, "
                           "or use fit_population")
        found = _from_table(model, table, ids[0] if subject is None else subject, covariates, output)
        if regimen is not None:
            if len(found.regimen):
                raise FitError("the table has dose rows and regimen= was given too; give the doses in one place")
            found = Subject(found.id, regimen, found.times, found.values, found.below, found.covariates)
        return _checked(model, found, output)
    if regimen is None:
        raise FitError("data given as (times, values) needs the doses: pass regimen=")
    times, values, below = _arrays(data)
    chosen = _covariates(model, {}, covariates, "the patient")
    return _checked(model, Subject(subject, regimen, times, values, below, chosen), output)


def all_subjects(model, data, covariates: Mapping | None, output: str) -> list[Subject]:
    """Every subject of a NONMEM-style table, checked, in ID order."""
    table = read_nonmem(data)
    if covariates:
        unknown = [name for name in covariates if name not in model.covariates]
        if unknown:
            raise FitError(_unknown_covariate(unknown[0], model))
    found = [_checked(model, _from_table(model, table, subject, covariates, output), output)
             for subject in table["ID"].unique()]
    if not found:
        raise FitError("the table holds no subjects")
    return found


def _from_table(model, table: pd.DataFrame, subject: Any, covariates: Mapping | None, output: str) -> Subject:
    times, values, below = subject_observations(table, subject)
    regimen = subject_regimen(table, subject)
    chosen = _covariates(model, subject_covariates(table, subject), covariates, f"subject {plain(subject)}")
    return Subject(subject, regimen, times, values, below, chosen)


def _arrays(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        parts = [np.asarray(part, dtype=float) for part in data]
    except (TypeError, ValueError):
        raise FitError("data must be a NONMEM-style table or (times, values) arrays of numbers") from None
    if len(parts) not in (2, 3) or any(part.ndim != 1 for part in parts) or len({p.size for p in parts}) != 1:
        raise FitError("data given as arrays must be (times, values) or (times, values, below), 1-D, "
                       "of one common length")
    below = parts[2].astype(bool) if len(parts) == 3 else np.zeros(parts[0].size, dtype=bool)
    return parts[0], parts[1], below


def _covariates(model, from_table: Mapping, given: Mapping | None, who: str) -> dict[str, float]:
    """The model's covariates for one patient: the argument wins over the table; every one must be known."""
    given = dict(given or {})
    unknown = [name for name in given if name not in model.covariates]
    if unknown:
        raise FitError(_unknown_covariate(unknown[0], model))
    chosen = {}
    for name in model.covariates:
        value = given.get(name, from_table.get(name))
        if value is None:
            raise FitError(f"covariate {name!r} of the model has no value for {who}: add a {name} column to the "
                           f"data or pass covariates={{{name!r}: ...}}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"covariate {name!r} of {who} is {value!r}, not a number", column=name) from None
        if not np.isfinite(number):
            raise DataError(f"covariate {name!r} of {who} is not finite ({number!r})", column=name)
        chosen[name] = number
    return chosen


def _unknown_covariate(name: str, model) -> str:
    known = ", ".join(model.covariates) or "none"
    return f"{name!r} is not a covariate of the model (its covariates are {known})"


def _checked(model, subject: Subject, output: str) -> Subject:
    """Reject data no likelihood can use, naming the subject and the problem in one sentence."""
    who = f"subject {plain(subject.id)}" if subject.id is not None else "the patient"
    times, values = subject.times, subject.values
    if times.size == 0:
        raise FitError(f"{who} has no observations (rows with EVID 0 and MDV 0), so there is nothing to fit")
    for kind, array, column in (("time", times, "TIME"), ("observation", values, "DV")):
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise DataError(f"{who}: {kind} {bad[0] + 1} is not a finite number ({array[bad[0]]!r})", column=column)
    if np.any(times < 0):
        first = np.flatnonzero(times < 0)[0]
        raise DataError(f"{who}: observation time {times[first]:g} h is negative", column="TIME")
    error = model.error_models.get(output)
    # A negative level is what an assay reports near zero and what simulation-based calibration draws; an
    # additive or combined error explains it.  Only where the likelihood of y < 0 is undefined is it refused.
    if error is not None and error.kind in _POSITIVE_ONLY and np.any(values < 0):
        first = int(np.flatnonzero(values < 0)[0])
        raise DataError(f"{who}: observation {first + 1} (at {times[first]:g} h) is negative (DV "
                        f"{values[first]:g}), which the {error.kind} error model of {output!r} cannot explain; "
                        "use an additive or combined error model, or correct the value", column="DV")
    if error is not None and error.kind == "exponential" and np.any(values == 0):
        first = np.flatnonzero(values == 0)[0]
        raise DataError(f"{who}: observation at {times[first]:g} h is 0, which an exponential error model cannot "
                        "explain; flag it BLQ with its quantification limit", column="DV")
    doses = subject.regimen.doses
    if doses:
        first_dose = min(dose.time for dose in doses)
        early = np.flatnonzero(times < first_dose)
        if early.size:
            raise DataError(f"{who}: observation at {times[early[0]]:g} h is before the first dose "
                            f"(at {first_dose:g} h)", column="TIME")
    return subject


_POSITIVE_ONLY = ("proportional", "exponential")
"""Residual error models whose likelihood is undefined for a negative observation."""


def plain(value: Any) -> str:
    """A subject ID as a user wrote it: 12, not np.int64(12); text quoted."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _list(ids) -> str:
    shown = ", ".join(map(str, list(ids)[:5]))
    return shown + (", ..." if len(ids) > 5 else "")

