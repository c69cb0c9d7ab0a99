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
import io
import os
import re
import warnings
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from koopnb.errors import DataError
from koopnb.regimen import Dose, Regimen

_STANDARD = ("ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR", "ADDL", "II", "SS", "OCC")
_CENSORING = ("BLQ", "CENS", "LLOQ")
_FLAGS = ("MDV", "BLQ", "CENS")
"""Columns where True/False means 1/0; a bool column anywhere else is refused."""
OUTPUT_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR")
"""The standard columns every tidy table has, in order; SS and II follow when the source had either,
then OCC, BLQ and LLOQ when present, then the covariates."""

OBSERVATION, DOSE, OTHER, RESET, RESET_DOSE = 0, 1, 2, 3, 4
"""EVID codes koopnb understands."""
_DOSES = (DOSE, RESET_DOSE)
_RESETS = (RESET, RESET_DOSE)

MODELLED_DURATION = -2
"""RATE code of a dose whose infusion duration the model gives (NONMEM RATE=-2)."""

ADDL_LIMIT = 10_000
"""Most additional doses (ADDL) one row may ask for."""
ROW_LIMIT = 10_000_000
"""Most rows a table may have once its ADDL doses are expanded."""

INTERPOLATIONS = ("nocb", "locf")
"""Rules for a covariate between rows: ``"nocb"`` (NONMEM's: the value on row k holds on
(t_{k-1}, t_k]) and ``"locf"`` (the value on row k holds on [t_k, t_{k+1}))."""

_MISSING = ("", ".", "NA")
_TIDY_MARK = "koopnb_tidy"
_RULE = "covariate_interpolation"
_COMMENT = re.compile(r"^[ \t]*[#@]")


class DataWarning(UserWarning):
    """Data that is kept as given but is probably a mistake (a 0-mg dose, a row entered twice)."""


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
    column).  ``columns=`` renames the columns of a DataFrame the same way.

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


def subjects(table: pd.DataFrame) -> list:
    """The subject IDs of a NONMEM-style table, in sorted order (plain Python ints or strings)."""
    return _Subjects(_tidy(table)).ids


class SubjectData:
    """One subject of a tidy table, as the fits use it (made by :func:`split_subjects`).

    ``id`` (a plain int or str); ``regimen`` holds the doses (steady-state doses, modelled durations) and
    resets; ``times`` (h), ``values`` and ``blq`` are the used observations (EVID 0, MDV 0), each
    ``(n_obs,)``, ``values`` holding the limit on BLQ rows; ``covariates`` is a dict when every covariate
    is constant within the subject, else a DataFrame history (see :func:`subject_covariates`);
    ``occasions`` is the OCC of each used observation, ``(n_obs,)`` int64, or None without an OCC
    column; ``rows`` are the subject's rows of the tidy table.  The regimen and covariates are built
    when first asked for, from arrays prepared for the whole table at once.
    """

    def __init__(self, split: _Subjects, k: int):
        self._split = split
        self._k = k
        self.id = split.ids[k]

    def __repr__(self) -> str:
        return f"SubjectData(id={self.id!r}, observations={self.times.size}, doses={len(self.regimen.doses)})"

    @cached_property
    def regimen(self) -> Regimen:
        return self._split.regimen(self._k)

    @cached_property
    def covariates(self) -> dict[str, Any] | pd.DataFrame:
        return self._split.covariates(self._k)

    @property
    def times(self) -> np.ndarray:
        return self._split.observations(self._k)[0]

    @property
    def values(self) -> np.ndarray:
        return self._split.observations(self._k)[1]

    @property
    def blq(self) -> np.ndarray:
        return self._split.observations(self._k)[2]

    @property
    def occasions(self) -> np.ndarray | None:
        return self._split.occasions(self._k)

    @property
    def rows(self) -> pd.DataFrame:
        """The subject's rows of the tidy table (a new DataFrame, index from 0)."""
        bounds = self._split.bounds
        return self._split.tidy.iloc[bounds[self._k]: bounds[self._k + 1]].reset_index(drop=True)


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
    after the last).  ``covariate_interpolation=None`` uses the rule the table was read with.
    """
    tidy = _tidy(table)
    split = _Subjects(tidy, covariate_interpolation)
    return split.covariates(split.position(subject))


# --- reading -----------------------------------------------------------------------------------------


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
    table = _Reader(*_load_with_text(source, columns)).tidy()
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


def _load(source, columns: list[str] | None) -> pd.DataFrame:
    """The raw table, numbers parsed where a whole column is numbers (koopnb.scale cuts it by subject)."""
    return _load_with_text(source, columns)[0]


def _load_with_text(source, columns: list[str] | None) -> tuple[pd.DataFrame, Callable[[int, Any], str] | None]:
    """The raw table and, for a file, a function giving the text of a cell (data row, column) as the file
    has it, for messages."""
    names = _input_names(columns) if columns is not None else None
    cell = None
    if isinstance(source, pd.DataFrame):
        table = source.reset_index(drop=True)
        if names is not None:
            if len(names) != table.shape[1]:
                raise DataError(f"columns= names {len(names)} columns but the DataFrame has {table.shape[1]}")
            table = _named(table, names)
    elif isinstance(source, (str, os.PathLike)):
        table, cell = _read_file(os.fspath(source), names)
    else:
        raise DataError(f"data must be a file path or a pandas DataFrame, not {type(source).__name__}")
    if table.empty:
        raise DataError("the table has no rows")
    return table, cell


def _input_names(columns) -> list[str | None]:
    """Column names from NONMEM $INPUT-style entries; None for a dropped column."""
    if isinstance(columns, str) or not all(isinstance(name, str) for name in columns):
        raise DataError("columns= must be a list of column names (text), as in NONMEM's $INPUT")
    names: list[str | None] = []
    for entry in columns:
        parts = [part.strip() for part in entry.split("=")]
        if len(parts) == 1 and parts[0].upper() in ("DROP", "SKIP"):
            names.append(None)
            continue
        if len(parts) == 2 and parts[1].upper() in ("DROP", "SKIP"):
            names.append(None)
            continue
        standard = [part for part in parts if part.upper() in (*_STANDARD, *_CENSORING)]
        if len(parts) > 2 or not all(parts) or (len(parts) == 2 and len(standard) != 1):
            raise DataError(f"columns= entry {entry!r} is not a column name, NAME=DROP, or LABEL=STANDARD "
                            "such as CP=DV")
        names.append(standard[0] if standard else parts[0])
    return names


def _read_file(path: str, names: list[str | None] | None) -> tuple[pd.DataFrame, Callable[[int, Any], str] | None]:
    if os.path.isdir(path):
        raise DataError(f"{path!r} is a directory, not a data file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(f"there is no data file {path!r}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path!r} is not UTF-8 text") from None
    except OSError as error:
        raise DataError(f"{path!r} cannot be read ({error.strerror})") from None
    lines = text.splitlines()
    commented = _COMMENT.search(text) is not None and any(_COMMENT.match(line) for line in lines)
    first = next((i for i, line in enumerate(lines) if line.strip() and not _COMMENT.match(line)), None)
    if first is None:
        raise DataError(f"{path!r} is not a readable table (it has no data lines)")
    comma = path.lower().endswith(".csv") or "," in lines[first]

    def fields(line: str) -> list[str]:
        return [cell.strip() for cell in line.split(",")] if comma else line.split()

    def names_time(cells: list[str]) -> bool:
        return any(cell.upper() == "TIME" for cell in cells)

    header = None
    if names_time(fields(lines[first])):
        if names is not None:
            raise DataError(f"line {first + 1} of {path!r} is a header naming the columns and columns= names "
                            "them too; give the names in one place")
        header, body = fields(lines[first]), lines[first + 1:]
    else:
        body = lines[first:]
        if names is None:
            before = [line for line in lines[:first] if line.strip()]
            if before and names_time(fields(_COMMENT.sub("", before[-1], count=1))):
                header = fields(_COMMENT.sub("", before[-1], count=1))
            else:
                raise DataError("the table needs a TIME column (hours), and no header line names one; a file "
                                "without a header needs columns=[...] (NONMEM's $INPUT names)", column="TIME")
    if commented:
        body = [line for line in body if not _COMMENT.match(line)]
    labels = header if header is not None else names
    body = [line for line in body if line.strip()]
    text = "\n".join(body)
    try:
        table = pd.read_csv(io.StringIO(text), sep="," if comma else r"\s+", header=None,
                            names=list(range(len(labels))), index_col=False, na_values=list(_MISSING),
                            keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as error:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if found:
            expected, row, saw = found.groups()
            raise DataError(f"the row has {saw} fields but the header names {expected} columns", row=int(row)) from None
        raise DataError(f"{path!r} is not a readable table ({error})") from None
    except pd.errors.EmptyDataError:
        raise DataError("the table has no rows") from None
    if len(body) != len(table):  # a quoted field spanning lines: pandas read it whole, the line view is off
        cell = None
    else:
        def cell(row: int, column: Any) -> str:
            cells = fields(body[row])
            return cells[position[column]] if position[column] < len(cells) else ""

        position = {label: k for k, label in enumerate(labels) if label is not None}
        found = text.count(",") + len(body) if comma else len(text.split())
        if found < len(body) * len(labels):  # more fields than columns already stopped pandas
            count = (lambda line: line.count(",") + 1) if comma else (lambda line: len(line.split()))
            row = next(k for k, line in enumerate(body) if count(line) < len(labels))
            raise DataError(f"the row has {count(body[row])} fields but the header names {len(labels)} columns",
                            row=row + 1)
    if header is not None:
        table.columns = header  # names may repeat: the reader reports it
        return table, cell
    return _named(table, names), cell


def _named(table: pd.DataFrame, names: list[str | None]) -> pd.DataFrame:
    """The columns named by position; a column named None (DROP) is left out."""
    kept = [k for k, name in enumerate(names) if name is not None]
    return table.iloc[:, kept].set_axis([names[k] for k in kept], axis=1)


def _stripped(column: pd.Series) -> pd.Series:
    """Text cells without surrounding blanks; other cells as they are."""
    if isinstance(column.dtype, pd.StringDtype):
        return column.str.strip()
    if column.dtype == object:
        return column.map(lambda cell: cell.strip() if isinstance(cell, str) else cell)
    return column


def _shown(value: Any) -> str:
    """A cell as a user reads it: text in quotes, numbers plain (never ``np.int64(4)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value.strip()) if isinstance(value, str) else str(value)


class _Reader:
    """Checks one raw table column by column and assembles the tidy table."""

    def __init__(self, raw: pd.DataFrame, cell: Callable[[int, Any], str] | None = None):
        self.raw = raw
        self._text = cell
        self.n = len(raw)
        self.names: dict[str, Any] = {}  # upper-case column name -> the user's spelling
        self.covariates: list[Any] = []
        self._missing: dict[str, np.ndarray] = {}
        self._values: dict[str, np.ndarray] = {}
        for column in raw.columns:
            key = str(column).strip().upper()
            if key in self.names:
                raise DataError(f"two columns are named {key} (ignoring case)", column=str(column))
            if key not in _STANDARD and key not in _CENSORING:
                self.covariates.append(column)
            self.names[key] = column
        if "TIME" not in self.names:
            raise DataError("the table needs a TIME column (hours)", column="TIME")
        if "DV" not in self.names and "AMT" not in self.names:
            raise DataError(
                "the table needs a DV column (observations) or an AMT column (doses)", column="DV"
            )
        if "BLQ" in self.names and "CENS" in self.names:
            raise DataError("give BLQ or CENS, not both", column=str(self.names["CENS"]))

    # --- column access ---------------------------------------------------------------------------

    def fail(self, message: str, key: str, mask: np.ndarray) -> DataError:
        """A DataError at the first row where ``mask`` is True, in column ``key``."""
        row = int(np.flatnonzero(mask)[0])
        return DataError(message.format(value=_shown(self._cell(key, row))), row=row + 1,
                         column=str(self.names[key]))

    def warn(self, message: str, key: str, mask: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        more = f" ({len(rows) - 1} more such rows)" if len(rows) > 1 else ""
        text = message.format(value=_shown(self._cell(key, int(rows[0]))))
        warnings.warn(f"row {rows[0] + 1}, column {str(self.names[key])!r}: {text}{more}", DataWarning, stacklevel=4)

    def _cell(self, key: str, row: int) -> Any:
        """The cell as the user wrote it: the file's text, or the DataFrame's value."""
        if self._text is not None:
            return self._text(row, self.names[key])
        return self.raw[self.names[key]].iloc[row]

    def missing(self, key: str) -> np.ndarray:
        """True where the column is absent, empty, '.', 'NA', NaN or None."""
        if key not in self.names:
            return np.ones(self.n, dtype=bool)
        if key not in self._missing:
            column = self.raw[self.names[key]]
            gone = column.isna().to_numpy(dtype=bool, copy=True)
            if isinstance(column.dtype, pd.StringDtype) or column.dtype == object:
                gone |= _stripped(column).isin(_MISSING).to_numpy(dtype=bool)
            self._missing[key] = gone
        return self._missing[key]

    def _kind_check(self, key: str, column: pd.Series) -> None:
        """Refuse bool, date and duration columns where a number is meant."""
        given = ~self.missing(key)
        if pd.api.types.is_bool_dtype(column) or (
            column.dtype == object and column[given].map(lambda cell: isinstance(cell, (bool, np.bool_))).any()
        ):
            if key not in _FLAGS and key not in self._covariate_keys:
                raise self.fail(f"{key} holds True/False values, not numbers (first: {{value}})", key, given)
        elif pd.api.types.is_datetime64_any_dtype(column):
            raise self.fail(f"{key} holds dates and times, not numbers (first: {{value}})", key, given)
        elif pd.api.types.is_timedelta64_dtype(column) and key not in ("II", "DUR"):
            raise self.fail(f"{key} holds durations, not numbers (first: {{value}})", key, given)

    @cached_property
    def _covariate_keys(self) -> set[str]:
        return {str(name).strip().upper() for name in self.covariates}

    def numbers(self, key: str, default: float = np.nan) -> np.ndarray:
        """The column as floats, ``default`` where missing; a DataError at the first non-number."""
        if key not in self.names:
            return np.full(self.n, default)
        if key not in self._values:
            column = self.raw[self.names[key]]
            self._kind_check(key, column)
            missing = self.missing(key)
            if pd.api.types.is_timedelta64_dtype(column):
                values = (column / pd.Timedelta(hours=1)).to_numpy(dtype=float, na_value=np.nan)
            elif pd.api.types.is_bool_dtype(column):
                values = column.astype(float).to_numpy()
            elif pd.api.types.is_numeric_dtype(column):
                values = column.to_numpy(dtype=float, na_value=np.nan)
            else:
                text = column.where(~missing, None)
                if column.dtype == object:
                    text = text.map(lambda cell: float(cell) if isinstance(cell, (bool, np.bool_)) else cell)
                values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                bad = np.isnan(values) & ~missing
                if bad.any():
                    raise self.fail("{value} is not a number", key, bad)
            self._values[key] = np.where(missing, np.nan, values)
        values = self._values[key]
        return values if np.isnan(default) else np.where(np.isnan(values), default, values)

    def codes(self, key: str, allowed: tuple[int, ...], default: np.ndarray) -> np.ndarray:
        """An integer code column restricted to ``allowed``, ``default`` where missing."""
        values = self.numbers(key)
        given = ~np.isnan(values)
        bad = given & ~np.isin(values, allowed)
        if bad.any():
            choices = ", ".join(map(str, allowed))
            raise self.fail(f"{{value}} is not a valid {key} (use {choices})", key, bad)
        return np.where(given, values, default).astype(np.int64)

    def non_negative(self, key: str, default: float, allowed: tuple[float, ...] = ()) -> np.ndarray:
        values = self.numbers(key, default)
        bad = ~np.isnan(values) & ((values < 0) | ~np.isfinite(values)) & ~np.isin(values, allowed)
        if bad.any():
            raise self.fail(f"{key} must be a finite number >= 0, not {{value}}", key, bad)
        return values

    # --- the checks, in dependency order ---------------------------------------------------------

    def tidy(self) -> pd.DataFrame:
        ids = self.subject_ids()
        amount = self.non_negative("AMT", np.nan)
        evid = self.events(amount)
        time = self.times(ids, evid)
        dose = np.isin(evid, _DOSES)
        amount = np.where(dose, amount, 0.0)
        dv, blq, lloq = self.observations(evid)
        mdv = self.codes("MDV", (0, 1), np.where((evid != OBSERVATION) | np.isnan(dv), 1, 0))
        if (bad := (evid != OBSERVATION) & (mdv == 0)).any():
            raise self.fail("a row that is not an observation (EVID 1 to 4) must have MDV 1, not {value}",
                            "MDV", bad)
        if (bad := (evid == OBSERVATION) & (mdv == 0) & ~np.isfinite(dv)).any():
            key = "DV" if "DV" in self.names else "MDV"
            raise self.fail("an observation row (EVID 0, MDV 0) needs a finite DV, not {value}", key, bad)
        steady, interval = self.steady_state(evid)
        rate, duration = self.infusions(dose, amount, steady)
        self.check_doses(dose, amount, steady)
        extra = self.additional_doses(evid, interval)

        columns = {
            "ID": ids,
            "TIME": time,
            "AMT": amount,
            "DV": np.where(evid == OBSERVATION, dv, np.nan),
            "EVID": evid,
            "CMT": self.compartments(),
            "MDV": mdv,
            "RATE": rate,
            "DUR": duration,
        }
        if "SS" in self.names or "II" in self.names:
            columns["SS"] = steady
            columns["II"] = interval
        if "OCC" in self.names:
            columns["OCC"] = self.occasions()
        if blq is not None:
            columns["BLQ"] = blq
        if lloq is not None:
            columns["LLOQ"] = lloq
        for name in self.covariates:
            columns[str(name)] = self.covariate(name)
        table = pd.DataFrame(columns)
        self.warn_duplicates(table)
        return _expand_and_sort(table, extra, np.where(extra > 0, interval, 0.0), [str(c) for c in self.covariates])

    def subject_ids(self) -> np.ndarray:
        if "ID" not in self.names:
            return np.ones(self.n, dtype=np.int64)
        missing = self.missing("ID")
        if missing.any():
            raise self.fail("every row needs an ID, not {value}", "ID", missing)
        column = self.raw[self.names["ID"]]
        if pd.api.types.is_bool_dtype(column):
            raise self.fail("ID holds True/False values, not subject IDs (first: {value})", "ID", ~missing)
        numbers = pd.to_numeric(_stripped(column), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if np.all(np.isfinite(numbers) & (numbers == np.round(numbers))):
            ids = numbers.astype(np.int64)
        else:
            ids = _stripped(column.astype(str)).to_numpy(dtype=object)
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        codes, _ = pd.factorize(ids[starts])
        if len(np.unique(codes)) != len(codes):
            repeated = pd.Series(codes).duplicated().to_numpy()
            position = starts[np.flatnonzero(repeated)[0]]
            raise self.fail(
                "subject {value} appears again after other subjects; keep each subject's rows together",
                "ID",
                np.arange(self.n) == position,
            )
        return ids

    def times(self, ids: np.ndarray, evid: np.ndarray) -> np.ndarray:
        column = self.raw[self.names["TIME"]]
        if pd.api.types.is_datetime64_any_dtype(column):
            if (bad := column.isna().to_numpy()).any():
                raise self.fail("every row needs a TIME, not {value}", "TIME", bad)
            first = column.groupby(ids, sort=False).transform("min")
            time = ((column - first) / pd.Timedelta(hours=1)).to_numpy(dtype=float)
        elif pd.api.types.is_timedelta64_dtype(column):
            time = (column / pd.Timedelta(hours=1)).to_numpy(dtype=float, na_value=np.nan)
        else:
            time = self.numbers("TIME")
        if (bad := np.isnan(time)).any():
            raise self.fail("every row needs a TIME, not {value}", "TIME", bad)
        if (bad := ~np.isfinite(time) | (time < 0)).any():
            raise self.fail("TIME must be a finite number of hours >= 0, not {value}", "TIME", bad)
        earlier = np.concatenate(([False], (time[1:] < time[:-1]) & (ids[1:] == ids[:-1])))
        if (bad := earlier & np.isin(evid, _RESETS)).any() and np.flatnonzero(bad)[0] == np.flatnonzero(earlier)[0]:
            raise self.fail(
                "TIME {value} goes back at a reset; koopnb keeps one time axis per subject, so count the "
                "time on from the rows before (or give the rows after the reset a new ID)",
                "TIME",
                bad,
            )
        if earlier.any():
            raise self.fail(
                "TIME {value} is earlier than the row before for the same subject; sort each subject's "
                "rows by time",
                "TIME",
                earlier,
            )
        if (evid == RESET).any() or (evid == RESET_DOSE).any():
            self._check_reset_order(ids, time, evid)
        return time

    def _check_reset_order(self, ids: np.ndarray, time: np.ndarray, evid: np.ndarray) -> None:
        """A reset must come before the doses given at its own time (the Regimen applies it first)."""
        dose = pd.Series(np.isin(evid, _DOSES).astype(np.int64))
        doses_before = dose.groupby([ids, time], sort=False).cumsum().to_numpy() - dose.to_numpy()
        if (bad := np.isin(evid, _RESETS) & (doses_before > 0)).any():
            raise self.fail(
                "the reset (EVID {value}) follows a dose at the same TIME; a reset comes before the doses "
                "given at its time, so put it first",
                "EVID",
                bad,
            )

    def events(self, amount: np.ndarray) -> np.ndarray:
        default = np.where(amount > 0, DOSE, OBSERVATION)
        evid = self.codes("EVID", (OBSERVATION, DOSE, OTHER, RESET, RESET_DOSE), default)
        if (bad := np.isin(evid, _DOSES) & np.isnan(amount)).any():
            key = "AMT" if "AMT" in self.names else "EVID"
            raise self.fail("a dose row (EVID 1 or 4) needs an AMT, not {value}", key, bad)
        if (bad := (evid == OBSERVATION) & (amount > 0)).any():
            raise self.fail(
                "an observation row (EVID 0) cannot have AMT {value}; a dose row needs EVID 1", "AMT", bad
            )
        if (bad := np.isin(evid, (OTHER, RESET)) & (amount > 0)).any():
            raise self.fail(
                "a row with EVID 2 or 3 cannot have AMT {value}; a dose row needs EVID 1 (or 4 to reset "
                "and dose)",
                "AMT",
                bad,
            )
        return evid

    def observations(self, evid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """DV, the BLQ flags (None without BLQ/CENS) and LLOQ (None without LLOQ)."""
        dv = self.numbers("DV")
        lloq = self.non_negative("LLOQ", np.nan) if "LLOQ" in self.names else None
        flag = "BLQ" if "BLQ" in self.names else "CENS" if "CENS" in self.names else None
        if flag is None:
            return dv, None, lloq
        blq = self.codes(flag, (0, 1), np.zeros(self.n, dtype=np.int64))
        if (bad := (blq == 1) & (evid != OBSERVATION)).any():
            raise self.fail(f"{flag} {{value}} is only for observation rows (EVID 0)", flag, bad)
        if lloq is not None:
            dv = np.where((blq == 1) & np.isnan(dv), lloq, dv)
        if (bad := (blq == 1) & ~np.isfinite(dv)).any():
            key = "DV" if "DV" in self.names else flag
            raise self.fail(
                f"a {flag} row needs the quantification limit in DV or LLOQ, not {{value}}", key, bad
            )
        return dv, blq, lloq

    def steady_state(self, evid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SS (0, 1, 2) and II (h, 0 where missing) per row."""
        steady = self.codes("SS", (0, 1, 2), np.zeros(self.n, dtype=np.int64))
        if (bad := (steady != 0) & ~np.isin(evid, _DOSES)).any():
            raise self.fail("SS {value} is only for dose rows (EVID 1 or 4)", "SS", bad)
        interval = self.non_negative("II", 0.0)
        if (bad := (steady != 0) & ~(interval > 0)).any():
            key = "II" if "II" in self.names else "SS"
            raise self.fail("a steady-state dose (SS 1 or 2) needs the dosing interval II > 0 h, not {value}",
                            key, bad)
        return steady, interval

    def infusions(self, dose: np.ndarray, amount: np.ndarray, steady: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RATE (amount/h, or -2) and DUR (h, NaN for RATE -2) of each dose row; 0 elsewhere."""
        raw_rate = self.numbers("RATE", 0.0)
        if (bad := dose & (raw_rate == -1)).any():
            raise self.fail(
                "RATE {value} (a rate modelled in NONMEM's $PK) is not supported; give RATE or DUR in the "
                "data, or RATE -2 with the duration in the model (dose STATE duration=EXPR)",
                "RATE",
                bad,
            )
        rate = self.non_negative("RATE", 0.0, allowed=(MODELLED_DURATION, -1))
        duration = self.non_negative("DUR", 0.0)
        modelled = dose & (rate == MODELLED_DURATION)
        if (bad := modelled & (duration > 0)).any():
            raise self.fail("RATE -2 means the model gives the infusion duration, so DUR must be empty, not "
                            "{value}", "DUR", bad)
        if (bad := dose & (amount == 0) & (steady != 0) & (rate > 0)).any():
            raise self.fail("a steady-state constant infusion (SS with AMT 0 and RATE {value}) is not "
                            "supported; give the infusion as doses with an amount and a duration", "RATE", bad)
        both = dose & (rate > 0) & (duration > 0)
        if (bad := both & ~np.isclose(rate * duration, amount, rtol=1e-9, atol=0.0)).any():
            raise self.fail(
                "RATE {value} and DUR disagree (AMT must equal RATE × DUR); give only one of them",
                "RATE",
                bad,
            )
        # Fill only the missing one of the pair, so that a tidy table reads back unchanged.
        with np.errstate(divide="ignore", invalid="ignore"):
            from_rate = dose & (rate > 0) & (duration == 0)
            from_duration = dose & (duration > 0) & (rate == 0)
            duration = np.where(from_rate, amount / rate, duration)
            rate = np.where(from_duration, amount / duration, rate)
        interval = self.numbers("II", 0.0)
        if (bad := dose & (steady != 0) & (duration > interval)).any():
            row = np.flatnonzero(bad)[0]
            raise self.fail(f"a steady-state infusion of {duration[row]:g} h repeated every II {interval[row]:g} h "
                            "would overlap itself; the duration must be <= II",
                            "DUR" if "DUR" in self.names else "RATE", bad)
        duration = np.where(modelled, np.nan, duration)
        return np.where(dose, rate, 0.0), np.where(dose, duration, 0.0)

    def check_doses(self, dose: np.ndarray, amount: np.ndarray, steady: np.ndarray) -> None:
        """A 0-mg dose is kept (it changes nothing) but almost always a slip: say so."""
        if (zero := dose & (amount == 0)).any():
            key = "AMT" if "AMT" in self.names else "EVID"
            self.warn("a dose row (EVID 1 or 4) with AMT {value} gives no drug; it is kept as a dose of 0", key, zero)

    def additional_doses(self, evid: np.ndarray, interval: np.ndarray) -> np.ndarray:
        """ADDL (whole number of extra doses) per row; 0 where not used."""
        extra = self.non_negative("ADDL", 0.0)
        if (bad := extra != np.round(extra)).any():
            raise self.fail("ADDL must be a whole number of additional doses, not {value}", "ADDL", bad)
        if (bad := extra > ADDL_LIMIT).any():
            raise self.fail(f"ADDL {{value}} is more than the limit of {ADDL_LIMIT:,} additional doses per row",
                            "ADDL", bad)
        if (bad := (extra > 0) & ~np.isin(evid, _DOSES)).any():
            raise self.fail("ADDL {value} is only for dose rows (EVID 1 or 4)", "ADDL", bad)
        if (bad := (extra > 0) & ~(interval > 0)).any():
            key = "II" if "II" in self.names else "ADDL"
            raise self.fail("ADDL doses need an interval II > 0 h, not {value}", key, bad)
        total = self.n + int(extra.sum())
        if total > ROW_LIMIT:
            raise DataError(f"the ADDL doses would make the table {total:,} rows long, more than the limit of "
                            f"{ROW_LIMIT:,}", column=str(self.names["ADDL"]))
        return extra.astype(np.int64)

    def occasions(self) -> np.ndarray:
        values = self.numbers("OCC")
        if (bad := np.isnan(values)).any():
            raise self.fail("every row needs an OCC (occasion number) when the table has an OCC column, not "
                            "{value}", "OCC", bad)
        if (bad := ~np.isfinite(values) | (values != np.round(values))).any():
            raise self.fail("OCC must be a whole number (the occasion), not {value}", "OCC", bad)
        return values.astype(np.int64)

    def compartments(self) -> pd.Series:
        """CMT as nullable integers, or as text when some rows name a state."""
        if "CMT" not in self.names:
            return pd.Series(pd.array([pd.NA] * self.n, dtype="Int64"))
        column = self.raw[self.names["CMT"]]
        missing = self.missing("CMT")
        self._kind_check("CMT", column)
        text = _stripped(column)
        numbers = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        named = ~missing & np.isnan(numbers)
        if (bad := ~missing & ~named & ((numbers < 1) | (numbers != np.round(numbers)))).any():
            raise self.fail("CMT {value} must be a compartment number >= 1 or a state name", "CMT", bad)
        if not named.any():
            return pd.Series(pd.array(np.where(missing, None, numbers), dtype="Int64"))
        names = text.to_numpy(dtype=object)
        if (bad := named & ~np.array([str(name).isidentifier() for name in names])).any():
            raise self.fail("CMT {value} is neither a compartment number nor a state name", "CMT", bad)
        labels = [
            None if gone else (name if is_name else str(int(number)))
            for gone, is_name, name, number in zip(missing, named, names, numbers, strict=True)
        ]
        return pd.Series(labels, dtype=object)

    def covariate(self, name: Any) -> np.ndarray:
        """A covariate as floats when every value is a number (True/False as 1/0), else as text."""
        key = str(name).strip().upper()
        try:
            return self.numbers(key)
        except DataError:
            missing = self.missing(key)
            text = _stripped(self.raw[name].astype(str)).to_numpy(dtype=object)
            return np.where(missing, None, text)

    def warn_duplicates(self, table: pd.DataFrame) -> None:
        """Rows equal in every column are kept (two equal samples can be real) but named."""
        repeated = table.duplicated(keep="first").to_numpy()
        if repeated.any():
            row = int(np.flatnonzero(repeated)[0])
            earlier = _first_equal(table, row)
            more = int(repeated.sum()) - 1
            extra = f" ({more} more rows repeat earlier ones)" if more else ""
            warnings.warn(f"row {row + 1} repeats row {earlier + 1} exactly (every column); both are kept, so "
                          f"delete one if it was entered twice{extra}", DataWarning, stacklevel=4)


def _first_equal(table: pd.DataFrame, row: int) -> int:
    """The first row before ``row`` equal to it in every column (missing equal to missing)."""
    before = table.iloc[: row + 1]
    same = pd.util.hash_pandas_object(before, index=False).to_numpy()
    return int(np.flatnonzero(same == same[row])[0])


def _expand_and_sort(table: pd.DataFrame, extra: np.ndarray, interval: np.ndarray,
                     covariates: list[str]) -> pd.DataFrame:
    """Add the ADDL doses as rows, then sort by ID, TIME, resets and doses first, else in file order."""
    if extra.any():
        copies = np.repeat(np.arange(len(table)), extra + 1)
        first = np.repeat(np.cumsum(extra + 1) - (extra + 1), extra + 1)
        nth = np.arange(len(copies)) - first  # 0 for the original row, k for its k-th additional dose
        table = table.iloc[copies].reset_index(drop=True)
        table["TIME"] = table["TIME"].to_numpy() + interval[copies] * nth
        added = nth > 0
        table.loc[added, "EVID"] = DOSE
        if "SS" in table:
            table.loc[added, "SS"] = 0
            table.loc[added, "II"] = 0.0
        for name in covariates:
            table.loc[added, name] = np.nan if table[name].dtype.kind == "f" else None
    subject = pd.factorize(table["ID"], sort=True)[0]
    later = ~np.isin(table["EVID"].to_numpy(), (DOSE, RESET, RESET_DOSE))
    order = np.lexsort((np.arange(len(table)), later, table["TIME"].to_numpy(), subject))
    if np.array_equal(order, np.arange(len(table))):
        return table
    return table.iloc[order].reset_index(drop=True)


# --- splitting into subjects ---------------------------------------------------------------------------


class _Subjects:
    """A tidy table cut into subjects: whole-table arrays once, one subject's objects on demand."""

    def __init__(self, tidy: pd.DataFrame, rule: str | None = None):
        if rule is not None and rule not in INTERPOLATIONS:
            raise DataError(f"covariate_interpolation must be 'nocb' or 'locf', not {rule!r}")
        self.tidy = tidy
        self.rule = rule or tidy.attrs.get(_RULE, "nocb")
        ids = tidy["ID"].to_numpy()
        n = len(ids)
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1]))) if n else np.array([], int)
        self.bounds = np.append(starts, n)
        self.ids = ids[starts].tolist()
        self.evid = tidy["EVID"].to_numpy()

    def position(self, subject: Any) -> int:
        if subject is None:
            if len(self.ids) != 1:
                raise DataError(f"the table holds {len(self.ids)} subjects; choose one with subject=", column="ID")
            return 0
        found = [k for k, known in enumerate(self.ids) if known == subject]
        if not found:
            shown = ", ".join(map(str, self.ids[:10])) + (", ..." if len(self.ids) > 10 else "")
            raise DataError(f"there is no subject {_shown(subject)} (the IDs are {shown})", column="ID")
        return found[0]

    def _cut(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows where ``mask`` holds, and where each subject's share of them starts and ends."""
        rows = np.flatnonzero(mask)
        return rows, np.searchsorted(rows, self.bounds)

    @cached_property
    def _observations(self):
        tidy = self.tidy
        rows, bounds = self._cut((self.evid == OBSERVATION) & (tidy["MDV"].to_numpy() == 0))
        blq = tidy["BLQ"].to_numpy()[rows] == 1 if "BLQ" in tidy else np.zeros(len(rows), dtype=bool)
        occasions = tidy["OCC"].to_numpy()[rows] if "OCC" in tidy else None
        return (bounds, tidy["TIME"].to_numpy(dtype=float)[rows], tidy["DV"].to_numpy(dtype=float)[rows], blq,
                occasions)

    def observations(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bounds, times, values, blq, _ = self._observations
        part = slice(bounds[k], bounds[k + 1])
        return times[part], values[part], blq[part]

    def occasions(self, k: int) -> np.ndarray | None:
        bounds, _, _, _, occasions = self._observations
        return None if occasions is None else occasions[bounds[k]: bounds[k + 1]]

    @cached_property
    def _doses(self):
        """Each dose row's fields as Python lists (Dose objects are made per subject), and the resets."""
        tidy = self.tidy
        rows, bounds = self._cut(np.isin(self.evid, _DOSES))
        rate = tidy["RATE"].to_numpy(dtype=float)[rows]
        duration = np.where(rate == MODELLED_DURATION, np.nan, tidy["DUR"].to_numpy(dtype=float)[rows])
        cmt = tidy["CMT"].to_numpy(dtype=object)[rows]
        fields = [
            tidy["AMT"].to_numpy(dtype=float)[rows].tolist(),
            tidy["TIME"].to_numpy(dtype=float)[rows].tolist(),
            [None if pd.isna(c) else str(c) for c in cmt],
            [None if np.isnan(d) else d for d in duration.tolist()],
            tidy["SS"].to_numpy()[rows].tolist() if "SS" in tidy else [0] * len(rows),
            tidy["II"].to_numpy(dtype=float)[rows].tolist() if "II" in tidy else [0.0] * len(rows),
        ]
        resets, reset_bounds = self._cut(np.isin(self.evid, _RESETS))
        return fields, bounds, tidy["TIME"].to_numpy(dtype=float)[resets].tolist(), reset_bounds

    def regimen(self, k: int) -> Regimen:
        fields, bounds, resets, reset_bounds = self._doses
        part = slice(bounds[k], bounds[k + 1])
        doses = [_dose(*dose) for dose in zip(*(column[part] for column in fields), strict=True)]
        times = resets[reset_bounds[k]: reset_bounds[k + 1]]
        return Regimen(doses, resets=times)

    @cached_property
    def _covariates(self):
        """The covariates of every subject at once: filled by the rule, which subjects have one that changes,
        and one DataFrame holding the histories of those subjects, row ranges per subject."""
        tidy = self.tidy
        names = [name for name in tidy.columns if name not in (*OUTPUT_COLUMNS, "SS", "II", "OCC", "BLQ", "LLOQ")]
        codes = np.repeat(np.arange(len(self.ids)), np.diff(self.bounds))
        starts = self.bounds[:-1]
        filled = {}
        changed = np.zeros(len(codes), dtype=bool)  # row k differs from row k - 1 of the same subject
        for name in names:
            column = tidy[name]
            if column.isna().any():
                first, then = ("bfill", "ffill") if self.rule == "nocb" else ("ffill", "bfill")
                column = getattr(getattr(column.groupby(codes), first)().groupby(codes), then)()
            values = column.to_numpy()
            filled[name] = values
            changed[1:] |= ~_equal(values[1:], values[:-1])
        changed[starts] = False
        varying = np.zeros(len(self.ids), dtype=bool)
        varying[codes[changed]] = True
        present = {name: ~pd.isna(values[starts]) for name, values in filled.items()}
        kept = _history_rows(tidy["TIME"].to_numpy(dtype=float), filled, codes, np.flatnonzero(varying[codes]),
                             self.rule)
        histories = pd.DataFrame({"TIME": tidy["TIME"].to_numpy(dtype=float)[kept],
                                  **{name: values[kept] for name, values in filled.items()}})
        return names, filled, varying, present, histories, np.searchsorted(kept, self.bounds)

    def covariates(self, k: int) -> dict[str, Any] | pd.DataFrame:
        names, filled, varying, present, histories, bounds = self._covariates
        given = [name for name in names if present[name][k]]
        if not varying[k]:
            start = self.bounds[k]
            return {name: _plain(filled[name][start]) for name in given}
        history = histories.iloc[bounds[k]: bounds[k + 1]].reset_index(drop=True)
        return history if len(given) == len(names) else history[["TIME", *given]]

    def subject(self, k: int) -> SubjectData:
        return SubjectData(self, k)


def _dose(amount: float, time: float, cmt: str | None, duration: float | None, steady: int, interval: float) -> Dose:
    return Dose(amount, time, cmt, duration, steady_state=steady, interval=interval if steady else None)


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python float (numbers) or str (text)."""
    if isinstance(value, (np.floating, np.integer, float, int)) and not isinstance(value, bool):
        return float(value)
    return value


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality with missing equal to missing."""
    return (a == b) | (pd.isna(a) & pd.isna(b))


def _history_rows(time: np.ndarray, filled: dict[str, np.ndarray], codes: np.ndarray, rows: np.ndarray,
                  rule: str) -> np.ndarray:
    """Of ``rows`` (whole subjects), the ones a history needs under ``rule``.

    Left out: a row at its neighbour's time that holds on an empty interval (``"nocb"``: row k holds on
    (t_{k-1}, t_k], empty when t_k = t_{k-1}; ``"locf"``: [t_k, t_{k+1}), empty when t_{k+1} = t_k; a
    subject's first and last rows always stay), then a row whose values equal those of the row that
    follows it (``"nocb"``) or precedes it (``"locf"``): the two intervals merge with the same values.
    """
    def ends(subject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new = np.ones(len(subject), dtype=bool)
        new[1:] = subject[1:] != subject[:-1]
        last = np.ones(len(subject), dtype=bool)
        last[:-1] = new[1:]
        return new, last

    first, last = ends(codes[rows])
    t = time[rows]
    empty = np.zeros(len(rows), dtype=bool)
    if rule == "nocb":
        empty[1:] = t[1:] == t[:-1]
    else:
        empty[:-1] = t[:-1] == t[1:]
    rows = rows[~(empty & ~first & ~last)]
    first, last = ends(codes[rows])
    same = np.ones(max(len(rows) - 1, 0), dtype=bool)
    for values in filled.values():
        same &= _equal(values[rows[1:]], values[rows[:-1]])
    drop = np.zeros(len(rows), dtype=bool)
    if rule == "nocb":  # row k merges into row k + 1 of the same subject
        drop[:-1] = same & ~last[:-1]
    else:  # row k merges into row k - 1 of the same subject
        drop[1:] = same & ~first[1:]
    return rows[~drop]
