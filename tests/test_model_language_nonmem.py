"""The NONMEM-shaped forms of the model language (shared/MODEL_LANGUAGE.md): variance(), sd(), iov,
corr(A, B), bounds 'in (LOW, HIGH)', 'dose ... duration=', and the limits and namespaces that keep
generated code safe (issue 14, defects 2 and 3)."""

from __future__ import annotations

import builtins
import keyword
import math
import re

import numpy as np
import pytest

import koopnb as kn
from koopnb.errors import ModelError
from koopnb.model.parse import FUNCTIONS

ONE_COMPARTMENT = """\
CL = 2.8 [L/h] {cl}
V  = 31.5 [L] ~ 0.15
d/dt(central) = -CL/V*central
conc = central / V
dose central
"""


def omega_of(iiv: str) -> float:
    model = kn.parse_model(ONE_COMPARTMENT.format(cl=iiv))
    return math.sqrt(model.omega[0, 0])


def model_error(text: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        kn.parse_model(text)
    return caught.value


# --- IIV and IOV forms ---------------------------------------------------------------------------------

def test_variance_is_nonmem_omega_squared():
    model = kn.parse_model(ONE_COMPARTMENT.format(cl="~ variance(0.0293)"))
    assert model.omega[0, 0] == pytest.approx(0.0293, rel=1e-15)
    assert model.spec.parameters[0].omega == pytest.approx(math.sqrt(0.0293), rel=1e-15)


@pytest.mark.parametrize(("iiv", "omega"), [
    ("~ sd(0.3)", 0.3), ("~ 0.3", 0.3), ("~ sd( 0.3 )", 0.3), ("~ variance(0.09)", 0.3),
    ("~ 27%", math.sqrt(math.log(1 + 0.27**2))), ("~ variance(0)", 0.0)])
def test_every_iiv_form_gives_the_sd_of_the_log(iiv, omega):
    assert omega_of(iiv) == pytest.approx(omega, rel=1e-14, abs=0)


@pytest.mark.parametrize(("iov", "kappa"), [
    ("12%", math.sqrt(math.log(1 + 0.12**2))), ("0.1", 0.1), ("variance(0.01)", 0.1), ("sd(0.2)", 0.2)])
def test_iov_in_each_form(iov, kappa):
    model = kn.parse_model(ONE_COMPARTMENT.format(cl=f"~ 27% iov {iov}"))
    assert model.iov == {"CL": pytest.approx(kappa, rel=1e-14)}
    assert omega_of(f"~ 27% iov {iov}") == pytest.approx(math.sqrt(math.log(1 + 0.27**2)), rel=1e-14)


def test_parameters_without_iov_are_not_in_model_iov():
    assert kn.parse_model(ONE_COMPARTMENT.format(cl="~ 0.3")).iov == {}


# --- correlations ---------------------------------------------------------------------------------------

BLOCK = """\
ka = 1.5 [1/h] ~ 0.6
CL = 2.8 [L/h] ~ variance(0.0293)
V  = 31.5 [L] ~ 0.15
F1 = 0.9
corr(CL, V) = 0.4
corr(ka, CL) = -0.25
d/dt(depot) = -ka*depot
d/dt(central) = ka*depot - CL/V*central
conc = central / V
dose depot bioavailability=F1
"""


def test_corr_fills_omega_with_r_times_the_two_sds():
    model = kn.parse_model(BLOCK)
    sd = {"ka": 0.6, "CL": math.sqrt(0.0293), "V": 0.15, "F1": 0.0}
    expected = np.diag([sd[p] ** 2 for p in model.parameters])
    i = {p: k for k, p in enumerate(model.parameters)}
    for (a, b), r in {("CL", "V"): 0.4, ("ka", "CL"): -0.25}.items():
        expected[i[a], i[b]] = expected[i[b], i[a]] = r * sd[a] * sd[b]
    np.testing.assert_allclose(model.omega, expected, rtol=1e-15, atol=0)
    assert model.spec.correlations == {("CL", "V"): 0.4, ("ka", "CL"): -0.25}


def test_the_prior_samples_have_the_written_correlations():
    prior = kn.parse_model(BLOCK).prior()
    assert set(prior.names) == {"ka", "CL", "V"}
    n = 40_000
    logs = {name: np.log(values) for name, values in prior.sample(n, seed=7).items()}
    for (a, b), r in {("CL", "V"): 0.4, ("ka", "CL"): -0.25, ("ka", "V"): 0.0}.items():
        sample = np.corrcoef(logs[a], logs[b])[0, 1]
        standard_error = (1 - r**2) / math.sqrt(n)  # of Pearson's r for a bivariate normal
        assert abs(sample - r) < 3 * standard_error, (a, b, sample)
    for name, sd in {"ka": 0.6, "CL": math.sqrt(0.0293), "V": 0.15}.items():
        assert np.std(logs[name]) == pytest.approx(sd, rel=3 * math.sqrt(0.5 / n))


def test_a_full_block_of_three_that_is_positive_definite_is_accepted():
    text = BLOCK.replace("corr(ka, CL) = -0.25", "corr(ka, CL) = 0.5\ncorr(ka, V) = 0.5")
    model = kn.parse_model(text)
    assert np.all(np.linalg.eigvalsh(model.omega[:3, :3]) > 0)


def test_omega_that_is_not_positive_definite_names_the_pair_that_breaks_it():
    text = BLOCK.replace("corr(ka, CL) = -0.25", "corr(ka, CL) = 0.9\ncorr(ka, V) = -0.9")
    error = model_error(text)
    assert (error.line, error.column) == (7, 6)
    assert error.message == ("corr(ka, V) = -0.9 leaves the IIV covariance Ω not positive definite, "
                             "together with the correlations before it")


@pytest.mark.parametrize(("line", "number", "column", "message"), [
    ("corr(CL, F1) = 0.3", 6, 10, "'F1' has no IIV, so it cannot have a correlation; give it one with '~ OMEGA'"),
    ("corr(CL, conc) = 0.3", 6, 10, "'conc' is a derived quantity, not a parameter with IIV, so it cannot have a "
                                    "correlation"),
    ("corr(CL, Vd) = 0.3", 6, 10, "'Vd' is not defined (did you mean 'V'?)"),
    ("corr(CL, CL) = 0.3", 6, 10, "a correlation needs two different parameters, not 'CL' twice"),
    ("corr(V, CL) = 0.1", 6, 6, "the correlation of 'V' and 'CL' is already given on line 5"),
    ("corr(CL, ka) = 1", 6, 16, "the correlation of 'CL' and 'ka' must lie strictly between -1 and 1, not 1"),
    ("corr(CL, ka) = -1.5", 6, 16, "the correlation of 'CL' and 'ka' must lie strictly between -1 and 1, not -1.5"),
    ("corr(CL) = 0.3", 6, 1, "a correlation is written 'corr(A, B) = R', as in 'corr(CL, V) = 0.4'"),
    ("corr(CL, ka) = 0.3 0.2", 6, 20, "unexpected '0.2' after the correlation of 'CL' and 'ka'"),
])
def test_correlation_mistakes(line, number, column, message):
    text = BLOCK.replace("corr(ka, CL) = -0.25", line)
    error = model_error(text)
    assert (error.line, error.column, error.message) == (number, column, message)


def test_corr_of_zero_is_still_the_initial_condition_of_a_state_called_corr():
    model = kn.parse_model("k = 0.5\nd/dt(corr) = -k*corr\ncorr(0) = 4\n")
    out = model.simulate({}, kn.Regimen([]), [2.0])
    assert out["corr"][0, 0] == pytest.approx(4 * math.exp(-1.0), rel=1e-12)


# --- bounded parameters ---------------------------------------------------------------------------------

BOUNDED = """\
CL = 2.8 [L/h] ~ 0.3
V = 31.5 [L] ~ 0.15
covariate WT = 70 [kg]
TH3 = {theta}
CLi = CL * (1 + TH3*(WT - 70)/70)
d/dt(central) = -CLi/V*central
conc = central / V
dose central
"""


@pytest.mark.parametrize(("theta", "typical", "bounds"), [
    ("0.159 in (-0.99, inf)", 0.159, (-0.99, math.inf)),
    ("-0.5 [1] in (-1, 0)", -0.5, (-1.0, 0.0)),
    ("0 in (-inf, inf)", 0.0, (-math.inf, math.inf)),
    ("1e-3 in ( -1e3 , +1e3 )", 1e-3, (-1e3, 1e3)),
])
def test_bounds_are_parsed_and_the_value_may_be_zero_or_negative(theta, typical, bounds):
    model = kn.parse_model(BOUNDED.format(theta=theta))
    assert model.typical["TH3"] == typical
    assert model.bounds == {"TH3": bounds}
    assert model.omega[2, 2] == 0
    out = model.simulate({}, kn.Regimen([kn.Dose(100.0)]), [5.0], covariates={"WT": 35.0})
    clearance = 2.8 * (1 + typical * (35 - 70) / 70)
    assert out["conc"][0, 0] == pytest.approx(100 / 31.5 * math.exp(-clearance / 31.5 * 5), rel=1e-12)


@pytest.mark.parametrize(("theta", "column", "message"), [
    ("0.159 in (0.2, inf)", 7, "the typical value of 'TH3' (0.159) must lie strictly inside its bounds (0.2, inf)"),
    ("-1 in (-1, 0)", 7, "the typical value of 'TH3' (-1) must lie strictly inside its bounds (-1, 0)"),
    ("0.1 in (1, -1)", 14, "the lower bound of 'TH3' must be below its upper bound, not (1, -1)"),
    ("0.1 in [0, 1]", 14, "bounds are written 'in (LOW, HIGH)', as in 'in (-0.99, inf)'"),
    ("0.1 in (0, 1", 14, "this '(' is never closed"),
    ("0.1 in (0; 1)", 16, "bounds are written 'in (LOW, HIGH)', as in 'in (-0.99, inf)'"),
    ("0.1 in (0, infinity)", 18, "bounds are written 'in (LOW, HIGH)', as in 'in (-0.99, inf)'"),
    ("0.1 in (0, 1) fixed", 21, "unexpected 'fixed' after the bounds of 'TH3'"),
    ("0.1 ~ 0.2 in (0, 1)", 17, "'TH3' has IIV, so it cannot have bounds: 'in (LOW, HIGH)' is for parameters "
                                "without IIV"),
])
def test_bound_mistakes(theta, column, message):
    error = model_error(BOUNDED.format(theta=theta))
    assert (error.line, error.column, error.message) == (4, column, message)


def test_without_bounds_or_iiv_a_parameter_keeps_any_sign_as_before():
    model = kn.parse_model(BOUNDED.format(theta="-0.2"))
    assert model.typical["TH3"] == -0.2
    assert model.bounds == {}


# --- modelled infusion duration ---------------------------------------------------------------------------

def test_dose_duration_is_a_batched_function_of_the_arguments():
    model = kn.parse_model("""\
covariate WT = 70 [kg]
CL = 2.8 ~ 0.3
V = 31.5 ~ 0.15
D1 = 1.5 [h] ~ 0.2
d/dt(central) = -CL/V*central
conc = central / V
dose central lag=0.25 duration=D1 * (WT/70)
""")
    args = model.arguments({"D1": np.array([1.0, 2.0, 3.0])}, {"WT": 35.0})
    duration = model.compiled.dose_duration(*args)
    assert duration.shape == (3,)
    np.testing.assert_allclose(duration, [0.5, 1.0, 1.5], rtol=1e-15)
    assert kn.parse_model(ONE_COMPARTMENT.format(cl="")).compiled.dose_duration is None


def test_a_constant_duration_is_broadcast_to_the_batch():
    model = kn.parse_model("k = 0.1 ~ 0.2\nd/dt(x) = -k*x\ndose x duration=2\n")
    assert model.compiled.dose_duration(np.array([0.1, 0.2])).tolist() == [2.0, 2.0]


def test_the_duration_cannot_depend_on_a_state_or_time():
    error = model_error("k = 0.1\nd/dt(x) = -k*x\ndose x duration=x + 1\n")
    assert (error.line, error.column, error.message) == (3, 17, "the infusion duration cannot depend on the state 'x'")
    error = model_error("k = 0.1\nd/dt(x) = -k*x\ndose x duration=1 + t\n")
    assert error.message == "the infusion duration cannot depend on the time 't'"


# --- defect 2: user names never clash with the generated code's namespace ---------------------------------

def clashing_names() -> list[str]:
    """Every numpy and builtin name the language lets a user write, and Python's keywords."""
    reserved = {*FUNCTIONS, "t", "dose", "covariate", "d"}
    candidates = {*dir(np), *dir(builtins), *keyword.kwlist,
                  "select", "minimum", "maximum", "greater", "less", "less_equal", "greater_equal",
                  "x0", "x1", "_arg0", "_arg1", "numpy", "np", "math", "mpmath", "Dummy", "imports",
                  "_lambdifygenerated"}
    return sorted(n for n in candidates if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) and n not in reserved)


def batched_model(names: list[str]) -> str:
    """A one-compartment model that uses every name, through where, min, max and every comparison."""
    lines = [f"{name} = {0.01 * (k + 1):g}" for k, name in enumerate(names)]
    a, b, c = names[0], names[1 % len(names)], names[2 % len(names)]
    lines += [
        f"k = where({a} > {b}, min({a}, {c}), max({b}, {c})) + where({a} <= {c}, {a}, {b}) + 0.001*("
        + " + ".join(names) + ")",
        f"d/dt(central) = -k*central + where(t >= 1, 0, where(t < 0.5, {a}, {b}))",
        "conc = central * min(" + ", ".join(names[:5]) + ") / max(" + ", ".join(names[-5:]) + ")",
        "dose central",
    ]
    return "\n".join(lines)


DANGEROUS = ["select", "minimum", "maximum", "greater", "less", "less_equal", "greater_equal", "amin", "amax",
             "piecewise", "asarray", "array", "broadcast_to", "nan", "inf", "e", "pi", "float", "int", "None", "True",
             "lambda", "if", "def", "return", "x0", "x1", "_arg0", "_arg1", "numpy", "builtins", "Abs", "Heaviside",
             "logical_and", "logical_or", "isnan", "fmin", "fmax", "power", "divide", "exp_", "log10"]


def check_names_simulate_like_neutral_names(names: list[str]) -> None:
    neutral = [f"p{k}" for k in range(len(names))]
    regimen = kn.Regimen([kn.Dose(100.0)])
    times = [0.25, 0.75, 2.0]
    clashing = kn.parse_model(batched_model(names)).simulate({}, regimen, times)
    twin = kn.parse_model(batched_model(neutral)).simulate({}, regimen, times)
    assert np.array_equal(clashing["conc"], twin["conc"]), names
    assert np.all(np.isfinite(twin["conc"]))


def test_the_dangerous_names_simulate_exactly_like_neutral_names():
    check_names_simulate_like_neutral_names(DANGEROUS)


@pytest.mark.parametrize("chunk", range(0, 800, 100))
def test_every_numpy_and_python_name_simulates_exactly_like_neutral_names(chunk):
    if names := clashing_names()[chunk:chunk + 100]:
        check_names_simulate_like_neutral_names(names)


def test_the_seven_names_of_the_report_as_parameters_with_iiv():
    names = ["select", "minimum", "maximum", "greater", "less", "less_equal", "greater_equal"]
    header = "\n".join(f"{name} = {k + 1} ~ 0.1" for k, name in enumerate(names))
    body = ("\nk = where(select > minimum, min(maximum, greater), max(less, less_equal)) / greater_equal"
            "\nd/dt(central) = -k*central\nconc = central\ndose central\n")
    model = kn.parse_model(header + body)
    twin = kn.parse_model("\n".join(f"p{k} = {k + 1} ~ 0.1" for k in range(7))
                          + body.replace("select", "p0").replace("minimum", "p1").replace("maximum", "p2")
                          .replace("greater_equal", "p6").replace("greater", "p3").replace("less_equal", "p5")
                          .replace("less", "p4"))
    values = np.linspace(0.5, 2, 4)
    out = model.simulate({name: values * (k + 1) for k, name in enumerate(names)}, kn.Regimen([kn.Dose(10.0)]),
                         [1.0, 3.0])
    expected = twin.simulate({f"p{k}": values * (k + 1) for k in range(7)}, kn.Regimen([kn.Dose(10.0)]), [1.0, 3.0])
    assert np.array_equal(out["conc"], expected["conc"])


# --- defect 3 and the limits -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("CL = 2.8 ~ 1e200%\nd/dt(c) = -CL*c\n", 1, 12,
     "the IIV of 'CL' is too large: its SD of the log would be inf, above the limit of 10"),
    ("CL = 2.8 ~ 1e24%\nd/dt(c) = -CL*c\n", 1, 12,
     "the IIV of 'CL' is too large: its SD of the log would be 10.07, above the limit of 10"),
    ("CL = 2.8 ~ variance(101)\nd/dt(c) = -CL*c\n", 1, 21,
     "the IIV of 'CL' is too large: its SD of the log would be 10.05, above the limit of 10"),
    ("CL = 2.8 ~ 0.1 iov sd(-1)\nd/dt(c) = -CL*c\n", 1, 23, "the IOV of 'CL' cannot be negative"),
    ("a = 2\nx = " + "a^" * 100 + "a\nd/dt(c) = -x*c\n", 2, 103, "the expression is nested more than 50 levels deep"),
    ("a = 2\nx = " + "+".join(["a"] * 3000) + "\nd/dt(c) = -x*c\n", 2, 2005,
     "the expression is longer than the limit of 2,000 numbers, names and operators; split it into named parts"),
    ("c = 2 ~ 0.1\nd/dt(central) = -c*1e308*10*central\n", 2, 17,
     "a number in this expression is too large for a floating-point number"),
    ("c = 2 ~ 0.1\nx = 10^200 * c * 10^200\nd/dt(central) = -x*central\n", 2, 5,
     "a number in this expression is too large for a floating-point number"),
    ("big = 1e308 fixed\nc = 2\nx = big*c*10\nd/dt(central) = -x*central\n", 3, 1,
     "'x' holds a number too large for a floating-point number once the quantities it uses are written out"),
    ("a = 2\nx0 = a\n" + "".join(f"x{i} = exp(x{i - 1}/a)\n" for i in range(1, 150)) + "d/dt(c) = -x149*c\n", 53, 1,
     "'x51' is nested more than 100 levels deep once the quantities it uses are written out; define fewer "
     "quantities inside one another"),
    ("a = 2\nx0 = a\n" + "".join(f"x{i} = x{i - 1}*a + x{i - 1}\n" for i in range(1, 40)) + "d/dt(c) = -x39*c\n",
     13, 1, "'x11' has more than 5,000 terms once the quantities it uses are written out; each quantity is used too "
     "many times inside the next"),
    ("CL = 2.8\nV = 0 fixed\nd/dt(central) = CL\nconc = V^(-1) + central\n", 4, 1,
     "'conc' is undefined or not a real number once the quantities it uses are written out (a division by zero, the "
     "log of zero or the square root of a negative number)"),
    ("k = -1 fixed\nd/dt(c) = -sqrt(k)*c\n", 2, 1,
     "'c' is undefined or not a real number once the quantities it uses are written out (a division by zero, the "
     "log of zero or the square root of a negative number)"),
    ("CL = 2.8\nd/dt(c) = -CL*c\nconc = min(CL, log(min(CL, 0))) + c\n", 3, 16,
     "this is never a real number (the log or square root of something that cannot be positive), so it cannot be "
     "used in min()"),
    ("CL = 2.8\nd/dt(c) = -CL*c\nconc = where(CL > sqrt(min(CL, 0) - 1), 1, 2) + c\n", 3, 19,
     "this is never a real number (the log or square root of something that cannot be positive), so it cannot be "
     "used in a comparison"),
    ("CL = 2.8\nk = -1 fixed\nd/dt(c) = -CL*c\nconc = max(CL, sqrt(k)) + c\n", 4, 1,
     "'conc' compares or takes the min or max of something that is undefined or not a real number once the "
     "quantities and constants it uses are written out"),
    ("a = 1\n" * 2001, 2001, 1, "the model has more than the limit of 2,000 statements"),
    ("# " + "x" * 200_000, 1, 200_001, "the model text is longer than the limit of 200,000 characters"),
])
def test_defect_3_inputs_and_the_limits_are_located_model_errors(text, line, column, message):
    error = model_error(text)
    assert (error.line, error.column, error.message) == (line, column, message)


def test_a_thousand_term_sum_and_a_hundred_nested_quantities_work():
    chain = "k = " + " + ".join(["a"] * 999) + "\n"
    model = kn.parse_model("a = 0.0001 ~ 0.1\n" + chain + "d/dt(c) = -k*c\nconc = c\ndose c\n")
    out = model.simulate({}, kn.Regimen([kn.Dose(1.0)]), [2.0])
    assert out["conc"][0, 0] == pytest.approx(math.exp(-0.0999 * 2), rel=1e-12)
    nested = "a = 0.5\nx0 = a\n" + "".join(f"x{i} = sqrt(x{i - 1})\n" for i in range(1, 99))
    model = kn.parse_model(nested + "d/dt(c) = -x98*c\nconc = c\ndose c\n")
    out = model.simulate({}, kn.Regimen([kn.Dose(1.0)]), [1.0])
    assert out["conc"][0, 0] == pytest.approx(math.exp(-(0.5 ** (0.5**98))), rel=1e-12)


def test_a_dose_with_a_modelled_duration_is_infused_over_it():
    model = kn.parse_model("CL = 2 ~ 0.2\nV = 20\nD1 = 2 [h] ~ 0.3\nd/dt(central) = -CL/V*central\n"
                           "conc = central / V\ndose central duration=D1\n")
    k, rate = 0.1, 100.0 / 2  # 100 mg over D1 = 2 h into V = 20 L
    out = model.simulate({}, kn.Regimen([kn.Dose(100.0, duration=None)]), [1.0, 5.0])
    during = rate / (k * 20) * (1 - math.exp(-k * 1.0))
    after = rate / (k * 20) * (1 - math.exp(-k * 2.0)) * math.exp(-k * 3.0)
    np.testing.assert_allclose(out["conc"][0], [during, after], rtol=1e-10)


# --- found by the parse -> simulate fuzz test ----------------------------------------------------------------

def test_a_nested_where_in_a_condition_broadcasts_a_batch_against_the_time():
    """The condition 'where(t > 1, CL, 0) > 1' becomes an and/or of a batch (CL) and a scalar (t)."""
    model = kn.parse_model("CL = 2 ~ 0.3\nd/dt(c) = -where(where(t > 1, CL, 0) > 1, CL, 0.1)*c\nconc = c\ndose c\n")
    out = model.simulate({"CL": np.array([0.5, 2.0])}, kn.Regimen([kn.Dose(1.0)]), [0.5, 2.0])
    expected = [[math.exp(-0.05), math.exp(-0.2)], [math.exp(-0.05), math.exp(-0.1 - 2.0)]]
    np.testing.assert_allclose(out["conc"], expected, rtol=1e-6)


def test_a_comparison_of_a_branch_that_is_never_real_is_a_located_model_error():
    error = model_error("V = 2.8\nx0 = 31.5\nd/dt(c) = where(log(where(V < 710, -1e-8, x0)) < V, V, V)\n")
    assert (error.line, error.column, error.message) == (
        3, 11, "this compares something that is not a real number in some case (the log or square root of something "
               "negative), which cannot be compared")


def test_a_condition_holding_a_where_with_a_log_of_t_compiles_and_reports_at_simulation():
    """sympy's own printer would simplify this condition by evaluating it at random points (log(0): ValueError)."""
    model = kn.parse_model("k = 2.8 ~ 0.3\nd/dt(x) = -where(min(1e300, where(k > x, 1, log(t))) > 700, 0, k)*x\n"
                           "conc = x\ndose x\n")
    out = model.simulate({}, kn.Regimen([kn.Dose(1.0)]), [1.0])
    assert out["conc"][0, 0] == pytest.approx(math.exp(-2.8), rel=1e-6)
