"""Dose and regimen optimisation under parameter uncertainty.

The search uses a deterministic, smooth objective — a fixed quadrature rule, never random draws — and
the chosen dose is then certified with a full-accuracy expectation and its error estimate.

Window objectives are pre-integrated (see koopnb.expectation.preintegration): along the conditioning
direction each metric is tabulated on a fixed grid of s, and the window's ends are found by monotone
cubic interpolation of log(metric) in s, so that the probability is a smooth function of the dose.  For
a linear model with zero initial state every metric scales with the dose (AUC, Cmax, Cmin and Conc are
linear in the doses), so one table of model evaluations at the reference dose serves every candidate
dose; the result says so in ``n_evals``.

Every answer is a practical dose: a multiple of a step (a vial or tablet size; :func:`default_step` when none is
given) within the bounds and the clinical limits (:class:`koopnb.Constraints`), stated in words in the result,
beside the current regimen's certified value; the current dose is kept when it is allowed and better.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar
from scipy.special import ndtr

from koopnb.cards import percent
from koopnb.constraints import Constraints, daily_amount
from koopnb.errors import ExpectationError, KoopnbError
from koopnb.expectation import ExpectationResult, expectation, probability
from koopnb.expectation.families import HERMITE, ProductMeasure, product_measure
from koopnb.expectation.gauss import tensor_rule
from koopnb.expectation.integrand import AllWindows, Integrand
from koopnb.expectation.lines import MonotoneLines, NotMonotone
from koopnb.expectation.preintegration import candidate_directions, complement, reach_for
from koopnb.metrics import AUC, Cmax, Cmin, Conc, Metric, Target, Window
from koopnb.regimen import Dose, Regimen
from koopnb.units import target_unit

SCALING_METRICS = (AUC, Cmax, Cmin, Conc)
LINE_POINTS = 33
"""Points per conditioning line in the search table (spacing about 0.3 standard deviations)."""
OUTER_ORDERS = (4, 6, 9, 12, 16, 24)
"""Gauss–Hermite orders per remaining direction tried for the search table, until two agree."""
GRID_PER_DECADE = 200
"""Search doses per factor of ten, evenly spaced in log-dose, when one table serves every dose (metrics
proportional to the dose): neighbours differ by 1.2 %, so no window wider than that is stepped over."""
GRID = 201
"""Fewest search doses when one table serves every dose."""
GRID_NONLINEAR = 17
"""Fewest search doses (evenly spaced in log-dose, at least 6 per factor of ten) when each dose needs its own
model evaluations; while no grid dose reaches the window, the midpoints (in log-dose) are added, up to
BRACKET_ROUNDS times; the best is then polished."""
BRACKET_ROUNDS = 3
MAX_DOSES = 100_000
"""Most candidate doses (multiples of ``step`` within the bounds, or ``grid``) that a search takes."""
MAX_DECADES = 12.0
"""Widest dose range, high/low ≤ 10^12."""
SEARCH_ATOL = 1e-4
"""Accuracy of the search objective; being one fixed rule, its error varies smoothly with the dose and
barely moves the optimum."""
INFEASIBLE = 1e-3
"""Below this best probability a window counts as out of reach of every dose in the bounds."""
NICE_STEPS = (1.0, 2.0, 2.5, 5.0)
"""Default steps are one of these times a power of ten (vial and tablet sizes are such numbers)."""
DEFAULT_STEP_SHARE = 0.05
"""The default step is at most this share of the current dose."""
DEFAULT_MAX_DOSES = 2000
"""The default step gives at most about this many candidate doses."""
TOXIC_RETRIES = 3
"""Candidates certified, best first, before a search whose safety estimates keep failing certification stops."""


@dataclass(frozen=True)
class DoseResult:
    """The dose that best meets a target, with its certified objective.

    ``dose`` is the amount of the regimen's first dose after scaling (every dose is scaled by the same
    factor); ``objective`` is the probability of the window(s) or the expected metric for a Target,
    certified by a full-accuracy expectation with ``error``; ``n_evals`` counts the model evaluations of
    search and certification; ``curve_doses``/``curve_values`` are the search objective over the bounds
    (probability versus dose); ``feasible`` is False, with ``message`` saying why, when no dose within the
    bounds reaches the target.

    The dose is practical: a multiple of ``step`` (the given step or the default one), drawn from the doses
    ``search_space`` names in words ("multiples of 25 mg between 50 and 1000 mg").  ``current`` is the given
    regimen as it is (``current_dose`` its first dose) certified the same way; ``note`` is one sentence when
    the current dose is better but not allowed ("the current 320 mg is not a multiple of 25 mg; ...").
    ``exact_dose`` is the best dose on a continuous scale (None where only multiples were evaluated);
    ``toxic`` the certified probability of ``constraints.toxic`` at the chosen dose (None without one);
    ``search_elapsed`` the seconds spent searching, before the certifications.
    ``unit`` is the unit of the target's metric ("mg·h/L" for an AUC window of a mg / L / h model; None when
    unknown) and ``dose_unit`` the dose's (the regimen's amount unit, e.g. "mg"); see :mod:`koopnb.units`.
    """

    dose: float
    regimen: Regimen
    objective: float
    error: float
    n_evals: int
    elapsed: float
    converged: bool
    feasible: bool
    message: str
    target: object
    method: str
    curve_doses: np.ndarray = field(repr=False)
    curve_values: np.ndarray = field(repr=False)
    certified: ExpectationResult | None = field(default=None, repr=False)
    search_evals: int = 0
    step: float | None = None
    search_space: str = ""
    current: ExpectationResult | None = field(default=None, repr=False)
    current_dose: float | None = None
    note: str = ""
    exact_dose: float | None = None
    toxic: ExpectationResult | None = field(default=None, repr=False)
    constraints: Constraints | None = None
    search_elapsed: float = 0.0
    unit: str | None = None
    dose_unit: str | None = None

    def __str__(self) -> str:
        """One line for logs and doctests (the card, ``_repr_mimebundle_``, is what a notebook shows)."""
        what = "P" if _is_window(self.target) else "E"
        status = "".join(f" — {text}" for text in (self.message, self.note) if text)
        unit = f" {self.regimen.unit}" if self.regimen.unit else ""
        current = f"; current {self.current_dose:.6g}{unit}: {self.current.value:.6g}" if self.current else ""
        return (f"dose {self.dose:.6g}{unit} ({self.regimen}): {what} = {self.objective:.6g} ± {self.error:.2g}"
                f"{current} [{self.search_space}; {self.method}; {self.n_evals} model evaluations; "
                f"{'converged' if self.converged else 'NOT converged'}]{status}")

    def _repr_html_(self) -> str:
        from koopnb.cards import dose_html

        return dose_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain, text/html and the result card (application/vnd.koopnb.result+json)."""
        from koopnb.cards import dose_bundle

        return dose_bundle(self)

    def to_dict(self) -> dict:
        """A JSON-ready summary (used by the notebook display)."""
        return {"dose": float(self.dose), "regimen": str(self.regimen), "unit": self.regimen.unit or "",
                "objective": float(self.objective), "error": float(self.error), "n_evals": int(self.n_evals),
                "elapsed": float(self.elapsed), "converged": bool(self.converged), "feasible": bool(self.feasible),
                "message": self.message, "target": _target_text(self.target), "method": self.method,
                "step": self.step, "search_space": self.search_space, "note": self.note,
                "current_dose": self.current_dose,
                "current": float(self.current.value) if self.current is not None else None,
                "current_error": float(self.current.error) if self.current is not None else None}


def optimize_dose(model, regimen: Regimen, dist, target, bounds: tuple[float, float], step: float | None = None,
                  method: str = "koopman", *, constraints: Constraints | None = None, covariates=None,
                  rtol: float = 1e-4, atol: float = 1e-6, n: int = 10_000, seed=0,
                  grid: int | None = None) -> DoseResult:
    """The practical dose (amount of the first dose; every dose scaled alike) that best meets ``target``.

    ``target``: a ``Window`` (maximise the probability of landing in it), a list of windows (maximise
    the probability that all hold), or a ``Target`` (expected metric closest to its value).  The answer is
    a multiple of ``step`` (vial or tablet size) within ``bounds`` (low, high); without ``step`` the
    :func:`default_step` is used (320 mg → 10 mg).  ``constraints`` (:class:`koopnb.Constraints`) cap the
    dose (maximum single dose, daily dose, and the infusion rate at the regimen's durations) and exclude doses
    whose probability of ``constraints.toxic`` exceeds ``constraints.toxic_limit``.

    ``method="koopman"`` searches a quadrature objective; ``method="montecarlo"`` a Monte Carlo one with ``n``
    draws and common random numbers (``seed``).  Either way the chosen dose and the given regimen as it is
    (``current``) are certified by the same full-accuracy expectation to ``rtol``/``atol``.  The recommendation
    is never worse than the current regimen when that is one of the allowed doses (the current dose is kept
    then); when the current dose is better but not allowed (not a multiple of the step, outside the bounds or
    the constraints), ``note`` says so in one sentence.  ``exact_dose`` is the best dose on a continuous scale
    where the search found it (None when only the multiples were evaluated).
    """
    started = time.perf_counter()
    reference, low, high = _check(regimen, bounds, step, grid)
    if method not in ("koopman", "montecarlo"):
        raise ExpectationError(f"unknown method {method!r}; use 'koopman' or 'montecarlo'")
    limits = _constraints(constraints)
    space = DoseSpace.of(regimen, low, high, step, limits)
    goal = target if isinstance(target, Target) else _windows(target)
    options = {"rtol": rtol, "atol": atol, "covariates": covariates}
    if isinstance(goal, Target):
        search = _search_target(model, regimen, dist, goal, reference, space, method, covariates, rtol, atol, n,
                                seed, every_multiple=limits.toxic is not None)
    else:
        search = _search_windows(model, regimen, dist, goal, reference, space, method, covariates, atol, n, seed,
                                 grid, every_multiple=limits.toxic is not None)
    toxic = _ToxicSearch(model, regimen, dist, limits, reference, space, method, covariates, atol, n, seed,
                         search.candidates) if limits.toxic is not None else None
    searched = time.perf_counter() - started
    chosen, certified, toxic_certified, certify_evals = _choose(model, regimen, dist, goal, reference, search, toxic,
                                                                limits, options)
    current = search.current or _certify(goal, model, regimen, dist, options)
    current_toxic = _certify(limits.toxic, model, regimen, dist, options) if limits.toxic is not None else None
    certify_evals += (0 if search.current else current.n_evals) + (current_toxic.n_evals if current_toxic else 0)
    dose, note = float(chosen.doses[0].amount), ""
    if _better(goal, current, certified):
        why = _not_allowed(regimen, space, limits, current_toxic)
        if why:
            note = _note(why, goal, regimen.unit, dose, certified, current)
        else:  # the current dose is allowed and (by the certified values) better: keep it
            chosen, certified, toxic_certified, dose = regimen, current, current_toxic, reference
    feasible, message = _feasibility(goal, search, certified, space, dose, regimen.unit)
    search_evals = search.evals() + (toxic.evals() if toxic is not None else 0)
    return DoseResult(dose=dose, regimen=chosen, objective=certified.value, error=certified.error,
                      n_evals=search_evals + certify_evals, elapsed=time.perf_counter() - started,
                      converged=certified.converged, feasible=feasible, message=message, target=target,
                      method=method, curve_doses=search.curve_doses, curve_values=search.curve_values,
                      certified=certified, search_evals=search_evals, step=space.step,
                      search_space=space.text, current=current, current_dose=reference, note=note,
                      exact_dose=search.exact, toxic=toxic_certified, constraints=constraints, search_elapsed=searched,
                      unit=target_unit(model, target, regimen.unit), dose_unit=regimen.unit)


def default_step(dose: float, low: float, high: float) -> float:
    """The dose step when none is given: the largest 1, 2, 2.5 or 5 × 10^k (in the regimen's unit) that is at
    most 5 % of the current ``dose`` and at most a twentieth of the range ``high − low``, but at least
    1/2000 of the range (so a search holds at most about 2,000 doses).  E.g. 320 mg → 10 mg, 1000 mg → 50 mg,
    80 mg → 2.5 mg; rounding to it moves a dose by at most 2.5 %."""
    most = min(DEFAULT_STEP_SHARE * dose, (high - low) / 20)
    least = (high - low) / DEFAULT_MAX_DOSES
    step = _nice(most, below=True)
    return step if step >= least else _nice(least, below=False)


def _nice(value: float, below: bool) -> float:
    """The largest (below=True) or smallest 1, 2, 2.5 or 5 × 10^k at most (at least) ``value``."""
    exponent = math.floor(math.log10(value))
    choices = [m * 10.0**k for k in (exponent - 1, exponent, exponent + 1) for m in NICE_STEPS]
    fits = [c for c in choices if (c <= value * (1 + 1e-12) if below else c >= value * (1 - 1e-12))]
    return max(fits) if below else min(fits)


@dataclass(frozen=True)
class DoseSpace:
    """The doses a search may answer: multiples of ``step`` from ``low`` to ``high`` (the bounds, with ``high``
    lowered to what the constraints allow), and the same in words."""

    low: float
    high: float
    step: float
    text: str

    @classmethod
    def of(cls, regimen: Regimen, low: float, high: float, step: float | None, limits: Constraints) -> DoseSpace:
        unit = f" {regimen.unit}" if regimen.unit else ""
        chosen = float(step) if step is not None else default_step(float(regimen.doses[0].amount), low, high)
        cap = limits.dose_cap(regimen)
        text = f"multiples of {chosen:g}{unit}" + ("" if step is not None else " (the default step)")
        if cap < high:
            if _multiples(low, cap, chosen).size == 0:
                raise KoopnbError(f"no multiple of {chosen:g}{unit} between {low:g} and {high:g}{unit} respects the "
                                  f"constraints ({limits.describe(regimen.unit)}): they allow at most {cap:.4g}{unit}")
            text += f" between {low:g} and {high:g}{unit}, at most {cap:.4g}{unit} under the constraints"
            high = cap
        else:
            text += f" between {low:g} and {high:g}{unit}"
        return cls(low, high, chosen, text)

    @property
    def multiples(self) -> np.ndarray:
        return _multiples(self.low, self.high, self.step)

    def holds(self, dose: float) -> bool:
        """True when ``dose`` is one of the multiples."""
        ratio = dose / self.step
        return (self.low * (1 - 1e-12) <= dose <= self.high * (1 + 1e-12)
                and abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio))


class _Search(NamedTuple):
    """What a search found: the candidate doses (multiples of the step) and their search score (higher is
    better: the probability, or minus the distance of the expected metric from its target), the objective
    curve over the bounds, the best dose on a continuous scale (or None), a counter of model evaluations, and
    the current regimen's certified value when the search computed it anyway (else None)."""

    candidates: np.ndarray
    scores: np.ndarray
    curve_doses: np.ndarray
    curve_values: np.ndarray
    exact: float | None
    evals: Callable[[], int]
    current: ExpectationResult | None = None


def _search_windows(model, regimen, dist, windows, reference, space, method, covariates, atol, n, seed, grid,
                    every_multiple: bool) -> _Search:
    low, high = space.low, space.high
    objective = (_KoopmanWindows(model, regimen, dist, windows, reference, covariates, atol, (low, high))
                 if method == "koopman" else _MonteCarloWindows(model, regimen, dist, windows, reference,
                                                                covariates, n, seed))
    multiples = space.multiples
    evals = lambda: objective.n_evals  # noqa: E731
    if not objective.scaling and len(multiples) <= GRID_NONLINEAR:
        values = objective(multiples)
        return _Search(multiples, values, multiples, values, None, evals)
    if not objective.scaling and every_multiple:
        raise KoopnbError(f"a safety limit needs every candidate dose evaluated: {len(multiples)} multiples of "
                          f"{space.step:g} is too many for a model whose metrics are not proportional to the dose "
                          f"(at most {GRID_NONLINEAR}); give a larger step or narrower bounds")
    doses, values = _bracket(objective, low, high, grid)
    exact = _refine_maximum(objective, doses, values) if method == "koopman" else float(doses[np.argmax(values)])
    if objective.scaling:  # one table serves every dose: every multiple is looked at
        return _Search(multiples, objective(multiples), doses, values, exact, evals)
    # each multiple costs its own evaluations: the two around the optimum
    near = np.unique(multiples[np.clip(np.searchsorted(multiples, exact) + np.array([-1, 0]), 0, len(multiples) - 1)])
    near_values = objective(near)
    order = np.argsort(np.concatenate([doses, near]))
    return _Search(near, near_values, np.concatenate([doses, near])[order],
                   np.concatenate([values, near_values])[order], exact, evals)


def _search_target(model, regimen, dist, target: Target, reference, space, method, covariates, rtol, atol, n, seed,
                   every_multiple: bool) -> _Search:
    """Doses whose expected metric is closest to the target value (closed form when the metric scales with dose)."""
    metric, low, high = target.metric, space.low, space.high
    if scales_with_dose(model, [metric]):
        options = {"method": "montecarlo", "n": n, "seed": seed} if method == "montecarlo" else {}
        unit = expectation(metric, model, regimen, dist, rtol=rtol, atol=atol, covariates=covariates, **options)
        mean_at = lambda doses: unit.value * np.asarray(doses, dtype=float) / reference  # noqa: E731
        evals = lambda: unit.n_evals  # noqa: E731
        current = unit if method == "koopman" else None  # the current regimen certified as the answer would be
    else:
        one_at, evals = _fixed_rule_mean(model, regimen, dist, metric, reference, covariates, rtol, atol, method,
                                         n, seed)
        mean_at = lambda doses: np.array([one_at(float(d)) for d in np.atleast_1d(doses)])  # noqa: E731
        current = None
    doses = np.geomspace(low, high, 41)
    doses[[0, -1]] = low, high
    curve = mean_at(doses)
    if min(curve[0], curve[-1]) <= target.value <= max(curve[0], curve[-1]):
        exact = brentq(lambda d: float(mean_at([d])[0]) - target.value, low, high, xtol=1e-10 * high, rtol=1e-12)
    else:
        exact = low if abs(curve[0] - target.value) < abs(curve[-1] - target.value) else high
    multiples = space.multiples
    if every_multiple and not scales_with_dose(model, [metric]) and len(multiples) > GRID_NONLINEAR:
        raise KoopnbError(f"a safety limit needs every candidate dose evaluated: {len(multiples)} multiples of "
                          f"{space.step:g} is too many for a metric not proportional to the dose (at most "
                          f"{GRID_NONLINEAR}); give a larger step or narrower bounds")
    # the expected metric is monotone in the dose here: the closest multiples are next to the root
    candidates = multiples if every_multiple else np.unique(
        multiples[np.clip(np.searchsorted(multiples, exact) + np.array([-1, 0]), 0, len(multiples) - 1)])
    scores = -np.abs(mean_at(candidates) - target.value)
    return _Search(candidates, scores, doses, curve, float(exact), evals, current)


class _ToxicSearch:
    """P(toxic) at the search's candidate doses with the search's method, to exclude those above the limit."""

    def __init__(self, model, regimen, dist, limits, reference, space, method, covariates, atol, n, seed,
                 candidates):
        toxic = [limits.toxic]
        self.objective = (_KoopmanWindows(model, regimen, dist, toxic, reference, covariates, atol,
                                          (space.low, space.high))
                          if method == "koopman" else _MonteCarloWindows(model, regimen, dist, toxic, reference,
                                                                         covariates, n, seed))
        if not self.objective.scaling and len(candidates) > GRID_NONLINEAR:
            raise KoopnbError(f"a safety limit on {limits.toxic.metric} needs every candidate dose evaluated: "
                              f"{len(candidates)} is too many for a metric not proportional to the dose (at most "
                              f"{GRID_NONLINEAR}); give a larger step or narrower bounds")
        self.values = self.objective(candidates)

    def evals(self) -> int:
        return self.objective.n_evals


def _choose(model, regimen, dist, goal, reference, search: _Search, toxic: _ToxicSearch | None, limits, options):
    """The best candidate by search score whose certified P(toxic) is within the limit, certified."""
    allowed = np.ones(len(search.candidates), dtype=bool) if toxic is None else toxic.values <= limits.toxic_limit
    if not allowed.any():
        i = int(np.argmin(toxic.values))
        raise KoopnbError(f"no dose among the candidates keeps P({limits.toxic}) at most "
                          f"{100 * limits.toxic_limit:g} %: the lowest is {percent(toxic.values[i])} at "
                          f"{search.candidates[i]:g}")
    spent, rejected = 0, []
    for index in np.argsort(-search.scores, kind="stable"):
        if not allowed[index] or len(rejected) == TOXIC_RETRIES:
            continue
        chosen = _scaled_to(regimen, float(search.candidates[index]), reference)
        certified = _certify(goal, model, chosen, dist, options)
        toxic_certified = _certify(limits.toxic, model, chosen, dist, options) if toxic is not None else None
        spent += certified.n_evals + (toxic_certified.n_evals if toxic_certified is not None else 0)
        if toxic_certified is None or toxic_certified.value <= limits.toxic_limit:
            return chosen, certified, toxic_certified, spent
        rejected.append(f"{search.candidates[index]:g} ({percent(toxic_certified.value)})")
    raise KoopnbError(f"the best doses by the search exceed the safety limit P({limits.toxic}) ≤ "
                      f"{100 * limits.toxic_limit:g} % once certified: {', '.join(rejected)}")


def _scaled_to(regimen: Regimen, dose: float, reference: float) -> Regimen:
    """``regimen`` with every amount scaled so that the first dose is exactly ``dose`` (multiplying by
    dose/reference first could give 110.00000000000001 for 110)."""
    return Regimen((replace(d, amount=d.amount * dose / reference) for d in regimen.doses), regimen.unit,
                   regimen.resets)


def _certify(goal, model, regimen, dist, options) -> ExpectationResult:
    """The full-accuracy probability of the window(s), or expectation of a Target's metric, under ``regimen``."""
    if isinstance(goal, Target):
        return expectation(goal.metric, model, regimen, dist, **options)
    event = goal if isinstance(goal, Window) else (AllWindows(goal) if len(goal) > 1 else goal[0])
    return probability(event, model, regimen, dist, **options)


def _better(goal, first: ExpectationResult, second: ExpectationResult) -> bool:
    """True when ``first`` meets the goal strictly better than ``second``."""
    if isinstance(goal, Target):
        return abs(first.value - goal.value) < abs(second.value - goal.value)
    return first.value > second.value


def _not_allowed(regimen: Regimen, space: DoseSpace, limits: Constraints, toxic: ExpectationResult | None) -> str:
    """Why the current regimen cannot be the answer, as a clause ("" when it can)."""
    unit = f" {regimen.unit}" if regimen.unit else ""
    dose = float(regimen.doses[0].amount)
    broken = limits.violations(regimen)
    if broken:
        return f"the current {dose:g}{unit} is not allowed: {broken[0]}"
    if toxic is not None and toxic.value > limits.toxic_limit:
        return (f"the current {dose:g}{unit} gives P({limits.toxic}) = {percent(toxic.value)}, above the "
                f"{100 * limits.toxic_limit:g} % limit")
    if not space.low * (1 - 1e-12) <= dose <= space.high * (1 + 1e-12):
        return f"the current {dose:g}{unit} is outside the searched {space.low:g} to {space.high:g}{unit}"
    if not space.holds(dose):
        return f"the current {dose:g}{unit} is not a multiple of {space.step:g}{unit}"
    return ""


def _note(why: str, goal, unit: str | None, dose: float, best: ExpectationResult,
          current: ExpectationResult) -> str:
    """One sentence: why the better current dose is not the answer, and both values."""
    unit = f" {unit}" if unit else ""
    if isinstance(goal, Target):
        values = f"E = {best.value:.4g} vs {current.value:.4g} (target {goal.value:g})"
    else:
        values = f"{percent(best.value)} vs {percent(current.value)}"
    what = "the best multiple" if "multiple" in why else "the best allowed dose"
    return f"{why}; {what}, {dose:g}{unit}, gives {values}"


def _feasibility(goal, search: _Search, certified: ExpectationResult, space: DoseSpace, dose: float,
                 unit: str | None) -> tuple[bool, str]:
    """Whether some dose within the bounds reaches the goal, and if not a sentence saying how close it gets."""
    unit = f" {unit}" if unit else ""
    if isinstance(goal, Target):
        ends = sorted((float(search.curve_values[0]), float(search.curve_values[-1])))
        if ends[0] <= goal.value <= ends[1]:
            return True, ""
        return False, (f"no dose between {space.low:g} and {space.high:g}{unit} gives {goal}: the expected value "
                       f"ranges from {ends[0]:.4g} to {ends[1]:.4g}")
    if max(float(np.max(search.curve_values)), certified.value) >= INFEASIBLE:
        return True, ""
    return False, (f"no dose between {space.low:g} and {space.high:g}{unit} reaches {_target_text(goal)}: the best "
                   f"probability is {percent(certified.value)} at {dose:g}{unit}")


def _check(regimen: Regimen, bounds, step, grid=None) -> tuple[float, float, float]:
    if not isinstance(regimen, Regimen) or not regimen.doses:
        raise KoopnbError("optimize_dose needs a regimen with at least one dose to scale")
    reference = float(regimen.doses[0].amount)
    if reference <= 0:
        raise KoopnbError("the regimen's first dose must be positive to be scaled")
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise KoopnbError(f"bounds must be two doses (low, high), not {bounds!r}") from None
    if not (0 < low < high and np.isfinite(high)):
        raise KoopnbError(f"dose bounds must satisfy 0 < low < high, got ({low:g}, {high:g})")
    if math.log10(high / low) > MAX_DECADES:
        raise KoopnbError(f"the dose bounds ({low:g}, {high:g}) span more than 10^{MAX_DECADES:g}; narrow them")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float, np.integer, np.floating)) or not (
                step > 0 and np.isfinite(step)):
            raise KoopnbError(f"the dose step must be a positive number, got {step!r}")
        count = math.floor(high / step + 1e-9) - math.ceil(low / step - 1e-9) + 1
        if count < 1:
            raise KoopnbError(f"no multiple of {step:g} lies between {low:g} and {high:g}")
        if count > MAX_DOSES:
            raise KoopnbError(f"a step of {step:g} gives {count:,} doses between {low:g} and {high:g}, more than "
                              f"{MAX_DOSES:,}; use a larger step")
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, (int, np.integer))
                             or not 2 <= grid <= MAX_DOSES):
        raise KoopnbError(f"grid must be a whole number of doses from 2 to {MAX_DOSES:,}, got {grid!r}")
    return reference, low, high


def _multiples(low: float, high: float, step: float) -> np.ndarray:
    return step * np.arange(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)


def _bracket(objective, low: float, high: float, grid: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Search doses evenly spaced in log-dose, and the objective there.

    One table serves every dose of a proportional model, so its grid is fine (GRID_PER_DECADE); otherwise the
    grid is coarse and, while no dose reaches INFEASIBLE, the log-midpoints are added (up to BRACKET_ROUNDS
    times), so that a window narrower than the first spacing is still found wherever it lies.
    """
    decades = math.log10(high / low)
    if grid is not None:
        count = grid
    elif objective.scaling:
        count = max(GRID, math.ceil(GRID_PER_DECADE * decades) + 1)
    else:
        count = max(GRID_NONLINEAR, math.ceil(6 * decades) + 1)
    doses = np.geomspace(low, high, count)
    doses[[0, -1]] = low, high
    values = objective(doses)
    for _ in range(0 if grid is not None else BRACKET_ROUNDS):
        if np.max(values) >= INFEASIBLE:
            break
        middles = np.sqrt(doses[:-1] * doses[1:])
        doses = np.insert(doses, np.arange(1, len(doses)), middles)
        values = np.insert(values, np.arange(1, len(values)), objective(middles))
    return doses, values


def _constraints(constraints) -> Constraints:
    if constraints is None:
        return Constraints()
    if not isinstance(constraints, Constraints):
        raise KoopnbError(f"constraints must be a koopnb.Constraints, not {type(constraints).__name__}")
    return constraints


def _windows(target) -> list[Window]:
    windows = list(target) if isinstance(target, (list, tuple)) else [target]
    if not windows or not all(isinstance(w, Window) for w in windows):
        raise KoopnbError("the target must be a Window, a list of Windows, or a Target")
    return windows


def _is_window(target) -> bool:
    return not isinstance(target, Target)


def _target_text(target) -> str:
    if isinstance(target, (list, tuple)):
        return " and ".join(str(t) for t in target)
    return str(target)


def scales_with_dose(model, metrics: Sequence[Metric]) -> bool:
    """True when every metric is proportional to the dose: a linear model started empty, affine outputs without
    offset, and metrics that are linear functionals of the output (AUC, Cmax, Cmin, Conc)."""
    compiled = model.compiled
    if not compiled.is_linear or any(model.spec.initial.get(s, 0) != 0 for s in model.states):
        return False
    for metric in metrics:
        if not isinstance(metric, SCALING_METRICS):
            return False
        name = metric.output_name(model)
        if name in model.states:
            continue
        k = compiled.outputs.index(name)
        if not compiled.output_affine[k] or compiled.expressions[name].subs(
                {s: 0 for s in compiled.expressions[name].free_symbols if s.name in model.states}) != 0:
            return False
    return True


def _refine_maximum(objective, doses: np.ndarray, values: np.ndarray) -> float:
    """Polish the best grid dose with a bounded scalar search in log-dose between its neighbours."""
    i = int(np.argmax(values))
    lo, hi = doses[max(i - 1, 0)], doses[min(i + 1, len(doses) - 1)]
    if values[i] <= 0 or hi <= lo:
        return float(doses[i])
    result = minimize_scalar(lambda x: -float(objective(np.array([math.exp(x)]))[0]),
                             bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": 1e-9})
    return float(min(max(math.exp(result.x), lo), hi)) if -result.fun >= values[i] else float(doses[i])


class _KoopmanWindows:
    """P(all windows hold) as a smooth function of the dose, from a fixed pre-integration table.

    The conditioning direction, the outer Gauss–Hermite rule and the grid of s are fixed once; when the
    metrics scale with the dose one table at the reference dose serves every dose, otherwise each dose
    needs its own table (and its own model evaluations).
    """

    def __init__(self, model, regimen, dist, windows, reference, covariates, atol, bounds):
        self.model, self.regimen, self.dist, self.windows = model, regimen, dist, windows
        self.reference, self.covariates = reference, covariates
        self.metrics = [w.metric for w in windows]
        self.scaling = scales_with_dose(model, self.metrics)
        self.integrand = Integrand(self.metrics, model, regimen, dist, covariates)
        # The search only has to rank doses; the chosen one is certified at the full tolerance afterwards.
        self.tolerance = max(atol, SEARCH_ATOL)
        self.reach = reach_for(self.tolerance)
        self.s = np.linspace(-self.reach, self.reach, LINE_POINTS)
        dim = dist.dim
        middle = float(np.sqrt(bounds[0] * bounds[1]))
        self.u = self._direction(middle)
        self.basis = complement(self.u)
        self.outer, self.weights = self._outer_rule(dim, self.tolerance, np.geomspace(*bounds, 9))

    @property
    def n_evals(self) -> int:
        return self.integrand.n_evals

    def _metric_table(self, dose: float, y: np.ndarray) -> np.ndarray:
        """Metric values (n_outer, LINE_POINTS, m) along the lines through the outer nodes y at one dose."""
        z = self.s[None, :, None] * self.u + (y @ self.basis.T)[:, None, :]
        values = self._evaluate(dose, z.reshape(-1, len(self.u)))
        return values.reshape(len(y), len(self.s), -1)

    def _evaluate(self, dose: float, z: np.ndarray) -> np.ndarray:
        self.integrand.regimen = self.regimen.scaled(dose / self.reference)
        return self.integrand(self.dist.from_normal(z))

    def _direction(self, dose: float) -> np.ndarray:
        try:
            for u in candidate_directions(lambda z: self._evaluate(dose, z), self.dist.dim):
                return u
        except NotMonotone:
            pass  # said below, in the user's terms
        metrics = " and ".join(str(metric) for metric in self.metrics)
        raise ExpectationError(f"cannot search the dose: {metrics} is the same for every patient near the typical "
                               f"one at a dose of {dose:g} (is every dose given after the window?)")

    def _outer_rule(self, dim: int, atol: float, check_doses: np.ndarray):
        """Increase the outer rule until the probability at a few doses agrees between two orders."""
        previous = None
        for order in OUTER_ORDERS:
            nodes, weights = tensor_rule((order,) * (dim - 1)) if dim > 1 else (np.zeros((1, 0)), np.ones(1))
            self.outer, self.weights, self._tables = nodes, weights, {}
            current = self(check_doses)
            if (previous is not None and np.max(np.abs(current - previous)) <= max(atol, 1e-9)) or dim == 1:
                return nodes, weights
            previous = current
        return nodes, weights

    def _table(self, dose: float) -> list[MonotoneLines]:
        key = 1.0 if self.scaling else float(dose)
        if key not in self._tables:
            values = self._metric_table(self.reference if self.scaling else dose, self.outer)
            self._tables[key] = [MonotoneLines(self.s, values[:, :, k]) for k in range(values.shape[2])]
        return self._tables[key]

    def __call__(self, doses: np.ndarray) -> np.ndarray:
        """The search probability at each dose (n_doses,), all doses at once."""
        doses = np.atleast_1d(np.asarray(doses, dtype=float))
        if self.scaling:
            # Every metric is the reference one times dose/reference: one table, only the levels move.
            inside = self._inside(self._table(self.reference), doses / self.reference)
        else:
            inside = np.concatenate([self._inside(self._table(float(d)), np.ones(1)) for d in doses])
        return inside @ self.weights

    def _inside(self, lines: list[MonotoneLines], scales: np.ndarray) -> np.ndarray:
        """(len(scales), n_outer) probability along each line that every window holds for metrics scale·M."""
        lower = np.full((len(scales), len(self.outer)), -np.inf)
        upper = np.full((len(scales), len(self.outer)), np.inf)
        for line, window in zip(lines, self.windows, strict=True):
            for bound, is_low in ((window.low, True), (window.high, False)):
                if bound is None:
                    continue
                root = line.crossing(bound / scales)
                if line.increasing == is_low:
                    lower = np.maximum(lower, root)
                else:
                    upper = np.minimum(upper, root)
        return np.clip(ndtr(upper) - ndtr(lower), 0.0, 1.0)


class _MonteCarloWindows:
    """P(all windows hold) by Monte Carlo with common random numbers: the same draws for every dose."""

    def __init__(self, model, regimen, dist, windows, reference, covariates, n, seed):
        self.model, self.regimen, self.windows, self.reference = model, regimen, windows, reference
        self.draws = dist.sample(int(n), seed)
        self.metrics = [w.metric for w in windows]
        self.scaling = scales_with_dose(model, self.metrics)
        self.integrand = Integrand(self.metrics, model, regimen, dist, covariates)
        self._values = self._evaluate(reference) if self.scaling else None
        self._sorted = None

    @property
    def n_evals(self) -> int:
        return self.integrand.n_evals

    def _evaluate(self, dose: float) -> np.ndarray:
        self.integrand.regimen = self.regimen.scaled(dose / self.reference)
        return self.integrand(self.draws)

    def __call__(self, doses: np.ndarray) -> np.ndarray:
        doses = np.atleast_1d(np.asarray(doses, dtype=float))
        if self.scaling and len(self.windows) == 1:
            return self._fraction_inside(doses)
        result = []
        for dose in doses:  # several windows at once, or a model whose metrics need each dose simulated
            values = self._values * (dose / self.reference) if self.scaling else self._evaluate(float(dose))
            inside = np.prod([w.indicator(values[:, k]) for k, w in enumerate(self.windows)], axis=0)
            result.append(inside.mean())
        return np.array(result)

    def _fraction_inside(self, doses: np.ndarray) -> np.ndarray:
        """The share of draws in one window at every dose at once: the metric at dose d is (d/reference)·v, so
        low ≤ (d/ref)·v < high is low·ref/d ≤ v < high·ref/d, counted on the sorted draws."""
        if self._sorted is None:
            self._sorted = np.sort(self._values[:, 0])
        window, factor = self.windows[0], self.reference / doses
        below_high = (np.full(len(doses), len(self._sorted)) if window.high is None
                      else np.searchsorted(self._sorted, window.high * factor, side="left"))
        below_low = (np.zeros(len(doses), dtype=int) if window.low is None
                     else np.searchsorted(self._sorted, window.low * factor, side="left"))
        return (below_high - below_low) / len(self._sorted)


def _fixed_rule_mean(model, regimen, dist, metric, reference, covariates, rtol, atol, method, n, seed):
    """E[metric] at any dose with one fixed rule: the tensor rule the adaptive run settled on at the reference
    dose (Koopman), or fixed draws (Monte Carlo, common random numbers)."""
    if method == "koopman":
        found = expectation(metric, model, regimen, dist, rtol=rtol, atol=atol, covariates=covariates, rule="tensor")
        measure = product_measure(dist) or ProductMeasure((HERMITE,) * dist.dim, dist.from_normal)
        nodes, weights = tensor_rule(found.orders, measure.families)
        points = measure.to_params(nodes)
        spent = found.n_evals
    else:
        points, weights, spent = dist.sample(int(n), seed), np.full(int(n), 1.0 / int(n)), 0
    integrand = Integrand([metric], model, regimen, dist, covariates)

    def mean_at(dose: float) -> float:
        integrand.regimen = regimen.scaled(dose / reference)
        return float(weights @ integrand(points)[:, 0])

    return mean_at, lambda: integrand.n_evals + spent


def optimize_regimen(model, dist, target, amounts: Sequence[float], intervals: Sequence[float | str], *,
                     duration: float = 0.0, cmt=None, horizon: float | None = None,
                     loading: Sequence[float] = (0.0,), steady_state_after: float | None = None,
                     unit: str | None = None, constraints: Constraints | None = None,
                     current: tuple[float, float | str] | None = None, covariates=None,
                     rtol: float = 1e-4, atol: float = 1e-5) -> RegimenTable:
    """Rank every regimen of loading dose × amount × interval by its certified objective.

    Each candidate is ``loading`` (0 for none) at time 0, then ``amount`` every ``interval`` hours (as
    infusions of ``duration`` h when > 0, into ``cmt``), repeated to cover the target's time span.
    ``intervals`` are the allowed dosing intervals, in hours or as words ("q8h").  With ``steady_state_after``
    (h), the target's metrics are moved to the first dosing interval starting at or after that time, so
    ``auc(0, 24)`` means a day at steady state; choose it ≥ 5 half-lives of the drug.  ``target`` is a
    Window, a list of Windows (all must hold) or a Target (closest expected value first).

    ``constraints`` (:class:`koopnb.Constraints`): an infusion faster than ``max_rate`` is lengthened to whole
    quarter hours (or excluded, ``too_fast="exclude"``, or when it would outlast its interval); a candidate
    above ``max_dose`` or ``max_daily`` is excluded; with ``toxic``, P(toxic) (moved to steady state like the
    target) is certified for each candidate and those above ``toxic_limit`` are excluded.  A candidate that
    breaks a limit is never ranked; ``table.attrs["excluded"]`` lists each with the reason, and when none is
    left a KoopnbError says why.

    ``current`` (amount, interval) is the patient's regimen, built and certified like a candidate and kept in
    ``table.attrs["current"]``; when it is better than the best ranked regimen (it is then not a candidate, or
    breaks a limit), ``table.attrs["note"]`` says so in one sentence.

    Returns a :class:`RegimenTable` (a pandas DataFrame, best first) whose columns stay numeric for code:
    regimen, loading, amount, interval, duration (h, as run), daily (the most started in any 24 h), objective
    (probability or expected metric), error, toxic and toxic_error (with a safety limit), converged, n_evals.
    Shown in a notebook or printed, it reads for people (plain headers, percentages, units, the search space).
    """
    if len(amounts) == 0 or len(intervals) == 0:
        raise KoopnbError("give at least one amount and one interval")
    limits = _constraints(constraints)
    intervals = [_interval(every) for every in intervals]
    settings = {"duration": duration, "cmt": cmt, "horizon": horizon, "steady_state_after": steady_state_after,
                "unit": unit, "options": {"rtol": rtol, "atol": atol, "covariates": covariates}}
    rows, excluded = [], []
    for load, amount, interval in itertools.product(loading, amounts, intervals):
        row, reason = _judge(model, dist, target, load, amount, interval, limits, settings)
        if reason:
            excluded.append(reason)
        else:
            rows.append(row)
    if not rows:
        regimen, reason = excluded[0]
        raise KoopnbError(f"none of the {len(excluded)} candidate regimens respects the constraints "
                          f"({limits.describe(unit, regimens=True)}): {regimen}: {reason}")
    table = RegimenTable(rows)
    if isinstance(target, Target):
        order = np.argsort(np.abs(table["objective"].to_numpy() - target.value), kind="stable")
    else:
        order = np.argsort(-table["objective"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    space = f"{_amounts_words(amounts, unit)} every {_list_words([f'{i:g}' for i in intervals])} h"
    if any(load > 0 for load in loading):
        space += f", loading dose {_list_words([f'{load:g}' for load in loading])}{f' {unit}' if unit else ''}"
    table.attrs.update(target=_target_text(target), goal="expected" if isinstance(target, Target) else "probability",
                       unit=unit, metric_unit=target_unit(model, target, unit), excluded=excluded,
                       constraints=limits.describe(unit, regimens=True), search_space=space, current=None, note="",
                       toxic=str(limits.toxic) if limits.toxic else None,
                       toxic_limit=limits.toxic_limit if limits.toxic else None)
    if current is not None:
        table.attrs["current"], table.attrs["note"] = _current_regimen(model, dist, target, current, table, limits,
                                                                       settings)
    return table


def _judge(model, dist, target, load, amount, interval, limits: Constraints, settings) -> tuple[dict, tuple]:
    """One candidate's table row and () — or {} and (regimen text, why it breaks a limit)."""
    if amount <= 0 or interval <= 0 or load < 0:
        raise KoopnbError("amounts and intervals must be positive and loading doses not negative")
    after = settings["steady_state_after"]
    shift = math.ceil(after / interval) * interval if after else 0.0
    goal = _shifted_target(target, shift)
    toxic = _shifted_target(limits.toxic, shift) if limits.toxic is not None else None
    unit = settings["unit"]
    candidate, reason = _candidate(load, amount, interval, goal, toxic, settings["horizon"], settings["duration"],
                                   settings["cmt"], unit, limits)
    if reason:
        return {}, (str(candidate) if candidate else _words(load, amount, interval, unit), reason)
    row = {"regimen": str(candidate), "loading": load, "amount": amount, "interval": interval,
           "duration": max((d.duration or 0.0) for d in candidate.doses if d.amount == amount),
           "daily": daily_amount(candidate)}
    evals = 0
    if toxic is not None:
        harm = probability(toxic, model, candidate, dist, **settings["options"])
        evals += harm.n_evals
        if harm.value > limits.toxic_limit:
            return {}, (str(candidate), f"P({limits.toxic}) = {percent(harm.value)}, above the "
                                        f"{100 * limits.toxic_limit:g} % limit")
        row |= {"toxic": harm.value, "toxic_error": harm.error}
    result = _certify(goal if isinstance(goal, Target) else _windows(goal), model, candidate, dist,
                      settings["options"])
    return row | {"objective": result.value, "error": result.error, "converged": result.converged,
                  "n_evals": evals + result.n_evals}, ()


def _current_regimen(model, dist, target, current, table, limits: Constraints, settings) -> tuple[dict, str]:
    """The current regimen's row (certified without the limits, so that its value shows even when it breaks
    one) and a note when it beats the best ranked regimen."""
    try:
        amount, interval = float(current[0]), _interval(current[1])
    except (TypeError, ValueError, IndexError):
        raise KoopnbError(f"current must be (amount, interval), e.g. (1000, 12) or (1000, 'q12h'), not "
                          f"{current!r}") from None
    row, broken = _judge(model, dist, target, 0.0, amount, interval, limits, settings)
    if broken:
        row, _ = _judge(model, dist, target, 0.0, amount, interval, Constraints(), settings)
    best = table.iloc[0]
    if isinstance(target, Target):
        better = abs(row["objective"] - target.value) < abs(best["objective"] - target.value)
        values = f"E = {best['objective']:.4g} vs {row['objective']:.4g} (target {target.value:g})"
    else:
        better = row["objective"] > best["objective"]
        values = f"{percent(best['objective'])} vs {percent(row['objective'])}"
    if not better:
        return row, ""
    unit = settings["unit"]
    mine = _words(0.0, amount, interval, unit)
    why = (f"the current {mine} is not allowed: {broken[1]}" if broken
           else f"the current {mine} is not among the candidates ({table.attrs['search_space']})")
    return row, (f"{why}; the best {'allowed regimen' if broken else 'candidate'}, "
                 f"{_words(best['loading'], best['amount'], best['interval'], unit)}, gives {values}")


def _amounts_words(amounts: Sequence[float], unit: str | None) -> str:
    """``multiples of 250 mg from 500 to 2000 mg`` for evenly spaced multiples, else ``500, 750 or 1250 mg``."""
    unit = f" {unit}" if unit else ""
    values = np.sort(np.asarray(amounts, dtype=float))
    steps = np.diff(values)
    evenly = len(values) >= 3 and np.allclose(steps, steps[0])
    if evenly and abs(values[0] / steps[0] - round(values[0] / steps[0])) < 1e-9:
        return f"multiples of {steps[0]:g}{unit} from {values[0]:g} to {values[-1]:g}{unit}"
    return f"{_list_words([f'{v:g}' for v in values])}{unit}"


def _list_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


class RegimenTable(pd.DataFrame):
    """:func:`optimize_regimen`'s ranking, best first: a pandas DataFrame whose columns stay numeric for code
    (``table["objective"]``, ``table.iloc[0]["amount"]``), shown to people as a readable table (plain headers,
    percentages with their errors, units; the evaluations in a details fold) by :mod:`koopnb.cards` — as a
    table rather than the lab extension's card, which has room for the regimen and probability only.
    ``pd.DataFrame(table)`` shows the raw numbers."""

    @property
    def _constructor(self):
        return RegimenTable

    def _repr_html_(self) -> str:
        from koopnb.cards import regimen_table_html

        return regimen_table_html(self)

    def __repr__(self) -> str:
        from koopnb.cards import regimen_table_text

        return regimen_table_text(self)


def _candidate(load, amount, interval, goal, toxic, horizon, duration, cmt, unit, limits: Constraints):
    """The regimen of one candidate and "" — or None/the regimen and the reason it breaks a limit."""
    run = limits.infusion(amount, duration, interval)
    if run is None:
        return None, _too_fast(amount, duration, interval, unit, limits)
    metrics = _metrics_of(goal) + (_metrics_of(toxic) if toxic is not None else [])
    end = max(m.horizon() for m in metrics)
    count = max(1, math.ceil((horizon or end) / interval) + (1 if load else 0))
    regimen = Regimen.repeat(amount, every=interval, count=count, start=interval if load else 0.0, cmt=cmt,
                             duration=run, unit=unit)
    if load:
        first = limits.infusion(load, duration)
        if first is None:
            return None, _too_fast(load, duration, None, unit, limits)
        regimen = Regimen([Dose(load, 0.0, cmt, first)], unit=unit) + regimen
    broken = limits.violations(regimen)
    return regimen, broken[0] if broken else ""


def _too_fast(amount, duration, interval, unit, limits: Constraints) -> str:
    unit = f" {unit}" if unit else ""
    if limits.too_fast == "exclude":
        return (f"{amount:g}{unit} over {duration:g} h runs at {amount / duration:g}{unit}/h, faster than the "
                f"maximum of {limits.max_rate:g}{unit}/h")
    return (f"{amount:g}{unit} needs more than its {interval:g} h interval to run within "
            f"{limits.max_rate:g}{unit}/h")


def _words(load, amount, interval, unit) -> str:
    unit = f" {unit}" if unit else ""
    loading = f"{load:g}{unit} then " if load else ""
    return f"{loading}{amount:g}{unit} every {interval:g} h"


def _interval(every) -> float:
    """An allowed dosing interval in hours, from a number or a word such as "q8h" or "12 h"."""
    if isinstance(every, str):
        found = re.fullmatch(r"\s*q?\s*(\d+(?:\.\d+)?)\s*(?:h|hr|hours?)?\s*", every, re.IGNORECASE)
        if not found:
            raise KoopnbError(f"an interval is hours or a word such as 'q8h', not {every!r}")
        return float(found.group(1))
    if isinstance(every, bool) or not isinstance(every, (int, float, np.number)) or not math.isfinite(every):
        raise KoopnbError(f"an interval is hours or a word such as 'q8h', not {every!r}")
    return float(every)


def _metrics_of(goal) -> list[Metric]:
    if isinstance(goal, Target):
        return [goal.metric]
    return [w.metric for w in (goal if isinstance(goal, (list, tuple)) else [goal])]


def _shifted_metric(metric: Metric, shift: float) -> Metric:
    if shift == 0:
        return metric
    if isinstance(metric, Conc):
        return replace(metric, t=metric.t + shift)
    return replace(metric, t0=metric.t0 + shift, t1=metric.t1 + shift)


def _shifted_target(target, shift: float):
    if isinstance(target, Target):
        return Target(_shifted_metric(target.metric, shift), target.value)
    if isinstance(target, (list, tuple)):
        return [_shifted_target(w, shift) for w in target]
    if isinstance(target, Window):
        return Window(_shifted_metric(target.metric, shift), target.low, target.high)
    raise KoopnbError("the target must be a Window, a list of Windows, or a Target")
