"""Batched numerical solution of nonlinear models: every parameter set in one stacked ODE system.

The states of all parameter sets are stacked state-major (state i of set b at ``i*batch + b``) and
solved by one ``scipy.integrate.solve_ivp`` call per interval between dose events, so the right-hand
side is a handful of numpy operations on arrays of length ``batch`` instead of a Python call per set.
The sets do not interact, so the Jacobian is block diagonal; implicit methods get that sparsity
pattern and estimate it with a few grouped evaluations.

solve_ivp controls the root-mean-square of the scaled error over all components; for a stack of N
components that bounds each component's error only by √N times the tolerance, so the tolerances
handed to it are divided by √N to keep the requested accuracy for every parameter set.  (A maximum
norm instead was measured: 8% fewer steps on 10⁴ Michaelis–Menten sets, since the error of the stack
is dominated by its fastest sets either way, and its norm cost more than it saved.)
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import solve_ivp
from scipy.sparse import identity, kron
from threadpoolctl import threadpool_limits

from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents
from koopnb.simulate.linear import infusion_inputs

IMPLICIT = ("BDF", "Radau")

MAX_EVALUATIONS = 200_000
"""Most right-hand-side evaluations between two dose events before the solve is given up (a bound on
the time any solve can take: a solve_ivp step never shrinks below rounding but may take tiny steps)."""


PACE_WINDOW = 2_000
"""Evaluations between checks of the solver's pace: if the time it advanced over the last PACE_WINDOW evaluations
says that finishing the interval would take more than ten times MAX_EVALUATIONS, it stops at once (a step size
collapsed by a where() that switches back and forth at its threshold used to run to the cap: 200,000 evaluations,
about 10 s for a single parameter set)."""


class OdeSolution:
    """States, and running integrals of chosen outputs, of a nonlinear model on [start, horizon] hours.

    ``initial`` (batch, n) is the state at ``start``; integrals run from ``start``.  Times must be shared
    by the batch, shape (n_times,), within [start, horizon].  ``final`` holds every component (states,
    then integrals) at the horizon, (n_components, batch).  A state or derivative that is not finite
    stops the solve with a SimulationError naming the state and the time.
    """

    exact = False

    def __init__(self, compiled: CompiledModel, args: list[np.ndarray], initial: np.ndarray,
                 events: DoseEvents, horizon: float, integrate: tuple[int, ...] = (),
                 rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853", times=None,
                 start: float = 0.0):
        self.compiled = compiled
        self.start = float(start)
        # Known output times (Model.simulate) are solved for directly: Runge–Kutta dense output on every
        # step costs more than the step itself, and only a few steps contain an output time.
        self.times = None if times is None else np.unique(np.asarray(times, dtype=float))
        self._at_times = None
        self.args = args
        self.events = events
        self.batch, self.n = initial.shape
        self.integrate = tuple(integrate)
        # A bolus exactly at the horizon must still be seen there (right-continuous states), and a solution
        # asked for at its start time only still needs one step to hold anything.
        at_end = np.any((events.duration == 0) & (events.start >= horizon) & (events.start <= horizon))
        self.horizon = float(horizon) * (1 + 1e-12) + 1e-12 if at_end or horizon <= start else float(horizon)
        size = (self.n + len(self.integrate)) * self.batch
        self._rtol = rtol / np.sqrt(size)
        self._atol = atol / np.sqrt(size)
        self.method = method
        self.segments: list[tuple[float, float, object]] = []
        self._evaluations = 0
        self._solve(initial)

    def _rhs(self, t: float, y: np.ndarray, rates: np.ndarray | None) -> np.ndarray:
        x = y.reshape(-1, self.batch)
        states = list(x[: self.n])
        derivative = np.empty_like(x)
        # The generated functions unwrapped (``raw``): a constant entry is a number that the row assignment
        # broadcasts; t as a numpy float, so that 1/t at t = 0 is inf (reported below), not ZeroDivisionError.
        t = np.float64(t)
        with np.errstate(all="ignore"):  # a non-finite value is reported below, in words
            for row, value in enumerate(self.compiled.rhs.raw(t, *states, *self.args)):
                derivative[row] = value
            if rates is not None:
                derivative[: self.n] += rates
            if self.integrate:
                outputs = self.compiled.output_values.raw(t, *states, *self.args)
                for row, k in enumerate(self.integrate, start=self.n):
                    derivative[row] = outputs[k]
            # One reduction instead of an elementwise test: the sum is NaN or ±inf whenever an entry is.
            suspicious = not np.isfinite(derivative.sum())
        if suspicious and not np.isfinite(derivative).all():
            self._not_finite(t, x, derivative)
        self._evaluations += 1
        if self._evaluations % PACE_WINDOW == 0:
            self._check_pace(float(t))
        if self._evaluations > MAX_EVALUATIONS:
            raise SimulationError(f"the ODE solver needed more than {MAX_EVALUATIONS:,} evaluations of the "
                                  f"model between two dose events (near t = {t:g} h); the model is too stiff "
                                  f"for method={self.method!r} (try method='BDF') or its solution blows up")
        return derivative.ravel()

    def _check_pace(self, t: float) -> None:
        """Stop when, at the pace of the last PACE_WINDOW evaluations, the interval would need more than ten times
        MAX_EVALUATIONS: the step size has collapsed (chattering) or the model is far too stiff for the method."""
        advanced, self._pace_time = t - self._pace_time, t
        remaining = self._segment_end - t
        if advanced > 0 and remaining / advanced * PACE_WINDOW <= 10 * MAX_EVALUATIONS:
            return
        raise SimulationError(
            f"the ODE solver is making almost no progress near t = {t:.10g} h: it advanced {max(advanced, 0.0):.2g} h "
            f"in its last {PACE_WINDOW:,} evaluations of the model, with {remaining:g} h to go before t = "
            f"{self._segment_end:g} h; the right-hand side probably switches back and forth (a where() condition "
            f"chattering around its threshold: give the switch a smooth transition) or the model is too stiff for "
            f"method={self.method!r} (try method='BDF')")

    def _not_finite(self, t: float, x: np.ndarray, derivative: np.ndarray) -> None:
        """Raise a SimulationError naming the first state (or integrated output) that is not finite."""
        names = list(self.compiled.states) + [f"the integral of {self.compiled.outputs[k]}" for k in self.integrate]
        bad_state = ~np.isfinite(x).all(axis=1)
        if bad_state.any():
            name = names[int(np.argmax(bad_state))]
            raise SimulationError(f"state {name!r} is not finite at t = {t:g} h")
        row = int(np.argmax(~np.isfinite(derivative).all(axis=1)))
        value = derivative[row][~np.isfinite(derivative[row])][0]
        what = f"the derivative of state {names[row]!r}" if row < self.n else names[row]
        raise SimulationError(f"{what} is {value} at t = {t:g} h (check the model for a division by zero "
                              "or a logarithm of zero, e.g. a state whose initial value is 0)")

    def _solve(self, initial: np.ndarray) -> None:
        # solve_ivp's error norms and Runge–Kutta combinations are BLAS dot products on long vectors;
        # with several BLAS threads they contend with each other (ten times slower on 2 cores here).
        with threadpool_limits(limits=1, user_api="blas"):
            self._solve_segments(initial)

    def _solve_segments(self, initial: np.ndarray) -> None:
        events = self.events
        boundaries = np.unique(np.concatenate([[self.start, self.horizon], events.start.ravel(),
                                               events.end.ravel()]))
        boundaries = boundaries[(boundaries >= self.start) & (boundaries <= self.horizon)]
        state = np.zeros((self.n + len(self.integrate), self.batch))
        state[: self.n] = initial.T
        dosed = np.eye(self.n)[events.state]  # (n_doses, n)
        options = {}
        if self.method in IMPLICIT:
            block = np.ones((len(state), len(state)))
            options["jac_sparsity"] = kron(block, identity(self.batch), format="csr")
        for a, b in itertools.pairwise(boundaries):
            self._evaluations = 0
            self._pace_time, self._segment_end = a, b
            bolus = (events.duration == 0) & (events.start == a)
            state[: self.n] += np.einsum("bd,di->ib", events.amount * bolus, dosed)
            active = (events.start <= a) & (events.end > a)
            rates = np.einsum("bd,di->ib", events.rate * active, dosed) if active.any() else None
            wanted = None
            if self.times is not None:
                last = b >= boundaries[-1]
                wanted = (self.times >= a) & ((self.times <= b) if last else (self.times < b))
                # The segment's end is always an output too: the next segment starts from it.
                options["t_eval"] = np.union1d(self.times[wanted], [b])
            solution = solve_ivp(self._rhs, (a, b), state.ravel(), method=self.method,
                                 dense_output=self.times is None, rtol=self._rtol, atol=self._atol,
                                 args=(rates,), **options)
            if solution.status != 0 or not np.all(np.isfinite(solution.y[:, -1])):
                raise SimulationError(f"the ODE solver failed between t = {a:g} h and t = {b:g} h: "
                                      f"{solution.message}")
            self.segments.append((a, b, solution.sol))
            if wanted is not None:
                if self._at_times is None:
                    self._at_times = np.empty((len(state), self.batch, len(self.times)))
                kept = np.isin(solution.t, self.times[wanted])
                self._at_times[:, :, wanted] = solution.y[:, kept].reshape(len(state), self.batch, -1)
            state = solution.y[:, -1].reshape(state.shape).copy()
        self._ends = np.array([b for _, b, _ in self.segments])
        self.final = state

    def _evaluate(self, times, left: bool = False) -> np.ndarray:
        """(n_components, batch, n_times) stacked solution at shared times (left limits at boundaries if ``left``)."""
        times = np.asarray(times, dtype=float)
        if times.ndim != 1:
            raise SimulationError("a nonlinear model is evaluated at times shared by all parameter sets")
        if times.size and (times.min() < self.start or times.max() > self.horizon * (1 + 1e-12)):
            raise SimulationError(f"times must lie within [{self.start:g}, {self.horizon:g}] h for this solution")
        if self.times is not None:
            index = np.searchsorted(self.times, times)
            if left or np.any(index >= len(self.times)) or np.any(self.times[np.minimum(index, len(self.times) - 1)]
                                                                   != times):
                raise SimulationError("this solution was computed at given times only; solve again without times")
            return self._at_times[:, :, index]
        out = np.empty((self.n + len(self.integrate), self.batch, times.size))
        # Right-continuous at dose times: a time on a boundary belongs to the segment that starts there
        # (or, for left limits, to the one that ends there).
        segment = np.minimum(np.searchsorted(self._ends, times, side="left" if left else "right"),
                             len(self.segments) - 1)
        for k in np.unique(segment):
            chosen = segment == k
            out[:, :, chosen] = self.segments[k][2](times[chosen]).reshape(-1, self.batch, chosen.sum())
        return out

    def states(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) amounts in each state (left limits at dose times if ``left``)."""
        return self._evaluate(times, left)[: self.n].transpose(1, 0, 2)

    def output_integrals(self, times) -> np.ndarray:
        """(batch, n_integrated, n_times) ∫ output(s) ds from ``start`` to t for the outputs in ``integrate``."""
        return self._evaluate(times)[self.n:].transpose(1, 0, 2)

    def inputs(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) infusion input rates at each time (right-continuous; left limits if ``left``)."""
        return infusion_inputs(self.events, np.asarray(times, dtype=float)[None], self.n, left)
