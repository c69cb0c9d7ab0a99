"""Every tutorial notebook runs top to bottom without an error in this environment.

Each notebook asserts its own key numbers in its last cell (probabilities in [0, 1] with small errors,
Koopman against Monte Carlo, population estimates against the published ones, optima in range), so a
notebook that silently produces nonsense fails here too.  The kernel is this environment's Python with
ipykernel; the repository root is put on its path so the checkout's koopnb is the one imported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600
"""Seconds allowed per cell: generous, because CI machines can be slow and busy (notebook 02's population fit,
one of the slowest cells, takes about 10 s on this project's 2-core machine)."""


def kernel_manager(directory: Path, python: str, extra_path: str | None) -> KernelManager:
    """A kernel manager whose only kernel spec runs ``python -m ipykernel_launcher`` (no user kernel can shadow it)."""
    spec_dir = directory / "kernels" / "koopnb-test"
    spec_dir.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": extra_path} if extra_path else {}
    spec = {"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "koopnb test kernel", "language": "python", "env": env}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(directory / "kernels")])
    return KernelManager(kernel_name="koopnb-test", kernel_spec_manager=specs)


def test_the_tutorials_are_there():
    assert {"01", "02", "03", "04", "05", "06", "07", "08"} <= {path.name[:2] for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    notebook = nbformat.read(path, as_version=4)
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    client = NotebookClient(notebook, km=kernel_manager(tmp_path, sys.executable, python_path),
                            timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(path.parent)}})
    client.execute()   # raises CellExecutionError, naming the cell, on the first error or failed check
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
