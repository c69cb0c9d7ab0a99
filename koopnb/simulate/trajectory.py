"""A solved model for a batch of parameter sets: states, outputs, rates and integrals at any time."""

from __future__ import annotations

import numpy as np

from koopnb.covariates import CovariateHistory
from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents, resolve_doses
from koopnb.simulate.linear import LinearSolution, finite_system_matrix
from koopnb.simulate.ode import OdeSolution
from koopnb.simulate.piecewise import PiecewiseSolution, Restart


def solve(compiled: CompiledModel, dose_state: str | None, args: list[np.ndarray], regimen, *,
          horizon: float, integrals: tuple[str, ...] = (), solver: str = "auto",
          rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853", times=None,
          history: CovariateHistory | None = None, positions: dict[str, int] | None = None) -> Trajectory:
    """Solve a compiled model for a batch of argument vectors (one array (batch,) per entry of ``compiled.args``).

    ``horizon`` (h) is the last time that will be asked for; ``integrals`` names outputs whose
    running integrals will be needed (AUC).  ``solver="auto"`` picks the exact linear solution when the
    model is linear and every integrated output is affine in the states, the ODE solver otherwise.
    ``times`` (shared, h): when given, the ODE solver computes the solution at these times only (faster;
    the trajectory can then be evaluated there and nowhere else); the exact linear solution ignores it.
    ``history`` holds covariates that change over time, ``positions`` the index in ``args`` of each of
    its covariates; the solution is then split at the change times (koopnb.simulate.piecewise), as it
    is at resets and steady-state doses.
    """
    batch = len(args[0]) if args else 1
    schedule = _Schedule(args, batch, regimen, history, positions or {})
    events = resolve_doses(compiled, dose_state, regimen, args, batch, schedule.dose_groups())
    affine = all(compiled.output_affine[compiled.outputs.index(name)] for name in integrals)
    if solver == "auto":
        solver = "linear" if compiled.is_linear and affine else "ode"
    if solver == "linear" and not compiled.is_linear:
        raise SimulationError("the exact linear solver needs a model whose equations are linear in the states")
    indices = tuple(compiled.outputs.index(name) for name in integrals)
    restarts = schedule.restarts()
    if len(restarts) == 1 and not restarts[0].steady:
        initial = _initial(compiled, args, batch)
        if solver == "linear":
            solution = LinearSolution(compiled, args, finite_system_matrix(compiled, args, batch), initial, events)
        else:
            solution = OdeSolution(compiled, args, initial, events, horizon, indices, rtol=rtol, atol=atol,
                                   method=method, times=times)
    else:
        solution = PiecewiseSolution(compiled, events, restarts, lambda a: _initial(compiled, a, batch),
                                     linear=solver == "linear", horizon=horizon, integrate=indices,
                                     options={"rtol": rtol, "atol": atol, "method": method}, times=times)
    return Trajectory(compiled, args, events, solution, integrals, schedule)


def _initial(compiled: CompiledModel, args: list[np.ndarray], batch: int) -> np.ndarray:
    """(batch, n) the model's initial state."""
    if not compiled.states:
        return np.zeros((batch, 0))
    with np.errstate(all="ignore"):  # a non-finite value is reported below, in words
        initial = np.stack([np.broadcast_to(v, (batch,)) for v in compiled.initial(*args)], axis=1).astype(float)
    finite = np.isfinite(initial)
    if not finite.all():
        state = compiled.states[int(np.argmax(~finite.all(axis=0)))]
        sets = int((~finite.all(axis=1)).sum())
        raise SimulationError(f"the initial value of state {state!r} is not finite for {sets} of {batch} "
                              "parameter sets")
    return initial


class _Schedule:
    """Where the solution must be split (resets, steady-state doses, covariate changes) and the
    argument vector in force at any time."""

    def __init__(self, args: list[np.ndarray], batch: int, regimen, history: CovariateHistory | None,
                 positions: dict[str, int]):
        self.args, self.batch, self.history, self.positions = args, batch, history, positions
        self.doses = list(regimen.doses) if regimen is not None else []
        self.resets = tuple(regimen.resets) if regimen is not None else ()

    def arguments(self, row: int) -> list[np.ndarray]:
        """The argument vector with the history's covariates of one row."""
        args = list(self.args)
        for name, position in self.positions.items():
            args[position] = np.full(self.batch, self.history.values[name][row])
        return args

    def at(self, times: np.ndarray, side: str) -> list[np.ndarray]:
        """The argument vector at ``times`` ((T,) or (batch, T)), broadcastable to (batch, T)."""
        args = [np.asarray(a)[:, None] for a in self.args]
        if self.history is not None:
            values = self.history.at(times, side)
            for name, position in self.positions.items():
                args[position] = values[name]
        return args

    def dose_groups(self) -> list[tuple[np.ndarray, list[np.ndarray]]] | None:
        """(dose indices, arguments at their record time) for resolve_doses; None without a history."""
        if self.history is None or not self.doses:
            return None
        rows = self.history.rows(np.array([d.time for d in self.doses]))
        return [(np.flatnonzero(rows == row), self.arguments(row)) for row in np.unique(rows)]

    def _piece_arguments(self, time: float) -> list[np.ndarray]:
        if self.history is None:
            return self.args
        return self.arguments(int(self.history.rows(time, "right")))

    def _record_arguments(self, time: float) -> list[np.ndarray]:
        if self.history is None:
            return self.args
        return self.arguments(int(self.history.rows(time)))

    def restarts(self) -> list[Restart]:
        """The piece boundaries from time 0 on, each with what happens there."""
        steady: dict[float, list[tuple[int, int, float]]] = {}
        for j, dose in enumerate(self.doses):
            if dose.steady_state:
                steady.setdefault(dose.time, []).append((j, dose.steady_state, dose.interval))
        changes = self.history.change_times() if self.history is not None else np.zeros(0)
        times = sorted({0.0, *self.resets, *steady, *(float(t) for t in changes if t > 0)})
        resets = set(self.resets)
        return [Restart(t, t in resets, tuple(steady.get(t, ())), self._piece_arguments(t), self._record_arguments(t))
                for t in times]

    def boundaries(self) -> np.ndarray:
        """Times (h) > 0 where the solution is split: resets, steady-state doses, covariate changes."""
        changes = self.history.change_times() if self.history is not None else np.zeros(0)
        steady = [d.time for d in self.doses if d.steady_state]
        return np.unique(np.concatenate([changes, self.resets, steady]))


class Trajectory:
    """The solution of one model, for a batch of parameter sets and one dosing history.

    Times are in hours, shape (n_times,) shared by the batch, or (batch, n_times) when ``exact`` is
    True (the linear solution can be evaluated at a different time for every parameter set, which
    root finding for Cmax and crossings uses).

    With covariates that change over time an output may jump where a covariate changes.  ``output``
    gives the value an observation at that instant sees (the history's rule: NOCB takes the value
    before, LOCF the value after); ``output_rate`` and ``output_and_rate`` give right limits; all three
    give left limits with ``left=True``.
    """

    def __init__(self, compiled: CompiledModel, args: list[np.ndarray], events: DoseEvents,
                 solution: LinearSolution | OdeSolution | PiecewiseSolution, integrals: tuple[str, ...],
                 schedule: _Schedule | None = None):
        self.compiled = compiled
        self.args = args
        self.events = events
        self.solution = solution
        self.integrals = integrals
        self.batch = solution.batch
        self.exact = solution.exact
        self._schedule = schedule

    def _broadcast_args(self, times: np.ndarray, side: str = "right") -> list[np.ndarray]:
        if self._schedule is None:
            return [np.asarray(a)[:, None] for a in self.args]
        return self._schedule.at(times, side)

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
        values = self.compiled.output_values(times, *states.transpose(1, 0, 2), *self._broadcast_args(times, "rule"))
        result = {name: np.array(v) for name, v in zip(self.compiled.outputs, values, strict=True)}
        result.update({name: states[:, i] for i, name in enumerate(self.compiled.states)})
        return result

    def output(self, name: str, times, left: bool = False) -> np.ndarray:
        """(batch, n_times) one output (or state) at ``times`` (left limits at dose times if ``left``)."""
        return self._output(name, np.asarray(times, dtype=float), self.states(times, left=left),
                            "left" if left else "rule")

    def output_rate(self, name: str, times, left: bool = False) -> np.ndarray:
        """(batch, n_times) d(output)/dt, including the infusion inputs (right derivative at dose times,
        left derivative if ``left``)."""
        times = np.asarray(times, dtype=float)
        return self._rate(name, times, self.states(times, left=left), left)

    def output_and_rate(self, name: str, times, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(value, rate), each (batch, n_times): :meth:`output` and :meth:`output_rate` from one state evaluation."""
        times = np.asarray(times, dtype=float)
        states = self.states(times, left=left)
        side = "left" if left else "right"
        return self._output(name, times, states, side), self._rate(name, times, states, left)

    def _output(self, name: str, times: np.ndarray, states: np.ndarray, side: str) -> np.ndarray:
        if name in self.compiled.states:
            return states[:, self.compiled.states.index(name)]
        values = self.compiled.output_values(times, *states.transpose(1, 0, 2), *self._broadcast_args(times, side))
        return np.broadcast_to(values[self.compiled.outputs.index(name)], states[:, 0].shape).copy()

    def _rate(self, name: str, times: np.ndarray, states: np.ndarray, left: bool) -> np.ndarray:
        inputs = self.solution.inputs(times, left=left)
        args = (times, *states.transpose(1, 0, 2), *self._broadcast_args(times, "left" if left else "right"))
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
        linear = self.exact  # the exact solution, in one piece or several
        if name in self.compiled.states:
            if linear:
                i = self.compiled.states.index(name)
                return sum(change[:, i] for _, change, _ in self._state_integrals(t0, t1))
            raise SimulationError(f"the integral of state {name!r} is only available for linear models")
        if name not in self.integrals:
            raise SimulationError(f"the integral of {name!r} was not requested when the model was solved")
        if linear:
            k = self.compiled.outputs.index(name)
            n = len(self.compiled.states)
            zero = [np.zeros(self.batch)] * n
            total = np.zeros(self.batch)
            for args, change, length in self._state_integrals(t0, t1):
                offset = np.broadcast_to(self.compiled.output_offset(*args)[k], (self.batch,))
                gain = np.stack(self.compiled.output_gradient(0.0, *zero, *args)[k * n:(k + 1) * n], axis=1)
                total = total + offset * length + np.einsum("bi,bi->b", gain, change)
            return total
        totals = self.solution.output_integrals([t0, t1])[:, self.integrals.index(name)]
        return totals[:, 1] - totals[:, 0]

    def _state_integrals(self, t0: float, t1: float) -> list[tuple[list, np.ndarray, float]]:
        """(arguments, ∫ states (batch, n), length) for each stretch of [t0, t1] with one argument vector."""
        if isinstance(self.solution, PiecewiseSolution):
            return self.solution.state_integrals_by_piece(t0, t1)
        # The integral from 0 to 0 is zero: skip evaluating it.
        totals = self.solution.state_integrals([t1] if t0 == 0 else [t0, t1])
        change = totals[:, :, -1] - totals[:, :, 0] if t0 != 0 else totals[:, :, 0]
        return [(self.args, change, t1 - t0)]

    def breakpoints(self) -> np.ndarray:
        """(batch, k) dose starts, infusion ends, resets, steady-state doses and covariate changes, where
        outputs may jump or kink."""
        doses = self.events.breakpoints()
        if self._schedule is None:
            return doses
        split = self._schedule.boundaries()
        return np.concatenate([doses, np.broadcast_to(split, (self.batch, split.size))], axis=1)
