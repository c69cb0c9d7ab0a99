"""Fixtures for browser tests: one JupyterLab server and one Chromium per session, a fresh page per test.

Every test in this directory is marked ``browser``. Reuse in a new test::

    def test_something(lab, demo_notebook):
        lab.open_notebook(demo_notebook)
        lab.run_all_cells()
        lab.screenshot("something")
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from .lab_driver import (
    CHROMIUM_ARGS,
    LabPage,
    LabServer,
    ensure_chromium,
    isolated_jupyter_env,
    start_lab_server,
)

BROWSER_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def lab_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch directory of the session's server: its root dir, config, workspaces and log."""
    return tmp_path_factory.mktemp("jupyterlab")


@pytest.fixture(scope="session")
def lab_env(lab_base: Path) -> dict[str, str]:
    """Environment for jupyter commands, isolated from the user's own Jupyter settings."""
    return isolated_jupyter_env(lab_base)


@pytest.fixture(scope="session")
def lab_server(lab_base: Path, lab_env: dict[str, str]) -> Iterator[LabServer]:
    """The test environment's ``jupyter lab`` on 127.0.0.1, a free port, a token and a temporary root."""
    server = start_lab_server(lab_base, lab_env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (installed with apt-get when missing).

    One per test module: Playwright's synchronous API keeps an asyncio loop running in the main thread while it
    is open, and tests after the browser tests (widgets under a kernel-like event loop) must not inherit it."""
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def lab(browser: Browser, lab_server: LabServer) -> Iterator[LabPage]:
    """A fresh browser page on the lab; its kernels are shut down afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    lab_page = LabPage(page, lab_server)
    yield lab_page
    try:
        lab_page.shut_down_kernels()
    finally:
        context.close()
