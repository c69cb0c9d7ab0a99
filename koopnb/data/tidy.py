"""One raw table checked column by column and assembled into the tidy table (every rule of the reader)."""

from __future__ import annotations

import inspect
import warnings
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from koopnb.data.columns import (
    _CENSORING,
    _DOSES,
    _FLAGS,
    _MISSING,
    _RESETS,
    _STANDARD,
    ADDL_LIMIT,
    DOSE,
    MODELLED_DURATION,
    OBSERVATION,
    OTHER,
    RESET,
    RESET_DOSE,
    ROW_LIMIT,
    DataWarning,
)
from koopnb.data.files import Raw
from koopnb.errors import DataError


def _user_level() -> int:
    """The ``stacklevel`` that points a warning at the first line outside koopnb (the user's call)."""
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("koopnb"):
        frame, level = frame.f_back, level + 1
    return level


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

    def __init__(self, loaded: Raw):
        raw = loaded.table
        self.raw = raw
        self._text = loaded.text
        self.row_numbers = loaded.rows  # 1-based data row of each row, as the user counts them
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
        return DataError(message.format(value=_shown(self._cell(key, row))), row=int(self.row_numbers[row]),
                         column=str(self.names[key]))

    def warn(self, message: str, key: str, mask: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        more = f" ({len(rows) - 1} more such rows)" if len(rows) > 1 else ""
        text = message.format(value=_shown(self._cell(key, int(rows[0]))))
        warnings.warn(f"row {self.row_numbers[rows[0]]}, column {str(self.names[key])!r}: {text}{more}", DataWarning,
                      stacklevel=_user_level())

    def _cell(self, key: str, row: int) -> Any:
        """The cell as the user wrote it: the file's text, or the DataFrame's value."""
        if self._text is not None:
            return self._text(int(self.row_numbers[row]) - 1, self.names[key])
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
            first, again = self.row_numbers[earlier], self.row_numbers[row]
            warnings.warn(f"row {again} repeats row {first} exactly (every column); "
                          f"both are kept, so delete one if it was entered twice{extra}", DataWarning,
                          stacklevel=_user_level())


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
