"""koopnb: uncertainty-aware precision dosing in Jupyter.

The public surface is listed in ``__all__``; everything else is internal.
"""

from koopnb import datasets, models
from koopnb.constraints import Constraints
from koopnb.covariates import CovariateHistory
from koopnb.data import DataWarning, read_nonmem, split_subjects, subject_covariates, subject_regimen
from koopnb.distributions import (
    Empirical,
    Joint,
    LogNormal,
    MvLogNormal,
    Normal,
    TruncatedNormal,
    Uniform,
)
from koopnb.errors import (
    DataError,
    DistributionError,
    ExpectationError,
    FitError,
    KoopnbError,
    MetricError,
    ModelError,
    NonmemError,
    RegimenError,
    SimulationError,
)
from koopnb.expectation import ExpectationResult, expectation, probability
from koopnb.inference import ConvergenceWarning, PopulationPosterior, Posterior, fit_individual, fit_population
from koopnb.metrics import AUC, Cmax, Cmin, Conc, Target, TimeAbove, Window
from koopnb.model import Model, parse_model
from koopnb.nonmem import from_nonmem, nonmem_text
from koopnb.optimize import DoseResult, optimize_dose, optimize_regimen
from koopnb.regimen import Dose, Regimen
from koopnb.scale import cohort, nomogram, simulate_ward, virtual_trial
from koopnb.vpc import VPCResult, vpc

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """``%load_ext koopnb``: register the %%pkmodel and %pk… magics (IPython is imported only here)."""
    from koopnb.jupyter import load_ipython_extension as load

    load(ipython)


def dashboard(model, dist, regimen, metric, window=None, covariates=None, step=None):
    """The interactive dosing panel (ipywidgets): dose and window sliders in multiples of ``step``, interval,
    live probability and plots."""
    from koopnb.jupyter.widgets import dashboard as build

    return build(model, dist, regimen, metric, window, covariates, step)


def report(posterior, regimen, target, **options):
    """A one-page dosing report (HTML and PDF) for one patient; see :func:`koopnb.reporting.report`."""
    from koopnb.reporting import report as build

    return build(posterior, regimen, target, **options)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (for ``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "koopnb"}]

__all__ = [
    "AUC",
    "Cmax",
    "Cmin",
    "Conc",
    "Constraints",
    "ConvergenceWarning",
    "CovariateHistory",
    "DataError",
    "DataWarning",
    "DistributionError",
    "Dose",
    "DoseResult",
    "Empirical",
    "ExpectationError",
    "ExpectationResult",
    "FitError",
    "Joint",
    "KoopnbError",
    "LogNormal",
    "MetricError",
    "Model",
    "ModelError",
    "MvLogNormal",
    "NonmemError",
    "Normal",
    "PopulationPosterior",
    "Posterior",
    "Regimen",
    "RegimenError",
    "SimulationError",
    "Target",
    "TimeAbove",
    "TruncatedNormal",
    "Uniform",
    "VPCResult",
    "Window",
    "cohort",
    "dashboard",
    "datasets",
    "expectation",
    "fit_individual",
    "fit_population",
    "from_nonmem",
    "load_ipython_extension",
    "models",
    "nomogram",
    "nonmem_text",
    "optimize_dose",
    "optimize_regimen",
    "parse_model",
    "probability",
    "read_nonmem",
    "report",
    "simulate_ward",
    "split_subjects",
    "subject_covariates",
    "subject_regimen",
    "virtual_trial",
    "vpc",
]
