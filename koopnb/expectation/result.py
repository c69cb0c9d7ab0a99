"""The answer of an expectation: a value with its error estimate and what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ExpectationResult:
    """An expectation over parameter uncertainty.

    ``value`` and ``error`` are floats for one quantity and arrays for a list of quantities.  ``error``
    estimates |value − truth|: the difference of two successive quadrature levels for the Koopman rules,
    the integrator's own estimate for adaptive cubature, the standard error for Monte Carlo and
    randomised QMC.  It is an estimate, not a proven bound (benchmarks/calibration.py measures how often it
    covers the true error).  ``n_evals`` counts every parameter set simulated (root-finding steps included);
    ``converged`` is True only when the error met the tolerance max(atol, rtol·|value|), for every method.
    ``history`` holds one ``(n_evals, value, error)`` row per level, for convergence plots.  ``orders`` are the
    points per direction of the final tensor rule when one tensor rule answered (else empty).  ``quantity``
    is what was integrated: the Metric, Window, AllWindows or function (a tuple of them for a list), so that
    display reads the metric and the window's bounds from it rather than from ``label``.  ``unit`` is the unit of
    ``value`` as text for people ("mg·h/L" for an AUC of a mg / L / h model, "mg/L" for a concentration, "h" for
    a time above a level), None for a probability or when the model's units leave it unknown (a tuple of them
    for a list of quantities); see :func:`koopnb.units.metric_unit`.
    """

    value: float | np.ndarray
    error: float | np.ndarray
    n_evals: int
    method: str
    converged: bool
    elapsed: float
    rule: str = ""
    label: str | tuple[str, ...] = ""
    history: tuple = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    orders: tuple[int, ...] = ()
    quantity: object = None
    unit: str | tuple[str | None, ...] | None = None

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            body = f"{_label_text(self.label)}{self.value:.6g} ± {self.error:.2g}{_unit_text(self.unit)}"
        else:
            units = self.unit if isinstance(self.unit, tuple) else (None,) * len(self.label)
            body = "; ".join(f"{name} = {v:.6g} ± {e:.2g}{_unit_text(u)}"
                             for name, v, e, u in zip(self.label, self.value, self.error, units, strict=True))
        status = "converged" if self.converged else "NOT converged"
        return f"{body} ({self.method}, {self.rule}; {self.n_evals} model evaluations, {status})"

    def __repr__(self) -> str:
        return f"<ExpectationResult {self}>"

    def _repr_html_(self) -> str:
        from koopnb.cards import expectation_html

        return expectation_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain, text/html and the result card (application/vnd.koopnb.result+json)."""
        from koopnb.cards import expectation_bundle

        return expectation_bundle(self)

    def to_dict(self) -> dict:
        """A JSON-ready summary (used by the notebook display)."""
        return {"label": self.label if isinstance(self.label, str) else list(self.label),
                "value": np.asarray(self.value).tolist(), "error": np.asarray(self.error).tolist(),
                "n_evals": int(self.n_evals), "method": self.method, "rule": self.rule,
                "converged": bool(self.converged), "elapsed": float(self.elapsed),
                "warnings": list(self.warnings),
                "unit": list(self.unit) if isinstance(self.unit, tuple) else self.unit}


def _unit_text(unit) -> str:
    return f" {unit}" if unit else ""


def _label_text(label) -> str:
    return f"{label} = " if label else ""
