"""Fuzzing the %%pkmodel parser: whatever the text, the only way out is a ModelSpec or a located
ModelError, and nothing in the text is ever executed."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import koopnb.model.lexer
import koopnb.model.parse
from koopnb.errors import ModelError
from koopnb.model.parse import parse_spec
from koopnb.model.spec import ModelSpec

SENTINEL = Path(tempfile.gettempdir()) / f"koopnb-parser-pwned-{uuid.uuid4().hex}"

VALID_MODELS = [
    """\
# theophylline: one compartment, first-order absorption
ka = 1.5  [1/h] ~ 0.6        # typical value, unit, log-normal IIV (omega = SD of the log)
CL = 2.8  [L/h] ~ 27%        # IIV may be given as CV%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
""",
    """\
covariate WT = 70 [kg]
CL = 5 [L/h] ~ 0.3
V1 = 20 [L] ~ 0.2
Q = 8 [L/h] ~ 25%
V2 = 40 [L]
k_wt = 0.75 fixed
tlag = 0.5 [h]
CLi = CL * (WT / 70)^k_wt
central' = -(CLi + Q)/V1*central + Q/V2*peripheral
peripheral' = Q/V1*central - Q/V2*peripheral
central(0) = 0
conc = central / V1
conc ~ proportional(0.1) + additive(0.05)
dose central bioavailability=1 lag=tlag
""",
    """\
Vmax = 10 ~ 0.2
Km = 2
d/dt(x) = -Vmax*x/(Km + x) + where(t < 1, 5,
                                    0)
effect = max(x - 1, 0) ** 2 + sqrt(abs(x)) * exp(-t) + log(1 + x)
effect ~ exponential(0.2)
""",
]

HOSTILE = [
    f"x = __import__('os').system('touch {SENTINEL}')",
    f'x = exec("open(\'{SENTINEL}\', \'w\')")',
    f"x = open('{SENTINEL}', 'w')",
    "x = eval('1')",
    "x = (lambda: 1)()",
    "x = a.b",
    "x = a.__class__.__mro__",
    "x = a[0]",
    'x = "s"',
    "x = b'\\x00'",
    "x = f'{a}'",
    "x = open('f')",
    "x = print(1)",
    "x = getattr(a, 'b')",
    "x = [i for i in range(3)]",
    "x = exp(i for i in y)",
    "x = {1: 2}",
    "x = a if b else c",
    "x = not a",
    "x = a and b",
    "x = *a",
    "x = exp(*a)",
    "x = exp(x=1)",
    "x = a @ b",
    "x = a // b",
    "x = a % b",
    "x = a | b",
    "x = 1j",
    "x = 0x1F",
    "x = 1_000",
    "x = a; import os",
    "x = (a := 1)",
    "x = yield 1",
    "x = await a",
    "x = ...",
    "x = \\",
    "x = __builtins__",
    "x = 9**9**9**9**9",
    "x = exp(exp(exp(exp(100))))",
    "x = 10**(10**10) / 10**(10**10)",
    "x = " + "(" * 60 + "1" + ")" * 60,
    "x = " + "-" * 5000 + "1",
    "x = " + "+".join(["a"] * 5000),
    "x = 1" + "0" * 5000,
    "x = 0." + "1" * 5000,
    "x = 1\x00",
    "d/dt(x) = -x\u2028y = 1",
    "x\N{COMBINING ACUTE ACCENT} = 1",
    "ｘ = 1",  # a full-width letter that NFKC would turn into 'x'
]

ALPHABET = st.sampled_from([
    *"abcdefkxytVCL_0123456789.eE+-*/^()[]~%=<>,'\"# \t\n\r:;@!{}\\`$?",
    "é", "µ", "\x00", "\x0c", "\x0b", "\x85", "\u2028", "\u00a0", "😀", "\ufeff"])

TOKENS = st.sampled_from([
    "d/dt(", "(", ")", "[", "]", "[]", "[L]", "~", "~ 0.3", "%", "^", "**", "=", "==", "'", "#", "\n",
    "\r\n", "\r", "dose ", "covariate ", "fixed", "where(", "exp(", "min(", "t", "0", "-1", "1e999", ",",
    "<", "<=", "lambda", "__import__", ".", "foo(", "9**9**9", "(0)", " ", "additive(", "combined(1,",
    "bioavailability=", "lag=", "/0", "log(0)", "sqrt(-1)", "x' =", "central", "depot", "é",
])


def check_outcome(text: str) -> ModelSpec | ModelError:
    """Parse ``text``: a ModelSpec, or a ModelError located inside the text; never anything else."""
    try:
        spec = parse_spec(text)
    except ModelError as error:
        lines = re.split(r"\r\n|\r|\n", text)
        assert isinstance(error.line, int) and isinstance(error.column, int)
        assert 1 <= error.line <= len(lines), (error, text)
        assert 1 <= error.column <= len(lines[error.line - 1]) + 1, (error, text)
        assert error.message and "\n" not in error.message
        assert str(error).startswith(f"line {error.line}, column {error.column}: ")
        return error
    assert isinstance(spec, ModelSpec)
    assert spec.states
    return spec


FAST = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.text(max_size=200))
def test_random_unicode_text(text):
    check_outcome(text)


@FAST
@given(st.text(alphabet=ALPHABET, max_size=120))
def test_random_text_of_the_language_characters(text):
    check_outcome(text)


@st.composite
def mutated_models(draw) -> str:
    """A valid model with characters and tokens deleted, inserted, replaced, and lines shuffled."""
    text = draw(st.sampled_from(VALID_MODELS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "token", "replace", "hostile", "line"]))
        if edit == "delete":
            text = text[:i] + text[draw(st.integers(i, min(len(text), i + 10))):]
        elif edit == "insert":
            text = text[:i] + draw(st.text(alphabet=ALPHABET, min_size=1, max_size=4)) + text[i:]
        elif edit == "token":
            text = text[:i] + draw(TOKENS) + text[i:]
        elif edit == "replace":
            text = text[:i] + draw(TOKENS) + text[i + 1:]
        elif edit == "hostile":
            text = text[:i] + draw(st.sampled_from(HOSTILE)) + text[i:]
        else:
            lines = text.split("\n")
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines + HOSTILE)))
            text = "\n".join(lines)
    return text


@FAST
@given(mutated_models())
def test_mutated_models(text):
    check_outcome(text)
    assert not SENTINEL.exists()


@pytest.mark.parametrize("model", VALID_MODELS)
def test_the_unmutated_models_are_valid(model):
    assert isinstance(check_outcome(model), ModelSpec)


@pytest.mark.parametrize("line", HOSTILE)
def test_hostile_lines_are_model_errors_and_never_run(line):
    for text in (line, VALID_MODELS[0] + line + "\n", line + "\n" + VALID_MODELS[1]):
        outcome = check_outcome(text)
        assert isinstance(outcome, ModelError), text
    assert not SENTINEL.exists()


def test_the_parser_never_evaluates_text():
    """The modules that read model text contain no evaluating call at all."""
    forbidden = re.compile(r"(?<![\w.])(eval|exec|compile)\s*\(|sympify|parse_expr|__import__|\bS\s*\(")
    for module in (koopnb.model.parse, koopnb.model.lexer):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert forbidden.search(source) is None, module.__name__


# --- parse -> simulate: a koopnb error or finite numbers, in bounded time -------------------------------------

SIMULATION_SECONDS = 120
"""Wall-clock limit of one generated model's parse and simulation.  Generous: a right-hand side that chatters
between where() branches runs the ODE solver to its 200,000-evaluation cap (about 9 s) before its
SimulationError, and the machine may be shared; a hang never ends."""

NUMBERS = st.sampled_from(["0", "1", "0.5", "2", "3.7", "1e-300", "1e300", "1e308", "700", "710", "1e-8"])


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner).map(
        lambda p: f"({p[0]} {p[1]} {p[2]})")
    unary = st.tuples(st.sampled_from(["exp", "log", "sqrt", "abs"]), inner).map(lambda p: f"{p[0]}({p[1]})")
    pair = st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(lambda p: f"{p[0]}({p[1]}, {p[2]})")
    where = st.tuples(inner, st.sampled_from(["<", "<=", ">", ">="]), inner, inner, inner).map(
        lambda p: f"where({p[0]} {p[1]} {p[2]}, {p[3]}, {p[4]})")
    return st.one_of(binary, unary, pair, where)


EXPRESSIONS = st.recursive(
    st.one_of(st.sampled_from(["{p0}", "{p1}", "{p2}", "{s0}", "{s1}", "t"]), NUMBERS,
              NUMBERS.map(lambda n: f"(-{n})")),
    _extend, max_leaves=6)
"""Expressions of the language over placeholders {p0}..{p2} (parameters), {s0}, {s1} (states), t and extreme
numbers; a model fills the placeholders with its own names."""


@st.composite
def generated_models(draw) -> str:
    """A model with 1-3 parameters (any IIV form, bounds or neither), 1-2 states, an output and a dose line."""
    parameters = draw(st.lists(st.sampled_from(["CL", "V", "ka", "select", "minimum", "less", "x0"]),
                               min_size=1, max_size=3, unique=True))
    states = draw(st.lists(st.sampled_from(["central", "depot", "where_", "greater"]), min_size=1, max_size=2,
                           unique=True))
    names = {f"p{i}": parameters[i % len(parameters)] for i in range(3)}
    dynamic = {**names, **{f"s{i}": states[i % len(states)] for i in range(2)}}
    static = {**names, "s0": names["p0"], "s1": names["p1"]}
    lines = []
    for name in parameters:
        value = draw(st.sampled_from(["2.8", "0.1", "31.5", "1e-300", "1e300", "0", "-1"]))
        spread = draw(st.sampled_from(["", " ~ 0.3", " ~ 27%", " ~ variance(0.09)", " ~ sd(2)", " ~ 30% iov 10%",
                                       " in (-inf, inf)", " in (-2, 1e301)", " fixed"]))
        lines.append(f"{name} = {value}{spread}")
    if len(parameters) > 1 and draw(st.booleans()):
        lines.append(f"corr({parameters[0]}, {parameters[1]}) = {draw(st.sampled_from(['0.5', '-0.9', '0.99']))}")
    for state in states:
        lines.append(f"d/dt({state}) = {draw(EXPRESSIONS).format(**dynamic)}")
        if draw(st.booleans()):
            lines.append(f"{state}(0) = {draw(EXPRESSIONS).format(**static)}")
    lines.append(f"conc = {draw(EXPRESSIONS).format(**dynamic)} + {states[0]}")
    options = draw(st.sampled_from(["", " lag=0.5", " bioavailability=0.8", " duration=1", " duration=0",
                                    f" duration={parameters[0]}"]))
    lines.append(f"dose {states[0]}{options}")
    return "\n".join(lines) + "\n"


def simulate_outcome(text: str) -> None:
    """Parse and simulate ``text``: a located ModelError, another KoopnbError, or finite outputs."""
    import signal

    import numpy as np

    import koopnb as kn
    from koopnb.errors import KoopnbError

    def too_slow(signum, frame):
        raise TimeoutError(f"parse and simulate took more than {SIMULATION_SECONDS} s:\n{text}")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(SIMULATION_SECONDS)
    try:
        outcome = check_outcome(text)
        if isinstance(outcome, ModelError):
            return
        try:
            model = kn.Model(outcome)
            values = model.simulate({}, kn.Regimen([kn.Dose(100.0), kn.Dose(50.0, time=6.0)]),
                                    [0.0, 0.5, 2.0, 12.0])
        except KoopnbError:
            return
        for name, value in values.items():
            assert np.all(np.isfinite(value)), (name, value, text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(generated_models())
def test_generated_models_give_a_koopnb_error_or_finite_numbers_in_bounded_time(text):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warnings; the outcome is checked
        simulate_outcome(text)
