"""FOCE-I maximum likelihood timings, next to NONMEM's own and koopnb's emcee population fit.

Run: ``python benchmarks/foce.py``.  Prints a table and writes it to benchmarks/results/foce.md:
- phenobarbital in neonates (NONMEM's example run in pharmpy-core's sdist, fetched by tests/pharmpy_testdata.py:
  59 subjects, 155 concentrations, one compartment, repeated IV doses, IIV on CL and V, proportional error):
  the FOCE-I fit
  with sandwich standard errors from the control stream's initial estimates, target ≤ 5 s; NONMEM 7.4.2's
  own elapsed estimation + covariance time from pheno_real.lst (0.32 s + 0.28 s, another machine);
- theophylline (12 subjects, 132 concentrations, oral, IIV on ka, CL, V): the FOCE-I fit, and the emcee
  population fit with its defaults (16 walkers × 2,000 steps, differential-evolution moves), target ≤ 20 s.
Run it with ``nice -n -20`` on the shared machine; the load average before and after is written with the table.
Each FOCE-I fit is timed 3 times (median and fastest) because this 2-core machine is shared.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import koopnb as kn
from koopnb.inference import ConvergenceWarning

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
from pharmpy_testdata import pheno_run  # noqa: E402 - the test helper that fetches NONMEM's run from PyPI

NONMEM_OFV = 586.27605628188053  # pheno_real.ext
NONMEM_SECONDS = 0.32 + 0.28  # pheno_real.lst: elapsed estimation + covariance time

PHENO_MODEL = """
covariate WGT = 1.3 [kg]
covariate APGR = 7
CLkg  = 0.00469307 [L/h/kg] ~ 0.17596192770028
Vkg   = 1.00916    [L/kg]   ~ 0.17643128974193
APGRF = 1.1
CL = CLkg * WGT
V  = Vkg * WGT * where(APGR < 5, APGRF, 1)
d/dt(central) = -CL / V * central
conc = central / V
conc ~ proportional(0.11507)
dose central
"""  # initial estimates of pheno_real.mod: omegas √0.0309626, √0.031128; σ √0.013241
THEOPHYLLINE_MODEL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 0.3
V  = 31.5 [L]   ~ 0.1
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""


def timed_fits(model, data, repeat: int = 3):
    times, fit = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        fit = kn.fit_population(model, data, method="ml")
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), fit


def main() -> None:
    load_before = os.getloadavg()
    pheno_data = pd.read_csv(pheno_run() / "pheno.dta", sep=r"\s+").drop(columns=["FA1", "FA2"])
    rows = []
    median, fastest, fit = timed_fits(kn.parse_model(PHENO_MODEL), pheno_data)
    rows.append(("phenobarbital, 59 subjects, FOCE-I + sandwich SEs", median, fastest, fit.ofv,
                 fit.diagnostics["objective_evaluations"], 5.0))
    pheno_ofv = fit.ofv
    theophylline = kn.parse_model(THEOPHYLLINE_MODEL)
    median, fastest, fit = timed_fits(theophylline, kn.datasets.theophylline())
    rows.append(("theophylline, 12 subjects, FOCE-I + sandwich SEs", median, fastest, fit.ofv,
                 fit.diagnostics["objective_evaluations"], np.nan))
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        posterior = kn.fit_population(theophylline, kn.datasets.theophylline(), seed=1, progress=False)
    emcee_seconds, emcee_cpu = time.perf_counter() - start, time.process_time() - cpu
    walkers, steps = posterior.diagnostics["walkers"], posterior.diagnostics["steps"]
    rows.append((f"theophylline, emcee {walkers} walkers × {steps} steps", emcee_seconds, emcee_seconds,
                 posterior.ofv, np.nan, 20.0))
    tau = max(posterior.diagnostics["autocorrelation_time"].values())

    lines = ["fit                                                   median s  fastest s       OFV  "
             "objective evals  target s"]
    for name, med, best, ofv, evaluations, target in rows:
        lines.append(f"{name:<52} {med:9.2f} {best:10.2f} {ofv:9.3f} {evaluations:16.0f} {target:9.0f}")
    lines.append("")
    lines.append(f"NONMEM 7.4.2 on the phenobarbital run (pheno_real.lst, its own machine): {NONMEM_SECONDS:.2f} s "
                 f"(estimation 0.32 + covariance 0.28), OFV {NONMEM_OFV:.3f}; koopnb's OFV differs by "
                 f"{pheno_ofv - NONMEM_OFV:+.4f}.")
    lines.append(f"emcee fit: τ = {tau:.0f} steps, chain = {steps / tau:.0f} τ; too-short warning: "
                 f"{'yes' if caught else 'no'}; OFV at the posterior mode {posterior.ofv:.3f}; CPU time of this "
                 f"process {emcee_cpu:.1f} s (the wall time includes waiting for the shared cores).")
    verdicts = [f"{'PASS' if rows[0][1] <= 5 else 'FAIL'}  FOCE-I fit of the 59-subject phenobarbital data ≤ 5 s: "
                f"{rows[0][1]:.2f} s",
                f"{'PASS' if emcee_seconds <= 20 else 'FAIL'}  emcee theophylline population fit ≤ 20 s: "
                f"{emcee_seconds:.1f} s"]
    text = "\n".join([*lines, "", *verdicts])
    print(text)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "foce.md").write_text(
        "# benchmarks/foce.py\n\nOutput of `nice -n -20 python benchmarks/foce.py` on the project's shared 2-core "
        f"machine ({time.strftime('%Y-%m-%d %H:%M')} UTC; load average 1/5/15 min before "
        f"{'/'.join(f'{v:.1f}' for v in load_before)}, after {'/'.join(f'{v:.1f}' for v in os.getloadavg())}: "
        f"on 2 cores, so other jobs may have run alongside).\n\n```\n{text}\n```\n")


if __name__ == "__main__":
    main()
