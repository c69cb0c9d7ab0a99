"""The notebook layer: IPython magics, the interactive dosing dashboard and rich display.

Only this package imports IPython and ipywidgets; the core never imports it (rich display lives in
:mod:`koopnb.cards`, beside the objects it shows).
"""

from __future__ import annotations

from typing import Any

DOSE_RANGE = 4.0
"""Dose searches without explicit bounds run from the current dose / DOSE_RANGE to the dose × DOSE_RANGE."""


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext koopnb``: register the koopnb magics with the running IPython."""
    from koopnb.jupyter.magics import KoopnbMagics

    magics = KoopnbMagics(ipython)
    ipython.events.register("pre_run_cell", magics.remember_cell)
    ipython.register_magics(magics)


__all__ = ["DOSE_RANGE", "load_ipython_extension"]
