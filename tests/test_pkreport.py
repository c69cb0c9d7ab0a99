"""%pkreport: the dosing report from a notebook, and its mistakes as one line."""

from __future__ import annotations

import warnings

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import koopnb as kn
from koopnb.__main__ import THEOPHYLLINE


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "koopnb.jupyter")
    model = kn.parse_model(THEOPHYLLINE, name="theophylline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kn.ConvergenceWarning)
        ip.user_ns["patient"] = kn.fit_individual(model, ([1.0, 6.0], [6.8, 7.4]),
                                                  regimen=kn.Regimen.parse("320 mg po"), seed=1, progress=False)
    return ip


def run(shell, source):
    with capture_output() as captured:
        result = shell.run_cell(source)
    return result, captured


def test_pkreport_shows_the_report_and_saves_the_pdf(shell, tmp_path):
    path = tmp_path / "report.pdf"
    result, captured = run(shell, f'%pkreport patient --regimen "320 mg po" --window "auc(0, 24) in 80..120" '
                                  f'--bounds 50..1000 --step 25 --unit mg/L --save {path} -o page')
    assert result.success, captured.stderr
    page = shell.user_ns["page"]
    assert page.recommended.regimen.doses[0].amount % 25 == 0
    assert page.recommended.probability >= page.current.probability
    assert path.read_bytes().startswith(b"%PDF")
    html = "".join(output.data.get("text/html", "") for output in captured.outputs)
    assert "Dosing report" in html and "recommended regimen" in html


@pytest.mark.parametrize("line, message", [
    ('%pkreport nobody --regimen "320 mg po" --window "auc(0, 24) in 80..120"', "there is no variable 'nobody'"),
    ('%pkreport patient --regimen "320 mg po" --window "auc(0, 24) in 120..80"', "window"),
    ('%pkreport patient --regimen "320 mg po" --window "auc(0, 24) in 80..120" --save /nowhere/r.pdf',
     "does not exist"),
])
def test_pkreport_mistakes_are_one_line(shell, line, message):
    result, captured = run(shell, line)
    assert not result.success
    assert "Traceback" not in captured.stdout + captured.stderr
    assert message in captured.stderr
    assert len(captured.stderr.strip().splitlines()) == 1
