"""The column names, event codes, limits and rules the data reader knows, and its warning type."""

from __future__ import annotations

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


class DataWarning(UserWarning):
    """Data that is kept as given but is probably a mistake (a 0-mg dose, a row entered twice)."""
