"""A solution in pieces: split at resets, steady-state doses and covariate changes.

Between two such times the model is solved as usual (exact linear solution, or the ODE solver) with
the covariates of that piece; the state is carried from the end of one piece to the start of the next,
returned to its initial condition at a reset, put at (SS=1) or raised by (SS=2) the steady state at a
steady-state dose.  An infusion running across a covariate change continues into the next piece; one
running at a reset is stopped there (a reset returns the whole system to its initial condition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koopnb.errors import SimulationError
from koopnb.model.codegen import CompiledModel
from koopnb.simulate.events import DoseEvents
from koopnb.simulate.linear import LinearSolution, finite_system_matrix
from koopnb.simulate.ode import OdeSolution
from koopnb.simulate.steady import linear_steady_state, ode_steady_state


@dataclass(frozen=True)
class Restart:
    """What happens at one piece boundary ``time`` (h): a reset, and steady-state doses in order."""

    time: float
    reset: bool
    steady: tuple[tuple[int, int, float], ...]  # (dose index, SS kind 1 or 2, interval h) recorded at this time
    args: list  # the argument vector in force on the piece that starts here
    record_args: list  # the argument vector at this instant (the history's rule): initial and steady states


@dataclass
class Piece:
    """One piece [start, end) and its solution; linear solutions run on local time t − start."""

    start: float
    end: float
    args: list
    solution: LinearSolution | OdeSolution
    shift: float


def piece_events(events: DoseEvents, start: float, end: float, since_reset: float) -> DoseEvents:
    """The doses acting on [start, end): those given since the last reset, bolus doses from ``start`` on,
    infusions still running at ``start`` cut to begin there (same rate).  Doses outside are zeroed."""
    bolus = events.duration == 0
    keep = (events.start >= since_reset) & (events.start < end) & np.where(bolus, events.start >= start,
                                                                           events.end > start)
    columns = keep.any(axis=0)
    keep = keep[:, columns]
    old_start, old_amount = events.start[:, columns], events.amount[:, columns]
    duration = events.duration[:, columns]
    new_start = np.maximum(old_start, start)
    new_duration = np.where(duration > 0, old_start + duration - new_start, 0.0)
    cut = old_start < new_start
    amount = np.where(cut, events.rate[:, columns] * new_duration, old_amount)
    return DoseEvents(np.where(keep, new_start, start), np.where(keep, amount, 0.0),
                      np.where(keep, new_duration, 0.0), events.state[columns])


class PiecewiseSolution:
    """The solution interface of LinearSolution / OdeSolution over several pieces (module docstring)."""

    def __init__(self, compiled: CompiledModel, events: DoseEvents, restarts: list[Restart], initial_of,
                 *, linear: bool, horizon: float, integrate: tuple[int, ...], options: dict, times=None):
        self.compiled, self.events = compiled, events
        self.exact = linear
        self.batch, self.n = events.start.shape[0], len(compiled.states)
        self.integrate = integrate
        self.pieces: list[Piece] = []
        state = None
        since_reset = 0.0
        ends = [r.time for r in restarts[1:]] + [np.inf]
        times = None if times is None else np.asarray(times, dtype=float)
        for restart, end in zip(restarts, ends, strict=True):
            if not linear and restart.time > horizon:
                break
            args = restart.args
            if state is None or restart.reset:
                state, since_reset = initial_of(restart.record_args), restart.time
            for j, kind, interval in restart.steady:
                dose = events.subset([j])
                if not linear and kind == 2:
                    raise SimulationError("an SS=2 dose adds a steady state to the current state, which is only "
                                          "right for linear models (superposition); this model is nonlinear")
                if linear:
                    steady = linear_steady_state(compiled, restart.record_args, dose, restart.time, interval)
                else:
                    steady = ode_steady_state(compiled, restart.record_args, initial_of(restart.record_args), dose,
                                              restart.time, interval, **options)
                if kind == 1:
                    state, since_reset = steady, restart.time
                else:
                    state = state + steady
            local = piece_events(events, restart.time, end, since_reset)
            if linear:
                shifted = DoseEvents(local.start - restart.time, local.amount, local.duration, local.state)
                matrix = finite_system_matrix(compiled, args, self.batch)
                solution = LinearSolution(compiled, args, matrix, state, shifted)
                piece = Piece(restart.time, end, args, solution, restart.time)
                if np.isfinite(end):
                    state = solution.states([end - restart.time], left=True)[:, :, 0]
            else:
                stop = min(end, horizon)
                wanted = None if times is None else times[(times >= restart.time) & (times <= stop)]
                solution = OdeSolution(compiled, args, state, local, stop, integrate, times=wanted,
                                       start=restart.time, **options)
                piece = Piece(restart.time, end, args, solution, 0.0)
                state = solution.final[: self.n].T
            self.pieces.append(piece)
        self.starts = np.array([p.start for p in self.pieces])
        if not linear and integrate:  # running integrals: each piece's own plus all pieces before it
            finals = [p.solution.final[self.n:].T for p in self.pieces[:-1]]
            self._integral_base = np.cumsum([np.zeros((self.batch, len(integrate))), *finals], axis=0)

    # -- evaluation ------------------------------------------------------------------------------
    def _which(self, times: np.ndarray, left: bool) -> np.ndarray:
        """Index of the piece each time belongs to (right-continuous, or left limits if ``left``)."""
        index = np.searchsorted(self.starts, times, side="left" if left else "right") - 1
        return np.clip(index, 0, len(self.pieces) - 1)

    def _gather(self, times, left: bool, evaluate) -> np.ndarray:
        """(batch, k, T) from ``evaluate(piece, local times, left)`` on the piece of each time."""
        times = np.asarray(times, dtype=float)
        which = self._which(times, left)
        result = None
        for q in np.unique(which):
            piece, chosen = self.pieces[q], which == q
            if times.ndim == 1:
                values = evaluate(piece, times[chosen] - piece.shift, left)
                if result is None:
                    result = np.empty((*values.shape[:2], times.size))
                result[..., chosen] = values
            else:  # per-set times (exact solution only): the columns where some set is in this piece
                columns = chosen.any(axis=0)
                inside = chosen[:, columns]
                values = evaluate(piece, np.where(inside, times[:, columns], piece.start) - piece.shift, left)
                if result is None:
                    result = np.empty((*values.shape[:2], times.shape[1]))
                result[:, :, columns] = np.where(inside[:, None], values, result[:, :, columns])
        return result

    def states(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) amounts in each state (left limits if ``left``)."""
        return self._gather(times, left, lambda p, t, side: p.solution.states(t, left=side))

    def inputs(self, times, left: bool = False) -> np.ndarray:
        """(batch, n_states, n_times) infusion input rates (infusions stopped at resets are off)."""
        return self._gather(times, left, lambda p, t, side: p.solution.inputs(t, left=side))

    def output_integrals(self, times) -> np.ndarray:
        """(batch, n_integrated, n_times) ∫₀ᵗ output for the integrated outputs (ODE pieces)."""
        times = np.asarray(times, dtype=float)
        which = self._which(times, left=True)  # an integral is continuous: the piece that ends at t will do
        result = np.empty((self.batch, len(self.integrate), times.size))
        for q in np.unique(which):
            chosen = which == q
            result[..., chosen] = (self.pieces[q].solution.output_integrals(times[chosen])
                                   + self._integral_base[q][:, :, None])
        return result

    def state_integrals_by_piece(self, t0: float, t1: float) -> list[tuple[list, np.ndarray, float]]:
        """For each piece overlapping [t0, t1] (linear pieces): (its arguments, ∫ states over the overlap
        (batch, n), the overlap's length in h)."""
        found = []
        for piece in self.pieces:
            a, b = max(t0, piece.start), min(t1, piece.end)
            if b <= a:
                continue
            totals = piece.solution.state_integrals([a - piece.shift, b - piece.shift])
            found.append((piece.args, totals[:, :, 1] - totals[:, :, 0], b - a))
        return found
