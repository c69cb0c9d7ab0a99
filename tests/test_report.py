"""The dosing report: the numbers it prints are the engine's, it never recommends a worse regimen, and its
PDF renders as one page with the text present (pdftoppm / pdftotext from Debian's poppler-utils)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import koopnb as kn
from koopnb.__main__ import THEOPHYLLINE


def _ensure_poppler() -> None:
    if shutil.which("pdftoppm") and shutil.which("pdftotext"):
        return
    if os.geteuid() != 0:
        pytest.skip("poppler-utils is missing and only root can install it: apt-get install -y poppler-utils")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "poppler-utils"], check=True, env=env, capture_output=True)


@pytest.fixture(scope="module")
def patient():
    model = kn.parse_model(THEOPHYLLINE, name="theophylline")
    regimen = kn.Regimen.parse("320 mg po")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kn.ConvergenceWarning)
        posterior = kn.fit_individual(model, ([1.0, 6.0], [6.8, 7.4]), regimen=regimen, seed=1, progress=False)
    return model, regimen, posterior


WINDOW = kn.Window(kn.AUC(0, 24), 80, 120)


@pytest.fixture(scope="module")
def dosing(patient):
    _, regimen, posterior = patient
    return kn.report(posterior, regimen, WINDOW, bounds=(50, 1000), step=25, citation="Boeckmann, Sheiner and "
                     "Beal (1994), NONMEM Users Guide Part V", concentration_unit="mg/L")


def test_report_numbers_are_the_engines_within_their_error_estimates(patient, dosing):
    model, regimen, posterior = patient
    distribution = posterior.to_distribution()
    # An independent check: plain Monte Carlo on 4e5 draws of the same posterior distribution.
    draws = distribution.sample(400_000, seed=7)
    auc = kn.AUC(0, 24).evaluate(model, draws, regimen)
    monte_carlo = np.mean((auc >= 80) & (auc < 120))
    assert abs(dosing.current.probability - monte_carlo) < 4 * np.sqrt(monte_carlo * (1 - monte_carlo) / 4e5) + 1e-4
    assert dosing.current.error < 1e-3 and dosing.current.converged
    assert dosing.recommended is not None
    assert dosing.recommended.regimen.doses[0].amount % 25 == 0
    assert dosing.recommended.probability >= dosing.current.probability
    again = kn.probability(WINDOW, model, dosing.recommended.regimen, distribution, rtol=1e-6, atol=1e-7)
    assert abs(again.value - dosing.recommended.probability) <= dosing.recommended.error + again.error + 1e-6
    assert "multiples of 25 mg between 50 and 1000 mg" in dosing.search


def test_a_worse_proposal_is_not_recommended_and_the_page_says_so(patient):
    _, regimen, posterior = patient
    page = kn.report(posterior, regimen, WINDOW, recommended=kn.Regimen.parse("50 mg po"))
    assert page.recommended is None
    assert page.note.startswith("Keep the current regimen")
    # without concentration_unit= the units come from the model (mg, L, h) and the regimen (mg)
    assert page.concentration_unit == "mg/L" and page.target == "auc(0, 24) in 80..120 mg·h/L"
    axes = page.plot().axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("Time (h)", "Concentration (mg/L)")


def test_html_has_everything_a_chart_needs(dosing):
    text = dosing.html
    for needed in ("Dosing report", "current regimen", "recommended regimen", "± ", "Measured levels", "6.8",
                   "Doses given", "320 mg", "Boeckmann", "koopnb 0.1.0", "created", "<svg", "mg/L"):
        assert needed in text, needed


def test_pdf_is_one_page_with_its_text_and_a_picture(dosing, tmp_path):
    _ensure_poppler()
    path = dosing.save(tmp_path / "report.pdf")
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M), info
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    for needed in ("Dosing report", "current regimen", "recommended regimen", "Measured levels", "koopnb"):
        assert needed in text, needed
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-singlefile", str(path), str(tmp_path / "page")], check=True)
    png = (tmp_path / "page.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not list(tmp_path.glob(".report.pdf.*"))


def test_save_refuses_a_missing_folder_and_an_unknown_suffix(dosing, tmp_path):
    with pytest.raises(kn.KoopnbError, match="does not exist"):
        dosing.save(tmp_path / "missing" / "report.pdf")
    with pytest.raises(kn.KoopnbError, match=r"as \.html or \.pdf"):
        dosing.save(tmp_path / "report.docx")
