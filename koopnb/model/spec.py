"""The parsed form of a %%pkmodel text: plain data, sympy expressions, no numerics.

The parser (parse.py) produces a :class:`ModelSpec`; :class:`koopnb.model.Model` turns it into
numerical code.  Every expression is a sympy expression over ``sympy.Symbol(name, real=True)``
for parameter, constant, covariate, derived, state and time (``t``) names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

TIME = sp.Symbol("t", real=True)
"""The time symbol; model text may use ``t`` in expressions (hours, the user's unit)."""


def symbol(name: str) -> sp.Symbol:
    """The sympy symbol koopnb uses for a name of the model text."""
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class Parameter:
    """An individual parameter: ``NAME = NUMBER [unit] ~ OMEGA [iov KAPPA]`` or ``NAME = NUMBER [unit] in (LOW, HIGH)``.

    ``omega`` is the SD of the log (IIV, 0 without), ``iov`` the SD of the log between occasions (kappa, 0
    without); ``bounds`` is the interval ``(low, high)`` of a parameter written with ``in`` (either end may
    be infinite), or None.
    """

    name: str
    typical: float
    unit: str | None = None
    omega: float = 0.0
    line: int = 0
    iov: float = 0.0
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Covariate:
    """``covariate NAME = NUMBER [unit]``: a patient covariate and its reference value."""

    name: str
    reference: float
    unit: str | None = None
    line: int = 0


@dataclass(frozen=True)
class ErrorModel:
    """Residual error of an observed output.

    ``kind`` is one of ``additive``, ``proportional``, ``combined``, ``exponential``.
    Variance of an observation with prediction f: additive a², proportional (b f)², combined
    a² + b² f²; exponential means log(observation) ~ Normal(log f, sigma²).
    """

    kind: str
    additive: float = 0.0
    proportional: float = 0.0
    sigma: float = 0.0
    line: int = 0


@dataclass(frozen=True)
class DoseTarget:
    """``dose STATE [bioavailability=EXPR] [lag=EXPR] [duration=EXPR]``: default dosing compartment.

    ``duration`` (h) is the modelled infusion duration (NONMEM RATE = -2), or None when the model has none.
    """

    state: str
    bioavailability: sp.Expr = sp.S.One
    lag: sp.Expr = sp.S.Zero
    line: int = 0
    duration: sp.Expr | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything a model text says, in order of appearance.

    ``derived`` holds each ``NAME = EXPR`` as written (it may refer to earlier or later derived names;
    the parser has already rejected circular definitions).  ``outputs`` lists the derived names that
    depend, directly or through other derived names, on a state.  ``rhs`` and ``initial`` are as
    written too (initial defaults to 0 for states without a ``STATE(0)`` line).
    """

    text: str
    name: str | None
    parameters: tuple[Parameter, ...]
    constants: dict[str, float]
    covariates: tuple[Covariate, ...]
    derived: dict[str, sp.Expr]
    states: tuple[str, ...]
    rhs: dict[str, sp.Expr]
    initial: dict[str, sp.Expr]
    outputs: tuple[str, ...]
    errors: dict[str, ErrorModel]
    dose: DoseTarget | None
    units: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    correlations: dict[tuple[str, str], float] = field(default_factory=dict)
