"""The IPython magics, driven through a real InteractiveShell: what they bind, what they display, and that
every user mistake is one UsageError paragraph without a traceback."""

import string
import warnings

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import koopnb as kn
import koopnb.jupyter.magics
from koopnb.cards import RESULT_MIME_TYPE, percent
from koopnb.inference import ConvergenceWarning
from koopnb.jupyter.magics import KoopnbMagics

MODEL_CELL = """\
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
# Over 2000 h every simulated patient has eliminated the dose (exp(-CL/V·t) < 1e-15 at the GH nodes),
# so AUC(0, 2000) = D / CL: its mean and its window probabilities have closed forms in the log-normal CL.
LONG_AUC = "auc(0, 2000)"
DOSE = 320.0


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "koopnb.jupyter")
    return ip


@pytest.fixture
def theo(shell):
    run(shell, "%%pkmodel theo\n" + MODEL_CELL)
    return shell.user_ns["theo"]


def run(shell, source):
    """Run a cell; return (ExecutionResult, captured output)."""
    with capture_output() as captured:
        result = shell.run_cell(source)
    return result, captured


def bundles(captured):
    return [output.data for output in captured.outputs]


def assert_one_line_error(result, captured, *fragments):
    """The cell failed with a UsageError shown as one paragraph, with no traceback anywhere."""
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    text = captured.stdout + captured.stderr
    assert "Traceback" not in text
    assert text.count("UsageError") == 1
    for fragment in fragments:
        assert fragment in text, text


def cl_log_sd(model):
    return float(np.sqrt(model.omega[model.parameters.index("CL"), model.parameters.index("CL")]))


# ---------------------------------------------------------------------------------------------- %%pkmodel
def test_load_ext_koopnb_registers_the_magics():
    fresh = InteractiveShell.instance()
    fresh.run_line_magic("load_ext", "koopnb")
    assert {"pkfit", "pkexpect", "pkdose", "pkdashboard"} <= set(fresh.magics_manager.magics["line"])
    assert "pkmodel" in fresh.magics_manager.magics["cell"]


def test_pkmodel_binds_the_model_and_shows_equations_and_parameters(shell):
    result, captured = run(shell, "%%pkmodel theo\n" + MODEL_CELL)
    assert result.success
    model = shell.user_ns["theo"]
    assert isinstance(model, kn.Model) and model.name == "theo"
    assert model.parameters == ("ka", "CL", "V")
    (data,) = bundles(captured)
    assert "\\frac{d\\,\\mathrm{central}}{dt}" in data["text/latex"]
    for name in ("ka", "CL", "V", "1/h", "L/h"):
        assert f">{name}<" in data["text/html"]
    assert "$$" in data["text/html"]  # the equations, typeset by the front end


def test_pkmodel_error_points_at_line_and_column_with_a_caret(shell):
    cell = "%%pkmodel broken\nka = 1.5 ~ 0.6\nCL = 2.8 ~ 0.3\nd/dt(depot) = -ka*depot +\n"
    result, captured = run(shell, cell)
    # The line as the editor numbers it: the %%pkmodel line is line 1 of the cell, so body line 3 is line 4.
    assert_one_line_error(result, captured, "line 4, column 25:")
    assert cell.splitlines()[4 - 1][25 - 1] == "+"
    message = str(result.error_in_exec).splitlines()
    assert message[1].strip() == "d/dt(depot) = -ka*depot +"
    assert message[2].index("^") == message[1].index("+")  # the caret sits under the offending '+'
    assert "broken" not in shell.user_ns


@pytest.mark.parametrize(("cell", "line"), [
    ("%%pkmodel m\nka = 1.5 ~ 0.6\nka = 2 ~ 0.1\n", 3),
    ("%%pkmodel m\n\n\nka = 1.5 ~ 0.6\nd/dt(a) = -ka*a +* 2\n", 5),
    ("%%pkmodel m\nimport os\n", 2),
    ("\n\n%%pkmodel m\nka = 1.5 ~ 0.6\nka = 2 ~ 0.1\n", 5),  # IPython drops the blank lines; the editor does not
])
def test_pkmodel_errors_are_located_as_the_editor_numbers_lines(shell, cell, line):
    result, captured = run(shell, cell)
    assert_one_line_error(result, captured, f"line {line}, column ")
    located = str(result.error_in_exec).splitlines()
    shown = located[0].split(":")[0]
    assert shown.startswith(f"line {line}, column ")
    assert located[1].strip() == cell.splitlines()[line - 1].strip()  # the line quoted is that editor line


def test_line_numbers_inside_a_model_error_message_are_the_editors_too(shell):
    result, captured = run(shell, "%%pkmodel m\nka = 1.5 ~ 0.6\nka = 2 ~ 0.1\n")
    assert_one_line_error(result, captured, "line 3, column 1: 'ka' is already defined on line 2")


@pytest.mark.parametrize("cell", [
    "%%pkmodel m\nka = 1.5 ~ 0.6\nCL = 2.8 ~ 0.3\nd/dt(depot) = -ka*depot +\n",
    "\n\n%%pkmodel m\nka = 1.5 ~ 0.6\nka = 2 ~ 0.1\n",
])
def test_pkmodel_error_is_displayed_for_the_editor_at_the_place_the_message_names(shell, cell):
    # The JupyterLab extension underlines what this bundle locates: it must be the place the text names.
    result, captured = run(shell, cell)
    (data,) = bundles(captured)
    error = data[koopnb.jupyter.magics.MODEL_ERROR_MIME_TYPE]
    message = str(result.error_in_exec).splitlines()[0]
    assert message == f"line {error['line']}, column {error['column']}: {error['message']}"
    assert data["text/plain"] == ""


def test_a_model_error_without_a_place_displays_nothing_for_the_editor(shell, monkeypatch):
    def unplaced(text, name=None):
        raise kn.ModelError("the model has no observation")

    monkeypatch.setattr(koopnb.jupyter.magics, "parse_model", unplaced)
    result, captured = run(shell, "%%pkmodel m\nka = 1.5 ~ 0.6\n")
    assert_one_line_error(result, captured, "the model has no observation")
    assert bundles(captured) == []


def test_pkmodel_needs_a_variable_name(shell):
    result, captured = run(shell, "%%pkmodel 2x\n" + MODEL_CELL)
    assert_one_line_error(result, captured, "variable name")


def test_help_lists_the_options():
    for magic, option in [(KoopnbMagics.pkfit, "--steps"), (KoopnbMagics.pkexpect, "--window"),
                          (KoopnbMagics.pkdose, "--bounds"), (KoopnbMagics.pkdashboard, "--metric")]:
        assert option in magic.__doc__


# ---------------------------------------------------------------------------------------------- %pkexpect
def test_pkexpect_mean_matches_the_closed_form(shell, theo):
    result, captured = run(shell, f'%pkexpect theo --dist prior --regimen "{DOSE:g} mg po" --metric "{LONG_AUC}" '
                                  "--rtol 1e-8 --atol 1e-8 -o mean_auc")
    assert result.success, captured.stderr
    expected = DOSE / theo.typical["CL"] * np.exp(cl_log_sd(theo) ** 2 / 2)  # E[D/CL], CL log-normal
    answer = shell.user_ns["mean_auc"]
    assert abs(answer.value - expected) < 1e-6 * expected
    assert answer.error < 1e-6 * expected
    (data,) = bundles(captured)
    card = data[RESULT_MIME_TYPE]
    assert card["kind"] == "expectation" and card["metric"] == "auc(0, 2000)"
    assert card["value"] == answer.value and card["n_evals"] == answer.n_evals > 0
    assert "±" in data["text/plain"] and "model evaluations" in data["text/plain"]


def test_pkexpect_window_gives_the_probability(shell, theo):
    low, high = 90.0, 130.0
    result, captured = run(shell, f'%pkexpect theo --regimen "{DOSE:g} mg po" --metric "{LONG_AUC}" '
                                  f"--window {low:g}..{high:g} --atol 1e-7 -o chance")
    assert result.success, captured.stderr
    # P(low <= D/CL < high) = P(D/high < CL <= D/low) with log CL ~ N(log CL_typ, ω²).
    cl = scipy.stats.lognorm(s=cl_log_sd(theo), scale=theo.typical["CL"])
    expected = cl.cdf(DOSE / low) - cl.cdf(DOSE / high)
    answer = shell.user_ns["chance"]
    assert abs(answer.value - expected) < 1e-5
    card = bundles(captured)[0][RESULT_MIME_TYPE]
    assert card["kind"] == "probability" and card["window"] == [low, high]
    assert card["probability"] == answer.value


def test_pkexpect_montecarlo_and_a_distribution_variable(shell, theo):
    shell.user_ns["patient"] = {"CL": 2.8}
    result, captured = run(shell, '%pkexpect theo --dist patient --regimen "320 mg po" --metric "auc(0, 24)"')
    assert_one_line_error(result, captured, "'patient' is a dict, not a distribution or posterior")
    shell.user_ns["patient"] = kn.MvLogNormal({"CL": 2.8}, [[0.09]])
    result, captured = run(shell, '%pkexpect theo --dist patient --regimen "320 mg po" --metric "auc(0, 24)" '
                                  "--method montecarlo --n 2000 --seed 3 -o mc")
    assert result.success, captured.stderr
    answer = shell.user_ns["mc"]
    assert answer.method == "montecarlo" and answer.n_evals == 2000
    exact = kn.expectation(kn.AUC(0, 24), theo, kn.Regimen.parse("320 mg po"), shell.user_ns["patient"], rtol=1e-8)
    assert abs(answer.value - exact.value) < 5 * answer.error


@pytest.mark.parametrize(("line", "fragment"), [
    ('%pkexpect nothing --regimen "320 mg po" --metric "auc(0, 24)"', "no variable 'nothing'"),
    ('%pkexpect theo --dist nowhere --regimen "320 mg po" --metric "auc(0, 24)"', "no variable 'nowhere'"),
    ('%pkexpect theo --regimen "320 mg po q24 hh" --metric "auc(0, 24)"', "not 'hh'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24"', "is not of the form name(arguments)"),
    ('%pkexpect theo --regimen "320 mg po" --metric "aucc(0, 24)"', "unknown metric 'aucc'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --window 600..400', "must be below"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24, conk)"', "'conk'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --covariate WT', "NAME=VALUE"),
    ('%pkexpect theo --metric "auc(0, 24)"', "--regimen"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --target "auc(0,24)=100"',
     "exactly one of --window and --target"),
    ('%pkdose theo --regimen "320 mg po" --target "auc(0, 24) == x"', "is not a number"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --bounds 500..100', "0 < low < high"),
    ("%pkfit theo nodata", "no variable or file 'nodata'"),
    ('%pkdashboard theo --regimen "320 mg po" --metric "cmax(0)"', "cmax takes 2 numbers"),
    # Each of these printed a traceback before (issue 14, defect 9), or bound a result to no valid name.
    ('%pkdashboard theo --regimen "320 mg po q24h x3" --metric "auc(0, 24)" --window "120..80"',
     "the window's low bound 120 must be below its high bound 80"),
    ('%pkdashboard theo --regimen "320 mg po q24h x3" --metric "auc(0, 24)" --window "5..5"', "must be below"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --method qmc --seed -1',
     "argument --seed: needs a whole number >= 0, not '-1'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --method montecarlo --n 0',
     "argument --n: needs a whole number >= 1, not '0'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --rtol nan',
     "argument --rtol: needs a finite number >= 0, not 'nan'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --atol inf',
     "argument --atol: needs a finite number >= 0, not 'inf'"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" -o 2x', "-o needs a Python variable name, not '2x'"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" -o "a b"',
     "-o needs a Python variable name, not 'a b'"),
    ("%pkfit theo nodata -o class", "-o needs a Python variable name, not 'class'"),
    ("%pkfit theo theoph --id 1 --seed -1", "argument --seed: needs a whole number >= 0, not '-1'"),
    ("%pkfit theo theoph --id 1 --steps 0", "argument --steps: needs a whole number >= 1, not '0'"),
    ("%pkfit theo theoph --id 1 --walkers 1.5", "argument --walkers: needs a whole number >= 1, not '1.5'"),
    ("%pkfit theo levels", "levels holds (times, values) without doses: give them with --regimen"),
    ('%pkfit theo levels --regimen "320 mg po q24 hh"', "not 'hh'"),
    ('%pkfit theo theoph --regimen "320 mg po"', "the table holds 12 subjects, each with the doses of its own rows"),
    ('%pkdose theo --regimen "320 mg po at 100 h" --window "auc(0, 24) in 80..120"',
     "auc(0, 24) is the same for every patient near the typical one"),
    ('%pkdose theo --regimen "320 mg po" --window "time_above(0, 24, 1e9) in 1.."', "is the same for every patient"),
    ('%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)" --covariate WT=70 --covariate WT=80',
     "--covariate WT is given twice (70 and 80)"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --toxic-limit 0.1',
     "give the harmful window with --toxic"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --toxic "cmax(0, 24) in 5.." '
     "--toxic-limit 2", "argument --toxic-limit: needs a probability between 0 and 1"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --max-dose -5',
     "argument --max-dose: needs a positive number, not '-5'"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --max-dose 50',
     "respects the constraints (single doses at most 50 mg): they allow at most 50 mg"),
    ('%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --step 0',
     "argument --step: needs a positive number, not '0'"),
])
def test_every_mistake_is_one_line(shell, theo, theoph_table, line, fragment):
    shell.user_ns["theoph"] = theoph_table
    shell.user_ns["levels"] = (np.array([1.0, 2.0, 4.0]), np.array([5.0, 6.0, 4.0]))
    for name in ("2x", "a b", "class"):
        shell.user_ns.pop(name, None)
    result, captured = run(shell, line)
    assert_one_line_error(result, captured, fragment)


# ---------------------------------------------------------------------------------------------- %pkdose
def test_pkdose_target_matches_the_closed_form(shell, theo):
    target = 500.0
    result, captured = run(shell, f'%pkdose theo --regimen "{DOSE:g} mg po" --target "{LONG_AUC} = {target:g}" '
                                  "--bounds 100..2000 -o best")
    assert result.success, captured.stderr
    # E[D/CL] = target  =>  D = target · CL_typ · exp(-ω²/2).
    expected = target * theo.typical["CL"] * np.exp(-cl_log_sd(theo) ** 2 / 2)
    best = shell.user_ns["best"]
    assert isinstance(best, kn.DoseResult)
    assert abs(best.exact_dose - expected) < 1e-4 * expected
    assert best.dose == best.step * round(expected / best.step)  # the practical dose: the nearest multiple
    card = bundles(captured)[0][RESULT_MIME_TYPE]
    assert card["kind"] == "dose" and card["unit"] == "mg" and card["dose"] == best.dose
    assert card["regimen"] == str(best.regimen)


def test_pkdose_window_with_a_step(shell, theo):
    result, captured = run(shell, '%pkdose theo --regimen "320 mg po q24h x3" --window "auc(0, 24) in 80..120" '
                                  "--step 50 -o tablets")
    assert result.success, captured.stderr
    best = shell.user_ns["tablets"]
    assert best.dose % 50 == 0 and 80 <= best.dose <= 1280  # default bounds: a quarter to 4 times 320
    card = bundles(captured)[0][RESULT_MIME_TYPE]
    assert card["kind"] == "dose" and card["window"] == [80.0, 120.0]
    assert card["probability"] == pytest.approx(best.objective)


def test_pkdose_answer_is_never_worse_than_the_current_dose_or_says_why(shell, theo):
    """Issue 15's 320 mg / 325 mg case: --step 25 cannot give 320 mg."""
    result, captured = run(shell, '%pkdose theo --regimen "320 mg po" --window "auc(0, 24) in 80..120" --step 25 '
                                  "--bounds 50..1000 -o rounded")
    assert result.success, captured.stderr
    best = shell.user_ns["rounded"]
    text = bundles(captured)[0]["text/plain"]
    assert "Searched multiples of 25 mg between 50 and 1000 mg." in text
    if best.objective < best.current.value:
        assert (f"Note: the current 320 mg is not a multiple of 25 mg; the best multiple, {best.dose:g} mg, gives "
                f"{percent(best.objective)} vs {percent(best.current.value)}.") in text


def test_pkdose_shows_the_current_regimen_the_search_and_the_limits(shell, theo):
    result, captured = run(shell, '%pkdose theo --regimen "320 mg po q24h x3" --window "auc(0, 24) in 80..120" '
                                  '--step 25 --max-dose 300 --toxic "cmax(0, 24) in 12.." --toxic-limit 20% -o held')
    assert result.success, captured.stderr
    best = shell.user_ns["held"]
    assert best.dose <= 300 and best.dose % 25 == 0 and best.constraints.max_dose == 300
    assert best.constraints.toxic_limit == 0.2 and best.toxic.value <= 0.2
    text = bundles(captured)[0]["text/plain"]
    assert "multiples of 25 mg between 80 and 1280 mg, at most 300 mg under the constraints" in text
    assert f"current 320 mg: {percent(best.current.value, best.current.error)}" in text
    assert "the current 320 mg is not allowed" in text or best.current.value <= best.objective
    assert text.splitlines()[-1].startswith("Details:")


# ---------------------------------------------------------------------------------------------- %pkfit
@pytest.fixture(scope="module")
def theoph_table():
    return kn.datasets.theophylline()


def test_pkfit_one_subject(shell, theo, theoph_table):
    shell.user_ns["theoph"] = theoph_table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result, captured = run(shell, "%pkfit theo theoph --id 1 --steps 60 --seed 4 -o subject1")
    assert result.success, captured.stderr
    posterior = shell.user_ns["subject1"]
    assert isinstance(posterior, kn.Posterior) and posterior.subject.id == 1
    (data,) = bundles(captured)
    assert "Posterior of subject 1" in data["text/html"] and "<table" in data["text/html"]
    assert "Note: the chain of 60 steps" in captured.stdout  # a short chain is said so, not hidden
    assert "Traceback" not in captured.stderr


def test_pkfit_population_by_default_posterior(shell, theo, theoph_table):
    shell.user_ns["theoph"] = theoph_table
    shell.user_ns.pop("posterior", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result, captured = run(shell, "%pkfit theo theoph --steps 30 --seed 2")
    assert result.success, captured.stderr
    population = shell.user_ns["posterior"]
    assert isinstance(population, kn.PopulationPosterior) and len(population.individuals) == 12
    assert "Population posterior of 12 subjects" in bundles(captured)[0]["text/html"]
    result, captured = run(shell, '%pkexpect theo --dist posterior --regimen "320 mg po" --metric "auc(0, 24)"')
    assert result.success, captured.stderr  # a posterior is turned into its distribution


def test_pkfit_times_and_values_with_a_regimen(shell, theo):
    regimen = kn.Regimen.parse("320 mg po q12h x2")
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.5, 16.0, 24.0])
    shell.user_ns["levels"] = (times, theo.simulate({}, regimen, times)["conc"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result, captured = run(shell, '%pkfit theo levels --regimen "320 mg po q12h x2" --steps 40 --seed 3 -o patient')
    assert result.success, captured.stderr
    posterior = shell.user_ns["patient"]
    assert isinstance(posterior, kn.Posterior) and posterior.subject.regimen == regimen
    np.testing.assert_array_equal(posterior.subject.times, times)
    # the same fit through the library, same seed: the magic adds nothing and drops nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        direct = kn.fit_individual(theo, shell.user_ns["levels"], regimen, steps=40, seed=3, progress=False)
    np.testing.assert_array_equal(posterior.draws, direct.draws)
    assert "--regimen" in KoopnbMagics.pkfit.__doc__


def test_pkfit_takes_the_patients_covariates(shell):
    run(shell, "%%pkmodel weighed\ncovariate WT = 70 [kg]\n" + MODEL_CELL.replace("CL = 2.8", "TVCL = 2.8")
        + "CL = TVCL * (WT / 70)**0.75\n")
    model = shell.user_ns["weighed"]
    regimen = kn.Regimen.parse("320 mg po")
    times = np.array([1.0, 2.0, 4.0, 8.0, 24.0])
    shell.user_ns["levels"] = (times, model.simulate({}, regimen, times, covariates={"WT": 50.0})["conc"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result, captured = run(shell, '%pkfit weighed levels --regimen "320 mg po" --covariate WT=50 --steps 40 '
                                      "--seed 5 -o light")
        direct = kn.fit_individual(model, shell.user_ns["levels"], regimen, covariates={"WT": 50.0}, steps=40,
                                   seed=5, progress=False)
    assert result.success, captured.stderr
    assert shell.user_ns["light"].subject.covariates == {"WT": 50.0}
    np.testing.assert_array_equal(shell.user_ns["light"].draws, direct.draws)
    result, captured = run(shell, '%pkfit weighed levels --regimen "320 mg po" --steps 40')
    assert_one_line_error(result, captured, "covariate 'WT' of the model has no value for the patient")


def test_pkfit_unknown_subject(shell, theo, theoph_table):
    shell.user_ns["theoph"] = theoph_table
    result, captured = run(shell, "%pkfit theo theoph --id 99 --steps 20")
    assert_one_line_error(result, captured, "no subject '99'")


# ---------------------------------------------------------------------------------------------- %pkdashboard
def test_pkdashboard_displays_the_widget(shell, theo):
    result, captured = run(shell, '%pkdashboard theo --regimen "320 mg po q24h x3" --metric "auc(0, 24)" '
                                  "--window 80..120")
    assert result.success, captured.stderr
    (data,) = bundles(captured)
    assert "application/vnd.jupyter.widget-view+json" in data


def test_running_out_of_memory_is_one_line(shell, theo, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(koopnb.jupyter.magics, "expectation", exhausted)
    result, captured = run(shell, '%pkexpect theo --regimen "320 mg po" --metric "auc(0, 24)"')
    assert_one_line_error(result, captured, "this needs more memory than the machine has")


# ---------------------------------------------------------------------------------------------- any invocation
GARBAGE = st.text(alphabet=string.ascii_letters + " .,:;=()[]'-+*/%#!@$^&|<>?~`\\", max_size=10)


def _values(*examples):
    """A value of an option: a plausible one (good or bad), or garbage."""
    return st.one_of(st.sampled_from(examples), GARBAGE)


OPTION_VALUES = {
    "pkexpect": {"--dist": _values("prior", "patient", "levels", "nowhere"),
                 "--regimen": _values("320 mg po", "320 mg iv over 1 h q12h x3", "0 mg", "320 mg po q0h", "x3"),
                 "--metric": _values("auc(0, 24)", "conc(2)", "auc(24, 0)", "conc(-1)", "time_above(0, 24, 5)"),
                 "--window": _values("80..120", "120..80", "..", "5..5", "nan..", "..1e400", "80.."),
                 "--method": _values("koopman", "montecarlo", "qmc"), "--n": _values("100", "0", "-3", "1.5"),
                 "--seed": _values("0", "-1", "1e3"), "--rtol": _values("1e-3", "0", "-1", "nan"),
                 "--atol": _values("1e-6", "-1", "inf"), "--covariate": _values("WT=70", "WT", "=3"),
                 "-o": _values("answer", "2x", "a b", "class")},
    "pkdose": {"--dist": _values("prior", "patient"),
               "--regimen": _values("320 mg po", "0 mg po", "320 mg po at 100 h"),
               "--window": _values("auc(0, 24) in 80..120", "auc(0, 24) in 120..80", "80..120", "cmax(0, 24) in ..5"),
               "--target": _values("auc(0, 24) = 100", "auc(0, 24) = nan", "= 5"),
               "--bounds": _values("100..1000", "0..10", "..5", "1..1e300"),
               "--step": _values("25", "0", "nan", "1e-9"), "--method": _values("koopman", "montecarlo"),
               "--max-dose": _values("500", "-1", "10"), "--max-daily": _values("2000", "x"),
               "--max-rate": _values("100", "0"),
               "--toxic": _values("cmax(0, 24) in 10..", "cmin(0, 24) in ..0", "garbage"),
               "--toxic-limit": _values("0.1", "10%", "2", "%"),
               "--covariate": _values("WT=70"), "-o": _values("best", "1a")},
    "pkdashboard": {"--dist": _values("prior", "patient"),
                    "--regimen": _values("320 mg po q24h x3", "0 mg po", "320 mg po at 100 h"),
                    "--metric": _values("auc(0, 24)", "cmin(0, 72)", "auc(24, 0)"),
                    "--window": _values("80..120", "120..80", "..5", "5..5", "1e300.."), "--covariate": _values("X=1"),
                    "--step": _values("25", "0", "-1", "nan", "inf", "1e-9")},
    "pkfit": {"--regimen": _values("320 mg po", "xx", "320 mg po at 10 h"), "--id": _values("1", "abc"),
              "--steps": _values("0", "-5", "x"), "--walkers": _values("7", "0", "1.5"), "--seed": _values("1", "-1"),
              "--covariate": _values("WT=1", "WT"), "-o": _values("fit", "9")},
}
REQUIRED = {"pkexpect": ["--regimen", "--metric"], "pkdose": ["--regimen", "--window"],
            "pkdashboard": ["--regimen", "--metric"], "pkfit": ["--regimen"]}


@st.composite
def invocations(draw):
    """A line magic with its required options (mostly) and up to four others, each value good, bad or garbage."""
    magic = draw(st.sampled_from(sorted(OPTION_VALUES)))
    others = sorted(set(OPTION_VALUES[magic]) - set(REQUIRED[magic]))
    chosen = [option for option in REQUIRED[magic] if draw(st.integers(0, 9))]
    chosen += draw(st.lists(st.sampled_from(others), unique=True, max_size=4))
    words = [f"%{magic}", "theo", *(["levels"] if magic == "pkfit" else [])]
    if magic == "pkfit" and "--steps" not in chosen:
        words += ["--steps", "20"]  # a short chain: the test is about the options, not the sampler
    for option in chosen:
        words += [option, '"' + draw(OPTION_VALUES[magic][option]).replace('"', "'") + '"']
    return " ".join(words)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(line=invocations())
def test_any_invocation_succeeds_or_is_one_usage_error(shell, theo, line):
    shell.user_ns["patient"] = kn.MvLogNormal({"CL": 2.8}, [[0.09]])
    shell.user_ns["levels"] = (np.array([1.0, 4.0, 12.0]), np.array([9.0, 8.0, 6.0]))
    result, captured = run(shell, line)
    text = captured.stdout + captured.stderr
    assert result.error_in_exec is None or isinstance(result.error_in_exec, UsageError), (line, result.error_in_exec)
    assert "Traceback" not in text, (line, text)
