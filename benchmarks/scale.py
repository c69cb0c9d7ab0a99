"""Many patients on Dask: a ward's cohort run and a dosing nomogram, serial vs LocalCluster (1 and 2 workers).

    nice -n -20 .venv/bin/python benchmarks/scale.py [--patients 1000] [--steps 2000] [--subset 100]
                                                     [--strata 20x20] [--strata-subset N] [--jobs cohort,nomogram]

Problem: the vancomycin model of Goti et al. (Ther Drug Monit 2018;40:212-221, Table 2; notebook 04), target
AUC(120, 144) in 400..600 mg·h/L and the trough at 144 h below 20 mg/L, three candidate regimens.

- Cohort: ``--patients`` simulated patients (``kn.simulate_ward``: CrCL uniform 20–130 mL/min, weight uniform
  50–120 kg, 1000 mg over 1 h q12h x4, levels at 2 h and 35.5 h), each fitted with ``--steps`` emcee steps
  (the default of ``kn.cohort``: with 32 walkers the chains' autocorrelation time is 30–40 steps, and koopnb
  trusts a chain of 50 of them), then the current regimen and the three candidates evaluated.
- Nomogram: ``--strata`` A×B, body weight 40–150 kg (A values) × CrCL 10–150 mL/min (B values), the three
  candidates in every stratum, a priori (the population distribution).

The model adds the paper's weight effect to notebook 04's text: central volume 58.4 L × weight / 70 kg.

Each job set runs serially in this process (the reference), then on a LocalCluster of single-threaded worker
processes (2 and 1 workers, configured as ``client=None`` configures them) and, for the choice of
``client=None``, on a LocalCluster of 2 threads in one process.  Cluster start-up is timed separately, and the
CPU time of every process of a run is measured besides the wall time (the machine is shared).  With
``--subset`` the cohort's 1-worker and 2-thread runs do the first patients only (to fit the time on two shared
cores), with ``--strata-subset`` the nomogram's.  ``--jobs`` picks the job sets; one alone writes
``scale_<job>.md`` instead of ``scale.md``.  Every cluster table is checked equal to the serial one.
Speed-up = serial / cluster time; efficiency = speed-up / workers.

Cost model (a projection, not a measurement): time ≈ (serial time per job + the extra CPU per job of the
2-worker run) × jobs / workers; it predicts 10^5 patients on 100 workers (and, when the grid is reduced, the
100×100 nomogram here).  Writes benchmarks/results/scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from distributed import Client, LocalCluster

import koopnb as kn
from koopnb.scale.candidates import CandidateJob
from koopnb.scale.execution import local_cluster_config

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
IDLE_SECONDS = 10.0
FULL_GRID = (100, 100)


@dataclass
class Run:
    """One timed run of a job set; ``reference`` is the serial wall time of the same jobs (s)."""

    job: str
    run: str
    workers: int
    jobs: int
    startup: float
    wall: float
    cpu: float
    reference: float


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--patients", type=int, default=1000)
    options.add_argument("--steps", type=int, default=2000)
    options.add_argument("--subset", type=int, default=100,
                         help="patients of the cohort's 1-worker and 2-thread runs (the first ones)")
    options.add_argument("--strata", default="20x20", help="weights x CrCL values, e.g. 100x100")
    options.add_argument("--strata-subset", type=int, default=None,
                         help="strata of the nomogram's 1-worker and 2-thread runs (the first ones)")
    options.add_argument("--jobs", default="cohort,nomogram", help="job sets to run: cohort, nomogram or both")
    args = options.parse_args()
    jobs = args.jobs.split(",")
    if not set(jobs) <= {"cohort", "nomogram"}:
        options.error(f"--jobs takes cohort and/or nomogram, not {args.jobs}")
    name = "scale.md" if len(jobs) == 2 else f"scale_{jobs[0]}.md"
    load_before = os.getloadavg()
    model = kn.parse_model(VANCOMYCIN, name="vancomycin")
    ward = kn.simulate_ward(model, args.patients, "1000 mg iv over 1 h q12h x4", [2.0, 35.5],
                            kn.Joint({"CRCL": kn.Uniform(20, 130), "WT": kn.Uniform(50, 120)}), seed=1)
    n_weights, n_crcl = (int(part) for part in args.strata.split("x"))
    grid = {"WT": np.linspace(40, 150, n_weights), "CRCL": np.linspace(10, 150, n_crcl)}

    def run_nomogram(client, strata=None):
        if strata is None:
            return kn.nomogram(model, TARGET, grid, REGIMENS, client=client, progress=False)
        rows = -(-strata // n_crcl)  # the first weights, every CrCL: the first strata of the full run
        return kn.nomogram(model, TARGET, {"WT": grid["WT"][:rows], "CRCL": grid["CRCL"]}, REGIMENS,
                           client=client, progress=False)

    def run_cohort(client, patients=None):
        rows = ward if patients is None else ward[ward.ID <= patients]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each subject's warnings are in its row's status and message
            return kn.cohort(model, rows, TARGET, regimens=REGIMENS, client=client, steps=args.steps,
                             progress=False)

    overheads = worker_overheads(model)
    runs, cohort_table = [], None
    if "cohort" in jobs:
        runs, cohort_table = measure("cohort", run_cohort, args.patients, min(args.subset, args.patients))
        # Written now too, so the cohort's table is kept should the nomogram not finish.
        write(report(runs, args, cohort_table, overheads, load_before, os.getloadavg()), name)
    if "nomogram" in jobs:
        runs += measure("nomogram", run_nomogram, n_weights * n_crcl, args.strata_subset)[0]
    text = report(runs, args, cohort_table, overheads, load_before, os.getloadavg())
    print(text)
    write(text, name)


def write(text: str, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(text + "\n")


def measure(job: str, run, n_jobs: int, subset: int | None) -> tuple[list[Run], pd.DataFrame]:
    """The job set serially, on 1 and 2 worker processes and on 2 threads; each table checked against serial.

    With ``subset``, the 1-worker and 2-thread runs do the first ``subset`` jobs only, and their reference is
    the serial run's own time for those jobs (the sum of their rows' times)."""
    print(f"{job}: serial ({n_jobs})", file=sys.stderr, flush=True)
    cpu, started = time.process_time(), time.perf_counter()
    reference = run("serial")
    serial = time.perf_counter() - started
    runs = [Run(job, "serial (this process)", 1, n_jobs, 0.0, serial, time.process_time() - cpu, serial)]
    for label, workers, processes in (("LocalCluster, processes", 2, True), ("LocalCluster, processes", 1, True),
                                      ("LocalCluster, threads", 2, False)):
        part = subset if subset and (workers == 1 or not processes) else None
        print(f"{job}: {label}, {workers} ({part or n_jobs})", file=sys.stderr, flush=True)
        started = time.perf_counter()
        where = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process, not over TCP
        with local_cluster_config(), LocalCluster(n_workers=workers if processes else 1,
                                                  threads_per_worker=1 if processes else workers,
                                                  processes=processes, dashboard_address=None,
                                                  **where) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - started
            pids = [os.getpid(), *(client.run(os.getpid).values() if processes else ())]
            cpu, started = cpu_seconds(pids), time.perf_counter()
            table = run(client, part)
            wall, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu
        expected = reference.iloc[:len(table)]
        pd.testing.assert_frame_equal(expected.drop(columns="time"), table.drop(columns="time"), check_exact=True)
        reference_wall = serial if part is None else float(expected["time"].sum())
        name = label if part is None else f"{label} (first {part})"
        runs.append(Run(job, name, workers, len(table), startup, wall, cpu, reference_wall))
    return runs, reference


def worker_overheads(model) -> list[str]:
    """What a worker costs besides the jobs: shipping the model, and an idle worker's CPU with dask's defaults and
    with the configuration koopnb gives its local workers (``local_cluster_config``)."""
    job = CandidateJob(model, TARGET, {label: kn.Regimen.parse(text) for label, text in REGIMENS.items()},
                       model.prior(), 1e-4, 1e-3)
    shipped = pickle.dumps(job)
    started = time.perf_counter()
    pickle.loads(shipped)  # a worker rebuilds the model's generated code from its specification
    unpickle = time.perf_counter() - started
    lines = [f"- The shared part of a job (model, target, candidates, distribution) pickles to "
             f"{len(shipped) / 1000:.1f} kB and unpickles in {1000 * unpickle:.0f} ms, once per worker."]
    configs = {"dask's defaults": contextlib.nullcontext, "koopnb's local workers": local_cluster_config}
    for label, config in configs.items():
        with config(), LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None) as cluster, Client(cluster) as client:
            pids = [os.getpid(), *client.run(os.getpid).values()]
            time.sleep(2.0)  # past start-up
            before, started = [cpu_seconds([pid]) for pid in pids], time.perf_counter()
            time.sleep(IDLE_SECONDS)
            elapsed = time.perf_counter() - started
            used = [(cpu_seconds([pid]) - cpu) / elapsed for pid, cpu in zip(pids, before, strict=True)]
        lines.append(f"- An idle one-worker LocalCluster with {label}: the worker uses {1000 * used[1]:.0f} ms of CPU "
                     f"per second, this process (scheduler, nanny, client) {1000 * used[0]:.0f} ms.")
    return lines


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time (s) of these processes, all their threads."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def worker_cpu(runs: list[Run]) -> list[str]:
    """What the 1-worker run measured: a job's CPU in one worker process against the serial run's (both include
    what the run's other processes used per job)."""
    lines = []
    for job in dict.fromkeys(r.job for r in runs):
        serial = next(r for r in runs if r.job == job and r.run.startswith("serial"))
        one = next((r for r in runs if r.job == job and r.workers == 1 and "processes" in r.run), None)
        if one is not None:
            ratio = (one.cpu / one.jobs) / (serial.cpu / serial.jobs)
            lines.append(f"- {job}: CPU per job {1000 * one.cpu / one.jobs:.0f} ms on one worker process against "
                         f"{1000 * serial.cpu / serial.jobs:.0f} ms serially ({ratio:.2f}×): "
                         "what a worker adds — scheduler, nanny, heartbeats, event loops, and any slowdown of the "
                         "jobs themselves in a worker process.")
    return lines


def report(runs: list[Run], args, cohort: pd.DataFrame, overheads: list[str], load_before, load_after) -> str:
    n_weights, n_crcl = (int(part) for part in args.strata.split("x"))
    reduced = (n_weights, n_crcl) != FULL_GRID
    ran = {r.job for r in runs}
    parts = []
    if cohort is not None:
        statuses = ", ".join(f"{count} {status}" for status, count in cohort.status.value_counts().items())
        parts.append(f"Cohort: {args.patients} simulated vancomycin patients, {args.steps} emcee steps each"
                     f"{' (the default)' if args.steps == 2000 else ''}, the current regimen and 3 candidates; rows: "
                     f"{statuses}. The cohort's 1-worker and 2-thread runs do the first "
                     f"{min(args.subset, args.patients)} patients only.")
    if "nomogram" in ran:
        parts.append(f"Nomogram: {args.strata} strata (weight 40–150 kg × CrCL 10–150 mL/min), 3 candidates in each"
                     + (f" — reduced from 100x100, which would take about "
                        f"{FULL_GRID[0] * FULL_GRID[1] / (n_weights * n_crcl):.0f}× as long (projected below)."
                        if reduced else ".")
                     + (f" Its 1-worker and 2-thread runs do the first {args.strata_subset} strata only."
                        if args.strata_subset else ""))
    parts.append("A run on part of the jobs is compared with the serial run's own time for those jobs (the sum of "
                 "their rows' times). Every cluster table equals the serial one (checked).")
    lines = [
        " ".join(parts),
        "",
        f"Machine: {os.cpu_count()} cores shared with other engineers' work; run with `nice -n -20`; load average "
        f"(uptime) {', '.join(f'{x:.2f}' for x in load_before)} at the start and "
        f"{', '.join(f'{x:.2f}' for x in load_after)} at the end. CPU = user + system time of every process of "
        "the run (this one with the scheduler and nannies, and the workers): unlike the wall time it does not "
        "depend on what else the machine runs.",
        "",
        "| job | run | workers | jobs | start-up (s) | wall (s) | wall per job (ms) | CPU per job (ms) | speed-up "
        "| efficiency |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        speedup = r.reference / r.wall
        lines.append(f"| {r.job} | {r.run} | {r.workers} | {r.jobs} | {r.startup:.1f} | {r.wall:.1f} | "
                     f"{1000 * r.wall / r.jobs:.0f} | {1000 * r.cpu / r.jobs:.0f} | {speedup:.2f}× | "
                     f"{speedup / r.workers:.0%} |")
    lines += ["", "Where a worker's time goes besides the jobs (measured in the same run):", "", *overheads,
              "- Jobs run with one BLAS thread in every run; tasks are batches of about 1 s (dask: about 1 ms each).",
              *worker_cpu(runs)]
    lines += ["", "Cost model — a projection from these measurements, not a run: time ≈ (serial time per job + "
              "extra CPU per job on the cluster) × jobs / workers, plus cluster start-up. It assumes workers as fast "
              "as one core here, a scheduler that keeps up (about 1 ms per ~1 s task) and negligible shipping "
              "(a patient's rows are a few kB, the model is shipped once).", "",
              "| job | serial per job (ms) | extra CPU per job, 2 workers (ms) | projection |", "|---|---:|---:|---|"]
    for job in dict.fromkeys(r.job for r in runs):
        serial = next(r for r in runs if r.job == job and r.run.startswith("serial"))
        two = next(r for r in runs if r.job == job and r.workers == 2 and "processes" in r.run)
        per_job, extra = serial.wall / serial.jobs, max(0.0, two.cpu / two.jobs - serial.cpu / serial.jobs)
        projections = [f"10^5 on 100 workers: {(per_job + extra) * PROJECTED_JOBS / PROJECTED_WORKERS / 60:.1f} min"]
        if job == "nomogram" and reduced:
            full = FULL_GRID[0] * FULL_GRID[1]
            projections.append(f"100x100 on the 2 workers here: {(per_job + extra) * full / 2 / 60:.0f} min")
        lines.append(f"| {job} | {1000 * per_job:.0f} | {1000 * extra:.0f} | {'; '.join(projections)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
