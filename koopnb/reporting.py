"""The dosing report: one page a clinician can file in the chart, as HTML and as PDF.

``report(posterior, regimen, target, ...)`` gathers what the page says — the patient's doses and levels, the
fitted curve with its credible band, the current regimen's probability of target attainment, the recommended
regimen's, each with its error estimate, the model and its citation, the software version and a timestamp — and
returns a :class:`DosingReport` that renders it.  The PDF is drawn with matplotlib alone (its PDF backend; no
browser, no weasyprint), so it works on any machine koopnb installs on.  This module is presentation, not
numerical core: it may import matplotlib.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import os
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from koopnb.errors import KoopnbError
from koopnb.expectation import ExpectationResult, probability
from koopnb.metrics import Window
from koopnb.optimize import DoseResult, optimize_dose
from koopnb.regimen import Regimen
from koopnb.units import HOUR, metric_unit, name_unit

BAND = 0.90
"""Width of the credible band around the fitted curve: the 5th to the 95th percentile of the posterior."""
CURVE_DRAWS = 400
"""Posterior draws behind the band (the band is a display; the probabilities come from quadrature)."""
CURVE_POINTS = 300
"""Time points of the plotted curve."""


@dataclass(frozen=True)
class RegimenAnswer:
    """A regimen and its probability of target attainment with error estimate and model evaluations."""

    label: str
    regimen: Regimen
    probability: float
    error: float
    n_evals: int
    converged: bool


@dataclass(frozen=True)
class DosingReport:
    """Everything the dosing page says, in fields; ``html`` and :meth:`save` render it."""

    title: str
    patient: str
    created: dt.datetime
    software: str
    target: str
    current: RegimenAnswer
    recommended: RegimenAnswer | None
    note: str
    search: str
    model_name: str
    citation: str
    concentration_unit: str
    dose_rows: list[tuple[str, str, str, str]]
    level_rows: list[tuple[str, str]]
    parameter_rows: list[tuple[str, str, str, str]]
    curve: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
    levels: tuple[np.ndarray, np.ndarray]

    # -- rendering -----------------------------------------------------------------------------
    def plot(self) -> Figure:
        """The patient's levels over the fitted median and its 90 % band, the recommended regimen dashed."""
        figure = Figure(figsize=(7.0, 3.4), layout="constrained")
        self._draw_curve(figure.subplots())
        return figure

    def _draw_curve(self, ax) -> None:
        grid, low, median, high, forecast = self.curve
        ax.fill_between(grid, low, high, color="tab:blue", alpha=0.25, label=f"{BAND:.0%} credible band")
        ax.plot(grid, median, color="tab:blue", label="fitted (posterior median), current regimen")
        if forecast is not None:
            ax.plot(grid, forecast, "--", color="tab:green", label="recommended regimen (median)")
        times, values = self.levels
        ax.plot(times, values, "o", color="black", label="measured levels")
        unit = f" ({self.concentration_unit})" if self.concentration_unit else ""
        ax.set_xlabel(f"Time ({HOUR})", fontsize=10)
        ax.set_ylabel(f"Concentration{unit}", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)

    @property
    def html(self) -> str:
        """The page as one self-contained HTML document (the figure inlined as SVG)."""
        svg = io.StringIO()
        self.plot().savefig(svg, format="svg")
        picture = svg.getvalue()
        picture = picture[picture.index("<svg"):]
        e = html.escape
        answers = [self.current] + ([self.recommended] if self.recommended else [])
        rows = "".join(f"<tr><td>{e(a.label)}</td><td>{e(str(a.regimen))}</td><td>{e(_percent(a))}</td>"
                       f"<td>{a.n_evals:,}</td></tr>" for a in answers)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(self.title)}</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;font-size:11pt}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:.2em .6em;text-align:left}}
.note{{background:#f4f4f4;padding:.5em}} footer{{color:#555;font-size:9pt}}</style></head><body>
<h1>{e(self.title)}</h1>
<p><b>Patient:</b> {e(self.patient)} &nbsp; <b>Target:</b> {e(self.target)}</p>
<h2>Recommendation</h2>
<table><tr><th></th><th>regimen</th><th>probability of target attainment ± error estimate</th>
<th>model evaluations</th></tr>{rows}</table>
<p class="note">{e(self.note)}</p><p>{e(self.search)}</p>
<h2>Levels and fitted curve</h2>{picture}
{_html_table(("time (h)", "dose", "compartment", "infusion (h)"), self.dose_rows, "Doses given")}
{_html_table(("time (h)", f"level ({self.concentration_unit or 'as measured'})"), self.level_rows,
             "Measured levels")}
{_html_table(("parameter", "posterior median", "90 % credible interval", "unit"), self.parameter_rows,
             "Patient's parameters")}
<footer><p>Model: {e(self.model_name)}. {e(self.citation)}</p>
<p>{e(self.software)}; created {e(self.created.isoformat(timespec='seconds'))}. Probabilities are Koopman
expectations over the posterior; each carries a numerical error estimate.</p></footer>
</body></html>"""

    def _repr_html_(self) -> str:
        return self.html

    def pdf(self) -> bytes:
        """The page as a one-page A4 PDF (matplotlib's PDF backend)."""
        page = Figure(figsize=(8.27, 11.69))
        top = 0.96
        page.text(0.06, top, self.title, fontsize=16, weight="bold", va="top")
        page.text(0.06, top - 0.035, f"Patient: {self.patient}    Target: {self.target}", fontsize=10, va="top")
        y = top - 0.075
        page.text(0.06, y, "Recommendation", fontsize=12, weight="bold", va="top")
        for answer in [self.current] + ([self.recommended] if self.recommended else []):
            y -= 0.024
            page.text(0.08, y, f"{answer.label}: {answer.regimen}  —  P = {_percent(answer)}", fontsize=10, va="top")
        for line in textwrap.wrap(self.note, 110) + textwrap.wrap(self.search, 110):
            y -= 0.02
            page.text(0.08, y, line, fontsize=9, va="top")
        ax = page.add_axes((0.10, y - 0.36, 0.84, 0.30))
        self._draw_curve(ax)
        y -= 0.40
        y = _pdf_table(page, y, "Doses given", ("time (h)", "dose", "compartment", "infusion (h)"), self.dose_rows)
        y = _pdf_table(page, y, "Measured levels", ("time (h)", "level"), self.level_rows)
        _pdf_table(page, y, "Patient's parameters", ("parameter", "median", "90 % interval", "unit"),
                   self.parameter_rows)
        page.text(0.06, 0.045, f"Model: {self.model_name}. {self.citation}", fontsize=8, va="bottom", wrap=True)
        page.text(0.06, 0.025, f"{self.software}; created {self.created.isoformat(timespec='seconds')}. "
                  "Probabilities carry numerical error estimates.", fontsize=8, va="bottom")
        buffer = io.BytesIO()
        with PdfPages(buffer, metadata={"Title": self.title, "Creator": self.software}) as pdf:
            pdf.savefig(page)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report to ``path`` (``.html`` or ``.pdf``) atomically: a complete file or none."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".html", ".htm", ".pdf"):
            raise KoopnbError(f"a report is saved as .html or .pdf, not {path.name!r}")
        if not path.parent.is_dir():
            raise KoopnbError(f"cannot save the report to {str(path)!r}: "
                              f"the folder {str(path.parent)!r} does not exist")
        content = self.pdf() if suffix == ".pdf" else self.html.encode("utf-8")
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


def report(posterior, regimen: Regimen, target: Window | Sequence[Window], *, bounds: tuple[float, float] | None = None,
           step: float | None = None, recommended: Regimen | DoseResult | None = None, citation: str = "",
           concentration_unit: str = "", title: str = "Dosing report", rtol: float = 1e-4,
           atol: float = 1e-5) -> DosingReport:
    """A one-page dosing report for one patient's ``posterior`` (from :func:`koopnb.fit_individual`).

    ``regimen`` is the current (or proposed) regimen; ``target`` a Window or a list of windows that must all
    hold.  The recommendation is ``recommended`` when given (a Regimen, or a DoseResult from
    :func:`koopnb.optimize_dose`), otherwise the dose search of :func:`koopnb.optimize_dose` within ``bounds``
    (multiples of ``step``).  A recommendation whose probability is below the current regimen's is not
    offered: the page says to keep the current regimen.  ``citation`` names the model's source;
    ``concentration_unit`` labels levels and curves (koopnb never converts units); without it, the unit the
    model's units and the regimen's dose unit give the fitted output (:func:`koopnb.units.name_unit`), as the
    target's window shows its metric's unit.
    """
    windows = [target] if isinstance(target, Window) else list(target)
    if not windows or not all(isinstance(w, Window) for w in windows):
        raise KoopnbError("the report's target must be a Window or a list of windows")
    model, subject = posterior.model, posterior.subject
    concentration_unit = concentration_unit or name_unit(model, posterior.output, regimen.unit) or ""
    covariates = _covariates(subject)
    patient_distribution = posterior.to_distribution()
    chance = windows[0] if len(windows) == 1 else windows

    def answer(label: str, candidate: Regimen) -> RegimenAnswer:
        result: ExpectationResult = probability(chance, model, candidate, patient_distribution,
                                                covariates=covariates, rtol=rtol, atol=atol)
        return RegimenAnswer(label, candidate, result.value, result.error, result.n_evals, result.converged)

    current = answer("current regimen", regimen)
    search = ""
    if isinstance(recommended, DoseResult):
        best = recommended
    elif recommended is None and bounds is not None:
        best = optimize_dose(model, regimen, patient_distribution, chance, bounds, step, covariates=covariates,
                             rtol=rtol, atol=atol)
    else:
        best = None
    if best is not None:
        proposal = RegimenAnswer("recommended regimen", best.regimen, best.objective, best.error, best.n_evals,
                                 best.converged)
        unit = f" {regimen.unit}" if regimen.unit else ""
        low, high = best.curve_doses.min(), best.curve_doses.max()
        search = (f"Searched: multiples of {step:g}{unit} between {low:g} and {high:g}{unit}." if step else
                  f"Searched: doses between {low:g} and {high:g}{unit}.")
    elif isinstance(recommended, Regimen):
        proposal = answer("recommended regimen", recommended)
    else:
        proposal = None
    note = _advice(current, proposal)
    if proposal is not None and proposal.probability < current.probability:
        proposal = None
    return DosingReport(
        title=title, patient="(no ID given)" if subject.id is None else str(subject.id),
        created=dt.datetime.now(dt.UTC), software=f"koopnb {_version()}",
        target=" and ".join(_window_text(w, model, regimen) for w in windows),
        current=current, recommended=proposal, note=note, search=search, model_name=model.name or "unnamed model",
        citation=citation or "No citation given.", concentration_unit=concentration_unit,
        dose_rows=[(f"{d.time:g}", f"{d.amount:g}" + (f" {regimen.unit}" if regimen.unit else ""),
                    d.cmt or "default", f"{d.duration:g}" if d.duration else "bolus") for d in subject.regimen.doses],
        level_rows=[(f"{t:g}", f"{v:g}" + (" (below limit)" if b else ""))
                    for t, v, b in zip(subject.times, subject.values, subject.below, strict=True)],
        parameter_rows=_parameter_rows(posterior),
        curve=_curves(posterior, regimen, proposal.regimen if proposal else None),
        levels=(np.asarray(subject.times)[~subject.below], np.asarray(subject.values)[~subject.below]))


def _window_text(window: Window, model, regimen: Regimen) -> str:
    """A window with its metric's unit: "auc(0, 24) in 400..600 mg·h/L"."""
    unit = metric_unit(model, window.metric, regimen.unit)
    return f"{window} {unit}" if unit else str(window)


def _advice(current: RegimenAnswer, proposal: RegimenAnswer | None) -> str:
    if proposal is None:
        return "No other regimen was searched; the probability above is the current regimen's."
    if proposal.probability < current.probability:
        return (f"Keep the current regimen: the best regimen searched reaches {_percent(proposal)}, "
                f"below the current {_percent(current)}.")
    gain = proposal.probability - current.probability
    return (f"The recommended regimen raises the probability of target attainment by {100 * gain:.1f} "
            f"percentage points (from {_percent(current)} to {_percent(proposal)}).")


def _percent(answer: RegimenAnswer) -> str:
    flag = "" if answer.converged else " (not converged)"
    return f"{100 * answer.probability:.1f} % ± {100 * answer.error:.1g} %{flag}"


def _parameter_rows(posterior) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, values in posterior.samples.items():
        low, median, high = np.quantile(values, [0.05, 0.5, 0.95])
        rows.append((name, f"{median:.3g}", f"{low:.3g} – {high:.3g}", posterior.model.units.get(name, "")))
    return rows


def _curves(posterior, regimen: Regimen, recommended: Regimen | None):
    """Time grid, band and median under the fitted history, and the recommended regimen's median."""
    subject = posterior.subject
    last = max([float(np.max(subject.times, initial=0.0)), regimen.end, subject.regimen.end]) + 24.0
    grid = np.linspace(0.0, last, CURVE_POINTS)
    parameters = posterior.parameters(CURVE_DRAWS, seed=0)
    covariates = _covariates(subject)
    curve = posterior.model.simulate(parameters, subject.regimen, grid, covariates)[posterior.output]
    low, median, high = np.quantile(curve, [(1 - BAND) / 2, 0.5, (1 + BAND) / 2], axis=0)
    forecast = None
    if recommended is not None:
        forecast = np.quantile(posterior.model.simulate(parameters, recommended, grid, covariates)[posterior.output],
                               0.5, axis=0)
    return grid, low, median, high, forecast


def _html_table(header: Sequence[str], rows, caption: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h2>{e(caption)}</h2><table><tr>{head}</tr>{body}</table>"


def _pdf_table(page: Figure, y: float, caption: str, header: Sequence[str], rows) -> float:
    """Write a small table as text lines from height ``y`` down; returns the height below it."""
    page.text(0.06, y, caption, fontsize=11, weight="bold", va="top")
    columns = np.linspace(0.08, 0.80, len(header))
    for line in [header, *rows[:12]]:
        y -= 0.019
        for x, cell in zip(columns, line, strict=True):
            page.text(x, y, str(cell), fontsize=8.5, va="top", weight="bold" if line is header else "normal")
    if len(rows) > 12:
        y -= 0.019
        page.text(0.08, y, f"… and {len(rows) - 12} more rows (see the HTML report)", fontsize=8, va="top")
    return y - 0.03


def _covariates(subject):
    """The patient's covariates as the engine takes them: a history (DataFrame) as it is, constants or None."""
    covariates = subject.covariates
    if isinstance(covariates, pd.DataFrame):
        return covariates
    return covariates or None


def _version() -> str:
    from koopnb import __version__

    return __version__
