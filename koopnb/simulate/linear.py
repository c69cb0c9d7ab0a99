"""Exact solution of linear compartment models by spectral decomposition and superposition.

For dx/dt = A x the solution after a unit bolus into state i is exp(Aτ) e_i, after a unit-rate
infusion ∫₀^τ exp(As) ds e_i, and the running integrals of both follow the same pattern.  With
the eigenvalues λ_k of A and the Frobenius covariants P_k = Π_{j≠k} (A − λ_j I)/(λ_k − λ_j)
(Horn & Johnson, *Topics in Matrix Analysis*, §6.1), every such matrix function is
Σ_k g(λ_k, τ) P_k with a scalar g: g₀ = e^{λτ}, g₁ = τ φ₁(λτ), g₂ = τ² φ₂(λτ), where
φ₁(z) = (e^z − 1)/z and φ₂(z) = (e^z − 1 − z)/z² are evaluated without cancellation.

Eigenvalues come from the diagonal blocks of A (the strongly connected groups of states): one-state
blocks directly, two-state blocks by the quadratic formula, larger blocks by LAPACK.  Where two
eigenvalues coincide or nearly coincide (ka = k), the covariants blow up; those parameter sets are
solved instead with the block matrix exponential of Van Loan (1978), which gives exp(Aτ), G₁ and G₂
at once and is exact in the confluent case.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents

CONFLUENT_GAP = 1e-3
"""Relative eigenvalue gap below which a parameter set is solved by the block matrix exponential."""


def phi1(z: np.ndarray) -> np.ndarray:
    """φ₁(z) = (e^z − 1)/z, with φ₁(0) = 1; accurate to rounding for real and complex z."""
    safe = np.where(z == 0, 1.0, z)
    return np.where(z == 0, 1.0, np.expm1(safe) / safe)


def phi2(z: np.ndarray) -> np.ndarray:
    """φ₂(z) = (e^z − 1 − z)/z², with φ₂(0) = 1/2; Taylor series near 0 where the formula cancels."""
    small = np.abs(z) < 0.1
    safe = np.where(small, 1.0, z)
    direct = (np.expm1(safe) - safe) / safe**2
    series = np.zeros_like(z, dtype=np.result_type(z, float))
    for k in range(12, 1, -1):  # Horner: Σ z^(k−2)/k!, k = 2..12
        series = series * z + 1.0 / _factorial(k)
    return np.where(small, series, direct)


def _factorial(k: int) -> float:
    return float(np.prod(np.arange(1, k + 1, dtype=float)))


def _modal(order: int, lam: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """g_order(λ, τ) for λ (batch, n, 1, 1) and τ ≥ 0 of shape (batch, 1, …)."""
    z = lam * tau
    if order == 0:
        return np.exp(z)
    if order == 1:
        return tau * phi1(z)
    return tau**2 * phi2(z)


def eigenvalues(matrix: np.ndarray, blocks: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Eigenvalues (batch, n) of a batch of matrices whose diagonal blocks (index groups) are given."""
    batch = matrix.shape[0]
    values = []
    for block in blocks:
        if len(block) == 1:
            values.append(matrix[:, block[0], block[0]].astype(complex)[:, None])
        elif len(block) == 2:
            i, j = block
            a, b, c, d = matrix[:, i, i], matrix[:, i, j], matrix[:, j, i], matrix[:, j, j]
            half_trace = (a + d) / 2
            root = np.sqrt(((a - d) / 2) ** 2 + b * c + 0j)
            # The root of larger magnitude directly, the other from the determinant: no cancellation.
            big = half_trace + np.where(half_trace.real >= 0, root, -root)
            det = a * d - b * c
            small = np.where(big != 0, det / np.where(big == 0, 1, big), half_trace)
            values.append(np.stack([big, small], axis=1))
        else:
            values.append(np.linalg.eigvals(matrix[:, block][:, :, block]).astype(complex))
    return np.concatenate(values, axis=1) if values else np.zeros((batch, 0), complex)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of two batches of small matrices stored batch-last, (n, n, batch)."""
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)


class LinearSolution:
    """The exact solution of a linear model for a batch of parameter sets and one dosing history.

    ``matrix`` (batch, n, n) is A, ``initial`` (batch, n) the initial state, ``events`` the doses.
    Times may be (n_times,) shared by the batch or (batch, n_times) per parameter set.  Internally
    arrays keep the batch on the last axis, so that the work on tiny matrices is a few long
    element-wise numpy operations rather than one small LAPACK or BLAS call per parameter set.
    """

    exact = True

    def __init__(self, compiled: CompiledModel, args: list[np.ndarray], matrix: np.ndarray,
                 initial: np.ndarray, events: DoseEvents):
        self.compiled = compiled
        self.args = args
        self.matrix = matrix
        self.initial = initial
        self.events = events
        self.batch, self.n = initial.shape
        lam = eigenvalues(matrix, compiled.blocks)
        gap = np.where(np.eye(self.n, dtype=bool), np.inf, np.abs(lam[:, :, None] - lam[:, None, :]))
        scale = np.maximum(np.abs(lam).max(axis=1, initial=0.0), np.finfo(float).tiny)
        self.confluent = np.any(gap < CONFLUENT_GAP * scale[:, None, None], axis=(1, 2))
        real = bool(np.all(lam.imag == 0))
        self.lam = (lam.real if real else lam).T  # (n, batch)
        self.projectors = self._covariants()

    def _covariants(self) -> np.ndarray:
        """Frobenius covariants (n_modes, n, n, batch); confluent sets get zeros (they use expm)."""
        n = self.n
        lam = np.where(self.confluent, np.arange(n)[:, None] + 1.0, self.lam)
        matrix = self.matrix.transpose(1, 2, 0)
        eye = np.eye(n)[:, :, None]
        covariants = []
        for k in range(n):
            product = np.broadcast_to(eye, (n, n, self.batch)).astype(lam.dtype)
            for j in range(n):
                if j != k:
                    product = _matmul(product, (matrix - lam[j] * eye) / (lam[k] - lam[j]))
            covariants.append(product * ~self.confluent)
        return np.stack(covariants)

    def _apply(self, order: int, tau: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """G_order(τ) v summed over m, for τ (m, T, batch) and vectors (m, n, batch) → (n, T, batch).

        Zero where τ is negative (a dose that has not happened yet) for every order.
        """
        given = tau >= 0
        tau = np.where(given, tau, 0.0)
        weights = (self.projectors[:, None] * vectors[None, :, None]).sum(axis=3)  # (k, m, n, batch)
        modal = _modal(order, self.lam[:, None, None], tau[None]) * given  # (k, m, T, batch)
        result = (weights[:, :, :, None] * modal[:, :, None]).sum(axis=(0, 1))
        result = np.array(result.real if np.iscomplexobj(result) else result)
        if np.any(self.confluent):
            members = np.flatnonzero(self.confluent)
            result[..., members] = self._apply_blockexp(order, tau[..., members], given[..., members],
                                                        members, vectors[..., members])
        return result

    def _apply_blockexp(self, order, tau, given, members, vectors) -> np.ndarray:
        """Van Loan's block exponential expm([[A, I, 0], [0, 0, I], [0, 0, 0]] τ) for confluent sets."""
        n = self.n
        block = np.zeros((len(members), 3 * n, 3 * n))
        block[:, :n, :n] = self.matrix[members]
        block[:, :n, n:2 * n] = np.eye(n)
        block[:, n:2 * n, 2 * n:] = np.eye(n)
        tau = tau.transpose(2, 0, 1)  # (members, m, T)
        scaled = block[:, None, None] * tau[..., None, None]
        blocks = expm(scaled.reshape(-1, 3 * n, 3 * n)).reshape(*tau.shape, 3 * n, 3 * n)
        g = blocks[..., :n, order * n:(order + 1) * n] * given.transpose(2, 0, 1)[..., None, None]
        return np.einsum("bmtij,mjb->itb", g, vectors)

    def _times(self, times) -> np.ndarray:
        """Times as (T, batch)."""
        times = np.asarray(times, dtype=float)
        return np.broadcast_to(times[:, None], (times.size, self.batch)) if times.ndim == 1 else times.T

    def _history(self, times, integral: bool) -> np.ndarray:
        """States (integral=False) or their integrals from 0 (integral=True), (batch, n, T)."""
        times = self._times(times)
        order = 1 if integral else 0
        events = self.events
        result = np.zeros((self.n, *times.shape))
        if np.any(self.initial != 0):
            result += self._apply(order, times[None], self.initial.T[None])
        if len(events.state):
            unit = np.eye(self.n)[events.state][:, :, None]  # (doses, n, 1)
            bolus = events.duration == 0
            if np.any(bolus):
                since = times[None] - events.start.T[bolus][:, None]
                result += self._apply(order, since, unit[bolus] * events.amount.T[bolus][:, None])
            infusion = ~bolus
            if np.any(infusion):
                weighted = unit[infusion] * events.rate.T[infusion][:, None]
                # Unit-rate infusion from start: G_{order+1}(t − start) − G_{order+1}(t − end).
                result += self._apply(order + 1, times[None] - events.start.T[infusion][:, None], weighted)
                result -= self._apply(order + 1, times[None] - events.end.T[infusion][:, None], weighted)
        return result.transpose(2, 0, 1)

    def states(self, times) -> np.ndarray:
        """(batch, n_states, n_times) amounts in each state."""
        return self._history(times, integral=False)

    def state_integrals(self, times) -> np.ndarray:
        """(batch, n_states, n_times) ∫₀ᵗ x(s) ds."""
        return self._history(times, integral=True)

    def inputs(self, times) -> np.ndarray:
        """(batch, n_states, n_times) infusion input rates at each time (right-continuous)."""
        times = self._times(times).T  # (batch, T)
        events = self.events
        active = ((times[:, None, :] >= events.start[:, :, None]) & (times[:, None, :] < events.end[:, :, None]))
        rates = events.rate[:, :, None] * active
        return np.einsum("bdt,di->bit", rates, np.eye(self.n)[events.state])
