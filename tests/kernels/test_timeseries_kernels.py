"""Time-series and change kernels against plain numpy float64 references written here.

The references follow the published definitions: least squares by numpy.linalg.lstsq;
numpy.histogram; the change formulas (BFAST Monitor's kernel: test_bfast_kernels.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from geoproc.kernels.change import change_vector, classify, histogram, two_date
from geoproc.kernels.timeseries import (
    REASON_FEW_HISTORY,
    REASON_OK,
    REASON_SINGULAR,
    harmonic_fit,
)

rng = np.random.default_rng(11)
NO_MASK = np.zeros((0, 0), np.bool_)


def _design(t_len: int, harmonics: int, trend: bool) -> tuple[np.ndarray, np.ndarray]:
    """Irregular dates over ~3 years (fractional years) and the season-trend design at them."""
    years = 2019.3 + np.sort(rng.uniform(0, 3, t_len))
    cols = [np.ones(t_len)] + ([years - years[0]] if trend else [])
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * years), np.sin(2 * np.pi * k * years)]
    return years, np.stack(cols, axis=1)


def _series(design: np.ndarray, n: int, missing: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    beta = rng.normal(0, 0.2, (design.shape[1], n))
    values = (design @ beta + rng.normal(0, 0.03, (design.shape[0], n))).astype(np.float32)
    values[rng.random(values.shape) < missing] = np.nan
    invalid = rng.random(values.shape) < 0.1
    return values, invalid


@pytest.mark.parametrize("harmonics,trend", [(1, False), (2, True), (3, True)])
def test_harmonic_fit_equals_lstsq_on_valid_observations(harmonics, trend):
    _, design = _design(60, harmonics, trend)
    values, invalid = _series(design, 300)
    start, stop = 5, 50
    out = harmonic_fit(values, invalid, design, start, stop, 0)
    p = design.shape[1]
    for i in range(values.shape[1]):
        t = np.arange(start, stop)
        ok = t[np.isfinite(values[t, i]) & ~invalid[t, i]]
        assert out[p + 1, i] == ok.size
        x, y = design[ok], values[ok, i].astype(np.float64)
        beta, rss, *_ = np.linalg.lstsq(x, y, rcond=None)
        assert out[p + 2, i] == REASON_OK
        np.testing.assert_allclose(out[:p, i], beta, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[p, i], np.sqrt(np.sum((y - x @ beta) ** 2) / (ok.size - p)), rtol=1e-5)


def test_harmonic_fit_reasons():
    _, design = _design(30, 1, True)
    values, _ = _series(design, 4, missing=0.0)
    values[3:, 0] = np.nan  # 3 observations for 4 coefficients
    values[:, 1] = np.nan
    values[:, 2] = np.nan
    values[[0, 0], 2] = 1.0  # one observation only
    values[:, 3] = np.where(np.arange(30) % 2 == 0, values[:, 3], np.nan)
    out = harmonic_fit(values, NO_MASK, design, 0, 30, 0)
    assert out[-1].tolist() == [REASON_FEW_HISTORY, REASON_FEW_HISTORY, REASON_FEW_HISTORY, REASON_OK]
    assert np.isnan(out[:5, :3]).all() and out[5].tolist() == [3, 0, 1, 15]
    assert harmonic_fit(values, NO_MASK, design, 0, 30, 20)[-1, 3] == REASON_FEW_HISTORY  # min_obs
    # collinear: every valid date at the same time of year and no spread in time -> singular
    same = np.zeros((6, 1), np.float32)
    flat_design = np.tile(np.array([[1.0, 0.0, 1.0, 0.0]]), (6, 1))
    assert harmonic_fit(same, NO_MASK, flat_design, 0, 6, 0)[-1, 0] == REASON_SINGULAR


# --- two-date change kernels ------------------------------------------------------------------------------


def test_two_date_difference_and_ratio_with_decoding():
    before = rng.integers(0, 5000, 3000).astype(np.uint16)
    after = rng.integers(0, 5000, 3000).astype(np.uint16)
    before[:20] = 0
    dec = lambda v: np.where(v == 0, np.nan, v.astype(np.float32) * np.float32(1e-4) + np.float32(0.0))  # noqa: E731
    diff = two_date(before, after, 1e-4, 0.0, 0.0, 1e-4, 0.0, 0.0, False)
    np.testing.assert_array_equal(diff, dec(after) - dec(before))
    ratio = two_date(before, after, 1e-4, 0.0, 0.0, 1e-4, 0.0, 0.0, True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (dec(after).astype(np.float64) / dec(before).astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(ratio, expected)
    assert np.isnan(ratio[:20]).all()
    # zero before (a valid value) gives NaN, not inf
    assert np.isnan(two_date(np.float32([0.0]), np.float32([1.0]), 1, 0, np.nan, 1, 0, np.nan, True))[0]


def test_change_vector_against_formulas():
    before = rng.normal(size=(3, 2000)).astype(np.float32)
    after = rng.normal(size=(3, 2000)).astype(np.float32)
    before[1, :10] = np.nan
    out = change_vector(before, after)
    d = after.astype(np.float64) - before
    np.testing.assert_allclose(out[0], np.sqrt((d**2).sum(axis=0)), rtol=1e-6)
    np.testing.assert_array_equal(out[2][10:], ((d > 0) * np.array([[1], [2], [4]])).sum(axis=0)[10:])
    assert np.isnan(out[:, :10]).all() and np.isnan(out[1]).all()  # no angle for 3 bands
    two = change_vector(before[:2, 10:], after[:2, 10:])
    angle = np.degrees(np.arctan2(d[1, 10:], d[0, 10:])) % 360
    np.testing.assert_allclose(two[1], angle, rtol=1e-5, atol=1e-4)


def test_classify_with_bounds():
    v = np.array([-1.0, -0.25, -0.2500001, 0.0, 0.66, 5.0, np.nan])
    np.testing.assert_array_equal(classify(v, np.array([-0.25, 0.0, 0.66])), [1, 2, 1, 3, 4, 4, 0])


@pytest.mark.parametrize("bins", [2, 10, 256])
def test_histogram_equals_numpy(bins):
    v = rng.normal(size=20000)
    v[:100] = np.nan
    lo, hi = np.nanmin(v), np.nanmax(v)
    edges = np.linspace(lo, hi, bins + 1)
    v[100:120] = edges[rng.integers(0, bins + 1, 20)]  # values on the edges
    expected, _ = np.histogram(v[100:], bins=bins, range=(lo, hi))
    np.testing.assert_array_equal(histogram(v, edges), expected)
