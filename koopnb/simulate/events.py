"""Dose events of a regimen resolved for one model and a batch of parameter sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from koopnb.errors import RegimenError, SimulationError
from koopnb.model.codegen import CompiledModel


@dataclass(frozen=True)
class DoseEvents:
    """Doses as the solvers use them.

    ``start`` and ``amount`` are (batch, n_doses): the dosing time plus the lag time, and the amount
    times the bioavailability, both of which may differ between parameter sets.  ``duration`` is 0 for
    a bolus; it may be given as (n_doses,) and is stored as (batch, n_doses), since a modelled infusion
    duration (or an infusion cut at a reset or covariate change) differs between parameter sets.
    ``state`` (n_doses,) is the index of the dosed state.
    """

    start: np.ndarray
    amount: np.ndarray
    duration: np.ndarray
    state: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration", np.broadcast_to(np.asarray(self.duration, dtype=float),
                                                             self.start.shape))

    @property
    def end(self) -> np.ndarray:
        """(batch, n_doses) end of each dose (equal to ``start`` for a bolus)."""
        return self.start + self.duration

    @property
    def rate(self) -> np.ndarray:
        """(batch, n_doses) infusion rate, amount per hour (0 for a bolus)."""
        infusion = self.duration > 0
        return np.where(infusion, self.amount / np.where(infusion, self.duration, 1.0), 0.0)

    @property
    def infusions(self) -> np.ndarray:
        """(n_doses,) whether a dose is an infusion for any parameter set."""
        return (self.duration > 0).any(axis=0)

    def breakpoints(self) -> np.ndarray:
        """(batch, k) times where the solution may have a kink or jump: dose starts and infusion ends."""
        return np.concatenate([self.start, self.end[:, self.infusions]], axis=1)

    def subset(self, doses: np.ndarray) -> DoseEvents:
        """The events of the chosen doses (indices or a mask over the doses)."""
        return DoseEvents(self.start[:, doses], self.amount[:, doses], self.duration[:, doses], self.state[doses])

    def rows(self, sets: np.ndarray) -> DoseEvents:
        """The events of the chosen parameter sets (indices or a mask over the batch)."""
        return DoseEvents(self.start[sets], self.amount[sets], self.duration[sets], self.state)


def dose_state(compiled: CompiledModel, default: str | None, cmt) -> tuple[int, bool]:
    """Index of the state a dose goes into, and whether it is the default dosing compartment.

    ``cmt`` is None (the model's ``dose`` state), a state name, or a NONMEM compartment number
    (1-based position among the states, as an int or a string of digits).
    """
    states = compiled.states
    if cmt is None:
        if default is None:
            raise RegimenError("the model has no 'dose' line, so each dose needs a compartment (cmt=STATE)")
        return states.index(default), True
    if isinstance(cmt, (int, np.integer)) or (isinstance(cmt, str) and cmt.isdigit()):
        number = int(cmt)
        if not 1 <= number <= len(states):
            raise RegimenError(f"dose compartment {number} does not exist; the model has {len(states)} states "
                               f"({', '.join(states)})")
        return number - 1, states[number - 1] == default
    if cmt not in states:
        hint = " ('iv' doses go into the state named 'central')" if cmt == "central" else ""
        raise RegimenError(f"dose compartment {cmt!r} is not a state of the model{hint}; "
                           f"the states are {', '.join(states)}")
    return states.index(cmt), cmt == default


def resolve_doses(compiled: CompiledModel, default: str | None, regimen, args: list[np.ndarray],
                  batch: int, groups: Sequence[tuple[np.ndarray, list[np.ndarray]]] | None = None) -> DoseEvents:
    """Turn a Regimen into DoseEvents for a batch; bioavailability, lag and a modelled duration apply to
    the default compartment.

    ``groups`` — for covariates that change over time — lists (dose indices, argument vector in force
    at those doses' times); by default every dose takes ``args``.
    """
    doses = list(regimen.doses) if regimen is not None else []
    n = len(doses)
    start = np.empty((batch, n))
    amount = np.empty((batch, n))
    duration = np.empty((batch, n))
    state = np.empty(n, dtype=int)
    for indices, values in groups if groups is not None else [(np.arange(n), args)]:
        if not len(indices):
            continue
        bioavailability = _checked(compiled.bioavailability(*values)[0], batch, "bioavailability")
        lag = _checked(compiled.lag(*values)[0], batch, "lag time")
        modelled = None
        modelled_duration = getattr(compiled, "dose_duration", None)
        for j in indices:
            dose = doses[j]
            index, is_default = dose_state(compiled, default, dose.cmt)
            state[j] = index
            start[:, j] = dose.time + (lag if is_default else 0.0)
            amount[:, j] = dose.amount * (bioavailability if is_default else 1.0)
            if dose.duration is not None:
                duration[:, j] = dose.duration
                continue
            if modelled_duration is None or not is_default:
                where = "the model gives no infusion duration (dose STATE duration=EXPR)" \
                    if modelled_duration is None else f"it goes into {compiled.states[index]!r}, not the " \
                    f"dose state {default!r} whose duration the model gives"
                raise SimulationError(f"the dose of {dose.amount:g} at t = {dose.time:g} h has a modelled "
                                      f"duration, but {where}")
            if modelled is None:
                modelled = _checked(modelled_duration(*values), batch, "infusion duration")
            duration[:, j] = modelled
    return DoseEvents(start=start, amount=amount, duration=duration, state=state)


def _checked(value, batch: int, what: str) -> np.ndarray:
    """A (batch,) finite, non-negative dosing quantity from the model, or a RegimenError naming it."""
    value = np.broadcast_to(np.asarray(value, dtype=float), (batch,))
    if np.any(value < 0) or not np.all(np.isfinite(value)):
        raise RegimenError(f"the {what} must be finite and non-negative for every parameter set")
    return value
