"""A solved model for a batch of parameter sets: states, outputs, rates and integrals at any time."""

from __future__ import annotations

import numpy as np

from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents, resolve_doses
from koopnb.simulate.linear import LinearSolution, system_matrix
from koopnb.simulate.ode import OdeSolution


def solve(compiled: CompiledModel, dose_state: str | None, args: list[np.ndarray], regimen, *,
          horizon: float, integrals: tuple[str, ...] = (), solver: str = "auto",
          rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853", times=None) -> Trajectory:
    """Solve a compiled model for a batch of argument vectors (one array (batch,) per entry of ``compiled.args``).

    ``horizon`` (h) is the last time that will be asked for; ``integrals`` names outputs whose
    running integrals will be needed (AUC).  ``solver="auto"`` picks the exact linear solution when the
    model is linear and every integrated output is affine in the states, the ODE solver otherwise.
    ``times`` (shared, h): when given, the ODE solver computes the solution at these times only (faster;
    the trajectory can then be evaluated there and nowhere else); the exact linear solution ignores it.
    """
    batch = len(args[0]) if args else 1
    events = resolve_doses(compiled, dose_state, regimen, args, batch)
    initial = np.stack([np.broadcast_to(v, (batch,)) for v in compiled.initial(*args)], axis=1) \
        if compiled.states else np.zeros((batch, 0))
    affine = all(compiled.output_affine[compiled.outputs.index(name)] for name in integrals)
    if solver == "auto":
        solver = "linear" if compiled.is_linear and affine else "ode"
    if solver == "linear":
        if not compiled.is_linear:
            raise SimulationError("the exact linear solver needs a model whose equations are linear in the states")
        solution = LinearSolution(compiled, args, system_matrix(compiled, args, batch), initial, events)
    else:
        indices = tuple(compiled.outputs.index(name) for name in integrals)
        solution = OdeSolution(compiled, args, initial, events, horizon, indices, rtol=rtol, atol=atol,
                               method=method, times=times)
    return Trajectory(compiled, args, events, solution, integrals)


class Trajectory:
    """The solution of one model, for a batch of parameter sets and one dosing history.

    Times are in hours, shape (n_times,) shared by the batch, or (batch, n_times) when ``exact`` is
    True (the linear solution can be evaluated at a different time for every parameter set, which
    root finding for Cmax and crossings uses).
    """

    def __init__(self, compiled: CompiledModel, args: list[np.ndarray], events: DoseEvents,
                 solution: LinearSolution | OdeSolution, integrals: tuple[str, ...]):
        self.compiled = compiled
        self.args = args
        self.events = events
        self.solution = solution
        self.integrals = integrals
        self.batch = solution.batch
        self.exact = solution.exact

    def _broadcast_args(self, times: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(a)[:, None] for a in self.args]

    def states(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) amounts in each state.

        States are right-continuous: a bolus at t is included at t.  ``left=True`` gives the left
        limits instead (the amounts just before any bolus given at that time).
        """
        return self.solution.states(times, left=left)

    def outputs(self, times) -> dict[str, np.ndarray]:
        """Every output and state at ``times``: name -> (batch, n_times)."""
        times = np.asarray(times, dtype=float)
        states = self.states(times)
        values = self.compiled.output_values(times, *states.transpose(1, 0, 2), *self._broadcast_args(times))
        result = {name: np.array(v) for name, v in zip(self.compiled.outputs, values, strict=True)}
        result.update({name: states[:, i] for i, name in enumerate(self.compiled.states)})
        return result

    def output(self, name: str, times, left: bool = False) -> np.ndarray:
        """(batch, n_times) one output (or state) at ``times`` (left limits at dose times if ``left``)."""
        return self._output(name, np.asarray(times, dtype=float), self.states(times, left=left))

    def output_rate(self, name: str, times, left: bool = False) -> np.ndarray:
        """(batch, n_times) d(output)/dt, including the infusion inputs (right derivative at dose times,
        left derivative if ``left``)."""
        times = np.asarray(times, dtype=float)
        return self._rate(name, times, self.states(times, left=left), left)

    def output_and_rate(self, name: str, times, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(value, rate), each (batch, n_times): :meth:`output` and :meth:`output_rate` from one state evaluation."""
        times = np.asarray(times, dtype=float)
        states = self.states(times, left=left)
        return self._output(name, times, states), self._rate(name, times, states, left)

    def _output(self, name: str, times: np.ndarray, states: np.ndarray) -> np.ndarray:
        if name in self.compiled.states:
            return states[:, self.compiled.states.index(name)]
        values = self.compiled.output_values(times, *states.transpose(1, 0, 2), *self._broadcast_args(times))
        return np.array(values[self.compiled.outputs.index(name)])

    def _rate(self, name: str, times: np.ndarray, states: np.ndarray, left: bool) -> np.ndarray:
        inputs = self.solution.inputs(times, left=left)
        args = (times, *states.transpose(1, 0, 2), *self._broadcast_args(times))
        if name in self.compiled.states:
            i = self.compiled.states.index(name)
            return self.compiled.rhs(*args)[i] + inputs[:, i]
        k = self.compiled.outputs.index(name)
        n = len(self.compiled.states)
        along = self.compiled.output_rates(*args)[k]
        gradient = self.compiled.output_gradient(*args)[k * n:(k + 1) * n]
        return along + sum(g * inputs[:, i] for i, g in enumerate(gradient))

    def output_integral(self, name: str, t0: float, t1: float) -> np.ndarray:
        """(batch,) ∫_{t0}^{t1} output dt, exact for the linear solution, to ODE tolerance otherwise."""
        if name in self.compiled.states:
            if isinstance(self.solution, LinearSolution):
                i = self.compiled.states.index(name)
                totals = self.solution.state_integrals([t0, t1])[:, i]
                return totals[:, 1] - totals[:, 0]
            raise SimulationError(f"the integral of state {name!r} is only available for linear models")
        if name not in self.integrals:
            raise SimulationError(f"the integral of {name!r} was not requested when the model was solved")
        if isinstance(self.solution, LinearSolution):
            k = self.compiled.outputs.index(name)
            n = len(self.compiled.states)
            zero = [np.zeros(self.batch)] * n
            offset = np.broadcast_to(self.compiled.output_offset(*self.args)[k], (self.batch,))
            gain = np.stack(self.compiled.output_gradient(0.0, *zero, *self.args)[k * n:(k + 1) * n], axis=1)
            # The integral from 0 to 0 is zero: skip evaluating it.
            totals = self.solution.state_integrals([t1] if t0 == 0 else [t0, t1])
            change = totals[:, :, -1] - totals[:, :, 0] if t0 != 0 else totals[:, :, 0]
            return offset * (t1 - t0) + np.einsum("bi,bi->b", gain, change)
        totals = self.solution.output_integrals([t0, t1])[:, self.integrals.index(name)]
        return totals[:, 1] - totals[:, 0]

    def breakpoints(self) -> np.ndarray:
        """(batch, k) dose starts and infusion ends, where outputs may jump or kink."""
        return self.events.breakpoints()
