"""The dosing dashboard without a browser: controls drive the readout, the optimiser and the error line;
doses in multiples of the step; the concentration band against closed forms and a dense reference; the
figure's window and fonts; the trailing redraw under a running event loop."""

import asyncio

import numpy as np
import pytest
import scipy.stats

import koopnb as kn
from koopnb.jupyter import widgets
from koopnb.jupyter.widgets import band_draws, dashboard, default_step, dose_text, round_to_step

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
    assert bytes(panel.image.value).startswith(b"\x89PNG")


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
    figure_before = bytes(panel.image.value)
    panel.optimise.click()
    result = panel.result
    assert isinstance(result, kn.DoseResult) and 80 <= result.dose <= 1280
    assert result.dose % panel.step == 0 and panel.step == 10.0  # the default step of 320 mg
    assert f"Optimal dose: {result.dose:.0f} mg" in panel.optimum.value
    assert f"searched {result.search_space}" in panel.optimum.value and "multiples of 10 mg" in result.search_space
    assert "current 320 mg: P = " in panel.optimum.value and result.current_dose == 320.0
    assert bytes(panel.image.value) != figure_before and panel._figure[0].axes[2].get_visible()
    panel.dose.value = 400.0  # the dose curve is redrawn with the new current dose, one optimum in its legend
    legend = [text.get_text() for text in panel._figure[0].axes[2].get_legend().get_texts()]
    assert legend == ["current 400 mg", f"optimum {result.dose:.0f} mg"]
    # the optimum is at least as good as the starting dose
    assert result.objective >= panel.probability_result.value - panel.probability_result.error
    panel.window.value = (70.0, 120.0)
    assert panel.result is None and "again" in panel.optimum.value and panel.apply.disabled


def test_apply_optimum_puts_the_rounded_dose_into_the_slider(model):
    panel = dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120), step=25)
    assert (panel.dose.step, panel.dose.min, panel.dose.max) == (25.0, 75.0, 1300.0)
    assert panel.apply.disabled
    panel.optimise.click()
    assert panel.result.dose % 25 == 0 and not panel.apply.disabled
    panel.apply.click()
    assert panel.dose.value == panel.result.dose
    assert f"dose {panel.result.dose:,.0f} mg;" in panel.readout.value
    exact = kn.probability(kn.Window(kn.AUC(0, 24), 80, 120), model,
                           kn.Regimen.parse(f"{panel.result.dose:g} mg po q24h x3"), model.prior(), rtol=1e-8)
    assert abs(panel.probability_result.value - exact.value) <= max(3 * panel.probability_result.error, 1e-3)


def test_doses_are_shown_rounded_to_the_step():
    assert default_step(320) == 10 and default_step(1000) == 50 and default_step(60) == 2.5
    assert default_step(0.5) == 0.025
    assert round_to_step(1030.51263333, 25) == 1025 and round_to_step(3, 25) == 25
    assert dose_text(1025.0, 25, "mg") == "1,025 mg" and dose_text(322.5, 2.5, "mg") == "322.5 mg"
    assert dose_text(0.075, 0.025) == "0.075"


def test_a_bad_step_is_one_sentence(model):
    with pytest.raises(kn.KoopnbError, match="step must be a positive number"):
        dashboard(model, model.prior(), "320 mg po", "auc(0, 24)", step=-5)
    with pytest.raises(kn.KoopnbError, match="larger than 4 times the dose"):
        dashboard(model, model.prior(), "320 mg po", "auc(0, 24)", step=5000)
    with pytest.raises(kn.KoopnbError, match="use a larger step"):
        dashboard(model, model.prior(), "320 mg po", "auc(0, 24)", step=1e-9)


def test_a_bad_metric_is_shown_in_the_panel(panel):
    readout = panel.readout.value
    panel.metric.value = "auc(0, 24"
    assert "is not of the form name(arguments)" in panel.message.value
    assert panel.readout.value == readout
    panel.metric.value = "cmax(0, 24)"
    assert panel.message.value == "" and "E[cmax(0, 24)]" in panel.readout.value
    assert panel.window.max < 200  # the slider follows the new metric's scale (mg/L, not mg·h/L)


def test_the_dose_slider_stays_on_positive_doses(panel):
    panel.dose.value = 0.0
    assert panel.dose.value == panel.dose.min == 80.0  # a quarter of 320 mg, a multiple of the step
    assert "dose 80 mg;" in panel.readout.value and panel.message.value == ""


def test_bad_arguments_raise_koopnb_errors(model):
    with pytest.raises(kn.RegimenError):
        dashboard(model, model.prior(), "320 mg po q24 hh", "auc(0, 24)")
    with pytest.raises(kn.MetricError):
        dashboard(model, model.prior(), "320 mg po", "aucc(0, 24)")


def test_band_draws_have_normal_quantiles():
    """Each coordinate of the Sobol draws is a fine stratified sample of N(0, 1)."""
    draws = band_draws(3)
    quantiles = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0, method="hazen")
    expected = scipy.stats.norm.ppf([0.05, 0.25, 0.5, 0.75, 0.95])[:, None]
    np.testing.assert_allclose(quantiles, np.broadcast_to(expected, quantiles.shape), atol=0.01)


@pytest.mark.slow
def test_the_band_is_smooth_and_near_a_dense_reference(model):
    """Jaggedness shows as kinks: the summed |second differences| of the band, against a 32768-draw band at
    the same times.  The band has 1.14-1.17 times the reference's and is within 0.8 % of its peak; the old
    band (weighted quantiles of 343 Gauss-Hermite nodes) had 1.30-1.68 times and was 5.4 % off."""
    panel = dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))
    times, band = panel.band("conc", panel.current_regimen())
    assert np.diff(times).max() <= 0.13
    normal = scipy.stats.norm.ppf(scipy.stats.qmc.Sobol(3, scramble=True, seed=1).random(2**15))
    curves = model.simulate(model.prior().from_normal(normal), panel.current_regimen(), times)["conc"]
    reference = np.quantile(curves, (0.05, 0.5, 0.95), axis=0, method="hazen")
    roughness = np.abs(np.diff(band, 2, axis=1)).sum(axis=1) / np.abs(np.diff(reference, 2, axis=1)).sum(axis=1)
    assert np.all(roughness <= 1.25), roughness
    assert np.abs(band - reference).max() <= 0.02 * reference.max()


def test_the_window_is_drawn_where_it_applies(model):
    auc = dashboard(model, model.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))
    curve, histogram, _ = auc._figure[1]
    assert [p.get_label() for p in histogram.patches if p.get_label() == "window"] == ["window"]
    span = next(p for p in histogram.patches if p.get_label() == "window")
    assert (span.get_x(), span.get_x() + span.get_width()) == (80.0, 120.0)
    assert "window" not in [p.get_label() for p in curve.patches]  # an AUC window has no place on conc
    peak = dashboard(model, model.prior(), "320 mg po q24h x3", "cmax(0, 24)", window=(6, 9))
    curve = peak._figure[1][0]
    span = next(p for p in curve.patches if p.get_label() == "window")
    assert (span.get_y(), span.get_y() + span.get_height()) == (6.0, 9.0)


def test_the_figure_fonts_are_readable(panel):
    figure = panel._figure[0]
    sizes = [text.get_fontsize() for text in figure.findobj(lambda artist: hasattr(artist, "get_fontsize"))
             if text.get_text()]
    assert sizes and min(sizes) >= 10


def test_the_figure_trails_the_readout_under_an_event_loop(panel, monkeypatch):
    """In a kernel (a running event loop) each move updates the readout at once; the figure is redrawn once
    the moves rest, for the last dose."""
    monkeypatch.setattr(widgets, "FIGURE_REST", 0.05)
    drawn = []
    monkeypatch.setattr(panel._trailing, "work", lambda: drawn.append(panel.dose.value))

    async def drag():
        for dose in (330.0, 340.0, 350.0, 360.0):
            panel.dose.value = dose
            assert f"dose {dose:.0f} mg;" in panel.readout.value and drawn == []
        await asyncio.sleep(0.2)

    asyncio.run(drag())
    assert drawn == [360.0]


def test_concentration_band_matches_the_closed_form():
    """IV bolus with log-normal CL only: conc(t) = D/V·exp(-CL·t/V) falls with CL, so its q-quantile is
    the concentration at CL's (1 - q)-quantile."""
    model = kn.parse_model(IV_BOLUS)
    panel = dashboard(model, model.prior(), "100 mg iv", "auc(0, 24)")
    times, band = panel.band("conc", panel.current_regimen())
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


SATURABLE = """
Vmax = 20 [mg/h] ~ 0.3
Km   = 4  [mg/L] ~ 0.5
V    = 49 [L]
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
dose central
"""


@pytest.mark.slow
def test_a_nonlinear_readout_follows_the_slider_from_its_dose_table_within_its_error():
    """Michaelis–Menten elimination: exposure is not proportional to the dose, so the readout comes from the
    draws (interpolated between the dose table's simulated doses while the slider moves, simulated at the
    dose once the figure is drawn).  Both agree with a tight quadrature within their reported errors."""
    model = kn.parse_model(SATURABLE, name="saturable")
    panel = dashboard(model, model.prior(), "500 mg iv", "auc(0, 48)", window=(150, 300))
    panel._trailing.work = lambda: None  # the readout alone, as during a drag
    assert len(panel._tables) == 1  # built with the panel: the first move does not wait for it
    checked = 0
    for dose in (380.0, 650.0):
        panel.dose.value = dose
        live, mean = panel.probability_result, panel.expectation_result
        assert "interpolated between 13 simulated doses" in live.rule and live.n_evals == 0
        regimen = kn.Regimen.parse(f"{dose:g} mg iv")
        exact = kn.probability(kn.Window(kn.AUC(0, 48), 150, 300), model, regimen, model.prior(), rtol=0, atol=1e-6)
        expected = kn.expectation(kn.AUC(0, 48), model, regimen, model.prior(), rtol=1e-7)
        assert 0 < exact.value < 1 and abs(live.value - exact.value) <= 3 * live.error, (dose, live, exact)
        assert abs(mean.value - expected.value) <= 3 * mean.error, (dose, mean, expected)
        assert live.error < 0.02 and mean.error < 0.01 * mean.value
        checked += 1
        panel.redraw()  # the figure simulates the draws at this dose; the readout then uses them
        assert "simulated at this dose" in panel.probability_result.rule
        assert abs(panel.probability_result.value - exact.value) <= 3 * panel.probability_result.error
    assert checked == 2 and "1,024 draws" in panel.readout.value
