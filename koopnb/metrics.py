"""Exposure metrics: AUC, Cmax, Cmin, Conc, TimeAbove, and the Window and Target built on them.

Each metric is evaluated for a batch of parameter sets at once and exactly, not by a trapezoid on a
grid: AUC from the closed-form integral of the linear solution (or an integrated state for nonlinear
models), Cmax/Cmin by locating the stationary points of the concentration with a bracketed root finder,
TimeAbove by locating the crossings of the level.  A fine grid that includes every dose time only
brackets the roots; the roots themselves are found to rounding (exact solution) or on the cubic
Hermite interpolant of the solver's values and slopes (ODE solution, error O(h⁴)).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from koopnb.errors import MetricError

GRID_POINTS = 240
"""Grid points per metric interval that bracket extrema and crossings of an ODE solution (plus every dose time)."""

SEGMENT_POINTS = 48
"""Grid points between consecutive dose events that bracket extrema and crossings of an exact solution.

Between dose events a linear model's output is a sum of exponentials; with real eigenvalues its slope
has at most n − 1 zeros there (n states), so a modest grid cannot miss a peak of the usual models."""


class Metric(ABC):
    """An exposure observable of one output over a time interval (hours)."""

    output: str | None

    @abstractmethod
    def horizon(self) -> float:
        """The last time (h) the metric looks at."""

    def integrals(self) -> bool:
        """Whether the metric needs the running integral of its output."""
        return False

    def output_name(self, model) -> str:
        """The output this metric reads: its own, or the model's default output."""
        name = self.output or model.default_output
        if name not in model.observables and name not in model.states:
            raise MetricError(f"{self}: {name!r} is not an output of the model; the outputs are "
                              f"{', '.join(model.observables)}")
        return name

    @abstractmethod
    def compute(self, trajectory, model) -> np.ndarray:
        """(batch,) the metric from a solved trajectory."""

    def evaluate(self, model, params, regimen, covariates: Mapping | None = None, **options) -> np.ndarray:
        """(batch,) the metric for each parameter set of ``params`` under ``regimen``."""
        trajectory = solve_for(model, [self], params, regimen, covariates, **options)
        return self.compute(trajectory, model)


def solve_for(model, metrics, params, regimen, covariates=None, **options):
    """Solve ``model`` once for everything a list of metrics needs; returns a Trajectory."""
    horizon = max(m.horizon() for m in metrics)
    integrals = tuple(dict.fromkeys(m.output_name(model) for m in metrics if m.integrals()))
    return model.solve(params, regimen, covariates, horizon=horizon, integrals=integrals, **options)


def _interval(name: str, t0: float, t1: float) -> tuple[float, float]:
    t0, t1 = float(t0), float(t1)
    if not (np.isfinite(t0) and np.isfinite(t1)) or t0 < 0 or t1 <= t0:
        raise MetricError(f"{name}: the interval must satisfy 0 <= t0 < t1 (hours), got ({t0:g}, {t1:g})")
    return t0, t1


def _suffix(output: str | None) -> str:
    return f", {output}" if output else ""


@dataclass(frozen=True)
class AUC(Metric):
    """Area under the output curve from t0 to t1 (h): output unit × h."""

    t0: float
    t1: float
    output: str | None = None

    def __post_init__(self):
        _interval("auc", self.t0, self.t1)

    def horizon(self) -> float:
        return float(self.t1)

    def integrals(self) -> bool:
        return True

    def compute(self, trajectory, model) -> np.ndarray:
        return trajectory.output_integral(self.output_name(model), self.t0, self.t1)

    def evaluate(self, model, params, regimen, covariates: Mapping | None = None, **options) -> np.ndarray:
        """(batch,) the AUC for each parameter set: from the closed-form impulse responses when the model and
        regimen allow it (boluses into a linear model; koopnb/simulate/closed.py), else from the general solution."""
        if not options:
            from koopnb.simulate.closed import closed_form_auc

            fast = closed_form_auc(model, self.output_name(model), self.t0, self.t1, params, regimen, covariates)
            if fast is not None:
                return fast
        return self.general(model, params, regimen, covariates, **options)

    def general(self, model, params, regimen, covariates: Mapping | None = None, **options) -> np.ndarray:
        """(batch,) the AUC from the general solution (exact spectral or ODE), whatever the regimen."""
        return Metric.evaluate(self, model, params, regimen, covariates, **options)

    def __str__(self) -> str:
        return f"auc({self.t0:g}, {self.t1:g}{_suffix(self.output)})"


@dataclass(frozen=True)
class Conc(Metric):
    """The output at time t (h)."""

    t: float
    output: str | None = None

    def __post_init__(self):
        if not np.isfinite(self.t) or self.t < 0:
            raise MetricError(f"conc: the time must be a finite number of hours >= 0, got {self.t:g}")

    def horizon(self) -> float:
        return float(self.t)

    def compute(self, trajectory, model) -> np.ndarray:
        return trajectory.output(self.output_name(model), [self.t])[:, 0]

    def __str__(self) -> str:
        return f"conc({self.t:g}{_suffix(self.output)})"


class _Curve:
    """One output of a trajectory on [t0, t1]: a bracketing grid and exact (or Hermite) evaluation.

    ``value``/``slope`` are right limits at the grid times and ``value_before``/``slope_before`` left
    limits; they differ only at dose starts and infusion ends, so left limits are evaluated there alone.
    """

    def __init__(self, trajectory, name: str, t0: float, t1: float):
        self.trajectory, self.name = trajectory, name
        batch = trajectory.batch
        breaks = trajectory.breakpoints()
        within = (breaks > t0) & (breaks < t1)
        # Doses outside [t0, t1] for every set add nothing; dropping them keeps the grid to the interval.
        breaks, within = breaks[:, within.any(axis=0)], within[:, within.any(axis=0)]
        inside = np.where(within, breaks, t0)
        if trajectory.exact:
            # Per set: SEGMENT_POINTS points in every stretch between breakpoints, denser just after the
            # dose that starts it (where absorption peaks), then t1.
            edges = np.sort(np.concatenate([np.full((batch, 1), t0), inside, np.full((batch, 1), t1)], axis=1), axis=1)
            u = np.arange(SEGMENT_POINTS) / SEGMENT_POINTS
            spacing = (u + u**2) / 2
            grid = edges[:, :-1, None] + np.diff(edges, axis=1)[:, :, None] * spacing
            self.grid = np.concatenate([grid.reshape(batch, -1), np.full((batch, 1), t1)], axis=1)
            segments = edges.shape[1] - 1
            jumps = np.broadcast_to(np.append(np.arange(1, segments) * SEGMENT_POINTS, self.grid.shape[1] - 1),
                                    (batch, segments))
            jump_times = np.take_along_axis(self.grid, jumps, axis=1)
        else:
            self.grid = np.unique(np.concatenate([np.linspace(t0, t1, 4 * GRID_POINTS), inside.ravel()]))
            jumps = np.flatnonzero(np.isin(self.grid, np.append(inside.ravel(), t1)))
            jump_times = self.grid[jumps]
        self.value, self.slope = trajectory.output_and_rate(name, self.grid)
        left_value, left_slope = trajectory.output_and_rate(name, jump_times, left=True)
        if not trajectory.exact:
            self.grid = np.broadcast_to(self.grid, self.value.shape)
            jumps = np.broadcast_to(jumps, left_value.shape)
        self.value_before, self.slope_before = self.value.copy(), self.slope.copy()
        np.put_along_axis(self.value_before, jumps, left_value, axis=1)
        np.put_along_axis(self.slope_before, jumps, left_slope, axis=1)
        # Nothing before t0 belongs to the interval (breakpoints outside it were parked at t0).
        start = self.grid == t0
        self.value_before[start], self.slope_before[start] = self.value[start], self.slope[start]

    def evaluate(self, times: np.ndarray, cell: np.ndarray, derivative: bool) -> np.ndarray:
        """Output (or its slope) at per-set times (batch, k) lying in grid cells ``cell`` (batch, k).

        For an ODE solution, the cubic Hermite interpolant of the cell's end values and slopes, written out
        because every set has its own times in its own cells: scipy.interpolate's CubicHermiteSpline/PPoly
        evaluate all columns at shared points, (batch · k) × batch values here instead of batch · k, and
        cannot hold the jump of a bolus at a knot (the right value at a cell's start, the left at its end).
        """
        if self.trajectory.exact:
            if derivative:
                return self.trajectory.output_rate(self.name, times)
            return self.trajectory.output(self.name, times)
        take = lambda a, c: np.take_along_axis(a, c, axis=1)  # noqa: E731
        a, b = take(self.grid, cell), take(self.grid, cell + 1)
        h = b - a
        s = (times - a) / h
        y0, y1 = take(self.value, cell), take(self.value_before, cell + 1)
        m0, m1 = take(self.slope, cell) * h, take(self.slope_before, cell + 1) * h
        if derivative:  # derivative of the cubic Hermite interpolant
            return ((6 * s**2 - 6 * s) * y0 + (3 * s**2 - 4 * s + 1) * m0
                    + (-6 * s**2 + 6 * s) * y1 + (3 * s**2 - 2 * s) * m1) / h
        return ((2 * s**3 - 3 * s**2 + 1) * y0 + (s**3 - 2 * s**2 + s) * m0
                + (-2 * s**3 + 3 * s**2) * y1 + (s**3 - s**2) * m1)

    def roots(self, cells: np.ndarray, derivative: bool, mask: np.ndarray, level: float = 0.0) -> np.ndarray:
        """Roots of (output or slope) − level in the given cells (batch, k), by safeguarded secant steps.

        Each cell where ``mask`` is True must bracket a sign change (the others are padding and are left
        at the cell's right end).  Secant steps from the two latest iterates (superlinear,
        order 1.618) are taken while they stay inside the bracket and the bracket keeps shrinking;
        otherwise the bracket is bisected (Dekker's method, as in Brent, *Algorithms for Minimization
        without Derivatives*, 1973, ch. 4).  The result is accurate to rounding of the evaluated curve.

        Kept hand-written because scipy.optimize.elementwise.find_root on the same brackets and curve was slower
        (benchmarks/metric_roots.py, CPU time inside root finding): 1.13× on Cmax and 1.17× on TimeAbove of 2·10⁴
        linear sets, 2.75× and 1.81× on 2,000 Michaelis–Menten sets (38 curve evaluations instead of 23): it
        evaluates both bracket ends again although the grid already holds the values there.
        """
        lo = np.take_along_axis(self.grid, cells, axis=1).copy()
        hi = np.take_along_axis(self.grid, cells + 1, axis=1).copy()
        right, left = (self.slope, self.slope_before) if derivative else (self.value, self.value_before)
        f_lo = np.take_along_axis(right, cells, axis=1) - level
        f_hi = np.take_along_axis(left, cells + 1, axis=1) - level
        previous, f_previous, latest, f_latest = lo.copy(), f_lo.copy(), hi.copy(), f_hi.copy()
        step = step_before = hi - lo
        done = ~mask
        for iteration in range(200):
            tolerance = 2 * np.finfo(float).eps * (1 + np.abs(latest))
            done = done | (f_latest == 0) | (hi - lo <= tolerance)
            if iteration:
                done |= np.abs(latest - previous) <= tolerance
                if np.all(done):
                    break
            slope = f_latest - f_previous
            guess = latest - f_latest * (latest - previous) / np.where(slope == 0, 1.0, slope)
            # Brent's test: a secant step must stay inside the bracket and be under half the step before last.
            secant = (slope != 0) & (guess > lo) & (guess < hi) & (np.abs(guess - latest) < np.abs(step_before) / 2)
            # A secant step below the tolerance means the latest iterate is the root to rounding.
            done |= (slope != 0) & (np.abs(guess - latest) <= 4 * tolerance)
            if np.all(done):
                break
            guess = np.where(secant, guess, lo + (hi - lo) / 2)
            f_guess = self.evaluate(guess, cells, derivative) - level
            # Finished roots stay where they are; the others move to the new guess.
            below = (np.sign(f_guess) == np.sign(f_lo)) & ~done
            above = ~below & ~done
            lo, f_lo = np.where(below, guess, lo), np.where(below, f_guess, f_lo)
            hi, f_hi = np.where(above, guess, hi), np.where(above, f_guess, f_hi)
            step_before, step = np.where(done, step_before, step), np.where(done, step, guess - latest)
            previous = np.where(done, previous, latest)
            f_previous = np.where(done, f_previous, f_latest)
            latest = np.where(done, latest, guess)
            f_latest = np.where(done, f_latest, f_guess)
        return latest


def _sign_cells(start: np.ndarray, end: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells (batch, k) where ``start > 0 > end`` for each set, padded with a repeated cell and a mask."""
    change = start[:, :-1] * end[:, 1:] < 0
    k = max(int(change.sum(axis=1).max(initial=0)), 1)
    order = np.argsort(~change, axis=1, kind="stable")[:, :k]
    mask = np.take_along_axis(change, order, axis=1)
    return np.minimum(order, width - 2), mask


@dataclass(frozen=True)
class _Extremum(Metric):
    t0: float
    t1: float
    output: str | None = None

    def __post_init__(self):
        _interval(self._label, self.t0, self.t1)

    def horizon(self) -> float:
        return float(self.t1)

    def compute(self, trajectory, model) -> np.ndarray:
        sign = 1.0 if self._label == "cmax" else -1.0
        curve = _Curve(trajectory, self.output_name(model), self.t0, self.t1)
        # Candidates: every grid value (right limits from t0 on, left limits up to t1, so both sides of a
        # jump inside the interval and neither a dose given exactly at t1) and every stationary point
        # inside a cell where the slope changes sign the right way.
        best = np.max(sign * np.concatenate([curve.value[:, :-1], curve.value_before[:, 1:]], axis=1), axis=1)
        cells, mask = _sign_cells(sign * curve.slope, sign * curve.slope_before, curve.grid.shape[1])
        rising = np.take_along_axis(sign * curve.slope, cells, axis=1) > 0
        mask &= rising
        if np.any(mask):
            stationary = curve.roots(cells, derivative=True, mask=mask)
            values = sign * curve.evaluate(stationary, cells, derivative=False)
            best = np.maximum(best, np.max(np.where(mask, values, -np.inf), axis=1))
        return sign * best

    def __str__(self) -> str:
        return f"{self._label}({self.t0:g}, {self.t1:g}{_suffix(self.output)})"


class Cmax(_Extremum):
    """Highest output value on [t0, t1] (h), located by root finding of the slope.

    A bolus given exactly at t0 counts, one given exactly at t1 does not (the curve is taken just before it),
    so Cmax(0, 24) of a q24h regimen is the peak of the first dosing interval.
    """

    _label = "cmax"


class Cmin(_Extremum):
    """Lowest output value on [t0, t1] (h); with t1 at the next dose time this is the trough just before it."""

    _label = "cmin"


@dataclass(frozen=True)
class TimeAbove(Metric):
    """Hours on [t0, t1] during which the output is at or above ``level``, from the located crossings."""

    level: float
    t0: float
    t1: float
    output: str | None = None

    def __post_init__(self):
        _interval("time_above", self.t0, self.t1)
        if not np.isfinite(self.level):
            raise MetricError("time_above: the level must be a finite number")

    def horizon(self) -> float:
        return float(self.t1)

    def compute(self, trajectory, model) -> np.ndarray:
        curve = _Curve(trajectory, self.output_name(model), self.t0, self.t1)
        start = curve.value[:, :-1] - self.level      # just after each cell's left end
        end = curve.value_before[:, 1:] - self.level  # just before each cell's right end
        width = np.diff(curve.grid, axis=1)
        above = np.where((start >= 0) & (end >= 0), width, 0.0)
        crossing = (start >= 0) != (end >= 0)
        total = above.sum(axis=1)
        if np.any(crossing):
            k = max(int(crossing.sum(axis=1).max()), 1)
            order = np.argsort(~crossing, axis=1, kind="stable")[:, :k]
            mask = np.take_along_axis(crossing, order, axis=1)
            root = curve.roots(order, derivative=False, mask=mask, level=self.level)
            lo = np.take_along_axis(curve.grid, order, axis=1)
            hi = np.take_along_axis(curve.grid, order + 1, axis=1)
            upward = np.take_along_axis(start, order, axis=1) < 0
            part = np.where(upward, hi - root, root - lo)
            total = total + np.where(mask, part, 0.0).sum(axis=1)
        return total

    def __str__(self) -> str:
        return f"time_above({self.level:g}, {self.t0:g}, {self.t1:g}{_suffix(self.output)})"


@dataclass(frozen=True)
class Window:
    """The indicator ``low <= metric < high`` (either bound may be None for a one-sided window)."""

    metric: Metric
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        if not isinstance(self.metric, Metric):
            raise MetricError(f"a window needs a metric such as AUC(0, 24), not {self.metric!r}")
        if self.low is None and self.high is None:
            raise MetricError("a window needs at least one bound (low, high or both)")
        for side in ("low", "high"):
            bound = getattr(self, side)
            if bound is not None and not (isinstance(bound, (int, float, np.integer, np.floating))
                                          and not isinstance(bound, bool) and np.isfinite(bound)):
                raise MetricError(f"the window's {side} bound must be a finite number or None (no bound on that "
                                  f"side), not {bound!r}")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise MetricError(f"the window's low bound {self.low:g} must be below its high bound {self.high:g}")

    def indicator(self, values: np.ndarray) -> np.ndarray:
        """1.0 where ``low <= value < high``, else 0.0."""
        inside = np.ones(np.shape(values), dtype=bool)
        if self.low is not None:
            inside &= values >= self.low
        if self.high is not None:
            inside &= values < self.high
        return inside.astype(float)

    def __str__(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        return f"{self.metric} in {low}..{high}"


@dataclass(frozen=True)
class Target:
    """A target expected value of a metric, for dose optimisation."""

    metric: Metric
    value: float

    def __post_init__(self):
        if not isinstance(self.metric, Metric):
            raise MetricError(f"a target needs a metric such as AUC(0, 24), not {self.metric!r}")
        if not np.isfinite(self.value):
            raise MetricError("the target value must be a finite number")

    def __str__(self) -> str:
        return f"E[{self.metric}] = {self.value:g}"


# -- the metric mini-language of MODEL_LANGUAGE.md ------------------------------------------------

_METRICS = {"auc": (AUC, 2), "cmax": (Cmax, 2), "cmin": (Cmin, 2), "conc": (Conc, 1),
            "time_above": (TimeAbove, 3)}
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_metric(text: str) -> Metric:
    """A metric from text: ``auc(0, 24)``, ``cmax(0, 24)``, ``cmin(t0, t1)``, ``conc(t)``,
    ``time_above(level, t0, t1)``, each with an optional output name as the last argument."""
    match = _CALL.match(text or "")
    if not match:
        raise MetricError(f"metric {text!r} is not of the form name(arguments), e.g. auc(0, 24)")
    name, inside = match.group(1), match.group(2)
    if name not in _METRICS:
        raise MetricError(f"unknown metric {name!r} in {text!r}; the metrics are {', '.join(_METRICS)}")
    kind, count = _METRICS[name]
    args = [a.strip() for a in inside.split(",")] if inside.strip() else []
    output = None
    if len(args) == count + 1 and not _NUMBER.match(args[-1]):
        output = args.pop()
        if not re.match(r"^[A-Za-z_]\w*$", output):
            raise MetricError(f"metric {text!r}: {output!r} is not an output name")
    if len(args) != count:
        raise MetricError(f"metric {text!r}: {name} takes {count} number{'s' if count > 1 else ''}"
                          " (and optionally an output name)")
    numbers = []
    for arg in args:
        if not _NUMBER.match(arg):
            raise MetricError(f"metric {text!r}: {arg!r} is not a number")
        numbers.append(float(arg))
    return kind(*numbers, output=output)


def parse_bounds(text: str) -> tuple[float | None, float | None]:
    """Window bounds ``LOW..HIGH``, ``..HIGH`` or ``LOW..``."""
    parts = (text or "").split("..")
    if len(parts) != 2 or not (parts[0].strip() or parts[1].strip()):
        raise MetricError(f"window bounds {text!r} are not of the form LOW..HIGH, ..HIGH or LOW..")
    bounds = []
    for part in parts:
        part = part.strip()
        if part and not _NUMBER.match(part):
            raise MetricError(f"window bounds {text!r}: {part!r} is not a number")
        bounds.append(float(part) if part else None)
    return bounds[0], bounds[1]


def parse_window(text: str) -> Window:
    """A window from text: ``METRIC in LOW..HIGH`` (or ``..HIGH`` / ``LOW..``)."""
    match = re.match(r"^(.*\))\s+in\s+(.*)$", (text or "").strip())
    if not match:
        raise MetricError(f"window {text!r} is not of the form 'METRIC in LOW..HIGH', e.g. auc(0, 24) in 400..600")
    return Window(parse_metric(match.group(1)), *parse_bounds(match.group(2)))
