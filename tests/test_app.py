"""The no-code dosing page, driven as a clinician would: type values, press the buttons, read the answer.

These tests press the buttons of the widgets in-process; tests/browser/test_app.py does the same through Voilà in
Chromium."""

from __future__ import annotations

import math
import re

import pytest

import koopnb as kn
from koopnb.jupyter.app import DosingApp, available_models


@pytest.fixture
def app() -> DosingApp:
    page = DosingApp()
    assert page.choice.label.startswith("Vancomycin")
    return page


def _patient(app: DosingApp) -> None:
    app.covariate_fields["CRCL"][0].value = "60"
    app.covariate_fields["WT"][0].value = "70"
    app.covariate_fields["DIAL"][0].value = "0"
    app.doses.rows[0][1].value = 1000.0
    app.doses.append((12.0, 1000.0, 1.0))
    app.levels.rows[0][0].value = 11.5
    app.levels.rows[0][1].value = 12.0
    app.levels.append((13.5, 30.0))


def test_bad_entries_are_flagged_next_to_their_field_and_nothing_is_computed(app):
    app.doses.rows[0][1].value = -500.0
    app.levels.rows[0][1].value = 10.0
    app.levels.append((-1.0, 20.0))
    app.estimate.click()
    assert "enter the patient's CRCL" in app.covariate_fields["CRCL"][1].value
    assert "dose must be a positive amount" in app.doses.messages[0].value
    assert "after the first dose" in app.levels.messages[1].value
    assert "correct the entries marked in red" in app.status.value
    assert app.posterior is None and app.recommend.disabled


def test_estimate_then_recommend_gives_a_practical_regimen_never_worse_than_the_current_one(app):
    _patient(app)
    app.estimate.click()
    assert app.status.value == "Estimated.", app.status.value
    assert not app.recommend.disabled
    app.intervals.value = (12.0, 24.0)
    app.max_dose.value = 2500.0
    app.current_amount.value = 1000.0
    app.current_interval.value = 12.0
    app.recommend.click()
    text = app.answer.value
    found = re.search(r"Recommended: (\d+) mg every (\d+) h over 1 h.*?<b>([\d.]+) % ± ([\d.e-]+) %</b> "
                      r"\(current regimen, 1000 mg every 12 h: ([\d.]+) %", text, re.S)
    assert found, text
    amount, interval, best, error, current = found.groups()
    assert int(amount) % 250 == 0 and int(amount) <= 2500 and interval in ("12", "24")
    assert float(best) >= float(current) and float(error) < 1
    # The probability on the page is the engine's: recompute it for the recommended regimen.
    patient = app.posterior.to_distribution()
    regimen = kn.Regimen.repeat(float(amount), every=float(interval), count=math.ceil(144 / float(interval)),
                                duration=1.0)
    check = kn.probability(kn.Window(kn.AUC(120, 144), 400, 600), app.model, regimen, patient,
                           covariates={"CRCL": 60.0, "WT": 70.0, "DIAL": 0.0}, rtol=1e-5, atol=1e-6)
    assert abs(100 * check.value - float(best)) < 0.06 + 100 * check.error
    assert 'download="dosing-report.pdf"' in app.download.value
    assert bytes(app.plot.value).startswith(b"\x89PNG")


def test_a_target_the_wrong_way_round_is_one_line_not_a_traceback(app):
    _patient(app)
    app.estimate.click()
    app.low.value, app.high.value = 600.0, 400.0
    app.recommend.click()
    assert "must be below its upper end" in app.status.value


def test_the_library_models_and_the_users_files_are_offered(tmp_path):
    (tmp_path / "mine.pk").write_text("# title: My drug\n# target: trough 2-5 mg/L\nCL = 2 [L/h] ~ 0.3\n"
                                      "V = 20 [L]\nd/dt(central) = -CL/V*central\nconc = central/V\n"
                                      "conc ~ additive(0.5)\ndose central\n")
    (tmp_path / "broken.pk").write_text("CL = 2 [L/h] ~ 0.3\nd/dt(central) = -CL/V*central\n")
    choices = available_models(tmp_path)
    assert [c.name for c in choices] == [*kn.models.names(), "broken", "mine"]
    assert choices[-1].label == "My drug" and choices[-1].window == ("trough", 2.0, 5.0)
    page = DosingApp(choices)
    assert page.choice.name == "vancomycin_goti2018"  # the page opens on AUC-guided vancomycin
    assert (page.metric.value, page.low.value, page.high.value) == ("auc24", 400.0, 600.0)  # from its header
    assert "AUC over 24 h at steady state (mg·h/L)" in dict(page.metric.options)
    page.pick.value = [c.name for c in choices].index("broken")
    assert "broken.pk" in page.model_note.value and "V" in page.model_note.value and page.estimate.disabled
    page.pick.value = [c.name for c in choices].index("tacrolimus_andrews2017")
    assert page.model.name == "tacrolimus_andrews2017" and set(page.covariate_fields) == set(page.model.covariates)
    assert (page.metric.value, page.low.value, page.high.value) == ("trough", 10.0, 15.0)  # "pre-dose 10-15 ng/mL"
    page.pick.value = [c.name for c in choices].index("busulfan_choe2012")  # its source gives no target
    assert math.isnan(page.low.value) and not page.estimate.disabled


def test_a_model_without_a_target_asks_for_one_and_the_step_follows_the_dose(app):
    app.pick.value = [c.name for c in app.models].index("busulfan_choe2012")
    app.covariate_fields["WT"][0].value = "65"
    app.covariate_fields["MALE"][0].value = "1"
    app.doses.rows[0][1].value = 200.0
    app.doses.rows[0][2].value = 3.0
    app.levels.rows[0][0].value = 4.0
    app.levels.rows[0][1].value = 0.9
    app.estimate.click()
    assert app.status.value == "Estimated.", app.status.value
    assert app.step.value == 10.0  # a round twentieth of the 200 mg given
    app.recommend.click()
    assert "enter the target range" in app.status.value
