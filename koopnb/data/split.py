"""A tidy table cut into subjects once: each subject's regimen, observations and covariate history."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from koopnb.data.columns import _DOSES, _RESETS, _RULE, INTERPOLATIONS, MODELLED_DURATION, OBSERVATION, OUTPUT_COLUMNS
from koopnb.data.tidy import _shown
from koopnb.errors import DataError
from koopnb.regimen import Dose, Regimen


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
        histories.attrs[_RULE] = self.rule  # each subject's slice carries its rule to simulate & co.
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
