"""Units end to end: unit texts read and normalised, a model's units checked, results carrying their unit."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

import koopnb as kn
from koopnb import models
from koopnb.cards import model_bundle
from koopnb.errors import ModelError, RegimenError
from koopnb.units import format_unit, metric_unit, name_unit, output_label, parse_unit

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

ORAL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/hr] ~ 27%
Q  = 1.0  [L/h]
V  = 31.5 [L]   ~ 0.15
V2 = 20   [L]
d/dt(depot)      = -ka*depot
d/dt(central)    =  ka*depot - CL/V*central - Q/V*central + Q/V2*peripheral
d/dt(peripheral) =  Q/V*central - Q/V2*peripheral
conc = central / V
conc ~ additive(0.7)
dose depot
"""


def test_l_per_hr_beside_l_per_h_is_the_same_unit_and_both_read_l_per_h():
    model = kn.parse_model(ORAL)
    assert model.units == {"ka": "1/h", "CL": "L/h", "Q": "L/h", "V": "L", "V2": "L"}
    assert model.spec.parameters[1].unit == "L/hr"  # the text as written stays on the parameter


@pytest.mark.parametrize(("written", "normalised"), [
    ("1/h", "1/h"), ("h-1", "1/h"), ("/h", "1/h"), ("h^-1", "1/h"), ("1/hr", "1/h"), ("hour⁻¹", "1/h"),
    ("L/h", "L/h"), ("L/hr", "L/h"), ("mL/min", "mL/min"), ("mg", "mg"), ("ug", "µg"), ("µg", "µg"),
    ("μg", "µg"), ("mcg", "µg"), ("kg", "kg"), ("%", "%"), ("umol/L", "µmol/L"), ("L/h/kg", "L/h/kg"),
    ("mg*h/L", "mg·h/L"), ("mg·h/L", "mg·h/L"), ("m2", "m^2"), ("kg^0.5", "kg^0.5"), ("L/kg^0.5", "L/kg^0.5"),
])
def test_spellings_of_published_models_are_read(written, normalised):
    assert format_unit(parse_unit(written)) == normalised


def test_a_unit_per_1_73_square_metres_keeps_its_factor():
    """mL/min/1.73m2 is mL/min per 1.73 m² (the factor 1/1.73 is part of the unit, never dropped)."""
    egfr = parse_unit("mL/min/1.73m2")
    assert float((egfr / parse_unit("mL/min/m^2")).to_base_units().magnitude) == pytest.approx(1 / 1.73, rel=1e-12)


def test_a_clearance_in_ml_per_min_beside_a_volume_in_litres_names_both_units_and_the_line():
    text = "CL = 50 [mL/min]\nV = 31.5 [L]\nd/dt(central) = -CL/V*central\nconc = central / V\n"
    with pytest.raises(ModelError) as caught:
        kn.parse_model(text)
    message = str(caught.value)
    assert message.startswith("line 3, column 17: 'CL' is in mL/min but 'V' is in L and time is in h")
    assert "write CL in L/h" in message and "never converts" in message


def test_a_rate_constant_per_minute_in_an_hours_model_is_an_error():
    text = ORAL.replace("ka = 1.5  [1/h]", "ka = 0.025 [1/min]")
    with pytest.raises(ModelError, match=r"^line 7, column 20: 'ka' is in 1/min and time is in h, .*write ka in 1/h"):
        kn.parse_model(text)


def test_a_unit_pint_cannot_read_is_an_error_at_its_line_and_column():
    with pytest.raises(ModelError, match=r"^line 2, column 13: unknown unit 'L/hx' of 'CL': pint does not know 'hx'"):
        kn.parse_model("V = 31.5 [L]\nCL = 2.8   [L/hx]\nd/dt(c) = -CL/V*c\n")
    with pytest.raises(ModelError, match=r"^line 1, column 9: unknown unit 'L\^9\^9\^9' of 'CL': a power"):
        kn.parse_model("CL = 2 [L^9^9^9]\nd/dt(c) = -CL*c\n")  # a power tower is refused before pint sees it
    with pytest.raises(ModelError, match=r"^line 1, column 18: unknown unit 'mg\$' of 'D': '\$' is not part"):
        kn.parse_model("covariate D = 1 [mg$]\nd/dt(c) = -D*c\n")
    with pytest.raises(ModelError, match=r"^line 1, column 9: unknown unit 'mg//L' of 'K': pint cannot read it"):
        kn.parse_model("K = 4 [ mg//L ]\nd/dt(c) = -c/K\n")


def test_terms_of_a_sum_in_different_units_are_an_error_and_dimensions_are_checked():
    with pytest.raises(ModelError, match=r"^line 4, column 11: the terms of a sum must be in the same unit, but "
                                         r"Km is in mg/L and K2 is in µg/L"):
        kn.parse_model("Km = 4 [mg/L]\nV = 2 [L]\nK2 = 3 [ug/L]\nd/dt(c) = -c/(Km + c/V + K2)\n")
    with pytest.raises(ModelError, match=r"^line 3, column 17: \(-CL\)\*central/V is in amount, but d/dt\(central\) "
                                         r"must be in amount/h"):
        kn.parse_model("CL = 2 [L]\nV = 31.5 [L]\nd/dt(central) = -CL/V*central\n")
    with pytest.raises(ModelError, match=r"WT is in kg, so it can only be raised to a number, not to GEXP"):
        kn.parse_model("covariate WT = 70 [kg]\nGEXP = 0.7\nCL = 2 [L/h]\nV = 3 [L]\nd/dt(c) = -CL*WT^GEXP/V*c\n")
    with pytest.raises(ModelError, match=r"^line 4, column 16: 'LAG' is in min .*the dose's lag needs: write LAG in h"):
        kn.parse_model("ka = 1 [1/h]\nLAG = 20 [min]\nd/dt(depot) = -ka*depot\ndose depot lag=LAG\n")


def test_covariate_effects_with_reference_values_are_dimensionless():
    """(CRCL/120)^0.8, TVV*WT/70, 1 + 0.0533*(PNA - 4.5) and 0.7^DIAL leave CL in L/h and V in L."""
    model = kn.parse_model("""
covariate CRCL = 120 [mL/min]
covariate WT   = 70 [kg]
covariate PNA  = 4.5 [days]
covariate DIAL = 0
TVCL = 4.5 [L/h] ~ 0.3
TVV  = 58 [L] ~ 0.3
CL = TVCL * (CRCL/120)^0.8 * (1 + 0.0533*(PNA - 4.5)) * 0.7^DIAL
V  = TVV * WT/70
d/dt(central) = -CL/V*central
conc = central / V
dose central
""")
    assert name_unit(model, "CL") == "L/h" and name_unit(model, "V") == "L"
    assert name_unit(model, "conc", "mg") == "mg/L" and name_unit(model, "conc") is None  # amount unknown


def test_names_without_units_are_not_checked_and_a_model_without_units_passes():
    model = kn.parse_model("k = 0.1\nV = 3\nd/dt(c) = -k*c\nconc = c/V\n")
    assert model.units == {} and name_unit(model, "conc", "mg") is None
    # CL has no unit: the term it enters is not checked, the one with ka is
    kn.parse_model("ka = 1 [1/h]\nCL = 50\nV = 31.5 [L]\nd/dt(d) = -ka*d\nd/dt(c) = ka*d - CL/V*c\n")


def test_a_michaelis_constant_fixes_the_amount_unit_and_a_regimen_in_another_unit_is_refused():
    model = kn.parse_model("""
Vmax = 20 [mg/h] ~ 0.3
Km   = 4  [mg/L] ~ 0.5
V    = 49 [L]    ~ 0.2
d/dt(central) = -Vmax*(central/V)/(Km + central/V)
conc = central / V
dose central
""")
    assert model.spec.amount_unit == "mg"
    assert name_unit(model, "conc") == "mg/L" and name_unit(model, "conc", "mg") == "mg/L"
    with pytest.raises(RegimenError, match="the doses are in g but the model's units put its amounts in mg"):
        name_unit(model, "conc", "g")


def test_results_carry_their_units_for_a_mg_l_h_model():
    model = kn.parse_model(ORAL)
    regimen = kn.Regimen.parse("320 mg po")
    prior = model.prior()

    def unit(quantity):
        return kn.expectation(quantity, model, regimen, prior, rtol=1e-2, atol=1e-2).unit

    assert unit(kn.AUC(0, 24)) == "mg·h/L"
    assert unit(kn.Cmax(0, 24)) == "mg/L" and unit(kn.Cmin(0, 24)) == "mg/L" and unit(kn.Conc(2)) == "mg/L"
    assert unit(kn.TimeAbove(2, 0, 24)) == "h"
    assert unit(kn.Window(kn.AUC(0, 24), 50, 150)) is None  # a probability
    assert unit([kn.AUC(0, 24), kn.Conc(2)]) == ("mg·h/L", "mg/L")
    assert kn.expectation(kn.AUC(0, 24), model, kn.Regimen([kn.Dose(320.0)]), prior, rtol=1e-2).unit is None
    result = kn.optimize_dose(model, regimen, prior, kn.Window(kn.AUC(0, 24), 80, 120), (50, 1000), 25)
    assert (result.unit, result.dose_unit) == ("mg·h/L", "mg")
    assert metric_unit(model, kn.AUC(0, 24, "peripheral"), "mg") == "mg·h"  # a state: the amount itself
    assert output_label(model, "conc", "mg") == "Concentration (mg/L)"
    assert model.unit_of("conc", "mg") == "mg/L" and model.unit_of("CL") == "L/h" and model.unit_of("t") == "h"
    text = str(kn.expectation(kn.AUC(0, 24), model, regimen, prior, rtol=1e-3))
    assert re.match(r"E\[auc\(0, 24\)\] = [0-9.]+ ± [0-9.e-]+ mg·h/L \(koopman", text), text


def test_every_library_model_passes_and_its_concentration_has_the_documented_unit():
    """The header's 'units' line says mg/L (tacrolimus: ng/mL, which is µg/L)."""
    for name in models.names():
        model = models.load(name)
        expected = "µg/L" if name == "tacrolimus_andrews2017" else "mg/L"
        assert name_unit(model, "conc", "mg") == expected, name
        assert "dose mg, time h" in models.info(name)["units"]
        clearance = "TVCL" if "TVCL" in model.units else next(iter(p for p in model.parameters if "CL" in p))
        assert name_unit(model, clearance) is not None


def _notebook_models() -> list[tuple[str, str]]:
    """Every %%pkmodel cell and parse_model text of the tutorials; placeholders of f-strings filled with 0.5."""
    found = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            if source.startswith("%%pkmodel"):
                found.append((path.name, source.split("\n", 1)[1]))
            found += [(path.name, re.sub(r"\{[^{}]*\}", "0.5", text))
                      for text in re.findall(r'parse_model\(\s*[rf]?"""(.*?)"""', source, re.S)]
    return found


def test_the_notebooks_models_pass():
    texts = _notebook_models()
    assert len(texts) >= 6
    for notebook, text in texts:
        model = kn.parse_model(text)
        assert name_unit(model, model.default_output, "mg") == "mg/L", notebook


def test_a_covariate_model_is_shown_as_written():
    model = models.load("vancomycin_goti2018")
    latex = model._repr_latex_()
    assert r"\mathrm{TVCL} \cdot \left(\frac{\mathrm{CRCL}}{120}\right)^{0.8} \cdot {0.7}^{\mathrm{DIAL}}" in latex
    assert "0.0217" not in latex
    bundle = model_bundle(model)
    assert "CL = TVCL * (CRCL/120)^0.8 * 0.7^DIAL" in bundle["text/plain"]
    assert "CRCL = 120 mL/min" in bundle["text/html"]
    assert r"\left(\frac{\mathrm{CRCL}}{120}\right)" in bundle["text/html"]


def test_a_pickled_model_keeps_its_equations_as_written_and_its_units():
    """dask ships models by pickling; sympy would evaluate (CRCL/120)^0.8 on the way back."""
    model = models.load("vancomycin_goti2018")
    copy = pickle.loads(pickle.dumps(model))
    assert copy._repr_latex_() == model._repr_latex_()
    assert str(copy.spec.written["CL"].expr) == "0.7**DIAL*TVCL*(CRCL/120)**0.8"
    assert name_unit(copy, "conc", "mg") == "mg/L"
