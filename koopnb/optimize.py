"""Dose and regimen optimisation under parameter uncertainty.

The search uses a deterministic, smooth objective — a fixed quadrature rule, never random draws — and
the chosen dose is then certified with a full-accuracy expectation and its error estimate.

Window objectives are pre-integrated (see koopnb.expectation.preintegration): along the conditioning
direction each metric is tabulated on a fixed grid of s, and the window's ends are found by monotone
cubic interpolation of log(metric) in s, so that the probability is a smooth function of the dose.  For
a linear model with zero initial state every metric scales with the dose (AUC, Cmax, Cmin and Conc are
linear in the doses), so one table of model evaluations at the reference dose serves every candidate
dose; the result says so in ``n_evals``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize_scalar
from scipy.special import ndtr

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


@dataclass(frozen=True)
class DoseResult:
    """The dose that best meets a target, with its certified objective.

    ``dose`` is the amount of the regimen's first dose after scaling (every dose is scaled by the same
    factor); ``objective`` is the probability of the window(s) or the expected metric for a Target,
    certified by a full-accuracy expectation with ``error``; ``n_evals`` counts the model evaluations of
    search and certification; ``curve_doses``/``curve_values`` are the search objective over the bounds
    (probability versus dose); ``feasible`` is False, with ``message`` saying why, when no dose within the
    bounds reaches the target.  ``unit`` is the unit of the target's metric ("mg·h/L" for an AUC window of a
    mg / L / h model; None when unknown) and ``dose_unit`` the dose's (the regimen's amount unit, e.g. "mg");
    see :mod:`koopnb.units`.
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
    unit: str | None = None
    dose_unit: str | None = None

    def __str__(self) -> str:
        what = "P" if _is_window(self.target) else "E"
        status = "" if self.feasible else f" — {self.message}"
        unit = f" {self.regimen.unit}" if self.regimen.unit else ""
        return (f"dose {self.dose:.6g}{unit} ({self.regimen}): {what} = {self.objective:.6g} ± {self.error:.2g} "
                f"[{self.method}; {self.n_evals} model evaluations; "
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
                "message": self.message, "target": _target_text(self.target), "method": self.method}


def optimize_dose(model, regimen: Regimen, dist, target, bounds: tuple[float, float], step: float | None = None,
                  method: str = "koopman", *, covariates=None, rtol: float = 1e-4, atol: float = 1e-6,
                  n: int = 10_000, seed=0, grid: int | None = None) -> DoseResult:
    """The dose (amount of the first dose; every dose scaled alike) that best meets ``target``.

    ``target``: a ``Window`` (maximise the probability of landing in it), a list of windows (maximise
    the probability that all hold), or a ``Target`` (expected metric equal to its value).  ``bounds``
    (low, high) limit the dose; ``step`` restricts it to multiples (tablet or vial sizes) and returns
    the best allowed multiple.  ``method="koopman"`` searches a quadrature objective;
    ``method="montecarlo"`` a Monte Carlo one with ``n`` draws and common random numbers (``seed``).
    Either way the chosen dose is certified by a Koopman expectation to ``rtol``/``atol``.
    """
    started = time.perf_counter()
    reference, low, high = _check(regimen, bounds, step, grid)
    if method not in ("koopman", "montecarlo"):
        raise ExpectationError(f"unknown method {method!r}; use 'koopman' or 'montecarlo'")
    if isinstance(target, Target):
        return _optimize_target(model, regimen, dist, target, reference, low, high, step, method, covariates,
                                rtol, atol, n, seed, started)
    windows = _windows(target)
    objective = (_KoopmanWindows(model, regimen, dist, windows, reference, covariates, atol, (low, high))
                 if method == "koopman" else _MonteCarloWindows(model, regimen, dist, windows, reference,
                                                                covariates, n, seed))
    multiples = _multiples(low, high, step) if step else None
    if multiples is not None and (objective.scaling or len(multiples) <= GRID_NONLINEAR):
        doses, values = multiples, objective(multiples)
        best = float(doses[int(np.argmax(values))])
    else:
        doses, values = _bracket(objective, low, high, grid)
        best = _refine_maximum(objective, doses, values) if method == "koopman" else float(doses[np.argmax(values)])
        if multiples is not None:  # each multiple costs its own evaluations: the two around the optimum
            near = multiples[np.clip(np.searchsorted(multiples, best) + np.array([-1, 0]), 0, len(multiples) - 1)]
            near_values = objective(near)
            doses, values = np.concatenate([doses, near]), np.concatenate([values, near_values])
            order = np.argsort(doses)
            doses, values = doses[order], values[order]
            best = float(near[int(np.argmax(near_values))])
    chosen = regimen.scaled(best / reference)
    target_object = AllWindows(windows) if len(windows) > 1 else windows[0]
    certified = probability(target_object, model, chosen, dist, rtol=rtol, atol=atol, covariates=covariates)
    feasible = float(np.max(values)) >= INFEASIBLE or certified.value >= INFEASIBLE
    message = "" if feasible else (f"no dose between {low:g} and {high:g} reaches {_target_text(target)}: the best "
                                   f"probability is {certified.value:.2g} at {best:g}")
    return DoseResult(dose=best, regimen=chosen, objective=certified.value, error=certified.error,
                      n_evals=objective.n_evals + certified.n_evals, elapsed=time.perf_counter() - started,
                      converged=certified.converged, feasible=feasible, message=message, target=target,
                      method=method, curve_doses=doses, curve_values=values, certified=certified,
                      search_evals=objective.n_evals, unit=target_unit(model, target, regimen.unit),
                      dose_unit=regimen.unit)


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


def _optimize_target(model, regimen, dist, target: Target, reference, low, high, step, method, covariates,
                     rtol, atol, n, seed, started) -> DoseResult:
    """Dose whose expected metric equals the target value (closed form when the metric scales with dose)."""
    metric = target.metric
    evals = 0
    if scales_with_dose(model, [metric]):
        if method == "koopman":
            unit = expectation(metric, model, regimen, dist, rtol=rtol, atol=atol, covariates=covariates)
        else:
            unit = expectation(metric, model, regimen, dist, method="montecarlo", n=n, seed=seed, covariates=covariates)
        evals += unit.n_evals
        mean_at = lambda dose: unit.value * dose / reference  # noqa: E731
    else:
        mean_at, evals_of = _fixed_rule_mean(model, regimen, dist, metric, reference, covariates, rtol, atol,
                                             method, n, seed)
        evals_of_search = evals_of
    doses = np.geomspace(low, high, 41)
    doses[[0, -1]] = low, high
    curve = np.array([mean_at(d) for d in doses])
    lo_value, hi_value = curve[0], curve[-1]
    feasible = min(lo_value, hi_value) <= target.value <= max(lo_value, hi_value)
    if feasible:
        best = brentq(lambda d: mean_at(d) - target.value, low, high, xtol=1e-10 * high, rtol=1e-12)
    else:
        best = low if abs(lo_value - target.value) < abs(hi_value - target.value) else high
    if step:  # the expected metric is monotone in the dose here: the closest multiple is next to the root
        multiples = _multiples(low, high, step)
        candidates = multiples[np.clip(np.searchsorted(multiples, best) + np.array([-1, 0]), 0, len(multiples) - 1)]
        best = float(candidates[np.argmin(np.abs([mean_at(d) - target.value for d in candidates]))])
    if not scales_with_dose(model, [metric]):
        evals += evals_of_search()
    chosen = regimen.scaled(best / reference)
    certified = expectation(metric, model, chosen, dist, rtol=rtol, atol=atol, covariates=covariates)
    message = "" if feasible else (f"no dose between {low:g} and {high:g} gives {target}: the expected value ranges "
                                   f"from {min(lo_value, hi_value):.4g} to {max(lo_value, hi_value):.4g}")
    return DoseResult(dose=float(best), regimen=chosen, objective=certified.value, error=certified.error,
                      n_evals=evals + certified.n_evals, elapsed=time.perf_counter() - started,
                      converged=certified.converged, feasible=feasible, message=message, target=target,
                      method=method, curve_doses=doses, curve_values=curve, certified=certified, search_evals=evals,
                      unit=target_unit(model, target, regimen.unit), dose_unit=regimen.unit)


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


def optimize_regimen(model, dist, target, amounts: Sequence[float], intervals: Sequence[float], *,
                     duration: float = 0.0, cmt=None, horizon: float | None = None,
                     loading: Sequence[float] = (0.0,), steady_state_after: float | None = None,
                     unit: str | None = None, covariates=None, rtol: float = 1e-4, atol: float = 1e-5) -> pd.DataFrame:
    """Rank every regimen of loading dose × amount × interval by its certified objective.

    Each candidate is ``loading`` (0 for none) at time 0, then ``amount`` every ``interval`` hours (as
    infusions of ``duration`` h when > 0, into ``cmt``), repeated to cover the target's time span.  With
    ``steady_state_after`` (h), the target's metrics are moved to the first dosing interval starting at or
    after that time, so ``auc(0, 24)`` means a day at steady state; choose it ≥ 5 half-lives of the drug.
    ``target`` is a Window, a list of Windows (all must hold) or a Target (closest expected value first).
    Returns a pandas DataFrame, best first: regimen, loading, amount, interval, objective (probability
    or expected metric), error, converged, n_evals.
    """
    if len(amounts) == 0 or len(intervals) == 0:
        raise KoopnbError("give at least one amount and one interval")
    rows = []
    for load, amount, interval in itertools.product(loading, amounts, intervals):
        if amount <= 0 or interval <= 0 or load < 0:
            raise KoopnbError("amounts and intervals must be positive and loading doses not negative")
        shift = math.ceil(steady_state_after / interval) * interval if steady_state_after else 0.0
        goal = _shifted_target(target, shift)
        end = max(m.horizon() for m in _metrics_of(goal))
        count = max(1, math.ceil((horizon or end) / interval) + (1 if load else 0))
        start = interval if load else 0.0
        regimen = Regimen.repeat(amount, every=interval, count=count, start=start, cmt=cmt, duration=duration)
        if load:
            regimen = Regimen([Dose(load, 0.0, cmt, duration)]) + regimen
        if unit:
            regimen = Regimen(regimen.doses, unit=unit)
        if isinstance(goal, Target):
            result = expectation(goal.metric, model, regimen, dist, rtol=rtol, atol=atol, covariates=covariates)
        else:
            windows = _windows(goal)  # several windows must hold at once, not be ranked separately
            event = AllWindows(windows) if len(windows) > 1 else windows[0]
            result = probability(event, model, regimen, dist, rtol=rtol, atol=atol, covariates=covariates)
        rows.append({"regimen": str(regimen), "loading": load, "amount": amount, "interval": interval,
                     "objective": result.value, "error": result.error, "converged": result.converged,
                     "n_evals": result.n_evals})
    table = pd.DataFrame(rows)
    if isinstance(target, Target):
        order = np.argsort(np.abs(table["objective"].to_numpy() - target.value), kind="stable")
    else:
        order = np.argsort(-table["objective"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.attrs["target"] = _target_text(target)
    return table


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
