"""Dashboard latency for the theophylline model (target: the readout at most 100 ms after a slider move).

    nice .venv/bin/python benchmarks/dashboard.py

Table 1, one update at a time: the readout after a window move (one probability; the expected metric and the
bands are cached), after a dose move (probability, the mean scaled from its cache), after an interval change
(a new regimen shape: probability and a new mean), and a figure redraw (band, exposure histogram, PNG).

Table 2, a drag: the dose slider dragged from 80 to 1280 mg in 20 mg steps at 60 input events per second (one
second, 61 events), replayed in real time on an asyncio event loop as a Jupyter kernel runs it.  The latency of
an event is the time from the event to the end of the first readout that shows it or a later value.  Three
policies side by side:

- "every event, figure each time": the old dashboard's work per move with no coalescing (each event queued and
  computed in turn, the figure redrawn each time) — the baseline;
- "latest only, figure each time": ipywidgets' own throttle alone (the front end keeps one change in flight and
  sends the latest value when the kernel is idle), the figure still redrawn at each update;
- "latest only, figure trailing": the dashboard as built — the front end's coalescing plus the dashboard's
  throttle (the figure redrawn when the slider rests for FIGURE_REST s).

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
TARGET_MS = 100.0
MOVES = 20
DRAG_DOSES = np.arange(80.0, 1280.0 + 1.0, 20.0)
EVENTS_PER_SECOND = 60.0


def new_panel():
    model = kn.parse_model(THEOPHYLLINE, name="theophylline")
    return dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))


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


def single_updates(panel) -> list[tuple[str, np.ndarray]]:
    redraw = timed(panel, lambda _: panel.redraw(), range(MOVES))
    panel._trailing.work = lambda: None  # the readout alone from here on
    lows = np.linspace(60, 100, MOVES)
    window = timed(panel, set_value(panel.window), [(low, low + 40) for low in lows])
    dose = timed(panel, set_value(panel.dose), np.linspace(250, 450, MOVES))
    interval = timed(panel, set_value(panel.interval), [12.0, 8.0, 6.0, 24.0] * 2)
    return [("readout after a window move", window), ("readout after a dose move", dose),
            ("readout after an interval change (4 new shapes, then cached)", interval), ("figure redraw", redraw)]


async def drag(panel, coalesce: bool, figure_each_time: bool) -> tuple[np.ndarray, int]:
    """Event-to-readout latencies (ms) of a real-time drag, and the number of readouts computed."""
    loop = asyncio.get_running_loop()
    due = loop.time() + 0.05 + np.arange(len(DRAG_DOSES)) / EVENTS_PER_SECOND
    shown = []  # (index of the dose shown, time the readout was done)
    following = 0
    while following < len(DRAG_DOSES):
        now = loop.time()
        if now < due[following]:
            await asyncio.sleep(due[following] - now)
            continue
        index = int(np.searchsorted(due, now, side="right")) - 1 if coalesce else following
        panel.dose.value = float(DRAG_DOSES[index])
        shown.append((index, loop.time()))
        if figure_each_time:
            panel.redraw()
        following = index + 1
        await asyncio.sleep(0)  # the kernel's loop runs what is due (the trailing figure) between messages
    await asyncio.sleep(FIGURE_REST + 0.1)
    indices = np.array([index for index, _ in shown])
    done = np.array([at for _, at in shown])
    first = np.searchsorted(indices, np.arange(len(DRAG_DOSES)))  # shown indices increase
    return 1e3 * (done[first] - due), len(shown)


def drags() -> list[tuple[str, np.ndarray, int]]:
    rows = []
    for name, coalesce, each in [("every event, figure each time (baseline)", False, True),
                                 ("latest only, figure each time", True, True),
                                 ("latest only, figure trailing (built)", True, False)]:
        panel = new_panel()
        if each:
            panel._trailing.work = lambda: None
        panel.dose.value = float(DRAG_DOSES[0])
        latencies, readouts = asyncio.run(drag(panel, coalesce, each))
        rows.append((name, latencies, readouts))
    return rows


def main() -> None:
    panel = new_panel()
    single = single_updates(panel)
    dragged = drags()
    load = os.getloadavg()[0]
    out = ["# Dashboard latency, theophylline (1 compartment, 3 random parameters)\n",
           f"Live tolerances rtol={LIVE_RTOL:g}, atol={LIVE_ATOL:g}; load average {load:.1f} on "
           f"{os.cpu_count()} cores while measuring.\n",
           f"## One update at a time ({MOVES} moves; interval: 8 changes)\n",
           "| update | median (ms) | p90 (ms) | target | result |",
           "|---|---|---|---|---|"]
    for name, ms in single:
        median, p90 = np.median(ms), np.percentile(ms, 90)
        target = f"{TARGET_MS:.0f} ms" if name.startswith("readout") else "trails"
        verdict = ("PASS" if median <= TARGET_MS else "FAIL") if name.startswith("readout") else "-"
        out.append(f"| {name} | {median:.1f} | {p90:.1f} | {target} | {verdict} |")
    out += ["", f"## Dragging the dose slider: {len(DRAG_DOSES)} events at {EVENTS_PER_SECOND:.0f}/s "
                f"(figure trailing: drawn after a rest of {FIGURE_REST} s)\n",
            "| policy | readouts | median latency (ms) | p90 latency (ms) | max (ms) | median vs baseline | result |",
            "|---|---|---|---|---|---|---|"]
    baseline = np.median(dragged[0][1])
    for name, ms, readouts in dragged:
        median = np.median(ms)
        verdict = "PASS" if median <= TARGET_MS else "FAIL"
        out.append(f"| {name} | {readouts} | {median:.0f} | {np.percentile(ms, 90):.0f} | {ms.max():.0f} | "
                   f"{median / baseline:.2g}x | {verdict} |")
    fails = [line for line in out if "FAIL" in line]
    out += ["", f"{len(fails)} FAIL" + "".join(f"\n- {line}" for line in fails)]
    text = "\n".join(out) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.md").write_text(text)


if __name__ == "__main__":
    main()
