"""The pieces every many-patient job shares: candidate regimens and the target window(s)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from koopnb.errors import KoopnbError
from koopnb.expectation import ExpectationResult, probability
from koopnb.metrics import Window
from koopnb.regimen import Regimen

OK, WARNING, FAILED = "ok", "warning", "failed"
"""A row's status: computed cleanly; computed, with warnings in ``message``; not computed (``message`` says why)."""

_CAPTURING_WARNINGS = threading.Lock()
"""``warnings.catch_warnings`` changes process-wide state: a worker with several threads runs one job at a time
through it, or one job's warnings would land in another's row (give workers one thread and more processes)."""


def outcome(notes: list[str], results: Mapping[str, ExpectationResult] | None = None) -> dict[str, str]:
    """A computed row's status and message: ``warning`` with the notes, each result's own warnings (e.g. that a
    probability is a randomised-QMC estimate) after its label, and the labels of ``results`` that did not
    converge to the tolerance, when there are any; else ``ok``."""
    results = results or {}
    unresolved = [label for label, result in results.items() if not result.converged]
    notes = notes + warnings_of(results)
    notes = notes + ([f"not converged to the tolerance: {', '.join(unresolved)}"] if unresolved else [])
    return {"status": WARNING if notes else OK, "message": "; ".join(notes)}


def warnings_of(results: Mapping[str, ExpectationResult]) -> list[str]:
    """Each result's own warnings (e.g. that a probability is a randomised-QMC estimate), after its label."""
    return [f"{label}: {warning}" for label, result in results.items() for warning in result.warnings]


def failure(error: Exception) -> dict[str, str]:
    """The status and message of a row that could not be computed: a koopnb error's sentence as it is."""
    message = str(error) if isinstance(error, KoopnbError) else f"unexpected {type(error).__name__}: {error}"
    return {"status": FAILED, "message": message}


@contextmanager
def warnings_in_row() -> Iterator[list[str]]:
    """The warnings raised inside, collected for a row's message instead of printed: the list yielded holds
    their distinct messages, in order, once the block ends."""
    messages: list[str] = []
    with _CAPTURING_WARNINGS, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    messages.extend(dict.fromkeys(str(warning.message) for warning in caught))


def candidate_regimens(regimens) -> dict[str, Regimen]:
    """Candidate regimens by label: a mapping label -> Regimen or regimen text, or a list of them (labelled by
    their text).  Text is read with :meth:`Regimen.parse`, e.g. ``"1000 mg iv over 1 h q12h x14"``."""
    if isinstance(regimens, (str, Regimen)):
        regimens = [regimens]
    if isinstance(regimens, Mapping):
        labelled = {str(label): regimen for label, regimen in regimens.items()}
    else:
        labelled = {str(regimen): regimen for regimen in regimens or ()}
    if not labelled:
        raise KoopnbError("give at least one candidate regimen in regimens=")
    chosen = {}
    for label, regimen in labelled.items():
        if isinstance(regimen, str):
            regimen = Regimen.parse(regimen)
        if not isinstance(regimen, Regimen) or not regimen.doses:
            raise KoopnbError(f"candidate regimen {label!r} must be a Regimen with doses or regimen text")
        chosen[label] = regimen
    return chosen


def checked_target(target) -> Window | list[Window]:
    """The target as a Window or a list of Windows that must all hold (a probability of target attainment)."""
    windows = target if isinstance(target, (list, tuple)) else [target]
    if not windows or not all(isinstance(w, Window) for w in windows):
        raise KoopnbError("the target must be a Window or a list of Windows (all must hold), e.g. "
                          "kn.Window(kn.AUC(120, 144), 400, 600)")
    return list(windows) if isinstance(target, (list, tuple)) else target


def target_horizon(target) -> float:
    """The last time (h) any window of the target looks at."""
    windows = target if isinstance(target, list) else [target]
    return max(w.metric.horizon() for w in windows)


@dataclass(frozen=True)
class CandidateJob:
    """What every stratum's (nomogram) or virtual patient's (trial) job needs, shipped to each worker once:
    the candidate regimens by label, the target, the random effects' distribution and the tolerances."""

    model: Any
    target: Window | list[Window]
    candidates: dict[str, Regimen]
    dist: Any
    rtol: float
    atol: float

    def probabilities(self, covariates: dict[str, float]) -> dict[str, ExpectationResult]:
        """Each candidate's probability of meeting the target at these covariates, by label (Koopman)."""
        return {label: probability(self.target, self.model, regimen, self.dist, covariates=covariates,
                                   rtol=self.rtol, atol=self.atol) for label, regimen in self.candidates.items()}
