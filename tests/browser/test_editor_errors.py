"""A failed %%pkmodel cell in a real lab: the mistake is underlined in the cell's editor at the line and
column the error names (the %%pkmodel line is line 1), and the underline goes when the fixed cell is run."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from .lab_driver import LabPage, LabServer

LOAD_CELL = 0
MODEL_CELL = 1
PLAIN_CELL = 2

# Editor line 6 (body line 5), column 32: the undefined name 'Vc'.
BROKEN_MODEL = """%%pkmodel theo
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/Vc*central
conc = central / V
conc ~ additive(0.7)
dose depot"""
ERROR_LINE, ERROR_COLUMN, ERROR_WORD = 6, 32, "Vc"
UNDERLINE = ".cm-lintRange-error.cm-koopnb-model-error"


@pytest.fixture
def model_notebook(lab_server: LabServer, request: pytest.FixtureRequest) -> str:
    """A notebook whose model cell has a mistake; returns its lab path."""
    notebook = new_notebook(
        cells=[new_code_cell("%load_ext koopnb"), new_code_cell(BROKEN_MODEL), new_code_cell("print(40 + 2)")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    name = f"{request.node.name}.ipynb"
    nbformat.write(notebook, lab_server.root_dir / name)
    return name


def stderr(outputs: list[dict]) -> str:
    """What a cell wrote to stderr (where IPython prints a UsageError)."""
    return "".join(out["text"] for out in outputs if out["output_type"] == "stream" and out["name"] == "stderr")


def underlines(lab: LabPage, cell: int) -> list[dict]:
    """Each underlined piece of a cell's editor: its text, 1-based editor line and column (in characters)."""
    return lab.cell_editor(cell).evaluate(
        """(editor, selector) => {
            const lines = [...editor.querySelectorAll('.cm-line')];
            return [...editor.querySelectorAll(selector)].map(mark => {
                const line = mark.closest('.cm-line');
                const before = document.createRange();  // the line's text up to the mark
                before.setStart(line, 0);
                before.setEndBefore(mark);
                return {
                    text: mark.textContent,
                    line: lines.indexOf(line) + 1,
                    column: [...before.toString()].length + 1,
                    lineText: line.textContent,
                    wavy: getComputedStyle(mark).backgroundImage,
                };
            });
        }""",
        UNDERLINE,
    )


def test_model_error_is_underlined_and_cleared_when_fixed(lab: LabPage, model_notebook: str) -> None:
    lab.open_notebook(model_notebook)
    outputs = lab.run_cells([LOAD_CELL, MODEL_CELL, PLAIN_CELL], allow_errors=True)

    # The kernel's message (IPython prints a UsageError to stderr) names the editor's line and column.
    assert f"UsageError: line {ERROR_LINE}, column {ERROR_COLUMN}: 'Vc' is not defined" in stderr(outputs[1])

    editor = lab.cell_editor(MODEL_CELL)
    editor.locator(UNDERLINE).first.wait_for()
    (mark,) = underlines(lab, MODEL_CELL)
    assert mark["text"] == ERROR_WORD
    assert mark["line"] == ERROR_LINE
    assert mark["column"] == ERROR_COLUMN
    assert mark["lineText"] == BROKEN_MODEL.splitlines()[ERROR_LINE - 1]
    assert "url(" in mark["wavy"]  # CodeMirror's wavy error underline is a background image
    assert lab.cell_editor(PLAIN_CELL).locator(".cm-lintRange").count() == 0
    # The error's own output row draws nothing; the UsageError text is what the user reads.
    assert lab.cell_outputs(MODEL_CELL).locator(".koopnb-model-error").is_hidden()
    assert "'Vc' is not defined" in lab.cell_outputs(MODEL_CELL).inner_text()

    # Hovering the underline shows the message.
    editor.locator(UNDERLINE).first.hover()
    tooltip = lab.page.locator(".cm-tooltip-lint")
    tooltip.wait_for()
    assert f"line {ERROR_LINE}, column {ERROR_COLUMN}: 'Vc' is not defined (did you mean 'V'?)" in (
        tooltip.inner_text()
    )
    lab.screenshot("model-error-underlined")

    # Fix the mistake in the editor as a user would (select the word, type the right name) and run again.
    editor.locator(UNDERLINE).first.dblclick()
    lab.page.keyboard.type("V")
    source = lab.page.evaluate(
        "(index) => window.jupyterapp.shell.currentWidget.content.widgets[index].model.sharedModel.getSource()",
        MODEL_CELL,
    )
    assert source == BROKEN_MODEL.replace("CL/Vc*", "CL/V*")
    # Still marked while being edited: the underline goes with the run, not with the keystroke.
    (outputs,) = lab.run_cells([MODEL_CELL])
    assert stderr(outputs) == ""
    assert any("text/html" in out.get("data", {}) for out in outputs)  # the model's card
    editor.locator(UNDERLINE).first.wait_for(state="detached")
    assert editor.locator(".cm-lintRange").count() == 0
    assert lab.cell_outputs(MODEL_CELL).locator(".koopnb-model-error").count() == 0
    lab.screenshot("model-error-cleared")


def test_a_cell_that_fails_again_is_marked_at_its_new_mistake(lab: LabPage, model_notebook: str) -> None:
    lab.open_notebook(model_notebook)
    lab.run_cells([LOAD_CELL, MODEL_CELL], allow_errors=True)
    editor = lab.cell_editor(MODEL_CELL)
    editor.locator(UNDERLINE).first.wait_for()

    # Fix 'Vc' but repeat 'ka' on a new line 3: the one underline is now 'ka' on line 3, column 1.
    lab.page.evaluate(
        """([index, source]) => window.jupyterapp.shell.currentWidget.content.widgets[index]
            .model.sharedModel.setSource(source)""",
        [MODEL_CELL, BROKEN_MODEL.replace("CL/Vc*", "CL/V*").replace("ka = 1.5", "ka = 1.5  [1/h] ~ 0.6\nka = 2", 1)],
    )
    (outputs,) = lab.run_cells([MODEL_CELL], allow_errors=True)
    assert "line 3, column 1: 'ka' is already defined on line 2" in stderr(outputs)
    editor.locator(UNDERLINE, has_text="ka").first.wait_for()
    (mark,) = underlines(lab, MODEL_CELL)
    assert (mark["text"], mark["line"], mark["column"]) == ("ka", 3, 1)
