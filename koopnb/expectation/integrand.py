"""The integrand of an expectation: parameter sets in, the quantities of interest out, evaluations counted."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from koopnb.errors import ExpectationError, SimulationError
from koopnb.metrics import Metric, Window, solve_for

CHUNK = 50_000
"""Parameter sets simulated per model call; bounds the memory of one evaluation."""


class AllWindows:
    """Several windows that must all hold at once (e.g. AUC24 in 400..600 and trough below 20).

    Its expectation is the probability of the intersection.
    """

    def __init__(self, windows):
        self.windows = tuple(windows)
        if not self.windows or not all(isinstance(w, Window) for w in self.windows):
            raise ExpectationError("AllWindows needs one or more Window objects")

    def indicator(self, values: dict) -> np.ndarray:
        """1.0 where every window holds, given metric values by metric."""
        return np.prod([w.indicator(values[w.metric]) for w in self.windows], axis=0)

    def __str__(self) -> str:
        return " and ".join(str(w) for w in self.windows)


def quantities(g) -> tuple[list, bool]:
    """Normalise ``g`` (a metric, a window, a callable or a list of them) to a list, and whether it was one."""
    if isinstance(g, (list, tuple)):
        if not g:
            raise ExpectationError("the list of quantities to take the expectation of is empty")
        items, single = list(g), False
    else:
        items, single = [g], True
    for item in items:
        if not isinstance(item, (Metric, Window, AllWindows)) and not callable(item):
            raise ExpectationError(f"cannot take the expectation of {item!r}: give a metric such as AUC(0, 24), "
                                   "a Window, or a function of the outputs")
    return items, single


def label(item) -> str:
    """How a quantity is named in results: 'auc(0, 24)', 'P(auc(0, 24) in 400..600)', or a function's name."""
    if isinstance(item, (Window, AllWindows)):
        return f"P({item})"
    if isinstance(item, Metric):
        return f"E[{item}]"
    return f"E[{getattr(item, '__name__', 'g')}]"


class Integrand:
    """Evaluates the quantities for batches of parameter sets and counts the parameter sets simulated.

    ``times`` (h) is needed when a quantity is a callable of the outputs: it receives
    ``{name: (batch, len(times))}`` and returns (batch,).
    """

    def __init__(self, items: Sequence, model, regimen, dist, covariates: Mapping | None = None,
                 times=None, solve_options: Mapping | None = None, chunk: int = CHUNK):
        self.items = list(items)
        self.model, self.regimen, self.dist = model, regimen, dist
        self.covariates = covariates
        self.solve_options = dict(solve_options or {})
        self.chunk = int(chunk)
        self.n_evals = 0
        unknown = [name for name in dist.names if name not in model.parameters]
        if unknown:
            raise ExpectationError(f"the distribution covers {unknown[0]!r}, which is not a parameter of the model "
                                   f"(the parameters are {', '.join(model.parameters)})")
        callables = [item for item in self.items if not isinstance(item, (Metric, Window, AllWindows))]
        if callables and times is None:
            raise ExpectationError("a function of the outputs needs times=[...] (hours) at which to evaluate them")
        self.times = None if times is None else np.asarray(times, dtype=float)
        self.metrics = list(dict.fromkeys(metric for item in self.items for metric in metrics_of(item)))

    def __call__(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, n_quantities) values for parameter sets given as name -> (n,) arrays."""
        n = len(next(iter(params.values())))
        blocks = [self._evaluate({k: v[i:i + self.chunk] for k, v in params.items()})
                  for i in range(0, n, self.chunk)]
        self.n_evals += n
        return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(self.items)))

    def _evaluate(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        metrics = self.metrics
        horizon_metrics = list(metrics)
        if self.times is not None:
            from koopnb.metrics import Conc

            horizon_metrics.append(Conc(float(self.times.max())))
        trajectory = solve_for(self.model, horizon_metrics, params, self.regimen, self.covariates,
                               **self.solve_options)
        values = {m: m.compute(trajectory, self.model) for m in metrics}
        for metric, value in values.items():
            _finite(value, str(metric) if metric.output else f"{metric} of output {metric.output_name(self.model)!r}",
                    params)
        outputs = trajectory.outputs(self.times) if self.times is not None else None
        columns = []
        for item in self.items:
            if isinstance(item, AllWindows):
                columns.append(item.indicator(values))
            elif isinstance(item, Window):
                columns.append(item.indicator(values[item.metric]))
            elif isinstance(item, Metric):
                columns.append(values[item])
            else:
                columns.append(_call(item, outputs, len(next(iter(params.values())))))
                _finite(columns[-1], f"the function {getattr(item, '__name__', item)!r}", params)
        return np.stack(columns, axis=1)


def metrics_of(item) -> list[Metric]:
    """The metrics a quantity reads (none for a callable of the outputs)."""
    if isinstance(item, AllWindows):
        return [w.metric for w in item.windows]
    if isinstance(item, Window):
        return [item.metric]
    return [item] if isinstance(item, Metric) else []


def _finite(values: np.ndarray, what: str, params: Mapping[str, np.ndarray]) -> None:
    """Raise a SimulationError when ``values`` (batch,) has an entry that is not finite: an expectation over it
    would be NaN or infinite, or a window would silently count the set as outside."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    first = int(np.argmax(bad))
    example = ", ".join(f"{name} = {np.atleast_1d(value)[first if np.size(value) > 1 else 0]:.6g}"
                        for name, value in params.items())
    raise SimulationError(f"{what} is {values[first]} for {int(bad.sum())} of {bad.size} parameter sets, e.g. at "
                          f"{example}; an expectation needs a finite value for every parameter set (check the "
                          "model for an overflow, a division by zero or a logarithm of a non-positive number)")


def _call(function: Callable, outputs: dict, batch: int) -> np.ndarray:
    value = np.asarray(function(outputs), dtype=float)
    if value.shape != (batch,):
        raise ExpectationError(f"the function {getattr(function, '__name__', function)!r} must return one number "
                               f"per parameter set, shape ({batch},), not {value.shape}")
    return value
