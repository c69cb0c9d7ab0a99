"""Parse %%pkmodel text (shared/MODEL_LANGUAGE.md) into a :class:`~koopnb.model.spec.ModelSpec`.

Model text is data: statements are recognised by their shape, expressions are checked token by token
(:mod:`koopnb.model.lexer`), parsed with ``ast.parse(..., mode="eval")`` over neutral placeholder
names and walked node by node into sympy through a whitelist.  Nothing is evaluated, and every
mistake is a :class:`~koopnb.errors.ModelError` with the 1-based line and column of the culprit.

Rules this parser decides where the language leaves room:

* ``NAME = NUMBER`` (a number literal, optionally signed — ``x = -1`` — and optionally followed by a
  ``[unit]``, ``~ OMEGA`` or ``fixed``) is a parameter or constant; any other right-hand side, such as
  ``2*3`` or ``-(1)``, is a derived quantity.  Units belong to parameters, constants and covariates
  only; the text between the brackets is kept as written, without surrounding blanks.
* Writing ``~`` always declares log-normal IIV, so the typical value must be positive (even with
  ``~ 0``).  ``N%`` is a CV: omega = sqrt(ln(1 + (N/100)²)); ``variance(V)`` is NONMEM's variance of
  the log, omega = sqrt(V); ``sd(S)`` and a bare number are the SD of the log.  The IOV after ``iov``
  takes the same forms.  An SD of the log above :data:`MAX_OMEGA` is an error: exp(±10) already spans
  nine orders of magnitude, beyond any population.
* ``in (LOW, HIGH)`` bounds a parameter without IIV (``~`` and ``in`` together are an error: a
  log-normal parameter is already kept positive); LOW < HIGH, either may be ``inf``/``-inf``, and the
  typical value must lie strictly inside, since the fit estimates on a scale that maps the open
  interval onto the real line.  A parameter without ``~`` or ``in`` may have any sign, as before.
* ``corr(A, B) = R`` needs two different parameters with IIV (omega > 0) and -1 < R < 1; a pair is
  given once (in either order).  The correlations are added in text order and the first one that
  leaves Ω not positive definite is the error.  ``corr(0) = ...`` stays the initial condition of a
  state called ``corr``.
* Derived quantities, states and outputs may be used before the line that defines them: the
  definitions form a graph, and circular definitions are reported with their cycle.
* ``t`` (time, hours) and the function names cannot be defined; ``dose`` and ``covariate`` are
  keywords and cannot be names either.  Names are ASCII letters, digits and ``_``.
* ``STATE(0) = EXPR``, ``bioavailability=``, ``lag=`` and ``duration=`` may use parameters, constants,
  covariates and derived quantities, but not states, ``t`` or anything that depends on them.
* The residual error magnitudes are positive numbers; ``proportional(b) + additive(a)`` and
  ``additive(a) + proportional(b)`` both mean ``combined(a, b)``.
* Comparisons appear only as the condition of ``where``; chained comparisons are rejected.

Limits (each an error naming the limit): :data:`~koopnb.model.lexer.MAX_TEXT` characters of text,
:data:`~koopnb.model.lexer.MAX_STATEMENTS` statements, :data:`~koopnb.model.lexer.MAX_TOKENS` tokens in
one expression and :data:`~koopnb.model.lexer.MAX_NESTING` levels of nesting in one expression (a
1,000-term sum is one level; a power tower ``a^a^a`` is one level per ``^``).  Code generation adds a
depth limit once derived quantities are substituted (:data:`koopnb.model.codegen.MAX_DEPTH`).

Errors are reported in text order within each stage: first the shape of every statement (syntax,
duplicates, values), then names (undefined, not a state), then whole-model checks (no states,
circular definitions, outputs, what initial conditions and doses may depend on), and last the units
(:func:`koopnb.units.check_units`: unreadable unit texts, then units that do not agree).

Every right-hand side is also kept as written (:class:`~koopnb.model.spec.Written`: its text and an
unevaluated sympy tree of the same syntax tree), for display and for the unit check, which need the
user's structure (``(CRCL/120)^0.8``) rather than sympy's evaluated form (``0.0217*CRCL^0.8``).
"""

from __future__ import annotations

import ast
import difflib
import graphlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from koopnb.errors import ModelError
from koopnb.model.lexer import (
    MAX_NESTING,
    ExpressionSource,
    Statement,
    check_number,
    expression_source,
    split_statements,
)
from koopnb.model.spec import (
    TIME,
    Covariate,
    DoseTarget,
    ErrorModel,
    ModelSpec,
    Parameter,
    Written,
    symbol,
)
from koopnb.units import check_units

FUNCTIONS = ("exp", "log", "sqrt", "abs", "min", "max", "where")
"""The functions an expression may call."""

ERROR_MODELS = ("additive", "proportional", "combined", "exponential")
"""The residual error models an output may have."""

_KEYWORDS = ("dose", "covariate")
_UNARY_FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs}
_VARIADIC_FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {"min": sp.Min, "max": sp.Max}
_ARITHMETIC: dict[type, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARISONS: dict[type, Callable[[sp.Expr, sp.Expr], sp.Basic]] = {
    ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
MAX_OMEGA = 10.0
"""Largest IIV or IOV, as the SD of the log."""
_EXACT_POWER_LIMIT = 64
"""Numeric powers with a larger exponent are computed in floating point, never as huge exact numbers."""

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = re.compile(r"[+-]?[ \t]*(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BLANKS = re.compile(r"[ \t]*")
_FIRST_NAME = re.compile(rf"[ \t]*({_NAME})[ \t]*")
_DERIVATIVE = re.compile(rf"[ \t]*d[ \t]*/[ \t]*dt[ \t]*\([ \t]*({_NAME})[ \t]*\)[ \t]*=(?!=)")
_PRIME = re.compile(r"'[ \t]*=(?!=)")
_INITIAL = re.compile(r"\([ \t]*0(?:\.0*)?[ \t]*\)[ \t]*=(?!=)")
_COVARIATE = re.compile(rf"[ \t]*covariate[ \t]+({_NAME})[ \t]*=(?!=)")
_DOSE = re.compile(rf"[ \t]*dose[ \t]+({_NAME})")
_WORD = re.compile(r"[A-Za-z0-9_.]+|.")
_COMPARISON_SIGN = re.compile(r"[<>]")
_FIXED = re.compile(r"fixed(?![A-Za-z0-9_])")
_OPTION = re.compile(rf"({_NAME})[ \t]*=(?!=)")
_NEXT_OPTION = re.compile(rf"[ \t]({_NAME})[ \t]*=(?!=)")
_DOSE_OPTIONS = ("bioavailability", "lag", "duration")
_IN = re.compile(r"in(?![A-Za-z0-9_])")
_IOV = re.compile(r"iov(?![A-Za-z0-9_])")
_SPREAD_CALL = re.compile(r"(variance|sd)[ \t]*\([ \t]*")
_BOUND = re.compile(r"[+-]?[ \t]*(?:inf(?![A-Za-z0-9_])|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_CORR = re.compile(rf"[ \t]*corr[ \t]*\([ \t]*({_NAME})[ \t]*,[ \t]*({_NAME})[ \t]*\)[ \t]*=(?!=)")
_KIND_NAMES = {"parameter": "a parameter", "constant": "a constant", "covariate": "a covariate",
               "derived": "a derived quantity", "state": "a state"}


def parse_spec(text: str, name: str | None = None) -> ModelSpec:
    """Parse the text of a ``%%pkmodel`` cell (or ``.pk`` file) into a :class:`ModelSpec`.

    Raises :class:`~koopnb.errors.ModelError` with the line and column of the first mistake.
    """
    statements = split_statements(text)
    if not statements:
        raise ModelError("the model is empty; write at least one state equation such as "
                         "'d/dt(central) = -k*central'", 1, 1)
    reader = _Reader()
    for statement in statements:
        reader.read(statement)
    return _Checker(reader, statements[0]).spec(text, name)


@dataclass(frozen=True)
class _Reference:
    """A name as used in an expression, with where it was written."""

    name: str
    line: int
    column: int


@dataclass(frozen=True)
class _Expression:
    """A parsed expression and the names it refers to, in text order."""

    value: sp.Expr
    references: tuple[_Reference, ...]
    written: Written


@dataclass(frozen=True)
class _Use:
    """A name that must turn out to be defined: a reference, or the target of an initial condition,
    a dose or a residual error model (``role`` is ``reference``, ``initial``, ``dose`` or ``error``)."""

    name: str
    line: int
    column: int
    role: str


@dataclass(frozen=True)
class _Dose:
    """A ``dose`` line: the state, its optional bioavailability, lag and duration, and the line number."""

    state: str
    bioavailability: _Expression | None
    lag: _Expression | None
    line: int
    duration: _Expression | None = None


@dataclass(frozen=True)
class _Correlation:
    """A ``corr(A, B) = R`` line: the two names with where they are written, and R as written."""

    first: _Reference
    second: _Reference
    value: float
    text: str


class _Reader:
    """Reads statements one by one: their shape, values and definitions, names not yet resolved."""

    def __init__(self) -> None:
        self.definitions: dict[str, tuple[str, int, int]] = {}  # name -> (kind, line, column)
        self.parameters: list[Parameter] = []
        self.constants: dict[str, float] = {}
        self.covariates: list[Covariate] = []
        self.units: dict[str, str] = {}
        self.unit_places: dict[str, tuple[int, int]] = {}
        self.derived: dict[str, _Expression] = {}
        self.rhs: dict[str, _Expression] = {}
        self.initial: dict[str, tuple[_Expression, int]] = {}
        self.errors: dict[str, ErrorModel] = {}
        self.error_targets: dict[str, tuple[int, int]] = {}  # output -> (line, column) of its name
        self.dose: _Dose | None = None
        self.correlations: list[_Correlation] = []
        self.uses: list[_Use] = []

    def read(self, statement: Statement) -> None:
        """Record one statement, or raise a ModelError for its first mistake."""
        text = statement.text
        first = _FIRST_NAME.match(text)
        start = first.end() if first else _BLANKS.match(text).end()
        if start < len(text) and not text[start].isascii():
            raise statement.error(f"unexpected character {text[start]!r}; names use the letters A-Z and a-z, "
                                  "digits and '_'", start)
        if first is None:
            raise statement.error("a statement starts with a name, 'd/dt(', 'covariate' or 'dose'", start)
        word, after = first.group(1), first.end()
        follows = text[after:after + 1]
        if word == "d" and follows == "/":
            self._read_derivative(statement)
        elif word in _KEYWORDS and follows != "=":
            (self._read_dose if word == "dose" else self._read_covariate)(statement)
        elif follows == "'":
            self._read_prime(statement, word, first.start(1), after)
        elif follows == "(" and word == "corr" and not _INITIAL.match(text, after):
            self._read_correlation(statement)
        elif follows == "(":
            self._read_initial(statement, word, first.start(1), after)
        elif follows == "~":
            self._read_error_model(statement, word, first.start(1), after + 1)
        elif follows == "=":
            self._read_assignment(statement, word, first.start(1), after + 1)
        else:
            raise statement.error(f"expected '=' after '{word}'", after)

    # --- statement forms -------------------------------------------------------------------------

    def _read_assignment(self, statement: Statement, name: str, at: int, start: int) -> None:
        text = statement.text
        number = _NUMBER.match(text, _BLANKS.match(text, start).end())
        if number is not None:
            rest = _BLANKS.match(text, number.end()).end()
            if rest == len(text) or text[rest] in "[~" or _FIXED.match(text, rest) or _IN.match(text, rest):
                self._read_parameter(statement, name, at, number)
                return
        self._define(statement, name, at, "derived")
        self.derived[name] = self._expression(statement, start, len(text), "'='")

    def _read_parameter(self, statement: Statement, name: str, at: int, number: re.Match) -> None:
        text = statement.text
        typical = _number_value(statement, number)
        unit, i, place = _read_unit(statement, number.end())
        omega = iov = 0.0
        bounds = None
        fixed = False
        if text.startswith("~", i):
            if typical <= 0:
                raise statement.error(
                    f"'{name}' has log-normal IIV, so its typical value must be positive, "
                    f"not {number.group()}", number.start())
            omega, iov = _read_variability(statement, name, i + 1)
        elif in_word := _IN.match(text, i):
            bounds = _read_bounds(statement, name, in_word.end())
            low, high = bounds
            if not low < typical < high:
                raise statement.error(
                    f"the typical value of '{name}' ({typical:g}) must lie strictly inside its bounds "
                    f"({low:g}, {high:g})", number.start())
        elif fixed_word := _FIXED.match(text, i):
            fixed = True
            _expect_end(statement, _BLANKS.match(text, fixed_word.end()).end(),
                        f"'fixed' in the definition of '{name}'")
        else:
            _expect_end(statement, i, f"the value of '{name}'",
                        "; expected a unit in [brackets], '~ OMEGA', 'in (LOW, HIGH)' or 'fixed'")
        kind = "constant" if fixed else "parameter"
        self._define(statement, name, at, kind)
        if fixed:
            self.constants[name] = typical
        else:
            self.parameters.append(Parameter(name, typical, unit, omega, statement.at(at)[0], iov, bounds))
        if unit is not None:
            self.units[name] = unit
            self.unit_places[name] = statement.at(place)

    def _read_covariate(self, statement: Statement) -> None:
        text = statement.text
        header = _COVARIATE.match(text)
        if header is None:
            raise statement.error("a covariate is written 'covariate NAME = VALUE [unit]'",
                                  _BLANKS.match(text).end())
        name, at = header.group(1), header.start(1)
        start = _BLANKS.match(text, header.end()).end()
        number = _NUMBER.match(text, start)
        if number is None:
            raise statement.error(f"the reference value of covariate '{name}' must be a number", start)
        reference = _number_value(statement, number)
        unit, i, place = _read_unit(statement, number.end())
        if text.startswith("~", i):
            raise statement.error(f"covariate '{name}' cannot have IIV; its values come from the data", i)
        _expect_end(statement, i, f"the reference value of covariate '{name}'")
        self._define(statement, name, at, "covariate")
        self.covariates.append(Covariate(name, reference, unit, statement.at(at)[0]))
        if unit is not None:
            self.units[name] = unit
            self.unit_places[name] = statement.at(place)

    def _read_derivative(self, statement: Statement) -> None:
        header = _DERIVATIVE.match(statement.text)
        if header is None:
            raise statement.error("a state equation is written 'd/dt(STATE) = EXPRESSION'",
                                  _BLANKS.match(statement.text).end())
        self._read_state_equation(statement, header.group(1), header.start(1), header.end())

    def _read_prime(self, statement: Statement, name: str, at: int, quote: int) -> None:
        header = _PRIME.match(statement.text, quote)
        if header is None:
            raise statement.error(f"a state equation is written \"{name}' = EXPRESSION\"", quote)
        self._read_state_equation(statement, name, at, header.end())

    def _read_state_equation(self, statement: Statement, name: str, at: int, start: int) -> None:
        if name in self.definitions and self.definitions[name][0] != "state":
            kind, line, _ = self.definitions[name]
            raise statement.error(f"'{name}' is {_KIND_NAMES[kind]} (line {line}), not a state, "
                                  "so it cannot have a state equation", at)
        if name in self.rhs:
            raise statement.error(
                f"'{name}' already has a state equation on line {self.definitions[name][1]}", at)
        self._define(statement, name, at, "state")
        self.rhs[name] = self._expression(statement, start, len(statement.text), "'='")

    def _read_initial(self, statement: Statement, name: str, at: int, parenthesis: int) -> None:
        header = _INITIAL.match(statement.text, parenthesis)
        if header is None:
            raise statement.error(f"an initial condition is written '{name}(0) = EXPRESSION'", parenthesis)
        line, column = statement.at(at)
        if name in self.initial:
            raise ModelError(f"'{name}' already has an initial condition on line {self.initial[name][1]}",
                             line, column)
        self.uses.append(_Use(name, line, column, "initial"))
        self.initial[name] = (self._expression(statement, header.end(), len(statement.text), "'='"), line)

    def _read_correlation(self, statement: Statement) -> None:
        text = statement.text
        header = _CORR.match(text)
        if header is None:
            raise statement.error("a correlation is written 'corr(A, B) = R', as in 'corr(CL, V) = 0.4'",
                                  _BLANKS.match(text).end())
        first, second = (_Reference(header.group(k), *statement.at(header.start(k))) for k in (1, 2))
        if first.name == second.name:
            raise statement.error(f"a correlation needs two different parameters, not '{first.name}' twice",
                                  header.start(2))
        for given in self.correlations:
            if {given.first.name, given.second.name} == {first.name, second.name}:
                raise statement.error(f"the correlation of '{first.name}' and '{second.name}' is already given "
                                      f"on line {given.first.line}", header.start(1))
        start = _BLANKS.match(text, header.end()).end()
        number = _NUMBER.match(text, start)
        if number is None:
            raise statement.error(f"the correlation of '{first.name}' and '{second.name}' must be a number "
                                  "between -1 and 1", start)
        value = _number_value(statement, number)
        _expect_end(statement, _BLANKS.match(text, number.end()).end(),
                    f"the correlation of '{first.name}' and '{second.name}'")
        if not -1 < value < 1:
            raise statement.error(f"the correlation of '{first.name}' and '{second.name}' must lie strictly "
                                  f"between -1 and 1, not {value:g}", number.start())
        self.correlations.append(_Correlation(first, second, value, re.sub(r"[ \t]", "", number.group())))

    def _read_error_model(self, statement: Statement, name: str, at: int, start: int) -> None:
        line, column = statement.at(at)
        if name in self.errors:
            raise ModelError(f"'{name}' already has a residual error model on line {self.errors[name].line}",
                             line, column)
        self.uses.append(_Use(name, line, column, "error"))
        self.error_targets[name] = (line, column)
        tree, source = _parse(statement, start, len(statement.text), "'~'")
        self.errors[name] = _ErrorModelReader(statement, source, line).read(tree)

    def _read_dose(self, statement: Statement) -> None:
        text = statement.text
        header = _DOSE.match(text)
        if header is None:
            after_keyword = _BLANKS.match(text, _BLANKS.match(text).end() + len("dose")).end()
            raise statement.error("expected the name of a state after 'dose'", after_keyword)
        line, column = statement.at(header.start(1))
        if self.dose is not None:
            raise ModelError(f"the dose compartment is already given on line {self.dose.line}",
                             *statement.at(_BLANKS.match(text).end()))
        self.uses.append(_Use(header.group(1), line, column, "dose"))
        options: dict[str, _Expression] = {}
        i = _BLANKS.match(text, header.end()).end()
        if i == header.end() and i < len(text):
            raise statement.error(f"unexpected '{text[i]}' after the dosed state", i)
        depth = _bracket_depths(text)
        while i < len(text):
            option = _OPTION.match(text, i)
            if option is None:
                raise statement.error("expected 'bioavailability=EXPRESSION', 'lag=EXPRESSION' or "
                                      "'duration=EXPRESSION' after the dosed state", i)
            key = option.group(1)
            if key not in _DOSE_OPTIONS:
                raise statement.error(f"unknown dose option '{key}'; the options are bioavailability=, "
                                      "lag= and duration=", i)
            if key in options:
                raise statement.error(f"'{key}=' is given twice", i)
            end = next((m.start() for m in _NEXT_OPTION.finditer(text, option.end())
                        if depth[m.start()] == 0), len(text))
            options[key] = self._expression(statement, option.end(), end, f"'{key}='")
            i = _BLANKS.match(text, end).end()
        self.dose = _Dose(header.group(1), options.get("bioavailability"), options.get("lag"), line,
                          options.get("duration"))

    # --- helpers ---------------------------------------------------------------------------------

    def _define(self, statement: Statement, name: str, at: int, kind: str) -> None:
        line, column = statement.at(at)
        if name == "t":
            raise ModelError("'t' is the time in hours and cannot be defined", line, column)
        if name in FUNCTIONS:
            raise ModelError(f"'{name}' is a function and cannot be defined", line, column)
        if name in _KEYWORDS:
            raise ModelError(f"'{name}' is a keyword and cannot be used as a name", line, column)
        if name in self.definitions:
            raise ModelError(f"'{name}' is already defined on line {self.definitions[name][1]}",
                             line, column)
        self.definitions[name] = (kind, line, column)

    def _expression(self, statement: Statement, start: int, end: int, after: str) -> _Expression:
        tree, source = _parse(statement, start, end, after)
        builder = _ExpressionBuilder(statement, source)
        value = builder.build(tree.body)
        self.uses.extend(_Use(r.name, r.line, r.column, "reference") for r in builder.references)
        first = _BLANKS.match(statement.text, start).end()
        written = Written(statement.text[first:end].strip(" \t"), _written(tree.body, source),
                          *statement.at(first))
        return _Expression(value, tuple(builder.references), written)


def _parse(statement: Statement, start: int, end: int, after: str) -> tuple[ast.Expression, ExpressionSource]:
    """The Python syntax tree of a checked expression (over placeholder names) and its source map."""
    source = expression_source(statement, start, end, after)
    try:
        tree = ast.parse(source.source, mode="eval")
    except (RecursionError, MemoryError):  # CPython's parser gives up on deep nesting with either
        raise statement.error(f"the expression is nested more than {MAX_NESTING} levels deep", start) from None
    except SyntaxError as error:
        offset = min(max((error.offset or 1) - 1, 0), len(source.origin) - 1)
        raise statement.error("this expression is not valid", source.origin[offset]) from None
    return tree, source


def _number_value(statement: Statement, number: re.Match) -> float:
    """The float a (possibly signed) number literal stands for; it must fit a float64."""
    return check_number(statement, re.sub(r"[ \t]", "", number.group()), number.start())


def _read_unit(statement: Statement, i: int) -> tuple[str | None, int, int]:
    """An optional ``[unit]`` at ``i``: the unit (or None), the index after it and its blanks, and the index
    where the unit's text starts."""
    text = statement.text
    i = _BLANKS.match(text, i).end()
    if not text.startswith("[", i):
        return None, i, i
    close = text.index("]", i)  # brackets are balanced within a statement
    inner = text.find("[", i + 1, close)
    if inner >= 0:
        raise statement.error("a unit cannot contain square brackets", inner)
    unit = text[i + 1:close].strip(" \t")
    if not unit:
        raise statement.error("the unit between '[' and ']' is empty", i)
    return unit, _BLANKS.match(text, close + 1).end(), _BLANKS.match(text, i + 1).end()


def _read_variability(statement: Statement, name: str, i: int) -> tuple[float, float]:
    """The IIV after ``~`` and the optional ``iov KAPPA`` after it: (omega, kappa), SDs of the log."""
    text = statement.text
    omega, end = _read_spread(statement, name, "IIV", "'~'", i)
    kappa = 0.0
    if iov_word := _IOV.match(text, end):
        kappa, end = _read_spread(statement, name, "IOV", "'iov'", iov_word.end())
    if _IN.match(text, end):
        raise statement.error(f"'{name}' has IIV, so it cannot have bounds: 'in (LOW, HIGH)' is for parameters "
                              "without IIV", end)
    _expect_end(statement, end, f"the {'IOV' if kappa else 'IIV'} of '{name}'")
    return omega, kappa


def _read_spread(statement: Statement, name: str, what: str, after: str, i: int) -> tuple[float, int]:
    """An SD of the log at ``i``: ``S``, ``N%`` (a CV), ``variance(V)`` or ``sd(S)``; (omega, index after)."""
    text = statement.text
    start = _BLANKS.match(text, i).end()
    call = _SPREAD_CALL.match(text, start)
    number = _NUMBER.match(text, call.end() if call else start)
    if number is None:
        raise statement.error(f"expected the {what} of '{name}' after {after}: the SD of the log such as 0.3, "
                              "a CV such as 30%, variance(0.09) or sd(0.3)", call.end() if call else start)
    value = _number_value(statement, number)
    end = _BLANKS.match(text, number.end()).end()
    if value < 0:
        raise statement.error(f"the {what} of '{name}' cannot be negative", number.start())
    if call:
        if not text.startswith(")", end):
            raise statement.error(f"{call.group(1)}() takes one number", end)
        end = _BLANKS.match(text, end + 1).end()
        omega = math.sqrt(value) if call.group(1) == "variance" else value
    elif text.startswith("%", end):
        cv = value / 100
        # ln(1 + cv²) without overflowing cv² (a CV of 1e200 % must be 'too large', not an OverflowError)
        omega = math.sqrt(math.log1p(cv * cv) if cv < 1e100 else math.inf)
        end = _BLANKS.match(text, end + 1).end()
    else:
        omega = value
    if omega > MAX_OMEGA:
        raise statement.error(f"the {what} of '{name}' is too large: its SD of the log would be {omega:.4g}, "
                              f"above the limit of {MAX_OMEGA:g}", number.start())
    return omega, end


def _read_bounds(statement: Statement, name: str, i: int) -> tuple[float, float]:
    """``(LOW, HIGH)`` after ``in``: numbers, ``inf`` or ``-inf``, with LOW < HIGH."""
    text = statement.text
    form = "bounds are written 'in (LOW, HIGH)', as in 'in (-0.99, inf)'"
    at = _BLANKS.match(text, i).end()
    if not text.startswith("(", at):
        raise statement.error(form, at)
    values: list[float] = []
    for separator in ",)":
        at = _BLANKS.match(text, at + 1).end()
        bound = _BOUND.match(text, at)
        if bound is None:
            raise statement.error(form, at)
        written = re.sub(r"[ \t]", "", bound.group())
        values.append(float(written) if written.lstrip("+-") == "inf" else _number_value(statement, bound))
        at = _BLANKS.match(text, bound.end()).end()
        if not text.startswith(separator, at):
            raise statement.error(form, at)
    low, high = values
    if not low < high:
        raise statement.error(f"the lower bound of '{name}' must be below its upper bound, not ({low:g}, {high:g})",
                              _BLANKS.match(text, i).end())
    _expect_end(statement, _BLANKS.match(text, at + 1).end(), f"the bounds of '{name}'")
    return low, high


def _expect_end(statement: Statement, i: int, what: str, hint: str = "") -> None:
    """Nothing may follow ``what`` in the statement."""
    if i < len(statement.text):
        found = _WORD.match(statement.text, i).group()
        raise statement.error(f"unexpected '{found}' after {what}{hint}", i)


def _bracket_depths(text: str) -> list[int]:
    """How many brackets are open before each character of ``text``."""
    depths, depth = [], 0
    for char in text:
        depth -= char in ")]"
        depths.append(depth)
        depth += char in "(["
    return depths


class _ExpressionBuilder:
    """Walks the syntax tree of one expression into sympy, through a whitelist of node types."""

    def __init__(self, statement: Statement, source: ExpressionSource) -> None:
        self.statement = statement
        self.source = source
        self.references: list[_Reference] = []
        self.depth = 0

    def build(self, node: ast.expr) -> sp.Expr:
        """The sympy value of an arithmetic node; it must be a finite real number where it is one.

        A chain of ``+ - * /`` (``a + b + c``, left-nested in the syntax tree) is one level, built in
        a loop; anything else nested in a node is one level deeper, up to :data:`MAX_NESTING`.
        """
        if self.depth >= MAX_NESTING:
            raise self._error(node, f"the expression is nested more than {MAX_NESTING} levels deep")
        self.depth += 1
        try:
            if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
                return self._chain(node)
            return self._checked(node, self._arithmetic(node))
        finally:
            self.depth -= 1

    def _chain(self, node: ast.BinOp) -> sp.Expr:
        """``a + b - c * d ...``: the left spine of the syntax tree, iteratively, one sympy Add or Mul per run
        of ``+ -`` or ``* /`` (a 1,000-term sum is one Add, not 1,000 growing ones)."""
        spine = []
        while isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            spine.append(node)
            node = node.left
        operands = [self.build(node)]
        additive = isinstance(spine[-1].op, ast.Add | ast.Sub)
        for i, step in enumerate(reversed(spine)):
            if isinstance(step.op, ast.Add | ast.Sub) != additive:
                operands = [self._checked(spine[len(spine) - i], _combine(operands, additive))]
                additive = not additive
            right = self.build(step.right)
            operands.append(-right if isinstance(step.op, ast.Sub) else 1 / right if isinstance(step.op, ast.Div)
                            else right)
        return self._checked(spine[0], _combine(operands, additive))

    def _checked(self, node: ast.expr, value: sp.Expr) -> sp.Expr:
        """``value`` if it is finite; sympy folds numbers (``c*1e308*10``), so coefficients are checked too."""
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise self._error(node, "this expression is undefined (a division by zero or the log of zero)")
        if value.is_number:
            try:
                number = float(value)
            except TypeError:
                raise self._error(node, "this expression is not a real number") from None
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise self._error(node, "this expression is too large for a floating-point number")
        elif value.is_Add or value.is_Mul:
            coefficient = value.as_coeff_Add()[0] if value.is_Add else value.as_coeff_Mul()[0]
            if not is_float64(coefficient):
                raise self._error(node, "a number in this expression is too large for a floating-point number")
        return value

    def _arithmetic(self, node: ast.expr) -> sp.Expr:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return _power(self.build(node.left), self.build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            text = self.source.numbers[node.col_offset]
            return sp.Integer(int(text)) if text.isdigit() else sp.Float(text)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Compare):
            raise self._error(node, "a comparison can only be the condition of where(condition, a, b)")
        raise self._error(node, "this is not part of the expression language")

    def _name(self, node: ast.Name) -> sp.Expr:
        name = self.source.names[node.col_offset]
        if name in FUNCTIONS:
            raise self._error(node, f"'{name}' is a function; call it as {name}(...)")
        line, column = self._where(node)
        self.references.append(_Reference(name, line, column))
        return TIME if name == "t" else symbol(name)

    def _call(self, node: ast.Call) -> sp.Expr:
        name = self.source.names[node.func.col_offset]  # the grammar admits only a name before '('
        count = len(node.args)
        if name not in FUNCTIONS:
            raise self._error(node.func, f"unknown function '{name}'; the functions are "
                                         f"{', '.join(FUNCTIONS[:-1])} and {FUNCTIONS[-1]}")
        if name in _UNARY_FUNCTIONS and count != 1:
            raise self._error(node.func, f"{name}() takes 1 argument, not {count}")
        if name in _VARIADIC_FUNCTIONS and count < 2:
            raise self._error(node.func, f"{name}() takes at least 2 arguments, not {count}")
        if name == "where" and count != 3:
            raise self._error(node.func, f"where() takes 3 arguments (condition, a, b), not {count}")
        if name == "where":
            condition = self._condition(node.args[0])
            branches = (self.build(node.args[1]), condition), (self.build(node.args[2]), True)
            return self._real(node, lambda: sp.Piecewise(*branches))
        if name in _UNARY_FUNCTIONS:
            return _UNARY_FUNCTIONS[name](self.build(node.args[0]))
        return _VARIADIC_FUNCTIONS[name](*(self._comparable(argument, f"{name}()") for argument in node.args))

    def _condition(self, node: ast.expr) -> sp.Basic:
        if not isinstance(node, ast.Compare):
            raise self._error(node, "the first argument of where() must be a comparison such as 'conc > 2'")
        if len(node.ops) > 1:
            operator = _COMPARISON_SIGN.search(self.source.source, node.comparators[0].end_col_offset).start()
            raise self.statement.error("chained comparisons such as 'a < b < c' are not supported; "
                                       "nest where() instead", self.source.origin[operator])
        compare = _COMPARISONS[type(node.ops[0])]
        left, right = (self._comparable(side, "a comparison") for side in (node.left, node.comparators[0]))
        return self._real(node, lambda: compare(left, right))

    def _real(self, node: ast.expr, make: Callable[[], sp.Basic]) -> sp.Basic:
        """``make()``; sympy refuses to compare what is not real in some branch (the log of a negative
        where() branch), and that is the user's ModelError."""
        try:
            return make()
        except (TypeError, ValueError):
            raise self._error(node, "this compares something that is not a real number in some case (the log or "
                                    "square root of something negative), which cannot be compared") from None

    def _comparable(self, node: ast.expr, where: str) -> sp.Expr:
        """An operand of min, max or a comparison: sympy refuses one that can never be real, and so do we."""
        value = self.build(node)
        if value.is_extended_real is False:
            raise self._error(node, f"this is never a real number (the log or square root of something that cannot "
                                    f"be positive), so it cannot be used in {where}")
        return value

    def _where(self, node: ast.expr) -> tuple[int, int]:
        return self.statement.at(self.source.origin[node.col_offset])

    def _error(self, node: ast.expr, message: str) -> ModelError:
        return ModelError(message, *self._where(node))


def _written(node: ast.expr, source: ExpressionSource) -> sp.Expr:
    """The expression of a checked syntax tree as an unevaluated sympy tree: the user's structure, nothing
    folded or reordered (``a - b`` is ``a + (-1)*b`` and ``a / b`` is ``a * b^-1``, as sympy writes them)."""
    def build(node: ast.expr) -> sp.Basic:
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            # a run of + - (or * /) is one flat sum (product), built in a loop: a 1,000-term sum is no recursion
            additive = isinstance(node.op, ast.Add | ast.Sub)
            spine = []
            while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub if additive
                                                             else ast.Mult | ast.Div):
                spine.append(node)
                node = node.left
            parts = [build(node)]
            for step in reversed(spine):
                right = build(step.right)
                if isinstance(step.op, ast.Sub):
                    right = sp.Mul(sp.S.NegativeOne, right, evaluate=False)
                elif isinstance(step.op, ast.Div):
                    right = sp.Pow(right, sp.S.NegativeOne, evaluate=False)
                parts.append(right)
            return (sp.Add if additive else sp.Mul)(*parts, evaluate=False)
        if isinstance(node, ast.BinOp):
            return sp.Pow(build(node.left), build(node.right), evaluate=False)
        if isinstance(node, ast.UnaryOp):
            operand = build(node.operand)
            return sp.Mul(sp.S.NegativeOne, operand, evaluate=False) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Constant):
            text = source.numbers[node.col_offset]
            return sp.Integer(int(text)) if text.isdigit() else sp.Float(text)
        if isinstance(node, ast.Name):
            name = source.names[node.col_offset]
            return TIME if name == "t" else symbol(name)
        if isinstance(node, ast.Compare):
            return _COMPARISONS[type(node.ops[0])](build(node.left), build(node.comparators[0]), evaluate=False)
        name = source.names[node.func.col_offset]  # a call: the builder has already checked it
        arguments = [build(argument) for argument in node.args]
        if name == "where":
            return sp.Piecewise((arguments[1], arguments[0]), (arguments[2], True), evaluate=False)
        function = _UNARY_FUNCTIONS.get(name) or _VARIADIC_FUNCTIONS[name]
        return function(*arguments, evaluate=False)

    return build(node)


def _combine(operands: list[sp.Expr], additive: bool) -> sp.Expr:
    """The sum or product of ``operands`` in one sympy call."""
    return sp.Add(*operands) if additive else sp.Mul(*operands)


def is_float64(number: sp.Expr) -> bool:
    """Whether a sympy number is a finite float64 (sympy's own numbers have no such limit)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """``base ** exponent``; numeric powers with big exponents in floating point (9**9**9 is no DoS)."""
    if base.is_number and exponent.is_number and abs(float(exponent)) > _EXACT_POWER_LIMIT:
        return base.evalf() ** exponent.evalf()
    return base**exponent


class _ErrorModelReader:
    """Reads the right-hand side of ``OUTPUT ~ ...`` into an :class:`ErrorModel`."""

    def __init__(self, statement: Statement, source: ExpressionSource, line: int) -> None:
        self.statement = statement
        self.source = source
        self.line = line

    def read(self, tree: ast.Expression) -> ErrorModel:
        node = tree.body
        sum_of_two = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
        terms = [node.left, node.right] if sum_of_two else [node]
        parts = [self._term(term) for term in terms]
        if not sum_of_two:
            kind, values = parts[0]
            return ErrorModel(kind, line=self.line, **dict(zip(_ERROR_FIELDS[kind], values, strict=True)))
        if {kind for kind, _ in parts} != {"additive", "proportional"}:
            raise self._error(terms[1], "only 'proportional(b) + additive(a)' can be added")
        values = {kind: values[0] for kind, values in parts}
        return ErrorModel("combined", additive=values["additive"],
                          proportional=values["proportional"], line=self.line)

    def _term(self, node: ast.expr) -> tuple[str, list[float]]:
        if not isinstance(node, ast.Call):
            raise self._error(node, "expected a residual error model such as additive(0.5), "
                                    "proportional(0.1), combined(0.5, 0.1) or exponential(0.2)")
        kind = self.source.names[node.func.col_offset]
        if kind not in ERROR_MODELS:
            raise self._error(node.func, f"unknown error model '{kind}'; the error models are "
                                         "additive, proportional, combined and exponential")
        expected = len(_ERROR_FIELDS[kind])
        if len(node.args) != expected:
            raise self._error(node.func, f"{kind}() takes {expected} argument{'s' * (expected > 1)}, "
                                         f"not {len(node.args)}")
        return kind, [self._magnitude(argument) for argument in node.args]

    def _magnitude(self, node: ast.expr) -> float:
        sign, literal = 1.0, node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            sign, literal = (-1.0 if isinstance(node.op, ast.USub) else 1.0), node.operand
        if not (isinstance(literal, ast.Constant) and type(literal.value) in (int, float)):
            raise self._error(node, "the magnitude of a residual error must be a number")
        value = sign * float(self.source.numbers[literal.col_offset])
        if value <= 0:
            raise self._error(node, f"the magnitude of a residual error must be positive, not {value:g}")
        return value

    def _error(self, node: ast.expr, message: str) -> ModelError:
        return self.statement.error(message, self.source.origin[node.col_offset])


_ERROR_FIELDS = {"additive": ("additive",), "proportional": ("proportional",),
                 "combined": ("additive", "proportional"), "exponential": ("sigma",)}


class _Checker:
    """Whole-model checks on what a :class:`_Reader` collected, then the :class:`ModelSpec`."""

    def __init__(self, reader: _Reader, first: Statement) -> None:
        self.reader = reader
        self.first = first
        self.kinds = {name: kind for name, (kind, _, _) in reader.definitions.items()}
        self.states = tuple(reader.rhs)

    def spec(self, text: str, name: str | None) -> ModelSpec:
        reader = self.reader
        for use in reader.uses:
            self._check_use(use)
        if not self.states:
            raise self.first.error("the model has no state equation; add one such as "
                                   "'d/dt(central) = -k*central'", _BLANKS.match(self.first.text).end())
        order = self._derived_order()
        dynamics = self._dynamics(order)
        outputs = tuple(n for n in reader.derived if any(d != "t" for d in dynamics[n]))
        for output in reader.errors:
            self._check_output(output, outputs)
        for state, (expression, _) in reader.initial.items():
            self._check_static(expression, f"the initial condition of '{state}'", dynamics)
        dose = None
        if reader.dose is not None:
            bioavailability, lag, duration = reader.dose.bioavailability, reader.dose.lag, reader.dose.duration
            for expression, what in ((bioavailability, "the bioavailability"), (lag, "the lag time"),
                                     (duration, "the infusion duration")):
                if expression is not None:
                    self._check_static(expression, what, dynamics)
            dose = DoseTarget(reader.dose.state,
                              sp.Integer(1) if bioavailability is None else bioavailability.value,
                              sp.Integer(0) if lag is None else lag.value, reader.dose.line,
                              None if duration is None else duration.value)
        spec = ModelSpec(
            text=text, name=name, parameters=tuple(reader.parameters), constants=dict(reader.constants),
            covariates=tuple(reader.covariates),
            derived={n: e.value for n, e in reader.derived.items()},
            states=self.states, rhs={s: e.value for s, e in reader.rhs.items()},
            initial={s: reader.initial[s][0].value if s in reader.initial else sp.Integer(0)
                     for s in self.states},
            outputs=outputs, errors=dict(reader.errors), dose=dose, units=dict(reader.units),
            lines={n: line for n, (_, line, _) in reader.definitions.items()},
            correlations=self._correlations(), written=self._written(), unit_places=dict(reader.unit_places))
        return check_units(spec)

    def _written(self) -> dict[str, Written]:
        """Every right-hand side as written, keyed as :attr:`ModelSpec.written` says."""
        reader = self.reader
        written = {name: expression.written for name, expression in reader.derived.items()}
        written.update({f"d/dt({state})": expression.written for state, expression in reader.rhs.items()})
        written.update({f"{state}(0)": expression.written for state, (expression, _) in reader.initial.items()})
        if reader.dose is not None:
            for key in _DOSE_OPTIONS:
                expression = getattr(reader.dose, key)
                if expression is not None:
                    written[key] = expression.written
        return written

    def _correlations(self) -> dict[tuple[str, str], float]:
        """Each ``corr`` pair -> R, after checking both are parameters with IIV and Ω stays positive definite."""
        omega = {p.name: p.omega for p in self.reader.parameters}
        random = [p.name for p in self.reader.parameters if p.omega > 0]
        matrix = np.eye(len(random))
        found: dict[tuple[str, str], float] = {}
        for correlation in self.reader.correlations:
            pair = (correlation.first, correlation.second)
            for reference in pair:
                self._check_correlated(reference, omega)
            i, j = (random.index(reference.name) for reference in pair)
            matrix[i, j] = matrix[j, i] = correlation.value
            try:
                np.linalg.cholesky(matrix)
            except np.linalg.LinAlgError:
                first, second = (reference.name for reference in pair)
                raise ModelError(f"corr({first}, {second}) = {correlation.text} leaves the IIV covariance Ω not "
                                 "positive definite, together with the correlations before it",
                                 correlation.first.line, correlation.first.column) from None
            found[correlation.first.name, correlation.second.name] = correlation.value
        return found

    def _check_correlated(self, reference: _Reference, omega: dict[str, float]) -> None:
        name = reference.name
        kind = self.kinds.get(name)
        if kind is None:
            message = f"'{name}' is not defined{_suggest(name, list(omega))}"
        elif kind != "parameter":
            message = f"'{name}' is {_KIND_NAMES[kind]}, not a parameter with IIV, so it cannot have a correlation"
        elif omega[name] == 0:
            message = f"'{name}' has no IIV, so it cannot have a correlation; give it one with '~ OMEGA'"
        else:
            return
        raise ModelError(message, reference.line, reference.column)

    def _check_use(self, use: _Use) -> None:
        kind = self.kinds.get(use.name)
        if use.role == "reference" and kind is None and use.name != "t":
            candidates = [*self.kinds, "t", *FUNCTIONS]
            raise ModelError(f"'{use.name}' is not defined{_suggest(use.name, candidates)}",
                             use.line, use.column)
        if use.role == "error" and kind is None:
            raise ModelError(f"'{use.name}' is not defined{_suggest(use.name, list(self.kinds))}",
                             use.line, use.column)
        if use.role in ("initial", "dose") and kind is None:
            message = (f"'{use.name}' has an initial condition but no state equation" if use.role == "initial"
                       else f"'{use.name}' is not a state of the model")
            raise ModelError(message + _suggest(use.name, list(self.states)), use.line, use.column)
        if use.role in ("initial", "dose") and kind != "state":
            consequence = ("it cannot have an initial condition" if use.role == "initial"
                           else "it cannot receive a dose")
            raise ModelError(f"'{use.name}' is {_KIND_NAMES[kind]}, not a state, so {consequence}",
                             use.line, use.column)

    def _derived_order(self) -> list[str]:
        """The derived names with every name after those it uses; a cycle is an error."""
        derived = self.reader.derived
        uses = {n: [r.name for r in e.references if r.name in derived] for n, e in derived.items()}
        try:
            return list(graphlib.TopologicalSorter(uses).static_order())
        except graphlib.CycleError as error:
            raise self._cycle_error(error.args[1][:-1], uses) from None

    def _cycle_error(self, cycle: list[str], uses: dict[str, list[str]]) -> ModelError:
        """Name the cycle from its earliest-defined name, in the direction of use (A uses B uses ... A)."""
        definition_order = list(self.reader.derived)
        if len(cycle) > 1 and cycle[1] not in uses[cycle[0]]:
            cycle = cycle[::-1]
        start = cycle.index(min(cycle, key=definition_order.index))
        cycle = cycle[start:] + cycle[:start]
        _, line, column = self.reader.definitions[cycle[0]]
        return ModelError(f"'{cycle[0]}' is defined in terms of itself: {' -> '.join([*cycle, cycle[0]])}",
                          line, column)

    def _dynamics(self, order: list[str]) -> dict[str, list[str]]:
        """For each derived name, the states (and ``t``) it depends on, directly or through others."""
        derived = self.reader.derived
        dynamics: dict[str, list[str]] = {}
        for name in order:
            found: dict[str, None] = {}
            for reference in derived[name].references:
                if reference.name == "t" or self.kinds.get(reference.name) == "state":
                    found[reference.name] = None
                elif reference.name in derived:
                    found.update(dict.fromkeys(dynamics[reference.name]))
            dynamics[name] = list(found)
        return dynamics

    def _check_output(self, output: str, outputs: tuple[str, ...]) -> None:
        if output in outputs:
            return
        line, column = self.reader.error_targets[output]
        kind = self.kinds[output]
        if kind == "state":
            message = (f"'{output}' is a state, not an output; put the residual error on an output "
                       f"such as 'conc = {output} / V'")
        elif kind == "derived":
            message = f"'{output}' is not an output because it does not depend on any state"
        else:
            message = (f"'{output}' is {_KIND_NAMES[kind]}, not an output; a residual error belongs to "
                       "a derived quantity that depends on a state")
        raise ModelError(message, line, column)

    def _check_static(self, expression: _Expression, what: str, dynamics: dict[str, list[str]]) -> None:
        """``what`` is fixed before the simulation starts: no states, no time, nothing that uses them."""
        for reference in expression.references:
            name = reference.name
            if name == "t":
                reason = "the time 't'"
            elif self.kinds.get(name) == "state":
                reason = f"the state '{name}'"
            elif dynamics.get(name):
                source = dynamics[name][0]
                reason = f"'{name}', which depends on " + (
                    "the time 't'" if source == "t" else f"the state '{source}'")
            else:
                continue
            raise ModelError(f"{what} cannot depend on {reason}", reference.line, reference.column)


def _suggest(name: str, candidates: list[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest candidate, ignoring case first, or nothing."""
    same_letters = [c for c in candidates if c.lower() == name.lower()]
    close = same_letters or difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
