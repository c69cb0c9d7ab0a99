"""Reading a NONMEM-style table and splitting it into subjects: linear in rows, against re-reading per subject.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/data.py`` from the repository root.

Each synthetic subject has 20 rows: three doses (every other subject starts with a steady-state dose, SS 1,
II 12), 16 concentrations and one covariate-only row (EVID 2); weight is constant, creatinine clearance
changes within every other subject (so half the subjects get a covariate history).  For 100, 1,000 and
10,000 subjects the script times, side by side in one run (median of 3 repeats, wall clock):

- ``read``: ``read_nonmem`` of the CSV file (parse, check every column, expand, sort, fingerprint);
- ``split``: ``split_subjects`` of the tidy table (trust check by fingerprint, then one pass: each
  subject's regimen, observations and covariates);
- ``build``: ``split_subjects`` and then every subject's Regimen (Dose objects), observations and
  covariates (dict or DataFrame history) — what a population fit consumes; ``split`` alone defers the
  regimens and covariates to first use;
- ``re-read``: ``read_nonmem`` of the tidy table again (the fingerprint check only).

The baseline is what the fits did before: for every subject, ``subject_observations``,
``subject_regimen`` and ``subject_covariates`` each read the whole table again (run here on the same
table with its tidy mark removed, so each call does the full checks).  It is timed on the 100-subject
table only, because it grows with subjects × rows.  Target: 10,000 subjects / 200,000 rows read and
split in ≤ 2 s, and per-subject time flat in the number of subjects.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from koopnb.data import read_nonmem, split_subjects, subject_covariates, subject_observations, subject_regimen

ROWS_PER_SUBJECT = 20
REPEATS = 3
RESULTS = Path(__file__).parent / "results" / "data.md"


def synthetic_table(subjects: int, seed: int = 0) -> pd.DataFrame:
    """``subjects`` × 20 rows of NONMEM-style data (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(1, subjects + 1), ROWS_PER_SUBJECT)
    dose_times = np.array([0.0, 12.0, 24.0])
    sample_times = np.sort(rng.uniform(0.5, 47.5, (subjects, 16)), axis=1)
    covariate_time = np.full((subjects, 1), 30.25)
    times = np.concatenate([np.tile(dose_times, (subjects, 1)), sample_times, covariate_time], axis=1)
    evid = np.concatenate([np.ones((subjects, 3)), np.zeros((subjects, 16)), np.full((subjects, 1), 2)], axis=1)
    order = np.argsort(times, axis=1, kind="stable")
    times = np.take_along_axis(times, order, axis=1).ravel()
    evid = np.take_along_axis(evid, order, axis=1).ravel().astype(int)
    steady = (evid == 1) & (times == 0) & (ids % 2 == 1)
    changes = (ids % 2 == 0) & (times > 30)
    return pd.DataFrame({
        "ID": ids,
        "TIME": np.round(times, 3),
        "AMT": np.where(evid == 1, 500.0, 0.0),
        "DV": np.where(evid == 0, np.round(rng.lognormal(2.0, 0.3, ids.size), 3), np.nan),
        "EVID": evid,
        "CMT": np.where(evid == 1, 1, 2),
        "SS": steady.astype(int),
        "II": np.where(steady, 12.0, 0.0),
        "WT": np.repeat(np.round(rng.normal(70, 12, subjects), 1), ROWS_PER_SUBJECT),
        "CRCL": np.where(changes, 45.0, 90.0),
    })


def median_time(run, repeats: int = REPEATS, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)


def build_all(table: pd.DataFrame) -> None:
    for piece in split_subjects(table).values():
        piece.regimen, piece.times, piece.values, piece.covariates  # noqa: B018 (built on first access)


def per_subject_rereads(table: pd.DataFrame) -> None:
    """The old way: every subject's three helpers read the whole (untrusted) table again."""
    for subject in table["ID"].unique().tolist():
        subject_observations(table, subject)
        subject_regimen(table, subject)
        subject_covariates(table, subject)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for subjects in (100, 1_000, 10_000):
            path = os.path.join(folder, f"data{subjects}.csv")
            synthetic_table(subjects).to_csv(path, index=False, na_rep=".")
            table = read_nonmem(path)
            read = median_time(lambda path=path: read_nonmem(path))
            split = median_time(lambda table=table: split_subjects(table))
            build = median_time(lambda table=table: build_all(table))
            cpu = median_time(lambda path=path: build_all(read_nonmem(path)), clock=time.process_time)
            again = median_time(lambda table=table: read_nonmem(table))
            baseline = None
            if subjects == 100:
                untrusted = table.copy()
                untrusted.attrs = {}
                baseline = median_time(lambda untrusted=untrusted: per_subject_rereads(untrusted), repeats=1)
            rows.append((subjects, len(table), read, split, build, cpu, again, baseline))

    lines = [
        f"Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {REPEATS} repeats (wall clock, "
        f"and CPU time of this process where said; wall clock suffers when the load is high); "
        f"{ROWS_PER_SUBJECT} rows per subject.",
        "",
        "| subjects | rows | read CSV (s) | split (s) | read + split (s) | per subject (µs) | read + split + build "
        "all (s) | same, CPU (s) | per subject (µs) | tidy re-read (s) | old per-subject re-reads (s) "
        "| old / new (with build) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for subjects, count, read, split, build, cpu, again, baseline in rows:
        total, full = read + split, read + build
        old = f"{baseline:.2f}" if baseline is not None else "not run (grows as subjects × rows)"
        ratio = f"{baseline / full:.0f}×" if baseline is not None else ""
        lines.append(f"| {subjects:,} | {count:,} | {read:.3f} | {split:.3f} | {total:.3f} | "
                     f"{total / subjects * 1e6:.0f} | {full:.3f} | {cpu:.3f} | {full / subjects * 1e6:.0f} | "
                     f"{again:.3f} | {old} | {ratio} |")
    subjects, count, read, split, build, cpu, _, _ = rows[-1]
    per_subject = [(read + build) / subjects for subjects, _, read, _, build, _, _, _ in rows]
    lines += [
        "",
        f"{'PASS' if read + split <= 2.0 else 'FAIL'}  10,000 subjects / {count:,} rows read and split in ≤ 2 s: "
        f"{read + split:.2f} s",
        f"{'PASS' if read + build <= 2.0 else 'FAIL'}  the same with every subject's regimen, observations and "
        f"covariates built, in ≤ 2 s: {read + build:.2f} s wall clock ({cpu:.2f} s CPU)",
        f"{'PASS' if per_subject[-1] <= 2 * per_subject[1] else 'FAIL'}  per-subject time (with build) flat from "
        f"1,000 to 10,000 subjects (within 2×): {per_subject[1] * 1e6:.0f} µs → {per_subject[-1] * 1e6:.0f} µs",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text("# Data: read and split by subject (benchmarks/data.py)\n\n" + text + "\n")


if __name__ == "__main__":
    main()
