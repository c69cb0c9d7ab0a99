"""Dashboard latency for a linear and a nonlinear model (target: the readout at most 100 ms after a slider move).

    nice -n -20 .venv/bin/python benchmarks/dashboard.py

Two models: theophylline (linear: the readout is a quadrature, its expected metric scaled with the dose) and the
Michaelis–Menten phenytoin model of notebook 05 (nonlinear: the readout comes from the metric at the 1024 Sobol
draws, interpolated in dose from a table simulated once per regimen shape).

Table 1, one update at a time: the readout after a window move, after a dose move, after an interval change (a
new regimen shape: a new mean, or a new dose table), and a figure redraw (band, exposure histogram, PNG).  For the
nonlinear model the strongest baseline is the readout as it was before the dose table: the live quadrature
(pre-integrated probability and expected metric at the live tolerances) at each dose move.

Table 2, a drag: the dose slider dragged over its range (61 input events at 60 per second), replayed in real
time on an asyncio event loop as a Jupyter kernel runs it.  The latency of an event is the time from the event to
the end of the first readout that shows it or a later value.  Policies side by side (linear model):

- "every event, figure each time": no coalescing (each event queued and computed in turn, the figure redrawn
  each time) — the baseline;
- "latest only, figure each time": ipywidgets' own throttle alone (the front end keeps one change in flight and
  sends the latest value when the kernel is idle), the figure still redrawn at each update;
- "latest only, figure trailing": the dashboard as built — the front end's coalescing plus the dashboard's
  throttle (the figure redrawn when the slider rests for FIGURE_REST s); also for the nonlinear model.

The browser round trip (a few ms on one machine) is not included here; tests/browser/test_dashboard.py measures
input event to readout change in Chromium.  Writes benchmarks/results/dashboard.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

import koopnb as kn
from koopnb.jupyter.widgets import FIGURE_REST, LIVE_ATOL, LIVE_RTOL, dashboard

RESULTS = Path(__file__).resolve().parent / "results"
THEOPHYLLINE = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
PHENYTOIN = """
ka   = 1.0 [1/h]  fixed
Vmax = 20  [mg/h] ~ 0.3
Km   = 4   [mg/L] ~ 0.5
V    = 49  [L]    ~ 0.2
d/dt(gut)     = -ka*gut
d/dt(central) =  ka*gut - Vmax*(central/V)/(Km + central/V)
conc = central / V
conc ~ combined(1, 0.1)
dose gut
"""
MODELS = {
    "theophylline (linear, 3 random parameters)":
        (THEOPHYLLINE, "320 mg po q24h x3", "auc(0, 24)", (80.0, 120.0), [12.0, 8.0, 6.0, 24.0] * 2),
    "phenytoin, Michaelis–Menten (nonlinear, 3 random parameters)":
        (PHENYTOIN, "300 mg po q24h x5", "auc(96, 120)", (240.0, 480.0), [12.0, 24.0] * 2),
}
TARGET_MS = 100.0
MOVES = 20
BASELINE_MOVES = 3
DRAG_EVENTS = 61
EVENTS_PER_SECOND = 60.0


def new_panel(name: str):
    text, regimen, metric, window, _ = MODELS[name]
    model = kn.parse_model(text, name=name.split()[0])
    return dashboard(model, model.prior(), regimen, metric, window=window)


def timed(panel, action, values) -> np.ndarray:
    """Milliseconds of ``action(value)`` for each value (plain Python: the update runs synchronously)."""
    times = []
    for value in values:
        started = time.perf_counter()
        action(value)
        times.append(1e3 * (time.perf_counter() - started))
        if panel.message.value:
            raise RuntimeError(f"the dashboard reported an error: {panel.message.value}")
    return np.array(times)


def set_value(control):
    def action(value):
        control.value = value
    return action


def single_updates(name: str) -> list[tuple[str, np.ndarray]]:
    panel = new_panel(name)
    low, high = MODELS[name][3]
    redraw = timed(panel, lambda _: panel.redraw(), range(MOVES))
    panel._trailing.work = lambda: None  # the readout alone from here on
    width = high - low
    window = timed(panel, set_value(panel.window), [(a, a + width) for a in np.linspace(0.75 * low, low, MOVES)])
    doses = np.linspace(panel.dose.value * 0.8, panel.dose.value * 1.4, MOVES)
    dose = timed(panel, set_value(panel.dose), doses)
    interval = timed(panel, set_value(panel.interval), MODELS[name][4])
    rows = [("readout after a window move", window), ("readout after a dose move", dose),
            (f"readout after an interval change ({len(set(MODELS[name][4]))} new shapes, then cached)", interval),
            ("figure redraw", redraw)]
    if not kn.optimize.scales_with_dose(panel.model, [panel.current_metric()]):
        rows.insert(2, ("readout after a dose move by quadrature (before the dose table; baseline)",
                        quadrature_moves(panel, doses[:BASELINE_MOVES])))
    return rows


def quadrature_moves(panel, doses) -> np.ndarray:
    """Milliseconds of the live quadrature readout (probability and expected metric) at each dose."""
    metric = panel.current_metric()
    times = []
    for dose in doses:
        panel.dose.value = float(dose)
        regimen, window = panel.current_regimen(), panel.current_window(metric)
        started = time.perf_counter()
        kn.probability(window, panel.model, regimen, panel.dist, rtol=LIVE_RTOL, atol=LIVE_ATOL)
        kn.expectation(metric, panel.model, regimen, panel.dist, rtol=LIVE_RTOL, atol=LIVE_ATOL)
        times.append(1e3 * (time.perf_counter() - started))
    return np.array(times)


async def drag(panel, doses: np.ndarray, coalesce: bool, figure_each_time: bool) -> tuple[np.ndarray, int]:
    """Event-to-readout latencies (ms) of a real-time drag, and the number of readouts computed."""
    loop = asyncio.get_running_loop()
    due = loop.time() + 0.05 + np.arange(len(doses)) / EVENTS_PER_SECOND
    shown = []  # (index of the dose shown, time the readout was done)
    following = 0
    while following < len(doses):
        now = loop.time()
        if now < due[following]:
            await asyncio.sleep(due[following] - now)
            continue
        index = int(np.searchsorted(due, now, side="right")) - 1 if coalesce else following
        panel.dose.value = float(doses[index])
        shown.append((index, loop.time()))
        if figure_each_time:
            panel.redraw()
        following = index + 1
        await asyncio.sleep(0)  # the kernel's loop runs what is due (the trailing figure) between messages
    await asyncio.sleep(FIGURE_REST + 0.1)
    indices = np.array([index for index, _ in shown])
    done = np.array([at for _, at in shown])
    first = np.searchsorted(indices, np.arange(len(doses)))  # shown indices increase
    return 1e3 * (done[first] - due), len(shown)


def drags() -> list[tuple[str, np.ndarray, int]]:
    rows = []
    linear, nonlinear = MODELS
    for name, coalesce, each, model in [("every event, figure each time (baseline)", False, True, linear),
                                        ("latest only, figure each time", True, True, linear),
                                        ("latest only, figure trailing (built)", True, False, linear),
                                        ("latest only, figure trailing (built)", True, False, nonlinear)]:
        panel = new_panel(model)
        if each:
            panel._trailing.work = lambda: None
        doses = np.linspace(panel.dose.min, panel.dose.max, DRAG_EVENTS)
        panel.dose.value = float(doses[0])
        latencies, readouts = asyncio.run(drag(panel, doses, coalesce, each))
        rows.append((f"{model.split(' (')[0]}: {name}", latencies, readouts))
    return rows


def main() -> None:
    single = {name: single_updates(name) for name in MODELS}
    dragged = drags()
    load = os.getloadavg()
    out = ["# Dashboard latency: a linear and a nonlinear model\n",
           f"Live tolerances rtol={LIVE_RTOL:g}, atol={LIVE_ATOL:g} (linear model's quadrature); load average "
           f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores while "
           "measuring.\n"]
    for name, rows in single.items():
        out += [f"## One update at a time, {name} ({MOVES} moves; baseline {BASELINE_MOVES})\n",
                "| update | median (ms) | p90 (ms) | target | result |",
                "|---|---|---|---|---|"]
        for update, ms in rows:
            median, p90 = np.median(ms), np.percentile(ms, 90)
            judged = update.startswith("readout") and "baseline" not in update and "interval" not in update
            target = f"{TARGET_MS:.0f} ms" if judged else "-"
            verdict = ("PASS" if median <= TARGET_MS else "FAIL") if judged else "-"
            out.append(f"| {update} | {median:.1f} | {p90:.1f} | {target} | {verdict} |")
        out.append("")
    out += [f"## Dragging the dose slider over its range: {DRAG_EVENTS} events at {EVENTS_PER_SECOND:.0f}/s "
            f"(figure trailing: drawn after a rest of {FIGURE_REST} s)\n",
            "| model: policy | readouts | median latency (ms) | p90 latency (ms) | max (ms) | median vs baseline "
            "| result |",
            "|---|---|---|---|---|---|---|"]
    baseline = np.median(dragged[0][1])
    for name, ms, readouts in dragged:
        median = np.median(ms)
        verdict = "PASS" if median <= TARGET_MS else "FAIL"
        out.append(f"| {name} | {readouts} | {median:.0f} | {np.percentile(ms, 90):.0f} | {ms.max():.0f} | "
                   f"{median / baseline:.2g}x | {verdict} |")
    fails = [line for line in out if line.endswith("FAIL |")]
    out += ["", f"{len(fails)} FAIL" + "".join(f"\n- {line}" for line in fails)]
    text = "\n".join(out) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.md").write_text(text)


if __name__ == "__main__":
    main()
