"""BFAST Monitor against R: the same series through geoproc.bfast_monitor and R's bfastmonitor steps.

R (strucchange's efp / sctest / boundary / mefp / monitor, zoo, lm; tests/r_reference.py) computes
the stable history (ROC), the OLS-MOSUM process, the boundary, the break and the magnitude of
each series; geoproc must agree within 1e-6. Series: regular ts in R's decimal years
(frequency 23), MODIS 16-day and irregular dates made regular as bfastts does, real
Sentinel-2 NDVI from ../shared/data (eo-learn's TestEOPatch), and a harvest-like MODIS
plantation series with a disturbed history.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr

from geoproc.bfast import bfast_monitor, ts_time
from geoproc.errors import InvalidArgumentError
from tests.helpers import missing_data
from tests.r_reference import bfastmonitor_r

TOL = 1e-6
#: the largest differences from R seen by the tests of this module (printed at the end of the R tests)
WORST = {"process": 0.0, "boundary": 0.0, "break": 0.0, "history": 0.0, "magnitude": 0.0}


def _compare(out, r_results, years, series, label: str) -> dict:
    """Assert geoproc's result per pixel equals R's within TOL; returns counts of breaks and cut histories."""
    counts = {"breaks": 0, "cut": 0}
    for i, r in enumerate(r_results):
        assert int(out.n_history[i]) == int(r["n"]), (label, i)
        got_hist = float(out.history_time[i])
        WORST["history"] = max(WORST["history"], abs(got_hist - r["history"]))
        assert abs(got_hist - r["history"]) < TOL, (label, i, got_hist, r["history"])
        counts["cut"] += got_hist > years[np.isfinite(series.values[:, i])][0]
        process = out.mosum.values[:, i]
        keep = np.isfinite(process)
        np.testing.assert_allclose(years[keep], r["time"], rtol=0, atol=TOL)
        d_proc = np.abs(process[keep] - r["process"]).max()
        d_bound = np.abs(out.boundary.values[keep, i] - r["boundary"]).max()
        WORST["process"] = max(WORST["process"], d_proc)
        WORST["boundary"] = max(WORST["boundary"], d_bound)
        assert d_proc < TOL and d_bound < TOL, (label, i, d_proc, d_bound)
        got_break = float(out.break_time[i])
        if np.isnan(r["breakpoint"]):
            assert np.isnan(got_break) and int(out.detected[i]) == 0, (label, i, got_break)
        else:
            WORST["break"] = max(WORST["break"], abs(got_break - r["breakpoint"]))
            assert abs(got_break - r["breakpoint"]) < TOL, (label, i, got_break, r["breakpoint"])
            counts["breaks"] += 1
        # magnitude and sigma are float32 outputs: equal to R's to float32 precision
        WORST["magnitude"] = max(WORST["magnitude"], abs(float(out.magnitude[i]) - r["magnitude"]))
        np.testing.assert_allclose(float(out.magnitude[i]), r["magnitude"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(out.sigma[i]), r["sigma"], rtol=1e-6)
    return counts


def _run(series: xr.DataArray, monitor_start, **kw) -> xr.Dataset:
    out = bfast_monitor(series, monitor_start, process=True, **kw)
    years = ts_time(series.time.values, kw.get("frequency"))
    out["history_time"] = xr.DataArray(_lookup_years(out.history_start.values, series.time.values, years), dims=out.n_history.dims)
    return out


def _lookup_years(when: np.ndarray, times: np.ndarray, years: np.ndarray) -> np.ndarray:
    hit = [np.flatnonzero(times == w) for w in when]
    return np.array([years[i[0]] if i.size else np.nan for i in hit])


def _regular(seed: int, pixels: int = 18, t_len: int = 230):
    """A regular ts of `t_len` 16-day steps from 2000 (frequency 23) in decimal years: season, noise, gaps; old
    disturbances in some histories (a step, a dip with regrowth), drops of several sizes in the monitoring period."""
    r = np.random.default_rng(seed)
    years = 2000 + np.arange(t_len) * (1 / 23)
    y = (0.6 + r.uniform(0.05, 0.15, pixels) * np.cos(2 * np.pi * years[:, None] + r.uniform(0, 6, pixels))
         + 0.01 * (years[:, None] - 2000) * r.normal(0, 1, pixels) + r.normal(0, 0.03, (t_len, pixels)))
    y[years < 2002.5, : pixels // 3] -= 0.25  # an old clearing, regrown by mid-2002
    dip = (years >= 2003.2) & (years < 2003.8)
    y[np.ix_(dip, np.arange(pixels // 3, pixels // 2))] -= 0.2
    y[years >= 2008.4, :] -= np.linspace(0, 0.3, pixels)[None, :]
    y[r.random(y.shape) < 0.15] = np.nan
    return xr.DataArray(y.astype(np.float32), dims=("time", "x"), coords={"time": years}), years


@pytest.mark.parametrize(
    "kw, r_kw",
    [
        ({}, {}),  # bfastmonitor's defaults: ROC, order 3 with trend, h 0.25, level 0.05, end 10
        ({"history": "all", "h": 0.5, "alpha": 0.01, "harmonics": 2}, {"history": "all", "h": 0.5, "level": 0.01, "order": 2}),
        ({"alpha": 0.01, "h": 0.5}, {"level": 0.01, "h": 0.5}),  # ROC tested at 1 %, crossing the 5 % boundary (bfast)
        ({"history": 2003.0, "trend": False, "harmonics": 1, "h": 1.0, "period": 4},
         {"history": 2003.0, "trend": False, "order": 1, "h": 1.0, "end": 4}),
    ],
    ids=["defaults", "all-h0.5-level0.01", "roc-level0.01", "fixed-start-no-trend"],
)
def test_regular_ts_in_decimal_years_as_r(kw, r_kw):
    series, years = _regular(seed=3)
    out = _run(series, (2008, 1), frequency=23, **kw)
    r = bfastmonitor_r(series.values, 2008.0, start=2000.0, frequency=23, **r_kw)
    counts = _compare(out, r, years, series, str(kw))
    assert counts["breaks"] >= 6  # the larger drops are found
    if kw.get("history", "ROC") == "ROC":
        assert counts["cut"] >= 6  # ROC cuts the disturbed histories (the first third of the pixels)
        assert out.attrs["history"] == "ROC"


def _modis_days(first: int, last: int) -> np.ndarray:
    """MODIS 16-day composite dates: days 1, 17, ..., 353 of each year."""
    return np.array([np.datetime64(f"{y}-01-01") + np.timedelta64(d, "D") for y in range(first, last + 1) for d in range(0, 365, 16)])


def test_dates_made_regular_as_bfastts():
    """MODIS 16-day dates (frequency 23), dekads (days 1, 11, 21 of each month: 36) and irregular 5-10-day dates
    (frequency 365): R converts the dates itself."""
    r = np.random.default_rng(8)
    days16 = _modis_days(2001, 2009)
    dekads = np.array([np.datetime64(f"{y}-{m:02d}-{d:02d}") for y in range(2010, 2016) for m in range(1, 13) for d in (1, 11, 21)])
    irregular = np.datetime64("2015-03-02") + np.cumsum(r.integers(5, 11, 300)).astype("timedelta64[D]")
    for days, freq, start in ((days16, 23, "2008-01-01"), (dekads, 36, "2015-01-01"), (irregular, 365, "2019-02-01")):
        years = ts_time(days, freq)
        y = 0.5 + 0.2 * np.sin(2 * np.pi * years[:, None]) + r.normal(0, 0.03, (len(days), 8))
        y[-len(days) // 6 :, :4] -= 0.3
        y[r.random(y.shape) < 0.2] = np.nan
        series = xr.DataArray(y.astype(np.float32), dims=("time", "x"), coords={"time": days.astype("datetime64[ns]")})
        out = _run(series, start, frequency=freq)
        mon = float(ts_time(np.array([start], "datetime64[D]"), freq)[0])
        res = bfastmonitor_r(series.values, mon, frequency=freq, days=days.astype("datetime64[D]").astype(np.int64))
        counts = _compare(out, res, years, series, f"dates/{freq}")
        assert counts["breaks"] >= 4
        hit = out.detected.values == 1
        assert (out.break_date.values[hit] >= np.datetime64(start)).all()


def _eolearn(shared_data):
    folder = os.path.join(shared_data, "eolearn", "TestEOPatch")
    if not os.path.isdir(folder):
        missing_data(f"{folder} is missing (real Sentinel-2 NDVI series)")
    stamps = [s[:10] for s in json.load(open(os.path.join(folder, "timestamps.json")))]
    days = np.array(stamps, "datetime64[D]")
    ndvi = np.load(os.path.join(folder, "data", "NDVI.npy"))[..., 0]
    clouds = np.load(os.path.join(folder, "mask", "CLM.npy"))[..., 0] > 0
    keep = np.r_[True, np.diff(days) > np.timedelta64(0, "D")]  # two acquisitions on one day: bfastts keeps one
    return days[keep], ndvi[keep], clouds[keep]


def test_real_sentinel2_ndvi_as_r(shared_data):
    """eo-learn's TestEOPatch (Slovenia, 2015-07..2017-12): 32 pixels' cloud-masked NDVI, monitored from 2017."""
    days, ndvi, clouds = _eolearn(shared_data)
    r = np.random.default_rng(0)
    iy, ix = r.integers(0, ndvi.shape[1], 32), r.integers(0, ndvi.shape[2], 32)
    y = np.where(clouds[:, iy, ix], np.nan, ndvi[:, iy, ix]).astype(np.float32)  # NDVI.npy holds float32
    series = xr.DataArray(y, dims=("time", "x"), coords={"time": days.astype("datetime64[ns]")})
    out = _run(series, "2017-01-01", frequency=365)
    assert (out.reason.values == 0).all()
    years = ts_time(days, 365)
    res = bfastmonitor_r(y, float(ts_time(np.array(["2017-01-01"], "datetime64[D]"), 365)[0]), frequency=365,
                         days=days.astype(np.int64))
    counts = _compare(out, res, years, series, "eo-learn NDVI")
    print(f"\nreal S2 NDVI, 32 pixels: {counts['breaks']} breaks, {counts['cut']} histories cut by ROC")


def test_harvest_like_modis_series():
    """A MODIS 16-day NDVI plantation: thinned (NDVI 0.2 lower) before 2002, harvested on 2008-07-11, monitored from
    2007 (bfastmonitor's start c(2007, 1)). With the whole history the model is fitted across the thinning and
    raises a false alarm long before the harvest; ROC cuts the history after the thinning. Both as R computes them."""
    days = _modis_days(2000, 2009)
    years = ts_time(days, 23)
    harvest = np.datetime64("2008-07-11")
    r = np.random.default_rng(0)
    pixels = 12
    y = 0.8 + 0.06 * np.cos(2 * np.pi * (years[:, None] - 0.1)) + r.normal(0, 0.025, (len(days), pixels))
    y[years < 2002.0] -= 0.2
    y[days >= harvest] -= 0.4
    y[r.random(y.shape) < 0.1] = np.nan
    y = y.astype(np.float32)
    series = xr.DataArray(y, dims=("time", "x"), coords={"time": days.astype("datetime64[ns]")})
    lead = {}
    for history in ("all", "ROC"):
        out = _run(series, (2007, 1), frequency=23, history=history)
        res = bfastmonitor_r(y, 2007.0, frequency=23, days=days.astype("datetime64[D]").astype(np.int64), history=history)
        _compare(out, res, years, series, f"harvest/{history}")
        lead[history] = (harvest - out.break_date.values) / np.timedelta64(1, "D")
        if history == "ROC":
            assert (out.history_time.values > 2001.0).all()  # ROC cut (most of) the two thinned years off
    print(f"\nharvest-like series, days from the break to the harvest (positive: a false alarm before it): "
          f"all history median {np.median(lead['all']):.0f}, ROC median {np.median(lead['ROC']):.0f}; "
          f"max |difference from R|: {WORST}")
    assert (lead["all"] > 300).all()  # the whole history: alarms a year or more before the harvest
    assert np.median(lead["ROC"]) < np.median(lead["all"]) / 2  # ROC: far later, nearer the harvest


def test_start_forms_dask_and_errors():
    series, years = _regular(seed=4, pixels=6)
    a = bfast_monitor(series, (2008, 1), frequency=23)
    b = bfast_monitor(series, 2008.0)
    lazy = bfast_monitor(series.chunk({"x": 2}), 2008.0, frequency=23)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)
        np.testing.assert_array_equal(a[v].values, lazy[v].values)
    assert a.break_date.dtype == np.float64 and a.attrs["frequency"] == 23 and b.attrs["frequency"] == "calendar"
    with pytest.raises(InvalidArgumentError, match="frequency"):
        bfast_monitor(series, (2008, 1))
    with pytest.raises(InvalidArgumentError, match="decimal years"):
        bfast_monitor(series, "2008-01-01")
    with pytest.raises(InvalidArgumentError, match="whole number"):
        bfast_monitor(series, 2008.0, frequency=0)
    with pytest.raises(InvalidArgumentError, match="BP"):
        bfast_monitor(series, 2008.0, history="BP")
    dated = series.assign_coords(time=_modis_days(2000, 2009)[: series.sizes["time"]].astype("datetime64[ns]"))
    with pytest.raises(InvalidArgumentError, match="365"):
        bfast_monitor(dated, "2008-01-01", frequency=12)
    twice = dated.isel(time=[0, 1, 1, 2])
    with pytest.raises(InvalidArgumentError, match="increase"):
        bfast_monitor(twice, "2008-01-01", frequency=23)
