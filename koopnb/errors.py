"""Error types: every user mistake is one of these, carrying one clear sentence."""

from __future__ import annotations


class KoopnbError(Exception):
    """Base of every error koopnb raises for bad input or a failed computation."""


class ModelError(KoopnbError, ValueError):
    """A mistake in model text, located by 1-based line and column."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


class RegimenError(KoopnbError, ValueError):
    """A dosing regimen that cannot be built or understood (e.g. a bad regimen string)."""


class MetricError(KoopnbError, ValueError):
    """A metric or window that cannot be built or understood (e.g. a bad metric string)."""


class DataError(KoopnbError, ValueError):
    """Malformed data, located by 1-based data row and column name."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None):
        self.message = message
        self.row = row
        self.column = column
        parts = []
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        where = (", ".join(parts) + ": ") if parts else ""
        super().__init__(where + message)


class SimulationError(KoopnbError, RuntimeError):
    """A simulation that failed (e.g. the ODE solver could not reach the requested tolerance)."""


class DistributionError(KoopnbError, ValueError):
    """An invalid distribution (bad parameters, a covariance that is not positive definite...)."""


class ExpectationError(KoopnbError, RuntimeError):
    """An expectation that cannot be computed as asked (e.g. it would exceed the memory budget)."""


class FitError(KoopnbError, RuntimeError):
    """A fit that cannot be run or failed (no observations, a posterior that is not finite...)."""


class NonmemError(KoopnbError, ValueError):
    """A NONMEM control stream that cannot be read or translated, naming the record or item."""
