"""Covariates that change over time: a patient's history, piecewise constant between its rows.

Wherever koopnb takes ``covariates=`` it takes either a dict of constants (name -> float, or a (batch,)
array) or a history: a pandas DataFrame with a ``TIME`` column (h) and one column per covariate, or a
:class:`CovariateHistory` built from one.  Between rows a covariate is constant; which row's value holds
is the interpolation rule:

* ``"nocb"`` (next observation carried backward, NONMEM's rule and the default): the value on row k
  holds on (t_{k-1}, t_k] — a level measured at 24 h already applied since the row before;
* ``"locf"`` (last observation carried forward): the value on row k holds on [t_k, t_{k+1}).

With either rule the first row's value holds before the first row and the last row's value after the
last row (a forecast beyond the history uses the last value; give future rows for anything else).
Several rows at one time are read in order: with NOCB the first of them governs the time before, with
LOCF the last of them governs the time after.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from koopnb.errors import DataError, KoopnbError

RULES = ("nocb", "locf")
"""The interpolation rules of a covariate history."""


class CovariateHistory:
    """Covariates over time, from a table with a ``TIME`` column (h, ascending) and one column per covariate.

    ``rule`` is ``"nocb"`` or ``"locf"`` (module docstring); by default the one the table was read with
    (``table.attrs["covariate_interpolation"]``, set by :func:`koopnb.read_nonmem`), else ``"nocb"``.
    """

    def __init__(self, table: pd.DataFrame, rule: str | None = None):
        if not isinstance(table, pd.DataFrame):
            raise DataError(f"a covariate history is a table with a TIME column, not {type(table).__name__}")
        rule = rule if rule is not None else table.attrs.get("covariate_interpolation", "nocb")
        if rule not in RULES:
            raise DataError(f"covariate_interpolation must be 'nocb' or 'locf', not {rule!r}")
        self.rule = rule
        columns = {str(c).upper(): c for c in table.columns}
        if "TIME" not in columns:
            raise DataError("a covariate history needs a TIME column (hours) beside its covariate columns")
        if len(table) == 0:
            raise DataError("the covariate history has no rows")
        self.times = self._numbers(table[columns["TIME"]], "TIME")
        if np.any(self.times < 0):
            row = int(np.argmax(self.times < 0))
            raise DataError(f"the time {self.times[row]:g} h is negative", row=row + 1, column="TIME")
        backwards = np.flatnonzero(np.diff(self.times) < 0)
        if backwards.size:
            row = int(backwards[0]) + 2
            raise DataError(f"times must not decrease ({self.times[row - 1]:g} h after {self.times[row - 2]:g} h)",
                            row=row, column="TIME")
        self.values: dict[str, np.ndarray] = {
            str(name): self._numbers(table[name], str(name)) for name in table.columns if name != columns["TIME"]}
        if not self.values:
            raise DataError("the covariate history has a TIME column but no covariate column")

    @staticmethod
    def _numbers(column: pd.Series, name: str) -> np.ndarray:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            value = column.iloc[row]
            shown = f"{float(value):g}" if isinstance(value, (int, float, np.number)) else repr(value)
            raise DataError(f"{shown} is not a finite number", row=row + 1, column=name)
        return values

    @property
    def names(self) -> tuple[str, ...]:
        """The covariates of the history."""
        return tuple(self.values)

    def varying(self) -> tuple[str, ...]:
        """The covariates whose value changes over time."""
        return tuple(name for name, v in self.values.items() if np.any(v != v[0]))

    def constants(self) -> dict[str, float]:
        """The covariates that never change, name -> value."""
        return {name: float(v[0]) for name, v in self.values.items() if np.all(v == v[0])}

    def rows(self, times, side: str = "rule") -> np.ndarray:
        """Row index in force at ``times`` (any shape): ``side`` "rule" (the value at that instant), "left"
        (just before it) or "right" (just after it)."""
        times = np.asarray(times, dtype=float)
        if side == "rule":
            side = "left" if self.rule == "nocb" else "right"
        if self.rule == "nocb":  # row k holds on (t_{k-1}, t_k]
            index = np.searchsorted(self.times, times, side="left" if side == "left" else "right")
        else:  # row k holds on [t_k, t_{k+1})
            index = np.searchsorted(self.times, times, side="left" if side == "left" else "right") - 1
        return np.clip(index, 0, len(self.times) - 1)

    def at(self, times, side: str = "rule") -> dict[str, np.ndarray]:
        """Every covariate at ``times``: name -> array of the shape of ``times`` (``side`` as in :meth:`rows`)."""
        rows = self.rows(times, side)
        return {name: values[rows] for name, values in self.values.items()}

    def change_times(self) -> np.ndarray:
        """Sorted times (h) where some covariate changes value (left and right limits differ)."""
        unique = np.unique(self.times)
        before, after = self.rows(unique, "left"), self.rows(unique, "right")
        changed = np.zeros(unique.size, dtype=bool)
        for values in self.values.values():
            changed |= values[before] != values[after]
        return unique[changed]

    def __repr__(self) -> str:
        return (f"<CovariateHistory {', '.join(self.names)}: {len(self.times)} rows from {self.times[0]:g} to "
                f"{self.times[-1]:g} h, {self.rule}>")


def as_history(covariates, rule: str | None = None) -> Mapping | CovariateHistory | None:
    """``covariates`` as given, or a :class:`CovariateHistory` when it is a table (or already a history).

    A history whose covariates never change is returned as a dict of its constants.
    """
    if isinstance(covariates, pd.DataFrame):
        covariates = CovariateHistory(covariates, rule)
    if isinstance(covariates, CovariateHistory):
        return covariates if covariates.varying() else covariates.constants()
    return covariates


def constant_covariates(covariates, where: str) -> Mapping | None:
    """``covariates`` as constants for a function that cannot take a history; a history whose covariates
    change raises a KoopnbError naming the first varying covariate and ``where``."""
    covariates = as_history(covariates)
    if isinstance(covariates, CovariateHistory):
        name = covariates.varying()[0]
        raise KoopnbError(f"covariate {name!r} changes over time, but {where} takes constant covariates; "
                          "give one value per covariate (e.g. its value at the time of interest)")
    return covariates
