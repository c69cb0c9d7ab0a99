"""The koopnb JupyterLab extension in a real lab: %%pkmodel highlighting and result cards."""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from koopnb.cards import percent

from .lab_driver import LabPage, LabServer

PLAIN_CELL = 0
PROBABILITY_CELL = 1
DOSING_CELL = 2
PKMODEL_CELL = 3

PKMODEL_SOURCE = """%%pkmodel theoph
# theophylline: one compartment, first-order absorption
ka = 1.5  [1/h] ~ 0.6        # typical value, unit, log-normal IIV
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
covariate WT = 70 [kg]
tlag = 0.25 [h] fixed
CLi = CL * (WT/70)^0.75
d/dt(depot)   = -ka*depot
central' =  ka*depot - CLi/V*central
conc = central / V
cpos = where(conc > 0, sqrt(abs(conc)), exp(log(1)))
conc ~ combined(0.7, 0.1)
dose depot bioavailability=0.9 lag=tlag"""

PROBABILITY_RESULT = {
    "kind": "probability",
    "title": "P(auc(0,24) in 400..600)",
    "value": 0.7312,
    "error": 0.0004,
    "n_evals": 1234,
    "method": "koopman (gauss-hermite)",
    "converged": True,
    "elapsed": 0.012,
    "metric": "auc(0,24)",
    "window": [400, 600],
    "probability": 0.7312,
    # As koopnb.cards writes them (checked below against koopnb.cards.percent): one formatter for both cards.
    "value_label": "Probability in window",
    "value_text": "73.1 %",
    "error_text": "± 0.04 %",
}

DOSE_RESULT = {
    "kind": "dose",
    "title": "Optimal dose for auc(0,24) in 400..",
    "value": 0.9021,
    "error": 0.0013,
    "n_evals": 5678,
    "method": "koopman (gauss-hermite)",
    "converged": True,
    "elapsed": 1.5,
    "metric": "auc(0,24)",
    "window": [400, None],
    "probability": 0.9021,
    "dose": 640.0,
    "unit": "mg",
    "regimen": "640 mg po q24h x3",
}

REGIMEN_RESULT = {
    "kind": "regimen",
    "title": "Best regimen for cmin(0,72) in 5..15",
    "value": 0.81,
    "error": 0.002,
    "n_evals": 20000,
    "method": "monte carlo",
    "converged": False,
    "elapsed": 3.2,
    "regimen": "320 mg po q12h x6",
    "rows": [
        {"regimen": "320 mg po q12h x6", "probability": 0.81, "error": 0.002},
        {"regimen": "640 mg po q24h x3", "probability": 0.74, "error": 0.002},
        {"regimen": "160 mg po q6h x12", "probability": 0.69, "error": 0.003},
    ],
    # Payload text must be shown as text, never parsed as HTML.
    "warnings": ["tolerance 1e-4 not reached after 20000 evaluations", "<b>not bold</b>"],
}

# Only the required key and a few optional ones: the card shows what it has and no more.
EXPECTATION_RESULT = {"kind": "expectation", "value": 1.2346e-5, "error": 3e-8, "n_evals": 81}


def display_source(*results: dict) -> str:
    """A cell that displays each result the way koopnb's Python side does (raw MIME bundle)."""
    lines = ["from IPython.display import display"]
    for result in results:
        bundle = {"application/vnd.koopnb.result+json": result, "text/plain": f"koopnb {result['kind']} result"}
        lines.append(f"display({bundle!r}, raw=True)")
    return "\n".join(lines)


@pytest.fixture
def demo_notebook(lab_server: LabServer, request: pytest.FixtureRequest) -> str:
    """A fresh notebook (own file, so its own kernel) in the server's root; returns its lab path."""
    notebook = new_notebook(
        cells=[
            new_code_cell('answer = 6 * 7\nprint("plain python", answer)  # dose additive exp [L/h]'),
            new_code_cell(display_source(PROBABILITY_RESULT)),
            new_code_cell(display_source(DOSE_RESULT, REGIMEN_RESULT, EXPECTATION_RESULT)),
            new_code_cell(PKMODEL_SOURCE),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    name = f"{request.node.name}.ipynb"
    nbformat.write(notebook, lab_server.root_dir / name)
    return name


def marked_texts(lab: LabPage, cell: int, kind: str) -> list[str]:
    """Texts marked ``cm-koopnb-KIND`` in a cell, one per token.

    CodeMirror may split one mark into several elements (around the cursor's bracket match, say),
    so consecutive pieces of text with the same mark are joined back into one token.
    """
    return lab.cell_editor(cell).evaluate(
        """(editor, kind) => {
            const tokens = [];
            for (const line of editor.querySelectorAll('.cm-line')) {
                let run = null;
                const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
                for (let text = walker.nextNode(); text; text = walker.nextNode()) {
                    const marked = text.parentElement.closest(`.cm-koopnb-${kind}`);
                    if (marked && line.contains(marked)) {
                        run = (run ?? '') + text.data;
                    } else if (run !== null) {
                        tokens.push(run);
                        run = null;
                    }
                }
                if (run !== null) tokens.push(run);
            }
            return tokens;
        }""",
        kind,
    )


def koopnb_classes(lab: LabPage, cell: int) -> list[str]:
    """All cm-koopnb-* classes used inside a cell's editor."""
    return lab.cell_editor(cell).evaluate(
        """(editor) => [...editor.querySelectorAll('[class*="cm-koopnb-"]')]
            .flatMap(node => [...node.classList].filter(name => name.startsWith('cm-koopnb-')))"""
    )


def test_extension_is_installed_and_enabled(lab_env: dict[str, str]) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env=lab_env,
        capture_output=True,
        text=True,
        check=True,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)  # drop colour codes
    assert re.search(r"koopnb v\S+ enabled\s+OK", output), output


def test_pkmodel_cell_is_highlighted_on_first_render(lab: LabPage, demo_notebook: str) -> None:
    lab.open_notebook(demo_notebook)
    lab.cell_editor(PKMODEL_CELL).locator(".cm-koopnb-magic").wait_for()

    assert marked_texts(lab, PKMODEL_CELL, "magic") == ["%%pkmodel"]
    comments = marked_texts(lab, PKMODEL_CELL, "comment")
    assert comments[0] == "# theophylline: one compartment, first-order absorption"
    assert "# typical value, unit, log-normal IIV" in comments
    assert marked_texts(lab, PKMODEL_CELL, "unit") == ["[1/h]", "[L/h]", "[L]", "[kg]", "[h]"]
    numbers = marked_texts(lab, PKMODEL_CELL, "number")
    for number in ["1.5", "0.6", "27%", "31.5", "0.75", "0.7", "0.1", "0.9"]:
        assert number in numbers
    assert marked_texts(lab, PKMODEL_CELL, "derivative") == ["d/dt(depot)", "central'"]
    assert marked_texts(lab, PKMODEL_CELL, "keyword") == ["covariate", "fixed", "dose", "bioavailability", "lag"]
    assert marked_texts(lab, PKMODEL_CELL, "errormodel") == ["combined"]
    assert marked_texts(lab, PKMODEL_CELL, "function") == ["where", "sqrt", "abs", "exp", "log"]
    assert marked_texts(lab, PKMODEL_CELL, "operator").count("~") == 4
    assert koopnb_classes(lab, PLAIN_CELL) == []
    assert koopnb_classes(lab, PROBABILITY_CELL) == []

    # Each mark is one element per token, coloured by the theme everywhere inside it, so the Python
    # highlighter's spans nested within do not show through.
    for kind, variable in [("keyword", "keyword"), ("unit", "string"), ("comment", "comment")]:
        colours, expected = lab.cell_editor(PKMODEL_CELL).evaluate(
            """(editor, [kind, variable]) => {
                const probe = document.createElement('span');
                probe.style.color = `var(--jp-mirror-editor-${variable}-color)`;
                editor.appendChild(probe);
                const expected = getComputedStyle(probe).color;
                probe.remove();
                const nodes = [...editor.querySelectorAll(`.cm-koopnb-${kind}, .cm-koopnb-${kind} *`)];
                return [[...new Set(nodes.map(node => getComputedStyle(node).color))], expected];
            }""",
            [kind, variable],
        )
        assert colours == [expected], kind
    lab.screenshot("pkmodel-highlighting")


def test_highlighting_follows_edits(lab: LabPage, demo_notebook: str) -> None:
    lab.open_notebook(demo_notebook)
    lab.cell_editor(PKMODEL_CELL).locator(".cm-koopnb-magic").wait_for()

    # A new line in the model cell is highlighted as it is typed.
    lab.cell_editor(PKMODEL_CELL).click()
    lab.page.keyboard.press("Control+End")
    lab.page.keyboard.type("\nVmax = exp(2.3) [mg/h]")
    assert "[mg/h]" in marked_texts(lab, PKMODEL_CELL, "unit")
    assert marked_texts(lab, PKMODEL_CELL, "function").count("exp") == 2

    # Turning a plain cell into a model cell highlights it; turning it back clears it.
    lab.cell_editor(PLAIN_CELL).click()
    lab.page.keyboard.press("Control+Home")
    lab.page.keyboard.type("%%pkmodel edited\n")
    lab.cell_editor(PLAIN_CELL).locator(".cm-koopnb-magic").wait_for()
    assert marked_texts(lab, PLAIN_CELL, "comment") == ["# dose additive exp [L/h]"]
    assert marked_texts(lab, PLAIN_CELL, "number") == ["6", "7"]
    lab.page.keyboard.press("Control+Home")
    lab.page.keyboard.press("Shift+ArrowDown")
    lab.page.keyboard.press("Delete")
    lab.cell_editor(PLAIN_CELL).locator(".cm-koopnb-magic").wait_for(state="detached")
    assert koopnb_classes(lab, PLAIN_CELL) == []
    lab.screenshot("pkmodel-highlighting-after-edit")


def test_result_cards_render(lab: LabPage, demo_notebook: str) -> None:
    lab.open_notebook(demo_notebook)
    # The %%pkmodel cell is not run: highlighting must not depend on the magics.
    lab.run_cells([PLAIN_CELL, PROBABILITY_CELL, DOSING_CELL])

    assert "plain python 42" in lab.cell_outputs(PLAIN_CELL).inner_text()
    assert koopnb_classes(lab, PLAIN_CELL) == []
    assert koopnb_classes(lab, PKMODEL_CELL) != []

    probability = lab.cell_outputs(PROBABILITY_CELL).locator(".koopnb-card")
    probability.wait_for()
    assert probability.locator(".koopnb-title").inner_text() == "P(auc(0,24) in 400..600)"
    assert percent(0.7312, 0.0004) == "73.1 % ± 0.04 %"
    assert probability.locator(".koopnb-value-label").inner_text() == "Probability in window"
    assert probability.locator(".koopnb-value").inner_text() == "73.1 %"
    assert probability.locator(".koopnb-error").inner_text() == "± 0.04 %"
    assert probability.locator(".koopnb-errorbar").count() == 1
    assert probability.locator(".koopnb-gauge svg").count() == 1
    assert probability.locator(".koopnb-gauge").inner_text().startswith("73.1%")
    assert probability.locator(".koopnb-target").inner_text() == "auc(0,24) in 400..600"
    # Method, evaluations and time are in a closed 'Details' fold until the user opens it.
    assert not probability.locator(".koopnb-method").is_visible()
    probability.locator(".koopnb-details-summary").click()
    probability.locator(".koopnb-method").wait_for(state="visible")
    assert probability.locator(".koopnb-method").inner_text() == "koopman (gauss-hermite)"
    assert probability.locator(".koopnb-evals").inner_text() == "1,234 evaluations"
    assert probability.locator(".koopnb-elapsed").inner_text() == "12 ms"
    assert probability.locator(".koopnb-converged").count() == 1
    assert probability.locator(".koopnb-not-converged").count() == 0
    # The card replaces the text/plain fallback.
    assert "koopnb probability result" not in lab.cell_outputs(PROBABILITY_CELL).inner_text()

    dose, regimen, expectation = lab.cell_outputs(DOSING_CELL).locator(".koopnb-card").all()
    assert dose.locator(".koopnb-dose").inner_text() == "Optimal dose: 640 mg"
    assert dose.locator(".koopnb-regimen").inner_text() == "Best regimen: 640 mg po q24h x3"
    assert dose.locator(".koopnb-target").inner_text() == "auc(0,24) in 400.."
    assert dose.locator(".koopnb-value").inner_text() == "0.9021"
    assert dose.locator(".koopnb-error").inner_text() == "± 0.0013"
    assert dose.locator(".koopnb-gauge").count() == 1

    rows = regimen.locator("table.koopnb-rows tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("td").all_inner_texts() == ["1", "320 mg po q12h x6", "81.00%", "0.20%"]
    assert regimen.locator(".koopnb-not-converged").inner_text() == "not converged"
    assert regimen.locator(".koopnb-gauge").count() == 0
    warnings = regimen.locator(".koopnb-warning").all_inner_texts()
    assert warnings == ["tolerance 1e-4 not reached after 20000 evaluations", "<b>not bold</b>"]
    assert regimen.locator("b").count() == 0

    assert expectation.locator(".koopnb-title").inner_text() == "Expected value"
    assert expectation.locator(".koopnb-value").inner_text() == "1.235e-5"
    assert expectation.locator(".koopnb-error").inner_text() == "± 3e-8"
    assert expectation.locator(".koopnb-errorbar").count() == 1
    expectation.locator(".koopnb-details-summary").click()
    assert expectation.locator(".koopnb-evals").inner_text() == "81 evaluations"
    for absent in [".koopnb-gauge", ".koopnb-target", ".koopnb-dose", ".koopnb-method", ".koopnb-badge"]:
        assert expectation.locator(absent).count() == 0, absent
    lab.cell_outputs(DOSING_CELL).scroll_into_view_if_needed()
    lab.screenshot("result-cards")


def theme_colour(lab: LabPage, variable: str) -> str:
    """The colour a theme variable currently resolves to, as computed style (``rgb(...)``)."""
    return lab.page.evaluate(
        """(variable) => {
            const probe = document.createElement('span');
            probe.style.color = `var(${variable})`;
            document.body.appendChild(probe);
            const colour = getComputedStyle(probe).color;
            probe.remove();
            return colour;
        }""",
        variable,
    )


def set_theme(lab: LabPage, theme: str, light: bool) -> None:
    lab.page.evaluate("(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme)
    lab.page.wait_for_function(
        "(light) => document.body.dataset.jpThemeLight === String(light)", arg=light, timeout=30_000
    )


def test_colours_follow_the_dark_theme(lab: LabPage, demo_notebook: str) -> None:
    lab.open_notebook(demo_notebook)
    lab.run_cells([PROBABILITY_CELL])
    keyword = lab.cell_editor(PKMODEL_CELL).locator(".cm-koopnb-keyword").first
    card = lab.cell_outputs(PROBABILITY_CELL).locator(".koopnb-card")
    light_keyword = keyword.evaluate("(node) => getComputedStyle(node).color")
    light_card = card.evaluate("(node) => getComputedStyle(node).backgroundColor")
    set_theme(lab, "JupyterLab Dark", light=False)
    try:
        dark_keyword = keyword.evaluate("(node) => getComputedStyle(node).color")
        dark_card = card.evaluate("(node) => getComputedStyle(node).backgroundColor")
        assert dark_keyword == theme_colour(lab, "--jp-mirror-editor-keyword-color")
        assert dark_keyword != light_keyword
        assert dark_card != light_card
        lab.screenshot("dark-theme")
    finally:
        set_theme(lab, "JupyterLab Light", light=True)
