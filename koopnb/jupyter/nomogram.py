"""The nomogram as a widget: the heat maps, and the certified answer of the stratum the user picks."""

from __future__ import annotations

import html
import io

import ipywidgets as widgets
import pandas as pd

from koopnb.cards import format_value_error
from koopnb.errors import KoopnbError
from koopnb.plotting import plot_nomogram


def nomogram_view(table: pd.DataFrame) -> widgets.VBox:
    """A ``kn.nomogram`` table as a panel: both heat maps (PNG), one dropdown per covariate, and the chosen
    stratum's best regimen with P ± error, whether it is decided, and the runner-up."""
    names = table.attrs.get("covariates")
    if not names:
        raise KoopnbError("nomogram_view takes the table returned by kn.nomogram")
    buffer = io.BytesIO()
    plot_nomogram(table).savefig(buffer, format="png", dpi=90)
    picks = {name: widgets.Dropdown(options=sorted(table[name].unique()), description=name) for name in names}
    answer = widgets.HTML()

    def show(_=None) -> None:
        chosen = table
        for name, pick in picks.items():
            chosen = chosen[chosen[name] == pick.value]
        answer.value = stratum_html(chosen.iloc[0])

    for pick in picks.values():
        pick.observe(show, names="value")
    show()
    return widgets.VBox([widgets.Image(value=buffer.getvalue(), format="png"), widgets.HBox(list(picks.values())),
                         answer])


def stratum_html(row: pd.Series) -> str:
    """One stratum of the nomogram in a sentence: best regimen, P ± error, and how sure the choice is."""
    if row["status"] == "failed":
        return f"<b>not computed</b>: {html.escape(str(row['message']))}"
    value, error = format_value_error(row["P"], row["error"])
    verdict = ("ahead of every other candidate beyond the error estimates" if row["decided"]
               else f"not separated from {html.escape(str(row['runner_up']))} (P = {row['runner_up_P']:.3f})")
    return (f"<b>{html.escape(str(row['regimen']))}</b>: P = {value} ± {error}; {verdict}"
            + (f" <i>({html.escape(str(row['message']))})</i>" if row["message"] else ""))
