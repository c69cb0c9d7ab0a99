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
class Written:
    """A right-hand side as the user wrote it, for display and for checking units.

    ``text`` is the expression's text with blanks as typed (comments and line breaks removed); ``expr`` is the
    same expression as an unevaluated sympy tree that keeps the user's structure (``(CRCL/120)^0.8`` stays a
    ratio raised to a power, where the evaluated form is ``0.0217...*CRCL^0.8``); ``line`` and ``column`` are
    where the expression starts in the model text.
    """

    text: str
    expr: sp.Expr
    line: int
    column: int

    def __reduce__(self):
        # sympy rebuilds a pickled expression by evaluating it ((CRCL/120)^0.8 would come back as
        # 0.0217*CRCL^0.8), so the tree travels as (class, arguments) and is rebuilt unevaluated
        return _unpickle_written, (self.text, _tree(self.expr), self.line, self.column)


def _tree(expr: sp.Basic):
    """An expression as nested ``(class, arguments)`` tuples down to its atoms."""
    return expr if expr.is_Atom else (type(expr), tuple(_tree(argument) for argument in expr.args))


def _unevaluated(tree) -> sp.Basic:
    if not isinstance(tree, tuple):
        return tree
    kind, arguments = tree
    arguments = [_unevaluated(argument) for argument in arguments]
    if kind is sp.functions.elementary.piecewise.ExprCondPair:  # a case of where(): it takes no evaluate=
        return kind(*arguments)
    return kind(*arguments, evaluate=False)


def _unpickle_written(text: str, tree, line: int, column: int) -> Written:
    return Written(text, _unevaluated(tree), line, column)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a model text says, in order of appearance.

    ``derived`` holds each ``NAME = EXPR`` as written (it may refer to earlier or later derived names;
    the parser has already rejected circular definitions).  ``outputs`` lists the derived names that
    depend, directly or through other derived names, on a state.  ``rhs`` and ``initial`` are as
    written too (initial defaults to 0 for states without a ``STATE(0)`` line).  ``units`` maps each name
    written with a ``[unit]`` to that unit, normalised (``L/hr`` and ``L/h`` both read ``L/h``, see
    :mod:`koopnb.units`); ``amount_unit`` is the amount unit the model's own units imply for its states (e.g.
    "mg" when a Michaelis constant is in mg/L), or None when they leave it to the regimen.  ``written`` holds
    each right-hand side as written (:class:`Written`), keyed by the derived name, ``d/dt(STATE)``,
    ``STATE(0)``, ``bioavailability``, ``lag`` or ``duration``; ``unit_places`` the (line, column) of each
    unit text.
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
    written: dict[str, Written] = field(default_factory=dict)
    unit_places: dict[str, tuple[int, int]] = field(default_factory=dict)
    amount_unit: str | None = None
