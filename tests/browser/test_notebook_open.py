"""Opening a committed notebook in JupyterLab does not mark it modified.

JupyterLab writes the running kernel's ``language_info`` and its kernel spec's name, display name and language
into the notebook's metadata when the kernel connects; the notebook is marked modified when these differ from
what was saved (tests/test_notebook_hygiene.py keeps the committed notebooks in that form).  A control copy
with the bare ``language_info: {"name": "python"}`` that nbformat writes shows that the test can see the mark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .lab_driver import KERNEL_TIMEOUT, LabPage, LabServer

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_quickstart.ipynb"
SETTLE_MS = 2000  # after the kernel is idle: time for any late metadata update to arrive


def _open(lab: LabPage, path: str) -> None:
    """Open ``path`` and wait until its kernel is idle (LabPage.open_notebook waits for a code editor to show,
    and a notebook that starts with rendered markdown shows none)."""
    lab.page.goto(lab.server.url(f"lab/tree/{path}?reset"))
    lab.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=KERNEL_TIMEOUT)
    lab.page.wait_for_function(
        """(path) => {
            const widget = window.jupyterapp.shell.currentWidget;
            return widget && widget.context && widget.context.path === path && widget.context.isReady;
        }""", arg=path, timeout=KERNEL_TIMEOUT)
    lab.page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for()
    lab.wait_for_kernel_idle()


def _dirty(lab: LabPage) -> bool:
    lab.page.wait_for_timeout(SETTLE_MS)
    return lab.page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty")


@pytest.fixture
def committed(lab_server: LabServer) -> str:
    shutil.copyfile(NOTEBOOK, lab_server.root_dir / NOTEBOOK.name)
    return NOTEBOOK.name


@pytest.fixture
def bare_language_info(lab_server: LabServer) -> str:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    notebook["metadata"]["language_info"] = {"name": "python"}
    name = "bare_language_info.ipynb"
    (lab_server.root_dir / name).write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    return name


def test_opening_a_committed_notebook_leaves_it_unmodified(lab: LabPage, committed: str) -> None:
    _open(lab, committed)
    assert not _dirty(lab)
    assert lab.page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0  # no "modified" dot on any tab
    assert (lab.server.root_dir / committed).read_bytes() == NOTEBOOK.read_bytes()


def test_the_control_with_a_bare_language_info_is_marked_modified(lab: LabPage, bare_language_info: str) -> None:
    _open(lab, bare_language_info)
    assert _dirty(lab)
    assert lab.page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 1
