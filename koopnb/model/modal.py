"""Closed-form impulse responses of a linear model's output, generated once with sympy.

For dx/dt = A x and an output affine in the states, y = c₀ + C x, the response of y to a unit bolus
into state s is  c₀ + Σ_k c_{k,s} e^{λ_k τ}  with the eigenvalues λ_k of A and the coefficients
c_{k,s} = C P_k e_s, P_k the Frobenius covariants (see koopnb/simulate/linear.py).  When every
diagonal block of A has one or two states (depot, central, central with a peripheral — most PK
models), the λ_k are closed-form in the parameters: the diagonal entry of a one-state block, the
quadratic formula for a two-state block.  Then so are the c_{k,s}, and sympy writes one numpy
function, with common subexpressions shared, that returns all of them for a batch of parameter sets.
Model fits evaluate the same doses and observation times thousands of times on small batches, where
that single function is several times cheaper than the general spectral solution.

The closed form assumes what the general solver checks: distinct eigenvalues (the covariants exist)
and, for two-state blocks, a real spectrum and a non-positive trace (so the root of larger magnitude
is computed without cancellation).  :meth:`ImpulseResponses.evaluate` returns what it takes to
check that for each parameter set; sets that fail must be solved by the general solver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import precedence

from koopnb.model.codegen import CompiledModel
from koopnb.model.spec import symbol


class _DivisionPrinter(NumPyPrinter):
    """numpy code with reciprocals as divisions (``1/x``, not ``x**(-1.0)``)."""

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, precedence(expr))}"
        return super()._print_Pow(expr, rational=rational)


MAX_STATES = 8
"""Larger models are left to the general solver: their symbolic covariants grow as n²."""


@dataclass(frozen=True)
class ImpulseResponses:
    """The closed form of one output's responses to boluses into the ``dosed`` states.

    The rows of its table are the n eigenvalues λ_k, the differences λ_i − λ_j (i < j), per
    two-state block its half trace and discriminant, c_{k,s} for each dosed state (state-major: every
    k for the first state, ...), then c₀ unless it is identically 0.  ``function`` computes the
    ``varying`` rows; the others are ``constant``.
    """

    n: int
    dosed: tuple[int, ...]
    pairs: int
    function: Callable
    varying: np.ndarray
    constant: np.ndarray  # (rows,) values, used where a row is not varying
    has_offset: bool  # False when c₀ is identically 0 (concentration = amount / volume)

    def rows(self, args: Sequence[np.ndarray]) -> list:
        """Every row of the table, unstacked: a (batch,) array where it varies, a float where it is constant.
        (Stacking a large batch into one table costs as much as computing it.)"""
        values = iter(self.function(*args)) if self.varying.size else iter(())
        varying = set(self.varying.tolist())
        return [next(values) if i in varying else float(self.constant[i]) for i in range(self.constant.size)]

    def evaluate(self, args: Sequence[np.ndarray], batch: int) -> tuple[np.ndarray, ...]:
        """Eigenvalues (n, batch); their differences (n(n−1)/2, batch); per two-state block its half
        trace and discriminant (2 × blocks, batch), which must be ≤ 0 and ≥ 0 for the closed form to
        hold; coefficients (n, len(dosed), batch); offset (batch,), or 0."""
        if self.varying.size == self.constant.size:
            table = np.array(self.function(*args), dtype=float)
        else:
            table = np.repeat(self.constant[:, None], batch, axis=1)
            table[self.varying] = self.function(*args)
        n, m = self.n, len(self.dosed)
        gaps = n + n * (n - 1) // 2
        start = gaps + 2 * self.pairs
        coefficients = table[start:start + n * m].reshape(m, n, batch).transpose(1, 0, 2)
        offset = table[-1] if self.has_offset else 0.0
        return table[:n], table[n:gaps], table[gaps:start], coefficients, offset


def impulse_responses(compiled: CompiledModel, output: str, dosed: Sequence[int]) -> ImpulseResponses | None:
    """The closed-form responses of ``output`` to boluses into the ``dosed`` states, or None when the
    model is not linear, the output is not affine in the states, a block has more than two states, or
    the model has more than MAX_STATES states.
    """
    n = len(compiled.states)
    if (not compiled.is_linear or output not in compiled.outputs or n > MAX_STATES
            or not compiled.output_affine[compiled.outputs.index(output)]
            or any(len(block) > 2 for block in compiled.blocks)):
        return None
    states = [symbol(s) for s in compiled.states]
    rhs = [compiled.expressions[f"d/dt({s})"] for s in compiled.states]
    a = sp.Matrix(n, n, lambda i, j: sp.diff(rhs[i], states[j]))
    g = compiled.expressions[output]
    c = sp.Matrix(1, n, lambda _, j: sp.diff(g, states[j]))
    offset = g.xreplace(dict.fromkeys(states, 0))

    eigen_symbols = sp.symbols(f"lambda0:{n}")
    closed: dict[sp.Symbol, sp.Expr] = {}
    checks: list[sp.Expr] = []
    for block in compiled.blocks:
        if len(block) == 1:
            closed[eigen_symbols[block[0]]] = a[block[0], block[0]]
        else:
            i, j = block
            half_trace = (a[i, i] + a[j, j]) / 2
            discriminant = ((a[i, i] - a[j, j]) / 2) ** 2 + a[i, j] * a[j, i]
            # The root of larger magnitude directly (trace ≤ 0), the other from the determinant.
            big = half_trace - sp.sqrt(discriminant)
            closed[eigen_symbols[i]] = big
            closed[eigen_symbols[j]] = (a[i, i] * a[j, j] - a[i, j] * a[j, i]) / big
            checks += [half_trace, discriminant]

    lams = [closed[p] for p in eigen_symbols]
    if any(sp.expand(lams[i] - lams[j]) == 0 for i in range(n) for j in range(i + 1, n)):
        return None  # always confluent (a chain of equal transit rates): the general solver's case
    coefficients = []
    for s in dosed:
        for k in range(n):
            vector = sp.zeros(n, 1)
            vector[s] = 1
            denominator = sp.Integer(1)
            for j in range(n):
                if j != k:
                    vector = (a - eigen_symbols[j] * sp.eye(n)) * vector
                    denominator *= eigen_symbols[k] - eigen_symbols[j]
            coefficients.append((c * vector)[0] / denominator)
    gaps = [lams[i] - lams[j] for i in range(n) for j in range(i + 1, n)]
    expressions = lams + gaps + checks + [e.xreplace(closed) for e in coefficients] + ([offset] if offset != 0 else [])
    if any(e.has(sp.zoo, sp.nan, sp.oo, sp.I) for e in expressions):
        return None  # eigenvalues equal or complex for every parameter set
    varying = np.array([i for i, e in enumerate(expressions) if not e.is_number], dtype=int)
    constant = np.array([float(e) if e.is_number else np.nan for e in expressions])
    # Neutral argument names (a parameter called 'select' must not shadow numpy's), and 1/x written as a
    # division: numpy's power with exponent -1.0 costs several times a division on large batches.
    neutral = {symbol(name): sp.Symbol(f"_arg{i}", real=True) for i, name in enumerate(compiled.args)}
    function = sp.lambdify(list(neutral.values()), [expressions[i].xreplace(neutral) for i in varying],
                           modules="numpy", cse=True, printer=_DivisionPrinter)
    return ImpulseResponses(n, tuple(dosed), len(checks) // 2, function, varying, constant, offset != 0)
