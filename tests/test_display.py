"""Rich display bundles: the card payload matches the lab extension's schema (extension/src/card/result.ts),
numbers are rounded to their error, and every bundle has text and HTML fallbacks."""

import json
from dataclasses import replace

import numpy as np
import pytest

import koopnb as kn
from koopnb.cards import (
    RESULT_MIME_TYPE,
    bundle,
    expectation_bundle,
    format_value_error,
    ranked_regimens_bundle,
)

MODEL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
KEYS = {"kind", "title", "value", "error", "n_evals", "method", "converged", "elapsed", "metric", "window",
        "probability", "dose", "unit", "regimen", "rows", "warnings"}
REGIMEN = kn.Regimen.parse("320 mg po q24h x3")


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(MODEL, name="theo")


def check_payload(payload, kind):
    assert payload["kind"] == kind
    assert set(payload) <= KEYS
    assert json.loads(json.dumps(payload)) == payload  # plain JSON, no numpy scalars


@pytest.mark.parametrize(("value", "error", "expected"), [
    (0.73123, 0.00041, ("0.7312", "0.0004")),
    (512.345, 0.0213, ("512.345", "0.021")),
    (99.6495, 0.0038, ("99.650", "0.004")),
    (1.2346e-5, 3e-8, ("1.235e-05", "3e-08")),
])
def test_value_rounded_to_its_error(value, error, expected):
    assert format_value_error(value, error) == expected


def test_probability_payload(model):
    result = kn.probability(kn.Window(kn.AUC(0, 24), 80, None), model, REGIMEN, model.prior(), atol=1e-6)
    data = bundle(result)
    payload = data[RESULT_MIME_TYPE]
    check_payload(payload, "probability")
    assert payload["metric"] == "auc(0, 24)" and payload["window"] == [80.0, None]
    assert payload["value"] == payload["probability"] == result.value and payload["n_evals"] == result.n_evals
    assert data["text/plain"].startswith("P(auc(0, 24) in 80..) = ")
    assert "koopnb-card" in data["text/html"]


def test_the_card_reads_the_window_from_the_result_not_its_label(model):
    window = kn.Window(kn.AUC(0, 24), 80, 120)
    result = replace(kn.probability(window, model, REGIMEN, model.prior()), label="chance of the target")
    payload = expectation_bundle(result)[RESULT_MIME_TYPE]
    assert result.quantity == window
    assert payload["metric"] == "auc(0, 24)" and payload["window"] == [80.0, 120.0]
    assert payload["title"] == "chance of the target"
    both = kn.probability([window, kn.Window(kn.Cmax(0, 24), None, 12.0)], model, REGIMEN, model.prior())
    payload = expectation_bundle(both)[RESULT_MIME_TYPE]
    check_payload(payload, "probability")  # two windows at once: a probability, with no single window to draw
    assert payload["probability"] == both.value and "window" not in payload


def test_expectation_payload_and_a_list_of_quantities(model):
    result = kn.expectation(kn.Cmax(0, 24), model, REGIMEN, model.prior())
    payload = expectation_bundle(result)[RESULT_MIME_TYPE]
    check_payload(payload, "expectation")
    assert payload["metric"] == "cmax(0, 24)" and "window" not in payload
    several = kn.expectation([kn.Cmax(0, 24), kn.AUC(0, 24)], model, REGIMEN, model.prior())
    data = expectation_bundle(several)
    assert RESULT_MIME_TYPE not in data  # a card shows one value; the table shows both
    assert "E[cmax(0, 24)]" in data["text/html"] and "E[auc(0, 24)]" in data["text/plain"]


def test_dose_payload(model):
    result = kn.optimize_dose(model, REGIMEN, model.prior(), kn.Window(kn.AUC(0, 24), 80, 120), (100, 1000))
    data = bundle(result)
    payload = data[RESULT_MIME_TYPE]
    check_payload(payload, "dose")
    assert payload["dose"] == result.dose and payload["unit"] == "mg" and payload["regimen"] == str(result.regimen)
    assert payload["window"] == [80.0, 120.0] and payload["probability"] == result.objective
    assert "Optimal dose" in data["text/html"] and data["text/plain"].startswith("optimal dose")


def test_ranked_regimens_payload(model):
    table = kn.optimize_regimen(model, model.prior(), kn.Window(kn.AUC(0, 24), 80, 120), [160, 320], [12, 24])
    payload = ranked_regimens_bundle(table)[RESULT_MIME_TYPE]
    check_payload(payload, "regimen")
    assert [row["regimen"] for row in payload["rows"]] == list(table["regimen"])
    assert payload["value"] == table["objective"].iloc[0] == max(table["objective"])


def test_model_bundle_has_equations_and_no_card(model):
    data = bundle(model)
    assert RESULT_MIME_TYPE not in data
    assert data["text/latex"].startswith("$") and "<table>" in data["text/html"]


def test_posterior_payload(model):
    times = np.array([0.5, 1, 2, 4, 8, 24.0])
    values = model.simulate({}, REGIMEN, times)["conc"][0]
    with pytest.warns(kn.ConvergenceWarning):
        posterior = kn.fit_individual(model, (times, values), regimen=REGIMEN, steps=40, seed=1, progress=False)
    data = bundle(posterior)
    payload = data[RESULT_MIME_TYPE]
    check_payload(payload, "posterior")
    assert "CL" in payload["title"] and payload["converged"] is False and payload["warnings"]
    assert "<table" in data["text/html"]
