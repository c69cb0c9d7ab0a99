"""Every committed notebook (notebooks/ and the app's page) is stored in one canonical form, so that opening it in
JupyterLab does not mark it modified and running it leaves nothing to commit by mistake.

The canonical form:
- code cells without outputs or execution counts; no cell metadata but ``tags``; every cell has a stable id
  (nbformat 4.5 requires one; a missing id would be invented at random on every load);
- notebook metadata holding only ``kernelspec`` and ``language_info`` (no widget state, no tool's additions), and
  both exactly as JupyterLab writes them when the kernel connects: the kernel spec's name, display name and
  language, and ipykernel's ``language_info`` (name, version, mimetype, codemirror_mode, pygments_lexer,
  nbconvert_exporter, file_extension).  JupyterLab marks a notebook modified as soon as either differs from what
  was saved (tests/browser/test_notebook_open.py shows it in Chromium): a bare ``{"name": "python"}`` always
  does; a Python of another patch version than the one recorded (``version``) does once;
- nbformat 4.5, written as Jupyter writes it: one-space indent, sorted keys, UTF-8, a final newline.

Run this file to rewrite the notebooks (all, or those named) into that form:
    .venv/bin/python tests/test_notebook_hygiene.py [notebooks/01_quickstart.ipynb ...]
"""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.ipkernel import IPythonKernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "koopnb" / "app").glob("*.ipynb")])
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
"""ipykernel's own kernel spec (``python -m ipykernel install`` writes this one)."""
CELL_METADATA = ("tags",)


def language_info(version: str) -> dict:
    """ipykernel's language_info for a Python ``version`` ("3.11.7"), as its kernel_info reply gives it."""
    return {**IPythonKernel.language_info, "version": version}


def canonical(path: Path, version: str | None = None) -> str:
    """The notebook at ``path`` in the canonical form, as text; ``version`` (the Python recorded in
    language_info) defaults to the one recorded there, else this Python's."""
    notebook = nbformat.read(path, as_version=4)
    recorded = notebook.metadata.get("language_info", {}).get("version")
    notebook.metadata = {"kernelspec": dict(KERNELSPEC),
                         "language_info": language_info(version or recorded or platform.python_version())}
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    for index, cell in enumerate(notebook.cells):
        cell.metadata = {key: value for key, value in cell.metadata.items() if key in CELL_METADATA}
        cell.setdefault("id", f"{path.stem[:2]}-{index:02d}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 9 and ROOT / "koopnb" / "app" / "dosing.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_is_committed_in_canonical_form(path: Path):
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    assert set(notebook["metadata"]) == {"kernelspec", "language_info"}, f"{path.name}: metadata to strip"
    for cell in notebook["cells"]:
        assert set(cell.get("metadata", {})) <= set(CELL_METADATA), f"{path.name}: cell metadata to strip"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: clear the outputs"
    assert text == canonical(path), f"{path.name} is not in canonical form: python tests/test_notebook_hygiene.py"


def test_every_notebook_records_the_same_python():
    versions = {path.name: json.loads(path.read_text(encoding="utf-8"))["metadata"].get("language_info", {})
                .get("version") for path in NOTEBOOKS}
    assert len(set(versions.values())) == 1, versions
    assert re.fullmatch(r"3\.\d+\.\d+", next(iter(versions.values())) or ""), versions


def test_the_canonical_form_strips_what_jupyter_adds(tmp_path):
    """A notebook as JupyterLab saves it after a run: outputs, counts, widget state, timing, a bare
    language_info, an old minor version and a missing cell id; the canonical form keeps only the sources."""
    messy = {
        "cells": [{"cell_type": "code", "execution_count": 3, "metadata": {"scrolled": True, "tags": ["keep"],
                                                                          "execution": {"iopub.status.idle": "x"}},
                   "outputs": [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}],
                   "source": ["print(6 * 7)"]},
                  {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"},
                     "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                               "version_minor": 0}}},
        "nbformat": 4, "nbformat_minor": 4}
    path = tmp_path / "09_messy.ipynb"
    path.write_text(json.dumps(messy))
    clean = json.loads(canonical(path, version="3.11.7"))
    assert clean["metadata"] == {"kernelspec": KERNELSPEC, "language_info": {
        "name": "python", "version": "3.11.7", "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": 3}, "pygments_lexer": "ipython3",
        "nbconvert_exporter": "python", "file_extension": ".py"}}
    code, markdown = clean["cells"]
    assert (code["outputs"], code["execution_count"], code["metadata"]) == ([], None, {"tags": ["keep"]})
    assert [code["id"], markdown["id"]] == ["09-00", "09-01"] and clean["nbformat_minor"] == 5
    path.write_text(canonical(path))
    assert canonical(path) == path.read_text()  # idempotent


if __name__ == "__main__":
    for notebook in [Path(arg).resolve() for arg in sys.argv[1:]] or NOTEBOOKS:
        text = canonical(notebook)
        if notebook.read_text(encoding="utf-8") != text:
            notebook.write_text(text, encoding="utf-8")
            print(f"rewrote {notebook.relative_to(ROOT)}")
