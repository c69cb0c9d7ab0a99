"""AUC of a linear model straight from its closed-form impulse responses: the fast path of ``AUC.evaluate``.

For boluses into a linear model with zero initial state, whose output is affine in the states and whose
blocks have at most two states (koopnb/model/modal.py), the output after a bolus D into state s at time t_d is
c₀ + D Σ_k c_{k,s} e^{λ_k (t − t_d)}, so its integral over [t₀, t₁] is, per dose,

    D Σ_k c_{k,s} e^{λ_k a} (e^{λ_k (b − a)} − 1) / λ_k,   a = max(t₀ − t_d, 0),  b = max(t₁ − t_d, 0),

(and (b − a) where λ_k = 0), plus c₀ (t₁ − t₀): a few array operations for the whole batch, where the general
spectral solution (koopnb/simulate/linear.py) costs several times more.  Why a separate path: the clinical
question "AUC of this regimen for 10⁵ parameter sets" is the most common batch koopnb answers, and a hand-written
numpy Bateman function is the baseline users compare against (benchmarks/simulate.py).

Everything else — infusions, steady-state doses, resets, covariate histories, bioavailability or lag, initial
states, solver options — goes to the general path, and so do the parameter sets the closed form cannot take
(eigenvalues within the confluence gap, complex spectra), exactly as model fits do (inference/simulation.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from koopnb.model.modal import impulse_responses
from koopnb.simulate.events import dose_state
from koopnb.simulate.linear import CONFLUENT_GAP


def closed_form_auc(model, output: str, t0: float, t1: float, params, regimen, covariates) -> np.ndarray | None:
    """(batch,) AUC of ``output`` over [t0, t1] (h) for every parameter set, or None when the closed form
    does not apply to this model, regimen or covariates (the caller then solves in general)."""
    if not _plain(model, regimen, covariates):
        return None
    compiled = model.compiled
    try:
        states = [dose_state(compiled, model.dose_state, dose.cmt)[0] for dose in regimen.doses]
    except Exception:  # an unknown compartment: let the general path say so in its own words
        return None
    dosed = tuple(sorted(set(states)))
    responses = _responses(model, output, dosed)
    if responses is None:
        return None
    args = model.arguments(params, covariates)
    batch = len(args[0]) if args else 1
    doses = _Doses.of(regimen, states, dosed, t0, t1)
    auc, usable = np.empty(batch), np.empty(batch, dtype=bool)
    # Chunks keep every temporary small: on a whole batch of 10⁵ sets each one is a fresh mapping of
    # megabytes whose pages fault in at first touch, which costs more than the arithmetic.
    for low in range(0, batch, CHUNK):
        rows = slice(low, min(low + CHUNK, batch))
        _chunk(responses, [a[rows] for a in args], doses, t1 - t0, auc[rows], usable[rows])
    if not usable.all():
        return _fill(model, output, t0, t1, params, regimen, covariates, auc, ~usable, batch)
    return auc


CHUNK = 16384
"""Parameter sets per pass of the closed form: 128 kB temporaries.  Measured on 10⁵ sets (CPU time): 8192 cost 20%
more (Python overhead of twice the passes), the whole batch at once twice as much (fresh pages every call)."""


@dataclass(frozen=True)
class _Doses:
    """The boluses as the closed form reads them, merged into groups that share a dosed state and the stretch
    of their response inside [t0, t1]: ``start`` (G,), h after the dose when the window opens; ``length`` (G,),
    h of the response inside the window; ``amounts`` (len(dosed), G), the summed amount of each group in the
    row of its dosed state (0 elsewhere).  Doses given at or after t1 add nothing and are left out."""

    start: np.ndarray
    length: np.ndarray
    amounts: np.ndarray

    @classmethod
    def of(cls, regimen, states: list[int], dosed: tuple[int, ...], t0: float, t1: float) -> _Doses:
        groups: dict[tuple[float, float], np.ndarray] = {}
        for dose, state in zip(regimen.doses, states, strict=True):
            start = max(t0 - dose.time, 0.0)
            length = max(t1 - dose.time, 0.0) - start
            if length > 0:
                amounts = groups.setdefault((start, length), np.zeros(len(dosed)))
                amounts[dosed.index(state)] += dose.amount
        stretches = np.array(list(groups), dtype=float).reshape(-1, 2)
        return cls(stretches[:, 0], stretches[:, 1], np.array(list(groups.values())).reshape(-1, len(dosed)).T)


def _chunk(responses, args: list[np.ndarray], doses: _Doses, width: float, auc: np.ndarray,
           usable: np.ndarray) -> None:
    """Write the AUC of one chunk of parameter sets into ``auc`` (batch,) and into ``usable`` (batch,) which
    of them the closed form may take."""
    with np.errstate(divide="ignore", invalid="ignore"):  # sets with equal eigenvalues: flagged below
        table = responses.rows(args)
    n, pairs = responses.n, responses.pairs
    lam = table[:n]  # (batch,) arrays, or floats where an eigenvalue does not depend on the parameters
    first_check = n + n * (n - 1) // 2
    first_coefficient = first_check + 2 * pairs
    # The closed form needs what the general solver checks: eigenvalues apart by more than its confluence gap
    # and, for two-state blocks, a real spectrum with a non-positive trace.
    usable[...] = True
    if n > 1:
        scale = functools.reduce(np.maximum, [np.abs(value) for value in lam])
        scale *= CONFLUENT_GAP
        for gap in table[n:first_check]:
            usable &= np.abs(gap) > scale
    for half_trace, discriminant in zip(table[first_check:first_coefficient:2],
                                        table[first_check + 1:first_coefficient:2], strict=True):
        usable &= (half_trace <= 0) & (discriminant >= 0)
    auc[...] = table[-1] * width if responses.has_offset else 0.0
    if not doses.length.size:
        return
    decayed = bool(np.any(doses.start > 0))
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf where the checks above fail
        for k in range(n):  # modes (at most MAX_STATES), each for the whole chunk and every dose group at once
            rate = np.atleast_1d(lam[k])  # (batch,), or (1,) for an eigenvalue that does not depend on the parameters
            # ∫ e^{λτ} over [a, a + L] = e^{λa} expm1(λL)/λ, and L where λ = 0; (groups, batch), so that the sum over
            # groups below is one vector-matrix product (numpy's matmul of a (batch, 1) matrix is 8× slower).
            integral = np.multiply.outer(doses.length, rate)
            np.expm1(integral, out=integral)
            integral /= rate
            if rate.size == 1 and rate[0] == 0:  # a constant zero eigenvalue (no elimination); a set whose
                integral[...] = doses.length[:, None]  # eigenvalue is 0 only by chance gets NaN: solved in general
            if decayed:  # doses before t0: the curve has decayed by e^{λa} when the window opens
                integral *= np.exp(np.multiply.outer(doses.start, rate))
            for i, amounts in enumerate(doses.amounts):
                auc += table[first_coefficient + i * n + k] * np.dot(amounts, integral)
    if not np.isfinite(auc.sum()):  # one reduction; the sum is NaN or ±inf whenever an entry is
        usable &= np.isfinite(auc)


def _plain(model, regimen, covariates) -> bool:
    """Boluses only, no steady state or reset, constant covariates, F = 1, no lag, zero initial state."""
    from koopnb.regimen import Regimen

    spec = model.spec
    if not isinstance(regimen, Regimen) or regimen.resets or not regimen.doses:
        return False
    if any(d.duration != 0 or d.steady_state for d in regimen.doses):
        return False
    if covariates is not None and not isinstance(covariates, Mapping):
        return False
    if not model.is_linear or spec.dose is None or spec.dose.duration is not None:
        return False
    if spec.dose.bioavailability != sp.S.One or spec.dose.lag != sp.S.Zero:
        return False
    return all(value == 0 for value in spec.initial.values())


def _responses(model, output: str, dosed: tuple[int, ...]):
    """The model's impulse responses for (output, dosed states), derived with sympy once per model."""
    cache = model.__dict__.setdefault("_closed_form_auc", {})
    key = (output, dosed)
    if key not in cache:
        cache[key] = impulse_responses(model.compiled, output, dosed)
    return cache[key]


def _fill(model, output, t0, t1, params, regimen, covariates, auc, rows, batch) -> np.ndarray:
    """Replace the rows the closed form cannot take with the general solution of those parameter sets."""
    from koopnb.metrics import AUC

    def take(mapping):
        picked = {}
        for name, value in (mapping or {}).items():
            value = np.atleast_1d(np.asarray(value, dtype=float))
            picked[name] = value[rows] if value.size == batch and batch > 1 else value
        return picked

    general = AUC(t0, t1, output).general(model, take(params), regimen, take(covariates) if covariates else None)
    auc = auc.copy()
    auc[rows] = general
    return auc
