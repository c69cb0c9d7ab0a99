"""Clinical answers: practical doses beside the current regimen, clinical limits, and a safety limit.

References: closed forms for c = D/CL with log-normal CL (P(a ≤ D/CL < b) = Φ((ln(D/m) − ln a)/ω) −
Φ((ln(D/m) − ln b)/ω)), Monte Carlo with many draws for the theophylline model of issue 15, and hand-counted
constraint filtering.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ndtr
from shared_models import MICHAELIS_MENTEN, THEOPHYLLINE

import koopnb as kn
from koopnb.cards import dose_html, dose_text, percent
from koopnb.constraints import daily_amount
from koopnb.errors import KoopnbError

DOSE_OVER_CL = "CL = 2.8 [L/h] ~ 0.3\nd/dt(central) = 0\nc = central/CL\ndose central"
"""No elimination: after doses D1, D2, ... c(t) = (D1 + D2 + ... given by t)/CL exactly."""
OMEGA, CL = 0.3, 2.8


def above(total, level):
    """P(total/CL ≥ level) for CL ~ LogNormal(2.8, 0.3)."""
    return ndtr((np.log(np.asarray(total, dtype=float) / CL) - math.log(level)) / OMEGA)


def inside(total, low, high):
    return above(total, low) - above(total, high)


@pytest.fixture(scope="module")
def flat():
    return kn.parse_model(DOSE_OVER_CL)


# The window whose best dose is exactly 320 mg: D* = CL·sqrt(low·high).
LOW = 100.0
HIGH = (320.0 / CL) ** 2 / LOW
WINDOW = kn.Window(kn.Conc(1.0), LOW, HIGH)


# --- the 320 mg / 325 mg case ------------------------------------------------------------------------------------

def test_a_better_current_dose_off_the_grid_is_said_in_one_sentence(flat):
    current = kn.Regimen([kn.Dose(320.0)], unit="mg")
    result = kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=25, atol=1e-9)
    p320, p325 = inside(320.0, LOW, HIGH), inside(325.0, LOW, HIGH)
    assert p320 > p325 > inside(300.0, LOW, HIGH)  # 325 is the best multiple of 25, 320 better still
    assert result.dose == 325.0 and abs(result.objective - p325) <= result.error + 1e-9
    assert result.current_dose == 320.0 and abs(result.current.value - p320) <= result.current.error + 1e-9
    assert result.note == (f"the current 320 mg is not a multiple of 25 mg; the best multiple, 325 mg, gives "
                           f"{percent(p325)} vs {percent(p320)}")
    assert result.search_space == "multiples of 25 mg between 50 and 1000 mg"
    for card in (dose_text(result), dose_html(result)):
        assert result.note in card and "multiples of 25 mg between 50 and 1000 mg" in card


def test_the_issue_case_on_theophylline_against_monte_carlo():
    """Issue 15: 320 mg gives 71.4 %, the best multiple of 25 mg (325 mg) 70.9 %; the card says why."""
    model = kn.parse_model(THEOPHYLLINE)
    window = kn.Window(kn.AUC(0, 24), 80.0, 120.0)
    result = kn.optimize_dose(model, kn.Regimen.parse("320 mg po"), model.prior(), window, bounds=(50, 1000),
                              step=25)
    assert result.dose == 325.0 and result.current.value > result.objective
    assert "the current 320 mg is not a multiple of 25 mg; the best multiple, 325 mg, gives 70.9 % vs 71.4 %" in (
        dose_text(result))
    for regimen, certified in ((result.regimen, result.certified), (kn.Regimen.parse("320 mg po"), result.current)):
        mc = kn.probability(window, model, regimen, model.prior(), method="montecarlo", n=400_000, seed=15)
        assert abs(certified.value - mc.value) <= certified.error + 4 * mc.error


@pytest.mark.parametrize("dose", [300.0, 325.0, 500.0])
def test_a_current_dose_on_the_grid_is_never_beaten(flat, dose):
    current = kn.Regimen([kn.Dose(dose)], unit="mg")
    result = kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=25, atol=1e-9)
    assert result.objective >= result.current.value and result.note == ""
    multiples = np.arange(50.0, 1000.1, 25.0)
    assert result.dose == multiples[np.argmax(inside(multiples, LOW, HIGH))] == 325.0


def test_the_current_dose_is_kept_when_the_search_cannot_beat_it(flat):
    """Current 320 mg on a 10 mg grid is the exact optimum: the answer is the current regimen itself."""
    current = kn.Regimen([kn.Dose(320.0)], unit="mg")
    result = kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=10, atol=1e-9)
    assert result.dose == 320.0 and result.regimen == current and result.objective == result.current.value


def test_the_default_step_rule():
    assert kn.optimize.default_step(320, 80, 1280) == 10.0
    assert kn.optimize.default_step(1000, 250, 4000) == 50.0
    assert kn.optimize.default_step(80, 20, 320) == 2.5
    assert kn.optimize.default_step(100, 1, 20) == 0.5  # at most a twentieth of the range
    assert kn.optimize.default_step(320, 1, 1e9) == 5e5  # at most about 2,000 candidate doses


# --- limits: exact filtering --------------------------------------------------------------------------------------

def test_daily_amount_counts_the_most_started_within_24_hours():
    assert daily_amount(kn.Regimen.parse("1000 mg iv over 1 h q8h x9")) == 3000
    assert daily_amount(kn.Regimen.parse("1000 mg iv over 1 h q12h x6")) == 2000
    assert daily_amount(kn.Regimen.parse("1000 mg iv q16h x6")) == 2000  # doses at 0 and 16 h
    assert daily_amount(kn.Regimen.parse("1000 mg iv q24h x3")) == 1000
    assert daily_amount(kn.Regimen.parse("2000 mg iv; 1000 mg iv q12h x4 at 12 h")) == 3000
    assert daily_amount(kn.Regimen.parse("500 mg iv q6h ss")) == 2000


def test_infusions_are_lengthened_to_quarter_hours_or_excluded():
    limits = kn.Constraints(max_rate=1000)
    assert limits.infusion(1000, 1.0, 12) == 1.0
    assert limits.infusion(1250, 1.0, 12) == 1.25
    assert limits.infusion(1100, 1.0, 12) == 1.25
    assert limits.infusion(2000, 0.5, 12) == 2.0
    assert limits.infusion(1250, 0.0, 12) == 0.0  # a bolus has no infusion rate
    assert limits.infusion(9000, 1.0, 8) is None  # 9 h does not fit in 8 h
    assert kn.Constraints(max_rate=1000, too_fast="exclude").infusion(1250, 1.0, 12) is None


def test_violations_and_the_dose_cap():
    limits = kn.Constraints(max_rate=1000, max_dose=2000, max_daily=4000)
    regimen = kn.Regimen.parse("1500 mg iv over 1 h q8h x3")
    assert limits.violations(regimen) == [
        "4500 mg within 24 h is above the daily maximum of 4000 mg",
        "an infusion at 1500 mg/h is faster than the maximum of 1000 mg/h"]
    assert limits.dose_cap(regimen) == pytest.approx(1000.0)  # the rate binds first: 1000 mg over 1 h
    assert kn.Constraints(max_daily=4000).dose_cap(regimen) == pytest.approx(4000 / 3)


@pytest.mark.parametrize(("options", "words"), [
    ({"max_rate": -1}, "max_rate must be a positive number"),
    ({"max_dose": float("nan")}, "max_dose must be a positive number"),
    ({"toxic": "cmin > 20"}, "the toxic event must be a Window"),
    ({"toxic_limit": 1.5}, "toxic_limit must be a probability"),
    ({"too_fast": "slow down"}, "too_fast must be 'lengthen' or 'exclude'"),
])
def test_bad_constraints_are_one_sentence(options, words):
    with pytest.raises(KoopnbError, match=words):
        kn.Constraints(**options)


def test_regimen_search_never_ranks_a_candidate_that_breaks_a_limit(flat):
    limits = kn.Constraints(max_rate=1000, max_dose=1500, max_daily=3000)
    table = kn.optimize_regimen(flat, flat.prior(), kn.Window(kn.Conc(23.0), 500, 1500), [500, 1000, 1250, 2000],
                                ["q8h", "q12h", 24], duration=1.0, unit="mg", constraints=limits)
    kept = {(row.amount, row.interval, row.duration) for row in table.itertuples()}
    assert kept == {(500, 8, 1.0), (1000, 8, 1.0), (500, 12, 1.0), (1000, 12, 1.0), (1250, 12, 1.25),
                    (500, 24, 1.0), (1000, 24, 1.0), (1250, 24, 1.25)}
    assert all(limits.violations(kn.Regimen.parse(text)) == [] for text in table["regimen"])
    reasons = dict(table.attrs["excluded"])
    assert reasons["1250 mg po over 1.25 h q8h x3"] == "3750 mg within 24 h is above the daily maximum of 3000 mg"
    assert reasons["2000 mg po over 2 h q12h x2"] == "a single dose of 2000 mg is above the maximum of 1500 mg"
    assert len(reasons) == 4
    assert table.attrs["constraints"] == ("infusions at most 1000 mg/h (faster infusions run longer, in whole quarter "
                                          "hours); single doses at most 1500 mg; at most 3000 mg in any 24 h")
    assert "over 1.25 h" in repr(table) and "faster infusions run longer" in repr(table)
    # the probabilities are the closed form: by 23 h the doses given so far, total/CL
    for row in table.itertuples():
        total = row.amount * math.ceil(23.0 / row.interval)
        assert abs(row.objective - inside(total, 500, 1500)) <= row.error + 1e-6


def test_excluding_infusions_that_run_too_fast(flat):
    limits = kn.Constraints(max_rate=1000, too_fast="exclude")
    table = kn.optimize_regimen(flat, flat.prior(), kn.Window(kn.Conc(23.0), 500, 1500), [1000, 1250], [12],
                                duration=1.0, unit="mg", constraints=limits)
    assert list(table["amount"]) == [1000]
    assert table.attrs["excluded"] == [("1250 mg every 12 h", "1250 mg over 1 h runs at 1250 mg/h, faster than the "
                                                        "maximum of 1000 mg/h")]


def test_no_candidate_left_is_one_sentence(flat):
    with pytest.raises(KoopnbError, match=r"none of the 2 candidate regimens respects the constraints "
                                          r"\(single doses at most 100 mg\)"):
        kn.optimize_regimen(flat, flat.prior(), kn.Window(kn.Conc(23.0), 500, 1500), [500, 1000], [12],
                            unit="mg", constraints=kn.Constraints(max_dose=100))


# --- the safety limit ---------------------------------------------------------------------------------------------

def test_regimen_safety_probability_against_the_closed_form(flat):
    toxic = kn.Window(kn.Conc(23.0), 1200, None)
    limits = kn.Constraints(toxic=toxic, toxic_limit=0.2)
    table = kn.optimize_regimen(flat, flat.prior(), kn.Window(kn.Conc(23.0), 500, 1500), [1000, 1500, 2000],
                                [12, 24], unit="mg", constraints=limits, atol=1e-8)
    for row in table.itertuples():
        total = row.amount * math.ceil(23.0 / row.interval)
        assert abs(row.toxic - above(total, 1200)) <= row.toxic_error + 1e-7
        assert row.toxic <= 0.2
    excluded = {text for text, _ in table.attrs["excluded"]}
    every = {(a, i) for a in (1000, 1500, 2000) for i in (12, 24)}
    allowed = {(a, i) for a, i in every if above(a * math.ceil(23.0 / i), 1200) <= 0.2}
    assert {(row.amount, row.interval) for row in table.itertuples()} == allowed
    assert len(excluded) == len(every - allowed) > 0


def test_dose_search_with_a_safety_limit_against_the_closed_form(flat):
    toxic = kn.Window(kn.Conc(1.0), 125.0, None)
    limits = kn.Constraints(toxic=toxic, toxic_limit=0.2)
    current = kn.Regimen([kn.Dose(320.0)], unit="mg")
    result = kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=25, atol=1e-9,
                              constraints=limits)
    multiples = np.arange(50.0, 1000.1, 25.0)
    allowed = multiples[above(multiples, 125.0) <= 0.2]
    assert result.dose == allowed[np.argmax(inside(allowed, LOW, HIGH))]
    assert abs(result.toxic.value - above(result.dose, 125.0)) <= result.toxic.error + 1e-9
    assert result.toxic.value <= 0.2 < above(320.0, 125.0)
    assert result.note.startswith(f"the current 320 mg gives P({toxic}) = {percent(above(320.0, 125.0))}, above "
                                  "the 20 % limit; the best allowed dose")
    assert "Toxicity risk" in dose_text(result) and "Toxicity risk" in dose_html(result)


def test_dose_search_caps_the_dose_at_the_limits(flat):
    current = kn.Regimen([kn.Dose(320.0, duration=1.0)], unit="mg")
    limits = kn.Constraints(max_rate=300)
    result = kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=25, constraints=limits)
    assert result.dose == 300.0  # the best multiple within 300 mg/h over the regimen's 1 h
    assert result.search_space == "multiples of 25 mg between 50 and 1000 mg, at most 300 mg under the constraints"
    assert result.note.startswith("the current 320 mg is not allowed: an infusion at 320 mg/h is faster than the "
                                  "maximum of 300 mg/h; the best allowed dose, 300 mg, gives")
    with pytest.raises(KoopnbError, match="no multiple of 25 mg between 50 and 1000 mg respects the constraints"):
        kn.optimize_dose(flat, current, flat.prior(), WINDOW, bounds=(50, 1000), step=25,
                         constraints=kn.Constraints(max_dose=40))


# --- a trough limit on a one-compartment model, against its closed form --------------------------------------------

ONE_COMPARTMENT = "CL = 4.5 [L/h] ~ 0.4\nV = 60 [L]\nd/dt(central) = -CL/V*central\nconc = central/V\ndose central"


def trough_above(amount: float, interval: float, at: float, level: float) -> float:
    """P(conc(at) ≥ level) for IV boluses of ``amount`` every ``interval`` h from 0 h, CL ~ LogNormal(4.5, 0.4),
    V = 60 L: conc(at) = Σ amount/V·exp(−CL/V·(at − t_i)) falls as CL grows, so the event is CL ≤ CL*, with CL*
    the root of conc(at) = level (scipy brentq)."""
    from scipy.optimize import brentq

    times = np.arange(0.0, at, interval)

    def excess(clearance: float) -> float:
        return float(np.sum(amount / 60.0 * np.exp(-clearance / 60.0 * (at - times)))) - level

    if excess(1e-6) < 0:
        return 0.0
    threshold = brentq(excess, 1e-6, 1e3, xtol=1e-13, rtol=1e-13)
    return float(ndtr((math.log(threshold) - math.log(4.5)) / 0.4))


def test_trough_limit_on_a_one_compartment_model_against_its_closed_form():
    model = kn.parse_model(ONE_COMPARTMENT)
    toxic = kn.Window(kn.Cmin(84.0, 95.5), 20.0, None)  # the trough just before the 96 h dose (q12h)
    limits = kn.Constraints(toxic=toxic, toxic_limit=0.3)
    table = kn.optimize_regimen(model, model.prior(), kn.Window(kn.AUC(72, 96), 400, 600), [500, 750, 1000, 1500],
                                [12], unit="mg", constraints=limits, atol=1e-8)
    exact = {amount: trough_above(amount, 12.0, 95.5, 20.0) for amount in (500, 750, 1000, 1500)}
    assert {row.amount for row in table.itertuples()} == {a for a, p in exact.items() if p <= 0.3}
    assert 0 < len(table) < 4  # the limit excludes something and keeps something
    for row in table.itertuples():
        assert abs(row.toxic - exact[row.amount]) <= row.toxic_error + 1e-6
    for text, reason in table.attrs["excluded"]:
        amount = float(text.split()[0])
        assert reason == f"P({toxic}) = {percent(exact[amount])}, above the 30 % limit"


def test_the_current_regimen_beside_the_ranking_and_why_a_better_one_is_not_offered(flat):
    window = kn.Window(kn.Conc(23.0), 500, 1500)
    table = kn.optimize_regimen(flat, flat.prior(), window, [500, 750, 1000], [12, 24], unit="mg",
                                current=(1100, "q12h"))
    best = table.iloc[0]
    current = table.attrs["current"]
    assert abs(current["objective"] - inside(2 * 1100, 500, 1500)) <= current["error"] + 1e-6
    assert inside(2200, 500, 1500) > inside(2 * best["amount"], 500, 1500)  # 1100 mg q12h beats every candidate
    assert table.attrs["note"] == (
        "the current 1100 mg every 12 h is not among the candidates (multiples of 250 mg from 500 to 1000 mg every "
        f"12 or 24 h); the best candidate, {best['amount']:g} mg every {best['interval']:g} h, gives "
        f"{percent(best['objective'])} vs {percent(current['objective'])}")
    for shown in (repr(table), table._repr_html_()):
        assert "Searched multiples of 250 mg from 500 to 1000 mg every 12 or 24 h." in shown
        assert f"Current 1100 mg every 12 h: probability in window {percent(current['objective'], current['error'])}" \
            in shown
        assert table.attrs["note"] in shown
    # on the grid, the current regimen is a candidate: the best ranked is at least as good, and nothing is noted
    table = kn.optimize_regimen(flat, flat.prior(), window, [500, 750, 1000], [12, 24], unit="mg",
                                current=(750, 12))
    assert table.iloc[0]["objective"] >= table.attrs["current"]["objective"] and table.attrs["note"] == ""
    # a current regimen above a limit is said to be not allowed
    table = kn.optimize_regimen(flat, flat.prior(), window, [500, 750, 1000], [12, 24], unit="mg",
                                current=(1100, 12), constraints=kn.Constraints(max_dose=1000))
    assert table.attrs["note"].startswith("the current 1100 mg every 12 h is not allowed: a single dose of 1100 mg "
                                          "is above the maximum of 1000 mg; the best allowed regimen, ")


@pytest.mark.slow
def test_safety_limit_on_a_nonlinear_model_against_dose_by_dose_probabilities():
    """Saturable elimination (each dose simulated on its own): the answer is the best multiple of 100 mg whose
    P(Cmax ≥ 12 mg/L) is within 25 %, by probabilities computed dose by dose at tight tolerance."""
    model = kn.parse_model(MICHAELIS_MENTEN)
    dist, regimen = model.prior(), kn.Regimen([kn.Dose(600.0)], unit="mg")
    window, toxic = kn.Window(kn.AUC(0, 24), 150.0, 250.0), kn.Window(kn.Cmax(0, 24), 12.0, None)
    result = kn.optimize_dose(model, regimen, dist, window, bounds=(200, 1500), step=100,
                              constraints=kn.Constraints(toxic=toxic, toxic_limit=0.25))
    doses = np.arange(200.0, 1500.1, 100.0)
    chance = np.array([kn.probability(window, model, regimen.scaled(d / 600), dist, atol=1e-7).value for d in doses])
    harm = np.array([kn.probability(toxic, model, regimen.scaled(d / 600), dist, atol=1e-7).value for d in doses])
    allowed = harm <= 0.25
    assert allowed.any() and not allowed.all()
    assert result.dose == doses[allowed][np.argmax(chance[allowed])]
    assert chance[allowed].max() < chance.max()  # the limit changes the answer
    assert abs(result.toxic.value - harm[doses == result.dose][0]) <= result.toxic.error + 1e-6
