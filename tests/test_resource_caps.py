"""Requests past koopnb's stated limits are refused at once with one sentence, before any memory is taken."""

import time

import pytest

import koopnb as kn
from koopnb.__main__ import THEOPHYLLINE
from koopnb.expectation.sampling import MAX_DRAWS
from koopnb.inference.sampler import MAX_WALKER_STEPS

MODEL = kn.parse_model(THEOPHYLLINE)
LEVELS = ([1.0, 6.0], [6.8, 7.4])


def test_monte_carlo_beyond_its_draw_limit_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(kn.ExpectationError, match=f"at most {MAX_DRAWS:,} draws"):
        kn.expectation(kn.AUC(0, 24), MODEL, kn.Regimen.parse("320 mg po"), MODEL.prior(), method="montecarlo",
                       n=10**11, seed=1)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("walkers, steps, message", [
    (10**9, 2000, "walkers is more than one fit may run"),
    (1000, 10**6, f"more than the {MAX_WALKER_STEPS:,} walker-steps"),
])
def test_fits_beyond_their_size_limit_are_refused_before_allocating(walkers, steps, message):
    started = time.perf_counter()
    with pytest.raises(kn.FitError, match=message):
        kn.fit_individual(MODEL, LEVELS, regimen=kn.Regimen.parse("320 mg po"), walkers=walkers, steps=steps,
                          seed=1, progress=False)
    assert time.perf_counter() - started < 30
