"""The no-code dosing page: a clinician picks a model, types the patient's covariates, doses and levels, presses
Estimate, sets the target and the constraints, and gets a recommended regimen with its probability of target
attainment ± error estimate, a plot, and the dosing report.  ``koopnb app`` serves it with Voilà; in a notebook,
``DosingApp().widget`` is the same page.

Every entry is checked before anything is computed; a mistake is shown in red next to the field it concerns
(a negative dose, a level before the first dose, a missing covariate), never as a traceback.

The recommendation is for steady state: each candidate regimen (amount × interval within the constraints) is
given from time 0 and judged over one day starting at ``STEADY_STATE_AFTER`` hours — a multiple of every offered
interval, so every candidate, and the current regimen, is judged over the same day.  At steady state a linear
model forgets how it got there, so the doses already given do not change that answer; they and the levels
inform the patient's parameters through the posterior.
"""

from __future__ import annotations

import base64
import io
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
from IPython.display import display

import koopnb as kn
from koopnb.__main__ import THEOPHYLLINE
from koopnb.errors import KoopnbError

STEADY_STATE_AFTER = 120.0
"""Hours after which the target is judged (5 days; a multiple of 6, 8, 12 and 24 h)."""
INTERVALS = (6.0, 8.0, 12.0, 24.0)
WIDE = {"description_width": "120px"}
"""Dosing intervals (h) the page offers."""

VANCOMYCIN = """
# vancomycin in adults: Goti et al., Ther Drug Monit 40:212-221 (2018), doi:10.1097/FTD.0000000000000490
covariate CRCL = 120 [mL/min]
TVCL = 4.5  [L/h] ~ 39.8%
Vc   = 58.4 [L]   ~ 81.6%
Vp   = 38.4 [L]   ~ 57.1%
Q    = 6.5  [L/h]
CL   = TVCL * (CRCL/120)^0.8
d/dt(central)    = -CL/Vc*central - Q/Vc*central + Q/Vp*peripheral
d/dt(peripheral) =  Q/Vc*central - Q/Vp*peripheral
conc = central / Vc
conc ~ combined(3.4, 0.227)
dose central
"""


@dataclass(frozen=True)
class Choice:
    """A model the page offers: its text, its citation, and what a dose row means for it."""

    name: str
    text: str
    citation: str
    route: str  # "po" or "iv": how the page writes the regimen
    dose_step: float
    window: tuple[str, float, float]  # metric key, low, high


BUILT_IN = (
    Choice("Vancomycin, adults (Goti 2018)", VANCOMYCIN,
           "Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with and without "
           "hemodialysis have markedly different vancomycin pharmacokinetics. Ther Drug Monit 2018;40:212-221.",
           "iv", 250.0, ("auc24", 400.0, 600.0)),
    Choice("Theophylline (Boeckmann, Sheiner & Beal 1994)", THEOPHYLLINE,
           "Boeckmann AJ, Sheiner LB, Beal SL. NONMEM Users Guide Part V (1994); population values of the "
           "theophylline example.", "po", 25.0, ("auc24", 80.0, 120.0)),
)

METRICS: dict[str, tuple[str, Callable[[float], object]]] = {
    "auc24": ("AUC over 24 h at steady state (mg·h/L)", lambda t: kn.AUC(t, t + 24.0)),
    "trough": ("trough at steady state (mg/L)", lambda t: kn.Cmin(t, t + 24.0)),
    "peak": ("peak at steady state (mg/L)", lambda t: kn.Cmax(t, t + 24.0)),
}


def available_models(folder: str | os.PathLike | None = None) -> list[Choice]:
    """The built-in models and every ``.pk`` file in ``folder`` (or $KOOPNB_APP_MODELS)."""
    choices = list(BUILT_IN)
    folder = folder or os.environ.get("KOOPNB_APP_MODELS")
    if folder:
        for path in sorted(Path(folder).glob("*.pk")):
            choices.append(Choice(path.stem, path.read_text(), f"your model file {path.name}", "po", 25.0,
                                  ("auc24", 80.0, 120.0)))
    return choices


class _Table:
    """Rows of number fields with a red message beside each row, and an 'add row' button."""

    def __init__(self, kind: str, columns: tuple[str, ...], rows: list[tuple[float, ...]], add_label: str):
        self.kind = kind
        self.columns = columns
        self.rows: list[list[widgets.FloatText]] = []
        self.messages: list[widgets.HTML] = []
        self.box = widgets.VBox()
        self.add = widgets.Button(description=add_label, icon="plus")
        self.add.on_click(lambda _: self.append((math.nan,) * len(columns)))
        header = widgets.HBox([widgets.HTML(f"<b>{c}</b>", layout=widgets.Layout(width="140px")) for c in columns])
        self.widget = widgets.VBox([header, self.box, self.add])
        for row in rows:
            self.append(row)

    def append(self, values: tuple[float, ...]) -> None:
        fields = [widgets.FloatText(value=v, layout=widgets.Layout(width="140px"),
                                    tooltip=c) for v, c in zip(values, self.columns, strict=True)]
        for field, column in zip(fields, self.columns, strict=True):
            field.add_class(f"koopnb-{self.kind}-{column.split()[0].lower()}")
        message = widgets.HTML()
        message.add_class(f"koopnb-{self.kind}-message")
        self.rows.append(fields)
        self.messages.append(message)
        self.box.children = [*self.box.children, widgets.HBox([*fields, message])]

    def values(self) -> list[tuple[float, ...]]:
        return [tuple(float(f.value) for f in row) for row in self.rows]

    def clear_messages(self) -> None:
        for message in self.messages:
            message.value = ""

    def flag(self, row: int, text: str) -> None:
        self.messages[row].value = _red(text)


class DosingApp:
    """The page: model, patient, Estimate, target and constraints, Recommend, plot and report."""

    def __init__(self, models: list[Choice] | None = None):
        self.models = models or available_models()
        self.choice = self.models[0]
        self.posterior = None
        self.model = None
        self.pick = widgets.Dropdown(options=[(c.name, i) for i, c in enumerate(self.models)], value=0,
                                     description="Model", layout=widgets.Layout(width="480px"))
        self.covariate_box = widgets.VBox()
        self.covariate_fields: dict[str, tuple[widgets.Text, widgets.HTML]] = {}
        self.doses = _Table("dose", ("time (h)", "amount (mg)", "infusion (h)"), [(0.0, 1000.0, 1.0)], "add dose")
        self.levels = _Table("level", ("time (h)", "level (mg/L)"), [(11.5, math.nan)], "add level")
        self.estimate = widgets.Button(description="Estimate", button_style="primary", icon="calculator")
        self.status = widgets.HTML()
        self.fit_summary = widgets.HTML()
        self.metric = widgets.Dropdown(options=[(label, key) for key, (label, _) in METRICS.items()],
                                       description="Target")
        self.low = widgets.FloatText(description="from", layout=widgets.Layout(width="180px"))
        self.high = widgets.FloatText(description="to", layout=widgets.Layout(width="180px"))
        self.intervals = widgets.SelectMultiple(options=[(f"q{h:g}h", h) for h in INTERVALS], value=INTERVALS,
                                                description="Intervals")
        self.step = widgets.FloatText(description="Dose step (mg)", style=WIDE)
        self.max_dose = widgets.FloatText(value=3000.0, description="Max dose (mg)", style=WIDE)
        self.infusion = widgets.FloatText(value=1.0, description="Infusion (h)", style=WIDE)
        self.max_rate = widgets.FloatText(value=1000.0, description="Max rate (mg/h)", style=WIDE)
        self.current_amount = widgets.FloatText(description="Current (mg)", style=WIDE)
        self.current_interval = widgets.Dropdown(options=[(f"q{h:g}h", h) for h in INTERVALS], value=12.0,
                                                 description="every")
        self.recommend = widgets.Button(description="Recommend", button_style="success", icon="check",
                                        disabled=True)
        self.answer = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="760px"))
        self.download = widgets.HTML()
        self.pick.observe(lambda _: self._use_model(), names="value")
        self.estimate.on_click(lambda _: self._run(self._estimate))
        self.recommend.on_click(lambda _: self._run(self._recommend))
        self._use_model()
        self.widget = widgets.VBox([
            widgets.HTML("<h2>koopnb dosing</h2>"), self.pick, widgets.HTML("<h3>Patient</h3>"), self.covariate_box,
            widgets.HTML("<h4>Doses given</h4>"), self.doses.widget, widgets.HTML("<h4>Measured levels</h4>"),
            self.levels.widget, self.estimate, self.status, self.fit_summary, widgets.HTML("<h3>Target</h3>"),
            widgets.HBox([self.metric, self.low, self.high]), widgets.HTML("<h3>Constraints</h3>"),
            widgets.HBox([self.intervals, widgets.VBox([self.step, self.max_dose, self.infusion, self.max_rate])]),
            widgets.HBox([self.current_amount, self.current_interval]), self.recommend, self.answer, self.plot,
            self.download])

    # -- model and patient --------------------------------------------------------------------
    def _use_model(self) -> None:
        self.choice = self.models[self.pick.value]
        self.model = kn.parse_model(self.choice.text, name=self.choice.name)
        self.covariate_fields = {}
        rows = []
        for name, reference in self.model.covariates.items():
            field = widgets.Text(description=name, placeholder=f"e.g. {reference:g}")
            message = widgets.HTML()
            self.covariate_fields[name] = (field, message)
            rows.append(widgets.HBox([field, message]))
        self.covariate_box.children = rows
        key, low, high = self.choice.window
        self.metric.value, self.low.value, self.high.value = key, low, high
        self.step.value = self.choice.dose_step
        self.posterior = None
        self.recommend.disabled = True

    def _covariates(self) -> dict[str, float] | None:
        values, ok = {}, True
        for name, (field, message) in self.covariate_fields.items():
            message.value = ""
            text = field.value.strip()
            try:
                value = float(text)
            except ValueError:
                message.value = _red(f"enter the patient's {name}" if not text else f"{text!r} is not a number")
                ok = False
                continue
            if not math.isfinite(value) or value <= 0:
                message.value = _red(f"{name} must be a positive number")
                ok = False
            values[name] = value
        return values if ok else None

    def _table(self) -> pd.DataFrame | None:
        """The doses and levels as a NONMEM-style table, or None when a row is wrong (flagged beside it)."""
        self.doses.clear_messages()
        self.levels.clear_messages()
        ok = True
        doses = [r for r in self.doses.values() if not all(math.isnan(v) for v in r)]
        levels = [r for r in self.levels.values() if not all(math.isnan(v) for v in r)]
        for i, (time, amount, infusion) in enumerate(self.doses.values()):
            problems = [text for bad, text in ((math.isnan(time) or time < 0, "time must be 0 h or later"),
                                               (math.isnan(amount) or amount <= 0, "dose must be a positive amount"),
                                               (math.isnan(infusion) or infusion < 0,
                                                "infusion must be 0 (bolus) or more hours"))
                        if bad]
            if problems and (i < len(doses) or not all(math.isnan(v) for v in (time, amount, infusion))):
                self.doses.flag(i, "; ".join(problems))
                ok = False
        if not doses:
            self.doses.flag(0, "enter at least one dose")
            return None
        first = min(t for t, _, _ in doses)
        for i, (time, level) in enumerate(self.levels.values()):
            if math.isnan(time) and math.isnan(level):
                continue
            if math.isnan(level) or level < 0:
                self.levels.flag(i, "enter the measured level (0 or more)")
                ok = False
            elif math.isnan(time) or time < first:
                self.levels.flag(i, f"a level must be measured after the first dose ({first:g} h)")
                ok = False
        if not levels:
            self.levels.flag(0, "enter at least one measured level")
            return None
        if not ok:
            return None
        rows = [{"ID": 1, "TIME": t, "AMT": a, "DV": math.nan, "EVID": 1, "DUR": d} for t, a, d in doses]
        rows += [{"ID": 1, "TIME": t, "AMT": 0.0, "DV": c, "EVID": 0, "DUR": 0.0} for t, c in levels]
        return pd.DataFrame(rows).sort_values(["TIME", "EVID"], ascending=[True, False], kind="stable")

    # -- actions ------------------------------------------------------------------------------
    def _run(self, action: Callable[[], None]) -> None:
        """Run a button's action; a koopnb error is one red line, never a traceback."""
        self.status.value = ""
        try:
            action()
        except KoopnbError as problem:
            self.status.value = _red(str(problem))

    def _estimate(self) -> None:
        covariates, table = self._covariates(), self._table()
        if covariates is None or table is None:
            self.status.value = _red("Please correct the entries marked in red.")
            return
        self.estimate.disabled = True
        self.status.value = "Estimating the patient's parameters…"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", kn.ConvergenceWarning)
                self.posterior = kn.fit_individual(self.model, table, covariates=covariates, seed=1, progress=False)
        finally:
            self.estimate.disabled = False
        self.status.value = "Estimated."
        self.fit_summary.value = self.posterior.summary().to_html(float_format=lambda v: f"{v:.3g}")
        last = table[table["EVID"] == 1].iloc[-1]
        self.current_amount.value = float(last["AMT"])
        self.infusion.value = float(last["DUR"])
        self.recommend.disabled = False

    def _recommend(self) -> None:
        if self.posterior is None:
            raise KoopnbError("press Estimate first")
        low, high, step = self.low.value, self.high.value, self.step.value
        if not low < high:
            raise KoopnbError(f"the target's lower end ({low:g}) must be below its upper end ({high:g})")
        if step <= 0 or self.max_dose.value < step:
            raise KoopnbError("the dose step must be positive and no larger than the maximum dose")
        if not self.intervals.value:
            raise KoopnbError("allow at least one dosing interval")
        infusion = max(self.infusion.value, 0.0) if self.choice.route == "iv" else 0.0
        amounts = step * np.arange(1, math.floor(self.max_dose.value / step + 1e-9) + 1)
        if infusion > 0:
            amounts = amounts[amounts / infusion <= self.max_rate.value + 1e-9]
        if amounts.size == 0:
            raise KoopnbError(f"no dose of {step:g} mg or more can run over {infusion:g} h within "
                              f"{self.max_rate.value:g} mg/h")
        window = kn.Window(METRICS[self.metric.value][1](0.0), low, high)
        covariates = {name: float(field.value) for name, (field, _) in self.covariate_fields.items()}
        patient = self.posterior.to_distribution()
        self.answer.value = "Searching the regimens…"
        ranking = kn.optimize_regimen(self.model, patient, window, amounts.tolist(), list(self.intervals.value),
                                      duration=infusion, steady_state_after=STEADY_STATE_AFTER, unit="mg",
                                      covariates=covariates)
        best = ranking.iloc[0]
        current = kn.optimize_regimen(self.model, patient, window, [self.current_amount.value],
                                      [self.current_interval.value], duration=infusion,
                                      steady_state_after=STEADY_STATE_AFTER, unit="mg",
                                      covariates=covariates).iloc[0]
        if current["objective"] > best["objective"]:
            best = current
        limit = f" (at most {self.max_rate.value:g} mg/h over {infusion:g} h)" if infusion else ""
        answer = _answer_html(best, current, self.metric.value, low, high, amounts, infusion)
        self.answer.value = f"{answer}{limit}.</p>"
        self.answer.add_class("koopnb-answer")
        shifted = kn.Window(METRICS[self.metric.value][1](STEADY_STATE_AFTER), low, high)
        page = kn.report(self.posterior, _regimen(current, infusion), shifted, recommended=_regimen(best, infusion),
                         citation=self.choice.citation, concentration_unit="mg/L", rtol=1e-3, atol=1e-4)
        picture = io.BytesIO()
        page.plot().savefig(picture, format="png", dpi=110)
        self.plot.value = picture.getvalue()
        pdf = base64.b64encode(page.pdf()).decode()
        self.download.value = (f'<a download="dosing-report.pdf" href="data:application/pdf;base64,{pdf}" '
                               'class="koopnb-report">Download the dosing report (PDF)</a>')


def _regimen(row, infusion: float) -> kn.Regimen:
    """The candidate of a ranking row as the regimen optimize_regimen judged: from 0 h past the judged day."""
    count = math.ceil((STEADY_STATE_AFTER + 24.0) / row["interval"])
    doses = kn.Regimen.repeat(float(row["amount"]), every=float(row["interval"]), count=count, duration=infusion)
    return kn.Regimen(doses.doses, unit="mg")


def _answer_html(best, current, metric: str, low: float, high: float, amounts: np.ndarray, infusion: float) -> str:
    label = METRICS[metric][0]
    def chance(row) -> str:
        return f"{100 * row['objective']:.1f} % ± {100 * row['error']:.1g} %"
    over = f" over {infusion:g} h" if infusion else ""
    return (f"<h3>Recommended: {best['amount']:g} mg every {best['interval']:g} h{over}</h3>"
            f"<p>Probability that the {label} is between {low:g} and {high:g}: <b>{chance(best)}</b> "
            f"(current regimen, {current['amount']:g} mg every {current['interval']:g} h: {chance(current)}).</p>"
            f"<p>Searched: multiples of {amounts[0]:g} mg from {amounts[0]:g} to {amounts[-1]:g} mg")


def _red(text: str) -> str:
    return f"<span style='color:#b00020'>{text}</span>"


def show() -> None:
    """Display the page (the Voilà notebook calls this)."""
    display(DosingApp().widget)
