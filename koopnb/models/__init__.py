"""Published population models for model-informed precision dosing: ``kn.models.list()`` and ``kn.models.load()``.

Each model is a ``.pk`` file in this folder, in koopnb's model language, headed by comment lines ``# key: value``
that say where every number comes from: ``title``, ``drug``, ``population``, ``citation``, ``doi``, ``values``
(the table or run the numbers were taken from), ``units``, ``route``, ``covariates`` and ``target`` (a reference
range with its own source, or "not given by the source").  The parameter values were transcribed from the cited
tables and final NONMEM runs, cross-checked against the source locations recorded by the nlmixr2lib model
database; ``tests/test_models.py`` recomputes, for every model, a number printed in its source.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from koopnb.errors import KoopnbError
from koopnb.model import Model, parse_model

FIELDS = ("title", "drug", "population", "citation", "doi", "values", "units", "route", "covariates", "target")
"""The header lines every library model carries."""


def names() -> list[str]:
    """The library's model names, sorted (``drug_authoryear``)."""
    return sorted(path.name[:-3] for path in resources.files(__package__).iterdir() if path.name.endswith(".pk"))


def text(name: str) -> str:
    """The model text of ``name`` (header comments included)."""
    if name not in names():
        close = [n for n in names() if n.split("_")[0] == name.split("_")[0]]
        hint = f" (did you mean {', '.join(repr(n) for n in close)}?)" if close else ""
        raise KoopnbError(f"there is no library model {name!r}{hint}; kn.models.list() shows them all")
    return resources.files(__package__).joinpath(f"{name}.pk").read_text(encoding="utf-8")


def info(name: str) -> dict[str, str]:
    """The header of ``name``: title, drug, population, citation, doi, values, units, route, covariates, target."""
    header = {}
    for line in text(name).splitlines():
        if not line.startswith("# "):
            continue
        key, _, value = line[2:].partition(": ")
        if key in FIELDS:
            header[key] = value.strip()
    return header


def load(name: str) -> Model:
    """The library model ``name`` as a :class:`koopnb.Model` (its typical values, IIV and residual error)."""
    return parse_model(text(name), name=name)


def list() -> pd.DataFrame:  # the public name API.md gives (kn.models.list())
    """One row per library model: name, drug, population, citation, DOI, covariates, target."""
    rows = []
    for name in names():
        header = info(name)
        rows.append({"name": name, "drug": header["drug"], "population": header["population"],
                     "citation": header["citation"], "doi": header["doi"], "covariates": header["covariates"],
                     "target": header["target"]})
    return pd.DataFrame(rows)
