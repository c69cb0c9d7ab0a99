"""Calibration of the Koopman error estimate: how often |value − truth| ≤ reported error, over cases with exact truths.

    nice .venv/bin/python benchmarks/calibration.py

The error a Koopman expectation reports is an estimate (the larger of the last two level-to-level differences,
or an integrator's own estimate), not a proven bound.  This script measures its coverage over several hundred
problems whose truth is known independently of koopnb:

* log-normal products, 1 to 3 parameters (c = D·F/(CL·K), no elimination, so c is log-normal):
  E[c] = exp(μ + s²/2) and P(a ≤ c < b) = Φ((ln b − μ)/s) − Φ((ln a − μ)/s) — windows in the middle, wide, narrow
  and in both tails (probabilities down to 1e-6);
* bounded densities: x(t) = x0·e^{−kt} with x0 ~ Uniform and k ~ TruncatedNormal: E[x(t)] = E[x0]·M(−t) with the
  truncated-normal moment generating function M; windows of x(t) by scipy quad over k (a 1-D reduction);
* two log-normal elimination rates, x(t) = 100·e^{−(k1 + k2) t} (no rule is exact): E[x(t)] as a product of two
  scipy quad integrals, windows of x(t) as P(l ≤ k1 + k2 < u) by scipy quad over k1 (a 1-D reduction);
* theophylline windows P(a ≤ AUC(0,24) < b): the closed-form AUC (numpy) conditioned on CL, roots by scipy, a
  96² Gauss–Hermite rule in (ka, V) (a 1-D reduction; see koopman_vs_montecarlo.py).

Each case runs at tolerances 1e-3, 1e-4, 1e-6 and 1e-8 (relative for expectations, absolute for probabilities).
Prints and writes benchmarks/results/calibration.md: the share covered, by family and by tolerance, and the
worst ratio actual / reported error.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats
from scipy import integrate
from scipy.special import ndtr

import koopnb as kn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from koopman_vs_montecarlo import THEOPHYLLINE, _conditional_on_cl, theophylline_auc

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCES = (1e-3, 1e-4, 1e-6, 1e-8)
DOSE = 100.0

PRODUCT = {1: "CL = 2.8\nd/dt(central) = 0\nc = central/CL\ndose central",
           2: "CL = 2.8\nF = 0.8\nd/dt(central) = 0\nc = F*central/CL\ndose central",
           3: "CL = 2.8\nF = 0.8\nK = 1.5\nd/dt(central) = 0\nc = F*central/(CL*K)\ndose central"}
DECAY = "x0 = 10\nk = 0.2\nd/dt(x) = -k*x\nx(0) = x0\nconc = x"
TWO_RATES = "k1 = 0.1\nk2 = 0.1\nd/dt(x) = -(k1 + k2)*x\nx(0) = 100\nconc = x"


@dataclass
class Case:
    family: str
    quantity: object
    model: kn.Model
    regimen: kn.Regimen
    dist: kn.Distribution
    truth: float

    @property
    def is_probability(self) -> bool:
        return isinstance(self.quantity, kn.Window)


def lognormal_window(mu: float, s: float, low: float | None, high: float | None) -> float:
    """P(low ≤ X < high) for log X ~ N(mu, s²), each tail computed on its own side for accuracy."""
    a = -np.inf if low is None else (np.log(low) - mu) / s
    b = np.inf if high is None else (np.log(high) - mu) / s
    return float(ndtr(-a) - ndtr(-b)) if a > 0 else float(ndtr(b) - ndtr(a))


def product_cases() -> list[Case]:
    cases = []
    medians = {"CL": 2.8, "F": 0.8, "K": 1.5}
    for dim, text in PRODUCT.items():
        model = kn.parse_model(text)
        for omegas in ((0.1, 0.2, 0.15), (0.3, 0.25, 0.2), (0.6, 0.4, 0.5), (1.0, 0.5, 0.3)):
            names = list(medians)[:dim]
            dist = kn.Joint({name: kn.LogNormal(medians[name], omega)
                             for name, omega in zip(names, omegas, strict=False)})
            mu = np.log(DOSE * (0.8 if dim > 1 else 1.0) / 2.8 / (1.5 if dim > 2 else 1.0))
            s = float(np.sqrt(sum(o**2 for o in omegas[:dim])))
            centre = np.exp(mu)
            cases.append(Case(f"log-normal, {dim}-D, E[c]", kn.Conc(1.0), model, kn.Regimen([kn.Dose(DOSE)]), dist,
                              float(np.exp(mu + s**2 / 2))))
            windows = [(centre * np.exp(-0.5 * s), centre * np.exp(0.8 * s)),  # middle
                       (centre * np.exp(-0.05 * s), centre * np.exp(0.05 * s)),  # narrow
                       (centre * np.exp(-2.5 * s), centre * np.exp(2.5 * s)),  # wide
                       (centre * np.exp(3.0 * s), None),  # upper tail, P ≈ 1e-3
                       (None, centre * np.exp(-4.5 * s))]  # lower tail, P ≈ 3e-6
            for low, high in windows:
                cases.append(Case(f"log-normal, {dim}-D, window", kn.Window(kn.Conc(1.0), low, high), model,
                                  kn.Regimen([kn.Dose(DOSE)]), dist, lognormal_window(mu, s, low, high)))
    return cases


def truncated_mgf(mu: float, sd: float, low: float, high: float, s: float) -> float:
    alpha, beta = (low - mu) / sd, (high - mu) / sd
    return float(np.exp(mu * s + sd**2 * s**2 / 2) * (ndtr(beta - sd * s) - ndtr(alpha - sd * s))
                 / (ndtr(beta) - ndtr(alpha)))


def bounded_cases() -> list[Case]:
    model = kn.parse_model(DECAY)
    cases = []
    for (x_low, x_high), (mu, sd, low, high) in [((5, 15), (0.2, 0.08, 0.05, 0.4)), ((1, 3), (0.5, 0.3, 0.0, 2.0)),
                                                   ((8, 12), (0.1, 0.05, 0.0, np.inf))]:
        dist = kn.Joint({"x0": kn.Uniform(x_low, x_high), "k": kn.TruncatedNormal(mu, sd, low, high)})
        for t in (0.5, 3.0, 10.0):
            truth = 0.5 * (x_low + x_high) * truncated_mgf(mu, sd, low, high, -t)
            cases.append(Case("Uniform x TruncatedNormal, E[x(t)]", kn.Conc(t), model, kn.Regimen([]), dist, truth))
        k_density = scipy.stats.truncnorm((low - mu) / sd, (high - mu) / sd, loc=mu, scale=sd).pdf
        t = 3.0
        typical = 0.5 * (x_low + x_high) * np.exp(-mu * t)
        for a, b in ((0.8 * typical, 1.1 * typical), (0.5 * typical, 0.7 * typical)):
            def weighted(k, a=a, b=b, t=t, x_low=x_low, x_high=x_high, density=k_density):
                # density of k times P(a·e^{kt} ≤ x0 < b·e^{kt})
                inside = np.clip(b * np.exp(k * t), x_low, x_high) - np.clip(a * np.exp(k * t), x_low, x_high)
                return density(k) * inside / (x_high - x_low)
            kinks = [np.log(x / c) / t for x in (x_low, x_high) for c in (a, b)]
            top = high if np.isfinite(high) else mu + 12 * sd
            truth = integrate.quad(weighted, low, top, points=[p for p in kinks if low < p < top],
                                   epsabs=1e-15, epsrel=1e-13, limit=500)[0]
            cases.append(Case("Uniform x TruncatedNormal, window", kn.Window(kn.Conc(t), a, b), model, kn.Regimen([]),
                              dist, truth))
    return cases


def rate_cases() -> list[Case]:
    """x(t) = 100·e^{−(k1 + k2) t}, k1, k2 log-normal: no rule is exact here (e^{−kt} of a log-normal k).

    E[x(t)] = 100·E[e^{−k1 t}]·E[e^{−k2 t}], each factor by scipy quad; windows of x(t) are windows of k1 + k2,
    P(l ≤ k1 + k2 < u) = ∫ f1(k) (F2(u − k) − F2(l − k)) dk by scipy quad (a 1-D reduction).
    """
    model = kn.parse_model(TWO_RATES)
    cases = []
    for (m1, w1), (m2, w2) in [((0.1, 0.3), (0.05, 0.5)), ((0.2, 0.6), (0.1, 0.2)), ((0.05, 1.0), (0.3, 0.4))]:
        first, second = scipy.stats.lognorm(w1, scale=m1), scipy.stats.lognorm(w2, scale=m2)
        dist = kn.Joint({"k1": kn.LogNormal(m1, w1), "k2": kn.LogNormal(m2, w2)})

        def factor(law, t):
            return integrate.quad(lambda k: np.exp(-k * t) * law.pdf(k), 0, np.inf, epsabs=0, epsrel=1e-13,
                                  limit=500)[0]

        for t in (1.0, 5.0, 20.0):
            truth = 100.0 * factor(first, t) * factor(second, t)
            cases.append(Case("two log-normal rates, E[x(t)]", kn.Conc(t), model, kn.Regimen([]), dist, truth))
        t, typical = 5.0, m1 + m2
        for low_rate, high_rate in ((0.8 * typical, 1.3 * typical), (1.5 * typical, 3.0 * typical)):
            def inside(k, low_rate=low_rate, high_rate=high_rate, first=first, second=second):
                return first.pdf(k) * (second.cdf(high_rate - k) - second.cdf(low_rate - k))
            truth = integrate.quad(inside, 0, high_rate, points=[low_rate], epsabs=1e-15, epsrel=1e-13, limit=500)[0]
            # low ≤ x(t) < high  ⇔  k1 + k2 in (ln(100/high)/t, ln(100/low)/t]; same probability (continuous law)
            window = kn.Window(kn.Conc(t), 100 * np.exp(-high_rate * t), 100 * np.exp(-low_rate * t))
            cases.append(Case("two log-normal rates, window", window, model, kn.Regimen([]), dist, truth))
    return cases


def theophylline_cases() -> list[Case]:
    model = kn.parse_model(THEOPHYLLINE)
    dist = model.prior()
    cases = []
    for dose in (320.0, 450.0):
        def auc_of(params, dose=dose):
            return theophylline_auc(dose, params["ka"], params["CL"], params["V"])

        for low, high in ((80.0, 120.0), (100.0, 110.0), (160.0, None), (None, 50.0)):
            truth = _conditional_on_cl(dist, auc_of, (low or 1e-300, high or 1e300), 96, 2)
            cases.append(Case("theophylline AUC window", kn.Window(kn.AUC(0, 24), low, high), model,
                              kn.Regimen([kn.Dose(dose)]), dist, truth))
    return cases


def main() -> None:
    load = os.getloadavg()
    started = time.perf_counter()
    cases = product_cases() + bounded_cases() + rate_cases() + theophylline_cases()
    rows = []
    for case in cases:
        for tol in TOLERANCES:
            options = {"atol": tol, "rtol": 0.0} if case.is_probability else {"rtol": tol, "atol": 0.0}
            result = kn.expectation(case.quantity, case.model, case.regimen, case.dist, **options)
            actual = abs(result.value - case.truth)
            rows.append({"family": case.family, "tol": tol, "covered": actual <= result.error,
                         "ratio": actual / result.error if result.error > 0 else np.inf,
                         "converged": result.converged, "n_evals": result.n_evals,
                         "within_tolerance": actual <= (tol if case.is_probability else tol * abs(case.truth)),
                         "case": f"{case.quantity} under {case.dist!r}", "rule": result.rule})
    total = time.perf_counter() - started
    text = table(rows, total, load)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "calibration.md").write_text(text)
    print(f"wrote {RESULTS / 'calibration.md'}")


def table(rows: list[dict], total: float, load: tuple) -> str:
    covered = sum(r["covered"] for r in rows)
    lines = ["# Calibration of the Koopman error estimate", "",
             "Generated by `benchmarks/calibration.py`: every case has a truth computed without koopnb (closed forms, "
             "or scipy quad / root finding on a 1-D reduction). Covered: |value − truth| ≤ reported error. Ratio: "
             "|value − truth| / reported error (≤ 1 when covered).", "",
             f"**{covered} of {len(rows)} cases covered ({100 * covered / len(rows):.1f}%).** "
             f"{sum(r['within_tolerance'] for r in rows)} of {len(rows)} answers are within the tolerance asked for; "
             f"{sum(r['converged'] for r in rows)} reported converged.", "",
             "| family | cases | covered | share | worst ratio | within tolerance | median evaluations |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["family"] for r in rows):
        group = [r for r in rows if r["family"] == name]
        lines.append(_line(name, group))
    lines += ["", "| tolerance | cases | covered | share | worst ratio | within tolerance | median evaluations |",
              "|---|---|---|---|---|---|---|"]
    for tol in TOLERANCES:
        lines.append(_line(f"{tol:.0e}", [r for r in rows if r["tol"] == tol]))
    missed = sorted((r for r in rows if not r["covered"]), key=lambda r: -r["ratio"])
    lines += ["", f"Not covered ({len(missed)}):", ""]
    lines += [f"- **FAIL** ratio {r['ratio']:.2f} at tolerance {r['tol']:.0e}: {r['case']} ({r['rule']})"
              for r in missed] or ["- none"]
    lines += ["", f"Load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; total run time "
              f"{total:.0f} s.", ""]
    return "\n".join(lines)


def _line(name: str, group: list[dict]) -> str:
    covered = sum(r["covered"] for r in group)
    worst = max(r["ratio"] for r in group)
    return (f"| {name} | {len(group)} | {covered} | {100 * covered / len(group):.1f}% | {worst:.2g} | "
            f"{sum(r['within_tolerance'] for r in group)} | {int(np.median([r['n_evals'] for r in group]))} |")


if __name__ == "__main__":
    main()
