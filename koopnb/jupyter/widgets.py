"""The interactive dosing dashboard: drag the dose, the window or the interval and see the probability.

``dashboard(model, dist, regimen, metric, window, step=...)`` returns a :class:`Dashboard` (an ipywidgets VBox):

- controls: metric (text in the metric language), a dose slider (amount of each dose, scaling the regimen,
  in multiples of ``step``), interval (q6h ... q24h rebuilding a repeated regimen over the same horizon) and
  a window range slider;
- a live readout ``P(in window) = 0.731 ± 0.0004`` and ``E[auc(0, 24)] = 512.3 ± 0.02``, computed with a
  modest tolerance (:data:`LIVE_RTOL`, :data:`LIVE_ATOL`) and shown with its error estimate;
- "Optimise dose" runs :func:`koopnb.optimize_dose` over the multiples of the step on the slider's range;
  "Apply optimum" puts that (rounded) dose into the dose slider;
- one matplotlib figure rendered to a PNG ``Image`` widget (works headless and in every front end): the
  median concentration with its 5–95 % band (with the window when the metric is a concentration), and the
  exposure histogram with the window shaded; probability versus dose appears after an optimisation.

Sliders update while dragging (``continuous_update=True``).  Two throttles keep the readout at one
probability per move: the front end keeps at most one change per widget in flight and merges the changes
made meanwhile, so the kernel only ever sees the latest value; and the figure, which costs more than the
readout, trails: it is redrawn when the controls rest for :data:`FIGURE_REST` s (in plain Python, without a
running event loop, at once), so that during a drag the kernel computes readouts only.  Results
that do not depend on the window (expected metric, bands, exposure draws) are cached per regimen shape and
scaled with the dose when the model is linear in it.  When it is not (a nonlinear model), the readout does not
simulate while the slider moves: the metric is simulated once per regimen shape at every draw for
:data:`DOSE_TABLE_POINTS` doses spanning the slider (when the panel opens, and at the first rest after a new
interval or metric, whose first readout simulates the draws at its dose), and each move interpolates in dose
and averages over the draws, with an error estimate that includes the interpolation's; once the figure is drawn
for a dose, the readout uses the draws simulated there.  Errors are shown as one line inside the panel.
"""

from __future__ import annotations

import asyncio
import html
import io
import math
import time
from dataclasses import replace

import ipywidgets as widgets
import numpy as np
import scipy.stats
from matplotlib import rc_context
from matplotlib.figure import Figure
from scipy.interpolate import PchipInterpolator

from koopnb.cards import format_value_error
from koopnb.distributions import Distribution
from koopnb.errors import KoopnbError
from koopnb.expectation import ExpectationResult, expectation, probability
from koopnb.expectation.adaptive import within
from koopnb.jupyter import DOSE_RANGE
from koopnb.metrics import Cmax, Cmin, Conc, Metric, Window, parse_metric
from koopnb.optimize import MAX_DOSES, DoseResult, optimize_dose, scales_with_dose
from koopnb.regimen import Regimen
from koopnb.units import metric_unit, output_label, result_unit

LIVE_RTOL = 1e-3
LIVE_ATOL = 1e-4
"""Tolerances of the live readout: enough digits to steer by, fast enough to follow the controls."""
INTERVALS = {"q6h": 6.0, "q8h": 8.0, "q12h": 12.0, "q24h": 24.0}
BAND_DRAWS = 1024
"""Scrambled Sobol draws of the distribution behind the band and the exposure histogram.  A quantile
of a few hundred weighted quadrature nodes jumps from node to node as their order changes over time
(a jagged band); 1024 equally weighted draws give a band within 0.1 mg/L of a 32768-draw one."""
DRAW_GROUPS = 8
"""A readout from the draws takes its error from their DRAW_GROUPS consecutive blocks: each block of 128
points of the scrambled Sobol sequence is itself a net, and the spread of the blocks' means over √8 is the
standard error if they were independent scrambles (randomised QMC); the whole set is usually more accurate."""
DOSE_TABLE_POINTS = 13
"""Doses, log-spaced over the dose slider, at which a metric that is not proportional to the dose (a nonlinear
model) is simulated for every draw; the readout interpolates between them (13 points: at most 0.005 from the
probability at the simulated dose for the Michaelis–Menten model of notebook 05)."""
TABLE_SOLVE = {"rtol": 1e-6, "atol": 1e-8}
"""ODE tolerances of the dose table: far below the readout's error, twice as fast as the default ones."""
DRAWS_RTOL = 1e-2
DRAWS_ATOL = 1e-2
"""Tolerances a readout from the draws is judged against (its "converged"): two digits to steer by."""
BAND_QUANTILES = (0.05, 0.5, 0.95)
CURVE_POINTS = 601
"""Time points of the band (plus each dose time), about 0.1 h apart over three days: smooth peaks."""
HISTOGRAM_BINS = 40
SLIDER_STEPS = 400
DOSE_POSITIONS = 20
"""The default dose step is the largest 1, 2, 2.5 or 5 × 10^k at most dose / DOSE_POSITIONS."""
FIGURE_REST = 0.25
"""Seconds: the figure is redrawn once the controls rest this long.  A redraw costs 2-4 readouts; drawn
every second during a drag (tried first), it held up the next readout by that much: p90 624 ms in Chromium."""
FONTS = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 10}
"""Points, at :data:`FIGURE_DPI`: readable at the figure's size on screen."""
FIGURE_DPI = 80
PANEL_SIZE = (4.2, 3.4)
"""Inches of each panel of the figure."""
ERROR_COLOUR = "#b91c1c"


def dashboard(model, dist: Distribution, regimen: Regimen | str, metric: Metric | str,
              window: Window | tuple[float | None, float | None] | None = None,
              covariates: dict[str, float] | None = None, step: float | None = None) -> Dashboard:
    """The dosing panel for ``model`` over the parameter distribution ``dist``.

    ``regimen``: a Regimen or its text (``"320 mg po q24h x3"``); ``metric``: a Metric or its text
    (``"auc(0, 24)"``); ``window``: a Window, ``(low, high)`` (either may be None), or None for the
    middle half of the metric's distribution; ``covariates``: the patient's covariate values (name -> value,
    the model's reference values otherwise); ``step``: the dose step in the regimen's unit (tablet or vial
    size; the slider, the optimum and every dose shown are multiples of it), by default a round number near
    a twentieth of the first dose.  Raises a KoopnbError for a bad regimen, metric, window, covariate or step.
    """
    if isinstance(regimen, str):
        regimen = Regimen.parse(regimen)
    if isinstance(metric, str):
        metric = parse_metric(metric)
    if window is not None and not isinstance(window, Window):
        window = Window(metric, *window)  # a reversed or non-finite window fails here, in one sentence
    if isinstance(window, Window):
        window = (window.low, window.high)
    if not isinstance(dist, Distribution):
        raise KoopnbError(f"dist must be a koopnb distribution (e.g. model.prior()), not {type(dist).__name__}")
    if not regimen.doses or regimen.doses[0].amount <= 0:
        raise KoopnbError("the dashboard needs a regimen whose first dose is positive")
    first = regimen.doses[0].amount
    if step is None:
        step = default_step(first)
    elif isinstance(step, bool) or not isinstance(step, (int, float)) or not (0 < step < math.inf):
        raise KoopnbError(f"the dose step must be a positive number, got {step!r}")
    elif step > first * DOSE_RANGE:
        raise KoopnbError(f"the dose step {step:g} is larger than {DOSE_RANGE:g} times the dose {first:g}")
    elif first * DOSE_RANGE / step > MAX_DOSES:
        raise KoopnbError(f"a dose step of {step:g} gives more than {MAX_DOSES:,} doses up to "
                          f"{first * DOSE_RANGE:g}; use a larger step")
    if covariates:
        model.arguments(None, covariates)  # unknown or non-finite covariates fail here, in one sentence
    return Dashboard(model, dist, regimen, metric, window, covariates, float(step))


def default_step(dose: float) -> float:
    """The largest 1, 2, 2.5 or 5 × 10^k not above ``dose`` / DOSE_POSITIONS (320 mg -> 10 mg)."""
    target = dose / DOSE_POSITIONS
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 2.5, 5) if m * power <= target * (1 + 1e-12))


def round_to_step(dose: float, step: float) -> float:
    """``dose`` rounded to the nearest multiple of ``step``, at least one step."""
    return max(1, round(dose / step)) * step


def dose_text(dose: float, step: float, unit: str | None = None) -> str:
    """``dose`` with the decimals of ``step`` (10 mg -> "320 mg", 2.5 mg -> "322.5 mg")."""
    return f"{dose:,.{_decimals(step)}f}" + (f" {unit}" if unit else "")


def _decimals(step: float) -> int:
    """Decimals that write every multiple of ``step`` exactly (at most 6): 10 -> 0, 2.5 -> 1, 0.25 -> 2."""
    return next((d for d in range(7) if abs(step * 10**d - round(step * 10**d)) < 1e-9 * step * 10**d), 6)


class Dashboard(widgets.VBox):
    """The panel; its controls and outputs are attributes so that code (and tests) can drive it.

    ``result`` holds the last DoseResult of "Optimise dose"; ``probability_result`` and
    ``expectation_result`` the last live ExpectationResults; ``elapsed`` the seconds of the last readout.
    """

    def __init__(self, model, dist: Distribution, regimen: Regimen, metric: Metric,
                 window: tuple[float | None, float | None] | None, covariates: dict[str, float] | None = None,
                 step: float | None = None):
        self.model, self.dist, self.base = model, dist, regimen
        self.covariates = dict(covariates) if covariates else None
        self.first_dose = regimen.doses[0]
        self.step = float(step) if step else default_step(self.first_dose.amount)
        self.unit = regimen.unit
        self.horizon = _horizon(regimen, metric)
        self.result: DoseResult | None = None
        self.probability_result: ExpectationResult | None = None
        self.expectation_result: ExpectationResult | None = None
        self.elapsed = 0.0
        self._metric = metric
        self._bands: dict[str, tuple] = {}
        self._exposures: dict[str, np.ndarray] = {}
        self._means: dict[tuple[str, str], ExpectationResult] = {}
        self._tables: dict[str, _DoseTable] = {}
        self._quiet = False
        self._figure = None
        self._draws = dist.from_normal(band_draws(dist.dim))
        self._trailing = _Trailing(self.redraw)

        amount = self.first_dose.amount
        low = max(self.step, math.floor(amount / DOSE_RANGE / self.step) * self.step)
        high = math.ceil(amount * DOSE_RANGE / self.step) * self.step
        self.metric = widgets.Text(value=str(metric), description="metric", continuous_update=False)
        self.dose = widgets.FloatSlider(value=amount, min=low, max=high, step=self.step,
                                        description=f"dose ({self.unit or 'amount'})", continuous_update=True,
                                        readout_format=f".{_decimals(self.step)}f",
                                        layout=widgets.Layout(width="420px"))
        self.interval = widgets.Dropdown(options=_interval_options(regimen), description="interval")
        self.interval.value = _current_interval(regimen)
        self.window = widgets.FloatRangeSlider(description="window", continuous_update=True, readout_format=".4g",
                                               layout=widgets.Layout(width="520px"))
        self.readout = widgets.HTML()
        self.message = widgets.HTML()
        self.optimise = widgets.Button(description="Optimise dose", icon="crosshairs")
        self.apply = widgets.Button(description="Apply optimum", icon="check", disabled=True)
        self.optimum = widgets.HTML()
        self.image = widgets.Image(format="png")
        self._reset_window(window)

        for control in (self.metric, self.dose, self.interval):
            control.observe(self._on_regimen_or_metric, names="value")
        self.window.observe(self._on_window, names="value")
        self.optimise.on_click(self._on_optimise)
        self.apply.on_click(self._on_apply)
        super().__init__(children=[
            widgets.HBox([self.metric, self.interval]),
            widgets.HBox([self.dose, self.window]),
            self.readout,
            widgets.HBox([self.optimise, self.apply, self.optimum]),
            self.message,
            self.image,
        ])
        if self._readout():
            self.redraw()  # the panel shows its figure from the start (and a nonlinear model's dose table)

    # -- what the controls say ------------------------------------------------------------------------
    def current_metric(self) -> Metric:
        return parse_metric(self.metric.value)

    def current_regimen(self) -> Regimen:
        """The regimen at the dose and interval of the controls."""
        dose = float(self.dose.value)
        if dose <= 0:
            raise KoopnbError("the dose must be positive")
        every = self.interval.value
        if every is None:
            return self.base.scaled(dose / self.first_dose.amount)
        first = self.first_dose
        return Regimen.repeat(dose, every=every, count=max(1, math.ceil(self.horizon / every - 1e-9)),
                              start=first.time, cmt=first.cmt, duration=first.duration, unit=self.base.unit)

    def current_window(self, metric: Metric) -> Window:
        """The slider's window; its right end at the slider's maximum means no upper bound."""
        low, high = self.window.value
        return Window(metric, low, None if high >= self.window.max else high)

    # -- updates --------------------------------------------------------------------------------------
    def update(self) -> None:
        """Recompute the readout for the current controls now; the figure follows (see the module text)."""
        if self._readout():
            self._trailing.request()

    def _readout(self) -> bool:
        """The readout for the current controls; False (and the error in the panel) when they are wrong."""
        started = time.perf_counter()
        try:
            metric = self.current_metric()
            regimen = self.current_regimen()
            window = self.current_window(metric)
            if scales_with_dose(self.model, [metric]):
                self.probability_result = probability(window, self.model, regimen, self.dist,
                                                      covariates=self.covariates, rtol=LIVE_RTOL, atol=LIVE_ATOL)
                self.expectation_result = self._mean(metric, regimen)
                cost = f"{self.probability_result.n_evals + self.expectation_result.n_evals:,} model evaluations"
            else:
                self.probability_result, self.expectation_result, cost = self._from_draws(metric, regimen, window)
            self.readout.value = _readout_html(self.probability_result, self.expectation_result, window,
                                               dose_text(float(self.dose.value), self.step, self.unit), cost)
            self.message.value = ""
        except KoopnbError as error:
            self.message.value = _error_html(error)
            return False
        finally:
            self.elapsed = time.perf_counter() - started
        return True

    def redraw(self) -> None:
        """Draw the figure for the current controls now.  For a metric not proportional to the dose, also
        build the regimen shape's dose table when it is new (so that it costs a rest, not a move), and show the
        readout from the metric simulated at this dose for the histogram (no interpolation error left)."""
        try:
            metric = self.current_metric()
            regimen = self.current_regimen()
            self.image.value = self._figure_png(metric, regimen, self.current_window(metric))
        except KoopnbError as error:
            self.message.value = _error_html(error)
            return
        if not scales_with_dose(self.model, [metric]):
            self._table(metric, regimen)
            self._readout()

    def _on_regimen_or_metric(self, change) -> None:
        if self._quiet:
            return
        if change["owner"] is self.metric:
            try:
                metric = self.current_metric()
            except KoopnbError as error:
                self.message.value = _error_html(error)
                return
            if str(metric) != str(self._metric):
                self._metric = metric
                self._reset_window(None)
        if change["owner"] is not self.dose:
            self._forget_optimum()
        self.update()

    def _on_window(self, change) -> None:
        if self._quiet:
            return
        self._forget_optimum()
        self.update()

    def _on_optimise(self, button=None) -> None:
        """Optimise the dose for the current window over the multiples of the step on the dose slider."""
        try:
            metric = self.current_metric()
            regimen = self.current_regimen()
            window = self.current_window(metric)
            self.result = optimize_dose(self.model, regimen, self.dist, window, (self.dose.min, self.dose.max),
                                        step=self.step, covariates=self.covariates)
            self.optimum.value = _optimum_html(self.result, self.step)
            self.apply.disabled = False
            self.message.value = ""
            self.redraw()
        except KoopnbError as error:
            self.message.value = _error_html(error)

    def _on_apply(self, button=None) -> None:
        """Put the optimum, a multiple of the step, into the dose slider (which updates the readout)."""
        if self.result is not None:
            self.dose.value = round_to_step(self.result.dose, self.step)

    def _forget_optimum(self) -> None:
        """An optimum found for other controls no longer applies."""
        if self.result is not None:
            self.result = None
            self.apply.disabled = True
            self.optimum.value = "<i>controls changed: press “Optimise dose” again</i>"

    # -- cached pieces ----------------------------------------------------------------------------------
    def _mean(self, metric: Metric, regimen: Regimen) -> ExpectationResult:
        """E[metric], reused across doses when the metric is proportional to the dose (linear model)."""
        shape, factor = _shape(regimen) if scales_with_dose(self.model, [metric]) else (regimen, 1.0)
        key = (str(shape), str(metric))
        if key not in self._means:
            self._means[key] = expectation(metric, self.model, shape, self.dist, rtol=LIVE_RTOL, atol=LIVE_ATOL,
                                           covariates=self.covariates)
        found = self._means[key]
        return found if factor == 1.0 else replace(found, value=found.value * factor, error=found.error * factor)

    def _from_draws(self, metric: Metric, regimen: Regimen,
                    window: Window) -> tuple[ExpectationResult, ExpectationResult, str]:
        """P(in window) and E[metric] as averages over the draws, for a metric not proportional to the dose,
        and where the draws' values came from (for the readout).

        The metric at the draws is the one simulated for the figure when this regimen has been drawn, else
        interpolated in dose from the regimen shape's dose table (no simulation while the slider moves), else
        (a new shape, whose table is built at the next rest: see :meth:`redraw`) simulated at this dose.  The
        error is the standard error from the DRAW_GROUPS blocks plus, when interpolated, the change from
        interpolating on every other table dose (an overestimate of the interpolation error)."""
        started = time.perf_counter()
        key = f"{metric}|{regimen}"
        dose = regimen.doses[0].amount
        table = None if key in self._exposures else self._tables.get(f"{metric}|{_shape(regimen)[0]}")
        if table is None or not table.covers(dose):
            values, coarse = self.exposures(metric, regimen), None
            how = f"{len(values):,} draws simulated at this dose"
        else:
            values, coarse = table.at(dose)
            how = (f"{len(values):,} draws, interpolated between {len(table.doses)} simulated doses "
                   f"({table.n_evals:,} model evaluations for the table)")
        rule = f"scrambled Sobol draws, error from {DRAW_GROUPS} blocks; {how}"
        results = []
        for quantity, function in ((window, window.indicator), (metric, lambda v: v)):
            means = function(values).reshape(DRAW_GROUPS, -1).mean(axis=1)
            value = float(means.mean())
            error = float(means.std(ddof=1) / math.sqrt(DRAW_GROUPS))
            if coarse is not None:
                error += abs(float(function(coarse).mean()) - value)
            if quantity is window and error == 0:  # every draw inside (or outside): the rule of three
                error = 3.0 / len(values)
            results.append(ExpectationResult(
                value=value, error=error, n_evals=0 if coarse is not None else len(values), method="qmc",
                converged=within(np.array(value), np.array(error), DRAWS_RTOL, DRAWS_ATOL),
                elapsed=time.perf_counter() - started, rule=rule,
                label="P(in window)" if quantity is window else f"E[{metric}]", quantity=quantity,
                unit=result_unit(self.model, quantity, regimen)))
        return results[0], results[1], how

    def _table(self, metric: Metric, regimen: Regimen) -> _DoseTable:
        """The dose table of the regimen's shape over the dose slider's range (built once per shape and metric)."""
        shape, _ = _shape(regimen)
        key = f"{metric}|{shape}"
        if key not in self._tables:
            doses = np.geomspace(self.dose.min, self.dose.max, DOSE_TABLE_POINTS)
            values = np.stack([metric.evaluate(self.model, self._draws, shape.scaled(float(d)), self.covariates,
                                               **TABLE_SOLVE) for d in doses])
            self._tables[key] = _DoseTable(doses, values)
        return self._tables[key]

    def band(self, output: str, regimen: Regimen) -> tuple[np.ndarray, np.ndarray]:
        """Times (h) and the 5 %, 50 %, 95 % quantiles of ``output`` over the draws, shape (3, times);
        reused across doses when the output is proportional to the dose."""
        shape, factor = _shape(regimen) if scales_with_dose(self.model, [Conc(0.0, output)]) else (regimen, 1.0)
        key = f"{output}|{shape}"
        if key not in self._bands:
            end = max(self.horizon, regimen.end)
            doses = regimen.times[regimen.times <= end]
            times = np.union1d(np.linspace(0.0, end, CURVE_POINTS), doses)
            curves = self.model.simulate(self._draws, shape, times, self.covariates)[output]
            self._bands[key] = (times, np.quantile(curves, BAND_QUANTILES, axis=0, method="hazen"))
        times, quantiles = self._bands[key]
        return times, quantiles * factor

    def exposures(self, metric: Metric, regimen: Regimen) -> np.ndarray:
        """The metric at each draw (BAND_DRAWS,), reused across doses when it is proportional to the dose."""
        shape, factor = _shape(regimen) if scales_with_dose(self.model, [metric]) else (regimen, 1.0)
        key = f"{metric}|{shape}"
        if key not in self._exposures:
            self._exposures[key] = metric.evaluate(self.model, self._draws, shape, self.covariates)
        return self._exposures[key] * factor

    def _reset_window(self, window: tuple[float | None, float | None] | None) -> None:
        """Slider range from the metric's spread over the draws; the window given, or its middle half."""
        try:
            regimen = self.current_regimen()
        except KoopnbError:
            regimen = self.base
        values = self.exposures(self._metric, regimen)
        q25, q75, q999 = np.quantile(values, (0.25, 0.75, 0.999), method="hazen")
        low, high = window if window is not None else (float(f"{q25:.2g}"), float(f"{q75:.2g}"))
        top = _nice(1.5 * max(q999, *(b for b in (low, high) if b is not None)))
        with self.window.hold_trait_notifications():
            self._quiet = True
            self.window.max = top
            self.window.min = 0.0
            self.window.step = top / SLIDER_STEPS
            self.window.value = (0.0 if low is None else float(low), top if high is None else float(high))
            self._quiet = False

    def _figure_png(self, metric: Metric, regimen: Regimen, window: Window) -> bytes:
        """Concentration band (left), exposure histogram (right), probability versus dose after an
        optimisation; the window drawn where it applies.  One figure for the panel's life: only the data
        artists change, which halves a redraw."""
        with rc_context(FONTS):
            if self._figure is None:
                self._figure = _figure()
            figure, (curve, histogram, doses) = self._figure
            for axes in (curve, histogram, doses):
                for artist in [*axes.lines, *axes.collections, *axes.patches]:
                    artist.remove()
                axes.containers.clear()  # their artists are gone; left, they would stay in the legend
                if axes.get_legend():
                    axes.get_legend().remove()
            self._draw_band(curve, metric, regimen, window)
            self._draw_histogram(histogram, metric, regimen, window)
            _arrange(figure, [curve, histogram, doses] if self.result is not None else [curve, histogram])
            doses.set_visible(self.result is not None)
            if self.result is not None:
                _draw_dose_curve(doses, self.result, float(self.dose.value), self.step)
            return _png(figure)

    def _draw_band(self, axes, metric: Metric, regimen: Regimen, window: Window) -> None:
        output = metric.output_name(self.model)
        times, (low, median, high) = self.band(output, regimen)
        axes.fill_between(times, low, high, color="C0", alpha=0.25, linewidth=0, label="5–95 %")
        axes.plot(times, median, color="C0", label="median")
        start, end = _metric_times(metric)
        if end > start:
            axes.axvspan(start, end, color="0.5", alpha=0.12, linewidth=0)
        else:
            axes.axvline(start, color="0.5", linewidth=1)
        axes.relim()
        axes.autoscale_view()
        if isinstance(metric, (Cmax, Cmin, Conc)):
            axes.axhspan(window.low or 0.0, window.high or axes.get_ylim()[1], color="C2", alpha=0.2,
                         label="window")
        axes.set(xlabel="Time (h)", ylabel=output_label(self.model, output, regimen.unit),
                 xlim=(times[0], times[-1]))
        axes.legend(loc="upper right")

    def _draw_histogram(self, axes, metric: Metric, regimen: Regimen, window: Window) -> None:
        values = self.exposures(metric, regimen)
        top = max(self.window.max, float(np.quantile(values, 0.999)))  # a larger dose moves past the slider
        density, edges = np.histogram(values, bins=np.linspace(0.0, top, HISTOGRAM_BINS + 1), density=True)
        axes.stairs(density, edges, fill=True, color="C0", alpha=0.6)  # one patch, not one per bin: faster
        axes.axvspan(window.low or 0.0, window.high if window.high is not None else self.window.max, color="C2",
                     alpha=0.2, label="window")
        unit = metric_unit(self.model, metric, regimen.unit)
        axes.set(xlabel=f"{metric} ({unit})" if unit else str(metric), ylabel="density", xlim=(0.0, top))
        axes.relim()
        axes.autoscale_view(scalex=False)
        axes.legend(loc="upper right")


class _DoseTable:
    """A metric at every draw for doses spanning the slider, ``values`` (n_doses, n_draws): interpolated in
    dose (monotone cubic in log dose, and in log metric when the metric is positive), also from every other
    dose for the interpolation's error estimate."""

    def __init__(self, doses: np.ndarray, values: np.ndarray):
        self.doses = doses
        self.n_evals = values.size
        self._log = bool(np.all(values > 0))
        scaled = np.log(values) if self._log else values
        self._fine = PchipInterpolator(np.log(doses), scaled, axis=0)
        self._coarse = PchipInterpolator(np.log(doses[::2]), scaled[::2], axis=0)

    def covers(self, dose: float) -> bool:
        return bool(self.doses[0] <= dose <= self.doses[-1])

    def at(self, dose: float) -> tuple[np.ndarray, np.ndarray]:
        """The metric at every draw (n_draws,) at ``dose``, and the same from every other table dose."""
        x = math.log(dose)
        fine, coarse = self._fine(x), self._coarse(x)
        return (np.exp(fine), np.exp(coarse)) if self._log else (fine, coarse)


class _Trailing:
    """Runs ``work`` once requests have stopped for FIGURE_REST s (a pause in a drag counts).  Without a
    running asyncio event loop (plain Python, tests) each request runs ``work`` at once; in a Jupyter kernel
    the loop runs it between widget messages."""

    def __init__(self, work):
        self.work = work
        self._handle: asyncio.TimerHandle | None = None

    def request(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.work()
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_later(FIGURE_REST, self._run)

    def _run(self) -> None:
        self._handle = None
        self.work()


def band_draws(dim: int) -> np.ndarray:
    """BAND_DRAWS standard normal points (BAND_DRAWS, dim): scrambled Sobol, fixed seed (the same band on
    every redraw)."""
    uniform = scipy.stats.qmc.Sobol(dim, scramble=True, seed=0).random(BAND_DRAWS)
    return scipy.stats.norm.ppf(uniform)


def _shape(regimen: Regimen) -> tuple[Regimen, float]:
    """The regimen scaled to a first dose of 1, and the factor that gives it back."""
    first = regimen.doses[0].amount if regimen.doses else 0.0
    if first <= 0:
        return regimen, 1.0
    return regimen.scaled(1.0 / first), first


def _horizon(regimen: Regimen, metric: Metric) -> float:
    """Hours the regimen covers (count × interval for a repeated regimen), at least the metric's span."""
    times = regimen.times
    span = times[-1] - times[0] + (times[1] - times[0]) if len(times) > 1 else 0.0
    return float(max(span, metric.horizon(), regimen.end))


def _interval_options(regimen: Regimen) -> list[tuple[str, float | None]]:
    return [(f"as given ({regimen})", None), *INTERVALS.items()]


def _current_interval(regimen: Regimen) -> float | None:
    """The regimen's interval when it is an evenly repeated dose listed in INTERVALS, else None."""
    gaps = np.diff(regimen.times)
    same = len({(d.amount, d.cmt, d.duration) for d in regimen.doses}) == 1
    if len(gaps) and same and np.allclose(gaps, gaps[0]) and float(gaps[0]) in INTERVALS.values():
        return float(gaps[0])
    return None


def _metric_times(metric: Metric) -> tuple[float, float]:
    if isinstance(metric, Conc):
        return metric.t, metric.t
    return metric.t0, metric.t1


def _nice(value: float) -> float:
    """``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


# -- rendering ----------------------------------------------------------------------------------------------
def _readout_html(chance: ExpectationResult, mean: ExpectationResult, window: Window, dose: str, cost: str) -> str:
    p, p_error = format_value_error(chance.value, chance.error)
    e, e_error = format_value_error(mean.value, mean.error)
    flags = "".join(f" <span style='color:{ERROR_COLOUR}'>(not converged)</span>" for r in (chance, mean)
                    if not r.converged)
    return (f"<div style='font-size:1.15em'><b>P(in window)</b> = {p} ± {p_error} &nbsp;&nbsp; "
            f"<b>{html.escape(mean.label)}</b> = {e} ± {e_error}{flags}</div>"
            f"<div style='opacity:.7;font-size:.85em'>dose {html.escape(dose)}; window {html.escape(str(window))}; "
            f"{html.escape(cost)}</div>")


def _optimum_html(result: DoseResult, step: float) -> str:
    """The recommendation, the current dose's certified probability beside it, the search space, any note."""
    unit = result.regimen.unit
    p, error = format_value_error(result.objective, result.error)
    now = ""
    if result.current is not None:
        q, q_error = format_value_error(result.current.value, result.current.error)
        now = f"; current {html.escape(dose_text(result.current_dose, step, unit))}: P = {q} ± {q_error}"
    notes = [text for text in ("" if result.feasible else result.message, result.note) if text]
    note = "".join(f" <span style='color:{ERROR_COLOUR}'>{html.escape(text)}</span>" for text in notes)
    return (f"<b>Optimal dose: {html.escape(dose_text(result.dose, step, unit))}</b>, "
            f"P(in window) = {p} ± {error}{now}{note}"
            f"<div style='opacity:.7;font-size:.85em'>searched {html.escape(result.search_space)}</div>")


def _error_html(error: Exception) -> str:
    return f"<span style='color:{ERROR_COLOUR}'>⚠ {html.escape(str(error))}</span>"


def _draw_dose_curve(axes, result: DoseResult, current: float, step: float) -> None:
    unit = result.regimen.unit
    axes.plot(result.curve_doses, result.curve_values, color="C1")
    axes.errorbar([result.dose], [result.objective], yerr=[result.error], fmt="o", color="C3",
                  label=f"optimum {dose_text(round_to_step(result.dose, step), step, unit)}")
    axes.axvline(current, color="0.4", linestyle="--", linewidth=1,
                 label=f"current {dose_text(current, step, unit)}")
    axes.set(xlabel=f"dose ({unit})" if unit else "dose", ylabel="P(in window)", ylim=(0, 1.02))
    axes.relim()
    axes.autoscale_view(scaley=False)
    axes.legend(loc="lower right")


def _figure():
    """Three panels; :func:`_arrange` places those shown (a layout engine would cost more than the plotting)."""
    figure = Figure(figsize=(3 * PANEL_SIZE[0], PANEL_SIZE[1]), dpi=FIGURE_DPI)
    return figure, figure.subplots(1, 3)


def _arrange(figure: Figure, shown: list) -> None:
    """The figure as wide as the panels ``shown``, side by side with fixed margins in inches."""
    width, height = PANEL_SIZE
    figure.set_size_inches(len(shown) * width, height)
    left, right, bottom, top = 0.75, 0.15, 0.6, 0.12
    for i, axes in enumerate(shown):
        axes.set_position([(i * width + left) / (len(shown) * width), bottom / height,
                           (width - left - right) / (len(shown) * width), (height - bottom - top) / height])


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # encoding dominated the redraw
    return buffer.getvalue()
