"""Model: a parsed %%pkmodel with its numerical code, ready to simulate batches of parameter sets."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np
import sympy as sp

from koopnb.covariates import CovariateHistory, as_history, constant_covariates
from koopnb.errors import KoopnbError, SimulationError
from koopnb.model.codegen import compile_model
from koopnb.model.spec import ModelSpec, symbol

ParamValues = Mapping[str, float | np.ndarray]


class Model:
    """A compartment model: states, individual parameters, covariates, outputs and residual errors.

    Build one with :func:`koopnb.parse_model`.  Attributes follow the model text: ``parameters`` are
    the individual parameter names in order of appearance (those with IIV and those without; ``fixed``
    constants are not parameters), ``typical`` their typical values, ``omega`` the IIV covariance of
    the log-parameters ((n, n) in ``parameters`` order: ω_i² on the diagonal, R·ω_i·ω_j for each
    ``corr(i, j) = R``, zeros where a parameter has no IIV), ``iov`` maps each parameter with IOV to its
    kappa (SD of the log between occasions), ``bounds`` maps each parameter written ``in (LOW, HIGH)``
    to ``(low, high)``, ``covariates`` maps each covariate to its reference value, ``observables``
    lists the outputs.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.name = spec.name
        self.states: tuple[str, ...] = spec.states
        self.parameters: tuple[str, ...] = tuple(p.name for p in spec.parameters)
        self.covariates: dict[str, float] = {c.name: c.reference for c in spec.covariates}
        self.observables: tuple[str, ...] = spec.outputs
        self.typical: dict[str, float] = {p.name: p.typical for p in spec.parameters}
        self.omega: np.ndarray = _covariance(spec)
        self.iov: dict[str, float] = {p.name: p.iov for p in spec.parameters if p.iov > 0}
        self.bounds: dict[str, tuple[float, float]] = {p.name: p.bounds for p in spec.parameters
                                                       if p.bounds is not None}
        self.units: dict[str, str] = dict(spec.units)
        self.error_models = dict(spec.errors)
        self.dose_state: str | None = spec.dose.state if spec.dose else None
        self.compiled = compile_model(spec)
        self.is_linear: bool = self.compiled.is_linear

    # -- what the model says -------------------------------------------------------------------
    @property
    def default_output(self) -> str:
        """The first output with a residual error model, else the first output."""
        for name in self.observables:
            if name in self.error_models:
                return name
        if self.observables:
            return self.observables[0]
        raise KoopnbError("the model has no output; define one, e.g. conc = central / V")

    def unit_of(self, name: str, dose_unit: str | None = None) -> str | None:
        """The unit of a parameter, covariate, derived quantity, output or state as text ("mg/L"), with amounts
        in ``dose_unit`` (the regimen's, e.g. "mg"; not needed when the model's own units fix it); None when
        unknown.  See :mod:`koopnb.units`."""
        from koopnb.units import name_unit

        return name_unit(self, name, dose_unit)

    def prior(self, covariates: Mapping[str, float] | None = None):
        """The population distribution of one individual's parameters: log-normal around the typical values.

        Its covariance is ``omega`` restricted to the parameters with IIV, so ``corr`` lines make it a
        correlated log-normal.  Parameters without IIV are left out (they keep their typical values
        wherever a distribution is used).  Covariate effects live in derived quantities of the model
        text, so the prior of the individual parameters is the same for every patient; ``covariates``
        is checked for unknown names.
        """
        from koopnb.distributions import MvLogNormal

        if covariates is not None:  # constants or a history: only the names matter here
            history = as_history(covariates)
            names = history.names if isinstance(history, CovariateHistory) else list(history)
            self._covariate_values(dict.fromkeys(names, 0.0), 1)
        random = [i for i, p in enumerate(self.spec.parameters) if p.omega > 0]
        if not random:
            raise KoopnbError("the model has no parameter with IIV ('~ omega'), so it has no population distribution")
        median = {self.parameters[i]: self.typical[self.parameters[i]] for i in random}
        return MvLogNormal(median, self.omega[np.ix_(random, random)])

    def equations(self) -> list[sp.Eq]:
        """The model as sympy equations: derived quantities, state equations, initial conditions."""
        spec = self.spec
        t = sp.Symbol("t", real=True)
        equations = [sp.Eq(symbol(name), expr) for name, expr in spec.derived.items()]
        equations += [sp.Eq(sp.Derivative(sp.Function(s)(t), t), spec.rhs[s]) for s in spec.states]
        equations += [sp.Eq(sp.Function(s)(0), spec.initial[s]) for s in spec.states if spec.initial.get(s, 0) != 0]
        return equations

    # -- numbers -------------------------------------------------------------------------------
    def arguments(self, params: ParamValues | None, covariates: Mapping | None = None) -> list[np.ndarray]:
        """The argument vector of the compiled functions: one (batch,) array per parameter, then covariate.

        Covariates are constants here; a history (DataFrame) whose covariates change over time raises a
        KoopnbError naming the covariate (:meth:`solve` and :meth:`simulate` take histories).
        """
        covariates = constant_covariates(covariates, "Model.arguments")
        params = dict(params or {})
        unknown = [name for name in params if name not in self.typical]
        if unknown:
            raise KoopnbError(_unknown(unknown[0], "parameter", self.parameters, self.covariates))
        arrays = {name: np.atleast_1d(np.asarray(value, dtype=float)) for name, value in params.items()}
        for name, value in arrays.items():
            if value.ndim != 1:
                raise KoopnbError(f"parameter {name!r} must be a number or a 1-D array, not shape {value.shape}")
            if not np.all(np.isfinite(value)):
                raise KoopnbError(f"parameter {name!r} has a value that is not finite")
        sizes = {len(v) for v in arrays.values() if len(v) != 1}
        batch = self._batch_size(sizes, covariates)
        values = [_batch_of(arrays.get(name, np.array([self.typical[name]])), batch) for name in self.parameters]
        return values + self._covariate_values(covariates or {}, batch)

    def _batch_size(self, sizes: set[int], covariates: Mapping | None) -> int:
        for value in (covariates or {}).values():
            value = np.atleast_1d(np.asarray(value, dtype=float))
            if len(value) != 1:
                sizes.add(len(value))
        if len(sizes) > 1:
            raise KoopnbError(f"parameter arrays have different lengths {sorted(sizes)}; give one value or "
                              "arrays of one common length")
        return sizes.pop() if sizes else 1

    def _covariate_values(self, covariates: Mapping, batch: int) -> list[np.ndarray]:
        unknown = [name for name in covariates if name not in self.covariates]
        if unknown:
            raise KoopnbError(_unknown(unknown[0], "covariate", tuple(self.covariates), self.typical))
        values = []
        for name, reference in self.covariates.items():
            value = np.atleast_1d(np.asarray(covariates.get(name, reference), dtype=float))
            if not np.all(np.isfinite(value)):
                raise KoopnbError(f"covariate {name!r} has a value that is not finite")
            values.append(_batch_of(value, batch))
        return values

    def solve(self, params: ParamValues | None, regimen, covariates: Mapping | None = None, *,
              horizon: float, integrals: tuple[str, ...] = (), **options):
        """Solve for a batch of parameter sets; returns a :class:`koopnb.simulate.Trajectory`.

        ``horizon`` (h) is the last time that will be asked for; ``integrals`` the outputs whose
        integrals (AUC) are needed.  ``covariates``: a dict of constants, or a history that changes over
        time (a DataFrame with a TIME column, or a :class:`koopnb.covariates.CovariateHistory`; see that
        module for the NOCB/LOCF rule).  ``options``: ``solver`` ("auto", "linear", "ode"), ``rtol``,
        ``atol`` and ``method`` (a solve_ivp method) for the ODE solver.
        """
        from koopnb.simulate import solve

        for name in integrals:
            if name not in self.observables and name not in self.states:
                raise KoopnbError(_unknown(name, "output", self.observables + self.states, {}))
        history = as_history(covariates)
        positions = None
        if isinstance(history, CovariateHistory):
            self._covariate_values(dict.fromkeys(history.names, 0.0), 1)  # unknown names
            positions = {name: len(self.parameters) + list(self.covariates).index(name) for name in history.varying()}
            args = self.arguments(params, history.constants())
        else:
            args, history = self.arguments(params, history), None
        return solve(self.compiled, self.dose_state, args, regimen, horizon=horizon,
                     integrals=tuple(n for n in integrals if n in self.observables), history=history,
                     positions=positions, **options)

    def simulate(self, params: ParamValues | None, regimen, times, covariates: Mapping | None = None,
                 **options) -> dict[str, np.ndarray]:
        """Every output and state at ``times`` (h): name -> array (batch, len(times)).

        ``params`` maps parameter names to floats or 1-D arrays (one entry per parameter set); parameters
        not given take their typical values.  ``covariates`` as for :meth:`solve` (constants or a history).
        Linear models are solved exactly, others by a batched ODE solve (``options`` as for :meth:`solve`).
        A value that is not finite is a :class:`~koopnb.errors.SimulationError` naming it, its time and row.
        """
        times = np.asarray(times, dtype=float)
        if times.ndim != 1 or times.size == 0:
            raise SimulationError("times must be a non-empty 1-D array of hours")
        if not np.all(np.isfinite(times)) or times.min() < 0:
            raise SimulationError("times must be finite and not negative (hours after the start)")
        trajectory = self.solve(params, regimen, covariates, horizon=float(times.max()), times=times, **options)
        values = trajectory.outputs(times)
        for name, value in values.items():
            bad = np.argwhere(~np.isfinite(value))
            if bad.size:  # an honest error rather than a NaN or inf passed on as a concentration
                row, column = bad[0]
                raise SimulationError(
                    f"'{name}' is {value[row, column]} at t = {times[column]:g} h for parameter set {row} (check the "
                    "model for a division by zero, a logarithm of a non-positive number or an overflow)")
        return values

    def __reduce__(self):
        # The generated functions do not pickle; the spec does, and rebuilds them (dask ships models this way).
        return Model, (self.spec,)

    # -- display -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        kind = "linear" if self.is_linear else "nonlinear"
        return (f"<Model {self.name or ''} ({kind}): states {', '.join(self.states)}; "
                f"parameters {', '.join(self.parameters)}; outputs {', '.join(self.observables)}>")

    def _repr_latex_(self) -> str:
        """The model as written: derived quantities, d(state)/dt and non-zero initial conditions, aligned.

        Each right-hand side keeps the user's structure and order (``TVCL·(CRCL/120)^0.8``, not sympy's
        ``0.0217·CRCL^0.8·TVCL``)."""
        spec = self.spec
        names = {symbol(name): _latex_name(name) for name in
                 [*self.parameters, *spec.constants, *self.covariates, *spec.derived, *self.states, "t"]}

        def latex(key: str, evaluated) -> str:
            written = spec.written.get(key)
            expr = evaluated if written is None else written.expr
            return sp.latex(expr, symbol_names=names, mul_symbol="dot", order="none")

        rows = [f"{_latex_name(name)} &= {latex(name, expr)}" for name, expr in spec.derived.items()]
        rows += [rf"\frac{{d\,{_latex_name(state)}}}{{dt}} &= {latex(f'd/dt({state})', spec.rhs[state])}"
                 for state in self.states]
        rows += [f"{_latex_name(state)}(0) &= {latex(f'{state}(0)', spec.initial[state])}" for state in self.states
                 if spec.initial.get(state, 0) != 0]
        return "$\\begin{aligned}" + " \\\\ ".join(rows) + "\\end{aligned}$"

    def equations_text(self) -> list[str]:
        """The model's equations as the user wrote them, one line each (``CL = TVCL * (CRCL/120)^0.8``)."""
        spec = self.spec
        lines = [f"{name} = {spec.written[name].text}" for name in spec.derived if name in spec.written]
        lines += [f"d/dt({state}) = {spec.written[f'd/dt({state})'].text}" for state in self.states
                  if f"d/dt({state})" in spec.written]
        lines += [f"{state}(0) = {spec.written[f'{state}(0)'].text}" for state in self.states
                  if f"{state}(0)" in spec.written]
        return lines

    def parameter_rows(self) -> list[dict]:
        """One row per parameter: name, typical value, unit (normalised, "" without), omega, CV%, kappa (IOV, 0
        without) and bounds ((low, high) or None), for tables."""
        return [{"parameter": p.name, "typical": p.typical, "unit": self.units.get(p.name, ""), "omega": p.omega,
                 "CV%": 100 * float(np.sqrt(np.expm1(p.omega**2))) if p.omega else 0.0, "kappa": p.iov,
                 "bounds": p.bounds}
                for p in self.spec.parameters]

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """text/plain, text/latex (the equations) and text/html (equations and parameter table)."""
        from koopnb.cards import model_bundle

        return model_bundle(self)

    def _repr_html_(self) -> str:
        from koopnb.cards import model_html

        return model_html(self)


def _covariance(spec: ModelSpec) -> np.ndarray:
    """Ω of the log-parameters, (n, n) in parameter order: ω² on the diagonal, R·ω_a·ω_b for each corr."""
    omega = np.array([p.omega for p in spec.parameters], dtype=float)
    covariance = np.diag(omega**2).reshape(len(omega), len(omega))
    index = {p.name: i for i, p in enumerate(spec.parameters)}
    for (first, second), value in spec.correlations.items():
        i, j = index[first], index[second]
        covariance[i, j] = covariance[j, i] = value * omega[i] * omega[j]
    return covariance


def _latex_name(name: str) -> str:
    """Multi-letter names upright (CL, ka, central), as pharmacometric papers write them."""
    escaped = name.replace("_", r"\_")
    return escaped if len(name) == 1 else rf"\mathrm{{{escaped}}}"


def _unknown(name: str, kind: str, known, other) -> str:
    """One sentence for an unknown name, with the closest known name when there is one."""
    known = list(known)
    # Case slips (Cl for CL) are the commonest misspelling: compare case-folded names first.
    folded = [k for k in known if k.casefold() == name.casefold()]
    guess = folded or difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    if name in other:
        return f"{name!r} is not a {kind} of the model{hint}"
    return f"{name!r} is not a {kind} of the model{hint}; the {kind}s are {', '.join(known) or 'none'}"


def _batch_of(value: np.ndarray, batch: int) -> np.ndarray:
    """A float (batch,) array: the user's own array when it already is one (no copy; nothing writes into
    argument vectors), else the single value repeated."""
    if value.shape == (batch,) and value.dtype == np.float64:
        return value
    return np.broadcast_to(value, (batch,)).astype(float)
