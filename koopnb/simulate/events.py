"""Dose events of a regimen resolved for one model and a batch of parameter sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from koopnb.errors import RegimenError, SimulationError
from koopnb.model.codegen import CompiledModel


@dataclass(frozen=True)
class DoseEvents:
    """Doses as the solvers use them.

    ``start`` and ``amount`` are (batch, n_doses): the dosing time plus the lag time, and the amount
    times the bioavailability, both of which may differ between parameter sets.  ``duration`` (n_doses,)
    is 0 for a bolus; ``state`` (n_doses,) is the index of the dosed state.
    """

    start: np.ndarray
    amount: np.ndarray
    duration: np.ndarray
    state: np.ndarray

    @property
    def end(self) -> np.ndarray:
        """(batch, n_doses) end of each dose (equal to ``start`` for a bolus)."""
        return self.start + self.duration

    @property
    def rate(self) -> np.ndarray:
        """(batch, n_doses) infusion rate, amount per hour (0 for a bolus)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.duration > 0, self.amount / np.where(self.duration > 0, self.duration, 1), 0.0)

    def breakpoints(self) -> np.ndarray:
        """(batch, k) times where the solution may have a kink or jump: dose starts and infusion ends."""
        return np.concatenate([self.start, self.end[:, self.duration > 0]], axis=1)


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
                  batch: int) -> DoseEvents:
    """Turn a Regimen into DoseEvents for a batch; bioavailability and lag apply to the default compartment."""
    doses = list(regimen.doses) if regimen is not None else []
    if any(d.steady_state or d.duration is None for d in doses) or (regimen is not None and regimen.resets):
        raise SimulationError("steady-state doses, modelled durations and resets are not simulated yet")
    n = len(doses)
    bioavailability = np.broadcast_to(compiled.bioavailability(*args)[0], (batch,))
    lag = np.broadcast_to(compiled.lag(*args)[0], (batch,))
    if np.any(lag < 0) or not np.all(np.isfinite(lag)):
        raise RegimenError("the lag time must be finite and non-negative for every parameter set")
    if np.any(bioavailability < 0) or not np.all(np.isfinite(bioavailability)):
        raise RegimenError("the bioavailability must be finite and non-negative for every parameter set")
    start = np.empty((batch, n))
    amount = np.empty((batch, n))
    state = np.empty(n, dtype=int)
    duration = np.empty(n)
    for j, dose in enumerate(doses):
        index, is_default = dose_state(compiled, default, dose.cmt)
        state[j] = index
        duration[j] = dose.duration
        start[:, j] = dose.time + (lag if is_default else 0.0)
        amount[:, j] = dose.amount * (bioavailability if is_default else 1.0)
    return DoseEvents(start=start, amount=amount, duration=duration, state=state)
