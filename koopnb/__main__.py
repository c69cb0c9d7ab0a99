"""``python -m koopnb demo``: the theophylline workflow, headless, printing the recommended dose."""

from __future__ import annotations

import argparse
import sys
import warnings

THEOPHYLLINE = """
# theophylline: one compartment, first-order absorption (population values as published for this data set)
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""


def demo(seed: int = 1) -> int:
    """Population model → a new patient's two levels → posterior → P(target) → best dose, printed."""
    import koopnb as kn

    model = kn.parse_model(THEOPHYLLINE, name="theophylline")
    regimen = kn.Regimen.parse("320 mg po")
    times, levels = [1.0, 6.0], [6.8, 7.4]
    window = kn.Window(kn.AUC(0, 24), 80, 120)
    print("koopnb demo: theophylline, 320 mg po; patient levels", ", ".join(
        f"{c:g} mg/L at {t:g} h" for t, c in zip(times, levels, strict=True)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kn.ConvergenceWarning)
        posterior = kn.fit_individual(model, (times, levels), regimen=regimen, seed=seed, progress=False)
    patient = posterior.to_distribution()
    print(posterior.summary().to_string())
    prior_p = kn.probability(window, model, regimen, model.prior(), rtol=1e-5, atol=1e-6)
    patient_p = kn.probability(window, model, regimen, patient, rtol=1e-5, atol=1e-6)
    print(f"\nP({window}) with the population prior: {prior_p.value:.4f} ± {prior_p.error:.1g}")
    print(f"P({window}) for this patient:           {patient_p.value:.4f} ± {patient_p.error:.1g} "
          f"({patient_p.n_evals} model evaluations)")
    best = kn.optimize_dose(model, regimen, patient, window, bounds=(25, 1000), step=25)
    print(f"\nRecommended dose: {best.dose:g} mg po — P({window}) = {best.objective:.4f} ± {best.error:.1g}"
          f" ({'converged' if best.converged else 'NOT converged'}; {best.n_evals} model evaluations)")
    if not best.feasible:
        print(best.message)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m koopnb", description="koopnb command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the theophylline workflow and print the recommended dose")
    demo_parser.add_argument("--seed", type=int, default=1, help="seed of the posterior sampler")
    app_parser = commands.add_parser("app", help="serve the no-code dosing page (Voilà) on 127.0.0.1")
    app_parser.add_argument("--port", type=int, default=8866, help="port to listen on (default 8866)")
    app_parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1 only)")
    app_parser.add_argument("--models", default=None, help="a folder of .pk model files to offer as well")
    app_parser.add_argument("--browser", action="store_true", help="open a web browser on the page")
    args = parser.parse_args(argv)
    if args.command == "app":
        from koopnb.app import serve

        return serve(args.port, args.ip, args.models, args.browser)
    return demo(args.seed)


if __name__ == "__main__":
    sys.exit(main())
