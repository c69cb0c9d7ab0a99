"""The dosing dashboard without a browser: controls drive the readout, the optimiser and the error line;
the concentration band's weighted quantiles against closed forms."""

import numpy as np
import pytest
import scipy.stats

import koopnb as kn
from koopnb.jupyter.widgets import _band_rule, dashboard, weighted_quantiles

THEOPHYLLINE = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
IV_BOLUS = """
CL = 2.8 [L/h] ~ 0.3
V  = 31.5 [L]
d/dt(central) = -CL/V*central
conc = central / V
dose central
"""


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(THEOPHYLLINE, name="theo")


@pytest.fixture
def panel(model):
    return dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))


def readout_probability(panel) -> float:
    text = panel.readout.value
    return float(text.split("<b>P(in window)</b> = ")[1].split(" ")[0])


def test_initial_readout_matches_a_tight_probability(model, panel):
    exact = kn.probability(kn.Window(kn.AUC(0, 24), 80, 120), model, kn.Regimen.parse("320 mg po q24h x3"),
                           model.prior(), rtol=1e-8, atol=1e-9)
    live = panel.probability_result
    assert abs(live.value - exact.value) <= max(3 * live.error, 1e-3)
    assert abs(readout_probability(panel) - live.value) <= live.error + 1e-12
    assert "E[auc(0, 24)]" in panel.readout.value and panel.message.value == ""
    assert bytes(panel.curve_image.value).startswith(b"\x89PNG")


def test_moving_the_window_changes_the_probability(panel):
    before = readout_probability(panel)
    panel.window.value = (60.0, 140.0)
    after = readout_probability(panel)
    assert after > before + 0.05  # a wider window holds more patients
    assert "in 60..140" in panel.readout.value


def test_window_at_the_slider_top_is_open(panel):
    panel.window.value = (100.0, panel.window.max)
    assert panel.current_window(kn.AUC(0, 24)).high is None
    assert "in 100.." in panel.readout.value


def test_dose_and_interval_rebuild_the_regimen(panel):
    panel.dose.value = 160.0
    panel.interval.value = 12.0
    regimen = panel.current_regimen()
    assert len(regimen.doses) == 6 and regimen.times[-1] == 60.0  # the same 72 h horizon
    assert all(dose.amount == 160.0 for dose in regimen.doses) and regimen.unit == "mg"


def test_optimise_button_shows_the_dose_and_its_probability(panel):
    panel.optimise.click()
    result = panel.result
    assert isinstance(result, kn.DoseResult) and 80 <= result.dose <= 1280
    assert "Optimal dose:" in panel.optimum.value and f"{result.dose:.4g}" in panel.optimum.value
    assert bytes(panel.dose_image.value).startswith(b"\x89PNG")
    # the optimum is at least as good as the starting dose
    assert result.objective >= panel.probability_result.value - panel.probability_result.error
    panel.window.value = (70.0, 120.0)
    assert panel.result is None and "again" in panel.optimum.value


def test_a_bad_metric_is_shown_in_the_panel(panel):
    readout = panel.readout.value
    panel.metric.value = "auc(0, 24"
    assert "is not of the form name(arguments)" in panel.message.value
    assert panel.readout.value == readout
    panel.metric.value = "cmax(0, 24)"
    assert panel.message.value == "" and "E[cmax(0, 24)]" in panel.readout.value
    assert panel.window.max < 200  # the slider follows the new metric's scale (mg/L, not mg·h/L)


def test_a_bad_dose_is_shown_in_the_panel(panel):
    panel.dose.value = 0.0
    assert "dose must be positive" in panel.message.value


def test_bad_arguments_raise_koopnb_errors(model):
    with pytest.raises(kn.RegimenError):
        dashboard(model, model.prior(), "320 mg po q24 hh", "auc(0, 24)")
    with pytest.raises(kn.MetricError):
        dashboard(model, model.prior(), "320 mg po", "aucc(0, 24)")


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_weighted_quantiles_of_the_band_rule_are_symmetric_and_centred(dim):
    nodes, weights = _band_rule(dim)
    low, median, high = weighted_quantiles(nodes, weights, (0.05, 0.5, 0.95))
    np.testing.assert_allclose(median, 0.0, atol=1e-12)
    np.testing.assert_allclose(low, -high, atol=1e-12)


def test_weighted_quantiles_of_a_fine_rule_match_the_normal():
    nodes, weights = _band_rule(1)
    quantiles = weighted_quantiles(nodes, weights, (0.05, 0.25, 0.75, 0.95))[:, 0]
    np.testing.assert_allclose(quantiles, scipy.stats.norm.ppf([0.05, 0.25, 0.75, 0.95]), atol=0.01)


def test_weighted_quantiles_with_uneven_weights_against_numpy():
    values = np.array([[3.0], [1.0], [2.0], [4.0]])
    weights = np.array([0.25, 0.25, 0.25, 0.25])
    # Equal weights: the Hazen positions (i - 0.5)/n, numpy's "hazen" method.
    expected = np.quantile(values[:, 0], [0.2, 0.5, 0.7], method="hazen")
    np.testing.assert_allclose(weighted_quantiles(values, weights, (0.2, 0.5, 0.7))[:, 0], expected, rtol=1e-12)


def test_concentration_band_matches_the_closed_form():
    """IV bolus with log-normal CL only: conc(t) = D/V·exp(-CL·t/V) falls with CL, so its q-quantile is
    the concentration at CL's (1 - q)-quantile."""
    model = kn.parse_model(IV_BOLUS)
    panel = dashboard(model, model.prior(), "100 mg iv", "auc(0, 24)")
    times, band = panel._band("conc", panel.current_regimen())
    cl = scipy.stats.lognorm(s=0.3, scale=2.8)
    expected = np.array([100 / 31.5 * np.exp(-cl.ppf(1 - q) * times / 31.5) for q in (0.05, 0.5, 0.95)])
    np.testing.assert_allclose(band, expected, rtol=0.01)


WEIGHT_SCALED = """
covariate WT = 70 [kg]
CL_typ = 2.8 [L/h] ~ 0.3
V = 31.5 [L] fixed
CL = CL_typ * (WT/70)^0.75
d/dt(central) = -CL/V*central
conc = central / V
dose central
"""


def test_covariates_reach_every_number_of_the_panel():
    model = kn.parse_model(WEIGHT_SCALED)
    heavy = dashboard(model, model.prior(), "500 mg iv", "auc(0, 2000)", window=(100, 200), covariates={"WT": 110})
    reference = dashboard(model, model.prior(), "500 mg iv", "auc(0, 2000)", window=(100, 200))
    # AUC(0, ∞) = D/CL with CL = CL_typ·(WT/70)^0.75: the window probability from the log-normal CDF.
    median = 500 / (2.8 * (110 / 70) ** 0.75)
    expected = (scipy.stats.norm.cdf(np.log(median / 100) / 0.3) - scipy.stats.norm.cdf(np.log(median / 200) / 0.3))
    assert abs(heavy.probability_result.value - expected) <= heavy.probability_result.error + 1e-6
    assert abs(heavy.probability_result.value - reference.probability_result.value) > 0.05
    assert heavy.expectation_result.value == pytest.approx(median * np.exp(0.3**2 / 2), rel=1e-3)
    with pytest.raises(kn.KoopnbError, match="WGT"):
        dashboard(model, model.prior(), "500 mg iv", "auc(0, 2000)", covariates={"WGT": 110})
