"""NONMEM control streams as koopnb models: ``from_nonmem(path) -> (Model, DataFrame)``.

pharmpy-core (optional extra ``koopnb[nonmem]``) reads the control stream — $INPUT, $DATA, $SUBROUTINES
(ADVAN1–4, ADVAN13 with $DES, TRANS), $PK, $ERROR, $THETA with bounds, $OMEGA incl. BLOCK, $SIGMA — with its
own grammar into sympy statements; nothing is evaluated.  This module writes those statements out as text in
koopnb's model language (``nonmem_text``), which koopnb's own parser then reads, so an imported model is exactly
a model a user could have typed, and can be printed, edited and saved as a ``.pk`` file.

The translation, in NONMEM's words:

- Each ETA must enter the model as ``THETA·…·EXP(ETA)`` for one THETA that appears nowhere else (the usual
  ``CL = THETA(1)*WGT*EXP(ETA(1))``): that THETA becomes a koopnb parameter with log-normal IIV, variance
  ``OMEGA``; an OMEGA BLOCK becomes ``corr(A, B)`` statements.  Additive ETAs, ETAs shared by several THETAs
  and inter-occasion ETAs are refused with one sentence naming the ETA.
- THETAs without an ETA keep their bounds (``in (LOW, HIGH)``) or are ``fixed``.
- Data columns the model uses become covariates with the data's median as reference value.
- The error model ``Y = F + W·EPS`` is recognised as additive (W constant), proportional (W = F), combined
  (two EPS, or ``W = SQRT(THETA(a)**2 + THETA(b)**2*F**2)`` with SIGMA fixed to 1) or exponential
  (``Y = F·EXP(EPS)``); anything else is refused.
- $PK/$ERROR assignments that no prediction uses (a time-after-dose column for tables, IWRES) are not translated;
  the generated text lists them in a comment and a warning says so.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sympy as sp
from sympy.printing.str import StrPrinter

from koopnb.data import read_nonmem
from koopnb.errors import NonmemError
from koopnb.model import Model, parse_model

STANDARD_COLUMNS = {"ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "RATE", "DUR", "ADDL", "II", "SS", "BLQ",
                    "CENS", "LLOQ", "OCC", "L2"}
"""NONMEM data items that are not covariates."""


def from_nonmem(path: str | os.PathLike, name: str | None = None) -> tuple[Model, pd.DataFrame]:
    """The koopnb model and the tidy data table of a NONMEM control stream (``.mod``/``.ctl``).

    The data file named in $DATA is read relative to the control stream, with $INPUT's column names and
    IGNORE/ACCEPT as pharmpy applies them.  Raises :class:`koopnb.NonmemError` naming the record for anything
    that cannot be translated.
    """
    control = _read(path)
    text = _translate(control, Path(path).name)
    model = parse_model(text, name=name or Path(path).stem)
    return model, _data(control, path)


def nonmem_text(path: str | os.PathLike) -> str:
    """The koopnb model text that :func:`from_nonmem` builds from a control stream (to read, edit or save)."""
    return _translate(_read(path), Path(path).name)


# -- reading ---------------------------------------------------------------------------------------
def _read(path):
    try:
        from pharmpy.modeling import read_model
    except ImportError as missing:
        raise NonmemError("reading NONMEM control streams needs pharmpy-core: pip install 'koopnb[nonmem]'") \
            from missing
    path = Path(path)
    if not path.is_file():
        raise NonmemError(f"there is no control stream at {str(path)!r}")
    try:
        return read_model(path)
    except Exception as failure:  # pharmpy raises many types; the user needs the sentence, not the type
        raise NonmemError(f"pharmpy could not read the control stream {path.name!r}: {failure}") from failure


def _data(control, path) -> pd.DataFrame:
    dataset = control.dataset
    if dataset is None:
        raise NonmemError(f"$DATA of {Path(path).name!r}: the data file could not be found next to the control stream")
    dropped = [column.name for column in control.datainfo if column.drop]
    return read_nonmem(dataset.drop(columns=dropped).reset_index(drop=True))


# -- translation -----------------------------------------------------------------------------------
class _Translation:
    """The statements of one control stream, fully substituted, and the pieces of koopnb text built from them."""

    def __init__(self, control, filename: str):
        self.control = control
        self.filename = filename
        statements = control.statements
        self.ode = statements.ode_system
        if self.ode is None:
            raise NonmemError(f"{filename}: $PRED models (no $SUBROUTINES ADVAN) are not supported; koopnb needs "
                              "a compartment model (ADVAN1–4, or ADVAN13 with $DES)")
        self.etas = [sp.Symbol(n) for n in control.random_variables.etas.names]
        self.epsilons = [sp.Symbol(n) for n in control.random_variables.epsilons.names]
        self.parameters = {p.name: p for p in control.parameters}
        self.states = {}
        for compartment_name, amount in zip(self.ode.compartment_names, self.ode.amounts, strict=True):
            self.states[_sym(amount)] = sp.Symbol(compartment_name.lower())
        self.definitions: dict[sp.Symbol, sp.Expr] = {}
        self.raw: list[tuple[sp.Symbol, sp.Expr]] = []
        for statement in list(statements.before_odes) + list(statements.after_odes):
            symbol, raw = _sym(statement.symbol), _sym(statement.expression)
            self.raw.append((symbol, raw))
            self.definitions[symbol] = raw.subs(self.states).subs(self.definitions)

    def unused(self, roots: set[sp.Symbol]) -> list[str]:
        """Assignments that nothing in ``roots`` (the ODE, dose options and Y) depends on, in statement order."""
        needed = set(roots)
        for symbol, raw in reversed(self.raw):
            if symbol in needed:
                needed |= raw.free_symbols
        return list(dict.fromkeys(s.name for s, _ in self.raw if s not in needed))

    def resolve(self, expr) -> sp.Expr:
        return _strip_zero_guards(_sym(expr).subs(self.states).subs(self.definitions))


def _translate(control, filename: str) -> str:
    t = _Translation(control, filename)
    equations = [(t.states[_sym(eq.lhs.args[0])], t.resolve(eq.rhs)) for eq in t.ode.eqs]
    dosing = t.ode.dosing_compartments
    if not dosing:
        raise NonmemError(f"{filename}: the model has no dosing compartment")
    dose_state = sp.Symbol(dosing[0].name.lower())
    lag, bioavailability = t.resolve(dosing[0].lag_time), t.resolve(dosing[0].bioavailability)
    y_symbol = sp.Symbol("Y")
    if y_symbol not in t.definitions:
        raise NonmemError(f"{filename}: $ERROR has no Y = … statement")
    y = t.definitions[y_symbol]
    prediction = _strip_zero_guards(y.subs({e: 0 for e in t.epsilons}))
    error, error_thetas = _error_model(t, y, prediction)

    # The quantities the ODE and the dose options name directly (CL, V, KA, ALAG1...) stay named; the rest
    # of $PK is substituted into them.
    named = {sym for eq in t.ode.eqs for sym in _sym(eq.rhs).free_symbols if sym in t.definitions}
    named |= {sym for sym in (_sym(dosing[0].lag_time).free_symbols | _sym(dosing[0].bioavailability).free_symbols)
              if sym in t.definitions}
    named = sorted(named, key=lambda sym: [s for s, _ in t.raw].index(sym))
    # Say "V" where the prediction divides by V's value (S1 = V in NONMEM), before ETAs are taken out.
    for sym in reversed(named):
        prediction = prediction.subs({1 / t.resolve(sym): 1 / sym}).subs(t.resolve(sym), sym)
    carriers = [t.resolve(sym) for sym in named] + [prediction, lag, bioavailability]
    etas = _eta_parameters(t, carriers)
    substitution = {theta: sp.Symbol(theta.name) * sp.exp(-eta) for eta, theta in etas.items()}
    quantities = {sym: _eta_free(t.resolve(sym), substitution, t) for sym in named}
    equations = [(state, _sym(eq.rhs).subs(t.states)) for state, eq in zip(
        [t.states[_sym(eq.lhs.args[0])] for eq in t.ode.eqs], t.ode.eqs, strict=True)]
    prediction = _eta_free(prediction, substitution, t)
    lag = _eta_free(lag, substitution, t)
    bioavailability = _eta_free(bioavailability, substitution, t)

    used = set().union(*(e.free_symbols for e in quantities.values()), prediction.free_symbols, lag.free_symbols,
                       bioavailability.free_symbols) - set(t.states.values()) - set(named)
    columns = {c.name for c in t.control.datainfo}
    lines = [f"# {t.control.name or filename}: translated from the NONMEM control stream {filename} by koopnb"]
    omega = t.control.random_variables.etas.covariance_matrix
    for eta, theta in etas.items():
        k = t.etas.index(eta)
        variance = _value(t, omega[k, k])
        lines.append(f"{theta.name} = {_number(_value(t, theta))} ~ variance({_number(variance)})"
                     f"   # THETA with {eta.name}")
    for symbol in sorted(used - set(etas.values()), key=lambda s: s.name):
        if symbol.name in t.parameters and symbol not in error_thetas:
            lines.append(_theta_line(t.parameters[symbol.name]))
    for symbol in sorted(used, key=lambda s: s.name):
        if symbol.name in columns and symbol.name not in t.parameters:
            if symbol.name.upper() in STANDARD_COLUMNS:
                raise NonmemError(f"{filename}: $PK uses the data item {symbol.name}, which koopnb reads as dosing "
                                  "or observation information, not as a covariate")
            lines.append(f"covariate {symbol.name} = {_number(_median(t.control.dataset, symbol.name))}")
    unknown = sorted(s.name for s in used if s.name not in t.parameters and s.name not in columns
                     and s not in etas.values())
    if unknown:
        raise NonmemError(f"{filename}: {', '.join(unknown)} is used by the model but is neither a THETA nor a "
                          "data column (a value carried between records, such as a time of last dose, cannot be "
                          "translated)")
    lines += _block_correlations(t, etas, omega)
    for sym, value in quantities.items():
        lines.append(f"{sym.name} = {_text(value)}")
    for state, rhs in equations:
        lines.append(f"d/dt({state}) = {_text(rhs)}")
    lines.append(f"conc = {_text(prediction)}")
    lines.append(f"conc ~ {error}")
    options = ""
    if bioavailability != 1:
        options += f" bioavailability={_text(bioavailability)}"
    if lag != 0:
        options += f" lag={_text(lag)}"
    lines.append(f"dose {dose_state}{options}")
    roots = {y_symbol} | {s for eq in t.ode.eqs for s in _sym(eq.rhs).free_symbols}
    roots |= _sym(dosing[0].lag_time).free_symbols | _sym(dosing[0].bioavailability).free_symbols
    skipped = t.unused(roots)
    if skipped:
        lines.append(f"# not translated (no prediction uses them): {', '.join(skipped)}")
        one = len(skipped) == 1
        warnings.warn(f"{filename}: {', '.join(skipped)} {'is' if one else 'are'} not translated: no prediction "
                      f"uses {'it' if one else 'them'} (NONMEM's tables may)", stacklevel=3)
    return "\n".join(lines) + "\n"


def _eta_parameters(t: _Translation, derived: list[sp.Expr]) -> dict[sp.Symbol, sp.Symbol]:
    """ETA -> the THETA that carries it as THETA·exp(ETA), checked on every expression the model uses."""
    chosen: dict[sp.Symbol, sp.Symbol] = {}
    thetas = [sp.Symbol(p.name) for p in t.control.parameters if _is_theta(t, p.name)]
    for eta in t.etas:
        carriers = [e for e in derived if eta in e.free_symbols]
        if not carriers:
            continue
        for theta in thetas:
            if theta in chosen.values():
                continue
            swapped = [_combined(e.subs(theta, sp.Symbol(theta.name) * sp.exp(-eta))) for e in carriers]
            if all(eta not in e.free_symbols for e in swapped) and all(
                    theta in e.free_symbols for e in carriers):
                chosen[eta] = theta
                break
        else:
            raise NonmemError(f"{t.filename}: {eta.name} cannot be translated: koopnb's IIV is log-normal on one "
                              f"THETA (P = THETA·…·EXP(ETA)), and {eta.name} enters as "
                              f"{sp.sstr(carriers[0])}")
    return chosen


def _eta_free(expr: sp.Expr, substitution: dict, t: _Translation) -> sp.Expr:
    """``expr`` with each IIV-carrying THETA replaced by its individual value: no ETA may remain."""
    result = _combined(expr.subs(substitution))
    left = [eta.name for eta in t.etas if eta in result.free_symbols]
    if left:
        raise NonmemError(f"{t.filename}: {', '.join(left)} cannot be translated (inter-occasion or additive "
                          "variability is not a log-normal IIV on a THETA)")
    return result


def _combined(expr: sp.Expr) -> sp.Expr:
    """Products of exponentials combined, inside IF branches too (so THETA·e^-ETA·e^ETA leaves no ETA)."""
    return sp.powsimp(sp.piecewise_fold(expr), combine="exp", deep=True)


def _error_model(t: _Translation, y: sp.Expr, prediction: sp.Expr) -> tuple[str, set[sp.Symbol]]:
    """The koopnb residual error statement for Y, and the THETAs it consumed (those are not model parameters)."""
    epsilons = [e for e in t.epsilons if e in y.free_symbols]
    sigma = t.control.random_variables.epsilons.covariance_matrix
    sds = {e: math.sqrt(_value(t, sigma[t.epsilons.index(e), t.epsilons.index(e)])) for e in epsilons}
    if len(epsilons) == 1 and sp.simplify(y - prediction * sp.exp(epsilons[0])) == 0:
        return f"exponential({_number(sds[epsilons[0]])})", set()
    if sp.simplify(sp.diff(y, *epsilons, 2) if len(epsilons) == 1 else 0) != 0:
        raise NonmemError(f"{t.filename}: $ERROR: Y is not linear in {epsilons[0].name}; koopnb knows additive, "
                          "proportional, combined and exponential residual errors")
    additive = proportional = 0.0
    consumed: set[sp.Symbol] = set()
    for eps in epsilons:
        weight = _strip_zero_guards(sp.diff(y, eps))
        ratio = sp.simplify(weight / prediction)
        if ratio.is_number:
            proportional = math.hypot(proportional, float(ratio) * sds[eps])
        elif weight.is_number:
            additive = math.hypot(additive, float(weight) * sds[eps])
        else:
            # W = SQRT(THETA(a)**2 + THETA(b)**2*F**2): the weight squared is a + b·F² in the prediction F.
            f = sp.Dummy("F")
            squared = sp.expand(weight.subs(prediction, f) ** 2)
            constant = squared.subs(f, 0)
            slope = sp.expand((squared - constant) / f**2)
            thetas = {s for s in weight.free_symbols if s.name in t.parameters}
            if not (constant.free_symbols | slope.free_symbols) <= thetas:
                raise NonmemError(f"{t.filename}: $ERROR: the weight of {eps.name}, {_text(weight)}, is not an "
                                  "additive, proportional or combined error koopnb knows")
            values = {s: _value(t, s) for s in thetas}
            additive = math.hypot(additive, math.sqrt(float(constant.subs(values))) * sds[eps])
            proportional = math.hypot(proportional, math.sqrt(float(slope.subs(values))) * sds[eps])
            consumed |= thetas
    if additive and proportional:
        return f"combined({_number(additive)}, {_number(proportional)})", consumed
    if proportional:
        return f"proportional({_number(proportional)})", consumed
    if additive:
        return f"additive({_number(additive)})", consumed
    raise NonmemError(f"{t.filename}: $ERROR: Y has no residual error (no EPS with a non-zero weight)")


def _block_correlations(t: _Translation, etas: dict, omega) -> list[str]:
    lines = []
    pairs = list(etas.items())
    for i, (eta_a, theta_a) in enumerate(pairs):
        for eta_b, theta_b in pairs[i + 1:]:
            a, b = t.etas.index(eta_a), t.etas.index(eta_b)
            covariance = _value(t, omega[a, b])
            if covariance:
                r = covariance / math.sqrt(_value(t, omega[a, a]) * _value(t, omega[b, b]))
                lines.append(f"corr({theta_a.name}, {theta_b.name}) = {_number(r)}   # OMEGA BLOCK")
    return lines


def _theta_line(parameter) -> str:
    value = _number(parameter.init)
    if parameter.fix:
        return f"{parameter.name} = {value} fixed"
    low, high = parameter.lower, parameter.upper
    if math.isinf(low) and low < 0 and math.isinf(high):
        return f"{parameter.name} = {value} in (-inf, inf)"
    return f"{parameter.name} = {value} in ({_bound(low)}, {_bound(high)})"


def _is_theta(t: _Translation, name: str) -> bool:
    omega = t.control.random_variables.etas.parameter_names
    sigma = t.control.random_variables.epsilons.parameter_names
    return name not in omega and name not in sigma


def _value(t: _Translation, entry) -> float:
    entry = _sym(entry)
    if entry.is_number:
        return float(entry)
    return float(entry.subs({sp.Symbol(n): p.init for n, p in t.parameters.items()}))


def _median(dataset: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(dataset[column], errors="coerce").to_numpy(dtype=float)
    return float(np.nanmedian(values))


def _sym(expr) -> sp.Expr:
    """A pharmpy expression as the sympy object it wraps (pharmpy built it with its own grammar, not eval)."""
    if hasattr(expr, "_sympy_"):
        return expr._sympy_()
    if isinstance(expr, sp.Basic):
        return expr
    if isinstance(expr, int | float):
        return sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
    raise NonmemError(f"pharmpy gave {type(expr).__name__} where an expression was expected")


def _strip_zero_guards(expr: sp.Expr) -> sp.Expr:
    """``IF (IPRED.EQ.0) W = tiny ELSE W = IPRED`` guards (against dividing by zero) as the plain value."""
    def unguard(piecewise):
        (_, condition), (value, otherwise) = piecewise.args
        if otherwise is sp.true and isinstance(condition, sp.Eq) and {condition.lhs, condition.rhs} == {value, 0}:
            return value
        return piecewise

    return expr.replace(lambda e: isinstance(e, sp.Piecewise) and len(e.args) == 2, unguard)


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _bound(value: float) -> str:
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else _number(value)


class _KoopnbPrinter(StrPrinter):
    """sympy -> koopnb's expression syntax (``^``, where(), min/max/abs/exp/log/sqrt)."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp == sp.Rational(1, 2):
            return f"sqrt({self._print(expr.base)})"
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, 1000)}"
        return f"{self.parenthesize(expr.base, 1000)}^{self.parenthesize(expr.exp, 1000)}"

    def _print_Piecewise(self, expr):
        (value, condition), *rest = expr.args
        if condition is sp.true:
            return self._print(value)
        if not rest:
            raise NonmemError(f"an IF in the control stream leaves a value undefined (no ELSE): {expr}")
        otherwise = sp.Piecewise(*rest)
        return f"where({self._print(condition)}, {self._print(value)}, {self._print(otherwise)})"

    def _print_Equality(self, expr):
        raise NonmemError("a test for equality (.EQ.) in $PK cannot be translated: koopnb's where() takes "
                          "<, <=, > or >=")

    def _print_Unequality(self, expr):
        raise NonmemError("a test for inequality (.NE.) in $PK cannot be translated: koopnb's where() takes "
                          "<, <=, > or >=")

    def _print_Max(self, expr):
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr):
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Float(self, expr):
        return _number(float(expr))

    def _print_Exp1(self, expr):
        return "exp(1)"

    def _print_Function(self, expr):
        if expr.func in (sp.exp, sp.log):
            return f"{expr.func.__name__}({self._print(expr.args[0])})"
        raise NonmemError(f"the function {expr.func.__name__} in the control stream has no koopnb counterpart")


def _text(expr: sp.Expr) -> str:
    return _KoopnbPrinter({"order": "none"}).doprint(expr)
