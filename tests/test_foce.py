"""FOCE-I maximum likelihood against NONMEM's own run, nlmixr2's published fit and an exact Gaussian marginal.

NONMEM reference: pharmpy-core's example run of the phenobarbital data (Grasela & Donn, Dev Pharmacol Ther
8:374, 1985), files tests/testdata/nonmem/pheno_real.{mod,ext,phi,tab} and pheno.dta of pharmpy-core's source
distribution, downloaded from PyPI at test time (tests/pharmpy_testdata.py; LGPL-3.0-or-later, not copied into
koopnb).  NONMEM 7.4.2, $ESTIMATION METHOD=1 INTERACTION, ADVAN1 TRANS2:
TVCL = THETA(1)·WGT, TVV = THETA(2)·WGT·(1 + THETA(3) if APGR < 5), CL = TVCL·exp(ETA(1)),
V = TVV·exp(ETA(2)), Y = F + F·EPS(1).  Translated by hand: ``~ variance(OMEGA)``, THETA(3) with its bounds
``in (-0.99, inf)``, and ``proportional(b)`` takes the SD fraction (√SIGMA).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pharmpy_testdata import pheno_run
from scipy.stats import multivariate_normal
from shared_models import CORRELATED

import koopnb as kn
from koopnb.errors import FitError
from koopnb.inference.diagnostics import residuals_at
from koopnb.inference.foce import FoceObjective, PopulationEstimate, objective_value
from koopnb.inference.subjects import all_subjects


@pytest.fixture(scope="module")
def pheno_files() -> Path:
    return pheno_run()

# pheno_real.ext, final estimates (ITERATION -1000000000) and OBJ
NONMEM_THETA = (4.69555e-03, 9.84258e-01, 1.58920e-01)
NONMEM_OMEGA = (2.93508e-02, 2.79060e-02)  # OMEGA(1,1), OMEGA(2,2): variances of ETA(1), ETA(2)
NONMEM_SIGMA = 1.32410e-02  # SIGMA(1,1)
NONMEM_OFV = 586.27605628188053
# pheno_real.ext, standard errors (ITERATION -1000000001; $COVARIANCE default: the sandwich R⁻¹SR⁻¹)
NONMEM_SE_THETA = (2.10036e-04, 2.68952e-02, 8.37623e-02)
NONMEM_SE_OMEGA = (1.34153e-02, 7.47651e-03)
NONMEM_SE_SIGMA = 2.27940e-03
# pheno_real.lst: ETASHRINKSD(%) 4.7130E+01 1.2839E+01, EPSSHRINKSD(%) 2.1198E+01
NONMEM_ETA_SHRINKAGE = (0.47130, 0.12839)
NONMEM_EPS_SHRINKAGE = 0.21198


def pheno_text(theta=NONMEM_THETA, omega=NONMEM_OMEGA, sigma=NONMEM_SIGMA) -> str:
    return f"""
covariate WGT = 1.3 [kg]
covariate APGR = 7
CLkg  = {theta[0]!r} [L/h/kg] ~ variance({omega[0]!r})
Vkg   = {theta[1]!r} [L/kg]   ~ variance({omega[1]!r})
TH3   = {theta[2]!r} in (-0.99, inf)
CL = CLkg * WGT
V  = Vkg * WGT * where(APGR < 5, 1 + TH3, 1)
d/dt(central) = -CL / V * central
conc = central / V
conc ~ proportional({float(np.sqrt(sigma))!r})
dose central
"""


@pytest.fixture(scope="module")
def pheno_data(pheno_files) -> pd.DataFrame:
    # $INPUT ID TIME AMT WGT APGR DV FA1 FA2; no EVID/MDV: a row with AMT > 0 is a dose, as in NONMEM.
    # FA1 and FA2 (dose-record flags) are not used by the model.
    return pd.read_csv(pheno_files / "pheno.dta", sep=r"\s+").drop(columns=["FA1", "FA2"])


@pytest.fixture(scope="module")
def at_nonmem(pheno_data):
    """The FOCE-I objective of the pheno data with the model at NONMEM's final estimates."""
    model = kn.parse_model(pheno_text())
    return FoceObjective(model, all_subjects(model, pheno_data, None, "conc"), "conc")


@pytest.fixture(scope="module")
def pheno_fit(pheno_data) -> PopulationEstimate:
    # started from the control stream's initial estimates ($THETA, $OMEGA, $SIGMA of pheno_real.mod)
    model = kn.parse_model(pheno_text((0.00469307, 1.00916, 0.1), (0.0309626, 0.031128), 0.013241))
    return kn.fit_population(model, pheno_data, method="ml", seed=1)


def test_ofv_at_nonmem_estimates_equals_nonmems(at_nonmem, pheno_files):
    """NONMEM's objective to 0.005 (the brief asks 0.05), and per subject: the conditional modes, their
    covariance H⁻¹ and each subject's OBJ in pheno_real.phi.  The expected-information curvature matters: with
    the observed-style 1/V alone the OFV would be 584.71, 1.6 units off."""
    ofv, per_subject = at_nonmem(at_nonmem.scales.start[None])
    assert ofv[0] == pytest.approx(NONMEM_OFV, abs=0.005)
    phi = pd.read_csv(pheno_files / "pheno_real.phi", sep=r"\s+", skiprows=1)
    np.testing.assert_allclose(per_subject[0], phi["OBJ"], atol=2e-4)
    eta, curvature = at_nonmem.modes(at_nonmem.scales.start)
    np.testing.assert_allclose(eta, phi[["ETA(1)", "ETA(2)"]], atol=2e-5)
    conditional = np.linalg.inv(curvature)
    np.testing.assert_allclose(conditional[:, 0, 0], phi["ETC(1,1)"], rtol=2e-4)
    np.testing.assert_allclose(conditional[:, 1, 0], phi["ETC(2,1)"], rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(conditional[:, 1, 1], phi["ETC(2,2)"], rtol=2e-4)


def test_emcee_marginal_is_nonmems_objective(at_nonmem):
    """The likelihood the emcee path samples (population.py, Laplace with the same expected-information
    curvature) is NONMEM's FOCE-I objective at the same point: −2 log L − n log 2π = OFV."""
    from koopnb.inference.population import PopulationProblem

    problem = PopulationProblem(at_nonmem.model, at_nonmem.subjects, "conc", {})
    log_likelihood = problem.marginal(problem.start[None])[0]
    assert -2 * log_likelihood - 155 * np.log(2 * np.pi) == pytest.approx(NONMEM_OFV, abs=0.005)


def test_residual_table_matches_nonmems_table(at_nonmem, pheno_files):
    """PRED, IPRED and CWRES (Hooker et al. 2007) against NONMEM's $TABLE output pheno_real.tab (five digits)."""
    table = residuals_at(at_nonmem, at_nonmem.scales.start)
    nonmem = pd.read_csv(pheno_files / "pheno_real.tab", sep=r"\s+", skiprows=1)
    nonmem = nonmem[nonmem["AMT"] == 0].reset_index(drop=True)  # observation records
    assert len(table) == len(nonmem) == 155
    np.testing.assert_array_equal(table["ID"], nonmem["ID"].astype(int))
    np.testing.assert_allclose(table["TIME"], nonmem["TIME"])
    np.testing.assert_allclose(table["PRED"], nonmem["PRED"], rtol=6e-5)
    np.testing.assert_allclose(table["IPRED"], nonmem["IPRED"], rtol=6e-5)
    np.testing.assert_allclose(table["CWRES"], nonmem["CWRES"], atol=2e-4)
    np.testing.assert_allclose(table["RES"], table["DV"] - table["PRED"])
    # NONMEM's NPDE is simulated (ESAMPLE=300: standard error about 0.07 near 0, 0.16 at ±2); koopnb's is
    # integrated, so they agree to that noise
    difference = np.abs(table["NPDE"] - nonmem["NPDE"])
    assert difference.mean() < 0.12 and difference.max() < 0.7
    assert np.corrcoef(table["NPDE"], nonmem["NPDE"])[0, 1] > 0.98
    assert table.attrs["npde_error"] < 1e-4
    assert list(table.columns[-2:]) == ["ETA_CLkg", "ETA_Vkg"]


def test_ml_fit_lands_on_nonmems_estimates(pheno_fit):
    """Within NONMEM's standard errors / 10 for every estimate, OFV no higher than NONMEM's; standard errors
    (sandwich, as NONMEM's default $COVARIANCE) within 6 %, shrinkage as NONMEM defines it."""
    fit = pheno_fit
    estimates = fit.estimates
    theta = (estimates["CLkg"], estimates["Vkg"], estimates["TH3"])
    omega = (estimates["omega_CLkg"] ** 2, estimates["omega_Vkg"] ** 2)
    sigma = estimates["conc.proportional"] ** 2
    for mine, nonmem, se in zip(theta + omega + (sigma,), NONMEM_THETA + NONMEM_OMEGA + (NONMEM_SIGMA,),
                                NONMEM_SE_THETA + NONMEM_SE_OMEGA + (NONMEM_SE_SIGMA,), strict=True):
        assert abs(mine - nonmem) < se / 10
    assert NONMEM_OFV - 0.01 < fit.ofv < NONMEM_OFV + 1e-3
    se = fit.standard_errors
    # delta method back to NONMEM's scales: SE(ω²) = 2ω SE(ω), SE(σ²) = 2b SE(b)
    mine = (se["CLkg"], se["Vkg"], se["TH3"], 2 * estimates["omega_CLkg"] * se["omega_CLkg"],
            2 * estimates["omega_Vkg"] * se["omega_Vkg"], 2 * estimates["conc.proportional"] * se["conc.proportional"])
    np.testing.assert_allclose(mine, NONMEM_SE_THETA + NONMEM_SE_OMEGA + (NONMEM_SE_SIGMA,), rtol=0.06)
    assert fit.shrinkage["CLkg"] == pytest.approx(NONMEM_ETA_SHRINKAGE[0], abs=0.003)
    assert fit.shrinkage["Vkg"] == pytest.approx(NONMEM_ETA_SHRINKAGE[1], abs=0.003)
    assert fit.epsilon_shrinkage == pytest.approx(NONMEM_EPS_SHRINKAGE, abs=0.003)
    assert fit.diagnostics["covariance"].startswith("R⁻¹SR⁻¹")


def test_ml_fit_reports_like_a_population(pheno_fit, pheno_data):
    fit = pheno_fit
    assert isinstance(fit, kn.PopulationPosterior)
    assert fit.typical["CLkg"] == fit.estimates["CLkg"]
    assert fit.omega[0, 0] == pytest.approx(fit.estimates["omega_CLkg"] ** 2)
    assert fit.omega[2, 2] == 0.0  # TH3 has no IIV
    assert set(fit.sigma) == {"conc.proportional"}
    assert list(fit.etas.columns) == ["eta_CLkg", "eta_Vkg"] and len(fit.etas) == 59
    subject = fit.individuals[1]
    assert subject.map["CLkg"] == pytest.approx(fit.estimates["CLkg"] * np.exp(fit.etas.loc[1, "eta_CLkg"]))
    # the OFV is the sum of the subjects' terms, and the same number through objective_value
    assert sum(fit.subject_ofv.values()) == pytest.approx(fit.ofv)
    subjects = [posterior.subject for posterior in fit.individuals.values()]
    assert objective_value(fit.model, subjects, "conc", fit.estimates) == pytest.approx(fit.ofv, abs=1e-5)
    table = fit.table()
    assert len(table) == 155 and np.all(np.isfinite(table["CWRES"]))
    summary = fit.summary()
    assert summary.loc["CLkg", "SE"] == pytest.approx(fit.standard_errors["CLkg"])
    assert isinstance(fit.to_distribution(), kn.MvLogNormal)


THEOPHYLLINE = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 0.3
V  = 31.5 [L]   ~ 0.1
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
# nlmixr2's FOCEi fit of theo_sd (12 subjects, 132 concentrations, time-0 samples included) with this model (the
# one.compartment model of the nlmixr vignette "Changing models via piping",
# https://rdrr.io/github/nlmixrdevelopment/nlmixr.examples/f/vignettes/modelPiping.Rmd, whose printed fit is
# the source): ka 1.594 /h, CL 2.751 L/h, V 31.81 L, add.sd 0.6947 mg/L, BSV 70.00 / 26.80 / 13.88 CV%
# (omega² = ln(1 + CV²)).  The same numbers as tests/test_population.py, transcribed there.
NLMIXR2 = {"ka": 1.594, "CL": 2.751, "V": 31.81, "conc.additive": 0.6947}
NLMIXR2_CV = {"ka": 0.7000, "CL": 0.2680, "V": 0.1388}


def test_theophylline_ml_fit_matches_nlmixr2(tmp_path):
    fit = kn.fit_population(kn.parse_model(THEOPHYLLINE), kn.datasets.theophylline(), method="ml")
    for name, value in NLMIXR2.items():
        assert fit.estimates[name] == pytest.approx(value, rel=0.02), name
    for name, cv in NLMIXR2_CV.items():
        assert np.sqrt(np.expm1(fit.estimates[f"omega_{name}"] ** 2)) == pytest.approx(cv, rel=0.02), name
    bundle = fit._repr_mimebundle_()
    assert "OFV 116.8" in bundle["text/plain"] and "RSE%" in bundle["text/html"]
    path = tmp_path / "theophylline_ml.npz"
    fit.save(path)
    again = kn.PopulationPosterior.load(path)
    assert again.typical == pytest.approx(fit.typical) and again.sigma == pytest.approx(fit.sigma)


def test_focei_objective_is_exact_for_a_model_linear_in_eta():
    """With f = 10 + log(B) = 10 + log B_typ + η and additive error the Laplace approximation is exact:
    the OFV equals −2 log N(y; μ1, ω²11ᵀ + a²I) − n log 2π (scipy), summed over subjects."""
    model = kn.parse_model("""
B = 2.0 ~ 0.4
x(0) = 1
d/dt(x) = 0
level = 10 + x * log(B)
level ~ additive(0.3)
""")
    rng = np.random.default_rng(3)
    rows = []
    for subject in range(1, 5):
        eta = 0.4 * rng.standard_normal()
        for time in (1.0, 2.0, 4.0):
            rows.append({"ID": subject, "TIME": time, "DV": 10 + np.log(2.0) + eta + 0.3 * rng.standard_normal()})
    data = pd.DataFrame(rows)
    objective = FoceObjective(model, all_subjects(model, data, None, "level"), "level")
    ofv, _ = objective(objective.scales.start[None])
    covariance = 0.4**2 * np.ones((3, 3)) + 0.3**2 * np.eye(3)
    exact = sum(-2 * multivariate_normal(np.full(3, 10 + np.log(2.0)), covariance).logpdf(group["DV"].to_numpy())
                for _, group in data.groupby("ID")) - len(data) * np.log(2 * np.pi)
    assert ofv[0] == pytest.approx(exact, abs=1e-6)


def correlated_data():
    """40 subjects of the model linear in η with correlated IIV (Ω = [[0.16, 0.06], [0.06, 0.09]]), the exact
    −2 log-likelihood minus n log 2π of each subject's Gaussian marginal, and the pieces of that marginal."""
    omega = np.array([[0.16, 0.06], [0.06, 0.09]])
    times = np.array([1.0, 2.0, 4.0, 6.0])
    rng = np.random.default_rng(5)
    rows = []
    for subject in range(1, 41):
        eta = rng.multivariate_normal(np.zeros(2), omega)
        for time in times:
            mean = 10 + np.log(2.0) + eta[0] + time * (np.log(1.5) + eta[1])
            rows.append({"ID": subject, "TIME": time, "DV": mean + 0.3 * rng.standard_normal()})
    data = pd.DataFrame(rows)
    design = np.stack([np.ones_like(times), times], axis=1)
    covariance = design @ omega @ design.T + 0.3**2 * np.eye(len(times))
    mean = 10 + np.log(2.0) + times * np.log(1.5)
    exact = sum(-2 * multivariate_normal(mean, covariance).logpdf(group["DV"].to_numpy())
                for _, group in data.groupby("ID")) - len(data) * np.log(2 * np.pi)
    return data, exact, mean, covariance


def test_focei_objective_is_exact_with_correlated_random_effects():
    """A block Ω (``corr``): level = 10 + log B + t·log C with correlated IIV on B and C is linear in η, so the
    OFV is −2 log N(y; μ, GΩGᵀ + a²I) − n log 2π with G = [1, t] — and the ML fit, started from
    ``corr(B, C) = 0``, estimates the covariance (the data were drawn with correlation 0.5)."""
    model = kn.parse_model(CORRELATED)
    data, exact, mean, covariance = correlated_data()
    objective = FoceObjective(model, all_subjects(model, data, None, "level"), "level")
    ofv, _ = objective(objective.scales.start[None])
    assert ofv[0] == pytest.approx(exact, abs=1e-6)
    # the predictive distribution is Gaussian, so NPDE = Cov^(-1/2)(y − μ) exactly (symmetric square root)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    root = vectors @ np.diag(eigenvalues**-0.5) @ vectors.T
    exact_npde = np.concatenate([root @ (group["DV"].to_numpy() - mean) for _, group in data.groupby("ID")])
    table = residuals_at(objective, objective.scales.start)
    np.testing.assert_allclose(table["NPDE"], exact_npde, atol=1e-6)
    fit = kn.fit_population(kn.parse_model(model.spec.text.replace("corr(B, C) = 0.5", "corr(B, C) = 0")),
                            data, method="ml")
    assert "corr_B_C" in fit.estimates and 0.2 < fit.estimates["corr_B_C"] < 0.9
    assert fit.omega[0, 1] == pytest.approx(fit.estimates["corr_B_C"] * fit.estimates["omega_B"]
                                            * fit.estimates["omega_C"])


def test_emcee_marginal_honours_correlated_iiv():
    """The emcee path's Laplace marginal with a block Ω samples ``corr_B_C`` and, at the model's values, equals
    the exact Gaussian marginal (the model is linear in η); with the correlation set to 0 it is far off."""
    from koopnb.inference.population import PopulationProblem

    model = kn.parse_model(CORRELATED)
    data, exact, _, _ = correlated_data()
    problem = PopulationProblem(model, all_subjects(model, data, None, "level"), "level", {})
    assert problem.names == ["B", "C", "omega_B", "omega_C", "corr_B_C", "level.additive"]
    assert problem.natural(problem.start[None])[0, 4] == pytest.approx(0.5)
    minus_two = -2 * problem.marginal(problem.start[None])[0] - len(data) * np.log(2 * np.pi)
    assert minus_two == pytest.approx(exact, abs=1e-6)
    uncorrelated = problem.start.copy()
    uncorrelated[4] = 0.0
    assert abs(-2 * problem.marginal(uncorrelated[None])[0] - len(data) * np.log(2 * np.pi) - exact) > 1.0


def test_method_errors_are_one_sentence():
    model = kn.parse_model(THEOPHYLLINE)
    with pytest.raises(FitError, match="method must be 'emcee'"):
        kn.fit_population(model, kn.datasets.theophylline(), method="foce")
    with pytest.raises(FitError, match="priors= applies to method='emcee'"):
        kn.fit_population(model, kn.datasets.theophylline(), method="ml", priors={"ka": kn.LogNormal(1.0, 1.0)})
    with pytest.raises(FitError, match="covariance must be 'sandwich' or 'r'"):
        kn.fit_population(model, kn.datasets.theophylline(), method="ml", covariance="s")


def test_goodness_of_fit_panel_of_an_ml_fit():
    import matplotlib

    matplotlib.use("Agg")
    from koopnb.plotting import plot_goodness_of_fit

    fit = kn.fit_population(kn.parse_model(THEOPHYLLINE), kn.datasets.theophylline(), method="ml")
    figure = plot_goodness_of_fit(fit)
    assert len(figure.axes) == 4
    time, cwres = figure.axes[2].lines[-1].get_data()
    table = fit.table()
    np.testing.assert_allclose(time, table["TIME"])
    np.testing.assert_allclose(cwres, table["CWRES"])
    # CWRES of a model that fits: near zero mean, near unit spread
    assert abs(table["CWRES"].mean()) < 0.3 and 0.7 < table["CWRES"].std() < 1.3
