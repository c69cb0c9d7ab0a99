"""``koopnb app``: the no-code dosing page (koopnb.jupyter.app) served by Voilà on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PAGE = Path(__file__).with_name("dosing.ipynb")
"""The one-cell notebook Voilà renders (its code is never shown)."""


def command(port: int = 8866, ip: str = "127.0.0.1", browser: bool = False) -> list[str]:
    """The Voilà command line that serves the page."""
    line = [sys.executable, "-m", "voila", str(PAGE), f"--port={port}", f"--Voila.ip={ip}",
            "--Voila.port_retries=0", "--theme=light", "--show_tracebacks=False"]
    if not browser:
        line.append("--no-browser")
    return line


def serve(port: int = 8866, ip: str = "127.0.0.1", models: str | None = None, browser: bool = False) -> int:
    """Run the page until Ctrl-C (replaces this process with Voilà).  ``models`` is a folder of .pk files."""
    env = dict(os.environ)
    if models:
        env["KOOPNB_APP_MODELS"] = str(Path(models).resolve())
    line = command(port, ip, browser)
    print(f"koopnb app: open http://{'127.0.0.1' if ip in ('0.0.0.0', '') else ip}:{port}/ (Ctrl-C stops it)",
          flush=True)
    os.execve(sys.executable, line, env)
    return 0
