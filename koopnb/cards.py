"""Rich display of koopnb results: MIME bundles for JupyterLab, classic Notebook, VS Code and terminals.

Pure functions from a result's fields to strings and dicts, beside the core objects they show: the
objects' ``_repr_mimebundle_``/``_repr_html_`` call them, so results render in any notebook without
``%load_ext``, and nothing here imports IPython, ipywidgets or matplotlib.  Every bundle has a
``text/plain`` line for terminals, a ``text/html`` fallback for front ends without the koopnb lab
extension, and (for results the extension draws as cards) a JSON payload under
:data:`RESULT_MIME_TYPE` whose keys match ``extension/src/card/result.ts``:

    {"kind": "expectation"|"probability"|"dose"|"regimen"|"posterior", "title", "value", "error",
     "n_evals", "method", "converged", "elapsed", "metric"?, "window"? [low|null, high|null],
     "probability"?, "dose"?, "unit"?, "regimen"?, "rows"? [{"regimen", "probability", "error"}],
     "warnings"?}
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from koopnb.expectation.integrand import AllWindows
from koopnb.inference.sampler import TRUSTED_LENGTH
from koopnb.metrics import Metric, Window

RESULT_MIME_TYPE = "application/vnd.koopnb.result+json"
"""The MIME type the koopnb JupyterLab extension renders as a result card."""

_CARD_STYLE = ("border:1px solid #8884;border-radius:6px;padding:6px 10px;margin:2px 0;"
               "font-family:var(--jp-ui-font-family, sans-serif);display:inline-block;min-width:18em")


# -- bundles: one entry per displayable object --------------------------------------------------------
def bundle(obj: Any) -> dict[str, Any]:
    """The MIME bundle of a koopnb object (Model, ExpectationResult, DoseResult, posterior): what a
    notebook shows for it."""
    if not hasattr(obj, "_repr_mimebundle_"):
        raise TypeError(f"koopnb has no rich display for {type(obj).__name__}")
    return obj._repr_mimebundle_()


def model_bundle(model) -> dict[str, str]:
    """Equations as written (LaTeX, and text lines for terminals) and the parameter table; a model is not a
    result, so it has no card payload."""
    text = "\n".join([repr(model), *(f"  {line}" for line in model.equations_text())])
    return {"text/plain": text, "text/latex": model._repr_latex_(), "text/html": model_html(model)}


def expectation_bundle(result) -> dict[str, Any]:
    """A card for a single-valued ExpectationResult; an HTML table for a list of quantities."""
    data: dict[str, Any] = {"text/plain": expectation_text(result), "text/html": expectation_html(result)}
    if np.ndim(result.value) == 0:
        data[RESULT_MIME_TYPE] = expectation_payload(result)
    return data


def dose_bundle(result) -> dict[str, Any]:
    """The optimal dose as a card, with HTML and text fallbacks."""
    return {"text/plain": dose_text(result), "text/html": dose_html(result), RESULT_MIME_TYPE: dose_payload(result)}


def posterior_bundle(posterior) -> dict[str, Any]:
    """A posterior's card (medians and 90 % intervals in the title) and its summary table as HTML."""
    return {"text/plain": repr(posterior), "text/html": posterior_html(posterior),
            RESULT_MIME_TYPE: posterior_payload(posterior)}


def posterior_summary_bundle(posterior) -> dict[str, str]:
    """The posterior's summary table without a card (what %pkfit shows: the table is the point there)."""
    return {"text/plain": f"{posterior!r}\n{posterior.summary().to_string(float_format=lambda x: f'{x:.4g}')}",
            "text/html": posterior_html(posterior)}


# -- payloads for the lab extension's cards -----------------------------------------------------------
def expectation_payload(result, title: str | None = None) -> dict[str, Any]:
    """The card payload of a single-valued ExpectationResult; ``kind`` is "probability" for a window (or
    several at once), with the metric and the window's bounds read from the result's ``quantity``."""
    label = result.label if isinstance(result.label, str) else ""
    quantity = result.quantity
    chance = isinstance(quantity, (Window, AllWindows))
    payload = {"kind": "probability" if chance else "expectation", "title": title or label or None,
               **_cost(result), "value": float(result.value), "error": float(result.error)}
    if isinstance(quantity, Window):
        payload["metric"] = str(quantity.metric)
        payload["window"] = [_bound(quantity.low), _bound(quantity.high)]
    elif isinstance(quantity, Metric):
        payload["metric"] = str(quantity)
    if chance:
        payload["probability"] = float(result.value)
    return _without_none(payload)


def dose_payload(result) -> dict[str, Any]:
    """The card payload of a DoseResult: optimal dose, its regimen and the objective there."""
    target = result.target
    metric, window = _target_parts(target)
    probability = getattr(result.certified, "value", None) if window is not None else None
    payload = {
        "kind": "dose", "title": f"Optimal dose for {_target_text(target)}", "value": float(result.objective),
        "error": float(result.error), "n_evals": int(result.n_evals), "method": str(result.method),
        "converged": bool(result.converged), "elapsed": float(result.elapsed), "metric": metric,
        "window": list(window) if window is not None else None,
        "probability": float(probability) if probability is not None else None, "dose": float(result.dose),
        "unit": result.regimen.unit, "regimen": str(result.regimen),
        "warnings": _dose_warnings(result),
    }
    return _without_none(payload)


def posterior_payload(posterior) -> dict[str, Any]:
    """The card payload of a Posterior or PopulationPosterior: draws, sampler and a short summary."""
    draws, walkers, _ = posterior.draws.shape
    summary = posterior.summary()
    parts = [f"{name} {row['median']:.4g} [{row['5%']:.4g}, {row['95%']:.4g}]" for name, row in summary.iterrows()]
    diagnostics = posterior.diagnostics
    steps = int(diagnostics.get("steps", draws))
    tau = max(diagnostics.get("autocorrelation_time", {}).values(), default=math.nan)
    warnings = []
    if math.isfinite(tau) and steps < TRUSTED_LENGTH * tau:
        warnings.append(f"the chain is only {steps / tau:.0f} autocorrelation times long (τ ≈ {tau:.0f} steps); "
                        "run longer before trusting the intervals")
    return _without_none({
        "kind": "posterior", "title": f"{_posterior_title(posterior)}: median [90% interval] " + "; ".join(parts),
        "n_evals": walkers * steps, "method": f"emcee, {walkers} walkers × {draws} draws kept",
        "converged": not warnings, "warnings": warnings or None,
    })


def ranked_regimens_bundle(table) -> dict[str, Any]:
    """The bundle of :func:`koopnb.optimize_regimen`'s ranked table (a DataFrame, best first) as a card."""
    rows = [{"regimen": str(row["regimen"]), "probability": float(row["objective"]), "error": float(row["error"])}
            for _, row in table.iterrows()]
    title = f"Best regimen for {table.attrs.get('target', 'the target')}"
    best = rows[0] if rows else {}
    payload = _without_none({
        "kind": "regimen", "title": title, "value": best.get("probability"), "error": best.get("error"),
        "regimen": best.get("regimen"), "n_evals": int(table["n_evals"].sum()) if rows else None,
        "converged": bool(table["converged"].all()) if rows else None, "rows": rows})
    text = "\n".join([title, *(f"{i + 1}. {row['regimen']}: {_labelled('', row['probability'], row['error'])}"
                                for i, row in enumerate(rows))])
    return {"text/plain": text, "text/html": f"<div><b>{html.escape(title)}</b>{table.to_html()}</div>",
            RESULT_MIME_TYPE: payload}


# -- plain text ---------------------------------------------------------------------------------------
def expectation_text(result) -> str:
    """One line: ``P(auc(0, 24) in 400..600) = 0.7312 ± 0.0004 (koopman; 687 model evaluations, 12 ms)``."""
    if np.ndim(result.value) == 0:
        body = _labelled(result.label, result.value, result.error)
    else:
        body = "; ".join(_labelled(label, value, error)
                         for label, value, error in zip(result.label, result.value, result.error, strict=True))
    return f"{body} ({_footer_text(result.method, result.n_evals, result.elapsed, result.converged)})"


def dose_text(result) -> str:
    """One line with the optimal dose, its regimen and the objective there."""
    unit = f" {result.regimen.unit}" if result.regimen.unit else ""
    value, error = format_value_error(result.objective, result.error)
    status = "" if result.feasible else f"; {result.message}"
    footer = _footer_text(result.method, result.n_evals, result.elapsed, result.converged)
    return (f"optimal dose {result.dose:.6g}{unit} ({result.regimen}) for {_target_text(result.target)}: "
            f"objective {value} ± {error} ({footer}){status}")


# -- HTML fallbacks (escaped; no scripts) -------------------------------------------------------------
def model_html(model) -> str:
    """Title, equations as written, as display LaTeX (typeset by MathJax/KaTeX where available), and the
    parameter table with units; covariates with their reference values and units."""
    kind = "linear (exact solution)" if model.is_linear else "nonlinear (batched ODE solve)"
    rows = "".join(
        f"<tr><td>{html.escape(row['parameter'])}</td><td>{row['typical']:.6g}</td><td>{html.escape(row['unit'])}</td>"
        f"<td>{row['omega']:.4g}</td><td>{row['CV%']:.3g}</td></tr>" for row in model.parameter_rows())
    latex = model._repr_latex_().strip("$")
    covariates = ", ".join(f"{name} = {value:g}" + (f" {model.units[name]}" if name in model.units else "")
                           for name, value in model.covariates.items())
    covariate_line = f"; covariates {html.escape(covariates)}" if covariates else ""
    return (f"<div class='koopnb-model'><b>{html.escape(model.name or 'model')}</b>: {kind}; states "
            f"{html.escape(', '.join(model.states))}; outputs {html.escape(', '.join(model.observables))}"
            f"{covariate_line}<div>$${html.escape(latex)}$$</div>"
            "<table><thead><tr><th>parameter</th><th>typical</th><th>unit</th><th>ω</th><th>CV%</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


def expectation_html(result) -> str:
    """A small card: label, value ± error, method, evaluations, time, convergence, warnings."""
    if np.ndim(result.value) == 0:
        body = _value_html(result.label, result.value, result.error)
    else:
        lines = "".join(f"<tr><td>{html.escape(str(label))}</td><td>{_pm(value, error)}</td></tr>"
                        for label, value, error in zip(result.label, result.value, result.error, strict=True))
        body = f"<table>{lines}</table>"
    return _card(body, _footer_text(result.method, result.n_evals, result.elapsed, result.converged),
                 list(result.warnings))


def dose_html(result) -> str:
    """A small card with the optimal dose, the regimen and the objective at the optimum."""
    unit = f" {html.escape(result.regimen.unit)}" if result.regimen.unit else ""
    body = (f"<div><b>Optimal dose: {result.dose:.6g}{unit}</b></div>"
            f"<div>Regimen: {html.escape(str(result.regimen))}</div>"
            f"<div>Target: {html.escape(_target_text(result.target))}</div>"
            f"<div>Objective at the optimum: {_pm(result.objective, result.error)}</div>")
    return _card(body, _footer_text(result.method, result.n_evals, result.elapsed, result.converged),
                 _dose_warnings(result) or [])


def posterior_html(posterior) -> str:
    """Title and summary table of a posterior (median, 90 % interval, CV% per parameter)."""
    draws, walkers, _ = posterior.draws.shape
    table = posterior.summary().to_html(float_format=lambda x: f"{x:.4g}")
    return (f"<div class='koopnb-posterior'><b>{html.escape(_posterior_title(posterior))}</b>: {walkers} walkers "
            f"× {draws} draws kept{table}</div>")


# -- numbers ------------------------------------------------------------------------------------------
def format_value_error(value: float, error: float) -> tuple[str, str]:
    """``value`` and ``error`` rounded to the error's leading digits (two when it starts with 1 or 2),
    e.g. (0.73123, 0.00041) -> ("0.7312", "0.0004"); the same rule as the lab extension's cards."""
    value, error = float(value), abs(float(error))
    if not (math.isfinite(value) and math.isfinite(error)) or error == 0:
        return f"{value:.6g}", f"{error:g}"
    mantissa, exponent = f"{error:.0e}".split("e")
    last = int(exponent) - 1 if int(mantissa) <= 2 else int(exponent)
    magnitude = max(abs(value), error)
    if 1e-3 <= magnitude < 1e6:
        decimals = min(max(-last, 0), 12)
        scale = 10.0**last
        return f"{round(value / scale) * scale:.{decimals}f}", f"{round(error / scale) * scale:.{decimals}f}"
    value_exponent = int(f"{value:e}".split("e")[1]) if value else last
    digits = min(max(value_exponent - last, 0), 15)
    return f"{value:.{digits}e}", f"{error:.{1 if int(mantissa) <= 2 else 0}e}"


# -- details ------------------------------------------------------------------------------------------
def _target_parts(target) -> tuple[str | None, tuple | None]:
    """Metric text and window bounds of a DoseResult target (a Window, a list of Windows, or a Target)."""
    if isinstance(target, Window):
        return str(target.metric), (_bound(target.low), _bound(target.high))
    if isinstance(target, (list, tuple)):
        return None, None
    return str(target.metric), None


def _bound(value) -> float | None:
    return None if value is None else float(value)


def _target_text(target) -> str:
    if isinstance(target, (list, tuple)):
        return " and ".join(str(part) for part in target)
    return str(target)


def _dose_warnings(result) -> list[str] | None:
    found = [result.message] if getattr(result, "message", "") else []
    certified = getattr(result, "certified", None)
    found += list(getattr(certified, "warnings", ()) or ())
    return list(dict.fromkeys(found)) or None


def _cost(result) -> dict[str, Any]:
    return {"n_evals": int(result.n_evals), "method": f"{result.method} ({result.rule})" if result.rule
            else result.method, "converged": bool(result.converged), "elapsed": float(result.elapsed),
            "warnings": list(result.warnings) or None}


def _posterior_title(posterior) -> str:
    individuals = getattr(posterior, "individuals", None)
    if individuals is not None:
        return f"Population posterior of {len(individuals)} subjects"
    subject = getattr(getattr(posterior, "subject", None), "id", None)
    return "Posterior" if subject is None else f"Posterior of subject {subject}"


def _labelled(label, value: float, error: float) -> str:
    number, spread = format_value_error(value, error)
    return f"{label} = {number} ± {spread}" if label else f"{number} ± {spread}"


def _pm(value: float, error: float) -> str:
    number, spread = format_value_error(value, error)
    return f"{number} <span style='opacity:.7'>± {spread}</span>"


def _value_html(label, value: float, error: float) -> str:
    return f"<div>{html.escape(str(label))}</div><div style='font-size:1.4em'>{_pm(value, error)}</div>"


def _footer_text(method: str, n_evals: int, elapsed: float, converged: bool) -> str:
    status = "converged" if converged else "NOT converged"
    return f"{method}; {int(n_evals):,} model evaluations, {_seconds(elapsed)}, {status}"


def _seconds(elapsed: float) -> str:
    return f"{1e3 * elapsed:.0f} ms" if elapsed < 1 else f"{elapsed:.2f} s"


def _card(body: str, footer: str, warnings: list[str]) -> str:
    notes = "".join(f"<div style='color:#b45309'>⚠ {html.escape(w)}</div>" for w in warnings)
    return (f"<div class='koopnb-card' style='{_CARD_STYLE}'>{body}{notes}"
            f"<div style='opacity:.7;font-size:.85em'>{html.escape(footer)}</div></div>")


def _without_none(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without absent keys (the extension treats a missing key and null alike)."""
    return {key: value for key, value in payload.items() if value is not None}
