"""kn.from_nonmem: NONMEM control streams (through pharmpy-core) as koopnb models, checked against NONMEM's own
objective, hand-written closed forms and the same model written another way.

The phenobarbital run is the example NONMEM run that pharmpy-core installs with itself
(``pharmpy/internals/example_models/pheno.{mod,dta,ext,lst}``: Grasela & Donn, Dev Pharmacol Ther 8:374, 1985;
FOCE-I, ADVAN1 TRANS2). The theophylline control streams (ADVAN2, ADVAN13 with $DES, an OMEGA BLOCK) are written
here, on koopnb's shipped theophylline data.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import koopnb as kn
from koopnb.inference.foce import objective_value
from koopnb.inference.subjects import all_subjects

pharmpy = pytest.importorskip("pharmpy")
pytestmark = pytest.mark.filterwarnings("ignore:.*is not translated:UserWarning")
EXAMPLES = Path(pharmpy.__file__).parent / "internals" / "example_models"


def _final_estimates(ext: Path) -> pd.Series:
    """The final-estimate row (ITERATION -1000000000) of a NONMEM .ext file."""
    table = pd.read_csv(ext, sep=r"\s+", skiprows=1)
    return table[table["ITERATION"] == -1000000000].iloc[0]


@pytest.fixture(scope="module")
def pheno():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kn.from_nonmem(EXAMPLES / "pheno.mod")


def test_pheno_translates_to_the_model_a_pharmacometrician_would_write(pheno):
    model, data = pheno
    text = kn.nonmem_text(EXAMPLES / "pheno.mod")
    for line in ("POP_CL = 0.00469307 ~ variance(0.0309626)", "POP_VC = 1.00916 ~ variance(0.031128)",
                 "COVAPGR = 0.1 in (-0.99, inf)", "CL = POP_CL*WGT", "d/dt(central) = -CL*central/V",
                 "conc = central/V", "dose central"):
        assert line in text, line
    assert model.omega[0, 0] == pytest.approx(0.0309626) and model.omega[1, 1] == pytest.approx(0.031128)
    assert model.bounds["COVAPGR"] == (-0.99, math.inf)
    assert set(model.covariates) == {"WGT", "APGR"}
    # every row of pheno.dta is there: 59 neonates, 155 levels, 589 doses
    assert data["ID"].nunique() == 59
    assert (data["EVID"] == 0).sum() == 155 and (data["EVID"] == 1).sum() == 589


def test_pheno_predictions_equal_a_hand_written_superposition_of_boluses(pheno):
    model, data = pheno
    final = _final_estimates(EXAMPLES / "pheno.ext")
    theta1, theta2, theta3 = final["THETA1"], final["THETA2"], final["THETA3"]
    for subject in (1, 17, 40):
        rows = data[data["ID"] == subject]
        weight, apgar = rows["WGT"].iloc[0], rows["APGR"].iloc[0]
        doses, levels = rows[rows["EVID"] == 1], rows[rows["EVID"] == 0]
        cl, v = theta1 * weight, theta2 * weight * (1 + theta3 if apgar < 5 else 1)
        elapsed = levels["TIME"].to_numpy()[:, None] - doses["TIME"].to_numpy()[None, :]
        expected = np.where(elapsed >= 0, doses["AMT"].to_numpy() / v * np.exp(-cl / v * np.maximum(elapsed, 0)),
                            0).sum(axis=1)
        regimen = kn.Regimen(kn.Dose(a, t) for a, t in zip(doses["AMT"], doses["TIME"], strict=True))
        got = model.simulate({"POP_CL": theta1, "POP_VC": theta2, "COVAPGR": theta3}, regimen,
                             levels["TIME"].to_numpy(), {"WGT": weight, "APGR": apgar})["conc"][0]
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_pheno_ofv_at_nonmems_final_estimates_equals_nonmems(pheno):
    """The translated model's FOCE-I objective at pheno.ext's final estimates: 586.27605628520962 (pheno.lst)."""
    model, data = pheno
    final = _final_estimates(EXAMPLES / "pheno.ext")
    estimates = {"POP_CL": final["THETA1"], "POP_VC": final["THETA2"], "COVAPGR": final["THETA3"],
                 "omega_POP_CL": math.sqrt(final["OMEGA(1,1)"]), "omega_POP_VC": math.sqrt(final["OMEGA(2,2)"]),
                 "conc.proportional": math.sqrt(final["SIGMA(1,1)"])}
    ofv = objective_value(model, all_subjects(model, data, None, "conc"), "conc", estimates)
    assert ofv == pytest.approx(final["OBJ"], abs=0.05)
    assert final["OBJ"] == pytest.approx(586.27605628520962)


THEOPHYLLINE_PK = """
$PK
CL = THETA(1)*EXP(ETA(1))
V = THETA(2)*EXP(ETA(2))
KA = THETA(3)*EXP(ETA(3))
S2 = V
"""
THEOPHYLLINE_TAIL = """
$ERROR
IPRED = F
W = SQRT(THETA(4)**2 + THETA(5)**2*IPRED**2)
Y = IPRED + W*EPS(1)
IRES = DV - IPRED
$THETA (0, 2.8) ; TVCL
$THETA (0, 31.5) ; TVV
$THETA (0, 1.5) ; TVKA
$THETA (0, 0.7) ; ADD
$THETA (0, 0.1) ; PROP
{omega}
$SIGMA 1 FIX
$ESTIMATION METHOD=1 INTERACTION
"""


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nonmem")
    data = kn.datasets.theophylline()[["ID", "TIME", "AMT", "DV", "EVID", "CMT", "WT"]]
    data.to_csv(folder / "theo.csv", index=False, na_rep=".")
    head = "$PROBLEM theophylline\n$INPUT ID TIME AMT DV EVID CMT WT\n$DATA theo.csv IGNORE=@\n"
    diagonal = "$OMEGA 0.07 0.02 0.36"
    block = "$OMEGA BLOCK(2) 0.07 0.02 0.05\n$OMEGA 0.36"
    (folder / "advan2.ctl").write_text(head + "$SUBROUTINE ADVAN2 TRANS2\n" + THEOPHYLLINE_PK
                                       + THEOPHYLLINE_TAIL.format(omega=diagonal))
    (folder / "block.ctl").write_text(head + "$SUBROUTINE ADVAN2 TRANS2\n" + THEOPHYLLINE_PK
                                      + THEOPHYLLINE_TAIL.format(omega=block))
    des = ("$SUBROUTINE ADVAN13 TOL=9\n$MODEL COMP=(DEPOT DEFDOSE) COMP=(CENTRAL DEFOBS)\n" + THEOPHYLLINE_PK
           + "$DES\nDADT(1) = -KA*A(1)\nDADT(2) = KA*A(1) - CL/V*A(2)\n")
    (folder / "des.ctl").write_text(head + des + THEOPHYLLINE_TAIL.format(omega=diagonal))
    (folder / "additive_eta.ctl").write_text(
        head + "$SUBROUTINE ADVAN2 TRANS2\n" + THEOPHYLLINE_PK.replace("THETA(1)*EXP(ETA(1))", "THETA(1) + ETA(1)")
        + THEOPHYLLINE_TAIL.format(omega=diagonal))
    return folder


def _bateman(dose, ka, cl, v, times):
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * times) - np.exp(-ka * times))


def test_advan2_and_des_predict_the_bateman_function(streams):
    data = kn.datasets.theophylline()
    subject = data[data["ID"] == 3]
    dose = subject.loc[subject["EVID"] == 1, "AMT"].iloc[0]
    times = subject.loc[subject["EVID"] == 0, "TIME"].to_numpy()
    expected = _bateman(dose, 1.5, 2.8, 31.5, times)
    for name in ("advan2", "des"):
        model, table = kn.from_nonmem(streams / f"{name}.ctl")
        assert model.parameters == ("TVCL", "TVV", "TVKA")
        assert model.omega[2, 2] == pytest.approx(0.36)
        got = model.simulate({}, kn.Regimen.parse(f"{dose} mg po"), times)["conc"][0]
        np.testing.assert_allclose(got, expected, rtol=1e-6 if name == "des" else 1e-10)
        assert len(table) == len(data)
    text = kn.nonmem_text(streams / "advan2.ctl")
    assert "conc ~ combined(0.7, 0.1)" in text  # W = SQRT(THETA(4)**2 + THETA(5)**2*IPRED**2), SIGMA 1 FIX
    assert "ADD" not in text.split("conc ~")[0] and "PROP" not in text.split("conc ~")[0]


def test_omega_block_becomes_corr_and_the_same_covariance(streams):
    model, _ = kn.from_nonmem(streams / "block.ctl")
    assert "corr(TVCL, TVV) = " in kn.nonmem_text(streams / "block.ctl")
    np.testing.assert_allclose(model.omega[:2, :2], [[0.07, 0.02], [0.02, 0.05]], rtol=1e-12)
    assert model.omega[0, 2] == 0 and model.omega[2, 2] == pytest.approx(0.36)


def test_what_cannot_be_translated_is_one_sentence_naming_it(streams, tmp_path):
    with pytest.raises(kn.NonmemError, match=r"ETA_1 cannot be translated: koopnb's IIV is log-normal"):
        kn.from_nonmem(streams / "additive_eta.ctl")
    # inter-occasion variability written with occasion indicators (pharmpy's moxonidine example)
    with pytest.raises(kn.NonmemError, match=r"moxo\.mod: ETA_4 cannot be translated"):
        kn.from_nonmem(EXAMPLES / "moxo.mod")
    with pytest.raises(kn.NonmemError, match="there is no control stream at"):
        kn.from_nonmem(tmp_path / "missing.mod")


def test_unused_table_statements_are_listed_not_dropped_silently(streams):
    with pytest.warns(UserWarning, match="IRES is not translated: no prediction uses it"):
        text = kn.nonmem_text(streams / "advan2.ctl")
    assert "# not translated (no prediction uses them): IRES" in text
