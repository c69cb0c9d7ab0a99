"""The no-code dosing page in Chromium, served by ``python -m koopnb app`` (Voilà): a clinician types the
patient's data, sees a bad entry flagged beside its field, presses Estimate and Recommend, reads the
recommendation and downloads the PDF report."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from .lab_driver import SCREENSHOT_DIR

START = 120.0  # seconds for Voilà to answer


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("app") / "voila.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "koopnb", "app", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the app did not answer within {START:.0f} s:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _type(page: Page, selector: str, value: str, nth: int = 0) -> None:
    field = page.locator(f"{selector} input").nth(nth)
    field.fill(value)
    field.press("Tab")


def test_a_clinician_gets_a_recommendation_and_a_report(browser: Browser, app_url: str) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 2200}, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(app_url, timeout=120_000)
        page.get_by_text("koopnb dosing").wait_for(timeout=120_000)
        _type(page, ".koopnb-dose-amount", "-500")
        _type(page, ".koopnb-level-level", "12")  # measured at 11.5 h
        page.get_by_role("button", name="Estimate").click()
        page.get_by_text("dose must be a positive amount").wait_for(timeout=30_000)
        page.get_by_text("enter the patient's CRCL").wait_for(timeout=30_000)
        assert "Traceback" not in page.content()

        for covariate, value in (("CRCL", "60"), ("WT", "70"), ("DIAL", "0")):
            field = page.locator(".widget-text", has_text=covariate).locator("input")
            field.fill(value)
            field.press("Tab")
        _type(page, ".koopnb-dose-amount", "1000")
        page.get_by_role("button", name="Estimate").click()
        page.get_by_text("Estimated.").wait_for(timeout=120_000)
        page.get_by_role("button", name="Recommend").click()
        heading = page.locator("h3", has_text="Recommended:")
        heading.wait_for(timeout=240_000)
        found = re.search(r"Recommended: (\d+) mg every (\d+) h", heading.inner_text())
        assert found and int(found.group(1)) % 250 == 0
        answer = page.locator(".koopnb-answer").inner_text()
        best, current = (float(v) for v in re.findall(r"([\d.]+) % ±", answer)[:2])
        assert best >= current
        page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 300)",
                               timeout=60_000)
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / "app.png"), full_page=True)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_text("Download the dosing report (PDF)").click()
        pdf = download.value.path().read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    finally:
        context.close()
