"""The README's two commands work as written on a headless machine, as root too (CI runs as root, no display).

``bash dev.sh lab`` must install, start JupyterLab on 127.0.0.1, print its address with the token, serve the
tutorials, and stop on one Ctrl-C (SIGINT to its process id); ``python -m koopnb demo`` must print a dose with its
probability and error estimate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP = 600
"""Seconds the lab may take to come up: dev.sh re-runs pip (and, when extension/src changed, the npm build)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except OSError:
        return 0, b""


@pytest.mark.slow
def test_dev_sh_lab_serves_the_notebooks_on_loopback_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    log = tmp_path / "lab.log"
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "DISPLAY", "KOOPNB_LAB_IP")}
    env["KOOPNB_LAB_PORT"] = str(port)
    with open(log, "wb") as out:
        # Ctrl-C must work even when this test runs under a shell that ignores SIGINT (a background CI job).
        lab = subprocess.Popen(["bash", "dev.sh", "lab"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + STARTUP
        url = None
        while time.monotonic() < deadline and lab.poll() is None:
            found = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=([0-9a-f]+)", log.read_text(errors="replace"))
            if found:
                url = found
                status, _ = _get(f"http://127.0.0.1:{port}/api?token={found.group(1)}")
                if status == 200:
                    break
            time.sleep(1)
        text = log.read_text(errors="replace")
        assert lab.poll() is None, f"bash dev.sh lab exited with {lab.returncode}:\n{text[-3000:]}"
        assert url is not None, f"no address with a token was printed:\n{text[-3000:]}"
        token = url.group(1)
        assert "--allow-root" not in text or os.geteuid() == 0
        status, body = _get(f"http://127.0.0.1:{port}/api/contents/01_quickstart.ipynb?token={token}")
        assert status == 200, text[-3000:]
        notebook = json.loads(body)
        assert notebook["type"] == "notebook" and notebook["content"]["cells"]
        # Without the token the server refuses: the printed token is what protects it.
        assert _get(f"http://127.0.0.1:{port}/api/contents/01_quickstart.ipynb")[0] == 0
        # Only loopback: every listening socket on that port is bound to 127.0.0.1.
        listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}, listening
        lab.send_signal(signal.SIGINT)  # what one Ctrl-C sends
        lab.wait(timeout=60)
        assert _get(f"http://127.0.0.1:{port}/api?token={token}")[0] == 0, "the server still answers after Ctrl-C"
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()


def test_dev_sh_lab_binds_loopback_only_and_passes_allow_root_only_for_root():
    script = (ROOT / "dev.sh").read_text()
    assert 'ip=${KOOPNB_LAB_IP:-127.0.0.1}' in script
    assert '--no-browser' in script
    assert re.search(r'if \[ "\$\(id -u\)" = 0 \]; then\s+root=\(--allow-root\)', script)


def test_python_m_koopnb_demo_prints_a_dose_with_probability_and_error_estimate():
    done = subprocess.run([sys.executable, "-m", "koopnb", "demo"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    found = re.search(r"Recommended dose: (\d+) mg po — P\(.+\) = (0\.\d+) ± (\S+) \(converged; (\d+) model",
                      done.stdout)
    assert found, done.stdout
    dose, probability, error, evaluations = found.groups()
    assert 25 <= int(dose) <= 1000 and 0.5 < float(probability) <= 1
    assert 0 < float(error) < 1e-3 and int(evaluations) > 0
