"""Units of a model: read its ``[unit]`` texts, check that they agree, and give every result its unit.

Units are the user's and koopnb never converts them.  A model whose units do not agree — a clearance in
mL/min beside a volume in L while time is in hours — is a :class:`~koopnb.errors.ModelError` that names the
units, never a silent factor of 0.06.  Unit texts are read by pint (``L/hr`` and ``L/h`` are the same unit
and both read ``L/h``; ``1/h``, ``h-1``, ``/h``, ``µg``, ``ug``, ``mcg``, ``mL/min/1.73m2``, ``%``, ``kg^0.5``
are all understood); a text pint cannot read is an error at its line and column.  The check works on the
model's expressions as written (:class:`koopnb.model.spec.Written`), never on its text.

What is checked, and what is assumed:

* Time is in hours (``t`` and the regimen language are hours).  States hold amounts in the dose's unit; until
  a regimen says which, that is an abstract *amount*, unless the model's own units fix it (a Michaelis
  constant in mg/L added to ``central/V`` with V in L makes the amounts mg, :attr:`ModelSpec.amount_unit`).
* Every term of ``d/dt(STATE)`` must be in amount/h, so rate constants are 1/h and clearances are volume/h
  over volumes; ``STATE(0)`` is an amount, ``lag`` and ``duration`` are hours, ``bioavailability`` a number.
  Terms of a sum, arguments of ``min``/``max``, branches of ``where`` and the sides of a comparison must
  agree; only a number can raise a quantity with a unit.  ``exp`` and ``log`` of a number without unit give one;
  of anything else (``log(conc)`` is common in effect models) their unit is unknown, not an error.
* A name written without a unit is unknown: the terms it enters are not checked (a model that writes no
  units passes, and the check is on what the user declared: a term in which no written unit takes part,
  such as ``-x`` or ``max(x, 0.5)``, is not checked either).
* Bare numbers are dimensionless, with the conventions of published covariate models: a number added to or
  compared with a quantity takes its unit (``Km + conc``, ``conc > 2``); where covariates and numbers meet
  (``(WT/70)^0.75``, ``(CRCL/120)^0.8``, ``1 + 0.0533*(PNA - 4.5)``, ``0.7^DIAL``, ``TVCL*WT/70``) the numbers
  are reference values and effect sizes in the covariates' units, so the covariate effect is dimensionless.
  A covariate without numbers keeps its unit (``THCL * WT^0.5`` is in THCL's unit times kg^0.5).
* A bare number that scales an output (``conc = 1000*central/V``) is dimensionless too: the output's unit
  would then be wrong by that factor, so write the conversion as a constant with its unit
  (``UG_PER_MG = 1000 [ug/mg] fixed``; ``conc = UG_PER_MG*central/V`` is in µg/L).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

import sympy as sp

from koopnb.errors import ModelError, RegimenError
from koopnb.model.spec import TIME, ModelSpec, Written

HOUR = "h"
"""The model's time unit: koopnb's times are hours."""
_AMOUNT = "koopnb_amount"  # pint's name for the states' unit before a regimen or the model fixes it
MAX_UNIT_TEXT = 60
"""Longest unit text read (longer ones are an error)."""

_SPELLINGS = str.maketrans({"µ": "u", "μ": "u", "·": "*", "⋅": "*", "×": "*", "²": "^2", "³": "^3"})
_CHARACTERS = re.compile(r"[A-Za-z0-9%_ .*/^()-]*")
_NEGATIVE_POWER = re.compile(r"([A-Za-z])-(\d)")  # h-1 is h^-1
_GLUED_POWER = re.compile(r"([A-Za-z])(\d)")  # m2 is m^2
_FACTOR = re.compile(r"(?<![\w.^-])(\d+(?:\.\d+)?)[ ]*([A-Za-z]\w*(?:\^-?\d+(?:\.\d+)?)?)")  # /1.73m^2 is /(1.73*m^2)
_POWER = re.compile(r"\^[ ]*-?\d{1,3}(?:\.\d{1,3})?(?![ ]*[\^\d])")

NUMBER, COVARIATE, MIXED, OTHER = "number", "covariate", "mixed", "other"


@functools.cache
def registry():
    """koopnb's pint unit registry (built on first use: importing pint takes a second)."""
    import pint

    units = pint.UnitRegistry()
    units.define(f"{_AMOUNT} = [{_AMOUNT}]")
    return units


def parse_unit(text: str):
    """The pint quantity (magnitude 1 for a plain unit) a unit text stands for.

    Raises ValueError with the reason when pint cannot read it.  pint's own parser reads the text after
    koopnb has normalised the spellings and checked that every power is a short plain number.
    """
    spelled = text.replace("⁻¹", "^-1").translate(_SPELLINGS).replace("**", "^").strip()
    if len(spelled) > MAX_UNIT_TEXT:
        raise ValueError(f"a unit is at most {MAX_UNIT_TEXT} characters long")
    if not _CHARACTERS.fullmatch(spelled):
        odd = next(c for c in spelled if not _CHARACTERS.fullmatch(c))
        raise ValueError(f"{odd!r} is not part of a unit")
    spelled = _GLUED_POWER.sub(r"\1^\2", _NEGATIVE_POWER.sub(r"\1^-\2", spelled))
    spelled = _FACTOR.sub(r"(\1*\2)", spelled)
    if spelled.startswith("/"):
        spelled = "1" + spelled
    if spelled.count("^") != len(_POWER.findall(spelled)):
        raise ValueError("a power in a unit is a plain number such as ^2 or ^-1")
    units = registry()
    try:
        value = units.parse_expression(spelled)
    except Exception as error:  # pint raises several error types (undefined unit, syntax, tokenizer)
        unknown = getattr(error, "unit_names", None)
        reason = f"pint does not know '{unknown[0]}'" if unknown else "pint cannot read it"
        raise ValueError(f"{reason} (units are written like mg, L/h, 1/h, µg/L, mL/min)") from None
    value = value if isinstance(value, units.Quantity) else units.Quantity(value)
    if not (math.isfinite(value.magnitude) and value.magnitude > 0):
        raise ValueError("it is not a unit")
    return value


def format_unit(quantity) -> str:
    """Plain text for people: ``mg·h/L``, ``L/h``, ``1/h``, ``µg/L``, ``L/h/kg^0.5``; "" when dimensionless."""
    units = registry()
    numerator, denominator = [], []
    for name, power in sorted(quantity.unit_items(), key=lambda item: _rank(item[0], item[1] > 0)):
        symbol = "amount" if name == _AMOUNT else units.get_symbol(name)
        if name.endswith("liter"):
            symbol = symbol[:-1] + "L"
        exponent = abs(power)
        text = symbol if exponent == 1 else f"{symbol}^{exponent:g}"
        (numerator if power > 0 else denominator).append(text)
    if not numerator and not denominator:
        text = ""
    else:
        text = "·".join(numerator) or "1"
        text += "".join(f"/{part}" for part in denominator)
    magnitude = float(quantity.magnitude)
    if not math.isclose(magnitude, 1.0, rel_tol=1e-12):
        text = f"{magnitude:.4g} {text}".strip()
    return text


def _rank(name: str, numerator: bool) -> int:
    """Order of units in a text: amounts, then volumes, then the rest, time last (mg·h/L, L/h/kg)."""
    if name == _AMOUNT:
        dimension = "[amount]"
    else:
        dimensions = dict(registry().get_dimensionality(name))
        dimension = "[volume]" if dimensions == {"[length]": 3} else next(iter(dimensions), "")
    if numerator:
        return {"[amount]": 0, "[mass]": 0, "[substance]": 0, "[volume]": 1, "[time]": 3}.get(dimension, 2)
    return {"[volume]": 0, "[time]": 1}.get(dimension, 2)


# -- the model check ---------------------------------------------------------------------------------
def check_units(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its units normalised and its amount unit, after checking that its units agree.

    A model without any ``[unit]`` is returned as it is (nothing to check, and pint is not loaded).  Raises
    :class:`~koopnb.errors.ModelError` naming the units and the line of the first disagreement.
    """
    if not spec.units:
        return spec
    declared = {}
    for name, text in spec.units.items():
        try:
            declared[name] = parse_unit(text)
        except ValueError as reason:
            raise ModelError(f"unknown unit '{text}' of '{name}': {reason}", *spec.unit_places[name]) from None
    units = registry()
    try:
        _Inference(spec, declared, units.Quantity(1, _AMOUNT)).check()
        amount = None
    except _AmountFound as found:
        amount = found.amount
        _Inference(spec, declared, amount).check()
    normalised = {name: spec.units[name] if not math.isclose(q.magnitude, 1.0) else format_unit(q)
                  for name, q in declared.items()}
    return dataclasses.replace(spec, units=normalised,
                               amount_unit=None if amount is None else format_unit(amount))


class _AmountFound(Exception):
    """The model's units tie the abstract amount to a unit: check again with it."""

    def __init__(self, amount):
        super().__init__()
        self.amount = amount


class _Inference:
    """The unit of each expression of a model, with the checks of the module docstring.

    A value is ``(unit, kind)``: the pint quantity of the unit (None when unknown) and whether the expression
    is a bare number, made of covariates only, of covariates and numbers, or anything else.
    """

    def __init__(self, spec: ModelSpec, declared: dict, amount):
        self.spec = spec
        self.declared = declared
        self.amount = amount
        self.one = registry().Quantity(1)
        self.hour = registry().Quantity(1, HOUR)
        self.covariates = {c.name for c in spec.covariates}
        self.derived: dict[str, tuple[Any, str]] = {}
        self.declaring: dict[str, bool] = {}

    def check(self) -> None:
        spec = self.spec
        for name in spec.derived:
            self.name_value(name)
        for state in spec.states:
            written = spec.written[f"d/dt({state})"]
            for term in _terms(written.expr):
                self._expect(term, self.amount / self.hour, written, f"d/dt({state})")
        for key, written in spec.written.items():
            if key.endswith("(0)"):
                self._expect(written.expr, self.amount, written, f"the initial condition {key}")
            elif key in ("lag", "duration"):
                self._expect(written.expr, self.hour, written, f"the dose's {key}")
            elif key == "bioavailability":
                self._expect(written.expr, self.one, written, "the bioavailability")

    def name_value(self, name: str) -> tuple[Any, str]:
        if name not in self.derived:
            written = self.spec.written[name]
            self.derived[name] = self.value(written.expr, written)
        return self.derived[name]

    # -- expressions -------------------------------------------------------------------------------
    def value(self, expr: sp.Basic, at: Written) -> tuple[Any, str]:
        unit, kind = self._value(expr, at)
        return (self.one if kind == MIXED else unit), kind

    def _value(self, expr: sp.Basic, at: Written) -> tuple[Any, str]:
        if expr.is_Number:
            return self.one, NUMBER
        if isinstance(expr, sp.Symbol):
            return self.symbol_value(expr)
        if isinstance(expr, sp.Mul):
            return self._product(expr, at)
        if isinstance(expr, sp.Pow):
            return self._power(expr.base, expr.exp, at)
        if isinstance(expr, sp.Add):
            return self._alike(_terms(expr), at, "the terms of a sum")
        if isinstance(expr, (sp.Min, sp.Max)):
            return self._alike(expr.args, at, f"the arguments of {type(expr).__name__.lower()}()")
        if isinstance(expr, sp.Abs):
            return self.value(expr.args[0], at)
        if isinstance(expr, sp.Piecewise):
            for _, condition in expr.args:
                if isinstance(condition, sp.core.relational.Relational):
                    self._alike(condition.args, at, "the two sides of a comparison")
            return self._alike([branch for branch, _ in expr.args], at, "the two cases of where()")
        if isinstance(expr, (sp.exp, sp.log)):  # log(conc) is common in effect models: unknown, not an error
            unit, kind = self.value(expr.args[0], at)
            return (self.one if unit is not None and unit.dimensionless else None), kind
        raise self._error(at, f"koopnb cannot work out the unit of {_show(expr)}")  # the parser admits nothing else

    def symbol_value(self, symbol: sp.Symbol) -> tuple[Any, str]:
        name = symbol.name
        if symbol == TIME:
            return self.hour, OTHER
        if name in self.spec.states:
            return self.amount, OTHER
        if name in self.spec.derived:
            return self.name_value(name)
        return self.declared.get(name), COVARIATE if name in self.covariates else OTHER

    def _product(self, expr: sp.Mul, at: Written) -> tuple[Any, str]:
        factors = [(*self.value(factor, at), factor) for factor in _factors(expr)]
        kinds = [kind for _, kind, _ in factors]
        numbers = any(kind == NUMBER and abs(factor) != 1 for _, kind, factor in factors)
        if numbers and COVARIATE in kinds:
            # TVCL*WT/70: the number is WT's reference value, so the covariate effect WT/70 is dimensionless
            factors = [(self.one if kind == COVARIATE else unit, kind, factor) for unit, kind, factor in factors]
        unit = self.one
        for factor_unit, _, _ in factors:
            if factor_unit is None:
                return None, _kind(kinds)
            unit = unit * factor_unit
        return unit, _kind(kinds)

    def _power(self, base: sp.Basic, exponent: sp.Basic, at: Written) -> tuple[Any, str]:
        unit, kind = self.value(base, at)
        if exponent.is_Number:
            return (None if unit is None else unit ** float(exponent)), kind
        exponent_unit, exponent_kind = self.value(exponent, at)
        if exponent_unit is not None and not exponent_unit.dimensionless:
            raise self._error(at, f"the power {_show(exponent)} is in {self.text(exponent_unit)}; a power has no unit")
        kind = _kind([kind, exponent_kind])
        if unit is None or unit.dimensionless or kind == MIXED:
            return (self.one if unit is not None else None), kind
        raise self._error(at, f"{_show(base)} is in {self.text(unit)}, so it can only be raised to a number, "
                              f"not to {_show(exponent)}")

    def _alike(self, parts: Sequence[sp.Basic], at: Written, what: str) -> tuple[Any, str]:
        """Parts that must share a unit (bare numbers take it); their unit, or None when none is known."""
        values = [(part, *self.value(part, at)) for part in parts]
        kind = _kind([k for _, _, k in values])
        known = [(part, unit) for part, unit, k in values if unit is not None and k != NUMBER]
        for part, unit in [(part, unit) for part, unit in known if self.declares(part)][1:]:
            first, first_unit = next((p, u) for p, u in known if self.declares(p))
            if not self._same(first_unit, unit):
                raise self._error(at, f"{what} must be in the same unit, but {_show(first)} is in "
                                      f"{self.text(first_unit)} and {_show(part)} is in {self.text(unit)}; "
                                      "koopnb never converts units")
        if known:
            return known[0][1], kind
        return (self.one if kind == NUMBER else None), kind

    def _expect(self, expr: sp.Basic, expected, at: Written, what: str) -> None:
        unit, kind = self.value(expr, at)
        if unit is None or kind == NUMBER or not self.declares(expr) or self._same(unit, expected):
            return
        names = [s.name for s in sorted(expr.free_symbols, key=lambda s: at.text.find(s.name))
                 if s.name in self.declared]
        if unit.dimensionality != expected.dimensionality or not names:
            raise self._error(at, f"{_show(expr)} is in {self.text(unit)}, but {what} must be in "
                                  f"{self.text(expected)}")
        described = [f"'{name}' is in {self.text(self.declared[name])}" for name in names]
        needed = {name: expected / (unit / self.declared[name]) for name in names}
        culprit = min(names, key=lambda name: len(list(needed[name].unit_items())))
        facts = described[0] + ("" if len(described) == 1 else " but " + " and ".join(described[1:]))
        raise self._error(at, f"{facts} and time is in {HOUR}, so {_show(expr)} is not in {self.text(expected)} "
                              f"as {what} needs: write {culprit} in {self.text(needed[culprit])} "
                              "(koopnb never converts units)")

    def declares(self, expr: sp.Basic) -> bool:
        """Whether a unit the user wrote enters ``expr`` (directly or through derived quantities): only then is
        its unit checked (states are amounts and ``t`` is hours by convention, not by the user's word)."""
        for symbol in expr.free_symbols:
            name = symbol.name
            if name in self.declared:
                return True
            if name in self.spec.derived and name not in self.declaring:
                self.declaring[name] = False  # a cycle is impossible (the parser rejects them); this ends recursion
                self.declaring[name] = self.declares(self.spec.written[name].expr)
            if self.declaring.get(name):
                return True
        return False

    def _same(self, first, second) -> bool:
        """Whether two units are the same; an abstract amount that one side fixes is found here."""
        if first.dimensionality == second.dimensionality:
            return math.isclose(float((first / second).to_base_units().magnitude), 1.0, rel_tol=1e-9)
        amount = registry().Quantity(1, _AMOUNT)
        if self.amount == amount:
            for one, other in ((first, second), (second, first)):
                power = one.dimensionality.get(f"[{_AMOUNT}]", 0)
                if power and not other.dimensionality.get(f"[{_AMOUNT}]", 0):
                    found = (other / (one / amount**power)) ** (1 / power)
                    dimensions = dict(found.dimensionality)
                    if dimensions and "[time]" not in dimensions:  # mg, mmol, or mg/L for concentration states
                        raise _AmountFound(found)
        return False

    def text(self, unit) -> str:
        return format_unit(unit) or "no unit"

    def _error(self, at: Written, message: str) -> ModelError:
        return ModelError(message, at.line, at.column)


def _show(expr: sp.Basic) -> str:
    """An expression as the user wrote it (sympy's order kept, ``^`` for powers)."""
    return sp.sstr(expr, order="none").replace("**", "^")


def _kind(kinds: Sequence[str]) -> str:
    """The kind of an expression made of parts of these kinds."""
    if OTHER in kinds:
        return OTHER
    if MIXED in kinds or (COVARIATE in kinds and NUMBER in kinds):
        return MIXED
    return COVARIATE if COVARIATE in kinds else NUMBER


def _terms(expr: sp.Basic) -> list[sp.Basic]:
    """The terms of a sum as written, nested sums flattened (a - b + c has three)."""
    if not isinstance(expr, sp.Add):
        return [expr]
    return [term for part in expr.args for term in _terms(part)]


def _factors(expr: sp.Basic) -> list[sp.Basic]:
    """The factors of a product as written, nested products and divisions by products flattened."""
    if isinstance(expr, sp.Mul):
        return [factor for part in expr.args for factor in _factors(part)]
    if isinstance(expr, sp.Pow) and isinstance(expr.base, sp.Mul) and expr.exp.is_Number:
        return [sp.Pow(factor, expr.exp, evaluate=False) for factor in _factors(expr.base)]
    return [expr]


# -- units of results ----------------------------------------------------------------------------------
def name_unit(model, name: str, dose_unit: str | None = None) -> str | None:
    """The unit of a name of ``model`` (parameter, covariate, derived quantity, output, state or ``t``) as text,
    with the states' amounts in ``dose_unit`` (a regimen's unit, e.g. "mg"); None when it is unknown.

    Raises :class:`~koopnb.errors.RegimenError` when the model's own units fix its amounts in a unit other
    than ``dose_unit`` (koopnb never converts).
    """
    quantity = _name_quantity(model, name, dose_unit)
    return None if quantity is None else format_unit(quantity)


def metric_unit(model, metric, dose_unit: str | None = None) -> str | None:
    """The unit of a metric's value for ``model``: AUC in output unit × h ("mg·h/L"), Cmax, Cmin and
    concentrations in the output's unit ("mg/L"), time above a level in h; None for a probability (a Window or
    several), a function, or an output whose unit is unknown."""
    from koopnb.metrics import AUC, Cmax, Cmin, Conc, Target, TimeAbove

    if isinstance(metric, Target):
        metric = metric.metric
    if isinstance(metric, TimeAbove):
        return HOUR
    if not isinstance(metric, (AUC, Cmax, Cmin, Conc)):
        return None
    output = _name_quantity(model, metric.output_name(model), dose_unit)
    if output is None:
        return None
    return format_unit(output * registry().Quantity(1, HOUR) if isinstance(metric, AUC) else output)


def target_unit(model, target, dose_unit: str | None = None) -> str | None:
    """The unit of the metric a dose search aims at: a Window's or a Target's metric (for several windows, their
    common unit, or None when they differ)."""
    from koopnb.metrics import Window

    parts = target if isinstance(target, (list, tuple)) else [target]
    found = {metric_unit(model, part.metric if isinstance(part, Window) else part, dose_unit) for part in parts}
    return found.pop() if len(found) == 1 else None


def result_unit(model, quantity, regimen) -> str | tuple[str | None, ...] | None:
    """The unit of an expectation of ``quantity`` (a metric, window, function, or a tuple of them: a tuple of
    units) under ``regimen``."""
    dose_unit = getattr(regimen, "unit", None)
    if isinstance(quantity, (list, tuple)):
        return tuple(metric_unit(model, item, dose_unit) for item in quantity)
    return metric_unit(model, quantity, dose_unit)


def _name_quantity(model, name: str, dose_unit: str | None):
    spec = model.spec
    if not spec.units:
        return None
    cache = model.__dict__.setdefault("_unit_cache", {})
    key = (name, dose_unit)
    if key not in cache:
        amount = _amount(spec, dose_unit)
        inference = _Inference(spec, {n: parse_unit(t) for n, t in spec.units.items()},
                               registry().Quantity(1, _AMOUNT) if amount is None else amount)
        if name in spec.derived:
            unit = inference.name_value(name)[0]
        else:
            unit = inference.symbol_value(TIME if name == "t" else sp.Symbol(name, real=True))[0]
        abstract = unit is not None and unit.dimensionality.get(f"[{_AMOUNT}]", 0)
        cache[key] = None if abstract else unit
    return cache[key]


def _amount(spec: ModelSpec, dose_unit: str | None):
    """The states' amount unit: the model's own, else the regimen's (None when neither is known)."""
    dose = None
    if dose_unit:
        try:
            dose = parse_unit(dose_unit)
        except ValueError:
            dose = None
    if spec.amount_unit is None:
        return dose
    model = parse_unit(spec.amount_unit)
    if dose is not None and (dose.dimensionality != model.dimensionality
                             or not math.isclose(float((dose / model).to_base_units().magnitude), 1.0)):
        raise RegimenError(f"the doses are in {dose_unit} but the model's units put its amounts in "
                           f"{spec.amount_unit}; give the doses in {spec.amount_unit} (koopnb never converts units)")
    return model


def output_label(model, output: str, dose_unit: str | None = None) -> str:
    """An axis label for an output: "Concentration (mg/L)" for an amount per volume, else the output's name with
    its unit ("effect (%)"), or the bare name when its unit is unknown."""
    quantity = _name_quantity(model, output, dose_unit)
    if quantity is None:
        return output
    dimensions = dict(quantity.dimensionality)
    volume = dimensions.pop("[length]", 0) == -3
    amount = len(dimensions) == 1 and next(iter(dimensions.items())) in (("[mass]", 1), ("[substance]", 1))
    name = "Concentration" if volume and amount else output
    text = format_unit(quantity)
    return f"{name} ({text})" if text else name
