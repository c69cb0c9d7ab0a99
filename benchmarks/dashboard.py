"""Time per dashboard update for the theophylline model (target: at most 100 ms per update).

Moves the window slider 20 times (the readout's probability; the expected metric and the bands are
cached), then changes the dose 20 times (probability, expectation, bands and the concentration figure),
and prints the median and 90th percentile of each with PASS/FAIL against the target.

    python benchmarks/dashboard.py
"""

from __future__ import annotations

import time

import numpy as np

import koopnb as kn
from koopnb.jupyter.widgets import LIVE_ATOL, LIVE_RTOL, dashboard

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


def timed_updates(panel, control, values) -> np.ndarray:
    """Milliseconds of each synchronous update after setting ``control.value``."""
    times = []
    for value in values:
        started = time.perf_counter()
        control.value = value
        times.append(1e3 * (time.perf_counter() - started))
        if panel.message.value:
            raise RuntimeError(f"the dashboard reported an error: {panel.message.value}")
    return np.array(times)


def main() -> None:
    model = kn.parse_model(THEOPHYLLINE, name="theophylline")
    panel = dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))
    lows = np.linspace(60, 100, MOVES)
    window_ms = timed_updates(panel, panel.window, [(low, low + 40) for low in lows])
    dose_ms = timed_updates(panel, panel.dose, np.linspace(250, 450, MOVES))
    print(f"Dashboard updates, theophylline (1 compartment, 3 random parameters), live tolerances "
          f"rtol={LIVE_RTOL:g}, atol={LIVE_ATOL:g}; {MOVES} moves each\n")
    print(f"| {'update':<42} | median (ms) | p90 (ms) | target | result |")
    print(f"|{'-' * 44}|-------------|----------|--------|--------|")
    for name, ms in [("window slider (probability)", window_ms),
                     ("dose (probability, mean, bands, figure)", dose_ms)]:
        median, p90 = np.median(ms), np.percentile(ms, 90)
        verdict = "PASS" if median <= TARGET_MS else "FAIL"
        print(f"| {name:<42} | {median:11.1f} | {p90:8.1f} | {TARGET_MS:4.0f}ms | {verdict:<6} |")
    print(f"\nlast readout: P(in window) = {panel.probability_result.value:.4f} ± "
          f"{panel.probability_result.error:.1g} ({panel.probability_result.n_evals} model evaluations)")


if __name__ == "__main__":
    main()
