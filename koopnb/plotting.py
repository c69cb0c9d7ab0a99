"""Matplotlib figures for koopnb results; every function returns a ``matplotlib.figure.Figure``.

Figures are built with ``matplotlib.figure.Figure`` directly (not pyplot), so making one never opens a
window or touches global state; a notebook shows the returned figure as its rich output.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from koopnb.errors import KoopnbError
from koopnb.inference.posterior import PopulationPosterior, Posterior
from koopnb.metrics import Target
from koopnb.optimize import DoseResult
from koopnb.units import HOUR, output_label
from koopnb.vpc import VPCResult


def plot_posterior_pairs(posterior: Posterior | PopulationPosterior, max_points: int = 2000, seed=0) -> Figure:
    """Corner plot of the posterior: histograms on the diagonal, draws below it, the MAP marked (log axes)."""
    samples = posterior.samples
    names = list(samples)
    k = len(names)
    size = len(samples[names[0]])
    pick = np.random.default_rng(seed).choice(size, min(size, max_points), replace=False)
    figure = Figure(figsize=(2.2 * k + 0.6, 2.2 * k + 0.6), layout="constrained")
    axes = figure.subplots(k, k, squeeze=False)
    for row, y_name in enumerate(names):
        for column, x_name in enumerate(names):
            ax = axes[row, column]
            if column > row:
                ax.set_visible(False)
                continue
            x = samples[x_name]
            if row == column:
                bins = np.geomspace(x.min(), x.max(), 40) if x.min() > 0 else 40
                ax.hist(x, bins=bins, color="tab:blue", alpha=0.7)
                ax.axvline(posterior.map[x_name], color="tab:red", lw=1)
                ax.set_yticks([])
            else:
                ax.scatter(x[pick], samples[y_name][pick], s=2, alpha=0.3, color="tab:blue", rasterized=True)
                ax.plot(posterior.map[x_name], posterior.map[y_name], "+", color="tab:red", ms=10)
                if samples[y_name].min() > 0:
                    ax.set_yscale("log")
            if x.min() > 0:
                ax.set_xscale("log")
            if row == k - 1:
                ax.set_xlabel(x_name)
            if column == 0 and row > 0:
                ax.set_ylabel(y_name)
    figure.suptitle("posterior draws (red: mode)")
    return figure


def plot_individual_fit(posterior: Posterior, level: float = 0.9, n: int = 400, points: int = 200,
                        seed=0) -> Figure:
    """The patient's observations over the posterior median prediction and its credible band.

    Observations below the quantification limit are drawn as open triangles at the limit.
    """
    subject = posterior.subject
    grid = np.linspace(0.0, float(subject.times.max()) * 1.05, points)
    curve = _posterior_curves(posterior, grid, n, seed)
    low, median, high = np.quantile(curve, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    ax.fill_between(grid, low, high, color="tab:blue", alpha=0.25, label=f"{100 * level:.0f}% credible band")
    ax.plot(grid, median, color="tab:blue", label="posterior median")
    seen = ~subject.below
    ax.plot(subject.times[seen], subject.values[seen], "o", color="black", label="observed")
    if subject.below.any():
        ax.plot(subject.times[~seen], subject.values[~seen], "v", mfc="none", color="black", label="below limit")
    ax.set_xlabel(f"Time ({HOUR})")
    ax.set_ylabel(output_label(posterior.model, posterior.output, subject.regimen.unit))
    who = "" if subject.id is None else f"subject {subject.id}: "
    ax.set_title(f"{who}individual fit")
    ax.legend(frameon=False)
    return figure


def plot_goodness_of_fit(population: PopulationPosterior) -> Figure:
    """The usual four goodness-of-fit panels from ``population.table()``: observed (DV) against the population
    prediction (PRED) and the individual prediction (IPRED) with the line of identity; conditional weighted
    residuals (CWRES) against time and against PRED, with zero and ±2 marked.  Observations below a
    quantification limit are left out."""
    table = population.table()
    table = table[~table["BLQ"]]
    figure = Figure(figsize=(9.0, 8.0), layout="constrained")
    axes = figure.subplots(2, 2)
    top = float(max(table["DV"].max(), table["PRED"].max(), table["IPRED"].max())) * 1.05
    for ax, column, label in ((axes[0, 0], "PRED", "population prediction (PRED)"),
                              (axes[0, 1], "IPRED", "individual prediction (IPRED)")):
        ax.plot([0, top], [0, top], color="gray", lw=1)
        ax.plot(table[column], table["DV"], "o", ms=4, alpha=0.7)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(label)
        ax.set_ylabel("observed (DV)")
    for ax, column, label in ((axes[1, 0], "TIME", f"Time ({HOUR})"),
                              (axes[1, 1], "PRED", "population prediction (PRED)")):
        for level, style in ((0, "-"), (-2, "--"), (2, "--")):
            ax.axhline(level, color="gray", lw=1, ls=style)
        ax.plot(table[column], table["CWRES"], "o", ms=4, alpha=0.7)
        ax.set_xlabel(label)
        ax.set_ylabel("CWRES")
    figure.suptitle(f"goodness of fit: {table['ID'].nunique()} subjects, {len(table)} observations")
    return figure


def plot_vpc(result: VPCResult, baseline: VPCResult | None = None, ax: Axes | None = None) -> Figure:
    """A visual predictive check: the observations, their percentiles per time bin (points joined by lines),
    and the predictive quantiles as bands over time (the outer levels shaded); a ``baseline`` VPC (e.g. the
    simulation-based one) is drawn dashed on top.  Draws on ``ax`` when given."""
    if ax is None:
        figure = Figure(figsize=(7.0, 4.5), layout="constrained")
        ax = figure.subplots()
    else:
        figure = ax.figure
    ax.plot(result.data["TIME"], result.data["DV"], "o", ms=3, color="gray", alpha=0.5, label="observed")
    outer = [0, len(result.quantiles) - 1]
    ax.fill_between(result.times, result.bands[outer[0]], result.bands[outer[1]], color="tab:blue", alpha=0.15,
                    label=f"{result.method} {100 * result.quantiles[0]:g}–{100 * result.quantiles[-1]:g}%")
    for i, level in enumerate(result.quantiles):
        ax.plot(result.times, result.bands[i], color="tab:blue", lw=1.5 if level == 0.5 else 1)
        ax.plot(result.bin_times, result.observed[i], "o-", color="tab:red", ms=4, lw=1,
                label="observed percentiles" if i == 0 else None)
        if baseline is not None:
            ax.plot(baseline.times, baseline.bands[i], "--", color="black", lw=1,
                    label=f"{baseline.method} (n = {baseline.n_evals:,})" if i == 0 else None)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(result.output)
    state = ""
    if result.tolerance is not None:  # quadrature: how close to its tolerance the worst band point came
        worst = max(float(np.max(result.error / result.tolerance)),
                    float(np.max(result.predicted_error / result.predicted_tolerance)))
        state = (f", converged: error ≤ {worst:.2g} × tolerance" if result.converged
                 else f", NOT converged: error up to {worst:.2g} × tolerance")
    ax.set_title(f"visual predictive check ({result.method}, {result.n_evals:,} model evaluations{state})")
    ax.legend(frameon=False)
    return figure


def _posterior_curves(posterior: Posterior, grid: np.ndarray, n: int, seed) -> np.ndarray:
    """(n, len(grid)) predictions of the fitted output for ``n`` posterior draws."""
    parameters = posterior.parameters(n, seed)
    count = len(next(iter(parameters.values())))
    covariates = _engine_covariates(posterior.subject.covariates)
    curves = posterior.model.simulate(parameters, posterior.subject.regimen, grid, covariates)[posterior.output]
    return curves.reshape(count, -1)


def plot_probability_vs_dose(result: DoseResult, ax: Axes | None = None) -> Figure:
    """The search objective over the dose bounds (probability of the window(s), or the expected metric for
    a Target), with the chosen dose and its certified value ± error marked.  Draws on ``ax`` when given."""
    if ax is None:
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = figure.subplots()
    else:
        figure = ax.figure
    is_target = isinstance(result.target, Target)
    ax.plot(result.curve_doses, result.curve_values, color="tab:blue", label="search objective")
    ax.axvline(result.dose, color="tab:red", lw=1, label=f"chosen dose {result.dose:.4g}")
    ax.errorbar([result.dose], [result.objective], yerr=[result.error], fmt="o", color="tab:red", ms=4,
                label="certified")
    if is_target:
        ax.axhline(result.target.value, color="gray", lw=1, ls="--", label=f"target {result.target.value:g}")
    unit = result.regimen.unit
    ax.set_xlabel("Dose" + (f" ({unit})" if unit else ""))
    if is_target:
        metric_unit = getattr(result, "unit", None)
        ax.set_ylabel(f"E[{result.target.metric}]" + (f" ({metric_unit})" if metric_unit else ""))
    else:
        windows = result.target if isinstance(result.target, (list, tuple)) else [result.target]
        ax.set_ylabel("P(" + " and ".join(str(w) for w in windows) + ")")
        ax.set_ylim(0, 1)
    ax.set_title(f"{result.method} optimum" + ("" if result.feasible else " (target out of reach)"))
    ax.legend(frameon=False)
    return figure


def plot_nomogram(table) -> Figure:
    """Heat maps of a ``kn.nomogram`` table over its two covariates (or one): the best regimen per stratum
    (left) and its probability P (right).  Strata where the best is not certainly ahead of the runner-up
    (``decided`` False, their error bars overlap) are dotted; failed strata are left blank."""
    names = table.attrs.get("covariates")
    if not names or len(names) > 2:
        raise KoopnbError("plot_nomogram takes the table of kn.nomogram over one or two covariates")
    rows_name, columns_name = (names[0], names[1]) if len(names) > 1 else (None, names[0])
    table = table.assign(_row=table[rows_name] if rows_name else 0.0)
    regimens = list(dict.fromkeys(table["regimen"].dropna()))
    codes = table["regimen"].map({label: k for k, label in enumerate(regimens)})
    x = np.unique(table[columns_name])
    y = np.unique(table["_row"])
    at = (np.searchsorted(y, table["_row"]), np.searchsorted(x, table[columns_name]))
    best, chance = np.full((len(y), len(x)), np.nan), np.full((len(y), len(x)), np.nan)
    best[at], chance[at] = codes.to_numpy(dtype=float), table["P"].to_numpy(dtype=float)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2, sharey=True)
    colours = matplotlib.colormaps["tab10"].resampled(max(len(regimens), 1))
    left.pcolormesh(x, y, best, cmap=colours, vmin=-0.5, vmax=len(regimens) - 0.5, shading="nearest")
    left.legend(handles=[Patch(color=colours(k), label=label) for k, label in enumerate(regimens)],
                loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False, fontsize="small")
    mesh = right.pcolormesh(x, y, chance, cmap="viridis", vmin=0, vmax=1, shading="nearest")
    figure.colorbar(mesh, ax=right, label="P(target) of the best regimen")
    if "decided" in table:
        open_calls = table[table["decided"].eq(False).fillna(False).astype(bool)]
        for ax in (left, right):
            ax.plot(open_calls[columns_name], open_calls["_row"], ".", color="white", ms=3)
    for ax, title in ((left, "best regimen"), (right, "its probability")):
        ax.set_xlabel(columns_name)
        ax.set_title(title)
    left.set_ylabel(rows_name or "")
    if rows_name is None:
        left.set_yticks([])
    return figure


def _engine_covariates(covariates):
    """A covariate history (DataFrame) as it is; constants, or None when there are none."""
    return covariates if isinstance(covariates, pd.DataFrame) else (covariates or None)
