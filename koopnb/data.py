"""NONMEM-style data tables: read, check and tidy them, then take one subject's doses and observations.

``read_nonmem`` accepts the usual NONMEM columns (any letter case): ID, TIME, DV, AMT, EVID, MDV, CMT,
RATE, DUR, ADDL, II, SS, BLQ (or CENS), LLOQ; every other column is a covariate and is kept.  ``.``
means missing, as in NONMEM.  Decisions, in the user's words:

- EVID 0 is an observation, 1 a dose, 2 another event (kept, ignored).  EVID 3 and 4 (reset) are
  rejected: put the rows after a reset under a new ID instead.  Without EVID, a row with AMT > 0 is a dose.
- MDV defaults to 1 on dose and other-event rows and on rows without DV; an observation row with MDV 1
  is kept but not used.
- CMT is a compartment number k (the model's k-th state, 1-based) or a state name; missing means the
  model's default (dose statement / first output).
- RATE > 0 makes a zero-order infusion of duration AMT/RATE; DUR gives the duration directly.  When both
  are given they must agree (AMT = RATE × DUR).  RATE -1/-2 (modelled rate or duration) is not supported.
- ADDL additional doses every II hours are expanded into explicit dose rows.  SS is not supported.
- BLQ (or CENS) = 1 marks an observation below the limit of quantification; DV then holds the LLOQ
  (NONMEM M3).  If DV is missing on such a row, the LLOQ column supplies it.
- Each subject's rows must be together and in time order, as NONMEM requires.

Every problem raises :class:`~koopnb.errors.DataError` naming the 1-based data row (header excluded;
for a DataFrame, the row position) and the column as the user spelled it.  The ``subject_*`` helpers
take a raw or tidy table and read it with ``read_nonmem`` first.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from koopnb.errors import DataError
from koopnb.regimen import Dose, Regimen

_STANDARD = ("ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR", "ADDL", "II", "SS")
_CENSORING = ("BLQ", "CENS", "LLOQ")
OUTPUT_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR")
"""The standard columns of a tidy table, in order; BLQ and LLOQ follow when present, then covariates."""

OBSERVATION, DOSE, OTHER = 0, 1, 2
"""EVID codes koopnb understands."""


def read_nonmem(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A tidy NONMEM-style table from a CSV file, a whitespace-separated .txt/.dat file, or a DataFrame.

    Returns a new DataFrame sorted by ID, TIME (doses before observations at equal times) with
    columns ID, TIME (h), AMT, DV, EVID, CMT, MDV, RATE (amount/h), DUR (h), then BLQ and LLOQ if the
    source had them, then the covariates under their own names.  ADDL doses are expanded, so there
    are no ADDL, II or SS columns.  ID is int64 when every ID is a whole number, text otherwise; CMT is
    a nullable integer column when every CMT is a number, text otherwise.  Reading a tidy table again
    gives the same table.
    """
    return _Reader(_load(source)).tidy()


def subjects(table: pd.DataFrame) -> list:
    """The subject IDs of a NONMEM-style table, in sorted order."""
    return read_nonmem(table)["ID"].unique().tolist()


def subject_regimen(table: pd.DataFrame, subject: Any = None) -> Regimen:
    """The doses (EVID 1 rows) of one subject as a :class:`Regimen` without a unit.

    ``subject=None`` is allowed when the table holds one subject.  A numeric CMT k becomes the
    dose compartment ``"k"`` (the model's k-th state, 1-based); a missing CMT becomes ``None`` (the
    model's default dosing compartment).
    """
    rows = _subject_rows(read_nonmem(table), subject)
    doses = rows[rows["EVID"] == DOSE]
    return Regimen(
        Dose(amount, time, _compartment(cmt), duration)
        for amount, time, cmt, duration in zip(
            doses["AMT"], doses["TIME"], doses["CMT"], doses["DUR"], strict=True
        )
    )


def subject_observations(
    table: pd.DataFrame, subject: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, values, blq)`` of one subject's used observations (EVID 0, MDV 0), each ``(n_obs,)``.

    ``times`` in h, ``values`` the DV column (the LLOQ on BLQ rows), ``blq`` a boolean mask of rows
    below the limit of quantification (all False without a BLQ/CENS column).
    """
    rows = _subject_rows(read_nonmem(table), subject)
    used = rows[(rows["EVID"] == OBSERVATION) & (rows["MDV"] == 0)]
    blq = used["BLQ"].to_numpy() == 1 if "BLQ" in used else np.zeros(len(used), dtype=bool)
    return used["TIME"].to_numpy(dtype=float), used["DV"].to_numpy(dtype=float), blq


def subject_covariates(table: pd.DataFrame, subject: Any = None) -> dict[str, Any]:
    """The baseline covariates of one subject: for each covariate column, its first non-missing value
    in time order (later changes are ignored; koopnb's covariates are constant per subject).

    Numeric covariates are floats; a covariate the subject has no value for is left out.
    """
    tidy = read_nonmem(table)
    rows = _subject_rows(tidy, subject)
    baseline = {}
    for name in _covariate_names(tidy):
        present = rows[name].dropna()
        if len(present):
            value = present.iloc[0]
            baseline[name] = float(value) if isinstance(value, (int, float, np.number)) else value
    return baseline


def _subject_rows(tidy: pd.DataFrame, subject: Any) -> pd.DataFrame:
    ids = tidy["ID"].unique()
    if subject is None:
        if len(ids) != 1:
            raise DataError(f"the table holds {len(ids)} subjects; choose one with subject=", column="ID")
        subject = ids[0]
    rows = tidy[tidy["ID"] == subject]
    if rows.empty:
        raise DataError(f"there is no subject {subject!r} (the IDs are {ids.tolist()})", column="ID")
    return rows


def _compartment(cmt: Any) -> str | None:
    return None if pd.isna(cmt) else str(cmt)


def _covariate_names(tidy: pd.DataFrame) -> list[str]:
    return [name for name in tidy.columns if name not in (*OUTPUT_COLUMNS, "BLQ", "LLOQ")]


def _load(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """The raw table, every cell as read (text for files)."""
    if isinstance(source, pd.DataFrame):
        table = source.reset_index(drop=True)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        separator = "," if path.lower().endswith(".csv") else r"\s+"
        try:
            table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise DataError(f"there is no data file {path!r}") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise DataError(f"{path!r} is not a readable table ({error})") from None
    else:
        raise DataError(f"data must be a file path or a pandas DataFrame, not {type(source).__name__}")
    if table.empty:
        raise DataError("the table has no rows")
    return table


class _Reader:
    """Checks one raw table column by column and assembles the tidy table."""

    def __init__(self, raw: pd.DataFrame):
        self.raw = raw
        self.n = len(raw)
        self.names: dict[str, str] = {}  # upper-case column name -> the user's spelling
        self.covariates: list[str] = []
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
            raise DataError("give BLQ or CENS, not both", column=self.names["CENS"])

    # --- column access ---------------------------------------------------------------------------

    def fail(self, message: str, key: str, mask: np.ndarray) -> DataError:
        """A DataError at the first row where ``mask`` is True, in column ``key``."""
        row = int(np.flatnonzero(mask)[0])
        return DataError(message.format(value=self._cell(key, row)), row=row + 1, column=self.names[key])

    def _cell(self, key: str, row: int) -> Any:
        return self.raw[self.names[key]].iloc[row]

    def missing(self, key: str) -> np.ndarray:
        """True where the column is absent, empty, NaN or '.'."""
        if key not in self.names:
            return np.ones(self.n, dtype=bool)
        column = self.raw[self.names[key]]
        blank = column.map(lambda cell: isinstance(cell, str) and cell.strip() in ("", "."))
        return column.isna().to_numpy() | blank.to_numpy(dtype=bool)

    def numbers(self, key: str, default: float = np.nan) -> np.ndarray:
        """The column as floats, ``default`` where missing; a DataError at the first non-number."""
        if key not in self.names:
            return np.full(self.n, default)
        column = self.raw[self.names[key]]
        missing = self.missing(key)
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=float, na_value=np.nan)
        else:
            text = column.where(~missing, None).map(
                lambda cell: cell.strip() if isinstance(cell, str) else cell
            )
            values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            bad = np.isnan(values) & ~missing
            if bad.any():
                raise self.fail("{value!r} is not a number", key, bad)
        return np.where(missing, default, values)

    def codes(self, key: str, allowed: tuple[int, ...], default: np.ndarray) -> np.ndarray:
        """An integer code column restricted to ``allowed``, ``default`` where missing."""
        values = self.numbers(key)
        given = ~np.isnan(values)
        bad = given & ~np.isin(values, allowed)
        if bad.any():
            choices = ", ".join(map(str, allowed))
            raise self.fail(f"{{value!r}} is not a valid {key} (use {choices})", key, bad)
        return np.where(given, values, default).astype(np.int64)

    def non_negative(self, key: str, default: float) -> np.ndarray:
        values = self.numbers(key, default)
        bad = ~np.isnan(values) & ((values < 0) | ~np.isfinite(values))
        if bad.any():
            raise self.fail(f"{key} must be a finite number >= 0, not {{value!r}}", key, bad)
        return values

    # --- the checks, in dependency order ---------------------------------------------------------

    def tidy(self) -> pd.DataFrame:
        ids = self.subject_ids()
        time = self.times(ids)
        amount = self.non_negative("AMT", np.nan)
        evid = self.events(amount)
        amount = np.where(evid == DOSE, amount, 0.0)
        dv, blq, lloq = self.observations(evid)
        mdv = self.codes("MDV", (0, 1), np.where((evid != OBSERVATION) | np.isnan(dv), 1, 0))
        if (bad := (evid != OBSERVATION) & (mdv == 0)).any():
            raise self.fail("a dose or other-event row must have MDV 1, not {value!r}", "MDV", bad)
        if (bad := (evid == OBSERVATION) & (mdv == 0) & ~np.isfinite(dv)).any():
            key = "DV" if "DV" in self.names else "MDV"
            raise self.fail("an observation row (EVID 0, MDV 0) needs a finite DV, not {value!r}", key, bad)
        rate, duration = self.infusions(evid, amount)
        self.reject_steady_state()
        extra, interval = self.additional_doses(evid)

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
        if blq is not None:
            columns["BLQ"] = blq
        if lloq is not None:
            columns["LLOQ"] = lloq
        for name in self.covariates:
            columns[str(name)] = self.covariate(name)
        table = pd.DataFrame(columns)
        return _expand_and_sort(table, extra, interval)

    def subject_ids(self) -> np.ndarray:
        if "ID" not in self.names:
            return np.ones(self.n, dtype=np.int64)
        missing = self.missing("ID")
        if missing.any():
            raise self.fail("every row needs an ID, not {value!r}", "ID", missing)
        column = self.raw[self.names["ID"]]
        numbers = pd.to_numeric(
            column.map(lambda cell: cell.strip() if isinstance(cell, str) else cell), errors="coerce"
        ).to_numpy(dtype=float, na_value=np.nan)
        if np.all(np.isfinite(numbers) & (numbers == np.round(numbers))):
            ids = numbers.astype(np.int64)
        else:
            ids = column.map(lambda cell: str(cell).strip()).to_numpy(dtype=object)
        changes = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        starts = ids[np.concatenate(([0], changes))]
        seen: set = set()
        for position, subject in zip(np.concatenate(([0], changes)), starts, strict=True):
            if subject in seen:
                mask = np.arange(self.n) == position
                raise self.fail(
                    "subject {value!r} appears again after other subjects; keep each subject's rows together",
                    "ID",
                    mask,
                )
            seen.add(subject)
        return ids

    def times(self, ids: np.ndarray) -> np.ndarray:
        time = self.numbers("TIME")
        if (bad := np.isnan(time)).any():
            raise self.fail("every row needs a TIME, not {value!r}", "TIME", bad)
        if (bad := ~np.isfinite(time) | (time < 0)).any():
            raise self.fail("TIME must be a finite number of hours >= 0, not {value!r}", "TIME", bad)
        earlier = np.concatenate(([False], (time[1:] < time[:-1]) & (ids[1:] == ids[:-1])))
        if earlier.any():
            raise self.fail(
                "TIME {value!r} is earlier than the row before for the same subject; sort each subject's "
                "rows by time",
                "TIME",
                earlier,
            )
        return time

    def events(self, amount: np.ndarray) -> np.ndarray:
        default = np.where(amount > 0, DOSE, OBSERVATION)
        values = self.numbers("EVID")
        if (bad := np.isin(values, (3, 4))).any():
            raise self.fail(
                "EVID {value!r} (a reset) is not supported; give the rows after a reset a new ID",
                "EVID",
                bad,
            )
        evid = self.codes("EVID", (OBSERVATION, DOSE, OTHER), default)
        if (bad := (evid == DOSE) & np.isnan(amount)).any():
            key = "AMT" if "AMT" in self.names else "EVID"
            raise self.fail("a dose row (EVID 1) needs an AMT, not {value!r}", key, bad)
        if (bad := (evid == OBSERVATION) & (amount > 0)).any():
            raise self.fail(
                "an observation row (EVID 0) cannot have AMT {value!r}; a dose row needs EVID 1", "AMT", bad
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
            raise self.fail(f"{flag} {{value!r}} is only for observation rows (EVID 0)", flag, bad)
        if lloq is not None:
            dv = np.where((blq == 1) & np.isnan(dv), lloq, dv)
        if (bad := (blq == 1) & ~np.isfinite(dv)).any():
            key = "DV" if "DV" in self.names else flag
            raise self.fail(
                f"a {flag} row needs the quantification limit in DV or LLOQ, not {{value!r}}", key, bad
            )
        return dv, blq, lloq

    def infusions(self, evid: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RATE (amount/h) and DUR (h) of each dose row, each derived from the other; 0 elsewhere."""
        raw_rate = self.numbers("RATE", 0.0)
        if (bad := np.isin(raw_rate, (-1, -2))).any():
            raise self.fail(
                "RATE {value!r} (a modelled rate or duration) is not supported; give RATE or DUR in the data",
                "RATE",
                bad,
            )
        rate = self.non_negative("RATE", 0.0)
        duration = self.non_negative("DUR", 0.0)
        dose = evid == DOSE
        both = dose & (rate > 0) & (duration > 0)
        if (bad := both & ~np.isclose(rate * duration, amount, rtol=1e-9, atol=0.0)).any():
            raise self.fail(
                "RATE {value!r} and DUR disagree (AMT must equal RATE × DUR); give only one of them",
                "RATE",
                bad,
            )
        # Fill only the missing one of the pair, so that a tidy table reads back unchanged.
        with np.errstate(divide="ignore", invalid="ignore"):
            from_rate = dose & (rate > 0) & (duration == 0)
            from_duration = dose & (duration > 0) & (rate == 0)
            duration = np.where(from_rate, amount / rate, duration)
            rate = np.where(from_duration, amount / duration, rate)
        return np.where(dose, rate, 0.0), np.where(dose, duration, 0.0)

    def reject_steady_state(self) -> None:
        steady = self.numbers("SS", 0.0)
        if (bad := steady != 0).any():
            raise self.fail(
                "steady-state dose rows (SS) are not supported; expand them as ADDL doses", "SS", bad
            )

    def additional_doses(self, evid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ADDL (whole number of extra doses) and II (h) per row; 0 where not used."""
        extra = self.non_negative("ADDL", 0.0)
        if (bad := extra != np.round(extra)).any():
            raise self.fail("ADDL must be a whole number of additional doses, not {value!r}", "ADDL", bad)
        if (bad := (extra > 0) & (evid != DOSE)).any():
            raise self.fail("ADDL {value!r} is only for dose rows (EVID 1)", "ADDL", bad)
        interval = self.non_negative("II", 0.0)
        if (bad := (extra > 0) & ~(interval > 0)).any():
            key = "II" if "II" in self.names else "ADDL"
            raise self.fail("ADDL doses need an interval II > 0 h, not {value!r}", key, bad)
        return extra.astype(np.int64), np.where(extra > 0, interval, 0.0)

    def compartments(self) -> pd.Series:
        """CMT as nullable integers, or as text when some rows name a state."""
        if "CMT" not in self.names:
            return pd.Series(pd.array([pd.NA] * self.n, dtype="Int64"))
        column = self.raw[self.names["CMT"]]
        missing = self.missing("CMT")
        text = column.map(lambda cell: cell.strip() if isinstance(cell, str) else cell)
        numbers = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        named = ~missing & np.isnan(numbers)
        if (bad := ~missing & ~named & ((numbers < 1) | (numbers != np.round(numbers)))).any():
            raise self.fail("CMT {value!r} must be a compartment number >= 1 or a state name", "CMT", bad)
        if not named.any():
            return pd.Series(pd.array(np.where(missing, None, numbers), dtype="Int64"))
        names = text.to_numpy(dtype=object)
        if (bad := named & ~np.array([str(name).isidentifier() for name in names])).any():
            raise self.fail("CMT {value!r} is neither a compartment number nor a state name", "CMT", bad)
        labels = [
            None if gone else (name if is_name else str(int(number)))
            for gone, is_name, name, number in zip(missing, named, names, numbers, strict=True)
        ]
        return pd.Series(labels, dtype=object)

    def covariate(self, name: str) -> np.ndarray:
        """A covariate as floats when every value is a number, else as text (missing as None)."""
        key = str(name).strip().upper()
        try:
            return self.numbers(key)
        except DataError:
            missing = self.missing(key)
            text = self.raw[name].map(lambda cell: str(cell).strip())
            return np.where(missing, None, text.to_numpy(dtype=object))


def _expand_and_sort(table: pd.DataFrame, extra: np.ndarray, interval: np.ndarray) -> pd.DataFrame:
    """Add the ADDL doses as rows, then sort by ID, TIME, doses first, keeping the file order otherwise."""
    copies = np.repeat(np.arange(len(table)), extra + 1)
    first = np.repeat(np.cumsum(extra + 1) - (extra + 1), extra + 1)
    nth = np.arange(len(copies)) - first  # 0 for the original row, k for its k-th additional dose
    expanded = table.iloc[copies].reset_index(drop=True)
    expanded["TIME"] = expanded["TIME"].to_numpy() + interval[copies] * nth
    subject = pd.factorize(expanded["ID"], sort=True)[0]
    after_doses = expanded["EVID"].to_numpy() != DOSE
    order = np.lexsort((np.arange(len(expanded)), after_doses, expanded["TIME"].to_numpy(), subject))
    return expanded.iloc[order].reset_index(drop=True)
