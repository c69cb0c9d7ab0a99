"""Predictions at every subject's observation times for a batch of (subject, parameter set) rows.

A fit evaluates the model thousands of times, so everything that does not depend on the parameters
is worked out once here: each subject's doses are laid out in shared *dose slots* (one slot per
compartment × duration × order of the dose within the subject, amount 0 where a subject has fewer
doses), observation times are padded to a common length, covariates are stacked.  One call then
solves every row — walkers × subjects × finite-difference points — in a single batched solve: the
exact linear solution evaluated at each row's own times, or one stacked ODE solve evaluated at the
union of the observation times.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from koopnb.errors import FitError, KoopnbError, SimulationError
from koopnb.simulate.events import DoseEvents, dose_state
from koopnb.simulate.linear import LinearSolution
from koopnb.simulate.ode import OdeSolution


class StackedSubjects:
    """The fixed structure of a fit: doses, observation times and covariates of each subject.

    ``times``, ``values``, ``below`` and ``used`` are (n_subjects, n_max) with padding masked out
    by ``used``.  :meth:`predict` maps rows to predictions of ``output``.
    """

    def __init__(self, model, subjects, output: str, *, rtol: float = 1e-8, atol: float = 1e-10):
        self.model = model
        self.compiled = model.compiled
        self.subjects = list(subjects)
        self.output = output
        self.rtol, self.atol = rtol, atol
        if output not in self.compiled.outputs and output not in self.compiled.states:
            raise FitError(f"{output!r} is not an output of the model; the outputs are "
                           f"{', '.join(self.compiled.outputs)}")
        self._lay_out_doses()
        self._lay_out_observations()
        dose = model.spec.dose
        # Constant lag and bioavailability (the usual case) are evaluated once, not on every call.
        self._constant_dosing = dose is None or (dose.lag.is_number and dose.bioavailability.is_number)
        self._lag = float(dose.lag) if dose is not None and dose.lag.is_number else 0.0
        self._bioavailability = float(dose.bioavailability) if dose is not None and dose.bioavailability.is_number \
            else 1.0
        self.covariates = np.array([[s.covariates[name] for name in model.covariates] for s in self.subjects],
                                   dtype=float).reshape(len(self.subjects), len(model.covariates))

    def _lay_out_doses(self) -> None:
        kinds = []
        for subject in self.subjects:
            counts: Counter = Counter()
            rows = []
            for dose in subject.regimen.doses:
                try:
                    state, default = dose_state(self.compiled, self.model.dose_state, dose.cmt)
                except KoopnbError as error:
                    raise FitError(f"subject {subject.id!r}: {error}") from None
                key = (state, default, float(dose.duration))
                rows.append((key, counts[key], dose.time, dose.amount))
                counts[key] += 1
            kinds.append(rows)
        slots = sorted({(key, k) for rows in kinds for key, k, _, _ in rows})
        index = {slot: i for i, slot in enumerate(slots)}
        self.slot_state = np.array([key[0] for key, _ in slots], dtype=int)
        self.slot_default = np.array([key[1] for key, _ in slots], dtype=bool)
        self.slot_duration = np.array([key[2] for key, _ in slots], dtype=float)
        self.slot_time = np.zeros((len(self.subjects), len(slots)))
        self.slot_amount = np.zeros((len(self.subjects), len(slots)))
        for i, rows in enumerate(kinds):
            for key, k, time, amount in rows:
                self.slot_time[i, index[(key, k)]] = time
                self.slot_amount[i, index[(key, k)]] = amount

    def _lay_out_observations(self) -> None:
        n_max = max(s.times.size for s in self.subjects)
        shape = (len(self.subjects), n_max)
        self.times = np.zeros(shape)
        self.values = np.ones(shape)
        self.below = np.zeros(shape, dtype=bool)
        self.used = np.zeros(shape, dtype=bool)
        for i, s in enumerate(self.subjects):
            n = s.times.size
            self.times[i, :n], self.values[i, :n], self.below[i, :n], self.used[i, :n] = s.times, s.values, s.below, 1
            self.times[i, n:] = s.times[-1]
        self.union, inverse = np.unique(self.times, return_inverse=True)
        self.union_index = inverse.reshape(shape)
        self.horizon = float(self.times.max())

    def predict(self, rows: np.ndarray, parameters: np.ndarray) -> np.ndarray:
        """Predictions (batch, n_max) for subject indices ``rows`` (batch,) and ``parameters``
        (batch, n_parameters) in ``model.parameters`` order.  Rows the simulator cannot solve are NaN.
        """
        args = [parameters[:, j] for j in range(parameters.shape[1])]
        args += [self.covariates[rows, c] for c in range(self.covariates.shape[1])]
        try:
            with np.errstate(all="ignore"):
                return self._solve(rows, args)
        except (SimulationError, np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.full((len(rows), self.times.shape[1]), np.nan)

    def _solve(self, rows: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
        compiled, batch = self.compiled, len(rows)
        if self._constant_dosing:
            lag = np.full(batch, self._lag)
            bioavailability = np.full(batch, self._bioavailability)
        else:
            lag = np.broadcast_to(compiled.lag(*args)[0], (batch,))
            bioavailability = np.broadcast_to(compiled.bioavailability(*args)[0], (batch,))
        valid = np.isfinite(lag) & (lag >= 0) & np.isfinite(bioavailability) & (bioavailability >= 0)
        lag = np.where(valid, lag, 0.0)
        start = self.slot_time[rows] + lag[:, None] * self.slot_default
        amount = self.slot_amount[rows] * np.where(self.slot_default, bioavailability[:, None], 1.0)
        events = DoseEvents(start=start, amount=amount, duration=self.slot_duration, state=self.slot_state)
        n = len(compiled.states)
        initial = np.stack([np.broadcast_to(v, (batch,)) for v in compiled.initial(*args)], axis=1)
        if compiled.is_linear:
            matrix = np.stack(compiled.matrix(*args), axis=-1).reshape(batch, n, n)
            times = self.times[rows]
            states = LinearSolution(compiled, args, matrix, initial, events).states(times)
        else:
            times = self.union
            solution = OdeSolution(compiled, args, initial, events, self.horizon, (),
                                   rtol=self.rtol, atol=self.atol, method="DOP853")
            states = solution.states(times)
        if self.output in compiled.states:
            values = states[:, compiled.states.index(self.output)]
        else:
            broadcast = [a[:, None] for a in args]
            values = np.asarray(compiled.output_values(times, *states.transpose(1, 0, 2), *broadcast)
                                [compiled.outputs.index(self.output)])
        if not compiled.is_linear:
            values = np.take_along_axis(values, self.union_index[rows], axis=1)
        return np.where(valid[:, None], values, np.nan)
