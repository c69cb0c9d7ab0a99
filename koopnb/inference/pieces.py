"""Predictions for a subject whose model arguments or state change between doses: the solution in pieces.

A covariate history (creatinine clearance measured each day), occasions with inter-occasion
variability (a new random effect on CL at each visit), resets (NONMEM EVID 3/4) and steady-state doses
(SS=1/SS=2) all change the system at known times.  The simulate layer's piecewise solution
(koopnb/simulate/piecewise.py) solves such a history: exactly for linear models, by the ODE solver
otherwise, the state carried from one piece to the next, returned to its initial condition at a reset,
put at (or raised by) the steady state at a steady-state dose.  Here each piece receives its own
argument vector: the parameters of the occasion in force (one vector per occasion and parameter set)
and the covariates of the piece.

Covariates follow the history's rule (contract 2, koopnb/covariates.py): the dynamics on a piece use
the value just after its start, a dose the value at its time, an observation the value at its time.
Occasion k holds from its start time (inclusive) until the next occasion starts; a dose takes the
parameters of the occasion in force at its time, an observation those of its own occasion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from koopnb.covariates import CovariateHistory
from koopnb.simulate.events import resolve_doses
from koopnb.simulate.piecewise import PiecewiseSolution, Restart


class PiecewiseSubject:
    """One subject's predictions of the fitted output at its observation times, solved in pieces.

    Everything that does not depend on the parameters — the piece boundaries, which occasion and
    covariate row hold on each piece, at each dose and at each observation — is worked out once here;
    :meth:`predict` then builds the argument vectors of a batch and runs one batched piecewise solve.
    """

    def __init__(self, stack, subject, *, rtol: float, atol: float):
        model, compiled = stack.model, stack.compiled
        self.model, self.compiled = model, compiled
        self.output, self.output_index = stack.output, stack._output_index
        self.options = {"rtol": rtol, "atol": atol, "method": "DOP853"}
        self.regimen, self.times = subject.regimen, subject.times
        names = tuple(model.covariates)
        if isinstance(subject.covariates, pd.DataFrame):
            history = CovariateHistory(subject.covariates[["TIME", *names]], subject.covariate_interpolation)
            self.covariate_rows = np.stack([history.values[name] for name in names], axis=1) if names else \
                np.zeros((len(history.times), 0))

            def rows(times, side="rule"):
                return history.rows(times, side)

            changes = history.change_times()
        else:
            self.covariate_rows = np.array([[subject.covariates[name] for name in names]]).reshape(1, len(names))

            def rows(times, side="rule"):
                return np.zeros(np.shape(times), dtype=int)

            changes = np.zeros(0)
        occasions = subject.occasions
        starts = occasions.starts if occasions is not None else np.zeros(1)

        def occasion(times):  # occasion k holds on [start_k, start_{k+1})
            return np.clip(np.searchsorted(starts, times, side="right") - 1, 0, None)

        doses = list(subject.regimen.doses)
        steady: dict[float, list[tuple[int, int, float]]] = {}
        for j, dose in enumerate(doses):
            if dose.steady_state:
                steady.setdefault(dose.time, []).append((j, dose.steady_state, dose.interval))
        resets = set(subject.regimen.resets)
        cuts = sorted({0.0, *resets, *steady, *(float(t) for t in changes if t > 0),
                       *(float(t) for t in starts[1:] if t > 0)})
        # (time, reset, steady doses, (occasion, covariate row) on the piece, (occasion, row) at the record time)
        self.restarts = [(t, t in resets, tuple(steady.get(t, ())), (int(occasion(t)), int(rows(t, "right"))),
                          (int(occasion(t)), int(rows(t)))) for t in cuts]
        dose_times = np.array([dose.time for dose in doses])
        keys = list(zip(occasion(dose_times).tolist(), rows(dose_times).tolist(), strict=True))
        self.dose_groups = {key: np.array([j for j, k in enumerate(keys) if k == key]) for key in dict.fromkeys(keys)}
        self.observation_occasion = occasions.of_observations if occasions is not None else \
            np.zeros(self.times.size, dtype=int)
        self.observation_rows = rows(self.times)

    def predict(self, parameters: np.ndarray) -> np.ndarray:
        """(batch, n_obs) predictions for ``parameters`` (batch, n_occasions, n_parameters)."""
        compiled, batch = self.compiled, len(parameters)

        def arguments(key) -> list[np.ndarray]:
            occasion, row = key
            return [*parameters[:, occasion].T, *(np.full(batch, c) for c in self.covariate_rows[row])]

        groups = [(indices, arguments(key)) for key, indices in self.dose_groups.items()]
        events = resolve_doses(compiled, self.model.dose_state, self.regimen, arguments((0, 0)), batch, groups)
        restarts = [Restart(time, reset, steady, arguments(piece), arguments(record))
                    for time, reset, steady, piece, record in self.restarts]
        solution = PiecewiseSolution(compiled, events, restarts, lambda args: self._initial(args, batch),
                                     linear=compiled.is_linear, horizon=float(self.times.max()), integrate=(),
                                     options=self.options, times=self.times)
        states = solution.states(self.times)  # (batch, n_states, n_obs)
        if self.output_index is None:
            return states[:, compiled.states.index(self.output)]
        values = parameters[:, self.observation_occasion]  # (batch, n_obs, n_parameters)
        covariates = self.covariate_rows[self.observation_rows]  # (n_obs, n_covariates)
        args = [*values.transpose(2, 0, 1), *(np.broadcast_to(c, values.shape[:2]) for c in covariates.T)]
        outputs = compiled.output_values.raw(self.times, *states.transpose(1, 0, 2), *args)[self.output_index]
        return np.broadcast_to(outputs, states[:, 0].shape)

    def _initial(self, args: list[np.ndarray], batch: int) -> np.ndarray:
        """(batch, n_states) the model's initial condition for the argument vector ``args``."""
        if not self.compiled.states:
            return np.zeros((batch, 0))
        return np.stack([np.broadcast_to(v, (batch,)) for v in self.compiled.initial(*args)], axis=1).astype(float)
