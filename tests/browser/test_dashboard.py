"""The dosing dashboard in a real JupyterLab: %load_ext koopnb, a %%pkmodel cell, the panel renders and
moving the window changes the probability readout in the page."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from .lab_driver import LabPage, LabServer

MODEL_CELL = """%%pkmodel theo
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot"""
PANEL_CELL = """import koopnb as kn
panel = kn.dashboard(theo, theo.prior(), "320 mg po q24h x3", "auc(0, 24)", window=(80, 120))
panel"""
MOVE_CELL = "panel.window.value = (60.0, 140.0)"
PANEL = 2
READOUT = re.compile(r"P\(in window\) = ([0-9.]+) ± ([0-9.e-]+)")


@pytest.fixture
def dashboard_notebook(lab_server: LabServer, request: pytest.FixtureRequest) -> str:
    notebook = new_notebook(
        cells=[new_code_cell("%load_ext koopnb"), new_code_cell(MODEL_CELL), new_code_cell(PANEL_CELL),
               new_code_cell(MOVE_CELL)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                  "language_info": {"name": "python"}},
    )
    name = f"{request.node.name}.ipynb"
    nbformat.write(notebook, lab_server.root_dir / name)
    return name


def readout(lab: LabPage) -> float:
    text = lab.cell_outputs(PANEL).locator(".widget-html-content", has_text="P(in window)").first.inner_text()
    match = READOUT.search(text)
    assert match, text
    return float(match.group(1))


def test_dashboard_renders_and_follows_the_window(lab: LabPage, dashboard_notebook: str) -> None:
    lab.open_notebook(dashboard_notebook)
    lab.run_cells([0, 1, 2])
    outputs = lab.cell_outputs(PANEL)
    outputs.locator(".widget-html-content", has_text="P(in window)").first.wait_for(timeout=60_000)
    assert outputs.locator(".widget-slider").count() >= 1
    assert outputs.locator("button", has_text="Optimise dose").count() == 1
    assert outputs.locator("img").count() >= 1
    before = readout(lab)

    lab.run_cells([3])
    lab.page.wait_for_function(
        """([index, before]) => {
            const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index];
            const match = cell && cell.innerText.match(/P\\(in window\\) = ([0-9.]+)/);
            return match && Number(match[1]) !== before;
        }""",
        arg=[PANEL, before],
        timeout=60_000,
    )
    after = readout(lab)
    assert after > before + 0.05  # the wider window (60..140) holds more patients than 80..120
    assert "in 60..140" in outputs.inner_text()
    lab.screenshot("dashboard")
