"""Steady state of a dose repeated every interval (NONMEM SS=1 and SS=2).

The steady state is the state at the dose's record time t_d when the same dose has been given every
``interval`` τ hours forever, its lag and bioavailability included: the fixed point x = F(x) of the map
F that takes the state at t_d to the state at t_d + τ (just before the next dose of the series), with
the dose given in between.

Linear models: F(x) = Φ x + y with Φ = e^{Aτ} and y the state at t_d + τ after the dose alone, from
zero (the exact LinearSolution), so x = (I − Φ)⁻¹ y, one batched ``np.linalg.solve`` — exact, for a
bolus or an infusion into any state.  It exists when every eigenvalue of A has a negative real part.

Nonlinear models: F is applied by solving the ODE over one period at a time, batched over the
parameter sets, until the change per period, extrapolated to the fixed point (the change times
ρ/(1 − ρ), ρ the observed contraction per period), is below :data:`STEADY_STATE_RTOL` relative plus
the solver's ``atol`` for every state; sets that have converged leave the batch.  A set that has not
converged after :data:`MAX_PERIODS` periods stops the solve with a SimulationError saying so.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents
from koopnb.simulate.linear import LinearSolution, finite_system_matrix
from koopnb.simulate.ode import OdeSolution

STEADY_STATE_RTOL = 1e-8
"""Relative tolerance on the state of a nonlinear steady state (estimated distance to the fixed point)."""

MAX_PERIODS = 2000
"""Most dosing periods simulated to reach a nonlinear steady state."""


def _check_period(dose: DoseEvents, record_time: float, interval: float) -> None:
    """The map over one period needs the dose inside it: lag + duration <= interval."""
    late = dose.end[:, 0] - record_time > interval * (1 + 1e-12)
    if late.any() or np.any(dose.start[:, 0] - record_time >= interval):
        raise SimulationError(f"the steady-state dose at t = {record_time:g} h ends after the next dose of its "
                              f"series ({interval:g} h later) for {int(late.sum()) or 'some'} parameter sets: its "
                              "lag time plus infusion duration must not exceed the interval")


def linear_steady_state(compiled: CompiledModel, args: list[np.ndarray], dose: DoseEvents, record_time: float,
                        interval: float) -> np.ndarray:
    """(batch, n) state at ``record_time`` at steady state of ``dose`` (one column) every ``interval`` h."""
    _check_period(dose, record_time, interval)
    batch, n = dose.start.shape[0], len(compiled.states)
    a = finite_system_matrix(compiled, args, batch)
    matrix = np.ascontiguousarray(a.transpose(2, 0, 1))
    eigenvalues, eigenvectors = np.linalg.eig(matrix)
    unstable = eigenvalues.real.max(axis=1) >= 0
    if unstable.any():
        raise SimulationError(f"the model has no steady state for {int(unstable.sum())} of {batch} parameter sets: "
                              "some state is never eliminated (its system matrix has an eigenvalue >= 0)")
    local = DoseEvents(dose.start - record_time, dose.amount, dose.duration, dose.state)
    after_one = LinearSolution(compiled, args, a, np.zeros((batch, n)), local).states([interval], left=True)[:, :, 0]
    phi = _propagator(matrix, eigenvalues, eigenvectors, interval)
    return np.linalg.solve(np.eye(n) - phi, after_one[..., None])[..., 0]


WELL_CONDITIONED = 1e4
"""Largest condition number of the eigenvector matrix for which e^{Aτ} = V e^{Λτ} V⁻¹ is used (its error is about
this times the machine epsilon); other parameter sets (near-equal eigenvalues) go to scipy's expm."""


def _propagator(matrix: np.ndarray, eigenvalues: np.ndarray, eigenvectors: np.ndarray, interval: float) -> np.ndarray:
    """(batch, n, n) e^{A·interval}: from the eigendecomposition for the whole batch at once, and with scipy's
    expm (a Python loop over the batch, about 1 ms a matrix) only for the ill-conditioned sets."""
    phi = np.empty_like(matrix)
    good = np.linalg.cond(eigenvectors) < WELL_CONDITIONED
    if good.any():
        vectors = eigenvectors[good]
        phi[good] = ((vectors * np.exp(eigenvalues[good] * interval)[:, None, :]) @ np.linalg.inv(vectors)).real
    if not good.all():
        phi[~good] = expm(matrix[~good] * interval)
    return phi


def ode_steady_state(compiled: CompiledModel, args: list[np.ndarray], initial: np.ndarray, dose: DoseEvents,
                     record_time: float, interval: float, *, rtol: float, atol: float, method: str) -> np.ndarray:
    """(batch, n) state at ``record_time`` at steady state of ``dose`` every ``interval`` h, by simulating
    periods from ``initial`` (batch, n) until converged (module docstring)."""
    _check_period(dose, record_time, interval)
    state = np.array(initial, dtype=float)
    active = np.arange(state.shape[0])
    scaled_before = np.full(active.size, np.inf)
    for _ in range(MAX_PERIODS):
        period = OdeSolution(compiled, [np.asarray(a)[active] for a in args], state[active], dose.rows(active),
                             record_time + interval, rtol=rtol, atol=atol, method=method, start=record_time)
        new = period.final.T
        scaled = (np.abs(new - state[active]) / (STEADY_STATE_RTOL * np.abs(new) + atol)).max(axis=1)
        state[active] = new
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = scaled / scaled_before
            remaining = np.where(rho < 1, scaled * rho / (1 - rho), np.inf)
        done = (scaled == 0) | ((scaled <= 1) & (remaining <= 1))
        active, scaled_before = active[~done], scaled[~done]
        if not active.size:
            return state
    raise SimulationError(f"the steady state of the dose at t = {record_time:g} h was not reached in {MAX_PERIODS} "
                          f"periods of {interval:g} h for {active.size} of {state.shape[0]} parameter sets (relative "
                          f"tolerance {STEADY_STATE_RTOL:g}); simulate the doses instead of using steady state")
