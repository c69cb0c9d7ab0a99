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
import pandas as pd

from koopnb.expectation.integrand import AllWindows
from koopnb.inference.sampler import TRUSTED_LENGTH
from koopnb.metrics import Metric, Target, Window

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
    payload.update(_display_texts(_heading(quantity).rstrip(":") or None,
                                  _value_text(quantity, result.value, result.error, _unit(result))))
    return _without_none(payload)


def dose_payload(result) -> dict[str, Any]:
    """The card payload of a DoseResult: the practical dose, its regimen and the objective there; the current
    regimen's value, the search space and any note ride in the title and warnings."""
    target = result.target
    metric, window = _target_parts(target)
    probability = getattr(result.certified, "value", None) if window is not None else None
    payload = {
        "kind": "dose", "title": f"Recommended dose for {_target_text(target)}{_current_clause(result)}",
        "value": float(result.objective), "error": float(result.error), "n_evals": int(result.n_evals),
        "method": str(result.method), "converged": bool(result.converged), "elapsed": float(result.elapsed),
        "metric": metric, "window": list(window) if window is not None else None,
        "probability": float(probability) if probability is not None else None, "dose": float(result.dose),
        "unit": _dose_unit(result), "regimen": str(result.regimen),
        "warnings": _dose_warnings(result),
    }
    header, values = _objective_words(result)
    payload.update(_display_texts(header, values(result.objective, result.error)))
    return _without_none(payload)


def _display_texts(label: str | None, text: str) -> dict[str, str | None]:
    """The value as the Python cards write it, split at its ``±`` for the lab card: one formatter for both
    (e.g. ``71.4 %`` and ``± 0.0012 %``; ``438`` and ``± 0.008 mg·h/L``)."""
    value, _, error = text.partition(" ± ")
    return {"value_label": label, "value_text": value, "error_text": f"± {error}" if error else None}


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
    if not _is_ranking(table):
        return {"text/plain": table.to_string(), "text/html": table.to_html()}
    rows = [{"regimen": str(row["regimen"]), "probability": float(row["objective"]), "error": float(row["error"])}
            for _, row in table.iterrows()]
    title = f"Best regimen for {table.attrs.get('target', 'the target')}"
    best = rows[0] if rows else {}
    payload = _without_none({
        "kind": "regimen", "title": title, "value": best.get("probability"), "error": best.get("error"),
        "regimen": best.get("regimen"), "n_evals": int(table["n_evals"].sum()) if rows else None,
        "converged": bool(table["converged"].all()) if rows else None, "rows": rows})
    return {"text/plain": regimen_table_text(table), "text/html": regimen_table_html(table),
            RESULT_MIME_TYPE: payload}


def regimen_table(table) -> pd.DataFrame:
    """:func:`koopnb.optimize_regimen`'s ranking for people: a rank column, plain headers, doses with their
    unit, probabilities as ``71.4 % ± 0.0012 %``; columns that say nothing here (no loading dose, no
    infusion) are left out.  The numbers stay in the ranking itself; this is for display."""
    attrs = table.attrs
    unit = f" {attrs['unit']}" if attrs.get("unit") else ""
    shown = {"Rank": list(range(1, len(table) + 1))}
    if (table["loading"] > 0).any():
        shown["Loading dose"] = [f"{v:g}{unit}" if v > 0 else "none" for v in table["loading"]]
    shown["Dose"] = [f"{v:g}{unit}" for v in table["amount"]]
    shown["Every"] = [f"{v:g} h" for v in table["interval"]]
    if "duration" in table and (table["duration"] > 0).any():
        shown["Infusion"] = [f"over {v:g} h" if v > 0 else "bolus" for v in table["duration"]]
    if "daily" in table:
        shown["Per day"] = [f"{v:g}{unit}" for v in table["daily"]]
    if attrs.get("goal") == "expected":
        shown[f"Expected {_metric_words(attrs.get('target', ''))}"] = [
            amount(v, e, attrs.get("metric_unit")) for v, e in zip(table["objective"], table["error"], strict=True)]
    else:
        shown["Probability in window"] = [percent(v, e) for v, e in zip(table["objective"], table["error"],
                                                                        strict=True)]
    if "toxic" in table:
        shown["Toxicity risk"] = [percent(v, e) for v, e in zip(table["toxic"], table["toxic_error"], strict=True)]
    shown["Regimen"] = list(table["regimen"])
    return pd.DataFrame(shown)


def regimen_table_html(table) -> str:
    """The ranking as an HTML table for people, with the target above and the details in a fold."""
    if not _is_ranking(table):
        return pd.DataFrame(table)._repr_html_()
    head = f"<b>Regimens for {html.escape(table.attrs.get('target', 'the target'))}, best first</b>"
    lines = "".join(f"<div>{html.escape(line)}</div>" for line in _ranking_lines(table))
    notes = "".join(f"<div style='color:#b45309'>⚠ {html.escape(note)}</div>" for note in [table.attrs.get("note")]
                    if note)
    return (f"<div class='koopnb-regimens'>{head}{lines}{notes}"
            f"{regimen_table(table).to_html(index=False, escape=True)}{_details_html(_ranking_details(table))}</div>")


def regimen_table_text(table) -> str:
    """The ranking as text for people; the details on a trailing line."""
    if not _is_ranking(table):
        return pd.DataFrame(table).to_string()
    head = f"Regimens for {table.attrs.get('target', 'the target')}, best first"
    lines = _ranking_lines(table) + ([f"Note: {table.attrs['note']}."] if table.attrs.get("note") else [])
    return "\n".join([head, *lines, regimen_table(table).to_string(index=False),
                      f"Details: {'; '.join(_ranking_details(table))}"])


def _ranking_lines(table) -> list[str]:
    """The search space and the current regimen's value, in words."""
    attrs = table.attrs
    lines = [f"Searched {attrs['search_space']}."] if attrs.get("search_space") else []
    current = attrs.get("current")
    if current:
        unit = f" {attrs['unit']}" if attrs.get("unit") else ""
        if attrs.get("goal") == "expected":
            value = amount(current["objective"], current["error"], attrs.get("metric_unit"))
        else:
            value = f"probability in window {percent(current['objective'], current['error'])}"
        lines.append(f"Current {current['amount']:g}{unit} every {current['interval']:g} h: {value}.")
    return lines


def _is_ranking(table) -> bool:
    return {"regimen", "loading", "amount", "interval", "objective", "error", "converged", "n_evals"} <= set(
        table.columns)


def _ranking_details(table) -> list[str]:
    attrs = table.attrs
    details = [f"{len(table)} regimens certified by the Koopman expectation; {int(table['n_evals'].sum()):,} model "
               f"evaluations; {'all converged' if table['converged'].all() else 'NOT all converged'}"]
    if attrs.get("constraints"):
        details.append(f"constraints: {attrs['constraints']}")
    if attrs.get("toxic"):
        details.append(f"toxicity risk is P({attrs['toxic']})")
    details += [f"excluded {regimen}: {reason}" for regimen, reason in attrs.get("excluded", ())]
    return details


# -- plain text ---------------------------------------------------------------------------------------
def expectation_text(result) -> str:
    """The value with its error and unit, e.g. ``P(auc(0, 24) in 400..600) = 73.1 % ± 0.04 %``, then a
    trailing line with the method, evaluations and time."""
    if np.ndim(result.value) == 0:
        body = f"{result.label} = {_value_text(result.quantity, result.value, result.error, _unit(result))}"
    else:
        units = _units(result)
        body = "; ".join(f"{label} = {_value_text(quantity, value, error, unit)}" for label, quantity, value, error,
                         unit in zip(result.label, _quantities(result), result.value, result.error, units,
                                     strict=True))
    return f"{body}\nDetails: {_footer_text(_method(result), result.n_evals, result.elapsed, result.converged)}"


def dose_text(result) -> str:
    """The practical dose, the objective there beside the current regimen's, the search space, any note, and a
    trailing line with the method, evaluations and time."""
    unit = _dose_unit(result)
    header, values = _objective_words(result)
    lines = [f"Recommended dose: {_dose_words(result.dose, unit)} ({result.regimen}) for "
             f"{_target_text(result.target)}",
             f"{header}: {values(result.objective, result.error)}"]
    if result.current is not None:
        lines[-1] += (f" (current {_dose_words(result.current_dose, unit)}: "
                      f"{values(result.current.value, result.current.error)})")
    if result.toxic is not None:
        lines.append(f"Toxicity risk P({result.constraints.toxic}): {percent(result.toxic.value, result.toxic.error)}")
    if result.search_space:
        lines.append(f"Searched {result.search_space}.")
    lines += [f"Note: {text}." for text in (result.note, result.message) if text]
    lines.append(f"Details: {_footer_text(result.method, result.n_evals, result.elapsed, result.converged)}")
    return "\n".join(lines)


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
    """A small card: label, value ± error with its unit, warnings; method, evaluations and time in a fold."""
    if np.ndim(result.value) == 0:
        body = (f"<div><b>{html.escape(_heading(result.quantity))}</b> {html.escape(str(result.label))}</div>"
                "<div style='font-size:1.4em'>"
                f"{html.escape(_value_text(result.quantity, result.value, result.error, _unit(result)))}</div>")
    else:
        lines = "".join(f"<tr><td>{html.escape(str(label))}</td><td>{html.escape(_value_text(q, v, e, u))}</td></tr>"
                        for label, q, v, e, u in zip(result.label, _quantities(result), result.value, result.error,
                                                     _units(result), strict=True))
        body = f"<table>{lines}</table>"
    return _card(body, [_footer_text(_method(result), result.n_evals, result.elapsed, result.converged)],
                 list(result.warnings))


def dose_html(result) -> str:
    """A small card: the practical dose beside the current one (dose, objective, toxicity risk), the search
    space and any note; the method and evaluations in a fold."""
    unit = _dose_unit(result)
    header, values = _objective_words(result)
    toxic = result.toxic is not None
    heads = ["", "Dose", header] + (["Toxicity risk"] if toxic else [])
    rows = [["Recommended", _dose_words(result.dose, unit), values(result.objective, result.error)]
            + ([percent(result.toxic.value, result.toxic.error)] if toxic else [])]
    if result.current is not None:
        rows.append(["Current", _dose_words(result.current_dose, unit),
                     values(result.current.value, result.current.error)] + (["—"] if toxic else []))
    table = "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    body = (f"<div><b>Recommended dose: {html.escape(_dose_words(result.dose, unit))}</b> "
            f"({html.escape(str(result.regimen))})</div>"
            f"<div>Target: {html.escape(_target_text(result.target))}</div>{table}</tbody></table>")
    if result.search_space:
        body += f"<div>Searched {html.escape(result.search_space)}.</div>"
    details = [_footer_text(result.method, result.n_evals, result.elapsed, result.converged)]
    if result.constraints is not None and result.constraints.describe(unit):
        details.append(f"constraints: {result.constraints.describe(unit)}")
    if result.exact_dose is not None:
        details.append(f"best dose on a continuous scale {result.exact_dose:.4g}{f' {unit}' if unit else ''}")
    return _card(body, details, _dose_warnings(result) or [])


def posterior_html(posterior) -> str:
    """Title and summary table of a posterior (median, 90 % interval, CV% per parameter)."""
    draws, walkers, _ = posterior.draws.shape
    table = posterior.summary().to_html(float_format=lambda x: f"{x:.4g}")
    return (f"<div class='koopnb-posterior'><b>{html.escape(_posterior_title(posterior))}</b>: {walkers} walkers "
            f"× {draws} draws kept{table}</div>")


# -- numbers ------------------------------------------------------------------------------------------
def percent(probability: float, error: float | None = None) -> str:
    """A probability for people: a percentage with 3 significant digits and, when given, its error with 1
    significant digit (2 when that digit is 1 or 2), e.g. ``71.4 % ± 0.0012 %``.  A value that would round to
    0 % or 100 % without being it shows as ``< 0.001 %`` or ``> 99.9 %``: a rounded 100 % would claim
    certainty."""
    value = 100.0 * float(probability)
    if not math.isfinite(value):
        text = f"{value} %"
    elif 99.95 <= value < 100.0:
        text = "> 99.9 %"
    elif 0.0 < value < 0.001:
        text = "< 0.001 %"
    else:
        text = f"{_significant(value, 3)} %"
    return text if error is None else f"{text} ± {_error_digits(100.0 * float(error))} %"


def amount(value: float, error: float | None = None, unit: str | None = None) -> str:
    """An expected value for people: 3 significant digits (all the digits before the point), its unit, and the
    error as in :func:`percent`, e.g. ``438 ± 0.008 mg·h/L``."""
    text = _significant(float(value), 3)
    if error is not None:
        text += f" ± {_error_digits(float(error))}"
    return f"{text} {unit}" if unit else text


def _significant(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits in positional notation (never fewer than its whole part;
    scientific notation beyond 10^6 or below 10^-4)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    if not -4 <= exponent < 6:
        return f"{value:.{digits - 1}e}"
    decimals = max(digits - 1 - exponent, 0)
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > exponent and decimals > 0:
        decimals -= 1  # 99.96 → 100.0 would show a 4th digit
    return f"{value:.{decimals}f}"


def _error_digits(error: float) -> str:
    """An error with 1 significant digit, 2 when the first is 1 or 2 (0.0012, 0.05, 30)."""
    error = abs(error)
    if error == 0 or not math.isfinite(error):
        return f"{error:g}"
    mantissa, exponent = f"{error:.1e}".split("e")
    exponent = int(exponent)
    digits = 2 if float(mantissa) < 3 else 1
    if not -7 <= exponent < 6:
        return f"{error:.{digits - 1}e}"
    decimals = max(digits - 1 - exponent, 0)
    return f"{error:.{decimals}f}"


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
    found = [text for text in (getattr(result, "note", ""), getattr(result, "message", "")) if text]
    certified = getattr(result, "certified", None)
    found += list(getattr(certified, "warnings", ()) or ())
    return list(dict.fromkeys(found)) or None


def _dose_unit(result) -> str | None:
    return getattr(result, "dose_unit", None) or result.regimen.unit


def _dose_words(dose: float, unit: str | None) -> str:
    return f"{dose:g} {unit}" if unit else f"{dose:g}"


def _objective_words(result):
    """The header of a DoseResult's objective and how to write a value with its error."""
    if isinstance(result.target, Target):
        unit = getattr(result, "unit", None)
        return f"Expected {result.target.metric}", lambda value, error: amount(value, error, unit)
    return ("Probability in all windows" if isinstance(result.target, (list, tuple)) else "Probability in window",
            percent)


def _current_clause(result) -> str:
    if result.current is None:
        return ""
    _, values = _objective_words(result)
    return (f" — current {_dose_words(result.current_dose, _dose_unit(result))}: "
            f"{values(result.current.value, result.current.error)}; searched {result.search_space}")


def _metric_words(target_text: str) -> str:
    """The metric of a target's text (``auc(0, 24) = 500`` → ``auc(0, 24)``)."""
    return target_text.rpartition(" = ")[0] or target_text


def _heading(quantity) -> str:
    """A plain heading for what an expectation integrated."""
    if isinstance(quantity, Window):
        return "Probability in window:"
    if isinstance(quantity, AllWindows):
        return "Probability in all windows:"
    if isinstance(quantity, Metric):
        return "Expected value:"
    return ""


def _value_text(quantity, value: float, error: float, unit: str | None) -> str:
    """A probability as a percentage, anything else with its unit."""
    if isinstance(quantity, (Window, AllWindows)):
        return percent(value, error)
    return amount(value, error, unit)


def _unit(result) -> str | None:
    unit = getattr(result, "unit", None)
    return unit if isinstance(unit, str) else None


def _units(result) -> list[str | None]:
    unit = getattr(result, "unit", None)
    if isinstance(unit, (list, tuple)):
        return list(unit)
    return [unit] * len(result.label)


def _quantities(result) -> list:
    quantity = result.quantity
    return list(quantity) if isinstance(quantity, (list, tuple)) else [quantity] * len(result.label)


def _method(result) -> str:
    return f"{result.method} ({result.rule})" if result.rule else result.method


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


def _footer_text(method: str, n_evals: int, elapsed: float, converged: bool) -> str:
    status = "converged" if converged else "NOT converged"
    return f"{method}; {int(n_evals):,} model evaluations, {_seconds(elapsed)}, {status}"


def _seconds(elapsed: float) -> str:
    return f"{1e3 * elapsed:.0f} ms" if elapsed < 1 else f"{elapsed:.2f} s"


def _card(body: str, details: list[str], warnings: list[str]) -> str:
    notes = "".join(f"<div style='color:#b45309'>⚠ {html.escape(w)}</div>" for w in warnings)
    return f"<div class='koopnb-card' style='{_CARD_STYLE}'>{body}{notes}{_details_html(details)}</div>"


def _details_html(details: list[str]) -> str:
    """How the answer was computed, folded away: method, nodes, evaluations, time."""
    items = "".join(f"<div>{html.escape(line)}</div>" for line in details)
    return (f"<details style='opacity:.7;font-size:.85em'><summary>Details</summary>{items}</details>")


def _without_none(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without absent keys (the extension treats a missing key and null alike)."""
    return {key: value for key, value in payload.items() if value is not None}
