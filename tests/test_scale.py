"""Many patients on Dask: the cluster's tables equal the serial ones, a lost worker changes nothing,
a subject with broken data is one failed row, and the virtual trial's sums agree with independent ones."""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

import koopnb as kn
from koopnb.scale.execution import subject_seed

VANCOMYCIN = """
covariate CRCL = 120 [mL/min]       # Goti et al., Ther Drug Monit 2018;40:212-221, Table 2
TVCL = 4.5  [L/h] ~ 39.8%
Vc   = 58.4 [L]   ~ 81.6%
Vp   = 38.4 [L]   ~ 57.1%
Q    = 6.5  [L/h]
CL   = TVCL * (CRCL/120)^0.8
d/dt(central)    = -CL/Vc*central - Q/Vc*central + Q/Vp*peripheral
d/dt(peripheral) =  Q/Vc*central - Q/Vp*peripheral
conc = central / Vc
conc ~ combined(3.4, 0.227)
dose central
"""
TARGET = [kn.Window(kn.AUC(120, 144), 400, 600), kn.Window(kn.Conc(144), None, 20)]
REGIMENS = {"1000 mg q12h": "1000 mg iv over 1 h q12h x13", "1500 mg q24h": "1500 mg iv over 1.5 h q24h x7"}
FIT = dict(steps=300, progress=False)


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(VANCOMYCIN, name="vancomycin")


@pytest.fixture(scope="module")
def ward(model):
    """Eight simulated patients; patient 3 has a level that is not a number."""
    table = kn.simulate_ward(model, 8, "1000 mg iv over 1 h q12h x4", [2.0, 35.5],
                             kn.Joint({"CRCL": kn.Uniform(20, 130)}), seed=1)
    table["DV"] = table["DV"].astype(object)
    table.loc[(table.ID == 3) & (table.EVID == 0) & (table.TIME == 35.5), "DV"] = "n/a"
    return table


@pytest.fixture(scope="module")
def serial(model, ward):
    return kn.cohort(model, ward, TARGET, regimens=REGIMENS, client="serial", **FIT)


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: two single-threaded worker processes on 127.0.0.1, stopped after the tests."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal in every value but the wall time."""
    pd.testing.assert_frame_equal(left.drop(columns="time"), right.drop(columns="time"), check_exact=True)


def test_a_model_pickles_to_the_same_numbers(model):
    copy = pickle.loads(pickle.dumps(model))
    regimen = kn.Regimen.parse("1000 mg iv over 1 h q12h x4")
    draws = model.prior().sample(50, seed=2)
    np.testing.assert_array_equal(copy.simulate(draws, regimen, [1, 13, 40], covariates={"CRCL": 70})["conc"],
                                  model.simulate(draws, regimen, [1, 13, 40], covariates={"CRCL": 70})["conc"])


def test_a_subject_seed_depends_on_the_id_not_on_the_order():
    assert subject_seed(7, 12) == subject_seed(7, 12)
    assert subject_seed(7, 12) != subject_seed(7, 13) != subject_seed(8, 12)
    with pytest.raises(kn.KoopnbError, match="seed"):
        subject_seed(-1, 12)


def test_a_subject_with_broken_data_is_one_failed_row(serial, ward):
    assert serial["ID"].tolist() == list(range(1, 9))
    broken = serial.set_index("ID").loc[3]
    assert broken.status == "failed"
    # Located in the whole table: patient 3's second level is the 6th of its rows.
    row = int(np.flatnonzero((ward.ID == 3) & (ward.DV.astype(str) == "n/a"))[0]) + 1
    assert broken.message == f"row {row}, column 'DV': 'n/a' is not a number"
    others = serial[serial.ID != 3]
    assert others.status.isin(["ok", "warning"]).all()
    assert others[["P", "error", "current_P"]].notna().all().all()
    assert (others.P >= others.current_P - others.error - others.current_error).all()  # current is a candidate


def test_each_row_repeats_a_single_fit_and_probability(model, ward, serial):
    """Subject 5's row against fit_individual and probability called directly with its seed."""
    rows = ward[ward.ID == 5]
    posterior = kn.fit_individual(model, rows, seed=subject_seed(0, 5), **FIT)
    crcl = rows.CRCL.iloc[0]
    best = max(REGIMENS, key=lambda label: kn.probability(
        TARGET, model, kn.Regimen.parse(REGIMENS[label]), posterior.to_distribution(), covariates={"CRCL": crcl},
        atol=1e-3).value)
    expected = kn.probability(TARGET, model, kn.Regimen.parse(REGIMENS[best]), posterior.to_distribution(),
                              covariates={"CRCL": crcl}, atol=1e-3)
    row = serial.set_index("ID").loc[5]
    assert row.regimen == best and row.P == expected.value and row.error == expected.error
    assert row["Vc_median"] == np.median(posterior.samples["Vc"])
    current = kn.Regimen.repeat(1000, every=12, count=13, duration=1.0)
    assert row.current_P == kn.probability(TARGET, model, current, posterior.to_distribution(),
                                           covariates={"CRCL": crcl}, atol=1e-3).value


def test_cohort_on_a_cluster_equals_the_serial_run(model, ward, serial, client):
    _same(serial, kn.cohort(model, ward, TARGET, regimens=REGIMENS, client=client, batch_size=2, **FIT))


def test_a_killed_worker_leaves_the_table_unchanged(model, ward, serial, client):
    """SIGKILL one worker process while its tasks run; the nanny restarts it and the scheduler reruns them."""
    victim = next(iter(client.run(os.getpid).values()))
    started = threading.Event()

    def kill() -> None:
        started.wait()
        time.sleep(1.0)  # the batches (one subject each, about a second) are under way
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    started.set()
    table = kn.cohort(model, ward, TARGET, regimens=REGIMENS, client=client, batch_size=1, **FIT)
    killer.join()
    assert victim not in client.run(os.getpid).values()  # the worker really died (and was replaced)
    _same(serial, table)


def test_nomogram_on_a_cluster_equals_the_serial_run_and_direct_probabilities(model, client):
    grids = {"CRCL": [20, 60, 100, 140]}
    serial = kn.nomogram(model, TARGET, grids, REGIMENS, client="serial", progress=False)
    _same(serial, kn.nomogram(model, TARGET, grids, REGIMENS, client=client, batch_size=1, progress=False))
    for _, row in serial.iterrows():
        results = {label: kn.probability(TARGET, model, kn.Regimen.parse(text), model.prior(),
                                         covariates={"CRCL": row.CRCL}, atol=1e-3) for label, text in REGIMENS.items()}
        best = max(results, key=lambda label: results[label].value)
        assert (row.regimen, row.P, row.error) == (best, results[best].value, results[best].error)
    assert serial.status.eq("ok").all()
    # A well-known fact the table must show: kidneys that clear faster need more drug per day.
    assert serial.regimen.iloc[0] == "1500 mg q24h" and serial.P.iloc[0] < serial.P.iloc[-1]


def test_virtual_trial_is_the_mean_of_koopman_probabilities_and_agrees_with_monte_carlo(model):
    """The outer sum against the per-patient table, the inner Koopman against plain Monte Carlo."""
    population = kn.Joint({"CRCL": kn.Uniform(40, 120)})
    trial = kn.virtual_trial(model, REGIMENS, TARGET, population, n=12, strata={"CRCL": [40, 80, 120]},
                             client="serial", seed=3, progress=False)
    patients = trial.attrs["patients"]
    assert len(patients) == 12 and trial.n.groupby(trial["CRCL stratum"], observed=True).first().sum() == 12
    for _, row in trial.iterrows():
        mine = patients[patients["CRCL stratum"] == row["CRCL stratum"]]
        values = mine[f"P {row.regimen}"]
        assert row.PTA == values.mean() and row.sampling_error == values.std(ddof=1) / np.sqrt(len(values))
        assert row.error == row.quadrature_error + 2 * row.sampling_error
    # Monte Carlo over random effects and covariates jointly, for the same twelve patients.
    regimen = kn.Regimen.parse(REGIMENS["1000 mg q12h"])
    draws = model.prior().sample(20_000, seed=4)
    crcl = np.repeat(patients.CRCL.to_numpy(), 20_000 // 12 + 1)[:20_000]
    auc = kn.AUC(120, 144).evaluate(model, draws, regimen, covariates={"CRCL": crcl})
    trough = kn.Conc(144).evaluate(model, draws, regimen, covariates={"CRCL": crcl})
    hits = (auc >= 400) & (auc < 600) & (trough < 20)
    weights = np.bincount(np.repeat(np.arange(12), 20_000 // 12 + 1)[:20_000])
    koopman = float(np.sum(patients["P 1000 mg q12h"] * weights) / weights.sum())
    assert abs(hits.mean() - koopman) < 4 * hits.std() / np.sqrt(hits.size) + 1e-3


def test_bad_requests_are_one_sentence(model, ward):
    with pytest.raises(kn.KoopnbError, match="bounds="):
        kn.cohort(model, ward, TARGET, client="serial")
    with pytest.raises(kn.KoopnbError, match="Window"):
        kn.nomogram(model, kn.AUC(0, 24), {"CRCL": [60]}, REGIMENS, client="serial")
    with pytest.raises(kn.KoopnbError, match="'WT' is not one of the model's covariates"):
        kn.nomogram(model, TARGET, {"WT": [60]}, REGIMENS, client="serial")
    with pytest.raises(kn.KoopnbError, match="outside the strata edges"):
        kn.virtual_trial(model, REGIMENS, TARGET, kn.Joint({"CRCL": kn.Uniform(20, 130)}), n=5,
                         strata={"CRCL": [60, 130]}, client="serial")
    with pytest.raises(kn.KoopnbError, match="client must be"):
        kn.nomogram(model, TARGET, {"CRCL": [60]}, REGIMENS, client="threads")


def test_the_nomogram_heat_map_and_widget_show_the_table(model):
    from koopnb.jupyter.nomogram import nomogram_view, stratum_html
    from koopnb.plotting import plot_nomogram

    table = kn.nomogram(model, TARGET, {"CRCL": [20, 140]}, REGIMENS, client="serial", progress=False)
    figure = plot_nomogram(table)
    best_map, chance_map = (ax.collections[0].get_array() for ax in figure.axes[:2])
    legend = [text.get_text() for text in figure.axes[0].get_legend().texts]
    assert legend == list(dict.fromkeys(table.regimen))
    assert best_map.ravel().tolist() == [legend.index(label) for label in table.regimen]
    assert np.allclose(chance_map.ravel(), table.P)
    view = nomogram_view(table)
    answer, pick = view.children[2], view.children[1].children[0]
    assert answer.value == stratum_html(table.iloc[0]) and table.regimen.iloc[0] in answer.value
    pick.value = 140.0
    assert answer.value == stratum_html(table.iloc[1]) and f"{table.P.iloc[1]:.3f}"[:4] in answer.value


def test_without_candidates_the_current_regimen_is_scaled_by_optimize_dose(model, ward):
    two = ward[ward.ID.isin([1, 4])]
    table = kn.cohort(model, two, TARGET, bounds=(250, 3000), step=250, client="serial", **FIT)
    for _, row in table.iterrows():
        rows = ward[ward.ID == row.ID]
        posterior = kn.fit_individual(model, rows, seed=subject_seed(0, row.ID), **FIT)
        current = kn.Regimen.repeat(1000, every=12, count=13, duration=1.0)
        direct = kn.optimize_dose(model, current, posterior.to_distribution(), TARGET, (250, 3000), 250,
                                  covariates={"CRCL": rows.CRCL.iloc[0]}, atol=1e-3)
        assert (row.dose, row.regimen, row.P, row.error) == (direct.dose, str(direct.regimen), direct.objective,
                                                             direct.error)
        assert row.dose % 250 == 0 and row.P >= row.current_P - row.error - row.current_error


def test_a_broken_row_is_counted_as_read_nonmem_counts_it(model, tmp_path):
    """Rows commented out (NONMEM's C column) still count: the failed row names the row read_nonmem names."""
    path = tmp_path / "ward.csv"
    path.write_text("C,ID,TIME,AMT,DV,EVID,MDV,DUR,CRCL\n"
                    ",1,0,1000,.,1,1,1,80\n,1,2,0,30.1,0,0,0,80\n"
                    "C,2,0,1000,.,1,1,1,60\n,2,0,1000,.,1,1,1,60\n,2,2,0,n/a,0,0,0,60\n")
    assert kn.data.read_raw(path).index.tolist() == [1, 2, 4, 5]
    with pytest.raises(kn.DataError) as reading:
        kn.read_nonmem(path)
    table = kn.cohort(model, path, TARGET, regimens=REGIMENS, client="serial", **FIT).set_index("ID")
    assert table.loc[2, "status"] == "failed" and table.loc[2, "message"] == str(reading.value) != ""
    assert "row 5" in table.loc[2, "message"] and table.loc[1, "status"] != "failed"
