"""Time-series and change kernels against plain numpy float64 references written here.

The references follow the published definitions: least squares by numpy.linalg.lstsq;
the OLS-MOSUM monitoring process and boundary of R's strucchange (mefp / monitor, see
geoproc.timeseries); numpy.histogram; the change formulas.
"""

from __future__ import annotations

import numpy as np
import pytest

from geoproc.kernels.change import change_vector, classify, histogram, two_date
from geoproc.kernels.timeseries import (
    REASON_FEW_HISTORY,
    REASON_NO_MONITORING,
    REASON_OK,
    REASON_SINGULAR,
    bfast_monitor,
    ccdc_breaks,
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


def _log_plus(x):
    return np.where(x <= np.e, 1.0, np.log(np.maximum(x, 1e-300)))


def _bfast_reference(y, ok, design, hist, mon, h, crit):
    """strucchange mefp(OLS-MOSUM) + monitor, for one series, in float64 (NA observations dropped)."""
    t = np.flatnonzero(ok & (np.arange(len(y)) >= hist))
    in_hist = t < mon
    n, p = in_hist.sum(), design.shape[1]
    x, yy = design[t], y[t].astype(np.float64)
    beta = np.linalg.lstsq(x[in_hist], yy[in_hist], rcond=None)[0]
    e = yy - x @ beta
    sigma = np.sqrt(np.sum(e[in_hist] ** 2) / (n - p))
    k = int(np.floor(h * n))
    # R: process[i + 1] = sum(e[(i + 1):(i + K)]) over all windows, minus the first n - K + 1 (history) ones
    windows = np.array([e[i : i + k].sum() for i in range(len(e) - k + 1)]) / (sigma * np.sqrt(n))
    process = windows[n - k + 1 :]
    boundary = crit * np.sqrt(2 * _log_plus(np.arange(n + 1, len(e) + 1) / n))
    cross = np.flatnonzero(np.abs(process) > boundary)
    brk = t[n + cross[0]] if cross.size else -1
    return brk, np.median(e[n:]), sigma, n, t[n:], process, boundary


@pytest.mark.parametrize("h,crit,harmonics,trend", [(0.25, 1.34182451007628, 1, False), (0.5, 1.90200317899371, 2, True)])
def test_bfast_monitor_process_boundary_and_break_against_reference(h, crit, harmonics, trend):
    _, design = _design(90, harmonics, trend)
    values, invalid = _series(design, 120)
    values[60:, :40] -= 0.5  # a break in a third of the pixels
    hist, mon = 3, 45
    out = bfast_monitor(values, invalid, design, hist, mon, h, crit, 0, True)
    t_len = values.shape[0]
    ok = np.isfinite(values) & ~invalid
    breaks = 0
    for i in range(values.shape[1]):
        brk, mag, sigma, n, t_mon, process, boundary = _bfast_reference(values[:, i], ok[:, i], design, hist, mon, h, crit)
        assert out[2, i] == REASON_OK and out[3, i] == n
        assert out[0, i] == brk
        breaks += brk >= 0
        np.testing.assert_allclose(out[1, i], mag, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[4, i], sigma, rtol=1e-5)
        np.testing.assert_allclose(out[5 + t_mon, i], process, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[5 + t_len + t_mon, i], boundary, rtol=1e-6)
        others = np.setdiff1d(np.arange(t_len), t_mon)
        assert np.isnan(out[5 + others, i]).all() and np.isnan(out[5 + t_len + others, i]).all()
    assert 30 <= breaks  # the shifted pixels break
    # without the process rows, the same results
    np.testing.assert_array_equal(bfast_monitor(values, invalid, design, hist, mon, h, crit, 0, False), out[:5])


def test_bfast_monitor_reasons():
    _, design = _design(40, 1, False)
    values, _ = _series(design, 5, missing=0.0)
    values[:20, 0] = np.nan
    values[:17, 0] = 1.0 + rng.normal(0, 0.01, 17)  # 17 history observations...
    values[:, 1] = np.nan
    values[:6, 1] = 0.5 + 0.01 * np.arange(6)  # ...6 history observations: floor(0.25 * 6) = 1
    values[20:, 2] = np.nan  # nothing to monitor
    values[:20, 3] = 0.25  # constant history: zero residual variance
    out = bfast_monitor(values, NO_MASK, design, 0, 20, 0.25, 1.34, 0, False)
    assert out[2].tolist() == [REASON_OK, REASON_FEW_HISTORY, REASON_NO_MONITORING, REASON_SINGULAR, REASON_OK]
    assert (out[0, 1:4] == -1).all() and np.isnan(out[1, 1:4]).all()
    assert bfast_monitor(values, NO_MASK, design, 0, 20, 0.25, 1.34, 18, False)[2, 0] == REASON_FEW_HISTORY


def test_ccdc_breaks_against_reference():
    _, design = _design(80, 2, True)
    values, invalid = _series(design, 150)
    values[55:, :60] += 0.4
    hist, mon, k, thr = 0, 40, 4, 3.0
    out = ccdc_breaks(values, invalid, design, hist, mon, k, thr, 0)
    ok = np.isfinite(values) & ~invalid
    for i in range(values.shape[1]):
        t = np.flatnonzero(ok[:, i])
        x, y = design[t], values[t, i].astype(np.float64)
        hmask = t < mon
        beta = np.linalg.lstsq(x[hmask], y[hmask], rcond=None)[0]
        e = y - x @ beta
        rmse = np.sqrt(np.sum(e[hmask] ** 2) / (hmask.sum() - design.shape[1]))
        exceed = np.abs(e) > thr * rmse
        exceed[hmask] = False
        brk, mag = -1, np.nan
        for j in range(hmask.sum(), len(t) - k + 1):
            if exceed[j : j + k].all():
                brk, mag = t[j], np.median(e[j : j + k])
                break
        assert out[0, i] == brk
        np.testing.assert_allclose(out[1, i], mag, rtol=1e-5, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(out[4, i], rmse, rtol=1e-5)
    assert (out[0, :60] >= 55).mean() > 0.9 and (out[0, 60:] == -1).mean() > 0.9


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
