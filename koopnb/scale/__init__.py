"""Many patients at once: a ward's TDM run, a dosing nomogram, a virtual trial — in-process or on Dask."""

from koopnb.scale.cohort import cohort
from koopnb.scale.nomogram import nomogram
from koopnb.scale.trial import virtual_trial
from koopnb.scale.ward import simulate_ward

__all__ = ["cohort", "nomogram", "simulate_ward", "virtual_trial"]
