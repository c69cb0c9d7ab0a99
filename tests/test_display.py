"""Rich display bundles: the card payload matches the lab extension's schema (extension/src/card/result.ts),
numbers are rounded to their error, and every bundle has text and HTML fallbacks."""

import json
from dataclasses import replace

import numpy as np
import pytest

import koopnb as kn
from koopnb.cards import (
    RESULT_MIME_TYPE,
    amount,
    bundle,
    dose_html,
    dose_text,
    expectation_bundle,
    expectation_html,
    expectation_text,
    format_value_error,
    percent,
    ranked_regimens_bundle,
    regimen_table,
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
        "probability", "dose", "unit", "regimen", "rows", "warnings", "value_text", "error_text", "value_label"}
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
    # The lab card draws the Python card's own texts.
    assert payload["value_label"] == "Probability in window"
    assert f"{payload['value_text']} {payload['error_text']}" == percent(result.value, result.error)


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
    assert payload["value_label"] == "Probability in window"
    assert f"{payload['value_text']} {payload['error_text']}" == percent(result.objective, result.error)
    assert "Recommended dose" in data["text/html"] and data["text/plain"].startswith("Recommended dose")


def test_dose_card_is_written_for_people(model):
    result = kn.optimize_dose(model, REGIMEN, model.prior(), kn.Window(kn.AUC(0, 24), 80, 120), (100, 1000),
                              step=25)
    text, page = dose_text(result), dose_html(result)
    for shown in (text, page):
        assert "Probability in window" in shown and "multiples of 25 mg between 100 and 1000 mg" in shown
        assert f"{percent(result.objective, result.error)}" in shown
        assert f"{percent(result.current.value, result.current.error)}" in shown  # the current regimen beside it
        for jargon in ("objective", "n_evals", "loading"):
            assert jargon not in shown
    # method, nodes and evaluations are folded away in HTML, on the last line in text
    details = page[page.index("<details"):]
    assert "<summary>Details</summary>" in details and "model evaluations" in details
    assert "model evaluations" not in page[:page.index("<details")]
    assert text.splitlines()[-1].startswith("Details: koopman") and "model evaluations" not in text.splitlines()[0]


@pytest.mark.parametrize(("probability", "error", "expected"), [
    (0.71361694, 0.00000012, "71.4 % ± 0.000012 %"),
    (0.7087, 0.0012, "70.9 % ± 0.12 %"),
    (0.05, 0.003, "5.00 % ± 0.3 %"),
    (0.000123, 0.00001, "0.0123 % ± 0.0010 %"),
    (0.99996, 0.000001, "> 99.9 % ± 0.00010 %"),
    (1.0, 0.0, "100 % ± 0 %"),
    (1e-7, 1e-9, "< 0.001 % ± 0.00000010 %"),
])
def test_probabilities_have_three_significant_digits_and_an_error_of_one_or_two(probability, error, expected):
    assert percent(probability, error) == expected


@pytest.mark.parametrize(("value", "error", "unit", "expected"), [
    (438.055, 0.008, "mg·h/L", "438 ± 0.008 mg·h/L"),
    (12345.6, 2.0, "mg", "12346 ± 2.0 mg"),
    (0.51234, 0.3, None, "0.512 ± 0.3"),
    (9.996, 0.01, "mg/L", "10.0 ± 0.010 mg/L"),
])
def test_expected_values_with_their_unit(value, error, unit, expected):
    assert amount(value, error, unit) == expected


def test_expectation_card_shows_the_unit_when_the_result_has_one(model):
    result = kn.expectation(kn.AUC(0, 24), model, REGIMEN, model.prior())
    with_unit = replace(result, unit="mg·h/L")
    assert expectation_text(with_unit).splitlines()[0] == f"E[auc(0, 24)] = {amount(result.value, result.error)} mg·h/L"
    assert "mg·h/L" in expectation_html(with_unit)
    chance = kn.probability(kn.Window(kn.AUC(0, 24), 80, 120), model, REGIMEN, model.prior())
    assert percent(chance.value, chance.error) in expectation_text(chance)
    assert "<b>Probability in window:</b>" in expectation_html(chance)
    assert "<b>Expected value:</b>" in expectation_html(with_unit)


def test_ranked_regimens_payload(model):
    table = kn.optimize_regimen(model, model.prior(), kn.Window(kn.AUC(0, 24), 80, 120), [160, 320], [12, 24])
    payload = ranked_regimens_bundle(table)[RESULT_MIME_TYPE]
    check_payload(payload, "regimen")
    assert [row["regimen"] for row in payload["rows"]] == list(table["regimen"])
    assert payload["value"] == table["objective"].iloc[0] == max(table["objective"])


def test_ranked_regimens_read_for_people_and_keep_their_numbers(model):
    table = kn.optimize_regimen(model, model.prior(), kn.Window(kn.AUC(0, 24), 80, 120), [160, 320], [12, 24],
                                unit="mg")
    assert table["objective"].dtype == float and table.iloc[0]["amount"] in (160, 320)  # numbers for code
    shown = regimen_table(table)
    assert list(shown.columns) == ["Rank", "Dose", "Every", "Per day", "Probability in window", "Regimen"]
    best = table.iloc[0]
    assert shown.iloc[0]["Probability in window"] == percent(best["objective"], best["error"])
    assert shown.iloc[0]["Dose"] == f"{best['amount']:g} mg" and shown.iloc[0]["Every"] == f"{best['interval']:g} h"
    for text in (repr(table), table._repr_html_()):
        assert "Probability in window" in text
        for jargon in ("objective", "n_evals", "loading", "e-0"):
            assert jargon not in text.split("Details")[0]
    assert "<details" in table._repr_html_() and repr(table).splitlines()[-1].startswith("Details:")
    raw = table[["amount", "objective"]]  # a selection is an ordinary table again
    assert "objective" in repr(raw)


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
