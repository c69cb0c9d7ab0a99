"""The published-model library: every model parses, carries its source, and reproduces a number its source prints.

Each check recomputes a printed number from the model as koopnb holds it (typical parameters evaluated through the
model's own equations, or concentrations simulated from them), so a transcription slip in the .pk file fails here.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import koopnb as kn
from koopnb import models


def test_the_library_lists_at_least_six_models_each_with_its_source():
    table = models.list()
    assert len(table) >= 6
    assert table["name"].is_unique
    for name in table["name"]:
        header = models.info(name)
        assert set(header) == set(models.FIELDS), name
        assert re.fullmatch(r"10\.\d{4,5}/\S+", header["doi"]), name
        assert re.search(r"(19|20)\d\d", header["citation"]), name
        model = models.load(name)
        assert model.name == name
        covariates = {c.split()[0] for c in header["covariates"].split("; ")}
        assert covariates == set(model.covariates), name


def test_unknown_names_are_one_sentence():
    with pytest.raises(kn.KoopnbError, match="did you mean 'vancomycin_goti2018', 'vancomycin_grimsley1999'"):
        models.load("vancomycin_smith2020")



def _clearance(model, covariates: dict) -> tuple[float, float]:
    """Typical CL and V recovered from a simulation: after an IV bolus into a one-compartment model,
    C(t) = D/V·exp(−CL/V·t), so two concentrations give both."""
    regimen = kn.Regimen([kn.Dose(100.0, 0.0, "central")])
    c = model.simulate({}, regimen, np.array([1.0, 2.0]), covariates)["conc"][0]
    k = math.log(c[0] / c[1])
    v = 100.0 / (c[0] * math.exp(k))
    return k * v, v


def test_busulfan_choe2012_reproduces_table_2_typical_values():
    """Choe 2012 Table 2: a 65 kg patient has CL 7.6 L/h and V 32.2 L (men) or 29.1 L (women)."""
    model = models.load("busulfan_choe2012")
    cl, v_men = _clearance(model, {"WT": 65.0, "MALE": 1.0})
    _, v_women = _clearance(model, {"WT": 65.0, "MALE": 0.0})
    assert round(cl, 1) == 7.6 and round(v_men, 1) == 32.2 and round(v_women, 1) == 29.1


def test_vancomycin_grimsley1999_reproduces_the_abstracts_clearance_and_volume():
    """Grimsley & Thomson 1999: CL (L/h/kg) = 3.56 / creatinine (umol/L); V = 0.67 L/kg."""
    model = models.load("vancomycin_grimsley1999")
    cl, v = _clearance(model, {"WT": 2.0, "CREAT": 89.0})
    assert cl / 2.0 == pytest.approx(3.56 / 89.0, rel=1e-9) and v / 2.0 == pytest.approx(0.67, rel=1e-9)


def test_vancomycin_goti2018_reproduces_table_2_and_the_dialysis_factors():
    """Goti 2018 Table 2: CL 4.5 L/h at CrCL 120 mL/min and Vc 58.4 L at 70 kg; haemodialysis × 0.7 on CL and
    × 0.5 on Vc; Vp 38.4 L, Q 6.5 L/h.  Checked on the exact two-compartment solution: the initial concentration
    after a bolus is D/Vc and the area under the curve is D/CL."""
    model = models.load("vancomycin_goti2018")
    for dial, cl, vc in ((0.0, 4.5, 58.4), (1.0, 4.5 * 0.7, 58.4 * 0.5)):
        covariates = {"CRCL": 120.0, "WT": 70.0, "DIAL": dial}
        regimen = kn.Regimen([kn.Dose(1000.0, 0.0)])
        start = model.simulate({}, regimen, np.array([1e-9]), covariates)["conc"][0, 0]
        area = kn.AUC(0, 5000).evaluate(model, {}, regimen, covariates)[0]
        assert 1000.0 / start == pytest.approx(vc, rel=1e-6) and 1000.0 / area == pytest.approx(cl, rel=1e-6)
    assert model.typical["TVVp"] == 38.4 and model.typical["Q"] == 6.5
    assert np.sqrt(np.exp(np.diag(model.omega)) - 1) == pytest.approx([0.398, 0.816, 0.571, 0.0], abs=1e-9)


def test_gentamicin_germovsek2016_reproduces_the_final_estimates():
    """DDMODEL00000238 final run: CL 6.21 L/h for a mature 70 kg patient (maturation → 1, postnatal factor → 1,
    creatinine at its typical value for the age), V1 26.5 L; OMEGA(2,1) 0.116 from the correlation."""
    model = models.load("gentamicin_germovsek2016")
    pma = 1e4  # weeks: fully mature
    covariates = {"WT": 70.0, "PMA": pma, "PNA": 1e9, "CREAT": 166.48 - 2.8488 * pma}
    # the typical creatinine is negative at such an age; the model's power of a ratio of two negatives is 1
    regimen = kn.Regimen([kn.Dose(100.0, 0.0)])
    start = model.simulate({}, regimen, np.array([1e-9]), covariates)["conc"][0, 0]
    area = kn.AUC(0, 1e5).evaluate(model, {}, regimen, covariates)[0]
    assert 100.0 / start == pytest.approx(26.5, rel=1e-6)
    assert 100.0 / area == pytest.approx(6.21 * (1e4**3.33 / (1e4**3.33 + 55.4**3.33)), rel=1e-6)
    assert model.omega[0, 1] == pytest.approx(0.116, rel=1e-3)


def test_phenobarbital_voller2017_reproduces_the_reference_patient():
    """DDMODEL00000256: CL 0.00909 L/h and V 2.38 L for a newborn of 4.50 days, birth weight 2.59 kg, 2.70 kg;
    an oral dose reaches the body with F = 0.594."""
    model = models.load("phenobarbital_voller2017")
    covariates = {"PNA": 4.5, "BWT": 2.59, "WT": 2.70}
    cl, v = _clearance(model, covariates)
    assert cl == pytest.approx(0.00909, rel=1e-9) and v == pytest.approx(2.38, rel=1e-9)
    oral = kn.AUC(0, 2e4).evaluate(model, {}, kn.Regimen([kn.Dose(10.0, 0.0)]), covariates)[0]
    assert oral == pytest.approx(0.594 * 10.0 / 0.00909, rel=1e-5)


def test_tacrolimus_andrews2017_reproduces_table_2():
    """Andrews 2017 Table 2: CL/F 50.5 L/h × 1.04 (CYP3A5 *3/*3) for a 70 kg deceased-donor recipient at eGFR
    69 and haematocrit ≥ 0.3; × 1.98 instead for an expresser; × 0.74 for a living donor; × (HCT/0.3)^-0.44 below
    0.3 L/L.  The AUC of an oral dose is F·D/CL, here D/(CL/F), in ng·h/mL (× 1000)."""
    model = models.load("tacrolimus_andrews2017")
    base = {"WT": 70.0, "EGFR": 69.0, "HCT": 0.35, "CYP3A5": 0.0, "DECEASED": 1.0}
    cases = ((base, 50.5 * 1.04), ({**base, "CYP3A5": 1.0}, 50.5 * 1.98), ({**base, "DECEASED": 0.0}, 50.5 * 1.04
             * 0.74), ({**base, "HCT": 0.2}, 50.5 * 1.04 * (0.2 / 0.3) ** -0.44))
    for covariates, clearance in cases:
        area = kn.AUC(0, 3e4).evaluate(model, {}, kn.Regimen([kn.Dose(5.0, 0.0)]), covariates)[0]
        assert area == pytest.approx(1000 * 5.0 / clearance, rel=1e-5)
