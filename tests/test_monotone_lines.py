"""Monotone cubic interpolation along conditioning lines (koopnb.expectation.lines)."""

import warnings

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from koopnb.expectation.lines import MonotoneLines


def test_a_line_flat_but_for_rounding_has_slope_zero_there_without_a_warning():
    """A secant of denormal size overflowed inside scipy's PCHIP (a RuntimeWarning that turned nomogram rows into
    'warning'); the slope there is the harmonic-mean limit, 0, and the other slopes are scipy's own."""
    s = np.linspace(-3.0, 3.0, 7)
    values = np.array([[0.0, 1e-310, 1.0, 2.0, 3.0, 4.0, 5.0]])  # not all positive: interpolated as is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines = MonotoneLines(s, values)
    with np.errstate(over="ignore"):
        expected = PchipInterpolator(s, np.maximum.accumulate(values, axis=1), axis=1)(s, nu=1)
    assert np.all(np.isfinite(lines.slopes))
    assert lines.slopes[0, 1] == 0.0
    assert lines.slopes == pytest.approx(expected, rel=1e-15, abs=0)
    with pytest.warns(RuntimeWarning, match="overflow"):  # what scipy alone does with the same table
        PchipInterpolator(s, values, axis=1)(s, nu=1)


def test_crossings_of_a_straight_line_are_exact():
    """On h = s (PCHIP reproduces a straight line), the crossing of level L is s = L for every row."""
    s = np.linspace(-3.0, 3.0, 9)
    values = np.tile(s, (3, 1)) + np.arange(3)[:, None]  # rows shifted by 0, 1, 2; not all positive
    lines = MonotoneLines(s, values)
    roots = lines.crossing(np.array([0.5, -0.75, 4.0]))
    assert roots[:2] == pytest.approx(np.array([[0.5, -0.5, -1.5], [-0.75, -1.75, -2.75]]), abs=1e-12)
    assert roots[2] == pytest.approx([np.inf, 3.0, 2.0])  # row 0 stays below 4 within the table: +inf
