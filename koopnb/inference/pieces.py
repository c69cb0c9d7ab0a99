"""Predictions for a subject whose model arguments change with time: the solution split into pieces.

A covariate history (creatinine clearance measured each day), occasions with inter-occasion
variability (a new random effect on CL at each visit) and resets (NONMEM EVID 3/4) all make the
system change at known times.  Between two such times the arguments of the model are constant, so
each piece is solved as usual — exactly for linear models (the system matrix is constant on the
piece), by the ODE solver otherwise — starting from the state at the end of the previous piece.

Covariates follow contract 2 of the project (NONMEM's rule by default): with ``"nocb"`` the value on
row k of the history holds on (t_{k-1}, t_k]; with ``"locf"`` on [t_k, t_{k+1}); the first row's value
holds before the first row and the last row's after the last.  The dynamics on a piece use the value
on its open interval; an observation at time t uses the value at t.  Occasion k holds from its start
time until the next occasion starts; each observation is evaluated with the parameters of its own
occasion.  At a reset the state returns to the model's initial condition and infusions still running
stop (NONMEM's EVID 3 resets the whole system).

Everything that does not depend on the parameters — the cut times, which doses fall in which piece,
the covariate values — is laid out once; :meth:`PiecewiseSubject.predict` then runs one batched solve
per piece for every row (walker, optimiser point) at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from koopnb.errors import FitError
from koopnb.model.spec import TIME
from koopnb.simulate.events import DoseEvents, dose_state
from koopnb.simulate.linear import LinearSolution, system_matrix
from koopnb.simulate.ode import OdeSolution

RULES = ("nocb", "locf")
"""Covariate interpolation rules: next observation carried backward (NONMEM), last observation carried forward."""


def covariate_history(covariates, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(times (m,), values (m, n_covariates))`` of a subject's covariates, in ``names`` order.

    ``covariates`` is a dict of constants (one row at time 0) or a DataFrame with a TIME column and
    one column per covariate (constants broadcast over its rows).
    """
    if not isinstance(covariates, pd.DataFrame):
        return np.zeros(1), np.array([[float(covariates[name]) for name in names]]).reshape(1, len(names))
    times = covariates["TIME"].to_numpy(dtype=float)
    return times, covariates[list(names)].to_numpy(dtype=float).reshape(len(times), len(names))


def values_after(times: np.ndarray, values: np.ndarray, at: np.ndarray, rule: str) -> np.ndarray:
    """(len(at), c) covariate values on the open interval just after each time of ``at``."""
    index = np.searchsorted(times, at, side="right") - (rule == "locf")
    return values[np.clip(index, 0, len(times) - 1)]


def values_at(times: np.ndarray, values: np.ndarray, at: np.ndarray, rule: str) -> np.ndarray:
    """(len(at), c) covariate values at the times ``at`` (row k's value at t_k under either rule)."""
    index = np.searchsorted(times, at, side="left") if rule == "nocb" else np.searchsorted(times, at, "right") - 1
    return values[np.clip(index, 0, len(times) - 1)]


class PiecewiseSubject:
    """One subject's predictions at its observation times, solved piece by piece.

    ``parameters`` of :meth:`predict` are (batch, n_occasions, n_parameters): one parameter vector per
    occasion (a subject without occasions has one).  Built by :class:`StackedSubjects` for the subjects
    the one-piece layout cannot take.
    """

    def __init__(self, stack, subject, rule: str, *, rtol: float, atol: float):
        model, compiled = stack.model, stack.compiled
        self.compiled, self.output_index, self.output = compiled, stack._output_index, stack.output
        self.rtol, self.atol = rtol, atol
        who = f"subject {subject.id!r}" if subject.id is not None else "the patient"
        spec = model.spec
        if any(TIME in expr.free_symbols for expr in [*spec.derived.values(), *spec.rhs.values()]):
            raise FitError(f"{who} has covariates or parameters that change with time, and the model uses t "
                           "explicitly; such a model cannot be split at the change times")
        dose = spec.dose
        if dose is not None and not dose.lag.is_number:
            raise FitError(f"{who} has covariates or parameters that change with time; a lag time that depends "
                           "on them is not supported there (give a constant lag)")
        self.lag = float(dose.lag) if dose is not None else 0.0
        cov_times, cov_values = covariate_history(subject.covariates, tuple(model.covariates))
        occasions = subject.occasions
        starts = occasions.starts if occasions is not None else np.zeros(1)
        resets = np.asarray(getattr(subject.regimen, "resets", ()), dtype=float)
        changes = cov_times[:-1] if rule == "nocb" else cov_times[1:]
        cuts = np.unique(np.concatenate([[0.0], changes, starts[1:], resets]))
        self.cuts = cuts[cuts >= 0]
        self.reset = np.isin(self.cuts, resets)
        self.n_pieces = len(self.cuts)
        self.piece_covariates = values_after(cov_times, cov_values, self.cuts, rule)  # (pieces, c)
        self.piece_occasion = np.clip(np.searchsorted(starts, self.cuts, side="right") - 1, 0, None)
        times = subject.times
        self.times = times
        self.observation_covariates = values_at(cov_times, cov_values, times, rule)  # (T, c)
        self.observation_occasion = (occasions.of_observations if occasions is not None
                                     else np.zeros(times.size, dtype=int))
        self.observation_piece = np.searchsorted(self.cuts, times, side="right") - 1
        self._lay_out_doses(stack, subject)

    def _lay_out_doses(self, stack, subject) -> None:
        """Which dose (or what remains of an infusion) each piece receives, at which offset from its start."""
        self.dose_state, self.dose_default, self.dose_piece = [], [], []
        self.pieces: list[list[tuple[int, float, float, float]]] = [[] for _ in range(self.n_pieces)]
        for j, dose in enumerate(subject.regimen.doses):
            state, default = dose_state(self.compiled, stack.model.dose_state, dose.cmt)
            start = dose.time + (self.lag if default else 0.0)
            first = int(np.searchsorted(self.cuts, start, side="right") - 1)
            self.dose_state.append(state)
            self.dose_default.append(default)
            self.dose_piece.append(first)
            duration = float(dose.duration)
            self.pieces[first].append((j, start - self.cuts[first], duration, 1.0))
            end = start + duration
            # An infusion running across later cuts continues in each piece it reaches, unless a reset stops it.
            for piece in range(first + 1, self.n_pieces):
                if self.cuts[piece] >= end or self.reset[piece]:
                    break
                remaining = end - self.cuts[piece]
                self.pieces[piece].append((j, 0.0, remaining, remaining / duration))
        self.amounts = np.array([dose.amount for dose in subject.regimen.doses], dtype=float)

    def predict(self, parameters: np.ndarray) -> np.ndarray:
        """(batch, n_obs) predictions of the fitted output for ``parameters`` (batch, n_occasions, n_parameters)."""
        compiled = self.compiled
        batch = len(parameters)
        n = len(compiled.states)

        def arguments(occasion, covariates) -> list[np.ndarray]:
            values = parameters[:, occasion]  # (batch, n_parameters)
            return [*values.T, *(np.full(batch, c) for c in covariates)]

        piece_args = [arguments(self.piece_occasion[p], self.piece_covariates[p]) for p in range(self.n_pieces)]
        # Bioavailability is that of the piece in which each dose is given (it may depend on parameters).
        amounts = np.empty((batch, len(self.amounts)))
        for j, piece in enumerate(self.dose_piece):
            factor = np.broadcast_to(compiled.bioavailability(*piece_args[piece])[0], (batch,)) \
                if self.dose_default[j] else 1.0
            amounts[:, j] = self.amounts[j] * factor
        states = np.empty((batch, n, self.times.size))
        state = None
        for p in range(self.n_pieces):
            args = piece_args[p]
            if state is None or self.reset[p]:
                state = np.stack([np.broadcast_to(v, (batch,)) for v in compiled.initial(*args)], axis=1) \
                    if n else np.zeros((batch, 0))
            entries = self.pieces[p]
            index = np.array([j for j, *_ in entries], dtype=int)
            events = DoseEvents(
                start=np.broadcast_to(np.array([offset for _, offset, _, _ in entries]), (batch, len(entries))),
                amount=amounts[:, index] * np.array([share for *_, share in entries]),
                duration=np.array([duration for _, _, duration, _ in entries]),
                state=np.array([self.dose_state[j] for j in index], dtype=int))
            observed = np.flatnonzero(self.observation_piece == p)
            last = p == self.n_pieces - 1
            wanted = self.times[observed] - self.cuts[p]
            if not last:
                wanted = np.append(wanted, self.cuts[p + 1] - self.cuts[p])
            if wanted.size == 0:
                continue
            solved = self._solve(args, state, events, wanted)
            states[:, :, observed] = solved[:, :, :observed.size]
            if not last:
                state = solved[:, :, -1]
        return self._outputs(parameters, states)

    def _solve(self, args, initial: np.ndarray, events: DoseEvents, times: np.ndarray) -> np.ndarray:
        """(batch, n_states, len(times)) states at ``times`` (h after the piece starts, ascending)."""
        compiled = self.compiled
        if compiled.is_linear:
            solution = LinearSolution(compiled, args, system_matrix(compiled, args, len(initial)), initial, events)
            return solution.states(times)
        if times.max() == 0:  # only the start of the piece is asked for: the state plus the boluses given there
            bolus = (events.duration == 0) & (events.start == 0)
            given = np.einsum("bd,di->bi", events.amount * bolus, np.eye(initial.shape[1])[events.state])
            return np.repeat((initial + given)[:, :, None], times.size, axis=2)
        solution = OdeSolution(compiled, args, initial, events, float(times.max()), (), rtol=self.rtol,
                               atol=self.atol, method="DOP853", times=times)
        return solution.states(times)

    def _outputs(self, parameters: np.ndarray, states: np.ndarray) -> np.ndarray:
        compiled = self.compiled
        if self.output_index is None:
            return states[:, compiled.states.index(self.output)]
        values = parameters[:, self.observation_occasion]  # (batch, T, n_parameters)
        args = [*values.transpose(2, 0, 1), *(np.broadcast_to(c, values.shape[:2])
                                              for c in self.observation_covariates.T)]
        outputs = compiled.output_values.raw(self.times, *states.transpose(1, 0, 2), *args)[self.output_index]
        return np.broadcast_to(outputs, states[:, 0].shape)
