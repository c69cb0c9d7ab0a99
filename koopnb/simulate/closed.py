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
    times = np.array([dose.time for dose in regimen.doses])
    doses = _Doses(states, dosed, np.array([dose.amount for dose in regimen.doses]),
                   np.maximum(t0 - times, 0.0), np.maximum(t1 - times, 0.0) - np.maximum(t0 - times, 0.0))
    auc, usable = np.empty(batch), np.empty(batch, dtype=bool)
    # Chunks keep every temporary in cache: one pass over 10⁵ sets allocates and faults in megabytes per step.
    for low in range(0, batch, CHUNK):
        rows = slice(low, min(low + CHUNK, batch))
        auc[rows], usable[rows] = _chunk(responses, [a[rows] for a in args], rows.stop - rows.start, doses)
    if responses.has_offset:
        auc += _offset(responses, args, batch) * (t1 - t0)
    if not usable.all():
        return _fill(model, output, t0, t1, params, regimen, covariates, auc, ~usable, batch)
    return auc


CHUNK = 8192
"""Parameter sets per pass of the closed form."""


@dataclass(frozen=True)
class _Doses:
    """The boluses as the closed form reads them: state index per dose, the dosed states, amounts, and where
    each dose's response enters [t0, t1]: ``start`` (h after the dose) and ``length`` (h)."""

    states: list[int]
    dosed: tuple[int, ...]
    amounts: np.ndarray
    start: np.ndarray
    length: np.ndarray


def _chunk(responses, args: list[np.ndarray], batch: int, doses: _Doses) -> tuple[np.ndarray, np.ndarray]:
    """AUC (batch,) of one chunk of parameter sets, and which of them the closed form may take."""
    with np.errstate(divide="ignore", invalid="ignore"):  # sets with equal eigenvalues: flagged below
        table = responses.rows(args)
    n, pairs = responses.n, responses.pairs
    lam = [np.broadcast_to(np.asarray(value, dtype=float), (batch,)) for value in table[:n]]
    first_gap = n
    first_check = n + n * (n - 1) // 2
    first_coefficient = first_check + 2 * pairs
    # The closed form needs what the general solver checks: eigenvalues apart by more than its confluence gap
    # and, for two-state blocks, a real spectrum with a non-positive trace.
    scale = np.max(np.abs(lam), axis=0)
    usable = np.ones(batch, dtype=bool)
    for gap in table[first_gap:first_check]:
        usable &= np.abs(gap) > CONFLUENT_GAP * scale
    for half_trace, discriminant in zip(table[first_check:first_coefficient:2],
                                        table[first_check + 1:first_coefficient:2], strict=True):
        usable &= (np.asarray(half_trace) <= 0) & (np.asarray(discriminant) >= 0)
    decayed = bool(np.any(doses.start > 0))
    auc = np.zeros(batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(n):  # modes (at most MAX_STATES), each for the whole chunk and every dose at once
            rate = lam[k][:, None]
            # ∫ e^{λτ} over [a, a + L] = e^{λa} expm1(λL)/λ, and L where λ = 0.
            integral = np.expm1(rate * doses.length) / rate
            if np.any(rate == 0):
                integral = np.where(rate == 0, doses.length, integral)
            if decayed:  # doses before t0: the curve has decayed by e^{λa} when the window opens
                integral = integral * np.exp(rate * doses.start)
            for i, state in enumerate(doses.dosed):
                given = [d for d, s in enumerate(doses.states) if s == state]
                weight = np.asarray(table[first_coefficient + i * n + k], dtype=float)
                auc += weight * (integral[:, given] @ doses.amounts[given])
    return auc, usable


def _offset(responses, args: list[np.ndarray], batch: int) -> np.ndarray:
    """c₀ (batch,), the output's value at zero state, from the last row of the table."""
    return np.broadcast_to(np.asarray(responses.rows(args)[-1], dtype=float), (batch,))


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
