"""NONMEM-style data tables: read, check and tidy them once, then take each subject's doses,
observations and covariates.

``read_nonmem`` accepts the usual NONMEM columns (any letter case): ID, TIME, DV, AMT, EVID, MDV, CMT,
RATE, DUR, ADDL, II, SS, OCC, BLQ (or CENS), LLOQ; every other column is a covariate and is kept.
Decisions, in the user's words:

- Missing is ``.`` (NONMEM), ``NA`` (R), an empty cell, or NaN/None in a DataFrame.
- EVID 0 is an observation, 1 a dose, 2 another event (kept, ignored by the fits), 3 a reset (the
  system returns to its initial state) and 4 a reset followed by a dose.  Without EVID, a row with
  AMT > 0 is a dose.  A dose row with AMT 0 is kept and reported with a :class:`DataWarning`.
- MDV defaults to 1 on every row that is not an observation and on rows without DV; an observation
  row with MDV 1 is kept but not used.
- CMT is a compartment number k (the model's k-th state, 1-based) or a state name; missing means the
  model's default (dose statement / first output).
- RATE > 0 makes a zero-order infusion of duration AMT/RATE; DUR gives the duration directly.  When both
  are given they must agree (AMT = RATE × DUR).  RATE -2 means the model gives the duration (``dose
  STATE duration=EXPR``): such rows keep RATE -2 and DUR missing.  RATE -1 (a rate modelled in
  NONMEM's $PK) is refused.
- SS 1 puts the system at the steady state of the dose repeated every II hours before the dose is
  given (the dose being the last of that series); SS 2 adds that steady state to the current state.
  SS 1 and 2 need II > 0.
- ADDL additional doses every II hours are expanded into plain dose rows (EVID 1, SS 0, II 0) that
  carry no covariate values: between the rows the data has, a covariate follows the interpolation
  rule.  At most :data:`ADDL_LIMIT` per row and :data:`ROW_LIMIT` rows in all.
- OCC (occasion), when present, is a whole number on every row.
- Each subject's rows must be together and in time order, as NONMEM requires; TIME may not go back
  after a reset (koopnb keeps one time axis per subject).
- Rows that repeat an earlier row exactly are kept and reported with a :class:`DataWarning`.

Every problem raises :class:`~koopnb.errors.DataError` in one sentence naming the 1-based data row
(counting data rows only: the header, comment and blank lines of a file are not counted; for a
DataFrame, the row position) and the column as the user spelled it.

A tidy table remembers that it is tidy (``table.attrs``, with a fingerprint of its content), so
reading it again costs one hash of its values instead of every check; a table changed in any way is
read again from scratch.  :func:`split_subjects` splits a table into subjects once, in time linear in
its rows; the ``subject_*`` helpers take one subject of a raw or tidy table.
"""


from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd

from koopnb.data.columns import (
    _RULE,
    _TIDY_MARK,
    ADDL_LIMIT,
    DOSE,
    INTERPOLATIONS,
    MODELLED_DURATION,
    OBSERVATION,
    OTHER,
    OUTPUT_COLUMNS,
    RESET,
    RESET_DOSE,
    ROW_LIMIT,
    DataWarning,
)
from koopnb.data.files import _load_raw
from koopnb.data.split import SubjectData, _Subjects
from koopnb.data.tidy import _Reader
from koopnb.errors import DataError
from koopnb.regimen import Regimen

__all__ = [
    "ADDL_LIMIT",
    "DOSE",
    "INTERPOLATIONS",
    "MODELLED_DURATION",
    "OBSERVATION",
    "OTHER",
    "OUTPUT_COLUMNS",
    "RESET",
    "RESET_DOSE",
    "ROW_LIMIT",
    "DataWarning",
    "SubjectData",
    "read_nonmem",
    "read_raw",
    "split_subjects",
    "subject_covariates",
    "subject_data",
    "subject_observations",
    "subject_regimen",
    "subjects",
]


def read_nonmem(
    source: str | os.PathLike | pd.DataFrame,
    columns: list[str] | None = None,
    covariate_interpolation: str | None = None,
) -> pd.DataFrame:
    """A tidy NONMEM-style table from a CSV file, a whitespace-separated file, or a DataFrame.

    Files: comma-separated when the name ends in ``.csv`` or the first line has a comma, else
    whitespace-separated; UTF-8 (a byte-order mark is ignored).  Lines whose first non-blank
    character is ``#`` or ``@`` are comments, skipped as NONMEM's IGNORE does, wherever they are.
    The header is the first line that is not a comment when one of its fields is TIME (any case).
    When instead the first such line is data, the last comment line before it is the header if
    one of its fields (after the ``#`` or ``@``) is TIME — so ``#ID TIME AMT DV`` names the columns.
    A file without any header needs ``columns=``: the column names in order, as in NONMEM's
    $INPUT (``NAME=DROP`` or ``DROP``/``SKIP`` leave a column out; ``CP=DV`` names a standard
    column).  ``columns=`` renames the columns of a DataFrame the same way.  A first column named C
    that holds only ``C`` and missing values is NONMEM's comment flag (IGNORE=C): rows with C in it
    are skipped and the column is dropped; row numbers in messages still count those rows.

    TIME is in hours.  A DataFrame column of durations (timedelta) is converted to hours; a column
    of dates and times (datetime) becomes hours since the subject's earliest TIME.  II and DUR may
    also be durations.  True/False columns are refused except as MDV, BLQ/CENS and covariates
    (where they mean 1/0).

    ``covariate_interpolation`` (``"nocb"`` or ``"locf"``) is how a covariate that changes within a
    subject holds between rows (see :data:`INTERPOLATIONS`); it is stored in
    ``table.attrs["covariate_interpolation"]`` for :func:`subject_covariates`.  ``None`` keeps the
    rule of a tidy table read again and is ``"nocb"`` (NONMEM's) otherwise.

    Returns a new DataFrame sorted by ID, TIME (resets and doses before other rows at equal times)
    with columns ID, TIME (h), AMT, DV, EVID, CMT, MDV, RATE (amount/h), DUR (h), then SS and II (h)
    if the source had either, then OCC, BLQ and LLOQ if the source had them, then the covariates
    under their own names.  ID is int64 when every ID is a whole number, text otherwise; CMT is a
    nullable integer column when every CMT is a number, text otherwise.  Reading a tidy table
    again gives the same table.
    """
    return _tidy(source, columns, covariate_interpolation).copy()


def read_raw(source: str | os.PathLike | pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """A NONMEM-style table as read, before any check: to cut it into subjects and read each with
    :func:`read_nonmem` (or a fit) on its own, so that a mistake in one subject's rows stops only that subject.

    Files are read as :func:`read_nonmem` reads them (comments, header, ``columns=``, the C column); a
    column is numbers where all its cells are numbers, text otherwise.  The index is the 1-based data row
    number of each row as :func:`read_nonmem`'s messages count it (rows commented out are counted).
    """
    raw = _load_raw(source, columns)
    return raw.table.set_index(pd.Index(raw.rows, name="row"))


def subjects(table: pd.DataFrame) -> list:
    """The subject IDs of a NONMEM-style table, in sorted order (plain Python ints or strings)."""
    return _Subjects(_tidy(table)).ids


def split_subjects(table: pd.DataFrame | str | os.PathLike,
                   covariate_interpolation: str | None = None) -> dict[Any, SubjectData]:
    """Every subject of a table, read and split once: ID -> :class:`SubjectData`, in ID order.

    The table is read with :func:`read_nonmem` (a tidy table is not checked again) and cut at its ID
    changes; the work is linear in the number of rows.  ``covariate_interpolation`` defaults to the
    table's own rule.
    """
    split = _Subjects(_tidy(table), covariate_interpolation)
    return {subject: split.subject(k) for k, subject in enumerate(split.ids)}


def subject_data(table: pd.DataFrame | str | os.PathLike, subject: Any = None,
                 covariate_interpolation: str | None = None) -> SubjectData:
    """One subject of a table as :class:`SubjectData`; ``subject=None`` when the table holds one."""
    split = _Subjects(_tidy(table), covariate_interpolation)
    return split.subject(split.position(subject))


def subject_regimen(table: pd.DataFrame, subject: Any = None) -> Regimen:
    """The doses (EVID 1 and 4 rows) and resets (EVID 3 and 4 rows) of one subject, as a
    :class:`Regimen` without a unit.

    ``subject=None`` is allowed when the table holds one subject.  A numeric CMT k becomes the dose
    compartment ``"k"`` (the model's k-th state, 1-based); a missing CMT becomes ``None`` (the
    model's default dosing compartment).  SS 1/2 rows become ``Dose(..., steady_state=1/2,
    interval=II)``; RATE -2 rows ``Dose(..., duration=None)`` (the model's duration).
    """
    split = _Subjects(_tidy(table))
    return split.regimen(split.position(subject))


def subject_observations(
    table: pd.DataFrame, subject: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, values, blq)`` of one subject's used observations (EVID 0, MDV 0), each ``(n_obs,)``.

    ``times`` in h, ``values`` the DV column (the LLOQ on BLQ rows), ``blq`` a boolean mask of rows
    below the limit of quantification (all False without a BLQ/CENS column).
    """
    split = _Subjects(_tidy(table))
    return split.observations(split.position(subject))


def subject_covariates(
    table: pd.DataFrame, subject: Any = None, covariate_interpolation: str | None = None
) -> dict[str, Any] | pd.DataFrame:
    """The covariates of one subject: a dict when each is constant within the subject, else a history.

    A missing value is filled by the rule: under ``"nocb"`` from the subject's next row that has a
    value (the last value after the last one), under ``"locf"`` from the previous row that has one
    (the first value before the first one).  A covariate the subject has no value for is left out.
    When every covariate then has one value, the result is ``{name: value}`` (floats for numbers,
    text otherwise).  Otherwise it is a DataFrame history: TIME (h) and one column per covariate,
    one row per change, read by the rule (``"nocb"``: the value on row k holds on (t_{k-1}, t_k];
    ``"locf"``: on [t_k, t_{k+1}); the first row's value before the first row and the last row's
    after the last).  ``covariate_interpolation=None`` uses the rule the table was read with; the
    history carries its rule in ``history.attrs["covariate_interpolation"]``, so ``Model.simulate``
    and the other functions that take it read it by the same rule.
    """
    tidy = _tidy(table)
    split = _Subjects(tidy, covariate_interpolation)
    return split.covariates(split.position(subject))


def _tidy(source, columns: list[str] | None = None, rule: str | None = None) -> pd.DataFrame:
    """The tidy table itself (not a copy) when ``source`` is an intact tidy table, else read anew."""
    if rule is not None and rule not in INTERPOLATIONS:
        raise DataError(f"covariate_interpolation must be 'nocb' or 'locf', not {rule!r}")
    if isinstance(source, pd.DataFrame) and columns is None and _is_tidy(source):
        if rule is None or rule == source.attrs.get(_RULE):
            return source
        table = source.copy()
        table.attrs[_RULE] = rule
        return table
    table = _Reader(_load_raw(source, columns)).tidy()
    table.attrs[_RULE] = rule or (source.attrs.get(_RULE) if isinstance(source, pd.DataFrame) else None) or "nocb"
    table.attrs[_TIDY_MARK] = _fingerprint(table)
    return table


def _fingerprint(table: pd.DataFrame) -> tuple:
    """Column names, types, length and a hash of every value in order: what makes a table the same."""
    rows = pd.util.hash_pandas_object(table, index=False).to_numpy()
    digest = hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest()
    return tuple(table.columns), tuple(str(dtype) for dtype in table.dtypes), len(table), digest


def _is_tidy(table: pd.DataFrame) -> bool:
    mark = table.attrs.get(_TIDY_MARK)
    index = table.index
    if not (isinstance(mark, tuple) and isinstance(index, pd.RangeIndex) and index.start == 0
            and index.step == 1 and len(table) == mark[2]):
        return False
    if tuple(table.columns) != mark[0] or tuple(str(dtype) for dtype in table.dtypes) != mark[1]:
        return False
    return _fingerprint(table) == mark
