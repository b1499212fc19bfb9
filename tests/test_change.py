"""Change detection: two-date methods, Otsu over a global histogram, and the time-series monitors on known truth."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from skimage.filters import threshold_otsu

from geoproc.change import BURN_SEVERITY_CLASSES, burn_severity, change, change_mask, otsu_threshold
from geoproc.errors import InvalidArgumentError
from geoproc.bfast import bfast_monitor, mosum_critical_value
from geoproc.timeseries import (
    decimal_years,
    design_matrix,
    harmonic_fit,
)

rng = np.random.default_rng(21)


def _image(y=30, x=40, nan=0.05, **bands) -> xr.Dataset:
    coords = {"y": np.arange(y)[::-1] * 10.0, "x": np.arange(x) * 10.0}
    data = {}
    for name in bands or ("red", "nir", "swir22"):
        v = rng.uniform(0.02, 0.5, (y, x)).astype(np.float32)
        v[rng.random(v.shape) < nan] = np.nan
        data[name] = (("y", "x"), v)
    return xr.Dataset(data, coords=coords).rio.write_crs(32633)


def _chunked(obj):
    return obj.chunk({"y": 16, "x": 16})


# --- two dates ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["difference", "ratio"])
def test_difference_and_ratio_numpy_vs_dask_vs_formula(method):
    pre, post = _image(), _image()
    pre["red"][0, :5] = 0.0  # ratio: NaN where before is 0
    got = change(pre.red, post.red, method)
    lazy = change(_chunked(pre.red), _chunked(post.red), method)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(got.values, lazy.values)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = post.red.values.astype(np.float64), pre.red.values.astype(np.float64)
        expected = a - b if method == "difference" else np.where(b == 0, np.nan, a / b)
    np.testing.assert_allclose(got.values, expected, rtol=1e-6, equal_nan=True)
    assert "spatial_ref" in got.coords and got.dtype == np.float32
    both = change(pre, post, method)
    np.testing.assert_array_equal(both.nir.values, change(pre.nir, post.nir, method).values)


def test_two_dates_from_a_series_and_raw_integers():
    raw = rng.integers(0, 8000, (3, 10, 12)).astype(np.uint16)
    series = xr.DataArray(raw, dims=("time", "y", "x"), coords={"time": np.arange(3).astype("datetime64[D]")},
                          attrs={"scale": 1e-4, "offset": -0.1, "nodata": 0})
    got = change(series.isel(time=[0]), series.isel(time=2))  # a length-1 time dim is dropped
    dec = np.where(raw == 0, np.nan, raw.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1))
    np.testing.assert_array_equal(got.values, dec[2] - dec[0])
    assert "time" not in got.dims and "time" not in got.coords
    with pytest.raises(InvalidArgumentError, match="3 dates"):
        change(series, series.isel(time=0))
    with pytest.raises(InvalidArgumentError, match="one grid"):
        change(series.isel(time=0), series.isel(time=1, x=slice(0, 6)))
    with pytest.raises(InvalidArgumentError, match="unknown change method"):
        change(series.isel(time=0), series.isel(time=1), "mad")


def test_change_vector_analysis_numpy_vs_dask_vs_formula():
    pre, post = _image(), _image()
    got = change(pre, post, "cva", bands=["red", "nir"])
    lazy = change(_chunked(pre), _chunked(post), "cva", bands=["red", "nir"])
    for v in ("magnitude", "angle", "sector"):
        np.testing.assert_array_equal(got[v].values, lazy[v].values)
    d_red = post.red.values.astype(np.float64) - pre.red.values
    d_nir = post.nir.values.astype(np.float64) - pre.nir.values
    np.testing.assert_allclose(got.magnitude.values, np.hypot(d_red, d_nir), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got.angle.values, np.degrees(np.arctan2(d_nir, d_red)) % 360, atol=1e-4, equal_nan=True)
    sector = np.where(np.isnan(d_red + d_nir), 65535, (d_red > 0) * 1 + (d_nir > 0) * 2)
    np.testing.assert_array_equal(got.sector.values, sector)
    three = change(pre, post, "cva")  # all three bands: magnitude and sector, no angle
    assert "angle" not in three and three.attrs["bands"] == ["red", "nir", "swir22"]
    d_sw = post.swir22.values.astype(np.float64) - pre.swir22.values
    np.testing.assert_allclose(three.magnitude.values, np.sqrt(d_red**2 + d_nir**2 + d_sw**2), rtol=1e-6, equal_nan=True)


def test_dnbr_and_burn_severity_against_the_key_benson_table():
    pre, post = _image(), _image()
    dnbr = change(pre, post, "dnbr")
    nbr = lambda ds: (ds.nir - ds.swir22) / (ds.nir + ds.swir22)  # noqa: E731
    np.testing.assert_allclose(dnbr.values, (nbr(pre) - nbr(post)).values, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(change(nbr(pre), nbr(post), "dnbr").values, dnbr.values, rtol=1e-5, atol=1e-6, equal_nan=True)
    values = np.r_[dnbr.values.ravel(), [-0.6, -0.25, -0.1, 0.1, 0.27, 0.44, 0.66, 1.4, np.nan]].astype(np.float32)
    d = xr.DataArray(values, dims="i")
    got = burn_severity(d).values
    # the table: (low, high] ranges in dNBR, as USGS / UN-SPIDER tabulate Key & Benson (2006)
    table = [(-np.inf, -0.25, 1), (-0.25, -0.1, 2), (-0.1, 0.1, 3), (0.1, 0.27, 4), (0.27, 0.44, 5), (0.44, 0.66, 6), (0.66, np.inf, 7)]
    expected = np.zeros(values.shape, np.uint8)
    for lo, hi, code in table:
        expected[(values >= lo) & (values < hi)] = code
    np.testing.assert_array_equal(got, expected)
    assert got[-1] == 0 and BURN_SEVERITY_CLASSES[7] == "high severity"
    np.testing.assert_array_equal(burn_severity(d.chunk(100)).values, got)


def test_otsu_uses_one_global_histogram_over_all_chunks():
    # left half: mostly unchanged (low), right half: mostly changed (high); per-chunk histograms differ a lot
    low = rng.normal(0.1, 0.03, (64, 64))
    high = rng.normal(0.8, 0.1, (64, 64))
    mag = np.concatenate([np.where(rng.random((64, 64)) < 0.95, low, high), np.where(rng.random((64, 64)) < 0.6, high, low)], axis=1)
    mag[:3, :3] = np.nan
    arr = xr.DataArray(mag, dims=("y", "x"))
    expected = threshold_otsu(mag[np.isfinite(mag)])
    assert otsu_threshold(arr) == expected
    chunked = arr.chunk({"y": 32, "x": 32})
    assert otsu_threshold(chunked) == expected
    per_chunk = [threshold_otsu(b[np.isfinite(b)]) for b in (mag[:32, :32], mag[:32, 64:96], mag[32:, 96:])]
    assert max(abs(t - expected) for t in per_chunk) > 1e-3  # the chunks alone would not give it
    mask = change_mask(chunked)
    assert isinstance(mask.data, da.Array) and mask.attrs["threshold"] == expected
    np.testing.assert_array_equal(mask.values, mag > expected)
    assert otsu_threshold(xr.DataArray(np.float32([0.3, 0.3, np.nan]))) == pytest.approx(0.3)
    with pytest.raises(InvalidArgumentError, match="no finite value"):
        otsu_threshold(xr.DataArray(np.full(4, np.nan)))


# --- time series ---------------------------------------------------------------------------------------------


def test_decimal_years_and_design():
    t = np.array(["2023-01-01", "2023-12-31T12:00", "2024-03-01"], "datetime64[ns]")
    expected = [2023.0, 2023 + 364.5 / 365, 2024 + 60 / 366]
    np.testing.assert_allclose(decimal_years(t), expected, rtol=1e-12)
    x, names = design_matrix(np.array(expected), harmonics=2, trend=False)
    assert names == ["intercept", "cos1", "sin1", "cos2", "sin2"]
    np.testing.assert_allclose(x[:, 3], np.cos(4 * np.pi * np.array(expected)))
    with pytest.raises(InvalidArgumentError, match="harmonics"):
        design_matrix(np.array(expected), harmonics=4)


def _synthetic_ndvi(seed=0, ny=30, nx=30, drop=0.3, noise=0.02, cloud=0.3):
    """An NDVI-like series with known truth: annual cycle, irregular revisits (2-12 days), clouds, a clearing."""
    r = np.random.default_rng(seed)
    days = np.cumsum(np.r_[0, r.integers(2, 13, 400)])
    t = np.datetime64("2019-01-01") + days[days < 4 * 365].astype("timedelta64[D]")
    years = decimal_years(t)
    phase, amp, base = r.uniform(0, 2 * np.pi, (ny, nx)), r.uniform(0.05, 0.2, (ny, nx)), r.uniform(0.3, 0.7, (ny, nx))
    y = base + amp * np.cos(2 * np.pi * years[:, None, None] + phase) + r.normal(0, noise, (len(t), ny, nx))
    changed = np.zeros((ny, nx), bool)
    changed[8:20, 6:18] = True
    when = np.datetime64("2022-05-10")
    y[(t >= when)[:, None, None] & changed] -= drop
    clouds = r.random(y.shape) < cloud
    y[r.random(y.shape) < 0.05] = np.nan  # missing scenes / nodata besides the clouds
    series = xr.DataArray(y.astype(np.float32), dims=("time", "y", "x"), coords={"time": t})
    return series, xr.DataArray(clouds, dims=series.dims, coords=series.coords), changed, when


def _scores(detected: np.ndarray, changed: np.ndarray) -> tuple[float, float]:
    tp, fn, fp = (detected & changed).sum(), (~detected & changed).sum(), (detected & ~changed).sum()
    return 2 * tp / (2 * tp + fn + fp), fp / (~changed).sum()


def _date_errors(out, series, clouds, changed, when):
    """Break date minus the true date (days), and minus the first clear observation on or after it (observations)."""
    t = series.time.values
    clear = series.notnull().values & ~clouds.values
    days, obs = [], []
    for iy, ix in zip(*np.nonzero(changed & (out.detected.values == 1))):
        got = out.break_date.values[iy, ix]
        days.append((got - when) / np.timedelta64(1, "D"))
        valid = np.flatnonzero(clear[:, iy, ix])
        first = valid[np.searchsorted(t[valid], when)]
        obs.append(np.searchsorted(t[valid], got) - np.searchsorted(t[valid], t[first]))
    return np.array(days), np.array(obs)


def test_harmonic_fit_numpy_vs_dask_vs_lstsq():
    series, clouds, _, _ = _synthetic_ndvi(ny=6, nx=7)
    fit = harmonic_fit(series, harmonics=2, mask=clouds, end="2022-01-01")
    lazy = harmonic_fit(series.chunk({"y": 3, "x": 4}), harmonics=2, mask=clouds.chunk({"y": 3, "x": 4}), end="2022-01-01")
    for v in fit.data_vars:
        np.testing.assert_array_equal(fit[v].values, lazy[v].values)
    years = decimal_years(series.time.values)
    keep = series.time.values < np.datetime64("2022-01-01")
    cols = [np.ones(keep.sum()), years[keep] - years[0]]
    for k in (1, 2):
        cols += [np.cos(2 * np.pi * k * years[keep]), np.sin(2 * np.pi * k * years[keep])]
    x = np.stack(cols, axis=1)
    for iy in range(6):
        for ix in range(7):
            y = series.values[keep, iy, ix].astype(np.float64)
            ok = np.isfinite(y) & ~clouds.values[keep, iy, ix]
            beta = np.linalg.lstsq(x[ok], y[ok], rcond=None)[0]
            np.testing.assert_allclose(fit.coefficients.values[:, iy, ix], beta, rtol=1e-4, atol=1e-5)
            assert fit.n_obs.values[iy, ix] == ok.sum()
    assert list(fit.coef.values) == ["intercept", "trend", "cos1", "sin1", "cos2", "sin2"]
    assert fit.attrs["time_origin"] == years[0] and (fit.reason.values == 0).all()


def test_bfast_monitor_on_synthetic_ndvi_with_clouds_and_irregular_revisits():
    series, clouds, changed, when = _synthetic_ndvi()
    out = bfast_monitor(series, "2022-01-01", harmonics=2, trend=False, mask=clouds)
    lazy = bfast_monitor(series.chunk({"y": 10, "x": 15}), "2022-01-01", harmonics=2, trend=False, mask=clouds.chunk({"y": 10, "x": 15}))
    for v in out.data_vars:
        np.testing.assert_array_equal(out[v].values, lazy[v].values)
    assert (out.reason.values == 0).all()
    f1, far = _scores(out.detected.values == 1, changed)
    days, obs = _date_errors(out, series, clouds, changed, when)
    print(f"\nBFAST Monitor, synthetic NDVI: F1 {f1:.3f}, false alarms {far:.2%}, "
          f"break date - truth: median {np.median(days):.0f} d, max {days.max():.0f} d; in clear observations: "
          f"{np.bincount(np.clip(obs, 0, None))} ({(obs < 0).sum()} early)")
    assert f1 >= 0.9 and far <= 0.02
    # a drop of 15 sigma: the MOSUM (scaled by sigma sqrt(n), n ~ 100) crosses at the 1st or 2nd clear observation
    assert np.median(obs) <= 1 and ((obs >= 0) & (obs <= 2)).mean() > 0.95
    assert out.magnitude.values[changed].mean() == pytest.approx(-0.3, abs=0.05)


def test_bfast_monitor_process_output_and_reasons():
    series, clouds, changed, _ = _synthetic_ndvi(ny=4, nx=5)
    series[: len(series.time) * 3 // 4, 0, 0] = np.nan  # no history left at one pixel
    out = bfast_monitor(series, "2022-01-01", harmonics=1, mask=clouds, process=True)
    assert out.reason.values[0, 0] == 1 and out.detected.values[0, 0] == 255 and np.isnat(out.break_date.values[0, 0])
    assert np.isnan(out.magnitude.values[0, 0])
    mon = series.time.values >= np.datetime64("2022-01-01")
    assert np.isnan(out.mosum.values[~mon]).all() and np.isfinite(out.boundary.values[mon][:, 1, 1]).any()
    # the first crossing of the returned process is the returned break
    for iy, ix in zip(*np.nonzero(out.detected.values == 1)):
        crossing = np.abs(out.mosum.values[:, iy, ix]) > out.boundary.values[:, iy, ix]
        assert out.break_date.values[iy, ix] == series.time.values[np.argmax(crossing)]
    assert out.attrs["critical_value"] == mosum_critical_value(0.25, 0.05, 10)


def test_time_series_errors():
    series, _, _, _ = _synthetic_ndvi(ny=2, nx=2)
    with pytest.raises(InvalidArgumentError, match="after the last date"):
        bfast_monitor(series, "2030-01-01")
    with pytest.raises(InvalidArgumentError, match="no history"):
        bfast_monitor(series, "2000-01-01")
    with pytest.raises(InvalidArgumentError, match="sortby"):
        bfast_monitor(series.isel(time=slice(None, None, -1)), "2022-01-01")
    with pytest.raises(InvalidArgumentError, match="alpha"):
        bfast_monitor(series, "2022-01-01", alpha=0.1)
    with pytest.raises(InvalidArgumentError, match="DataArray"):
        harmonic_fit(series.to_dataset(name="ndvi"))


# --- the synthetic archive: its clearing event, through geoproc.load and cloud_mask ---------------------------


@pytest.fixture(scope="module")
def long_archive(tmp_path_factory):
    """2 years (73 dates, 10-day revisit) of one 96 x 96 px tile: the clearing is at date 36."""
    from geoproc.testing import generate_archive

    return generate_archive(tmp_path_factory.mktemp("long"), size=96, dates=73, tiles=1, seed=3, revisit_days=10)


def test_monitors_find_the_archive_clearing(long_archive):
    """The archive's clearing (vegetation -> bare soil in truth.json's patch, at its date index).

    archive.py's only seasonal signal is a single half-sine hump of the vegetation NIR over the whole
    series (not an annual cycle), so an annual-harmonic model of NDVI is misspecified there; the red
    band carries no season, so it is monitored here (NDVI with real seasons: the synthetic test above).
    """
    import geoproc

    meta = json.load(open(f"{long_archive.root}/truth.json"))
    ds = geoproc.load(geoproc.search(long_archive.catalog), ["red", "scl"], resolution=10)
    clouds = geoproc.cloud_mask(ds)
    x0, y0, x1, y1 = meta["change"]["bounds"]
    xs, ys = np.meshgrid(ds.x.values, ds.y.values)
    changed = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)
    assert changed.sum() > 300
    at = meta["change"]["date_index"]
    times = ds.time.values
    when = times[at]
    window = slice(0, at + 12)  # four months of monitoring, from 40 days before the clearing
    red, mask = ds.red.isel(time=window), clouds.isel(time=window)
    out = bfast_monitor(red, times[at - 4], harmonics=1, trend=False, alpha=0.001, mask=mask).compute()
    # ROC (tested at 0.1 %, crossing at bfast's 5 % boundary) leaves a handful of pixels a stable history of 6-7
    # observations, too few for a MOSUM window (floor(0.25 n) <= 1): no result there, as R's bfastmonitor
    assert (out.reason.values == 0).mean() > 0.999 and set(np.unique(out.reason.values)) <= {0, 1}
    f1, far = _scores(out.detected.values == 1, changed)
    days, obs = _date_errors(out, red.compute(), mask.compute(), changed, when)
    print(f"\nBFAST Monitor, archive clearing (red): F1 {f1:.3f}, false alarms {far:.2%}, break date - truth: "
          f"median {np.median(days):.0f} d (max {days.max():.0f}); in clear observations: median {np.median(obs):.0f}")
    assert f1 >= 0.9 and far <= 0.02 and np.median(obs) == 0


# --- strucchange's table pinned literally; every parameter of the monitors moves the result as the formulas say ----

# R strucchange 1.5-3, monitorMECritvalTable[h, period, 1 - alpha, "max"] (file R/critvals-monitoring.R), printed
# with options(digits = 15): for 1 - alpha = 0.95, 0.975, 0.99, 0.995, 0.999; rows h = 0.25, 0.5, 1; columns
# period = 2, 4, 6, 8, 10.
STRUCCHANGE_MONITOR_ME_CRITVALS = {
    0.05: {
        0.25: (1.22762665817831, 1.33623105388957, 1.34108685187662, 1.34165681503561, 1.34182451007628),
        0.5: (1.68732328328598, 1.88633090100410, 1.89958445059510, 1.90129850983572, 1.90200317899371),
        1.0: (2.22408818231127, 2.70443676308234, 2.73714807589866, 2.74287924359951, 2.74592761324742),
    },
    0.025: {
        0.25: (1.32335166269351, 1.42022026752427, 1.42362459481656, 1.42380433491698, 1.42381861952310),
        0.5: (1.84186416555787, 2.03402198587187, 2.04266224216936, 2.04423035024309, 2.04438785665452),
        1.0: (2.48305431089417, 2.95537968710744, 2.97653791054636, 2.97934036146678, 2.98001396428591),
    },
    0.01: {
        0.25: (1.43326294742430, 1.51983679278537, 1.52159988186384, 1.52162850629023, 1.52164497279622),
        0.5: (2.03146339358619, 2.20116995886405, 2.20853516508261, 2.20875377365514, 2.20907282819197),
        1.0: (2.79961591720564, 3.25282963626160, 3.27400632880909, 3.27485973776243, 3.27693245691716),
    },
    0.005: {
        0.25: (1.50729964467061, 1.59695604364839, 1.59797111384019, 1.59797111384019, 1.59797111384019),
        0.5: (2.15191486007068, 2.32051977467861, 2.32525489078505, 2.32552183073452, 2.32552183073452),
        1.0: (3.02945819897377, 3.46025134389695, 3.47339264373285, 3.47422654487876, 3.47422654487876),
    },
    0.001: {
        0.25: (1.67397676536158, 1.74550948894458, 1.74550948894458, 1.74550948894458, 1.74550948894458),
        0.5: (2.43457585062277, 2.56886151964252, 2.57025529149703, 2.57025529149703, 2.57025529149703),
        1.0: (3.45472681303725, 3.93535696186154, 3.94102916093653, 3.94102916093653, 3.94102916093653),
    },
}


def test_mosum_critical_values_are_strucchanges():
    for alpha, rows in STRUCCHANGE_MONITOR_ME_CRITVALS.items():
        for h, row in rows.items():
            for period, value in zip((2, 4, 6, 8, 10), row):
                assert mosum_critical_value(h, alpha, period) == value, (alpha, h, period)
    assert mosum_critical_value() == 1.34182451007628  # bfastmonitor's defaults: h 0.25, level 0.05, end 10
    with pytest.raises(InvalidArgumentError, match="period"):
        mosum_critical_value(0.25, 0.05, 3)
    with pytest.raises(InvalidArgumentError, match="h=0.3"):
        mosum_critical_value(0.3, 0.05, 10)


def _season_design(years: np.ndarray, harmonics: int, trend: bool, origin: float) -> np.ndarray:
    """bfastmonitor's season-trend model written out: 1, t - t0, cos(2 pi k t), sin(2 pi k t)."""
    cols = [np.ones_like(years)] + ([years - origin] if trend else [])
    for k in range(1, harmonics + 1):
        cols += [np.cos(2 * np.pi * k * years), np.sin(2 * np.pi * k * years)]
    return np.stack(cols, axis=1)


def _bfast_monitor_reference(y, ok, years, hist, mon, h, lam, harmonics, trend):
    """strucchange mefp(OLS-MOSUM) + monitor for one series in float64: history = valid observations from ``hist``
    to before ``mon``; process at the i-th valid observation (i > n) = sum of the last floor(h n) residuals over
    sigma sqrt(n); boundary lam sqrt(2 log+(i / n)); the break is the first crossing. Returns the break index (-1
    for none), the median monitoring residual, sigma and n."""
    t = np.flatnonzero(ok & (np.arange(len(y)) >= hist))
    x = _season_design(years, harmonics, trend, years[hist])[t]
    hist_part = t < mon
    n, p = int(hist_part.sum()), x.shape[1]
    beta = np.linalg.lstsq(x[hist_part], y[t][hist_part].astype(np.float64), rcond=None)[0]
    e = y[t].astype(np.float64) - x @ beta
    sigma = np.sqrt(np.sum(e[:n] ** 2) / (n - p))
    k = int(np.floor(h * n))
    for i in range(n + 1, len(t) + 1):  # i-th valid observation, 1-based
        process = e[i - k : i].sum() / (sigma * np.sqrt(n))
        boundary = lam * np.sqrt(2 * max(1.0, np.log(i / n)))
        if abs(process) > boundary:
            return t[i - 1], np.median(e[n:]), sigma, n
    return -1, np.median(e[n:]), sigma, n


def _monitor_series(seed=5, pixels=24):
    """Two years of history and one of monitoring, 8-day revisits; drops of several sizes (some small enough that
    the window and the start date decide whether and when they are found), a few missing observations."""
    r = np.random.default_rng(seed)
    t = np.arange("2020-01-01", "2023-01-01", 8, dtype="datetime64[D]").astype("datetime64[ns]")
    years = decimal_years(t)
    y = 0.6 + 0.15 * np.cos(2 * np.pi * years)[:, None] + r.normal(0, 0.03, (len(t), pixels))
    drop_at = np.searchsorted(t, np.datetime64("2022-04-01"))
    y[drop_at:, :] -= np.linspace(0.0, 0.12, pixels)[None, :]
    y[drop_at - 20 : drop_at - 14, 3] -= 0.2  # a short dip just before the monitoring start of some runs
    y[r.random(y.shape) < 0.05] = np.nan
    return xr.DataArray(y.astype(np.float32), dims=("time", "x"), coords={"time": t}), years


@pytest.mark.parametrize("h, monitor_start", [(0.25, "2022-01-01"), (0.5, "2022-01-01"), (1.0, "2022-01-01"),
                                              (0.25, "2021-09-15"), (0.5, "2022-02-03")])
def test_bfast_monitor_h_and_monitor_start_as_strucchange(h, monitor_start):
    series, years = _monitor_series()
    lam = STRUCCHANGE_MONITOR_ME_CRITVALS[0.05][h][4]
    out = bfast_monitor(series, monitor_start, h=h, harmonics=1, trend=True, history="all")
    times = series.time.values
    mon = int(np.searchsorted(times, np.datetime64(monitor_start), side="left"))  # the first date on or after it
    assert out.attrs["monitor_start"] == str(times[mon]) and out.attrs["critical_value"] == lam
    y = series.values.astype(np.float64)
    breaks = 0
    for i in range(y.shape[1]):
        brk, mag, sigma, n = _bfast_monitor_reference(y[:, i], np.isfinite(y[:, i]), years, 0, mon, h, lam, 1, True)
        assert int(out.n_history[i]) == n
        want = np.datetime64("NaT") if brk < 0 else times[brk]
        assert (np.isnat(out.break_date.values[i]) and brk < 0) or out.break_date.values[i] == want, (i, brk)
        np.testing.assert_allclose(float(out.sigma[i]), sigma, rtol=1e-4)
        np.testing.assert_allclose(float(out.magnitude[i]), mag, rtol=1e-4, atol=1e-6)
        breaks += brk >= 0
    assert 0 < breaks < y.shape[1]  # found for the large drops, not for the smallest


def test_bfast_monitor_window_and_start_change_the_result():
    """Not only equal to the reference: h and monitor_start do move breaks on this series."""
    series, _ = _monitor_series()
    dates = {h: bfast_monitor(series, "2022-01-01", h=h, harmonics=1, history="all").break_date.values for h in (0.25, 0.5, 1.0)}
    assert not np.array_equal(dates[0.25], dates[0.5], equal_nan=True)
    assert not np.array_equal(dates[0.5], dates[1.0], equal_nan=True)
    k = 90
    times = series.time.values
    early = bfast_monitor(series, times[k], harmonics=1, history="all")
    later = bfast_monitor(series, times[k + 1], harmonics=1, history="all")  # one observation later
    assert early.attrs["monitor_start"] == str(times[k]) and later.attrs["monitor_start"] == str(times[k + 1])
    # the history grows by observation k where it is valid; the history ends before monitor_start
    np.testing.assert_array_equal(later.n_history.values - early.n_history.values, np.isfinite(series.values[k]))
    assert not np.array_equal(early.sigma.values, later.sigma.values)


def test_defaults_are_bfastmonitors():
    """bfastmonitor (R package bfast): formula response ~ trend + harmon, order = 3, h = 0.25, level = 0.05, end = 10
    (CCDC's defaults, pyccd's: tests/test_ccdc.py)."""
    import inspect

    def defaults(f):
        return {k: p.default for k, p in inspect.signature(f).parameters.items() if p.default is not inspect.Parameter.empty}

    b = defaults(bfast_monitor)
    assert (b["harmonics"], b["trend"], b["h"], b["alpha"], b["period"], b["history"]) == (3, True, 0.25, 0.05, 10, "ROC")
    assert (defaults(harmonic_fit)["harmonics"], defaults(harmonic_fit)["trend"]) == (3, True)
    series, _ = _monitor_series(pixels=4)
    out = bfast_monitor(series, "2022-01-01")
    assert (out.attrs["harmonics"], out.attrs["trend"], out.attrs["h"], out.attrs["alpha"], out.attrs["period"]) == (3, 1, 0.25, 0.05, 10)
    assert out.attrs["critical_value"] == 1.34182451007628


def test_harmonic_fit_start_end_and_min_obs():
    series, years = _monitor_series(pixels=4)
    t = series.time.values
    y = series.values.astype(np.float64)
    fit = harmonic_fit(series, harmonics=2, start="2020-06-01", end="2021-06-01")
    first, stop = int(np.searchsorted(t, np.datetime64("2020-06-01"))), int(np.searchsorted(t, np.datetime64("2021-06-01")))
    assert fit.attrs == {"time_origin": float(years[first]), "harmonics": 2, "trend": 1}
    x = _season_design(years, 2, True, years[first])
    for i in range(4):
        ok = np.isfinite(y[:, i]) & (np.arange(len(t)) >= first) & (np.arange(len(t)) < stop)
        beta = np.linalg.lstsq(x[ok], y[ok, i], rcond=None)[0]
        np.testing.assert_allclose(fit.coefficients.values[:, i], beta, rtol=1e-4, atol=1e-5)
        assert int(fit.n_obs[i]) == ok.sum()
        rmse = np.sqrt(np.sum((y[ok, i] - x[ok] @ beta) ** 2) / (ok.sum() - x.shape[1]))
        np.testing.assert_allclose(float(fit.rmse[i]), rmse, rtol=1e-4)
    assert fit.n_obs.dtype == np.int16 and fit.reason.dtype == np.uint8 and (fit.reason.values == 0).all()
    assert list(fit.coef.values) == ["intercept", "trend", "cos1", "sin1", "cos2", "sin2"]
    no_trend = harmonic_fit(series, harmonics=1, trend=False)
    assert list(no_trend.coef.values) == ["intercept", "cos1", "sin1"] and no_trend.attrs["trend"] == 0
    n = int(fit.n_obs.values.max())
    strict = harmonic_fit(series, harmonics=2, start="2020-06-01", end="2021-06-01", min_obs=n + 1)
    assert (strict.reason.values == 1).all() and np.isnan(strict.coefficients.values).all()
    with pytest.raises(InvalidArgumentError, match="no date between"):
        harmonic_fit(series, start="2021-01-01", end="2021-01-01")


def test_monitor_outputs_history_start_trend_and_min_obs():
    series, years = _monitor_series(pixels=6)
    t = series.time.values
    hist = int(np.searchsorted(t, np.datetime64("2020-07-01")))
    mon = int(np.searchsorted(t, np.datetime64("2022-01-01")))
    y = series.values.astype(np.float64)
    bf = bfast_monitor(series, "2022-01-01", history="2020-07-01", harmonics=1, trend=False)
    assert bf.attrs["history"] == str(t[hist]) and bf.attrs["time_origin"] == float(years[hist])
    for i in range(6):
        h = np.isfinite(y[:, i]) & (np.arange(len(t)) >= hist) & (np.arange(len(t)) < mon)
        assert int(bf.n_history[i]) == h.sum()
    for out in (bf, harmonic_fit(series, harmonics=1)):
        assert "time" not in out.coords and "time" not in out.dims  # per-pixel results: the time axis is gone
    for out in (bf,):
        assert out.detected.dtype == np.uint8 and out.reason.dtype == np.uint8 and out.n_history.dtype == np.int16
        assert out.break_date.dtype == np.dtype("datetime64[ns]")
        assert out.detected.attrs == {"nodata": 255, "flag_values": [0, 1], "flag_meanings": "no_break break"}
        assert out.reason.attrs == {
            "flag_values": [0, 1, 2, 3],
            "flag_meanings": "ok too_few_valid_observations_in_the_history_period no_valid_observation_in_the_monitoring_period "
                             "model_not_determined_by_the_valid_dates_(collinear)_or_zero_residual_variance",
        }
        assert np.isnan(out.magnitude.attrs["nodata"])
        hit = out.detected.values == 1
        assert hit.any() and (~np.isnat(out.break_date.values[hit])).all() and np.isnat(out.break_date.values[~hit]).all()
    assert "sigma" in bf
    # min_obs: more valid history observations than there are: every pixel is "too few" (reason 1, nodata 255)
    for f in (bfast_monitor,):
        few = f(series, "2022-01-01", harmonics=1, min_obs=len(t))
        assert (few.reason.values == 1).all() and (few.detected.values == 255).all() and np.isnat(few.break_date.values).all()
        assert (f(series, "2022-01-01", harmonics=1, min_obs=10).reason.values == 0).all()
    # dask input: the same datasets
    lazy = bfast_monitor(series.chunk({"x": 2}), "2022-01-01", history="2020-07-01", harmonics=1, trend=False)
    for v in bf.data_vars:
        np.testing.assert_array_equal(lazy[v].values, bf[v].values)


def test_monitors_decode_stored_integers_like_floats():
    """A band stored as uint16 with scale/offset/nodata attrs (geoproc.load(..., raw=True)) gives the results of the
    same band decoded to float32 first (NaN at nodata), in every model, with and without a cloud mask."""
    series, _ = _monitor_series(pixels=8)
    scale, offset = 2.75e-5, -0.2
    raw = np.round((series.values - offset) / scale)
    raw = np.where(np.isnan(raw), 0, raw).astype(np.uint16)
    stored = series.copy(data=raw)
    stored.attrs = {"scale": scale, "offset": offset, "nodata": 0}
    f = np.float32
    decoded = series.copy(data=np.where(raw == 0, np.nan, raw.astype(f) * f(scale) + f(offset)).astype(f))
    clouds = xr.DataArray(np.random.default_rng(2).random(series.shape) < 0.2, dims=series.dims, coords=series.coords)
    for mask in (None, clouds):
        pairs = [
            (harmonic_fit(stored, harmonics=2, mask=mask), harmonic_fit(decoded, harmonics=2, mask=mask)),
            (bfast_monitor(stored, "2022-01-01", harmonics=1, mask=mask), bfast_monitor(decoded, "2022-01-01", harmonics=1, mask=mask)),
        ]
        for a, b in pairs:
            for v in a.data_vars:
                np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    masked = harmonic_fit(decoded, harmonics=2, mask=clouds)
    assert (masked.n_obs.values < harmonic_fit(decoded, harmonics=2).n_obs.values).all()


def test_bfast_monitor_level_period_critical_value_and_process():
    """alpha and period pick strucchange's lambda (literal values above); critical_value overrides it; the process
    and boundary come out on the time axis, NaN before the monitoring period."""
    series, years = _monitor_series(pixels=6)
    t = series.time.values
    mon = int(np.searchsorted(t, np.datetime64("2022-01-01")))
    y = series.values.astype(np.float64)
    for kw, lam in (({"alpha": 0.01, "period": 4, "h": 0.5}, 2.20116995886405),
                    ({"alpha": 0.001, "period": 2}, 1.67397676536158),
                    ({"critical_value": 0.8, "alpha": 0.01}, 0.8)):
        out = bfast_monitor(series, "2022-01-01", harmonics=1, process=True, history="all", **kw)
        assert out.attrs["critical_value"] == lam
        h = kw.get("h", 0.25)
        for i in range(6):
            brk, _, _, n = _bfast_monitor_reference(y[:, i], np.isfinite(y[:, i]), years, 0, mon, h, lam, 1, True)
            got = out.break_date.values[i]
            assert (brk < 0 and np.isnat(got)) or got == t[brk], (kw, i)
        assert out.mosum.dims == ("time", "x") and out.boundary.dims == ("time", "x")
        np.testing.assert_array_equal(out.mosum.time.values, t)
        assert np.isnan(out.mosum.values[:mon]).all() and np.isnan(out.boundary.values[:mon]).all()
        valid = np.isfinite(y[mon:, 0])
        n = int(out.n_history[0])
        i = n + np.cumsum(valid)[valid]  # the 1-based index of each valid monitoring observation
        np.testing.assert_allclose(out.boundary.values[mon:, 0][valid], lam * np.sqrt(2 * np.maximum(1.0, np.log(i / n))), rtol=1e-6)
    assert "mosum" not in bfast_monitor(series, "2022-01-01", harmonics=1)
