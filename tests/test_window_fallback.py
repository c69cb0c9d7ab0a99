"""A window that no conditioning direction makes monotone: estimated by randomised QMC with an honest standard
error, never certified by a rule that did not see it (adaptive cubature once reported 0 ± 1e-18 here)."""

import numpy as np
from shared_models import VANCOMYCIN_WEIGHT

import koopnb as kn
from koopnb.expectation.sampling import randomized_qmc

# A trough that first rises and then falls with the central volume, together with an AUC window, in a patient of
# 150 kg with a CrCL of 10 mL/min: no direction keeps both metrics monotone.
TARGET = [kn.Window(kn.AUC(120, 144), 400, 600), kn.Window(kn.Conc(144), None, 20)]
PATIENT = {"WT": 150.0, "CRCL": 10.0}
REGIMEN = "1000 mg iv over 1 h q12h x13"


def test_a_window_no_direction_makes_monotone_agrees_with_monte_carlo():
    model = kn.parse_model(VANCOMYCIN_WEIGHT, name="vancomycin")
    regimen = kn.Regimen.parse(REGIMEN)
    result = kn.probability(TARGET, model, regimen, model.prior(), covariates=PATIENT, rtol=1e-4, atol=1e-3)
    reference = kn.probability(TARGET, model, regimen, model.prior(), covariates=PATIENT, method="montecarlo",
                               n=400_000, seed=7)
    assert "randomised QMC" in result.rule
    assert any("statistical estimate" in warning for warning in result.warnings)
    assert result.converged and result.error <= 1e-3
    # The false certificate was 0 ± 8.7e-19; the truth is about 1.2 %.
    assert result.value > 0.008
    assert abs(result.value - reference.value) <= 4 * np.hypot(result.error, reference.error)
    # Every direction gets at most OUTER_MAX_NODES outer nodes before the fallback (it was 1.3 million evaluations).
    assert result.n_evals < 200_000
    again = kn.probability(TARGET, model, regimen, model.prior(), covariates=PATIENT, rtol=1e-4, atol=1e-3)
    assert again.value == result.value and again.error == result.error  # a fixed seed: the same call, the same number


def test_an_indicator_no_point_has_hit_gets_the_rule_of_three():
    never = lambda u: np.zeros((len(u), 1))  # noqa: E731
    window = randomized_qmc(never, lambda u: u, 2, rtol=0, atol=1e-3, seed=1, indicator=True)
    points = 16 * 2**8  # the first 16 × 2^m with 3 / points ≤ 1e-3
    assert window.value[0] == 0 and window.error[0] == 3 / points and window.converged
    unconverged = randomized_qmc(never, lambda u: u, 2, rtol=0, atol=1e-6, seed=1, indicator=True, max_nodes=10_000)
    assert not unconverged.converged and unconverged.error[0] == 3 / (16 * 2**9)
    constant = randomized_qmc(never, lambda u: u, 2, rtol=0, atol=1e-3, seed=1)  # a smooth zero: exactly 0
    assert constant.error[0] == 0 and constant.converged


def test_a_nomogram_row_says_its_probability_is_a_sampled_estimate():
    model = kn.parse_model(VANCOMYCIN_WEIGHT, name="vancomycin")
    table = kn.nomogram(model, TARGET, {"WT": [150.0], "CRCL": [10.0]}, {"1000 mg q12h": REGIMEN}, client="serial",
                        progress=False)
    row = table.iloc[0]
    assert row.status == "warning" and row.converged
    assert row.message.startswith("1000 mg q12h: ") and "randomised QMC" in row.message
