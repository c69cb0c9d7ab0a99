"""A patient's data as the fits use it: doses, observations, covariates — checked, in plain words.

Observations are of one output of the model (its default output unless ``output=`` says otherwise);
the CMT column of observation rows is not used to choose it.  Observation rows flagged BLQ (or CENS)
hold the quantification limit in DV and enter the likelihood as "below the limit" (M3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from koopnb.covariates import RULES, CovariateHistory
from koopnb.data import SubjectData, read_nonmem, split_subjects, subject_data
from koopnb.errors import DataError, FitError
from koopnb.regimen import Regimen


@dataclass(frozen=True)
class Occasions:
    """The occasions of one subject (inter-occasion variability): ``labels`` (K,) as the data name them
    (the OCC column, or 1..K for ``occasions="dose"``), ``starts`` (K,) the time (h) each begins (the first
    one holds from time 0), ``of_observations`` (n_obs,) the 0-based occasion of each observation."""

    labels: np.ndarray
    starts: np.ndarray
    of_observations: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Subject:
    """One patient: ``times`` (h), ``values`` (observations, or the limit where ``below``), covariates.

    ``covariates`` is a dict of constants, or — when one changes within the subject — a DataFrame history
    (TIME and one column per model covariate) read with ``covariate_interpolation`` (``"nocb"`` or
    ``"locf"``).  ``occasions`` is None for a subject observed on a single occasion.
    """

    id: Any
    regimen: Regimen
    times: np.ndarray
    values: np.ndarray
    below: np.ndarray
    covariates: dict[str, float] | pd.DataFrame = field(default_factory=dict)
    covariate_interpolation: str = "nocb"
    occasions: Occasions | None = None

    @property
    def changes_with_time(self) -> bool:
        """True when the model's arguments or state change at times other than doses (a covariate history,
        several occasions, a reset, a steady-state dose): then the subject is solved piece by piece."""
        doses = self.regimen.doses
        return (isinstance(self.covariates, pd.DataFrame) or (self.occasions is not None and len(self.occasions) > 1)
                or bool(self.regimen.resets) or any(d.steady_state or d.duration is None for d in doses))


def one_subject(model, data, regimen: Regimen | None, covariates, subject: Any, output: str, *,
                covariate_interpolation: str | None = None, occasions: str | None = None) -> Subject:
    """The patient of ``fit_individual``: a NONMEM-style table or ``(times, values[, below])``."""
    rule = _rule(covariate_interpolation)
    if isinstance(data, (pd.DataFrame, str)) or hasattr(data, "__fspath__"):
        table = read_nonmem(data)
        ids = table["ID"].unique()
        if subject is None and len(ids) > 1:
            raise FitError(f"the table holds {len(ids)} subjects ({_list(ids)}); choose one with subject=ID, "
                           "or use fit_population")
        found = _from_table(model, table, ids[0] if subject is None else subject, covariates, output, rule,
                            occasions)
        if regimen is not None:
            if len(found.regimen):
                raise FitError("the table has dose rows and regimen= was given too; give the doses in one place")
            found = replace(found, regimen=regimen, occasions=_occasions(model, None, occasions, regimen,
                                                                         found.times, found.id))
        return _checked(model, found, output)
    if regimen is None:
        raise FitError("data given as (times, values) needs the doses: pass regimen=")
    times, values, below = _arrays(data)
    chosen = _covariates(model, {}, covariates, "the patient", rule)
    found = Subject(subject, regimen, times, values, below, chosen, rule,
                    _occasions(model, None, occasions, regimen, times, subject))
    return _checked(model, found, output)


def all_subjects(model, data, covariates, output: str, *, covariate_interpolation: str | None = None,
                 occasions: str | None = None) -> list[Subject]:
    """Every subject of a NONMEM-style table, checked, in ID order."""
    table = read_nonmem(data)
    rule = _rule(covariate_interpolation)
    if covariates is not None:
        names = [c for c in covariates.columns if c != "TIME"] if isinstance(covariates, pd.DataFrame) \
            else list(covariates)
        unknown = [name for name in names if name not in model.covariates]
        if unknown:
            raise FitError(_unknown_covariate(unknown[0], model))
    found = [_checked(model, _from_piece(model, piece, covariates, output, rule, occasions), output)
             for piece in split_subjects(table, covariate_interpolation=rule).values()]
    if not found:
        raise FitError("the table holds no subjects")
    return found


def _from_table(model, table: pd.DataFrame, subject: Any, covariates, output: str, rule: str,
                occasions: str | None) -> Subject:
    return _from_piece(model, subject_data(table, subject, covariate_interpolation=rule), covariates, output, rule,
                       occasions)


def _from_piece(model, piece: SubjectData, covariates, output: str, rule: str, occasions: str | None) -> Subject:
    """A subject from its piece of the tidy table (split once: no per-subject pass over the whole table)."""
    chosen = _covariates(model, piece.covariates, covariates, f"subject {plain(piece.id)}", rule)
    rows = piece.rows if piece.occasions is not None and occasions is None and iov_of(model) else None
    return Subject(piece.id, piece.regimen, piece.times, piece.values, piece.blq, chosen, rule,
                   _occasions(model, rows, occasions, piece.regimen, piece.times, piece.id))


def _rule(covariate_interpolation: str | None) -> str:
    rule = "nocb" if covariate_interpolation is None else covariate_interpolation
    if rule not in RULES:
        raise FitError(f"covariate_interpolation must be 'nocb' (next observation carried backward, NONMEM's rule) "
                       f"or 'locf' (last observation carried forward), not {covariate_interpolation!r}")
    return rule


def _occasions(model, rows: pd.DataFrame | None, occasions: str | None, regimen: Regimen, times: np.ndarray,
               subject: Any) -> Occasions | None:
    """The subject's occasions when the model has inter-occasion variability: from the OCC column, or a new
    occasion at each dose time with ``occasions="dose"``; one occasion otherwise."""
    if occasions not in (None, "dose"):
        raise FitError(f"occasions must be None (the OCC column of the data, if any) or 'dose' (a new occasion at "
                       f"each dose), not {occasions!r}")
    if not iov_of(model):
        if occasions == "dose":
            raise FitError("occasions='dose' asks for occasions, but the model has no inter-occasion variability "
                           "(write e.g. 'CL = 2.8 ~ 27% iov 12%')")
        return None
    who = f"subject {plain(subject)}" if subject is not None else "the patient"
    if occasions == "dose":
        starts = np.unique([dose.time for dose in regimen.doses])
        if starts.size == 0:
            raise FitError(f"{who} has no doses, so occasions='dose' gives no occasion")
        index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, None)
        return Occasions(np.arange(1, starts.size + 1), starts, index)
    if rows is None or "OCC" not in rows:
        return Occasions(np.array([1]), np.zeros(1), np.zeros(times.size, dtype=int))
    occ = pd.to_numeric(rows["OCC"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(occ) | (occ != np.round(occ))
    if bad.any():
        raise DataError(f"{who}: OCC at {rows['TIME'].iloc[int(np.flatnonzero(bad)[0])]:g} h is "
                        f"{_plain(rows['OCC'].iloc[int(np.flatnonzero(bad)[0])])}, not a whole number", column="OCC")
    if np.any(np.diff(occ) < 0):
        back = int(np.flatnonzero(np.diff(occ) < 0)[0]) + 1
        raise DataError(f"{who}: OCC goes back from {occ[back - 1]:g} to {occ[back]:g} at "
                        f"{rows['TIME'].iloc[back]:g} h; number occasions in time order", column="OCC")
    labels, first = np.unique(occ, return_index=True)
    starts = rows["TIME"].to_numpy(dtype=float)[first]
    used = ((rows["EVID"] == 0) & (rows["MDV"] == 0)).to_numpy()
    index = np.searchsorted(labels, occ[used])
    return Occasions(labels.astype(int), starts, index)


def kappa_name(parameter: str, occasion) -> str:
    """The sample name of a parameter's inter-occasion random effect on one occasion: ``kappa_CL_occ2``."""
    return f"kappa_{parameter}_occ{occasion}"


def iov_of(model) -> dict[str, float]:
    """The model's inter-occasion variability: parameter name -> SD of the log (kappa), IOV parameters only."""
    return dict(model.iov)


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


def _covariates(model, from_table, given, who: str, rule: str) -> dict[str, float] | pd.DataFrame:
    """The model's covariates for one patient: the argument wins over the table; every one must be known.

    Each source is a dict of constants or a DataFrame history (TIME and covariate columns).  The result is a
    dict when every covariate is constant, else a history of every model covariate on the union of times —
    nothing is reduced to one value.
    """
    histories: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if given is not None:
        names = [c for c in given.columns if c != "TIME"] if isinstance(given, pd.DataFrame) else list(given)
        unknown = [name for name in names if name not in model.covariates]
        if unknown:
            raise FitError(_unknown_covariate(unknown[0], model))
    for source in (from_table, given):  # the table's other columns (text ones too) are not the model's concern
        histories.update(_histories(source, who, tuple(model.covariates)))
    for name in model.covariates:
        if name not in histories:
            raise FitError(f"covariate {name!r} of the model has no value for {who}: add a {name} column to the "
                           f"data or pass covariates={{{name!r}: ...}}")
    varying = {name: history for name, history in histories.items() if np.any(history[1] != history[1][0])}
    if not varying:
        return {name: float(histories[name][1][0]) for name in model.covariates}
    grids = {tuple(times) for times, _ in varying.values()}
    # One grid (the usual case: every history from the same table rows) is kept row for row; histories on
    # different grids are read at the union of their times, which the same rule reads back unchanged.
    times = np.array(grids.pop()) if len(grids) == 1 else np.unique(np.concatenate([t for t, _ in varying.values()]))
    columns = {}
    for name in model.covariates:
        given_times, values = histories[name]
        if name in varying and np.array_equal(given_times, times):
            columns[name] = values
        else:
            columns[name] = CovariateHistory(pd.DataFrame({"TIME": given_times, name: values}), rule).at(times)[name]
    return pd.DataFrame({"TIME": times, **columns})


def _histories(source, who: str, names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (times (m,), values (m,)) of the covariates ``names`` in a dict of constants or a DataFrame
    history, checked."""
    if source is None:
        return {}
    if isinstance(source, pd.DataFrame):
        if "TIME" not in source.columns:
            raise DataError(f"the covariate history of {who} needs a TIME column (hours)", column="TIME")
        times = pd.to_numeric(source["TIME"], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
            raise DataError(f"the covariate history of {who} needs finite times in increasing order", column="TIME")
        items = [(name, source[name].to_numpy(), times) for name in source.columns if name in names]
    else:
        items = [(name, np.array([value], dtype=object), np.zeros(1)) for name, value in dict(source).items()
                 if name in names]
    found = {}
    for name, raw, times in items:
        try:
            values = np.asarray(raw, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"covariate {name!r} of {who} is {_plain(raw[0])}, not a number", column=name) from None
        bad = ~np.isfinite(values)
        if bad.any():
            at = f" at {times[int(np.flatnonzero(bad)[0])]:g} h" if len(times) > 1 else ""
            raise DataError(f"covariate {name!r} of {who} is not a finite number{at} "
                            f"({_plain(values[bad][0])})", column=name)
        found[name] = (times, values)
    return found


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
            raise DataError(f"{who}: {kind} {bad[0] + 1} is not a finite number ({_plain(array[bad[0]])})",
                            column=column)
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



def _plain(value) -> str:
    """A value as the user typed it: 4, 2.5, nan, 'abc' — never np.float64(nan)."""
    if isinstance(value, np.generic):
        value = value.item()
    return f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
