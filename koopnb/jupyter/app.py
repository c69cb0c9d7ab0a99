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
import html
import io
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
from IPython.display import display

import koopnb as kn
from koopnb.errors import KoopnbError
from koopnb.jupyter.widgets import default_step
from koopnb.units import metric_unit

STEADY_STATE_AFTER = 120.0
"""Hours after which the target is judged (5 days; a multiple of 6, 8, 12 and 24 h)."""
INTERVALS = (6.0, 8.0, 12.0, 24.0)
"""Dosing intervals (h) the page offers."""
WIDE = {"description_width": "120px"}
DEFAULT_MODEL = "vancomycin_goti2018"
"""The library model the page opens with: AUC-guided vancomycin, the commonest use of Bayesian dosing."""
DOSE_STEPS = {"vancomycin": 250.0}
"""mg: the dose step where practice fixes one (vancomycin doses are rounded to 250 mg, Rybak et al. 2020);
for other drugs the step is a round twentieth of the last dose given (koopnb.jupyter.widgets.default_step)."""
TARGET = re.compile(r"^(AUC24|pre-dose|trough|peak)\s+(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\b", re.IGNORECASE)
"""A library header's target that names its metric: "AUC24 400-600 mg*h/L", "pre-dose 10-15 ng/mL ..."."""
TARGET_METRICS = {"auc24": "auc24", "pre-dose": "trough", "trough": "trough", "peak": "peak"}


@dataclass(frozen=True)
class Choice:
    """A model the page offers: a library model (``kn.models``) or a user's ``.pk`` file, with its header
    (``# key: value`` lines: title, citation, route, covariates, target) and what a dose row means for it."""

    label: str
    name: str
    header: dict[str, str]
    path: Path | None = None  # the user's file; None for a library model

    def load(self) -> kn.Model:
        """The model (a ModelError, in one sentence, for a user's file that is not a valid model)."""
        if self.path is None:
            return kn.models.load(self.name)
        return kn.parse_model(self.path.read_text(encoding="utf-8"), name=self.name)

    @property
    def citation(self) -> str:
        return self.header.get("citation", f"your model file {self.path.name}" if self.path else self.name)

    @property
    def route(self) -> str:
        """"iv" (the page's doses are infusions) or "po"."""
        return "iv" if self.header.get("route", "").lower().startswith(("iv", "intravenous infusion")) else "po"

    @property
    def dose_step(self) -> float | None:
        return DOSE_STEPS.get(self.header.get("drug", "").lower())

    @property
    def window(self) -> tuple[str, float, float] | None:
        """The header's target as (metric key, low, high), or None when it names no metric and range."""
        found = TARGET.match(self.header.get("target", ""))
        if found is None:
            return None
        return TARGET_METRICS[found.group(1).lower()], float(found.group(2)), float(found.group(3))

    def covariate_help(self, name: str) -> str:
        """What the header says a covariate is ("Cockcroft-Gault creatinine clearance (mL/min, ...)"), or ""."""
        for part in self.header.get("covariates", "").split("; "):
            first, _, rest = part.partition(" ")
            if first == name:
                return rest
        return ""


METRICS: dict[str, tuple[str, Callable[[float], object]]] = {
    "auc24": ("AUC over 24 h at steady state", lambda t: kn.AUC(t, t + 24.0)),
    "trough": ("trough at steady state", lambda t: kn.Cmin(t, t + 24.0)),
    "peak": ("peak at steady state", lambda t: kn.Cmax(t, t + 24.0)),
}


def available_models(folder: str | os.PathLike | None = None) -> list[Choice]:
    """The library's models (``kn.models.list()``), then every ``.pk`` file in ``folder`` (or $KOOPNB_APP_MODELS)."""
    choices = []
    for name in kn.models.list()["name"]:
        header = kn.models.info(name)
        author, year = name.split("_")[-1][:-4], name[-4:]
        choices.append(Choice(f"{header['title']} ({author.capitalize()} {year})", name, header))
    folder = folder or os.environ.get("KOOPNB_APP_MODELS")
    if folder:
        for path in sorted(Path(folder).glob("*.pk")):
            header = _header(path.read_text(encoding="utf-8"))
            choices.append(Choice(header.get("title", path.stem), path.stem, header, path))
    return choices


def _header(text: str) -> dict[str, str]:
    """The ``# key: value`` lines of a model file (the library's header fields only)."""
    header = {}
    for line in text.splitlines():
        key, _, value = line.removeprefix("# ").partition(": ")
        if line.startswith("# ") and key in kn.models.FIELDS:
            header[key] = value.strip()
    return header


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
        start = next((i for i, c in enumerate(self.models) if c.name == DEFAULT_MODEL), 0)
        self.choice = self.models[start]
        self.posterior = None
        self.model = None
        self.pick = widgets.Dropdown(options=[(c.label, i) for i, c in enumerate(self.models)], value=start,
                                     description="Model", layout=widgets.Layout(width="760px"))
        self.model_note = widgets.HTML()
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
            widgets.HTML("<h2>koopnb dosing</h2>"), self.pick, self.model_note, widgets.HTML("<h3>Patient</h3>"),
            self.covariate_box,
            widgets.HTML("<h4>Doses given</h4>"), self.doses.widget, widgets.HTML("<h4>Measured levels</h4>"),
            self.levels.widget, self.estimate, self.status, self.fit_summary, widgets.HTML("<h3>Target</h3>"),
            widgets.HBox([self.metric, self.low, self.high]), widgets.HTML("<h3>Constraints</h3>"),
            widgets.HBox([self.intervals, widgets.VBox([self.step, self.max_dose, self.infusion, self.max_rate])]),
            widgets.HBox([self.current_amount, self.current_interval]), self.recommend, self.answer, self.plot,
            self.download])

    # -- model and patient --------------------------------------------------------------------
    def _use_model(self) -> None:
        self.choice = self.models[self.pick.value]
        self.posterior = None
        self.recommend.disabled = True
        self.covariate_fields = {}
        self.covariate_box.children = []
        try:
            self.model = self.choice.load()
        except KoopnbError as problem:  # a user's file that is not a valid model: say so, offer nothing
            self.model = None
            self.estimate.disabled = True
            self.model_note.value = _red(f"{self.choice.path.name}: {problem}")
            return
        self.estimate.disabled = False
        self.model_note.value = (f"<span style='opacity:.75'>{html.escape(self.choice.citation)}</span>"
                                 if self.choice.header.get("citation") else "")
        rows = []
        for name, reference in self.model.covariates.items():
            field = widgets.Text(description=name, placeholder=f"e.g. {reference:g}", style=WIDE)
            message = widgets.HTML()
            self.covariate_fields[name] = (field, message)
            help_text = html.escape(self.choice.covariate_help(name))
            rows.append(widgets.HBox([field, widgets.HTML(f"<span style='opacity:.75'>{help_text}</span>"),
                                      message]))
        self.covariate_box.children = rows
        units = _units(self.model)
        self.metric.options = [(f"{label} ({units[key]})" if units[key] else label, key)
                               for key, (label, _) in METRICS.items()]
        key, low, high = self.choice.window or ("auc24", math.nan, math.nan)
        self.metric.value, self.low.value, self.high.value = key, low, high
        self.step.value = self.choice.dose_step or 0.0  # 0: a twentieth of the last dose, set by Estimate

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
            if not math.isfinite(value) or value < 0:  # 0 is a category (DIAL 0: not on dialysis)
                message.value = _red(f"{name} must be a number, 0 or more")
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
        if not self.step.value > 0:
            self.step.value = default_step(float(last["AMT"]))
        self.recommend.disabled = False

    def _recommend(self) -> None:
        if self.posterior is None:
            raise KoopnbError("press Estimate first")
        low, high, step = self.low.value, self.high.value, self.step.value
        if math.isnan(low) or math.isnan(high):
            raise KoopnbError("enter the target range (from, to): this model's source gives none")
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
        unit = _units(self.model)[self.metric.value]
        answer = _answer_html(best, current, self.metric.value, low, high, unit, amounts, infusion)
        self.answer.value = f"{answer}{limit}.</p>"
        self.answer.add_class("koopnb-answer")
        shifted = kn.Window(METRICS[self.metric.value][1](STEADY_STATE_AFTER), low, high)
        page = kn.report(self.posterior, _regimen(current, infusion), shifted, recommended=_regimen(best, infusion),
                         citation=self.choice.citation, concentration_unit=_units(self.model)["trough"],
                         rtol=1e-3, atol=1e-4)
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


def _units(model: kn.Model) -> dict[str, str | None]:
    """The unit of each target metric for ``model`` with doses in mg (None when its units leave it unknown)."""
    units = {}
    for key, (_, metric) in METRICS.items():
        try:
            units[key] = metric_unit(model, metric(0.0), "mg")
        except KoopnbError:  # the model fixes its amounts in another unit: say nothing rather than guess
            units[key] = None
    return units


def _answer_html(best, current, metric: str, low: float, high: float, unit: str | None, amounts: np.ndarray,
                 infusion: float) -> str:
    label = METRICS[metric][0]
    unit = f" {unit}" if unit else ""
    def chance(row) -> str:
        return f"{100 * row['objective']:.1f} % ± {100 * row['error']:.1g} %"
    over = f" over {infusion:g} h" if infusion else ""
    return (f"<h3>Recommended: {best['amount']:g} mg every {best['interval']:g} h{over}</h3>"
            f"<p>Probability that the {label} is between {low:g} and {high:g}{unit}: <b>{chance(best)}</b> "
            f"(current regimen, {current['amount']:g} mg every {current['interval']:g} h: {chance(current)}).</p>"
            f"<p>Searched: multiples of {amounts[0]:g} mg from {amounts[0]:g} to {amounts[-1]:g} mg")


def _red(text: str) -> str:
    return f"<span style='color:#b00020'>{text}</span>"


def show() -> None:
    """Display the page (the Voilà notebook calls this)."""
    display(DosingApp().widget)
