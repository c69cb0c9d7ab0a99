"""Fits on real patient histories: a covariate that changes within a subject is used as it changes,
never reduced to its first value.  References are closed forms written out by hand, piece by piece."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import koopnb as kn
from koopnb.errors import DataError, FitError
from koopnb.inference.individual import IndividualProblem
from koopnb.inference.population import PopulationProblem
from koopnb.inference.subjects import all_subjects, one_subject

RENAL = """
CL = 4 [L/h] ~ 0.3
V  = 30 [L] ~ 0.2
covariate CRCL = 80 [mL/min]
CLi = CL * (CRCL / 80)^0.75
d/dt(central) = -CLi / V * central
conc = central / V
conc ~ additive(0.3)
dose central
"""
DOSE_TIMES = np.array([0.0, 24.0, 48.0])
AMOUNT = 500.0
OBSERVED = np.array([2.0, 12.0, 23.0, 24.0, 30.0, 47.0, 50.0, 60.0])
CRCL_TIMES = np.array([0.0, 24.0, 48.0])
CRCL = np.array([80.0, 40.0, 120.0])
DV = np.array([14.0, 7.5, 3.0, 18.0, 13.0, 6.0, 17.0, 8.0])


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(RENAL)


def _table(n_subjects=1, crcl=CRCL):
    rows = []
    for subject in range(1, n_subjects + 1):
        for time in sorted({*DOSE_TIMES, *OBSERVED}):
            value = crcl[np.searchsorted(CRCL_TIMES, time, side="right") - 1]
            if time in DOSE_TIMES:
                rows.append({"ID": subject, "TIME": time, "AMT": AMOUNT, "DV": np.nan, "EVID": 1, "CRCL": value})
            if time in OBSERVED:
                dv = DV[np.flatnonzero(OBSERVED == time)[0]]
                rows.append({"ID": subject, "TIME": time, "AMT": 0.0, "DV": dv, "EVID": 0, "CRCL": value})
    return pd.DataFrame(rows)


def _hand_built(cl, v, rule, times=OBSERVED):
    """Concentrations of the one-compartment bolus model with CL changing at 24 h and 48 h, by hand:
    C(t) = Σ_doses A/V · exp(−∫_dose^t k(s) ds), k piecewise constant (the CRCL rows as the rule reads them)."""
    # The table has a row at every dose and observation time; CRCL is 40 from the row at 24 h, 120 from 48 h.
    if rule == "nocb":  # row k holds on (t_{k-1}, t_k]: 40 from the row before 24 h (23 h), 120 from 47 h
        edges = np.array([0.0, 23.0, 47.0])
    else:  # row k holds on [t_k, t_{k+1}): 40 from 24 h, 120 from 48 h
        edges = np.array([0.0, 24.0, 48.0])
    crcl = CRCL
    rates = cl * (crcl / 80) ** 0.75 / v

    def integral(t):  # ∫_0^t k(s) ds
        bounds = np.append(edges, np.inf)
        return sum(rate * np.clip(t - a, 0, b - a) for rate, a, b in zip(rates, bounds[:-1], bounds[1:],
                                                                            strict=True))

    return sum(np.where(times >= d, AMOUNT / v * np.exp(-(integral(times) - integral(d))), 0.0) for d in DOSE_TIMES)


@pytest.mark.parametrize("rule", ["nocb", "locf"])
def test_individual_likelihood_follows_the_covariate_history(model, rule):
    subject = one_subject(model, _table(), None, None, None, "conc", covariate_interpolation=rule)
    assert isinstance(subject.covariates, pd.DataFrame)
    problem = IndividualProblem(model, subject, "conc")
    cl, v = np.array([3.1, 4.0, 5.2]), np.array([27.0, 30.0, 33.0])
    points = np.log(np.stack([cl, v], axis=1))
    expected = [scipy.stats.norm.logpdf(DV, _hand_built(c, w, rule), 0.3).sum() for c, w in zip(cl, v, strict=True)]
    np.testing.assert_allclose(problem.log_likelihood(points), expected, rtol=1e-12)
    # ... and not the one of the first value (CRCL 80 throughout).
    baseline = scipy.stats.norm.logpdf(DV, _constant(cl[0], v[0]), 0.3).sum()
    assert abs(problem.log_likelihood(points[:1])[0] - baseline) > 10


def _constant(cl, v):
    return sum(np.where(OBSERVED >= d, AMOUNT / v * np.exp(-cl / v * (OBSERVED - d)), 0.0) for d in DOSE_TIMES)


def test_a_history_given_as_covariates_equals_the_same_history_in_the_table(model):
    table = _table(crcl=np.full(3, 80.0)).drop(columns="CRCL")
    history = _table()[["TIME", "CRCL"]]
    from_argument = IndividualProblem(model, one_subject(model, table, None, history, None, "conc"), "conc")
    from_table = IndividualProblem(model, one_subject(model, _table(), None, None, None, "conc"), "conc")
    points = np.log([[3.5, 29.0], [4.5, 31.0]])
    np.testing.assert_allclose(from_argument.log_likelihood(points), from_table.log_likelihood(points), rtol=1e-12)


def test_population_fit_predicts_each_subject_on_its_history(model):
    """The population likelihood's predictions: a subject with a history next to one with a constant CRCL."""
    table = pd.concat([_table(1), _table(1, crcl=np.full(3, 60.0)).assign(ID=2)], ignore_index=True)
    problem = PopulationProblem(model, all_subjects(model, table, None, "conc"), "conc", {})
    assert isinstance(problem.subjects[0].covariates, pd.DataFrame) and problem.subjects[1].covariates == {"CRCL": 60}
    rows = np.array([0, 1, 0])
    parameters = np.array([[3.1, 27.0], [4.0, 30.0], [5.2, 33.0]])
    predicted = problem.stack.predict(rows, parameters)
    np.testing.assert_allclose(predicted[0], _hand_built(3.1, 27.0, "nocb"), rtol=1e-12)
    np.testing.assert_allclose(predicted[2], _hand_built(5.2, 33.0, "nocb"), rtol=1e-12)
    np.testing.assert_allclose(predicted[1], _constant(4.0 * (60 / 80) ** 0.75, 30.0), rtol=1e-12)


def test_a_bad_history_or_rule_is_one_sentence(model):
    with pytest.raises(FitError, match="covariate_interpolation must be 'nocb'"):
        one_subject(model, _table(), None, None, None, "conc", covariate_interpolation="linear")
    history = pd.DataFrame({"TIME": [0.0, 24.0], "CRCL": [80.0, np.nan]})
    with pytest.raises(DataError, match="'CRCL' of the patient is not a finite number at 24 h"):
        one_subject(model, (OBSERVED, DV), kn.Regimen([kn.Dose(AMOUNT, t) for t in DOSE_TIMES]), history, None,
                    "conc")


# ---------------------------------------------------------------- steady-state doses and resets from data
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
MICHAELIS_MENTEN = """
Vmax = 20 [mg/h] ~ 0.3
Km = 4 [mg/L]
V  = 30 [L] ~ 0.2
d/dt(central) = -Vmax * (central / V) / (Km + central / V)
conc = central / V
conc ~ additive(0.5)
dose central
"""
# SS=1 at 0 h (on 320 mg every 12 h before it), a dose at 12 h, a reset (EVID 3) at 30 h, reset and dose
# (EVID 4) at 40 h, SS=2 at 60 h (the steady state of 320 mg q12h added to what is there).
HISTORY = pd.DataFrame({
    "ID": 1,
    "TIME": [0, 2, 6, 11.5, 12, 20, 30, 35, 40, 44, 60, 62, 70],
    "AMT": [320, 0, 0, 0, 320, 0, 0, 0, 320, 0, 320, 0, 0],
    "DV": [np.nan, 8.1, 7.0, 4.2, np.nan, 6.5, np.nan, 1.0, np.nan, 7.2, np.nan, 9.0, 6.1],
    "EVID": [1, 0, 0, 0, 1, 0, 3, 0, 4, 0, 1, 0, 0],
    "SS": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
    "II": [12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0],
})
HISTORY_REGIMEN = kn.Regimen([kn.Dose(320, 0, steady_state=1, interval=12), kn.Dose(320, 12), kn.Dose(320, 40),
                              kn.Dose(320, 60, steady_state=2, interval=12)], resets=(30.0, 40.0))
HISTORY_TIMES = np.array([2, 6, 11.5, 20, 35, 44, 62, 70.0])
HISTORY_DV = np.array([8.1, 7.0, 4.2, 6.5, 1.0, 7.2, 9.0, 6.1])


def test_steady_state_doses_and_resets_in_a_fit_equal_model_simulate():
    model = kn.parse_model(THEOPHYLLINE)
    subject = one_subject(model, HISTORY, None, None, None, "conc")
    assert subject.regimen == HISTORY_REGIMEN
    problem = IndividualProblem(model, subject, "conc")
    values = {"ka": np.array([1.2, 1.5, 2.1]), "CL": np.array([3.3, 2.8, 2.2]), "V": np.array([28.0, 31.5, 36.0])}
    predicted = model.simulate(values, HISTORY_REGIMEN, HISTORY_TIMES)["conc"]
    expected = scipy.stats.norm.logpdf(HISTORY_DV, predicted, 0.7).sum(axis=1)
    points = np.log(np.stack([values["ka"], values["CL"], values["V"]], axis=1))
    np.testing.assert_allclose(problem.log_likelihood(points), expected, rtol=1e-10)
    # Independent of the simulator: the reset at 30 h empties the body, so the level at 35 h is exactly 0.
    assert np.all(predicted[:, 4] == 0)
    # The population likelihood predicts the same levels.
    population = PopulationProblem(model, all_subjects(model, HISTORY, None, "conc"), "conc", {})
    np.testing.assert_allclose(population.stack.predict(np.zeros(3, dtype=int), np.exp(points)), predicted,
                               rtol=1e-10)


def test_a_nonlinear_steady_state_in_a_fit_equals_model_simulate():
    model = kn.parse_model(MICHAELIS_MENTEN)
    table = HISTORY[HISTORY["SS"] != 2].assign(AMT=lambda t: t["AMT"] / 4)  # SS=2 needs superposition (linear)
    subject = one_subject(model, table, None, None, None, "conc")
    problem = IndividualProblem(model, subject, "conc")
    values = {"Vmax": np.array([15.0, 25.0]), "V": np.array([27.0, 33.0])}
    predicted = model.simulate(values, subject.regimen, subject.times)["conc"]
    expected = scipy.stats.norm.logpdf(subject.values, predicted, 0.5).sum(axis=1)
    points = np.log(np.stack([values["Vmax"], values["V"]], axis=1))
    np.testing.assert_allclose(problem.log_likelihood(points), expected, rtol=1e-8)


@pytest.mark.parametrize("rule", ["nocb", "locf"])
def test_a_history_fit_equals_model_simulate_with_the_history(model, rule):
    """Two implementations agree: the fit's pieces and Model.simulate with the same covariate history."""
    subject = one_subject(model, _table(), None, None, None, "conc", covariate_interpolation=rule)
    problem = IndividualProblem(model, subject, "conc")
    values = {"CL": np.array([3.1, 5.2]), "V": np.array([27.0, 33.0])}
    history = _table()[["TIME", "CRCL"]]
    history.attrs["covariate_interpolation"] = rule
    predicted = model.simulate(values, subject.regimen, OBSERVED, covariates=history)["conc"]
    np.testing.assert_allclose(problem.stack.predict(np.zeros(2, dtype=int), np.stack([values["CL"], values["V"]],
                                                                                       axis=1)), predicted, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::koopnb.inference.ConvergenceWarning")
def test_saving_a_history_keeps_it(model, tmp_path):
    posterior = kn.fit_individual(model, _table(), steps=20, walkers=8, seed=1, progress=False)
    posterior.save(tmp_path / "patient.npz")
    again = kn.Posterior.load(tmp_path / "patient.npz")
    pd.testing.assert_frame_equal(again.subject.covariates, posterior.subject.covariates, check_dtype=False)
    assert again.subject.regimen == posterior.subject.regimen
    assert again.subject.covariate_interpolation == posterior.subject.covariate_interpolation
    np.testing.assert_array_equal(again.draws, posterior.draws)


def test_text_columns_the_model_does_not_use_do_not_stop_a_fit(model):
    """A real TDM table carries text covariates (nlme's Quinidine: Race, Smoke, Heart); only the model's are read."""
    table = _table().assign(RACE="Caucasian", HEART="Moderate")
    subject = one_subject(model, table, None, None, None, "conc")
    assert list(subject.covariates.columns) == ["TIME", "CRCL"]
