"""Code generation: sympy expressions of a parsed model → batched numpy functions.

Every generated function takes arrays with the batch on the last axis of a state block or on axis 0
of a parameter vector, and broadcasts constants, so one call evaluates a whole batch of parameter
sets.  Common subexpressions are shared through ``sympy.lambdify(..., cse=True)``.

The generated code never sees the user's names: every argument is renamed ``_arg0``, ``_arg1``...
before ``lambdify``, so a parameter called ``select``, ``minimum`` or ``exp`` cannot shadow the numpy
function the code calls.  Once derived quantities are substituted, an expression may be at most
:data:`MAX_DEPTH` levels deep (sympy and Python's compiler recurse once per level) and every number in
it must be a finite float64; either is otherwise a ModelError naming the quantity and its line.
"""

from __future__ import annotations

import functools
import graphlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sympy.printing.numpy import NumPyPrinter

from koopnb.errors import ModelError
from koopnb.model.parse import is_float64
from koopnb.model.spec import TIME, ModelSpec, symbol

MAX_DEPTH = 100
"""Deepest expression once derived quantities are substituted (far beyond any model; within the
recursion of sympy, of lambdify's printer and of Python's compiler)."""
_UNDEFINED = frozenset({sp.zoo, sp.nan, sp.oo, -sp.oo})
MAX_SIZE = 5000
"""Most terms in one expression written out as a tree: derivatives and code generation grow with it,
and ``x2 = x1*x1``, ``x3 = x2*x2``... doubles it at every line."""


def substitute_derived(spec: ModelSpec) -> dict[str, sp.Expr]:
    """Every derived quantity written only in parameters, constants, covariates, states and ``t``.

    The parser has rejected circular definitions, so the derived quantities are substituted once each,
    in an order where every name comes after those it uses.
    """
    constants = {symbol(name): sp.Float(value) for name, value in spec.constants.items()}
    uses = {name: {s.name for s in expr.free_symbols if s.name in spec.derived} for name, expr in spec.derived.items()}
    resolved: dict[str, sp.Expr] = {}
    for name in graphlib.TopologicalSorter(uses).static_order():
        expr = spec.derived[name]
        derived = {s: resolved[s.name] for s in expr.free_symbols if s.name in resolved}
        resolved[name] = _checked(spec, name, _replaced(spec, name, expr, derived, constants))
    return resolved


def expand(spec: ModelSpec, expr: sp.Expr, resolved: dict[str, sp.Expr], what: str | None = None) -> sp.Expr:
    """``expr`` with derived quantities and constants replaced by their definitions.

    ``what`` names the expression (a state, or a dose option of the line of the dose) for the errors
    of :func:`_checked`; without it the expression is not checked.
    """
    constants = {symbol(name): sp.Float(value) for name, value in spec.constants.items()}
    derived = {symbol(name): value for name, value in resolved.items()}
    value = _replaced(spec, what, expr, derived, constants)
    return value if what is None else _checked(spec, what, value)


def _replaced(spec: ModelSpec, what: str | None, expr: sp.Expr, *replacements: dict) -> sp.Expr:
    """``expr`` after each replacement in turn; sympy refuses min, max or a comparison of what becomes
    non-real (``min(CL, log(k))`` with ``k = 0 fixed``), and that is the user's ModelError."""
    try:
        for replacement in replacements:
            expr = expr.xreplace(replacement)
    except (ValueError, TypeError):
        line = spec.lines.get(what, spec.dose.line if spec.dose else None)
        label = f"'{what}'" if what in spec.lines else f"the {what or 'expression'}"
        raise ModelError(f"{label} compares or takes the min or max of something that is undefined or not a real "
                         "number once the quantities and constants it uses are written out", line, 1) from None
    return expr


def _checked(spec: ModelSpec, what: str, expr: sp.Expr) -> sp.Expr:
    """``expr`` if it is small enough to differentiate and compile and its numbers are finite float64.

    Depth and size are those of the expression written out as a tree (a quantity used twice counts
    twice, as it does for sympy's derivatives), measured on the shared graph without recursion.
    """
    line = spec.lines.get(what, spec.dose.line if spec.dose else None)
    label = f"'{what}'" if what in spec.lines else f"the {what}"
    written_out = "once the quantities it uses are written out"
    sizes: dict[sp.Basic, int] = {}
    path = [(expr, iter(expr.args))]
    while path:
        node, children = path[-1]
        child = next((arg for arg in children if arg not in sizes), None)
        if child is not None:
            if len(path) >= MAX_DEPTH:
                raise ModelError(f"{label} is nested more than {MAX_DEPTH} levels deep {written_out}; "
                                 "define fewer quantities inside one another", line, 1)
            path.append((child, iter(child.args)))
            continue
        path.pop()
        if node.is_Number and not is_float64(node):
            raise ModelError(f"{label} holds a number too large for a floating-point number {written_out}",
                             line, 1)
        if node.is_Atom and (node in _UNDEFINED or node is sp.I):
            raise ModelError(f"{label} is undefined or not a real number {written_out} (a division by zero, "
                             "the log of zero or the square root of a negative number)", line, 1)
        sizes[node] = 1 + sum(sizes[arg] for arg in node.args)
        if sizes[node] > MAX_SIZE:
            raise ModelError(f"{label} has more than {MAX_SIZE:,} terms {written_out}; each quantity is "
                             "used too many times inside the next", line, 1)
    return expr


def _is_affine(expr: sp.Expr, states: Sequence[sp.Symbol]) -> bool:
    """True when ``expr`` is c0 + Σ c_i x_i with coefficients free of the states."""
    if not expr.free_symbols & set(states):
        return True
    if not expr.is_polynomial(*states):
        return False
    return sp.Poly(expr, *states).total_degree() <= 1


def _broadcasting(function: Callable, count: int) -> Callable:
    """Wrap a lambdified list-returning function so every entry is a float array of the batch shape."""

    def evaluate(*args):
        try:
            values = function(*args)
        except (ZeroDivisionError, OverflowError):
            # Python floats raise where numpy gives inf or nan (0.0**-1 with a scalar t); the
            # simulation then reports the non-finite value as a SimulationError.
            values = function(*(np.asarray(a, dtype=float) for a in args))
        shapes = {np.shape(a) for a in args}
        # Usually every argument has the batch shape; broadcast_shapes is only needed when they differ.
        shape = shapes.pop() if len(shapes) == 1 else np.broadcast_shapes(*shapes) if shapes else ()
        # Most entries already have the batch shape; only constants need broadcasting (a hot path in fits).
        return [v if isinstance(v, np.ndarray) and v.shape == shape and v.dtype == float
                else np.broadcast_to(np.asarray(v, dtype=float), shape) for v in values]

    evaluate.count = count
    evaluate.raw = function  # entries as sympy left them: numbers where an entry is constant
    return evaluate


def _lambdify(arguments: Sequence[sp.Symbol], expressions: Sequence[sp.Expr]) -> Callable:
    # Neutral names: a user's 'select' or 'minimum' would otherwise shadow numpy's in the generated code.
    neutral = {argument: sp.Symbol(f"_arg{i}", real=True) for i, argument in enumerate(arguments)}
    renamed = [_as_sympy(expression).xreplace(neutral) for expression in expressions]
    function = sp.lambdify(list(neutral.values()), renamed, modules="numpy", cse=True, printer=_BroadcastingPrinter(
        {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True, "user_functions": {}}))
    return _broadcasting(function, len(expressions))


class _BroadcastingPrinter(NumPyPrinter):
    """numpy code whose logic broadcasts and is printed as written.

    sympy prints ``and``/``or`` as ``logical_and.reduce((a, b))``, which fails when ``a`` is a batch of parameter
    sets and ``b`` a scalar time (nested where() conditions): nested binary ``logical_and(a, logical_and(b, c))``
    broadcasts.  And sympy removes an if-then-else inside a condition with ``simplify_logic``, which evaluates the
    expression at random points (slow, and a ValueError when one is the log of 0): ``numpy.where`` prints it.
    """

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        conditions = ", ".join(self._print(arg.cond) for arg in expr.args)
        values = ", ".join(self._print(arg.expr) for arg in expr.args)
        return f"{self._module_format('numpy.select')}([{conditions}], [{values}], default={self._print(sp.nan)})"

    def _print_ITE(self, expr: sp.ITE) -> str:
        condition, then, otherwise = (self._print(arg) for arg in expr.args)
        return f"{self._module_format('numpy.where')}({condition}, {then}, {otherwise})"

    def _print_And(self, expr: sp.And) -> str:
        return self._nested("logical_and", expr.args)

    def _print_Or(self, expr: sp.Or) -> str:
        return self._nested("logical_or", expr.args)

    def _nested(self, function: str, args: Sequence[sp.Basic]) -> str:
        name = self._module_format(f"numpy.{function}")
        printed = [self._print(arg) for arg in args]
        return functools.reduce(lambda inner, outer: f"{name}({outer}, {inner})", reversed(printed))


@dataclass(frozen=True)
class CompiledModel:
    """The numerical form of a model.

    ``args`` is the order of the argument vector every function takes after ``t`` and the states:
    the individual parameters, then the covariates.  States are passed one array per state.
    """

    states: tuple[str, ...]
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    is_linear: bool
    rhs: Callable            # rhs(t, *states, *args) -> list of n arrays
    jacobian: Callable       # jacobian(t, *states, *args) -> list of n*n arrays, row-major
    output_values: Callable  # output_values(t, *states, *args) -> list of arrays, one per output
    output_rates: Callable   # d(output)/dt along the solution without dose inputs, same signature
    initial: Callable        # initial(*args) -> list of n arrays
    bioavailability: Callable  # bioavailability(*args) -> [array]
    lag: Callable            # lag(*args) -> [array]
    dose_duration: Callable | None  # dose_duration(*args) -> (batch,) modelled infusion duration (h), or None
    matrix: Callable | None  # linear models: matrix(*args) -> list of n*n arrays (row-major) of A
    output_affine: tuple[bool, ...]  # per output: c0 + C x with C, c0 free of states and t
    output_offset: Callable  # output_offset(*args) -> list of c0 per output (affine outputs only)
    output_gradient: Callable  # d(output)/d(state): (t, *states, *args) -> n arrays per output, flattened
    blocks: tuple[tuple[int, ...], ...]  # linear: strongly connected blocks of A
    expressions: dict[str, sp.Expr]  # the fully substituted rhs ("d/dt(x)") and outputs, for display


def compile_model(spec: ModelSpec) -> CompiledModel:
    """Generate the batched numerical functions of a parsed model."""
    resolved = substitute_derived(spec)
    state_symbols = [symbol(s) for s in spec.states]
    args = tuple(p.name for p in spec.parameters) + tuple(c.name for c in spec.covariates)
    arg_symbols = [symbol(a) for a in args]
    everything = [TIME, *state_symbols, *arg_symbols]

    rhs = [expand(spec, spec.rhs[s], resolved, s) for s in spec.states]
    outputs = [resolved[name] for name in spec.outputs]
    jac = [sp.diff(f, x) for f in rhs for x in state_symbols]
    rates = [sum((sp.diff(g, x) * f for x, f in zip(state_symbols, rhs, strict=True)), sp.diff(g, TIME))
             for g in outputs]
    initial = [expand(spec, spec.initial.get(s, sp.Integer(0)), resolved, s) for s in spec.states]
    dose = spec.dose
    bioavailability = expand(spec, dose.bioavailability if dose else sp.Integer(1), resolved, "bioavailability")
    lag = expand(spec, dose.lag if dose else sp.Integer(0), resolved, "lag time")
    dose_duration = None
    if dose is not None and dose.duration is not None:
        duration = _lambdify(arg_symbols, [expand(spec, dose.duration, resolved, "infusion duration")])
        dose_duration = _first(duration)

    is_linear = all(TIME not in f.free_symbols and _is_affine(f, state_symbols)
                    and f.xreplace(dict.fromkeys(state_symbols, 0)) == 0 for f in rhs)
    affine = tuple(TIME not in g.free_symbols and _is_affine(g, state_symbols) for g in outputs)
    zero_states = dict.fromkeys(state_symbols, 0)
    offsets = [g.xreplace(zero_states) if ok else sp.Integer(0) for g, ok in zip(outputs, affine, strict=True)]
    gradients = [sp.diff(g, x) for g in outputs for x in state_symbols]

    matrix = None
    blocks: tuple[tuple[int, ...], ...] = ()
    if is_linear:
        matrix = _lambdify(arg_symbols, jac)
        blocks = _triangular_blocks(jac, len(state_symbols))

    return CompiledModel(
        states=tuple(spec.states),
        args=args,
        outputs=tuple(spec.outputs),
        is_linear=is_linear,
        rhs=_lambdify(everything, rhs),
        jacobian=_lambdify(everything, jac),
        output_values=_lambdify(everything, outputs),
        output_rates=_lambdify(everything, rates),
        initial=_lambdify(arg_symbols, initial),
        bioavailability=_lambdify(arg_symbols, [bioavailability]),
        lag=_lambdify(arg_symbols, [lag]),
        dose_duration=dose_duration,
        matrix=matrix,
        output_affine=affine,
        output_offset=_lambdify(arg_symbols, offsets),
        output_gradient=_lambdify(everything, gradients),
        blocks=blocks,
        expressions={**{f"d/dt({s})": f for s, f in zip(spec.states, rhs, strict=True)},
                     **dict(zip(spec.outputs, outputs, strict=True))},
    )


def _first(function: Callable) -> Callable:
    """The only entry of a one-expression generated function, as an array (batch,)."""

    def evaluate(*args) -> np.ndarray:
        return function(*args)[0]

    return evaluate


def _triangular_blocks(jac: Sequence[sp.Expr], n: int) -> tuple[tuple[int, ...], ...]:
    """Strongly connected components of the state graph (the diagonal blocks of A up to permutation).

    The eigenvalues of a block-triangular matrix are those of its diagonal blocks, which lets the
    linear solver find them in closed form for blocks of one or two states (depot, central with one
    peripheral...) instead of calling LAPACK once per parameter set.
    """
    pattern = csr_matrix(np.array([[jac[i * n + j] != 0 for j in range(n)] for i in range(n)], dtype=int))
    count, labels = connected_components(pattern, directed=True, connection="strong")
    return tuple(tuple(int(i) for i in np.flatnonzero(labels == c)) for c in range(count))


def _as_sympy(expression) -> sp.Expr:
    """A derived expression (sympy already) or a plain number the code generator put in a list (0 for an empty
    derivative, say) as a sympy object; model text never reaches here."""
    if isinstance(expression, sp.Basic):
        return expression
    if isinstance(expression, bool | int | np.integer):
        return sp.Integer(int(expression))
    return sp.Float(float(expression))
