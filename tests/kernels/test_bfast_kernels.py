"""BFAST Monitor's kernels against plain numpy float64 references written here.

The references follow the published definitions: recursive residuals by
``numpy.linalg.lstsq`` on the first r observations (Brown, Durbin & Evans 1975), the
Rec-CUSUM test and boundary of strucchange (efp / sctest / boundary, see
geoproc.kernels.bfast), bfast's ROC history rule, and the OLS-MOSUM monitoring of
strucchange (mefp / monitor). R itself is the reference in tests/test_bfast.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoproc.bfast import rec_cusum_boundary
from geoproc.kernels.bfast import ROWS, bfast_monitor, rec_cusum_pvalue
from geoproc.kernels.timeseries import REASON_FEW_HISTORY, REASON_NO_MONITORING, REASON_OK, REASON_SINGULAR

rng = np.random.default_rng(11)
NO_MASK = np.zeros((0, 0), np.bool_)
B05 = rec_cusum_boundary(0.05)


def _design(t_len: int, harmonics: int, trend: bool) -> tuple[np.ndarray, np.ndarray]:
    """Irregular dates over ~4 years (fractional years) and the season-trend design at them."""
    years = 2019.3 + np.sort(rng.uniform(0, 4, t_len))
    cols = [np.ones(t_len)] + ([years - years[0]] if trend else [])
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * years), np.sin(2 * np.pi * k * years)]
    return years, np.stack(cols, axis=1)


def _series(design: np.ndarray, n: int, missing: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    beta = rng.normal(0, 0.2, (design.shape[1], n))
    values = (design @ beta + rng.normal(0, 0.03, (design.shape[0], n))).astype(np.float32)
    values[rng.random(values.shape) < missing] = np.nan
    invalid = rng.random(values.shape) < 0.1
    return values, invalid


def _pvalue(x: float) -> float:
    """strucchange pvalue.efp, Brownian motion, max functional, k = 1 (scipy-free, with math.erfc)."""
    phi = lambda v: 0.5 * math.erfc(-v / math.sqrt(2))  # noqa: E731
    if x < 0.3:
        return 1 - 0.1465 * x
    return 2 * (1 - phi(3 * x) + math.exp(-4 * x * x) * (phi(x) + phi(5 * x) - 1) - math.exp(-16 * x * x) * (1 - phi(x)))


def _roc_reference(x: np.ndarray, y: np.ndarray, level: float) -> int:
    """bfast's history_roc on the history (x, y oldest first): the 0-based index where the stable history starts."""
    n, p = x.shape
    xr, yr = x[::-1], y[::-1]
    w = []
    for r in range(p, n):  # recursive residual of reversed observation r from the fit on the r before it
        beta = np.linalg.lstsq(xr[:r], yr[:r], rcond=None)[0]
        f = 1 + xr[r] @ np.linalg.solve(xr[:r].T @ xr[:r], xr[r])
        w.append((yr[r] - xr[r] @ beta) / np.sqrt(f))
    w = np.array(w)
    big = len(w)
    process = np.cumsum(w) / (np.std(w, ddof=1) * np.sqrt(big))
    frac = np.arange(1, big + 1) / big
    if not _pvalue(np.max(np.abs(process) / (1 + 2 * frac))) < level:
        return 0
    cross = np.flatnonzero(np.abs(process) > B05 * (1 + 2 * frac))
    return big - (cross[0] + 1) + 1 if cross.size else 0


def _log_plus(x):
    return np.where(x <= np.e, 1.0, np.log(np.maximum(x, 1e-300)))


def _bfast_reference(y, ok, design, hist, mon, h, crit, roc, level=0.05):
    """(ROC) + strucchange mefp(OLS-MOSUM) + monitor, for one series, in float64 (NA observations dropped)."""
    t = np.flatnonzero(ok & (np.arange(len(y)) >= hist))
    yy = y[t].astype(np.float64)
    if roc:
        n_all = int((t < mon).sum())
        off = _roc_reference(design[t[:n_all]], yy[:n_all], level)
        t, yy = t[off:], yy[off:]
    in_hist = t < mon
    n, p = in_hist.sum(), design.shape[1]
    x = design[t]
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
    return brk, np.median(e[n:]), sigma, n, t[n:], process, boundary, t[0]


def test_rec_cusum_pvalue_and_boundary():
    for x in (0.0, 0.1, 0.29, 0.3, 0.5, 0.9478, 1.2, 2.0, 3.5):
        assert rec_cusum_pvalue(x) == pytest.approx(_pvalue(x), abs=1e-14)
    # R's uniroot root is within its tolerance (eps^0.25) of the exact one; other levels are solved exactly
    assert abs(_pvalue(B05) - 0.05) < 1e-4
    assert abs(_pvalue(rec_cusum_boundary(0.2)) - 0.2) < 1e-10


@pytest.mark.parametrize("roc", [True, False])
@pytest.mark.parametrize("h,crit,harmonics,trend", [(0.25, 1.34182451007628, 1, False), (0.5, 1.90200317899371, 2, True)])
def test_bfast_monitor_against_reference(h, crit, harmonics, trend, roc):
    _, design = _design(120, harmonics, trend)
    values, invalid = _series(design, 80)
    values[:25, :30] += 0.4  # an old disturbance in the history of some pixels: ROC cuts it off
    values[80:, 40:] -= 0.5  # a break in the monitoring period of others
    hist, mon = 3, 70
    out = bfast_monitor(values, invalid, design, hist, mon, h, crit, 0, True, roc, 0.05, B05)
    t_len = values.shape[0]
    ok = np.isfinite(values) & ~invalid
    breaks = cut = 0
    for i in range(values.shape[1]):
        brk, mag, sigma, n, t_mon, process, boundary, first = _bfast_reference(
            values[:, i], ok[:, i], design, hist, mon, h, crit, roc
        )
        assert out[2, i] == REASON_OK and out[3, i] == n and out[5, i] == first
        assert out[0, i] == brk
        breaks += brk >= 0
        cut += first > np.flatnonzero(ok[hist:, i])[0] + hist
        np.testing.assert_allclose(out[1, i], mag, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out[4, i], sigma, rtol=1e-9)
        np.testing.assert_allclose(out[ROWS + t_mon, i], process, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(out[ROWS + t_len + t_mon, i], boundary, rtol=1e-12)
        others = np.setdiff1d(np.arange(t_len), t_mon)
        assert np.isnan(out[ROWS + others, i]).all() and np.isnan(out[ROWS + t_len + others, i]).all()
    assert breaks >= 35  # the shifted pixels break
    if roc:
        assert cut >= 25  # the disturbed histories are cut
    else:
        assert cut == 0
    # without the process rows, the same results
    plain = bfast_monitor(values, invalid, design, hist, mon, h, crit, 0, False, roc, 0.05, B05)
    np.testing.assert_array_equal(plain, out[:ROWS])


def test_bfast_monitor_reasons():
    _, design = _design(40, 1, False)
    values, _ = _series(design, 6, missing=0.0)
    values[:20, 0] = np.nan
    values[:17, 0] = 1.0 + rng.normal(0, 0.01, 17)  # 17 history observations...
    values[:, 1] = np.nan
    values[:6, 1] = 0.5 + 0.01 * np.arange(6)  # ...6 history observations: floor(0.25 * 6) = 1
    values[20:, 2] = np.nan  # nothing to monitor
    values[:20, 3] = 0.25  # constant history: zero residual variance
    values[:, 5] = np.nan
    values[:4, 5] = 0.5 + 0.01 * np.arange(4)  # 4 history observations: too few for the ROC test (p + 2 = 5)
    values[30, 5] = 0.5
    out = bfast_monitor(values, NO_MASK, design, 0, 20, 0.25, 1.34, 0, False, False, 0.05, B05)
    assert out[2, :5].tolist() == [REASON_OK, REASON_FEW_HISTORY, REASON_NO_MONITORING, REASON_SINGULAR, REASON_OK]
    assert (out[0, 1:4] == -1).all() and np.isnan(out[1, 1:4]).all()
    assert bfast_monitor(values, NO_MASK, design, 0, 20, 0.25, 1.34, 18, False, False, 0.05, B05)[2, 0] == REASON_FEW_HISTORY
    roc = bfast_monitor(values, NO_MASK, design, 0, 20, 0.25, 1.34, 0, False, True, 0.05, B05)
    assert roc[2, 5] == REASON_FEW_HISTORY and roc[3, 5] == 4 and roc[5, 5] == -1
    assert roc[2, 0] == REASON_OK and roc[5, 0] >= 0
