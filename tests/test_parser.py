"""The %%pkmodel parser: the language of shared/MODEL_LANGUAGE.md into a ModelSpec, and its errors."""

from __future__ import annotations

import math

import pytest
import sympy as sp

from koopnb.errors import ModelError
from koopnb.model.parse import parse_spec
from koopnb.model.spec import TIME, symbol

THEOPHYLLINE = """\
# theophylline: one compartment, first-order absorption
ka = 1.5  [1/h] ~ 0.6        # typical value, unit, log-normal IIV (omega = SD of the log)
CL = 2.8  [L/h] ~ 27%        # IIV may be given as CV%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""

ka, CL, V, depot, central = (symbol(n) for n in ("ka", "CL", "V", "depot", "central"))


def same(a: sp.Expr, b: sp.Expr) -> bool:
    """Symbolic equality of two expressions (their difference simplifies to zero)."""
    return sp.simplify(a - b) == 0


def test_language_example_parses_to_the_expected_spec():
    spec = parse_spec(THEOPHYLLINE, name="theophylline")
    assert spec.name == "theophylline"
    assert spec.text == THEOPHYLLINE
    assert [p.name for p in spec.parameters] == ["ka", "CL", "V"]
    typical = {p.name: p.typical for p in spec.parameters}
    assert typical == {"ka": 1.5, "CL": 2.8, "V": 31.5}
    omega = {p.name: p.omega for p in spec.parameters}
    assert omega["ka"] == 0.6
    assert omega["V"] == 0.15
    # CV 27 %: omega² = ln(1 + CV²); the SD of the log is a little below the CV.
    assert omega["CL"] == pytest.approx(math.sqrt(math.log(1 + 0.27**2)), rel=1e-14)
    assert omega["CL"] == pytest.approx(0.2652645145, rel=1e-9)
    assert spec.units == {"ka": "1/h", "CL": "L/h", "V": "L"}
    assert [p.unit for p in spec.parameters] == ["1/h", "L/h", "L"]
    assert [p.line for p in spec.parameters] == [2, 3, 4]
    assert spec.constants == {}
    assert spec.covariates == ()
    assert spec.states == ("depot", "central")
    assert same(spec.rhs["depot"], -ka * depot)
    assert same(spec.rhs["central"], ka * depot - CL / V * central)
    assert spec.initial == {"depot": 0, "central": 0}
    assert list(spec.derived) == ["conc"]
    assert same(spec.derived["conc"], central / V)
    assert spec.outputs == ("conc",)
    error = spec.errors["conc"]
    assert (error.kind, error.additive, error.proportional, error.sigma, error.line) == (
        "additive", 0.7, 0.0, 0.0, 8)
    assert spec.dose.state == "depot"
    assert spec.dose.bioavailability == 1
    assert spec.dose.lag == 0
    assert spec.dose.line == 9
    assert spec.lines == {"ka": 2, "CL": 3, "V": 4, "depot": 5, "central": 6, "conc": 7}


def test_symbols_are_the_real_symbols_of_spec():
    spec = parse_spec(THEOPHYLLINE)
    assert spec.rhs["depot"].free_symbols == {symbol("ka"), symbol("depot")}
    assert all(s.is_real for s in spec.rhs["central"].free_symbols)


TWO_COMPARTMENT = """\
# two compartments, IV infusion into central, with weight on clearance
covariate WT = 70 [kg]
CL = 5   [L/h] ~ 0.3
V1 = 20  [L]   ~ 0.2
Q  = 8   [L/h] ~ 25%
V2 = 40  [L]
k_wt = 0.75 fixed
CLi = CL * (WT / 70)^k_wt
d/dt(central)    = -(CLi + Q)/V1*central + Q/V2*peripheral
d/dt(peripheral) =  Q/V1*central - Q/V2*peripheral
conc = central / V1
conc ~ combined(0.1, 0.15)
dose central
"""


def test_two_compartment_model():
    spec = parse_spec(TWO_COMPARTMENT)
    WT, Q, V1, V2, k_wt, CLi, peripheral = (symbol(n) for n in ("WT", "Q", "V1", "V2", "k_wt", "CLi",
                                                                  "peripheral"))
    assert [p.name for p in spec.parameters] == ["CL", "V1", "Q", "V2"]
    assert spec.parameters[3].omega == 0.0
    assert spec.parameters[3].unit == "L"
    assert spec.parameters[2].omega == pytest.approx(math.sqrt(math.log1p(0.25**2)), rel=1e-14)
    assert spec.constants == {"k_wt": 0.75}
    assert len(spec.covariates) == 1
    covariate = spec.covariates[0]
    assert (covariate.name, covariate.reference, covariate.unit, covariate.line) == ("WT", 70.0, "kg", 2)
    assert spec.units == {"WT": "kg", "CL": "L/h", "V1": "L", "Q": "L/h", "V2": "L"}
    assert same(spec.derived["CLi"], CL * (WT / 70) ** k_wt)
    assert spec.states == ("central", "peripheral")
    assert same(spec.rhs["central"], -(CLi + Q) / V1 * central + Q / V2 * peripheral)
    assert same(spec.rhs["peripheral"], Q / V1 * central - Q / V2 * peripheral)
    assert spec.outputs == ("conc",)
    error = spec.errors["conc"]
    assert (error.kind, error.additive, error.proportional) == ("combined", 0.1, 0.15)
    assert spec.dose.state == "central"
    assert spec.lines["k_wt"] == 7
    assert spec.lines["WT"] == 2


def test_prime_power_where_min_max_time_and_continuation():
    spec = parse_spec("""
k = 0.2
Emax = 3 [mg/L]                  # no IIV, a unit with a slash
x' = -k*x^2 + where(t < 4, 1,    # a line continues inside open brackets
                    0)
y' = -k ** 2 * y + max(x, 0.5, k) - min(
    x, y)
y(0) = Emax
total = sqrt(abs(x)) + exp(-k*t) + log(1 + y)
""")
    k, x, y, emax = symbol("k"), symbol("x"), symbol("y"), symbol("Emax")
    assert spec.states == ("x", "y")
    assert same(spec.rhs["x"], -k * x**2 + sp.Piecewise((1, TIME < 4), (0, True)))
    assert same(spec.rhs["y"], -(k**2) * y + sp.Max(x, sp.Float("0.5"), k) - sp.Min(x, y))
    assert spec.initial == {"x": 0, "y": emax}
    assert same(spec.derived["total"], sp.sqrt(sp.Abs(x)) + sp.exp(-k * TIME) + sp.log(1 + y))
    assert spec.outputs == ("total",)
    assert spec.units == {"Emax": "mg/L"}
    assert spec.dose is None
    assert spec.errors == {}
    assert spec.lines == {"k": 2, "Emax": 3, "x": 4, "y": 6, "total": 9}


def test_caret_and_double_star_are_the_same_power():
    a = parse_spec("k = 2\nd/dt(x) = -k^2*x^0.5").rhs["x"]
    b = parse_spec("k = 2\nd/dt(x) = -k**2*x**0.5").rhs["x"]
    assert a == b
    assert same(a, -symbol("k") ** 2 * symbol("x") ** sp.Float("0.5"))


def test_where_with_every_comparison():
    spec = parse_spec("a = 1\nd/dt(x) = where(x < a, 1, 0) + where(x <= a, 2, 0)"
                      " + where(x > a, 3, 0) + where(x >= a, 4, 0)")
    x, a = symbol("x"), symbol("a")
    expected = (sp.Piecewise((1, x < a), (0, True)) + sp.Piecewise((2, x <= a), (0, True))
                + sp.Piecewise((3, x > a), (0, True)) + sp.Piecewise((4, x >= a), (0, True)))
    assert same(spec.rhs["x"], expected)
    values = {x: 1, a: 1}
    assert spec.rhs["x"].subs(values) == 0 + 2 + 0 + 4


def test_numbers_are_exact_as_written():
    spec = parse_spec("d/dt(x) = -1e-3*x + 0.1 + 7 + 007 + .5")
    rhs = spec.rhs["x"]
    assert rhs.coeff(symbol("x")) == sp.Float("-1e-3")
    constant = rhs.subs(symbol("x"), 0)
    assert constant == sp.Float("0.1") + 14 + sp.Float("0.5")
    assert float(constant) == 0.1 + 14 + 0.5


def test_parameters_constants_and_derived_by_the_shape_of_the_right_side():
    spec = parse_spec("""
a = -1
b = +2.5e1 [mg]
c = 3 fixed
d2 = 4 [h] fixed
e = 2*3
f = -(1)
h = 1 ~ 0
d/dt(x) = -x
""")
    assert [(p.name, p.typical, p.omega) for p in spec.parameters] == [
        ("a", -1.0, 0.0), ("b", 25.0, 0.0), ("h", 1.0, 0.0)]
    assert spec.constants == {"c": 3.0, "d2": 4.0}
    assert spec.units == {"b": "mg", "d2": "h"}
    assert spec.derived == {"e": 6, "f": -1}
    assert spec.outputs == ()


def test_unit_text_is_kept_as_written_on_the_parameter_and_normalised_in_units():
    spec = parse_spec("k = 0.1 [ 1/hr ] ~ 0.1\nd/dt(x) = -k*x")
    assert spec.units == {"k": "1/h"}
    assert spec.parameters[0].unit == "1/hr"
    with pytest.raises(ModelError, match=r"line 1, column 12: unknown unit 'L/hx' of 'V'"):
        parse_spec("V = 31.5 [ L/hx ] ~ 0.1\nd/dt(x) = -x/V")


def test_cv_and_sd_of_the_log():
    spec = parse_spec("a = 1 ~ 100%\nb = 1 ~ 0 %\nc = 1 ~ 1e-1\nd/dt(x) = -a*b*c*x")
    omega = [p.omega for p in spec.parameters]
    assert omega[0] == pytest.approx(math.sqrt(math.log(2)), rel=1e-14)
    assert omega[1] == 0.0
    assert omega[2] == 0.1


def test_every_error_model_form():
    base = "V = 1\nd/dt(a) = -a\nd/dt(b) = -b\nca = a/V\ncb = b/V\ncc = a + b\ncd = ca\ncf = cb\n"
    spec = parse_spec(base + """
ca ~ additive(0.5)
cb ~ proportional(0.1)
cc ~ combined(0.2, 0.3)
cd ~ exponential(0.25)
cf ~ proportional(0.4) + additive(0.6)
""")
    def fields(output):
        e = spec.errors[output]
        return e.kind, e.additive, e.proportional, e.sigma
    assert fields("ca") == ("additive", 0.5, 0.0, 0.0)
    assert fields("cb") == ("proportional", 0.0, 0.1, 0.0)
    assert fields("cc") == ("combined", 0.2, 0.3, 0.0)
    assert fields("cd") == ("exponential", 0.0, 0.0, 0.25)
    assert fields("cf") == ("combined", 0.6, 0.4, 0.0)
    assert list(spec.errors) == ["ca", "cb", "cc", "cd", "cf"]
    assert spec.errors["cf"].line == 14
    reversed_sum = parse_spec(base + "ca ~ additive(0.6) + proportional(0.4)").errors["ca"]
    assert (reversed_sum.kind, reversed_sum.additive, reversed_sum.proportional) == ("combined", 0.6, 0.4)


def test_outputs_depend_on_a_state_directly_or_through_derived_names():
    spec = parse_spec("""
V = 2
d/dt(x) = -x
scale = 2 * V
late = conc * scale        # uses 'conc' before its definition
conc = x / V
clock = t * 2              # depends on time only: not an output
""")
    assert spec.outputs == ("late", "conc")
    assert list(spec.derived) == ["scale", "late", "conc", "clock"]


def test_dose_with_bioavailability_and_lag():
    spec = parse_spec("""
F = 0.8
tlag = 0.5 [h] ~ 0.2
k = 1
Fi = F * 1
d/dt(depot) = -k*depot
dose depot bioavailability = where(F > 1, 1, Fi)  lag=tlag*2
""")
    F, Fi, tlag = symbol("F"), symbol("Fi"), symbol("tlag")
    assert spec.dose.state == "depot"
    assert same(spec.dose.bioavailability, sp.Piecewise((1, F > 1), (Fi, True)))
    assert same(spec.dose.lag, 2 * tlag)
    assert spec.dose.line == 7
    lag_only = parse_spec("k = 1\nd/dt(depot) = -k*depot\ndose depot lag=0.25").dose
    assert lag_only.bioavailability == 1
    assert lag_only.lag == sp.Float("0.25")


def test_initial_conditions_may_use_parameters_and_derived_constants():
    spec = parse_spec("A0 = 10 [mg]\nV = 2\nc0 = A0/V\nd/dt(x) = -x\nx(0.0) = c0*V\ny' = x - y\n")
    assert spec.initial == {"x": symbol("c0") * symbol("V"), "y": 0}


def test_python_keywords_are_ordinary_names():
    spec = parse_spec("lambda = 0.1\nd/dt(x) = -lambda*x\nin = x + if_\nif_ = 1")
    assert same(spec.rhs["x"], -symbol("lambda") * symbol("x"))
    assert spec.outputs == ("in",)


def test_blank_lines_comments_and_crlf_line_ends():
    text = "# a comment only\r\n\r\n   \r\nk = 1 # trailing\r\nd/dt(x) =\t-k*x\r"
    spec = parse_spec(text)
    assert spec.lines == {"k": 4, "x": 5}


# (text, line, column, message): one row per kind of mistake.
ERRORS = [
    # syntax
    ("k = 1\nd/dt(x) = -k*(x\ny = 2", 2, 14, "this '(' is never closed"),
    ("d/dt(x) = -x)", 1, 13, "')' closes a bracket that was never opened"),
    ("d/dt(x) = -(x]", 1, 14, "']' does not match the '(' opened at line 1, column 12"),
    ("d/dt(x) = -x +", 1, 14, "'+' has nothing after it"),
    ("d/dt(x) = -x * / 2", 1, 16, "'/' cannot follow '*'"),
    ("d/dt(x) = * x", 1, 11, "a value is missing before '*'"),
    ("d/dt(x) = x x", 1, 13, "an operator is missing between 'x' and 'x'"),
    ("d/dt(x) = 2(x)", 1, 12, "an operator is missing between '2' and '('"),
    ("d/dt(x) =", 1, 10, "an expression is missing after '='"),
    ("d/dt(x) = ()", 1, 11, "empty parentheses '()'"),
    ("d/dt(x) = (x, 1)", 1, 13, "',' can only separate the arguments of a function"),
    ("d/dt(x) = 2x", 1, 11, "malformed number '2x'"),
    ("d/dt(x) = 1.2.3", 1, 11, "malformed number '1.2.3'"),
    ("d/dt(x) = 1e999*x", 1, 11, "the number '1e999' is too large"),
    ("d/dt(x) = -x @ 2", 1, 14, "unexpected character '@'"),
    ("d/dt(x) = -x ==", 1, 14, "'==' is not a comparison of the language; use <, <=, > or >="),
    ("d/dt(x) = x = 2", 1, 13, "'=' cannot appear inside an expression (the comparisons are <, <=, > and >=)"),
    ("d/dt(x) = -x * µ", 1, 16, "unexpected character 'µ'"),
    ("ké = 1", 1, 2, "unexpected character 'é'; names use the letters A-Z and a-z, digits and '_'"),
    ("é = 1", 1, 1, "unexpected character 'é'; names use the letters A-Z and a-z, digits and '_'"),
    ("2 = x", 1, 1, "a statement starts with a name, 'd/dt(', 'covariate' or 'dose'"),
    ("d/dt(x) = -x\nk", 2, 2, "expected '=' after 'k'"),
    ("d/dt x = -x", 1, 1, "a state equation is written 'd/dt(STATE) = EXPRESSION'"),
    ("x'' = -x", 1, 2, "a state equation is written \"x' = EXPRESSION\""),
    ("d/dt(x) = -x\nx(1) = 2", 2, 2, "an initial condition is written 'x(0) = EXPRESSION'"),
    ("d/dt(x) = -x\nc = x\nc ~ 0.5", 3, 5, "expected a residual error model such as additive(0.5), "
     "proportional(0.1), combined(0.5, 0.1) or exponential(0.2)"),
    ("d/dt(x) = -x\nc = x\nc ~", 3, 4, "an expression is missing after '~'"),
    # hostile input is rejected before anything could run
    ("x = __import__('os').system('ls')", 1, 16, "quotes and strings are not part of the model language"),
    ("x = (lambda: 1)()", 1, 12, "unexpected character ':'"),
    ("d/dt(x) = -x.real", 1, 13,
     "'.' is only allowed inside a number; attributes such as 'a.b' are not part of the language"),
    ("d/dt(x) = -x[0]", 1, 13, "a unit in square brackets can only follow a number, as in 'V = 31.5 [L]'"),
    ("d/dt(x) = -x*exp(x=1)", 1, 19,
     "'=' cannot appear inside an expression (the comparisons are <, <=, > and >=)"),
    ("d/dt(x) = -x*max(*x)", 1, 18, "a value is missing before '*'"),
    # units and values
    ("k = 1 [] ~ 0.2\nd/dt(x) = -k*x", 1, 7, "the unit between '[' and ']' is empty"),
    ("k = 1 [1/[h]]\nd/dt(x) = -k*x", 1, 10, "a unit cannot contain square brackets"),
    ("k = 1 [1/h] [h]\nd/dt(x) = -k*x", 1, 13,
     "unexpected '[' after the value of 'k'; expected a unit in [brackets], '~ OMEGA', 'in (LOW, HIGH)' or 'fixed'"),
    ("k = 2*V [1/h]\nd/dt(x) = -k*x", 1, 9,
     "a unit in square brackets can only follow a number, as in 'V = 31.5 [L]'"),
    ("k = 2*V ~ 0.3\nd/dt(x) = -k*x", 1, 9,
     "'~' can only follow a number (IIV, as in 'CL = 2.8 ~ 0.3') or an output name (residual error)"),
    ("k = 0 ~ 0.3\nd/dt(x) = -k*x", 1, 5,
     "'k' has log-normal IIV, so its typical value must be positive, not 0"),
    ("k = -2 ~ 0.3\nd/dt(x) = -k*x", 1, 5,
     "'k' has log-normal IIV, so its typical value must be positive, not -2"),
    ("k = 1 ~ -0.3\nd/dt(x) = -k*x", 1, 9, "the IIV of 'k' cannot be negative"),
    ("k = 1 ~ -30%\nd/dt(x) = -k*x", 1, 9, "the IIV of 'k' cannot be negative"),
    ("k = 1 ~ big\nd/dt(x) = -k*x", 1, 9,
     "expected the IIV of 'k' after '~': the SD of the log such as 0.3, a CV such as 30%, variance(0.09) or sd(0.3)"),
    ("k = 1 ~ 0.3 fixed\nd/dt(x) = -k*x", 1, 13, "unexpected 'fixed' after the IIV of 'k'"),
    ("k = 1 fixed 2\nd/dt(x) = -k*x", 1, 13, "unexpected '2' after 'fixed' in the definition of 'k'"),
    ("covariate WT = 70 [kg] ~ 0.2\nd/dt(x) = -x", 1, 24,
     "covariate 'WT' cannot have IIV; its values come from the data"),
    ("covariate WT = heavy\nd/dt(x) = -x", 1, 16, "the reference value of covariate 'WT' must be a number"),
    ("covariate WT\nd/dt(x) = -x", 1, 1, "a covariate is written 'covariate NAME = VALUE [unit]'"),
    # names
    ("CL = 1\nd/dt(x) = -Cl*x", 2, 12, "'Cl' is not defined (did you mean 'CL'?)"),
    ("kel = 1\nd/dt(x) = -kell*x", 2, 12, "'kell' is not defined (did you mean 'kel'?)"),
    ("d/dt(x) = -x*qq", 1, 14, "'qq' is not defined"),
    ("d/dt(x) = -x*foo(x)", 1, 14,
     "unknown function 'foo'; the functions are exp, log, sqrt, abs, min, max and where"),
    ("k = 1\nd/dt(x) = -k(x)", 2, 12,
     "unknown function 'k'; the functions are exp, log, sqrt, abs, min, max and where"),
    ("d/dt(x) = -x*exp", 1, 14, "'exp' is a function; call it as exp(...)"),
    ("d/dt(x) = -exp(x, 2)", 1, 12, "exp() takes 1 argument, not 2"),
    ("d/dt(x) = -min(x)", 1, 12, "min() takes at least 2 arguments, not 1"),
    ("d/dt(x) = where(x > 1, 2)", 1, 11, "where() takes 3 arguments (condition, a, b), not 2"),
    ("d/dt(x) = where(x, 1, 2)", 1, 17, "the first argument of where() must be a comparison such as 'conc > 2'"),
    ("d/dt(x) = where(0 < x < 1, 1, 2)", 1, 23,
     "chained comparisons such as 'a < b < c' are not supported; nest where() instead"),
    ("d/dt(x) = -x * (x > 1)", 1, 17, "a comparison can only be the condition of where(condition, a, b)"),
    ("d/dt(x) = -x/0", 1, 11, "this expression is undefined (a division by zero or the log of zero)"),
    ("d/dt(x) = -x*log(0)", 1, 14, "this expression is undefined (a division by zero or the log of zero)"),
    ("d/dt(x) = -x*sqrt(-1)", 1, 14, "this expression is not a real number"),
    ("d/dt(x) = -x*10^400", 1, 14, "this expression is too large for a floating-point number"),
    ("d/dt(x) = -x*9^9^9^9", 1, 16, "this expression is too large for a floating-point number"),
    # duplicates
    ("k = 1\nk = 2\nd/dt(x) = -k*x", 2, 1, "'k' is already defined on line 1"),
    ("d/dt(x) = -x\nx = 2", 2, 1, "'x' is already defined on line 1"),
    ("d/dt(x) = -x\nx' = 1", 2, 1, "'x' already has a state equation on line 1"),
    ("d/dt(x) = -x\nx(0) = 1\nx(0) = 2", 3, 1, "'x' already has an initial condition on line 2"),
    ("d/dt(x) = -x\ndose x\ndose x", 3, 1, "the dose compartment is already given on line 2"),
    ("d/dt(x) = -x\nc = x\nc ~ additive(1)\nc ~ proportional(0.1)", 4, 1,
     "'c' already has a residual error model on line 3"),
    # states, equations, outputs, doses
    ("d/dt(x) = -x\ny(0) = 1", 2, 1, "'y' has an initial condition but no state equation"),
    ("d/dt(xx) = -xx\nx(0) = 1", 2, 1, "'x' has an initial condition but no state equation (did you mean 'xx'?)"),
    ("k = 1\nd/dt(x) = -x\nk(0) = 1", 3, 1, "'k' is a parameter, not a state, so it cannot have an initial condition"),
    ("k = 1\nd/dt(k) = -k", 2, 6, "'k' is a parameter (line 1), not a state, so it cannot have a state equation"),
    ("d/dt(x) = -x\nc = x\nd/dt(c) = 1", 3, 6,
     "'c' is a derived quantity (line 2), not a state, so it cannot have a state equation"),
    ("d/dt(central) = -central\ndose centrl", 2, 6, "'centrl' is not a state of the model (did you mean 'central'?)"),
    ("V = 1\nd/dt(x) = -x\ndose V", 3, 6, "'V' is a parameter, not a state, so it cannot receive a dose"),
    ("d/dt(x) = -x\ndose", 2, 5, "expected the name of a state after 'dose'"),
    ("d/dt(x) = -x\ndose x, y", 2, 7, "unexpected ',' after the dosed state"),
    ("d/dt(x) = -x\ndose x F=1", 2, 8, "unknown dose option 'F'; the options are bioavailability=, lag= and duration="),
    ("d/dt(x) = -x\ndose x lag=1 lag=2", 2, 14, "'lag=' is given twice"),
    ("d/dt(x) = -x\ndose x lag", 2, 8, "expected 'bioavailability=EXPRESSION', 'lag=EXPRESSION' or "
     "'duration=EXPRESSION' after the dosed state"),
    ("d/dt(x) = -x\ndose x lag=", 2, 12, "an expression is missing after 'lag='"),
    ("d/dt(x) = -x\ndose x lag=x/2", 2, 12, "the lag time cannot depend on the state 'x'"),
    ("d/dt(x) = -x\ndose x bioavailability=0.5 + t", 2, 30, "the bioavailability cannot depend on the time 't'"),
    ("d/dt(x) = -x\nc = x*2\ndose x bioavailability=1/c", 3, 26,
     "the bioavailability cannot depend on 'c', which depends on the state 'x'"),
    ("d/dt(x) = -x\nd/dt(y) = -y\ny(0) = x", 3, 8, "the initial condition of 'y' cannot depend on the state 'x'"),
    ("d/dt(x) = -x\nramp = 2*t\nx(0) = ramp", 3, 8,
     "the initial condition of 'x' cannot depend on 'ramp', which depends on the time 't'"),
    ("d/dt(x) = -x\nx ~ additive(1)", 2, 1,
     "'x' is a state, not an output; put the residual error on an output such as 'conc = x / V'"),
    ("k = 1\nd/dt(x) = -k*x\nk ~ additive(1)", 3, 1,
     "'k' is a parameter, not an output; a residual error belongs to a derived quantity that depends on a state"),
    ("d/dt(x) = -x\nc = 2*t\nc ~ additive(1)", 3, 1,
     "'c' is not an output because it does not depend on any state"),
    ("d/dt(x) = -x\nc ~ additive(1)", 2, 1, "'c' is not defined"),
    ("d/dt(x) = -x\nc = x\nc ~ gaussian(1)", 3, 5,
     "unknown error model 'gaussian'; the error models are additive, proportional, combined and exponential"),
    ("d/dt(x) = -x\nc = x\nc ~ combined(1)", 3, 5, "combined() takes 2 arguments, not 1"),
    ("d/dt(x) = -x\nc = x\nc ~ additive(1, 2)", 3, 5, "additive() takes 1 argument, not 2"),
    ("d/dt(x) = -x\nc = x\nc ~ additive(0)", 3, 14, "the magnitude of a residual error must be positive, not 0"),
    ("d/dt(x) = -x\nc = x\nc ~ proportional(0.1) + additive(-1)", 3, 34,
     "the magnitude of a residual error must be positive, not -1"),
    ("d/dt(x) = -x\nc = x\nc ~ additive(x)", 3, 14, "the magnitude of a residual error must be a number"),
    ("d/dt(x) = -x\nc = x\nc ~ additive(1) + additive(2)", 3, 19,
     "only 'proportional(b) + additive(a)' can be added"),
    # circular definitions
    ("d/dt(x) = -a*x\na = b + 1\nb = c\nc = 2*a", 2, 1, "'a' is defined in terms of itself: a -> b -> c -> a"),
    ("d/dt(x) = -a*x\nb = a\na = b", 2, 1, "'b' is defined in terms of itself: b -> a -> b"),
    ("d/dt(x) = -a*x\na = a + 1", 2, 1, "'a' is defined in terms of itself: a -> a"),
    # reserved names
    ("t = 1\nd/dt(x) = -x", 1, 1, "'t' is the time in hours and cannot be defined"),
    ("d/dt(t) = 1", 1, 6, "'t' is the time in hours and cannot be defined"),
    ("exp = 1\nd/dt(x) = -x", 1, 1, "'exp' is a function and cannot be defined"),
    ("where = 1\nd/dt(x) = -x", 1, 1, "'where' is a function and cannot be defined"),
    ("dose = 100\nd/dt(x) = -x", 1, 1, "'dose' is a keyword and cannot be used as a name"),
    # whole model
    ("", 1, 1, "the model is empty; write at least one state equation such as 'd/dt(central) = -k*central'"),
    ("# only a comment\n\n", 1, 1,
     "the model is empty; write at least one state equation such as 'd/dt(central) = -k*central'"),
    ("\n  k = 1 ~ 0.2\nc = k", 2, 3,
     "the model has no state equation; add one such as 'd/dt(central) = -k*central'"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS,
                         ids=[f"{i}:{row[3][:40]}" for i, row in enumerate(ERRORS)])
def test_every_mistake_is_a_model_error_with_its_position(text, line, column, message):
    with pytest.raises(ModelError) as caught:
        parse_spec(text)
    error = caught.value
    assert (error.line, error.column, error.message) == (line, column, message)
    assert str(error) == f"line {line}, column {column}: {message}"


def test_syntax_errors_come_before_name_errors_of_earlier_lines():
    with pytest.raises(ModelError) as caught:
        parse_spec("d/dt(x) = -undefined_name*x\nk = 1 +")
    assert (caught.value.line, caught.value.column) == (2, 7)


def test_positions_follow_continuation_lines_and_tabs():
    with pytest.raises(ModelError) as caught:
        parse_spec("d/dt(x) = -(x +\n\t\tCl)\nCL = 1")
    assert (caught.value.line, caught.value.column, caught.value.message) == (
        2, 3, "'Cl' is not defined (did you mean 'CL'?)")


def test_model_error_is_a_value_error():
    with pytest.raises(ValueError, match="line 1, column 12"):
        parse_spec("d/dt(x) = -y")
