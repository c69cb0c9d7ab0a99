"""The core never reaches the notebook layer: ``import koopnb`` loads no IPython, ipywidgets, matplotlib or
koopnb.jupyter, no core module imports them (not even lazily, inside a function), and results still
render richly in a plain notebook without ``%load_ext koopnb``."""

import ast
import json
import pathlib
import subprocess
import sys

import koopnb

PACKAGE = pathlib.Path(koopnb.__file__).parent
CORE = ["model", "simulate", "expectation", "inference", "metrics", "distributions", "optimize", "regimen", "data",
        "covariates", "errors", "cards"]
"""The core's modules and packages (ARCHITECTURE.md), each a package directory or a module file."""
NOTEBOOK_LAYER = ("IPython", "ipywidgets", "matplotlib", "koopnb.jupyter", "koopnb.plotting")

IMPORT_AND_RENDER = """
import json, sys
import numpy as np
import koopnb as kn

layer = ("IPython", "ipywidgets", "matplotlib", "koopnb.jupyter", "koopnb.plotting")
after_import = sorted(m for m in sys.modules if m.split(".")[0] in layer or m.startswith(layer))
model = kn.parse_model('''
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
''', name="theo")
regimen = kn.Regimen.parse("320 mg po q24h x3")
window = kn.Window(kn.AUC(0, 24), 80, 120)
objects = {"model": model, "probability": kn.probability(window, model, regimen, model.prior()),
           "dose": kn.optimize_dose(model, regimen, model.prior(), window, (100, 1000))}
bundles = {name: sorted(obj._repr_mimebundle_()) for name, obj in objects.items()}
html = {name: "<" in obj._repr_html_() for name, obj in objects.items()}
after_render = sorted(m for m in sys.modules if m.split(".")[0] in layer or m.startswith(layer))

# What a plain notebook does with a result (IPython's own formatter, no %load_ext):
from IPython.core.interactiveshell import InteractiveShell
formatted, _ = InteractiveShell.instance().display_formatter.format(objects["probability"])
print(json.dumps({"after_import": after_import, "after_render": after_render, "bundles": bundles,
                  "html": html, "formatted": sorted(formatted)}))
"""


def test_import_and_display_load_no_notebook_layer():
    run = subprocess.run([sys.executable, "-c", IMPORT_AND_RENDER], capture_output=True, text=True, check=True)
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["after_import"] == []
    assert report["after_render"] == []  # rendering a result needs none of them either
    card = "application/vnd.koopnb.result+json"
    assert report["bundles"]["probability"] == report["bundles"]["dose"] == [card, "text/html", "text/plain"]
    assert report["bundles"]["model"] == ["text/html", "text/latex", "text/plain"]
    assert all(report["html"].values())
    assert card in report["formatted"] and "text/html" in report["formatted"]


def test_no_core_module_imports_the_notebook_layer_even_lazily():
    offenders = []
    for name in CORE:
        package, module = PACKAGE / name, PACKAGE / f"{name}.py"
        assert package.is_dir() or module.is_file(), f"koopnb.{name} is neither a package nor a module"
        for path in sorted(package.rglob("*.py")) if package.is_dir() else [module]:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}" for name in names
                              if name.startswith(NOTEBOOK_LAYER)]
    assert offenders == []
