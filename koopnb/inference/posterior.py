"""Posterior and PopulationPosterior: the draws of a fit, their summaries, and where they go next.

``to_distribution`` feeds the expectation engine (a log-normal fitted to the log-draws, or a kernel
density on them); ``to_arviz`` hands the chains to ArviZ; ``save``/``load`` keep them on disk.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from koopnb.distributions import Empirical, MvLogNormal
from koopnb.errors import FitError, KoopnbError
from koopnb.inference import storage
from koopnb.inference.subjects import Subject, iov_of, kappa_name
from koopnb.model.model import Model

LEVEL = 0.90
"""Width of the credible intervals in summaries: 90 % (the 5th to the 95th percentile)."""


class _Displayed:
    """Rich display shared by both posteriors: a result card for the JupyterLab extension, HTML, text."""

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain, text/html (summary table) and the result card (application/vnd.koopnb.result+json)."""
        from koopnb.cards import posterior_bundle

        return posterior_bundle(self)

    def _repr_html_(self) -> str:
        """The summary table under a title (front ends that ask for HTML alone)."""
        from koopnb.cards import posterior_html

        return posterior_html(self)


class Posterior(_Displayed):
    """Draws of one patient's parameters (those with IIV; the others are fixed at ``fixed``).

    ``draws`` is (n_draws, n_walkers, k) on the natural scale; ``samples`` flattens it to a dict
    name -> (n_draws·n_walkers,).  ``map`` is the posterior mode.  ``diagnostics`` holds the mean
    acceptance fraction, the autocorrelation time τ (steps) and effective sample size per parameter,
    the burn-in and the number of steps.  With inter-occasion variability the draws also hold each
    occasion's random effect of each IOV parameter, ``kappa_NAME_occLABEL`` (on the log scale: the
    parameter on that occasion is NAME · exp(κ)).
    """

    def __init__(self, names, draws: np.ndarray, log_density: np.ndarray, map: dict[str, float],
                 diagnostics: dict[str, Any], model: Model, subject: Subject, output: str, fixed: dict[str, float]):
        self.names = tuple(names)
        self.draws = np.asarray(draws, dtype=float)
        self.log_density = np.asarray(log_density, dtype=float)
        self.map = dict(map)
        self.diagnostics = diagnostics
        self.model = model
        self.subject = subject
        self.output = output
        self.fixed = dict(fixed)

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """name -> 1-D array of every kept draw (walkers interleaved)."""
        flat = self.draws.reshape(-1, len(self.names))
        return {name: flat[:, i] for i, name in enumerate(self.names)}

    def parameters(self, n: int | None = None, seed=0, occasion=None) -> dict[str, np.ndarray]:
        """Every model parameter for ``n`` draws (all when None): sampled ones drawn, the others fixed.

        With inter-occasion variability, the parameters of a future occasion (``occasion=None``, see
        :meth:`to_distribution`) or of the patient's occasion labelled ``occasion``.
        """
        samples = self.samples
        size = len(next(iter(samples.values())))
        rng = np.random.default_rng(seed)
        pick = np.arange(size) if n is None or n >= size else rng.choice(size, n, False)
        values = {name: np.full(pick.size, value) for name, value in self.fixed.items()}
        values.update({name: samples[name][pick] for name in self.names if name in self.model.typical})
        for name, kappa in _occasion_effects(self, occasion, pick.size, rng, pick).items():
            values[name] = values[name] * np.exp(kappa)
        return values

    def summary(self) -> pd.DataFrame:
        """One row per parameter: MAP, median, 90 % credible interval, posterior CV% (SD / mean)."""
        rows = {name: {"MAP": self.map.get(name, np.nan), **_describe(values)} for name, values in self.samples.items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def to_distribution(self, kind: str = "lognormal", occasion=None, seed=0):
        """The posterior as a koopnb distribution: ``"lognormal"`` (MvLogNormal fitted to the log-draws)
        or ``"kde"`` (Empirical with a Gaussian kernel density).

        With inter-occasion variability (IOV) this is the forecast for a future occasion by default: the
        patient's own (IIV) parameters as learned from every past occasion, times exp(κ) with the next
        occasion's κ ~ N(0, kappa²) drawn from its prior, since no level of that occasion has been seen.
        The median is then the IIV-only parameter, the approach Abrantes et al. found most precise for
        dose individualisation, and the spread is honestly wider than for a past occasion
        (Abrantes JA, Jönsson S, Karlsson MO, Nielsen EI. Handling interoccasion variability in model-based
        dose individualization using therapeutic drug monitoring data. Br J Clin Pharmacol
        2019;85:1326–1336).  ``occasion=LABEL`` gives a past occasion's parameters instead (its κ
        posterior).  For "lognormal" the future κ variance is added exactly; for "kde" κ is drawn (``seed``).
        """
        if not iov_of(self.model):
            if occasion is not None:
                raise FitError("the model has no inter-occasion variability (iov), so occasion= does not apply")
            return _distribution(self.samples, kind)
        parameters = self.parameters(occasion=occasion if occasion is not None or kind != "lognormal" else _IIV,
                                     seed=seed)
        random = [name for name in self.model.parameters if name in self.names or name in iov_of(self.model)]
        chosen = {name: parameters[name] for name in random}
        if kind != "lognormal" or occasion is not None:
            return _distribution(chosen, kind)
        exact = _distribution(chosen, kind)  # the IIV part; the next occasion's κ is independent of it
        extra = np.diag([iov_of(self.model).get(name, 0.0) ** 2 for name in chosen])
        return MvLogNormal(dict(zip(exact.names, exact.medians.tolist(), strict=True)), exact.covariance + extra)

    def to_arviz(self):
        """An ``arviz.InferenceData`` with one chain per walker and the log-density as sample statistic."""
        import arviz

        posterior = {name: self.draws[:, :, i].T for i, name in enumerate(self.names)}
        return arviz.from_dict(posterior=posterior, sample_stats={"lp": self.log_density.T})

    def save(self, path) -> None:
        """Write the posterior to ``path`` (a .npz file, atomically)."""
        arrays, header = self._payload("")
        storage.write(path, arrays, {"kind": "individual", **header})

    @classmethod
    def load(cls, path, max_bytes: int = storage.MAX_BYTES) -> Posterior:
        """Read a posterior written by :meth:`save`, every part checked (a FitError names what is wrong);
        a file whose arrays would need more than ``max_bytes`` of memory is refused before reading them."""
        arrays, header = storage.read(path, max_bytes)
        if header.get("kind") != "individual":
            raise FitError(f"{path!r} holds a population posterior; read it with PopulationPosterior.load"
                           if header.get("kind") == "population" else f"{path!r} holds no kind of posterior")
        storage.check_individual(arrays, header, str(path))
        model = _model_from(header, str(path), individual=True)
        with storage.naming(path):
            return cls._from_payload(arrays, header, "", model)

    def _payload(self, prefix: str) -> tuple[dict[str, np.ndarray], dict]:
        arrays, header = storage.subject_payload(self.subject, prefix)
        arrays |= {f"{prefix}draws": self.draws, f"{prefix}log_density": self.log_density}
        header |= {"names": list(self.names), "map": self.map, "diagnostics": _jsonable(self.diagnostics),
                   "output": self.output, "fixed": self.fixed, **_model_header(self.model)}
        return arrays, header

    @classmethod
    def _from_payload(cls, arrays, header, prefix: str, model: Model) -> Posterior:
        subject = storage.subject_from_payload(arrays, header, prefix)
        return cls(header["names"], arrays[f"{prefix}draws"], arrays[f"{prefix}log_density"], header["map"],
                   header["diagnostics"], model, subject, header["output"], header["fixed"])

    def __repr__(self) -> str:
        draws, walkers, _ = self.draws.shape
        parts = [f"{name} {_interval_text(values)}" for name, values in self.samples.items()]
        who = "" if self.subject.id is None else f" of subject {self.subject.id!r}"
        return f"<Posterior{who}: {walkers} walkers × {draws} draws; " + "; ".join(parts) + ">"


class PopulationPosterior(_Displayed):
    """Draws of the population: typical values, IIV (omega, SD of the log) and residual error.

    Sample names: each parameter name for its typical value, ``omega_NAME`` for its IIV (parameters
    with IIV only), ``iov_NAME`` for its inter-occasion variability (SD of the log, parameters with IOV
    only), ``OUTPUT.additive`` / ``.proportional`` / ``.sigma`` for the residual error.
    ``typical``, ``omega`` (covariance of the log-parameters in ``model.parameters`` order, like
    ``Model.omega``) and ``sigma`` are posterior medians; ``individuals`` maps each subject ID to a
    :class:`Posterior` of that subject's parameters; ``shrinkage`` is the η-shrinkage (SD) at the mode;
    ``ofv`` is NONMEM's FOCE-I objective (−2 log L without the n·log 2π constant) at the mode.
    """

    def __init__(self, names, draws: np.ndarray, log_density: np.ndarray, map: dict[str, float],
                 diagnostics: dict[str, Any], model: Model, output: str, individuals: dict[Any, Posterior],
                 shrinkage: dict[str, float], ofv: float = float("nan"),
                 standard_errors: dict[str, float] | None = None):
        self.names = tuple(names)
        self.draws = np.asarray(draws, dtype=float)
        self.log_density = np.asarray(log_density, dtype=float)
        self.map = dict(map)
        self.diagnostics = diagnostics
        self.model = model
        self.output = output
        self.individuals = individuals
        self.shrinkage = dict(shrinkage)
        self.ofv = float(ofv)
        self._given_errors = None if standard_errors is None else {name: float(standard_errors[name])
                                                                   for name in self.names}

    samples = Posterior.samples
    to_arviz = Posterior.to_arviz

    @property
    def typical(self) -> dict[str, float]:
        """Posterior median of each typical value."""
        return {name: float(np.median(self.samples[name])) for name in self.model.parameters}

    @property
    def omega(self) -> np.ndarray:
        """(n_parameters, n_parameters) covariance of the log-parameters from the median omegas and, for
        correlated IIV, the median correlations (``corr_A_B``)."""
        samples = self.samples
        sd = np.array([float(np.median(samples[f"omega_{p}"])) if f"omega_{p}" in samples else 0.0
                       for p in self.model.parameters])
        correlation = np.eye(len(sd))
        for (i, j), name in self._correlations():
            correlation[i, j] = correlation[j, i] = float(np.median(samples[name]))
        return correlation * np.outer(sd, sd)

    def _correlations(self) -> list[tuple[tuple[int, int], str]]:
        """((i, j), "corr_A_B") for each sampled correlation, i and j in ``model.parameters`` order."""
        index = {name: i for i, name in enumerate(self.model.parameters)}
        pairs = []
        for name in self.names:
            if name.startswith("corr_"):
                first, second = next((a, name[5 + len(a) + 1:]) for a in self.model.parameters
                                     if name.startswith(f"corr_{a}_") and name[5 + len(a) + 1:] in index)
                pairs.append(((index[first], index[second]), name))
        return pairs

    @property
    def sigma(self) -> dict[str, float]:
        """Posterior median of each residual error parameter, e.g. ``{"conc.additive": 0.69}``."""
        prefix = f"{self.output}."
        return {name: float(np.median(values)) for name, values in self.samples.items() if name.startswith(prefix)}

    @property
    def standard_errors(self) -> dict[str, float]:
        """Posterior standard deviation of each population quantity (the Bayesian counterpart of a standard
        error); a FOCE-I fit, and its saved file, report its standard errors instead (NaN where R is singular)."""
        if self._given_errors is not None:
            return dict(self._given_errors)
        return {name: float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
                for name, values in self.samples.items()}

    def table(self) -> pd.DataFrame:
        """One row per observation: ID, TIME, DV, PRED, IPRED, RES, IWRES, CWRES, NPDE, BLQ and each subject's η
        (koopnb.inference.diagnostics; an emcee fit is evaluated at its posterior medians)."""
        from koopnb.inference.diagnostics import residuals

        return residuals(self)

    def summary(self) -> pd.DataFrame:
        """One row per population quantity: MAP, median, 90 % interval, posterior CV%, η-shrinkage %."""
        rows = {}
        for name, values in self.samples.items():
            row = {"MAP": self.map[name], **_describe(values)}
            row["shrinkage%"] = 100 * self.shrinkage[name[6:]] if name.startswith("omega_") else np.nan
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")

    def to_model(self) -> Model:
        """The model with the fitted population as its priors: typical values, omegas, correlations (and IOV)
        and residual error."""
        omega = np.sqrt(np.diag(self.omega))
        errors = {self.output: replace(self.model.error_models[self.output],
                                       **{name.split(".", 1)[1]: value for name, value in self.sigma.items()})}
        iov = {name[4:]: float(np.median(values)) for name, values in self.samples.items() if name.startswith("iov_")}
        parameters = self.model.parameters
        correlations = {(parameters[i], parameters[j]): float(np.median(self.samples[name]))
                        for (i, j), name in self._correlations()}
        return _model_with(self.model, self.typical, dict(zip(parameters, omega, strict=True)), errors, iov,
                           correlations)

    def to_distribution(self, kind: str = "lognormal", n: int = 4000, seed=0):
        """The distribution of a new patient's parameters (with IIV), population uncertainty included:
        for each population draw, one patient drawn from it (correlated IIV as sampled); then a log-normal fitted
        to those, or a KDE.  With inter-occasion variability the patient is drawn on one occasion: IIV and IOV
        (``iov_NAME``) both."""
        samples = self.samples
        size = len(samples[self.names[0]])
        rng = np.random.default_rng(seed)
        pick = rng.choice(size, n, replace=size < n)
        random = [name for name in self.model.parameters if f"omega_{name}" in samples]
        sd = np.stack([samples[f"omega_{name}"][pick] for name in random], axis=1)  # (n, r)
        correlation = np.broadcast_to(np.eye(len(random)), (n, len(random), len(random))).copy()
        position = {self.model.parameters.index(name): r for r, name in enumerate(random)}
        for (i, j), name in self._correlations():
            correlation[:, position[i], position[j]] = correlation[:, position[j], position[i]] = samples[name][pick]
        factor = np.linalg.cholesky(correlation)
        eta = sd * np.einsum("nij,nj->ni", factor, rng.standard_normal((n, len(random))))
        patient = {}
        for r, name in enumerate(random):
            log_value = np.log(samples[name][pick]) + eta[:, r]
            if f"iov_{name}" in samples:
                log_value += samples[f"iov_{name}"][pick] * rng.standard_normal(n)
            patient[name] = np.exp(log_value)
        return _distribution(patient, kind)

    def save(self, path) -> None:
        """Write the population posterior and every individual posterior to ``path`` (.npz, atomically); a FOCE-I
        fit keeps its estimates, OFV, standard errors and full Ω (correlations as ``corr_A_B``) and Σ."""
        arrays = {"draws": self.draws, "log_density": self.log_density}
        individuals = []
        for i, posterior in enumerate(self.individuals.values()):
            part, header = posterior._payload(f"subject{i}_")
            arrays.update(part)
            individuals.append({key: value for key, value in header.items() if key not in ("model_text", "model_name",
                                                                                           "parameters", "errors")})
        header = {"kind": "population", "names": list(self.names), "map": self.map,
                  "diagnostics": _jsonable(self.diagnostics), "output": self.output, "shrinkage": self.shrinkage,
                  "ofv": self.ofv, "individuals": individuals, **_model_header(self.model)}
        if self._given_errors is not None:
            header["standard_errors"] = self._given_errors
        storage.write(path, arrays, header)

    @classmethod
    def load(cls, path, max_bytes: int = storage.MAX_BYTES) -> PopulationPosterior:
        """Read a population posterior written by :meth:`save`, every part checked (a FitError names what is
        wrong); a file whose arrays would need more than ``max_bytes`` of memory is refused before reading."""
        arrays, header = storage.read(path, max_bytes)
        if header.get("kind") != "population":
            raise FitError(f"{path!r} holds an individual posterior; read it with Posterior.load"
                           if header.get("kind") == "individual" else f"{path!r} holds no kind of posterior")
        storage.check_population(arrays, header, str(path))
        model = _model_from(header, str(path), individual=False)
        individuals = {}
        with storage.naming(path):
            for i, part in enumerate(header["individuals"]):
                posterior = Posterior._from_payload(arrays, part, f"subject{i}_", model)
                individuals[posterior.subject.id] = posterior
        return cls(header["names"], arrays["draws"], arrays["log_density"], header["map"], header["diagnostics"],
                   model, header["output"], individuals, header["shrinkage"], header.get("ofv", float("nan")),
                   header.get("standard_errors"))

    def __repr__(self) -> str:
        draws, walkers, _ = self.draws.shape
        parts = [f"{name} {_interval_text(values)}" for name, values in self.samples.items()]
        return (f"<PopulationPosterior of {len(self.individuals)} subjects: {walkers} walkers × {draws} draws; "
                + "; ".join(parts) + ">")


def _describe(values: np.ndarray) -> dict[str, float]:
    low, median, high = np.quantile(values, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2])
    mean = float(np.mean(values))
    spread = 100 * float(np.std(values)) / abs(mean) if mean else np.nan
    return {"median": median, "5%": low, "95%": high, "CV%": spread}


def _interval_text(values: np.ndarray) -> str:
    row = _describe(values)
    return f"{row['median']:.4g} (90% {row['5%']:.4g}–{row['95%']:.4g})"


_IIV = object()
"""``occasion`` meaning the patient's IIV parameters alone (no occasion's κ): the centre of a forecast."""


def _occasion_effects(posterior: Posterior, occasion, size: int, rng: np.random.Generator,
                      pick: np.ndarray) -> dict[str, np.ndarray]:
    """κ of each IOV parameter for ``size`` draws: a future occasion's from its prior (``occasion=None``),
    none for ``_IIV``, else the posterior draws of the patient's occasion labelled ``occasion``."""
    iov = iov_of(posterior.model)
    if not iov or occasion is _IIV:
        if occasion is not None and occasion is not _IIV:
            raise FitError("the model has no inter-occasion variability (iov), so occasion= does not apply")
        return {}
    if occasion is None:
        return {name: sd * rng.standard_normal(size) for name, sd in iov.items()}
    samples = posterior.samples
    keys = {name: kappa_name(name, occasion) for name in iov}
    if any(key not in samples for key in keys.values()):
        known = sorted({key.rsplit("_occ", 1)[1] for key in samples if key.startswith("kappa_")})
        raise FitError(f"the patient has no occasion {occasion!r}; the occasions are {', '.join(known) or 'none'}")
    return {name: samples[key][pick] for name, key in keys.items()}


def _distribution(samples: dict[str, np.ndarray], kind: str):
    if kind == "lognormal":
        logs = np.log(np.stack(list(samples.values()), axis=1))
        covariance = np.atleast_2d(np.cov(logs, rowvar=False))
        median = {name: float(np.exp(np.mean(logs[:, i]))) for i, name in enumerate(samples)}
        return MvLogNormal(median, covariance)
    if kind == "kde":
        return Empirical(samples, kde=True)
    raise FitError(f"kind must be 'lognormal' or 'kde', not {kind!r}")


def _model_with(model: Model, typical: dict[str, float], omega: dict[str, float], errors: dict,
                iov: dict[str, float] | None = None, correlations: dict[tuple[str, str], float] | None = None
                ) -> Model:
    """A new Model from ``model``'s spec with other typical values, omegas, IOV, IIV correlations (``corr``
    lines, by pair of names) and residual errors."""
    iov = iov or {}
    parameters = tuple(replace(p, typical=float(typical.get(p.name, p.typical)),
                               omega=float(omega.get(p.name, p.omega)), iov=float(iov.get(p.name, p.iov)))
                       for p in model.spec.parameters)
    correlations = correlations or {}
    kept = {pair: value for pair, value in model.spec.correlations.items()
            if pair not in correlations and pair[::-1] not in correlations}
    return Model(replace(model.spec, parameters=parameters, errors={**model.spec.errors, **errors},
                         correlations={**kept, **correlations}))


def _model_header(model: Model) -> dict:
    return {"model_text": model.spec.text, "model_name": model.name,
            "parameters": {p.name: [p.typical, p.omega] for p in model.spec.parameters},
            "errors": {name: [e.kind, e.additive, e.proportional, e.sigma] for name, e in model.error_models.items()}}


def _model_from(header: dict, path: str, individual: bool) -> Model:
    """The model stored in a checked posterior file, parsed by koopnb's own parser (never evaluated)."""
    from koopnb.model import parse_model

    storage.check_model_header(header, path)
    try:
        model = parse_model(header["model_text"], name=header["model_name"])
    except KoopnbError as error:
        raise FitError(f"{path!r} is not a valid koopnb posterior file: its model text does not parse ({error})"
                       ) from None
    storage.check_names_in_model(header, model.parameters, model.error_models, path, individual)
    typical = {name: value[0] for name, value in header["parameters"].items()}
    omega = {name: value[1] for name, value in header["parameters"].items()}
    errors = {name: replace(model.error_models[name], kind=kind, additive=a, proportional=b, sigma=s)
              for name, (kind, a, b, s) in header["errors"].items()}
    with storage.naming(path):
        return _model_with(model, typical, omega, errors)


def _jsonable(value):
    """Numbers, arrays and IDs as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
