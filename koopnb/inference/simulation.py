"""Predictions at every subject's observation times for a batch of (subject, parameter set) rows.

A fit evaluates the model thousands of times, so everything that does not depend on the parameters
is worked out once here: each subject's doses are laid out in shared *dose slots* (one slot per
compartment × duration × order of the dose within the subject, amount 0 where a subject has fewer
doses), observation times are padded to a common length, covariates are stacked.  One call then
solves every row — walkers × subjects × finite-difference points — in a single batched solve: the
exact linear solution evaluated at each row's own times, or one stacked ODE solve evaluated at the
union of the observation times.

Most PK models are linear with blocks of at most two states and a concentration output; for them the
predictions come from closed-form impulse responses (:class:`ClosedForm`, built on
koopnb/model/modal.py) with the time since each dose laid out once, and only the parameter sets the
closed form cannot take (nearly equal or complex eigenvalues) go to the general solver.  On the small
batches of an individual fit that is about three times cheaper per call.

A subject whose model arguments or state change between doses — a covariate history, several
occasions with inter-occasion variability, resets, steady-state doses, modelled infusion durations —
is left out of that layout and solved in pieces by the simulate layer (koopnb/inference/pieces.py),
one batched solve per subject; nothing about such a subject is reduced to a single value.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from koopnb.errors import FitError, KoopnbError, SimulationError
from koopnb.inference.pieces import PiecewiseSubject
from koopnb.model.modal import ImpulseResponses, impulse_responses
from koopnb.simulate.events import DoseEvents, dose_state
from koopnb.simulate.linear import CONFLUENT_GAP, LinearSolution, phi1, system_matrix
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
        self._output_index = self.compiled.outputs.index(output) if output in self.compiled.outputs else None
        # Subjects whose arguments or state change between doses (covariate histories, occasions, resets,
        # steady-state doses) are solved piece by piece; the layout below leaves them out.
        self.piecewise = {i: PiecewiseSubject(self, s, rtol=rtol, atol=atol)
                          for i, s in enumerate(self.subjects) if s.changes_with_time}
        self._lay_out_doses()
        self._lay_out_observations()
        # NaN for the piecewise subjects: their covariates are histories, read by PiecewiseSubject only.
        self.covariates = np.array([[np.nan if i in self.piecewise else s.covariates[name] for name in model.covariates]
                                    for i, s in enumerate(self.subjects)],
                                   dtype=float).reshape(len(self.subjects), len(model.covariates))
        self._zero_initial = all(expr == 0 for expr in model.spec.initial.values())
        dose = model.spec.dose
        # Constant lag and bioavailability (the usual case): every subject's dose starts and amounts
        # are fixed, so they are laid out once here rather than on every call.
        self._constant_dosing = dose is None or (dose.lag.is_number and dose.bioavailability.is_number)
        if self._constant_dosing:
            lag = float(dose.lag) if dose is not None else 0.0
            bioavailability = float(dose.bioavailability) if dose is not None else 1.0
            if not (np.isfinite(lag) and lag >= 0 and np.isfinite(bioavailability) and bioavailability >= 0):
                raise FitError(f"the dose line gives lag={lag:g} and bioavailability={bioavailability:g}; "
                               "both must be finite and non-negative")
            self._start = self.slot_time + lag * self.slot_default
            self._amount = self.slot_amount * np.where(self.slot_default, bioavailability, 1.0)
        plain = len(self.piecewise) < len(self.subjects)
        self.closed_form = ClosedForm.for_fit(self) if plain and self._constant_dosing and self._zero_initial else None

    def _lay_out_doses(self) -> None:
        kinds = []
        for i, subject in enumerate(self.subjects):
            counts: Counter = Counter()
            rows = []
            for dose in () if i in self.piecewise else subject.regimen.doses:
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
        (batch, n_parameters) in ``model.parameters`` order — or (batch, n_occasions, n_parameters), one
        vector per occasion, with inter-occasion variability.  Rows the simulator cannot solve are NaN.
        """
        per_occasion = parameters if parameters.ndim == 3 else parameters[:, None]
        if not self.piecewise:
            return self._predict_together(rows, per_occasion[:, 0])
        values = np.empty((len(rows), self.times.shape[1]))
        special = np.isin(rows, list(self.piecewise))
        if not special.all():
            values[~special] = self._predict_together(rows[~special], per_occasion[~special, 0])
        for i in np.unique(rows[special]):  # a loop over subjects; each is one batch over the parameter sets
            chosen = rows == i
            n = self.subjects[i].times.size
            try:
                with np.errstate(all="ignore"):
                    predicted = self.piecewise[i].predict(per_occasion[chosen])
            except (SimulationError, np.linalg.LinAlgError, ValueError, FloatingPointError):
                predicted = np.full((chosen.sum(), n), np.nan)
            values[chosen, :n] = predicted
            values[chosen, n:] = predicted[:, -1:]  # padding, masked by ``used``
        return values

    def _predict_together(self, rows: np.ndarray, parameters: np.ndarray) -> np.ndarray:
        """Predictions of the subjects laid out together (no change between doses), one batched solve."""
        args = self.arguments(rows, parameters)
        try:
            with np.errstate(all="ignore"):
                if self.closed_form is None:
                    return self._solve(rows, args)
                values, usable = self.closed_form(rows, args)
                if not usable.all():  # near-equal eigenvalues and the like: the general solver
                    other = ~usable
                    values[other] = self._solve(rows[other], [a[other] for a in args])
                return values
        except (SimulationError, np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.full((len(rows), self.times.shape[1]), np.nan)

    def arguments(self, rows: np.ndarray, parameters: np.ndarray) -> list[np.ndarray]:
        """The compiled functions' argument vector: one (batch,) array per parameter, then per covariate."""
        args = list(parameters.T)
        if self.covariates.shape[1]:
            args += list(self.covariates[rows].T)
        return args

    def _solve(self, rows: np.ndarray, args: list[np.ndarray]) -> np.ndarray:
        compiled, batch = self.compiled, len(rows)
        if self._constant_dosing:
            valid = None
            start, amount = self._start[rows], self._amount[rows]
        else:
            lag = np.broadcast_to(compiled.lag(*args)[0], (batch,))
            bioavailability = np.broadcast_to(compiled.bioavailability(*args)[0], (batch,))
            valid = np.isfinite(lag) & (lag >= 0) & np.isfinite(bioavailability) & (bioavailability >= 0)
            lag = np.where(valid, lag, 0.0)
            start = self.slot_time[rows] + lag[:, None] * self.slot_default
            amount = self.slot_amount[rows] * np.where(self.slot_default, bioavailability[:, None], 1.0)
        events = DoseEvents(start=start, amount=amount, duration=self.slot_duration, state=self.slot_state)
        n = len(compiled.states)
        if self._zero_initial:
            initial = np.zeros((batch, n))
        else:
            initial = np.stack([np.broadcast_to(v, (batch,)) for v in compiled.initial(*args)], axis=1)
        if compiled.is_linear:
            times = self.times[rows]
            solution = LinearSolution(compiled, args, system_matrix(compiled, args, batch), initial, events)
            states = solution.states(times)
        else:
            times = self.union
            solution = OdeSolution(compiled, args, initial, events, self.horizon, (),
                                   rtol=self.rtol, atol=self.atol, method="DOP853")
            states = solution.states(times)
        if self._output_index is None:
            values = states[:, compiled.states.index(self.output)]
        else:
            broadcast = [a[:, None] for a in args]
            values = compiled.output_values.raw(times, *states.transpose(1, 0, 2), *broadcast)[self._output_index]
            values = np.broadcast_to(values, states[:, 0].shape)  # a no-op unless the output is constant
        if not compiled.is_linear:
            values = np.take_along_axis(values, self.union_index[rows], axis=1)
        return values if valid is None else np.where(valid[:, None], values, np.nan)


class ClosedForm:
    """Predictions of a linear model from its closed-form impulse responses (koopnb/model/modal.py).

    Everything about the doses and observation times is laid out once per subject: for boluses the
    time since each dose τ and its amount where it has been given; for infusions the time it has run
    (at most its duration), the time since it ended, and its rate.  The prediction at an observation
    time is then c₀ + Σ_k Σ_doses c_k · amount · e^{λ_k τ} for boluses, plus
    c_k · rate · e^{λ_k τ_after} τ_run φ₁(λ_k τ_run) for infusions: a handful of array operations for
    the whole batch.
    """

    def __init__(self, responses: ImpulseResponses, stack: StackedSubjects):
        self.responses = responses
        index = {state: i for i, state in enumerate(responses.dosed)}
        since = stack.times[:, :, None] - stack._start[:, None, :]  # (subjects, T, slots)
        given = since >= 0
        bolus = stack.slot_duration == 0
        self.bolus = np.array([index[s] for s in stack.slot_state[bolus]], dtype=int)
        self.bolus_elapsed = np.where(given, since, 0.0)[..., bolus]
        self.bolus_weight = (stack._amount[:, None, :] * given)[..., bolus]
        infusion = ~bolus
        self.infusion = np.array([index[s] for s in stack.slot_state[infusion]], dtype=int)
        duration = stack.slot_duration[infusion]
        self.infusion_running = np.clip(since[..., infusion], 0.0, duration)
        self.infusion_after = np.maximum(since[..., infusion] - duration, 0.0)
        self.infusion_weight = (stack._amount[:, None, :] * given)[..., infusion] / np.where(duration > 0, duration, 1)
        self.times = stack.times.shape[1]
        # One subject (an individual fit): its layout (T, doses) broadcasts over the rows, not copied.
        self.single = len(stack.subjects) == 1
        self.contraction = "kdb,td,kbtd->bt" if self.single else "kdb,btd,kbtd->bt"
        if self.single:
            for name in ("bolus_elapsed", "bolus_weight", "infusion_running", "infusion_after", "infusion_weight"):
                setattr(self, name, getattr(self, name)[0])

    @classmethod
    def for_fit(cls, stack: StackedSubjects) -> ClosedForm | None:
        """The closed form for this fit's output and dosed states, or None when the model has none."""
        dosed = sorted(set(stack.slot_state.tolist()))
        responses = impulse_responses(stack.compiled, stack.output, dosed)
        return None if responses is None else cls(responses, stack)

    def __call__(self, rows: np.ndarray, args: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (batch, T) and where they are valid (batch,); invalid rows hold garbage."""
        lam, gaps, checks, coefficients, offset = self.responses.evaluate(args, len(rows))
        # The closed form needs what the general solver checks: eigenvalues apart by more than its
        # confluence gap and, for two-state blocks, a real spectrum with a non-positive trace.
        usable = (np.abs(gaps) > CONFLUENT_GAP * np.abs(lam).max(axis=0)).all(axis=0)
        if checks.size:
            usable &= (checks[0::2] <= 0).all(axis=0) & (checks[1::2] >= 0).all(axis=0)
        rate = lam[:, :, None, None]
        if self.bolus.size:
            elapsed, weight = (self.bolus_elapsed, self.bolus_weight) if self.single else \
                (self.bolus_elapsed[rows], self.bolus_weight[rows])
            values = np.einsum(self.contraction, coefficients[:, self.bolus], weight, np.exp(rate * elapsed))
        else:
            values = np.zeros((len(rows), self.times))
        if self.responses.has_offset:
            values += offset[:, None]
        if self.infusion.size:
            running, after, weight = (self.infusion_running, self.infusion_after, self.infusion_weight) \
                if self.single else (self.infusion_running[rows], self.infusion_after[rows], self.infusion_weight[rows])
            modes = np.exp(rate * after) * running * phi1(rate * running)
            values += np.einsum(self.contraction, coefficients[:, self.infusion], weight, modes)
        return values, usable
