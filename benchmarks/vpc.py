"""Koopman VPC bands against the simulation-based VPC with 10⁶ simulated subjects.

Run: ``python benchmarks/vpc.py``.  The theophylline population (FOCE-I estimates of the 12 subjects) is checked
against its own data: bands at 12 times and in the 11 time bins, levels 5 %, 50 %, 95 %.  Koopman: tensor
Gauss–Hermite rules up to 14 points per random effect (the three random effects: 6,264 model evaluations in
all, the study's dose-proportional subjects sharing each one).  Monte Carlo: 10⁶ simulated subjects (each a
model evaluation) with each observation's residual error drawn.  The table gives, per level, the largest
|Koopman − Monte Carlo| in Monte Carlo standard errors (from the order statistics) and Koopman's own error
estimate; written to benchmarks/results/vpc.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import koopnb as kn

ROOT = Path(__file__).resolve().parent
MODEL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 0.3
V  = 31.5 [L]   ~ 0.1
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
TIMES = np.array([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 18.0, 24.0])


def main() -> None:
    data = kn.datasets.theophylline()
    fit = kn.fit_population(kn.parse_model(MODEL), data, method="ml")
    koopman = kn.vpc(fit, data, times=TIMES, max_points=14)
    simulated = kn.vpc(fit, data, times=TIMES, method="montecarlo", n=1_000_000, seed=2026)
    lines = ["level   where         max |K − MC| / SE_MC   mean |K − MC| / SE_MC   max K error est.   max SE_MC"]
    worst = 0.0
    for i, level in enumerate(koopman.quantiles):
        for where, k, mc, k_error, se in (
                ("12 times", koopman.bands[i], simulated.bands[i], koopman.error[i], simulated.error[i]),
                ("11 bins", koopman.predicted[i], simulated.predicted[i], koopman.predicted_error[i],
                 simulated.predicted_error[i])):
            z = np.abs(k - mc) / se
            worst = max(worst, float(z.max()))
            lines.append(f"{100 * level:4.0f}%   {where:<12} {z.max():22.2f} {z.mean():23.2f} {k_error.max():18.4f} "
                         f"{se.max():11.4f}")
    ratio = simulated.n_evals / koopman.n_evals
    lines += ["",
              f"model evaluations: Koopman {koopman.n_evals:,} (converged to rtol 1e-3: {koopman.converged}), "
              f"Monte Carlo {simulated.n_evals:,}; ratio {ratio:.0f}×",
              f"wall time: Koopman {koopman.elapsed:.1f} s, Monte Carlo {simulated.elapsed:.1f} s",
              "",
              f"{'PASS' if worst <= 4 else 'FAIL'}  Koopman bands within 4 Monte Carlo standard errors everywhere "
              f"(worst {worst:.2f})",
              f"{'PASS' if ratio >= 100 else 'FAIL'}  ≥ 100× fewer model evaluations ({ratio:.0f}×)"]
    text = "\n".join(lines)
    print(text)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "vpc.md").write_text(
        "# benchmarks/vpc.py\n\nOutput of `python benchmarks/vpc.py` on the project's shared 2-core machine "
        f"({time.strftime('%Y-%m-%d')}).\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
