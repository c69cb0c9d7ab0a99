"""Clinical limits on a dosing regimen: infusion rate, single and daily dose, and a safety limit.

A :class:`Constraints` object says what a recommended regimen must respect; the optimisers
(:func:`koopnb.optimize_dose`, :func:`koopnb.optimize_regimen`) never recommend a regimen that breaks one.
Amounts are in the regimen's unit (koopnb never converts units), rates in that unit per hour, times in hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from koopnb.errors import KoopnbError
from koopnb.metrics import Window
from koopnb.regimen import Regimen

DAY = 24.0
"""Hours in the span the daily dose is counted over."""
INFUSION_STEP = 0.25
"""Lengthened infusions last a whole number of quarter hours (pumps are set in such steps)."""
TOO_FAST = ("lengthen", "exclude")
_SLACK = 1e-9
"""Relative slack in comparisons, so that 1000 mg over 1 h is within a limit of 1000 mg/h despite rounding."""


@dataclass(frozen=True)
class Constraints:
    """Limits a recommended regimen must respect (each ``None`` means no limit).

    ``max_rate``: the fastest infusion (amount per hour); it applies to infusions (duration > 0), since a bolus
    or an oral dose has no infusion rate.  ``too_fast``: what :func:`koopnb.optimize_regimen` does with a
    candidate infusion above ``max_rate``: ``"lengthen"`` (the default) runs it longer, for the shortest whole
    number of quarter hours within the rate (excluded if that outlasts its interval), ``"exclude"`` drops it.
    :func:`koopnb.optimize_dose` keeps the regimen's durations (it scales amounts only), so there the rate limit
    caps the dose.  ``max_dose``: the largest single dose.  ``max_daily``: the most started within any 24 h
    (a loading dose counts on its day; a steady-state dose counts with its repeats every interval).
    ``toxic``: a harmful event, e.g. ``Window(Cmin(0, 24), 20, None)`` (trough at or above 20 mg/L), and
    ``toxic_limit`` the largest probability of it allowed (default 0.1).
    """

    max_rate: float | None = None
    max_dose: float | None = None
    max_daily: float | None = None
    toxic: Window | None = None
    toxic_limit: float = 0.1
    too_fast: str = "lengthen"

    def __post_init__(self) -> None:
        for name in ("max_rate", "max_dose", "max_daily"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not (math.isfinite(value) and value > 0)):
                raise KoopnbError(f"the constraint {name} must be a positive number or None, not {value!r}")
        if self.toxic is not None and not isinstance(self.toxic, Window):
            raise KoopnbError(f"the toxic event must be a Window such as Window(Cmin(0, 24), 20, None), "
                              f"not {self.toxic!r}")
        limit = self.toxic_limit
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)) or not 0 < limit < 1:
            raise KoopnbError(f"toxic_limit must be a probability between 0 and 1 (e.g. 0.1), not {limit!r}")
        if self.too_fast not in TOO_FAST:
            raise KoopnbError(f"too_fast must be 'lengthen' or 'exclude', not {self.too_fast!r}")

    def describe(self, unit: str | None = None, regimens: bool = False) -> str:
        """The limits in words, e.g. ``infusions at most 1000 mg/h; single doses at most 2000 mg``; with
        ``regimens``, what a regimen search does with faster infusions (``too_fast``)."""
        amount = f" {unit}" if unit else ""
        parts = []
        if self.max_rate is not None:
            rule = ("" if not regimens else " (faster infusions excluded)" if self.too_fast == "exclude"
                    else " (faster infusions run longer, in whole quarter hours)")
            parts.append(f"infusions at most {self.max_rate:g}{amount}/h{rule}")
        if self.max_dose is not None:
            parts.append(f"single doses at most {self.max_dose:g}{amount}")
        if self.max_daily is not None:
            parts.append(f"at most {self.max_daily:g}{amount} in any 24 h")
        if self.toxic is not None:
            parts.append(f"P({self.toxic}) at most {100 * self.toxic_limit:g} %")
        return "; ".join(parts)

    def infusion(self, amount: float, duration: float, interval: float | None = None) -> float | None:
        """The duration (h) at which ``amount`` may run: ``duration`` if within ``max_rate`` (or a bolus), else
        lengthened to whole quarter hours (``too_fast="lengthen"``) — None when excluded or when the lengthened
        infusion would outlast ``interval``."""
        if self.max_rate is None or duration <= 0 or amount <= self.max_rate * duration * (1 + _SLACK):
            return duration
        if self.too_fast == "exclude":
            return None
        longer = INFUSION_STEP * math.ceil(amount / self.max_rate / INFUSION_STEP - _SLACK)
        return longer if interval is None or longer <= interval * (1 + _SLACK) else None

    def violations(self, regimen: Regimen) -> list[str]:
        """What ``regimen`` breaks, one clause each (empty when it respects every amount and rate limit; the
        safety limit needs a probability and is checked by the optimisers)."""
        unit = f" {regimen.unit}" if regimen.unit else ""
        found = []
        largest = float(regimen.amounts.max(initial=0.0))
        if self.max_dose is not None and largest > self.max_dose * (1 + _SLACK):
            found.append(f"a single dose of {largest:g}{unit} is above the maximum of {self.max_dose:g}{unit}")
        daily = daily_amount(regimen)
        if self.max_daily is not None and daily > self.max_daily * (1 + _SLACK):
            found.append(f"{daily:g}{unit} within 24 h is above the daily maximum of {self.max_daily:g}{unit}")
        fastest = max((dose.rate for dose in regimen.doses if dose.duration), default=0.0)
        if self.max_rate is not None and fastest > self.max_rate * (1 + _SLACK):
            found.append(f"an infusion at {fastest:g}{unit}/h is faster than the maximum of {self.max_rate:g}{unit}/h")
        return found

    def dose_cap(self, regimen: Regimen) -> float:
        """The largest amount of the first dose for which ``regimen`` scaled to it respects the amount and rate
        limits (``inf`` without such limits): every amount, daily total and rate scales with the first dose."""
        reference = float(regimen.doses[0].amount)
        caps = [math.inf]
        if self.max_dose is not None:
            caps.append(self.max_dose * reference / float(regimen.amounts.max()))
        if self.max_daily is not None:
            caps.append(self.max_daily * reference / daily_amount(regimen))
        fastest = max((dose.rate for dose in regimen.doses if dose.duration), default=0.0)
        if self.max_rate is not None and fastest > 0:
            caps.append(self.max_rate * reference / fastest)
        return min(caps)


def daily_amount(regimen: Regimen) -> float:
    """The most started within any 24 h of ``regimen``: max over doses i of the amounts started in
    [t_i, t_i + 24 h); a steady-state dose counts as its series (amount times the doses of it in 24 h)."""
    times, amounts = regimen.times, regimen.amounts
    if len(times) == 0:
        return 0.0
    totals = np.cumsum(np.concatenate([[0.0], amounts]))
    ends = np.searchsorted(times, times + DAY * (1 - _SLACK), side="left")
    most = float(np.max(totals[ends] - totals[:-1]))
    steady = [dose.amount * math.ceil(DAY / dose.interval - _SLACK) for dose in regimen.doses if dose.steady_state]
    return max([most, *steady])
