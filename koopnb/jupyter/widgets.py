"""The interactive dosing dashboard: move the window, the dose or the interval and see the probability.

``dashboard(model, dist, regimen, metric, window)`` returns a :class:`Dashboard` (an ipywidgets VBox):

- controls: metric (text in the metric language), dose (amount of each dose, scaling the regimen),
  interval (q6h ... q24h rebuilding a repeated regimen over the same horizon), window (range slider);
- a live readout ``P(in window) = 0.731 ± 0.0004`` and ``E[auc(0, 24)] = 512.3 ± 0.02``, computed with
  a modest tolerance (:data:`LIVE_RTOL`, :data:`LIVE_ATOL`) and shown with its error estimate;
- an "Optimise dose" button running :func:`koopnb.optimize_dose` over the current window;
- two matplotlib panels rendered to PNG ``Image`` widgets (works headless and in every front end): the
  median concentration with its 5–95 % band, and probability versus dose with the optimum marked.

Controls update only on committed changes (``continuous_update=False``), which debounces dragging;
results that do not depend on the window (expected metric, concentration bands) are cached, so a window
move costs one probability.  Errors are shown as one line inside the panel.
"""

from __future__ import annotations

import html
import io
import math
import time
from dataclasses import replace

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from koopnb.cards import format_value_error
from koopnb.distributions import Distribution
from koopnb.errors import KoopnbError
from koopnb.expectation import ExpectationResult, expectation, probability
from koopnb.expectation.gauss import tensor_rule
from koopnb.jupyter import DOSE_RANGE
from koopnb.metrics import Cmax, Cmin, Conc, Metric, Window, parse_metric
from koopnb.optimize import DoseResult, optimize_dose, scales_with_dose
from koopnb.regimen import Regimen

LIVE_RTOL = 1e-3
LIVE_ATOL = 1e-4
"""Tolerances of the live readout: enough digits to steer by, fast enough to follow the controls."""
INTERVALS = {"q6h": 6.0, "q8h": 8.0, "q12h": 12.0, "q24h": 24.0}
BAND_NODES = 600
"""Upper bound on the tensor Gauss–Hermite nodes used for the concentration bands."""
BAND_QUANTILES = (0.05, 0.5, 0.95)
CURVE_POINTS = 241
SLIDER_STEPS = 400
ERROR_COLOUR = "#b91c1c"


def dashboard(model, dist: Distribution, regimen: Regimen | str, metric: Metric | str,
              window: Window | tuple[float | None, float | None] | None = None,
              covariates: dict[str, float] | None = None) -> Dashboard:
    """The dosing panel for ``model`` over the parameter distribution ``dist``.

    ``regimen``: a Regimen or its text (``"320 mg po q24h x3"``); ``metric``: a Metric or its text
    (``"auc(0, 24)"``); ``window``: a Window, ``(low, high)`` (either may be None), or None for the
    middle half of the metric's distribution; ``covariates``: the patient's covariate values (name -> value,
    the model's reference values otherwise).  Raises a KoopnbError for a bad regimen, metric, window or
    covariate.
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
    if covariates:
        model.arguments(None, covariates)  # unknown or non-finite covariates fail here, in one sentence
    return Dashboard(model, dist, regimen, metric, window, covariates)


class Dashboard(widgets.VBox):
    """The panel; its controls and outputs are attributes so that code (and tests) can drive it.

    ``result`` holds the last DoseResult of "Optimise dose"; ``probability_result`` and
    ``expectation_result`` the last live ExpectationResults; ``elapsed`` the seconds of the last update.
    """

    def __init__(self, model, dist: Distribution, regimen: Regimen, metric: Metric,
                 window: tuple[float | None, float | None] | None, covariates: dict[str, float] | None = None):
        self.model, self.dist, self.base = model, dist, regimen
        self.covariates = dict(covariates) if covariates else None
        self.first_dose = regimen.doses[0]
        self.horizon = _horizon(regimen, metric)
        self.result: DoseResult | None = None
        self.probability_result: ExpectationResult | None = None
        self.expectation_result: ExpectationResult | None = None
        self.elapsed = 0.0
        self._metric = metric
        self._bands: dict[str, tuple] = {}
        self._means: dict[tuple[str, str], ExpectationResult] = {}
        self._quiet = False
        self._curve_figure = None
        nodes, self._weights = _band_rule(dist.dim)
        self._nodes = dist.from_normal(nodes)

        unit = regimen.unit or "amount"
        self.metric = widgets.Text(value=str(metric), description="metric", continuous_update=False)
        self.dose = widgets.BoundedFloatText(value=self.first_dose.amount, min=0.0, max=1e12,
                                             description=f"dose ({unit})", continuous_update=False)
        self.interval = widgets.Dropdown(options=_interval_options(regimen), description="interval")
        self.interval.value = _current_interval(regimen)
        self.window = widgets.FloatRangeSlider(description="window", continuous_update=False, readout_format=".4g",
                                               layout=widgets.Layout(width="520px"))
        self.readout = widgets.HTML()
        self.message = widgets.HTML()
        self.optimise = widgets.Button(description="Optimise dose", icon="crosshairs")
        self.optimum = widgets.HTML()
        self.curve_image = widgets.Image(format="png")
        self.dose_image = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self._reset_window(window)

        for control in (self.metric, self.dose, self.interval):
            control.observe(self._on_regimen_or_metric, names="value")
        self.window.observe(self._on_window, names="value")
        self.optimise.on_click(self._on_optimise)
        super().__init__(children=[
            widgets.HBox([self.metric, self.dose, self.interval]),
            widgets.HBox([self.window, self.optimise]),
            self.readout, self.optimum, self.message,
            widgets.HBox([self.curve_image, self.dose_image]),
        ])
        self.update()

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
    def update(self, redraw_curve: bool = True) -> None:
        """Recompute the readout (and the concentration panel) for the current controls."""
        started = time.perf_counter()
        try:
            metric = self.current_metric()
            regimen = self.current_regimen()
            window = self.current_window(metric)
            self.probability_result = probability(window, self.model, regimen, self.dist, covariates=self.covariates,
                                                  rtol=LIVE_RTOL,
                                                  atol=LIVE_ATOL)
            self.expectation_result = self._mean(metric, regimen)
            self.readout.value = _readout_html(self.probability_result, self.expectation_result, window)
            if redraw_curve or isinstance(metric, (Cmax, Cmin, Conc)):
                self.curve_image.value = self._curve_png(metric, regimen, window)
            self.message.value = ""
        except KoopnbError as error:
            self.message.value = _error_html(error)
        self.elapsed = time.perf_counter() - started

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
        if change["owner"] is self.dose and self.result is not None:
            self.dose_image.value = _dose_png(self.result, float(self.dose.value))
        else:
            self._forget_optimum()
        self.update()

    def _on_window(self, change) -> None:
        if self._quiet:
            return
        self._forget_optimum()
        self.update(redraw_curve=False)

    def _on_optimise(self, button=None) -> None:
        """Optimise the dose for the current window, from a quarter to four times the current dose."""
        try:
            metric = self.current_metric()
            regimen = self.current_regimen()
            window = self.current_window(metric)
            dose = float(self.dose.value)
            self.result = optimize_dose(self.model, regimen, self.dist, window, (dose / DOSE_RANGE, dose * DOSE_RANGE),
                                        covariates=self.covariates)
            self.optimum.value = _optimum_html(self.result)
            self.dose_image.value = _dose_png(self.result, dose)
            self.dose_image.layout.display = None
            self.message.value = ""
        except KoopnbError as error:
            self.message.value = _error_html(error)

    def _forget_optimum(self) -> None:
        """An optimum found for other controls no longer applies."""
        if self.result is not None:
            self.result = None
            self.optimum.value = "<i>controls changed: press “Optimise dose” again</i>"
            self.dose_image.value = b""
            self.dose_image.layout.display = "none"

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

    def _band(self, output: str, regimen: Regimen) -> tuple[np.ndarray, np.ndarray]:
        """Times (h) and the 5 %, 50 %, 95 % weighted quantiles of ``output``, shape (3, CURVE_POINTS);
        reused across doses when the output is proportional to the dose."""
        shape, factor = _shape(regimen) if scales_with_dose(self.model, [Conc(0.0, output)]) else (regimen, 1.0)
        key = f"{output}|{shape}"
        if key not in self._bands:
            times = np.linspace(0.0, max(self.horizon, regimen.end), CURVE_POINTS)
            curves = self.model.simulate(self._nodes, shape, times, self.covariates)[output]
            self._bands[key] = (times, weighted_quantiles(curves, self._weights, BAND_QUANTILES))
        times, quantiles = self._bands[key]
        return times, quantiles * factor

    def _reset_window(self, window: tuple[float | None, float | None] | None) -> None:
        """Slider range from the metric's spread at the band nodes; the window given, or its middle half."""
        try:
            regimen = self.current_regimen()
        except KoopnbError:
            regimen = self.base
        values = self._metric.evaluate(self.model, self._nodes, regimen, self.covariates)
        q25, q75, q999 = weighted_quantiles(values[:, None], self._weights, (0.25, 0.75, 0.999))[:, 0]
        low, high = window if window is not None else (float(f"{q25:.2g}"), float(f"{q75:.2g}"))
        top = _nice(1.5 * max(q999, *(b for b in (low, high) if b is not None)))
        with self.window.hold_trait_notifications():
            self._quiet = True
            self.window.max = top
            self.window.min = 0.0
            self.window.step = top / SLIDER_STEPS
            self.window.value = (0.0 if low is None else float(low), top if high is None else float(high))
            self._quiet = False

    def _curve_png(self, metric: Metric, regimen: Regimen, window: Window) -> bytes:
        output = metric.output_name(self.model)
        times, (low, median, high) = self._band(output, regimen)
        # One figure for the panel's life: only the data artists change, which halves a redraw.
        if self._curve_figure is None:
            self._curve_figure = _figure(5.2)
        figure, axes = self._curve_figure
        for artist in [*axes.lines, *axes.collections, *axes.patches]:
            artist.remove()
        axes.fill_between(times, low, high, color="C0", alpha=0.25, linewidth=0, label="5–95%")
        axes.plot(times, median, color="C0", label="median")
        start, end = _metric_times(metric)
        axes.axvspan(start, end, color="0.5", alpha=0.12, label=str(metric))
        axes.relim()
        axes.autoscale_view()
        if isinstance(metric, (Cmax, Cmin, Conc)):
            axes.axhspan(window.low or 0.0, window.high or axes.get_ylim()[1], color="C2", alpha=0.15, label="window")
        unit = self.model.units.get(output, "")
        axes.set(xlabel="time (h)", ylabel=f"{output} ({unit})" if unit else output, xlim=(times[0], times[-1]))
        axes.legend(fontsize="small", loc="upper right")
        return _png(figure)


def _shape(regimen: Regimen) -> tuple[Regimen, float]:
    """The regimen scaled to a first dose of 1, and the factor that gives it back."""
    first = regimen.doses[0].amount if regimen.doses else 0.0
    if first <= 0:
        return regimen, 1.0
    return regimen.scaled(1.0 / first), first


# -- numerics ---------------------------------------------------------------------------------------------
def weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles) -> np.ndarray:
    """Quantiles of each column of ``values`` (n, m) under node ``weights`` (n,) summing to 1: (len(q), m).

    Each distinct value sits at the middle of its weight in the cumulative distribution (the Hazen
    plotting position; tied nodes share one position) and the quantile interpolates linearly between
    those positions, so it is continuous in the quantile level and symmetric rules give symmetric bands.
    """
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    mass = np.asarray(weights)[order]
    end = np.cumsum(mass, axis=0)
    first = np.vstack([np.ones((1, values.shape[1]), bool), np.diff(ordered, axis=0) != 0])
    last = np.vstack([first[1:], np.ones((1, values.shape[1]), bool)])
    group_start = np.maximum.accumulate(np.where(first, end - mass, 0.0), axis=0)
    group_end = np.minimum.accumulate(np.where(last, end, np.inf)[::-1], axis=0)[::-1]
    cdf = 0.5 * (group_start + group_end)
    columns = np.arange(values.shape[1])
    rows = []
    for q in quantiles:
        upper = np.clip((cdf < q).sum(axis=0), 1, len(values) - 1)
        lower = upper - 1
        c0, c1 = cdf[lower, columns], cdf[upper, columns]
        v0, v1 = ordered[lower, columns], ordered[upper, columns]
        fraction = np.clip((q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0, 1.0)
        rows.append(v0 + fraction * (v1 - v0))
    return np.array(rows)


def _band_rule(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A tensor Gauss–Hermite rule of at most BAND_NODES nodes, odd orders (the median node is the
    typical patient), at least 3 points per dimension."""
    order = max(3, math.floor(BAND_NODES ** (1.0 / dim) + 1e-9))
    order -= 1 - order % 2
    return tensor_rule((order,) * dim)


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
def _readout_html(chance: ExpectationResult, mean: ExpectationResult, window: Window) -> str:
    p, p_error = format_value_error(chance.value, chance.error)
    e, e_error = format_value_error(mean.value, mean.error)
    flags = "".join(f" <span style='color:{ERROR_COLOUR}'>(not converged)</span>" for r in (chance, mean)
                    if not r.converged)
    return (f"<div style='font-size:1.15em'><b>P(in window)</b> = {p} ± {p_error} &nbsp;&nbsp; "
            f"<b>{html.escape(mean.label)}</b> = {e} ± {e_error}{flags}</div>"
            f"<div style='opacity:.7;font-size:.85em'>window {html.escape(str(window))}; "
            f"{chance.n_evals + mean.n_evals:,} model evaluations</div>")


def _optimum_html(result: DoseResult) -> str:
    unit = f" {html.escape(result.regimen.unit)}" if result.regimen.unit else ""
    p, error = format_value_error(result.objective, result.error)
    note = "" if result.feasible else f" <span style='color:{ERROR_COLOUR}'>{html.escape(result.message)}</span>"
    return (f"<b>Optimal dose: {result.dose:.4g}{unit}</b> ({html.escape(str(result.regimen))}), "
            f"P(in window) = {p} ± {error}{note}")


def _error_html(error: Exception) -> str:
    return f"<span style='color:{ERROR_COLOUR}'>⚠ {html.escape(str(error))}</span>"


def _dose_png(result: DoseResult, current: float) -> bytes:
    figure, axes = _figure(4.2)
    axes.plot(result.curve_doses, result.curve_values, color="C1")
    axes.errorbar([result.dose], [result.objective], yerr=[result.error], fmt="o", color="C3",
                  label=f"optimum {result.dose:.4g}")
    axes.axvline(current, color="0.4", linestyle="--", linewidth=1, label=f"current {current:.4g}")
    unit = f" ({result.regimen.unit})" if result.regimen.unit else ""
    axes.set(xlabel=f"dose{unit}", ylabel="P(in window)", ylim=(0, 1.02))
    axes.legend(fontsize="small", loc="lower right")
    return _png(figure)


def _figure(width: float):
    """A small figure with fixed margins (a layout engine would cost more than the plotting)."""
    figure = Figure(figsize=(width, 3.0), dpi=72)
    figure.subplots_adjust(left=0.15, right=0.97, bottom=0.16, top=0.96)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # encoding dominated the redraw
    return buffer.getvalue()
