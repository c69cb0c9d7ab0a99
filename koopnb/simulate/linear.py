"""Exact solution of linear compartment models by spectral decomposition and superposition.

For dx/dt = A x the response to a unit bolus into state i is exp(Aτ) e_i.  With the eigenvalues λ_k
of A and the Frobenius covariants P_k = Π_{j≠k} (A − λ_j I)/(λ_k − λ_j) (Horn & Johnson, *Topics in
Matrix Analysis*, §6.1), every matrix function the solution needs is Σ_k g(λ_k, τ) P_k with a scalar
g: g₀ = e^{λτ}, g₁ = τ φ₁(λτ) = ∫₀^τ e^{λs} ds, g₂ = τ² φ₂(λτ) = ∫₀^τ g₁, where φ₁(z) = (e^z − 1)/z and
φ₂(z) = (e^z − 1 − z)/z² are evaluated without cancellation.  Only the columns P_k e_i of the dosed
states (and P_k x₀ for the initial state) are ever needed, so those "modal amplitudes" are computed
once per solution by a few matrix-vector products.

A zero-order infusion of rate r over [s, e] contributes r g₁(τ_s) while it runs and, once it has
ended, r e^{λτ_e} g₁(d) (d = e − s): written that way rather than as g₁(τ_s) − g₁(τ_e), the decaying
tail keeps full relative accuracy.  Its running integral is r g₂(τ_s), then r (g₂(d) + g₁(τ_e) g₁(d)).

Eigenvalues come from the diagonal blocks of A (the strongly connected groups of states): one-state
blocks directly, two-state blocks by the quadratic formula, larger blocks by LAPACK.  Everything stays
real unless an eigenvalue is complex.  Where two eigenvalues coincide or nearly coincide (ka = k), the
covariants blow up; those parameter sets are solved instead with matrix exponentials: Van Loan's
(1978) block exponential gives ∫₀^τ e^{As} ds and its integral exactly in the confluent case, and
e^{Aτ} itself is computed as e^{μτ} exp((A − μI)τ) with μ the largest real part of the spectrum, so a
decayed concentration keeps its relative accuracy.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.linalg import expm

from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents

CONFLUENT_GAP = 1e-3
"""Relative eigenvalue gap below which a parameter set is solved by matrix exponentials."""

_TINY = np.finfo(float).tiny

CHUNK_ELEMENTS = 1 << 21
"""Largest (modes × doses × times × batch) temporary built at once; longer regimens go in chunks."""


def phi1(z: np.ndarray) -> np.ndarray:
    """φ₁(z) = (e^z − 1)/z, with φ₁(0) = 1; accurate to rounding for real and complex z."""
    zero = z == 0
    result = np.expm1(z)
    np.divide(result, z, out=result, where=~zero)
    result[zero] = 1.0
    return result


def phi2(z: np.ndarray) -> np.ndarray:
    """φ₂(z) = (e^z − 1 − z)/z², with φ₂(0) = 1/2; Taylor series near 0 where the formula cancels."""
    small = np.abs(z) < 0.1
    safe = np.where(small, 1.0, z)
    direct = (np.expm1(safe) - safe) / safe**2
    series = np.zeros_like(z, dtype=np.result_type(z, float))
    factorial = np.cumprod(np.arange(1, 13, dtype=float))
    for k in range(12, 1, -1):  # Horner: Σ z^(k−2)/k!, k = 2..12; the next term is below 1e-17 for |z| < 0.1
        series = series * z + 1.0 / factorial[k - 1]
    return np.where(small, series, direct)


def eigenvalues(matrix: np.ndarray, blocks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Eigenvalues (batch, n) of a batch of matrices whose diagonal blocks (index groups) are given.

    The result is real when every eigenvalue of every set is real, complex otherwise.
    """
    batch = matrix.shape[0]
    values = []
    for block in blocks:
        if len(block) == 1:
            values.append(matrix[:, block[0], block[0]][:, None])
        elif len(block) == 2:
            i, j = block
            a, b, c, d = matrix[:, i, i], matrix[:, i, j], matrix[:, j, i], matrix[:, j, j]
            half_trace = (a + d) / 2
            discriminant = ((a - d) / 2) ** 2 + b * c
            root = np.sqrt(discriminant if np.all(discriminant >= 0) else discriminant + 0j)
            # The root of larger magnitude directly, the other from the determinant: no cancellation.
            big = half_trace + np.where(half_trace.real >= 0, root, -root)
            det = a * d - b * c
            small = np.where(big != 0, det / np.where(big == 0, 1, big), half_trace)
            values.append(np.stack([big, small], axis=1))
        else:
            found = np.linalg.eigvals(matrix[:, block][:, :, block])
            values.append(found.real if np.all(found.imag == 0) else found)
    if not values:
        return np.zeros((batch, 0))
    dtype = np.result_type(*values)
    return np.concatenate([v.astype(dtype, copy=False) for v in values], axis=1)


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of every pair i < j of n eigenvalues."""
    return np.triu_indices(n, 1)


def _confluent(lam: np.ndarray) -> np.ndarray:
    """(batch,) whether two eigenvalues of a set are closer than CONFLUENT_GAP relative to the spectrum.

    ``lam`` is (n, batch).  A spectrum of zeros counts as confluent (its covariants do not exist).
    """
    n, batch = lam.shape
    if n < 2:
        return np.zeros(batch, dtype=bool)
    scale = CONFLUENT_GAP * np.maximum(np.abs(lam).max(axis=0), _TINY)
    first, second = _pairs(n)
    return (np.abs(lam[first] - lam[second]) < scale).any(axis=0)


def system_matrix(compiled: CompiledModel, args: list[np.ndarray], batch: int) -> np.ndarray:
    """A of dx/dt = A x for every parameter set, state-major (n, n, batch): each element one long array."""
    n = len(compiled.states)
    a = np.empty((n * n, batch))
    for row, entry in zip(a, compiled.matrix.raw(*args), strict=True):
        row[...] = entry  # constant entries (zeros, mostly) broadcast here for free
    return a.reshape(n, n, batch)


def finite_system_matrix(compiled: CompiledModel, args: list[np.ndarray], batch: int) -> np.ndarray:
    """:func:`system_matrix`, or a SimulationError naming the equation with a coefficient that is not finite.

    (The fits call :func:`system_matrix` itself: there a set that cannot be solved is a NaN row, not an error.)
    """
    with np.errstate(all="ignore"):  # a non-finite entry is reported below, in words
        a = system_matrix(compiled, args, batch)
    finite = np.isfinite(a)
    if not finite.all():
        state = compiled.states[int(np.argmax(~finite.all(axis=(1, 2))))]
        sets = int((~finite.all(axis=(0, 1))).sum())
        raise SimulationError(f"d/dt({state}) has a coefficient that is not finite for {sets} of {batch} parameter "
                              "sets (check the model for a division by zero)")
    return a


class LinearSolution:
    """The exact solution of a linear model for a batch of parameter sets and one dosing history.

    ``a`` (n, n, batch) is A state-major (see :func:`system_matrix`), ``initial`` (batch, n) the
    initial state, ``events`` the doses.  Times may be (n_times,) shared by the batch or
    (batch, n_times) per parameter set.  Internally arrays keep the batch on the last axis, so that
    the work on tiny matrices is a few long element-wise numpy operations rather than one small
    LAPACK or BLAS call per parameter set.
    """

    exact = True

    def __init__(self, compiled: CompiledModel, args: list[np.ndarray], a: np.ndarray,
                 initial: np.ndarray, events: DoseEvents):
        self.compiled = compiled
        self.args = args
        self.initial = initial
        self.events = events
        self.batch, self.n = initial.shape
        self._a = a
        self.matrix = a.transpose(2, 0, 1)  # (batch, n, n) view
        lam = np.ascontiguousarray(eigenvalues(self.matrix, compiled.blocks).T)  # (n, batch)
        self.confluent = _confluent(lam)
        self.members = np.flatnonzero(self.confluent)
        self._spectral_abscissa = lam[:, self.members].real.max(axis=0) if len(self.members) else np.zeros(0)
        if len(self.members):  # distinct stand-in eigenvalues; the amplitudes of these sets are zeroed
            lam[:, self.members] = np.arange(self.n)[:, None] + 1.0
        self.lam = lam
        dosed = events.state.tolist()
        self._by_state = {s: events.state == s for s in sorted(set(dosed))}
        self._amplitudes = {s: self._modal_amplitudes(np.eye(self.n)[s][:, None]) for s in self._by_state}
        self._initial_amplitudes = self._modal_amplitudes(initial.T) if initial.any() else None

    def _modal_amplitudes(self, vector: np.ndarray) -> np.ndarray:
        """P_k v for every mode k: (n_modes, n, batch) from v (n, batch) or (n, 1); zero for confluent sets.

        P_k v = Π_{j≠k} (A − λ_j I) v / (λ_k − λ_j), one batched matrix-vector product per factor.
        The covariants sum to the identity, so the last mode is v minus the others.
        """
        a, lam, n = self._a, self.lam, self.n
        vector = np.broadcast_to(vector, (n, self.batch)).astype(lam.dtype)
        amplitudes = np.empty((n, n, self.batch), dtype=lam.dtype)
        rest = vector.copy()
        for k in range(n - 1):
            w = vector
            for j in range(n):
                if j != k:
                    w = (np.einsum("imb,mb->ib", a, w) - lam[j] * w) / (lam[k] - lam[j])
            amplitudes[k] = w
            rest -= w
        amplitudes[n - 1] = rest
        if len(self.members):
            amplitudes[..., self.members] = 0.0
        return amplitudes

    # -- evaluation --------------------------------------------------------------------------------
    def _times(self, times) -> np.ndarray:
        """Times as (T, batch)."""
        times = np.asarray(times, dtype=float)
        return np.broadcast_to(times[:, None], (times.size, self.batch)) if times.ndim == 1 else times.T

    def _history(self, times, integral: bool, left: bool = False) -> np.ndarray:
        """States (integral=False) or their integrals from 0 (integral=True), (batch, n, T).

        ``left`` takes left limits at bolus times (the state just before the dose); by default states
        are right-continuous (a bolus at t is included at t).
        """
        times = self._times(times)
        events = self.events
        result = np.zeros((self.n, *times.shape))
        if self._initial_amplitudes is not None:
            modes = _initial_modes(self.lam[:, None], times[None], integral)
            result += _combine(self._initial_amplitudes, modes)
        # Doses that start after every requested time contribute nothing.
        future = events.start.min(axis=0, initial=np.inf) > times.max(initial=0.0)
        step = max(1, CHUNK_ELEMENTS // max(1, self.n * times.size))
        for state, chosen in self._by_state.items():
            indices = np.flatnonzero(chosen & ~future)
            for first in range(0, len(indices), step):
                part = indices[first:first + step]
                modes = _dose_modes(self.lam[:, None, None], times[None, None], events.start.T[part][None, :, None],
                                    events.duration.T[part][None, :, None], events.amount.T[part][None, :, None],
                                    integral, left)
                result += _combine(self._amplitudes[state], modes)
        if len(self.members):
            result[..., self.members] = self._confluent_history(times[:, self.members], integral, left)
        return result.transpose(2, 0, 1)

    def _confluent_history(self, times: np.ndarray, integral: bool, left: bool) -> np.ndarray:
        """(n, T, members) states or integrals of the confluent sets, by matrix exponentials."""
        members, events, n = self.members, self.events, self.n
        functions = _MatrixFunctions(self.matrix[members], self._spectral_abscissa)
        result = np.zeros((n, *times.shape))
        initial = self.initial[members].T  # (n, members)
        if np.any(initial != 0):
            g = functions(1 if integral else 0, times)
            result += np.einsum("tmij,jm->itm", g, initial)
        for j in range(events.state.size):
            start, amount = events.start[members, j], events.amount[members, j]
            duration = events.duration[members, j]
            bolus = duration == 0
            since = times - start
            given = np.where(bolus & left, since > 0, since >= 0)
            unit = np.eye(n)[events.state[j]]
            g = functions(1 if integral else 0, np.where(given, since, 0.0)) @ unit if bolus.any() else 0.0
            weight = amount
            if not bolus.all():
                length = np.where(bolus, 1.0, duration)
                ended = times - (start + length)
                running = functions(2 if integral else 1, np.clip(since, 0.0, length)) @ unit
                after = np.where(ended >= 0, ended, 0.0)
                whole = np.broadcast_to(length, times.shape)
                full_1 = functions(1, whole) @ unit
                if integral:
                    tail = functions(2, whole) @ unit + np.einsum("tmij,tmj->tmi", functions(1, after), full_1)
                else:
                    tail = np.einsum("tmij,tmj->tmi", functions(0, after), full_1)
                infused = np.where((ended >= 0)[..., None], tail, running)
                g = np.where(bolus[:, None], g, infused)
                weight = np.where(bolus, amount, amount / length)
            result += (g * (given * weight)[..., None]).transpose(2, 0, 1)
        return result

    def states(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) amounts in each state (left limits at bolus times if ``left``)."""
        return self._history(times, integral=False, left=left)

    def state_integrals(self, times) -> np.ndarray:
        """(batch, n_states, n_times) ∫₀ᵗ x(s) ds."""
        return self._history(times, integral=True)

    def inputs(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) infusion input rates at each time (right-continuous; left limits if ``left``)."""
        return infusion_inputs(self.events, self._times(times).T, self.n, left)


def infusion_inputs(events: DoseEvents, times: np.ndarray, n: int, left: bool = False) -> np.ndarray:
    """(batch, n, T) total infusion rate into each state at times (batch, T) or (1, T)."""
    result = np.zeros((events.start.shape[0], n, times.shape[-1]))
    for j in np.flatnonzero(events.infusions):
        start, end = events.start[:, j, None], events.end[:, j, None]
        active = (times > start) & (times <= end) if left else (times >= start) & (times < end)
        result[:, events.state[j]] += events.rate[:, j, None] * active
    return result


def _combine(amplitudes: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Σ_k amplitude_k g_k: (n, T, batch) from amplitudes (k, n, batch) and modal sums (k, T, batch)."""
    total = np.einsum("kib,ktb->itb", amplitudes, modes)
    return total.real if np.iscomplexobj(total) else total


def _g(order: int, lam: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """g_order(λ, τ) for τ ≥ 0: e^{λτ}, ∫₀^τ e^{λs} ds, or its integral again."""
    z = lam * tau
    if order == 0:
        return np.exp(z)
    if order == 1:
        if np.all(lam != 0):  # the common case needs no guard for λ = 0: expm1(λτ)/λ
            return np.expm1(z) / lam
        return tau * phi1(z)
    return tau**2 * phi2(z)


def _initial_modes(lam: np.ndarray, times: np.ndarray, integral: bool) -> np.ndarray:
    """(k, T, batch) modal response to the initial state: g₀ or g₁ at t."""
    return _g(1 if integral else 0, lam, times)


def _dose_modes(lam, times, start, duration, amount, integral: bool, left: bool) -> np.ndarray:
    """(k, T, batch) modal response summed over a group of doses.

    lam (k, 1, 1, batch); times (1, 1, T, batch); start, amount and duration (1, D, 1, batch).
    """
    since = times - start
    bolus = duration == 0
    if np.all(bolus):
        if integral:  # g₁(0) = 0, so clamping τ at 0 is all a dose in the future needs
            response = _g(1, lam, np.maximum(since, 0.0)) * amount
        else:
            given = since > 0 if left else since >= 0
            response = _g(0, lam, np.where(given, since, 0.0)) * (amount * given)
        return response[:, 0] if response.shape[1] == 1 else response.sum(axis=1)
    given = np.where(bolus & left, since > 0, since >= 0)
    tau = np.where(given, since, 0.0)
    length = np.where(bolus, 1.0, duration)
    rate = np.where(bolus, amount, amount / length)
    running = np.minimum(tau, length)
    ended = np.maximum(tau - length, 0.0)
    full = _g(1, lam, length)
    if integral:
        infused = np.where(tau > length, _g(2, lam, length) + _g(1, lam, ended) * full, _g(2, lam, running))
    else:
        infused = np.where(tau > length, _g(0, lam, ended) * full, _g(1, lam, running))
    response = np.where(bolus, _g(1 if integral else 0, lam, tau), infused)
    return (response * (rate * given)).sum(axis=1)


class _MatrixFunctions:
    """e^{Aτ}, ∫₀^τ e^{As} ds and its integral for a few matrices A (m, n, n), exact when eigenvalues coincide."""

    def __init__(self, matrix: np.ndarray, shift: np.ndarray):
        m, n, _ = matrix.shape
        self.n = n
        self.shift = shift  # (m,) largest real part of each spectrum
        self.shifted = matrix - shift[:, None, None] * np.eye(n)
        self.block = np.zeros((m, 3 * n, 3 * n))
        self.block[:, :n, :n] = matrix
        self.block[:, :n, n:2 * n] = np.eye(n)
        self.block[:, n:2 * n, 2 * n:] = np.eye(n)

    def __call__(self, order: int, tau: np.ndarray) -> np.ndarray:
        """(T, m, n, n) for τ (T, m) ≥ 0."""
        n = self.n
        if order == 0:
            scaled = expm(self.shifted[None] * tau[..., None, None])
            return scaled * np.exp(self.shift * tau)[..., None, None]
        whole = expm(self.block[None] * tau[..., None, None])
        return whole[..., :n, order * n:(order + 1) * n]
