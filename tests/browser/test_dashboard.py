"""The dosing dashboard in a real JupyterLab: %load_ext koopnb, a %%pkmodel cell, the panel renders and
moving the window changes the probability readout in the page; dragging the dose slider in Chromium updates
the readout (time from the input event to the readout's change measured in the page, written to
test-output/browser/dashboard_latency.md: a measurement, not a timed assert); "Apply optimum" puts the
rounded optimum into the slider."""

from __future__ import annotations

import re
import statistics

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from .lab_driver import SCREENSHOT_DIR, LabPage, LabServer

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
MOVES = 12
MOVE_PX = 12  # about 5 steps of 10 mg on the slider: every move changes the dose
WATCH_READOUT = """(index) => {
    // Time (performance.now(), ms) of the first input event of a move, and of each readout change with the
    // dose it shows: the readout's HTML is replaced when the kernel's new value arrives.
    const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index];
    const readout = [...cell.querySelectorAll('.widget-html-content')].find(e => e.innerText.includes('P(in'));
    const shown = () => {
        const match = readout.innerText.match(/dose ([0-9,.]+) mg;/);
        return match && match[1].replaceAll(',', '');
    };
    const watch = {input: null, inputs: 0, changes: [], dose: shown(), changed: null};
    document.addEventListener('pointermove', event => {
        if (event.buttons) { watch.inputs += 1; if (watch.input === null) watch.input = performance.now(); }
    }, true);
    new MutationObserver(() => {
        watch.changed = performance.now();
        watch.dose = shown();
        watch.changes.push([watch.changed, watch.dose]);
    }).observe(readout, {childList: true, subtree: true, characterData: true});
    window.__dashboard = watch;
}"""


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
    lab.page.wait_for_function(  # the figure is a drawn PNG, not an empty image
        """(index) => {
            const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index];
            const image = cell && cell.querySelector('.jp-OutputArea img');
            return image && image.complete && image.naturalWidth > 600;
        }""", arg=PANEL, timeout=30_000)
    before = readout(lab)
    image = outputs.locator("img").first.get_attribute("src")

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
    lab.page.wait_for_function(  # the figure (the window on the histogram) follows once the slider rests
        """([index, before]) => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index]
            .querySelector('.jp-OutputArea img').src !== before""", arg=[PANEL, image], timeout=30_000)
    lab.screenshot("dashboard")


def slider_dose(lab: LabPage) -> str:
    return lab.cell_outputs(PANEL).locator(".widget-slider").first.locator(".widget-readout").inner_text().strip()


def wait_for_readout_dose(lab: LabPage, dose: str) -> None:
    lab.page.wait_for_function("(dose) => window.__dashboard.dose === dose", arg=dose.replace(",", ""),
                               timeout=30_000)


def test_dragging_the_dose_slider_updates_the_readout(lab: LabPage, dashboard_notebook: str) -> None:
    lab.open_notebook(dashboard_notebook)
    lab.run_cells([0, 1, 2])
    outputs = lab.cell_outputs(PANEL)
    outputs.locator(".widget-html-content", has_text="P(in window)").first.wait_for(timeout=60_000)
    assert "dose 320 mg;" in outputs.inner_text() and slider_dose(lab) == "320"
    lab.page.evaluate(WATCH_READOUT, PANEL)
    handle = outputs.locator(".widget-slider").first.locator(".noUi-handle").first
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    lab.page.mouse.move(x, y)
    lab.page.mouse.down()

    # One move at a time: input event -> readout showing the slider's new dose, measured in the page.
    latencies, doses = [], []
    for _ in range(MOVES):
        lab.page.evaluate("() => { window.__dashboard.input = null; }")
        x += MOVE_PX
        lab.page.mouse.move(x, y)
        dose = slider_dose(lab)
        wait_for_readout_dose(lab, dose)
        latencies.append(lab.page.evaluate("() => window.__dashboard.changed - window.__dashboard.input"))
        doses.append(float(dose.replace(",", "")))
    assert doses == sorted(set(doses)), doses  # every move moved the dose
    assert all(d % 10 == 0 for d in doses)  # multiples of the default step (10 mg for 320 mg)

    # A fast drag without waiting: the readout follows to the last dose, with fewer readouts than inputs
    # (the front end keeps one change in flight and sends the latest).
    image = outputs.locator("img").first.get_attribute("src")
    lab.page.evaluate("() => { window.__dashboard.inputs = 0; window.__dashboard.changes = []; }")
    lab.page.mouse.move(x + 150, y, steps=40)
    lab.page.mouse.up()
    final = slider_dose(lab)
    wait_for_readout_dose(lab, final)
    inputs, readouts = lab.page.evaluate("() => [window.__dashboard.inputs, window.__dashboard.changes.length]")
    assert float(final.replace(",", "")) > doses[-1] and 1 <= readouts < inputs
    # the figure trails: redrawn once the slider rests
    lab.page.wait_for_function("([index, before]) => document.querySelectorAll("
                               "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[index]"
                               ".querySelector('img').src !== before", arg=[PANEL, image], timeout=30_000)
    lab.screenshot("dashboard_drag")

    median, p90 = statistics.median(latencies), statistics.quantiles(latencies, n=10)[-1]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    (SCREENSHOT_DIR / "dashboard_latency.md").write_text(
        "| dose slider in Chromium | moves | median (ms) | p90 (ms) | fast drag: inputs -> readouts |\n"
        "|---|---|---|---|---|\n"
        f"| input event -> readout change | {len(latencies)} | {median:.0f} | {p90:.0f} | {inputs} -> {readouts} |\n")
    print(f"dose slider: input -> readout median {median:.0f} ms, p90 {p90:.0f} ms over {len(latencies)} moves; "
          f"fast drag {inputs} inputs -> {readouts} readouts")


def test_apply_optimum_puts_the_rounded_dose_into_the_slider(lab: LabPage, dashboard_notebook: str) -> None:
    lab.open_notebook(dashboard_notebook)
    lab.run_cells([0, 1, 2])
    outputs = lab.cell_outputs(PANEL)
    outputs.locator(".widget-html-content", has_text="P(in window)").first.wait_for(timeout=60_000)
    lab.page.evaluate(WATCH_READOUT, PANEL)
    outputs.locator("button", has_text="Optimise dose").click()
    optimum = outputs.locator(".widget-html-content", has_text="Optimal dose:").first
    optimum.wait_for(timeout=60_000)
    dose = re.search(r"Optimal dose: ([0-9,]+) mg", optimum.inner_text()).group(1)
    assert int(dose.replace(",", "")) % 10 == 0
    outputs.locator("button", has_text="Apply optimum").click()
    wait_for_readout_dose(lab, dose)
    assert slider_dose(lab) == dose.replace(",", "")
