"""Many patients on Dask: a ward's cohort run and a dosing nomogram, serial vs LocalCluster (1 and 2 workers).

    .venv/bin/python benchmarks/scale.py [--patients 1000] [--strata 100x100] [--steps 1000]

Problem: the vancomycin model of Goti et al. (Ther Drug Monit 2018;40:212-221, Table 2; notebook 04), target
AUC(120, 144) in 400..600 mg·h/L and the trough at 144 h below 20 mg/L, three candidate regimens.

- Cohort: ``--patients`` simulated patients (``kn.simulate_ward``: CrCL uniform 20–130 mL/min, weight uniform
  50–120 kg, 1000 mg over 1 h q12h x4, levels at 2 h and 35.5 h), each fitted with ``--steps`` emcee steps,
  then the current regimen and the three candidates evaluated.
- Nomogram: ``--strata`` A×B, body weight 40–150 kg (A values) × CrCL 10–150 mL/min (B values), the three
  candidates in every stratum, a priori (the population distribution).

The model adds the paper's weight effect to notebook 04's text: central volume 58.4 L × weight / 70 kg.

Each job set runs serially in this process (the reference), then on a LocalCluster of single-threaded worker
processes (1 and 2 workers, configured as ``client=None`` configures them) and, for the choice of
``client=None``, on a LocalCluster of 2 threads in one process.  Cluster start-up is timed separately.  Every
cluster table is checked equal to the serial one.
Speed-up = serial / cluster time; efficiency = speed-up / workers.

Cost model (a projection, not a measurement): time ≈ per-job time × jobs / workers + per-task overhead ×
tasks / workers, with the per-job time of the serial run and the per-task overhead from the 1-worker run;
it predicts 10^5 patients on 100 workers.  The machine is shared: the load average is printed with the table.
Writes benchmarks/results/scale.md.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

import koopnb as kn
from koopnb.scale.execution import worker_environment

RESULTS = Path(__file__).resolve().parent / "results"
VANCOMYCIN = """
covariate CRCL = 120 [mL/min]
covariate WT = 70 [kg]
TVCL = 4.5  [L/h] ~ 39.8%
TVVc = 58.4 [L]   ~ 81.6%
Vp   = 38.4 [L]   ~ 57.1%
Q    = 6.5  [L/h]
CL   = TVCL * (CRCL/120)^0.8
Vc   = TVVc * WT/70
d/dt(central)    = -CL/Vc*central - Q/Vc*central + Q/Vp*peripheral
d/dt(peripheral) =  Q/Vc*central - Q/Vp*peripheral
conc = central / Vc
conc ~ combined(3.4, 0.227)
dose central
"""
TARGET = [kn.Window(kn.AUC(120, 144), 400, 600), kn.Window(kn.Conc(144), None, 20)]
REGIMENS = {"1000 mg q12h": "1000 mg iv over 1 h q12h x13", "750 mg q8h": "750 mg iv over 1 h q8h x19",
            "1500 mg q24h": "1500 mg iv over 1.5 h q24h x7"}
PROJECTED_JOBS, PROJECTED_WORKERS = 100_000, 100


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--patients", type=int, default=1000)
    options.add_argument("--strata", default="100x100", help="weights x CrCL values, e.g. 100x100")
    options.add_argument("--steps", type=int, default=1000)
    args = options.parse_args()
    model = kn.parse_model(VANCOMYCIN, name="vancomycin")
    ward = kn.simulate_ward(model, args.patients, "1000 mg iv over 1 h q12h x4", [2.0, 35.5],
                            kn.Joint({"CRCL": kn.Uniform(20, 130), "WT": kn.Uniform(50, 120)}), seed=1)
    n_weights, n_crcl = (int(part) for part in args.strata.split("x"))
    grid = {"WT": np.linspace(40, 150, n_weights), "CRCL": np.linspace(10, 150, n_crcl)}

    def run_cohort(client):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return kn.cohort(model, ward, TARGET, regimens=REGIMENS, client=client, steps=args.steps,
                             progress=False)

    def run_nomogram(client):
        return kn.nomogram(model, TARGET, grid, REGIMENS, client=client, progress=False)

    rows = []
    for job, run, n_jobs in (("cohort", run_cohort, args.patients), ("nomogram", run_nomogram, n_weights * n_crcl)):
        rows += measure(job, run, n_jobs)
    table = pd.DataFrame(rows)
    text = report(table, args)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.md").write_text(text + "\n")


def measure(job: str, run, n_jobs: int) -> list[dict]:
    """The job set serially, on 1 and 2 worker processes and on 2 threads; each table checked against serial."""
    started = time.perf_counter()
    reference = run("serial")
    serial = time.perf_counter() - started
    rows = [{"job": job, "jobs": n_jobs, "run": "serial (this process)", "workers": 1, "startup": 0.0,
             "seconds": serial, "per_job": serial / n_jobs}]
    for label, workers, processes in (("LocalCluster, processes", 1, True), ("LocalCluster, processes", 2, True),
                                      ("LocalCluster, threads", 2, False)):
        started = time.perf_counter()
        where = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process, not over TCP
        with worker_environment(), LocalCluster(n_workers=workers if processes else 1,
                                                threads_per_worker=1 if processes else workers, processes=processes,
                                                dashboard_address=None, **where) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - started
            started = time.perf_counter()
            table = run(client)
            seconds = time.perf_counter() - started
        pd.testing.assert_frame_equal(reference.drop(columns="time"), table.drop(columns="time"), check_exact=True)
        rows.append({"job": job, "jobs": n_jobs, "run": label, "workers": workers, "startup": startup,
                     "seconds": seconds, "per_job": seconds / n_jobs})
    return rows


def report(table: pd.DataFrame, args) -> str:
    lines = [f"Cohort: {args.patients} simulated vancomycin patients, {args.steps} emcee steps each, 3 candidate "
             f"regimens. Nomogram: {args.strata} strata (weight × CrCL), the same 3 candidates in each. "
             f"Machine: {os.cpu_count()} cores shared with other work (load average "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end). Every cluster table equals the "
             "serial one (checked).", "",
             "| job | run | workers | start-up (s) | time (s) | per job (ms) | speed-up | efficiency |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for _, row in table.iterrows():
        serial = table[(table.job == row.job) & (table.workers == 1) & table.run.str.startswith("serial")]
        speedup = float(serial.seconds.iloc[0]) / row.seconds
        lines.append(f"| {row.job} ({row.jobs}) | {row.run} | {row.workers} | {row.startup:.1f} | {row.seconds:.1f} | "
                     f"{1000 * row.per_job:.0f} | {speedup:.2f}× | {speedup / row.workers:.0%} |")
    lines += ["", "Cost model (a projection from these measurements, not a run): time ≈ per-job time × jobs / "
              "workers + overhead per ~1 s task × tasks / workers.", "",
              "| job | per job (ms, serial) | overhead per task (ms, 1 worker) | projected: 10^5 jobs on 100 workers |",
              "|---|---:|---:|---:|"]
    for job, rows in table.groupby("job", sort=False):
        serial = rows[rows.run.str.startswith("serial")].iloc[0]
        one = rows[(rows.workers == 1) & ~rows.run.str.startswith("serial")].iloc[0]
        per_job = serial.seconds / serial.jobs
        per_batch = max(1, round(1.0 / per_job))
        tasks = math.ceil(serial.jobs / per_batch)
        overhead = max(0.0, (one.seconds - serial.seconds) / tasks)
        projected = (per_job * PROJECTED_JOBS + overhead * math.ceil(PROJECTED_JOBS / per_batch)) / PROJECTED_WORKERS
        lines.append(f"| {job} | {1000 * per_job:.0f} | {1000 * overhead:.0f} | "
                     f"{projected / 60:.1f} min (+ cluster start-up) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
