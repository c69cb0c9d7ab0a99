"""Drive a real JupyterLab in headless Chromium: start the server, open a notebook, run cells.

The server is the test environment's own ``jupyter lab`` (``sys.executable -m jupyterlab``), so it
loads whatever lab extensions that environment has installed: the tests check the installed koopnb
extension, not a copy. The page is driven through ``window.jupyterapp`` (the server is started with
``expose_app_in_browser``), which is steadier than clicking menus.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "browser"

SERVER_START_TIMEOUT = 90.0  # seconds; a cold start compiles nothing but imports a lot
KERNEL_TIMEOUT = 60_000  # milliseconds, Playwright's unit
EXECUTION_TIMEOUT = 120_000  # milliseconds for a batch of cells to finish


def ensure_chromium() -> Path:
    """Return Debian's Chromium, installing it with apt-get when it is missing (needs root)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        raise RuntimeError(f"{CHROMIUM} is missing and only root can install it: apt-get install -y chromium.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True)
    if not CHROMIUM.exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is still missing.")
    return CHROMIUM


def isolated_jupyter_env(base: Path) -> dict[str, str]:
    """Environment for jupyter commands with config, data, runtime and IPython dirs under ``base``.

    The user's own settings and user-level extensions then cannot change what the tests see;
    extensions installed in the environment (sys.prefix) are still found.
    """
    dirs = {name: base / name for name in ("config", "data", "runtime", "ipython")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    # No "get Jupyter news?" prompt over the notebook in screenshots.
    notification = dirs["config"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """A running ``jupyter lab`` on 127.0.0.1 with a token and its own root directory."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    root_dir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """URL of a lab page, with the token; ``path`` like ``lab/tree/demo.ipynb``."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}/{path}{separator}token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_lab_server(base: Path, env: dict[str, str]) -> LabServer:
    """Start the environment's ``jupyter lab`` under ``base`` and wait until its API answers."""
    root_dir = base / "root"
    root_dir.mkdir(parents=True, exist_ok=True)
    workspaces = base / "workspaces"
    workspaces.mkdir(exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    log_path = base / "jupyter-lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.open_browser=False",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.workspaces_dir={workspaces}",
        # CI and the dev containers run as root; jupyter refuses that unless told.
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root_dir)
    server = LabServer(process, port, token, root_dir, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url("api/status"), timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{server.log()}")


class LabPage:
    """A Playwright page on the lab, with the few actions notebook tests need."""

    def __init__(self, page: Page, server: LabServer) -> None:
        self.page = page
        self.server = server

    # -- opening -------------------------------------------------------------------------------
    def open_notebook(self, path: str) -> None:
        """Open ``path`` in a fresh workspace and wait until its cells are drawn and its kernel is idle."""
        self.page.goto(self.server.url(f"lab/tree/{path}?reset"))
        self.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=KERNEL_TIMEOUT)
        self.page.evaluate("() => window.jupyterapp.restored")
        self.page.wait_for_function(
            """(path) => {
                const widget = window.jupyterapp.shell.currentWidget;
                return widget && widget.context && widget.context.path === path && widget.context.isReady;
            }""",
            arg=path,
            timeout=KERNEL_TIMEOUT,
        )
        self.page.locator(".jp-NotebookPanel:visible .jp-Cell .cm-content").first.wait_for()
        self.wait_for_kernel_idle()

    def wait_for_kernel_idle(self, timeout: float = KERNEL_TIMEOUT) -> None:
        """Wait until the current notebook's kernel exists and reports idle."""
        self.page.wait_for_function(
            """() => {
                const widget = window.jupyterapp.shell.currentWidget;
                const kernel = widget && widget.sessionContext.session && widget.sessionContext.session.kernel;
                return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
            }""",
            timeout=timeout,
        )

    # -- running -------------------------------------------------------------------------------
    def run_all_cells(self, allow_errors: bool = False) -> list[list[dict[str, Any]]]:
        """Run every code cell, top to bottom; see ``run_cells``."""
        count = self.page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
        return self.run_cells(range(count), allow_errors=allow_errors)

    def run_cells(self, indices: Iterable[int], allow_errors: bool = False) -> list[list[dict[str, Any]]]:
        """Run the cells at ``indices`` in order, wait until each has finished and the kernel is idle.

        Returns each cell's outputs as nbformat JSON. The first attempt is retried once after a
        kernel restart, because the very first execution of a fresh kernel occasionally never
        answers; a second failure is a real one and raises.
        """
        cells = list(indices)
        try:
            outputs = self._run_once(cells)
        except Exception:
            self.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.restartKernel()")
            self.wait_for_kernel_idle()
            outputs = self._run_once(cells)
        if not allow_errors:
            for index, cell_outputs in zip(cells, outputs, strict=True):
                errors = [out for out in cell_outputs if out.get("output_type") == "error"]
                if errors:
                    raise AssertionError(f"cell {index} raised: {json.dumps(errors[0])[:2000]}")
        return outputs

    def _run_once(self, indices: list[int]) -> list[list[dict[str, Any]]]:
        self.wait_for_kernel_idle()
        self.page.evaluate(
            """async (indices) => {
                const app = window.jupyterapp;
                const notebook = app.shell.currentWidget.content;
                for (const index of indices) {
                    if (notebook.widgets[index].model.type !== 'code') continue;
                    notebook.activeCellIndex = index;
                    await app.commands.execute('notebook:run-cell');
                }
            }""",
            indices,
        )
        self.page.wait_for_function(
            """(indices) => {
                const notebook = window.jupyterapp.shell.currentWidget.content;
                return indices.every(index => {
                    const model = notebook.widgets[index].model;
                    return model.type !== 'code'
                        || (model.executionCount !== null && model.executionState !== 'running');
                });
            }""",
            arg=indices,
            timeout=EXECUTION_TIMEOUT,
        )
        self.wait_for_kernel_idle()
        return self.page.evaluate(
            """(indices) => {
                const notebook = window.jupyterapp.shell.currentWidget.content;
                return indices.map(index => {
                    const model = notebook.widgets[index].model;
                    return model.type === 'code' ? model.outputs.toJSON() : [];
                });
            }""",
            indices,
        )

    # -- looking -------------------------------------------------------------------------------
    def cell(self, index: int) -> Locator:
        """The cell at ``index`` of the notebook on screen."""
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)

    def cell_editor(self, index: int) -> Locator:
        """The CodeMirror content element of the cell at ``index``."""
        return self.cell(index).locator(".cm-content")

    def cell_outputs(self, index: int) -> Locator:
        """The output area of the cell at ``index``."""
        return self.cell(index).locator(".jp-OutputArea")

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``test-output/browser/NAME.png`` and return its path."""
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def shut_down_kernels(self) -> None:
        """Shut down every kernel session of the server, so tests do not pile kernels up."""
        self.page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
