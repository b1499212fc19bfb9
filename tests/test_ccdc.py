"""CCDC segments against lcmap-pyccd (the reference implementation), kernel pieces against their references."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import geoproc
from geoproc.ccdc import PYCCD_STAT_END, ccdc_segments, chi2_ppf
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.kernels import ccdc as k
from tests.pyccd_reference import BANDS, PYTHON, pyccd_detect, require_pyccd, synthetic_series

NAMES = ("blue", "green", "red", "nir", "swir16", "swir22", "thermal")
EPOCH = 719163  # date(1970, 1, 1).toordinal()


def _landsat_dates(seed: int, start: int, years: int, revisit: int = 16, keep: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.arange(start, start + int(365.25 * years), revisit)
    return d[rng.random(d.size) < keep]


def _dataset(series: list[dict]) -> tuple[xr.Dataset, xr.DataArray, xr.DataArray]:
    """pyccd's inputs as geoproc takes them: reflectance 0-1, thermal in kelvin; mask and snow from the QA."""
    dates = np.array(series[0]["dates"])
    bands = np.array([s["bands"] for s in series], dtype=np.float64)  # (px, 7, T)
    qa = np.array([s["qa"] for s in series]).T  # (T, px)
    ds = xr.Dataset(
        {nm: (("time", "x"), (bands[:, i].T / (10.0 if nm == "thermal" else 1e4)).astype(np.float32))
         for i, nm in enumerate(NAMES)},
        coords={"time": (dates - EPOCH).astype("datetime64[D]").astype("datetime64[ns]")},
    )
    mask = xr.DataArray(np.isin(qa, (2, 4, 255)), dims=("time", "x"))
    snow = xr.DataArray(qa == 3, dims=("time", "x"))
    return ds, mask, snow


def _predict(coefs: np.ndarray, days: np.ndarray) -> np.ndarray:
    w = 2 * np.pi / 365.2425 * days
    cols = [np.ones_like(w), days, np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w), np.cos(3 * w), np.sin(3 * w)]
    return np.stack(cols, -1) @ coefs


def _compare(series, ref, out) -> dict:
    """Segment by segment: counts, dates, and (where the dates agree) the models; returns the tallies."""
    tally = {"pixels": len(series), "segments": 0, "same_dates": 0, "max_days": 0, "max_pred": 0.0, "max_rmse": 0.0}
    for j, models in enumerate(ref):
        assert int(out.n_segments[j]) == len(models), f"pixel {j}: {int(out.n_segments[j])} segments, pyccd {len(models)}"
        for s, m in enumerate(models):
            tally["segments"] += 1
            ours = [int(out[v][s, j]) + EPOCH for v in ("start_day", "end_day", "break_day")]
            theirs = [m["start_day"], m["end_day"], m["break_day"]]
            days = max(abs(a - b) for a, b in zip(ours, theirs))
            tally["max_days"] = max(tally["max_days"], days)
            assert days <= 32, f"pixel {j} segment {s}: {ours} vs pyccd {theirs}"
            if ours != theirs:
                continue
            tally["same_dates"] += 1
            assert int(out.n_obs[s, j]) == m["observation_count"], (j, s)
            assert int(out.curve_qa[s, j]) == m["curve_qa"]
            assert float(out.change_prob[s, j]) == m["change_probability"]
            t = np.linspace(m["start_day"], m["end_day"], 20)
            for b, name in enumerate(BANDS[:6]):  # thermal: pyccd fits kelvin x 10 outside its standard procedure
                theirs_c = np.array([m[name]["intercept"], *m[name]["coefficients"]]) / 1e4
                diff = np.abs(_predict(out.coefs[s, b, :, j].values.astype(np.float64), t) - _predict(theirs_c, t)).max()
                tally["max_pred"] = max(tally["max_pred"], diff)
                rel = abs(float(out.rmse[s, b, j]) * 1e4 - m[name]["rmse"]) / max(m[name]["rmse"], 1.0)
                tally["max_rmse"] = max(tally["max_rmse"], rel)
                assert float(out.magnitude[s, b, j]) * 1e4 == pytest.approx(m[name]["magnitude"], rel=1e-3, abs=0.05)
    return tally


@pytest.fixture(scope="module")
def pyccd():
    require_pyccd()
    return pyccd_detect


def test_segments_match_pyccd_on_synthetic_series(pyccd):
    """Same segments as pyccd: 16-day Landsat series 1985-2017 with up to three changes, clouds and unflagged
    spikes, snow-covered and mostly-cloudy pixels (its other two procedures), and a denser 8-day series (peek
    raised to 12 and the chi-square threshold with it)."""
    groups = [
        synthetic_series(1, 20, _landsat_dates(1, 725000, 32)),
        synthetic_series(2, 2, _landsat_dates(2, 725000, 32), kind="snow")
        + synthetic_series(3, 2, _landsat_dates(2, 725000, 32), kind="cloudy"),
        synthetic_series(4, 6, _landsat_dates(4, 734000, 7, revisit=8, keep=0.95), max_breaks=2),
    ]
    ref, _ = pyccd([s for g in groups for s in g])
    totals, at = [], 0
    for series in groups:
        ds, mask, snow = _dataset(series)
        out = ccdc_segments(ds, mask=mask, snow=snow, stat_end=PYCCD_STAT_END, max_segments=8)
        totals.append(_compare(series, ref[at : at + len(series)], out))
        at += len(series)
    segments = sum(t["segments"] for t in totals)
    same = sum(t["same_dates"] for t in totals)
    print(f"CCDC vs pyccd: {sum(t['pixels'] for t in totals)} pixels, {segments} segments, same number everywhere; "
          f"identical start/end/break dates {same}/{segments}, largest date difference "
          f"{max(t['max_days'] for t in totals)} d; largest model difference {max(t['max_pred'] for t in totals):.2e} "
          f"reflectance, RMSE {max(t['max_rmse'] for t in totals):.1e} relative")
    assert segments >= 40  # the series do exercise several segments per pixel
    assert same >= 0.95 * segments
    assert max(t["max_pred"] for t in totals) < 5e-4
    assert max(t["max_rmse"] for t in totals) < 1e-3
    procs = set()
    for series in groups:
        ds, mask, snow = _dataset(series)
        procs |= set(np.unique(ccdc_segments(ds, mask=mask, snow=snow, max_segments=1).procedure.values).tolist())
    assert {1, 2, 3} <= procs  # standard, insufficient clear and permanent snow all ran


def _real_series(name: str) -> dict:
    rows = np.loadtxt(Path(__file__).parent / "data" / "pyccd" / name, delimiter=",")
    return {"dates": rows[:, 0].astype(int).tolist(), "bands": rows[:, 1:8].T.tolist(), "qa": rows[:, 8].astype(int).tolist()}


def test_segments_match_pyccd_on_real_landsat_series(pyccd):
    """pyccd's own real test pixels (USGS ARD, tests/data/pyccd): 1985-2002 with clouds, shadows, snow and saturated
    observations (standard procedure), and a persistently snowy and cloudy 2012-2016 (its other procedures)."""
    series = [_real_series("WA_grid08_row999_col1_1984-2002.csv"),
              _real_series("WA_grid08_row9_col2267_persistent_snow_2012-2017.csv")]
    ref, _ = pyccd(series)
    segments, procedures = 0, []
    for s, r in zip(series, ref):
        ds, mask, snow = _dataset([s])
        out = ccdc_segments(ds, mask=mask, snow=snow, stat_end=PYCCD_STAT_END)
        tally = _compare([s], [r], out)
        assert tally["same_dates"] == tally["segments"] and tally["max_pred"] < 5e-4
        segments += tally["segments"]
        procedures.append(int(out.procedure[0]))
    # a looser test (3 observations, chi-square 0.9) cuts the 1985-2002 pixel into several segments: the same ones
    ref, _ = pyccd(series[:1], {"PEEK_SIZE": 3, "CHANGE_THRESHOLD": chi2_ppf(0.9, 5)})
    ds, mask, snow = _dataset(series[:1])
    out = ccdc_segments(ds, mask=mask, snow=snow, stat_end=PYCCD_STAT_END, peek=3, change_prob=0.9)
    tally = _compare(series[:1], ref, out)
    assert tally["same_dates"] == tally["segments"] >= 3 and tally["max_pred"] < 5e-4
    print(f"CCDC vs pyccd, real Landsat pixels: {segments} + {tally['segments']} segments (defaults + peek 3, "
          f"p 0.9), all dates identical; procedures {procedures}")
    assert procedures[0] == 1 and procedures[1] in (2, 3)


def test_parameters_mean_what_pyccds_mean(pyccd):
    """Every knob at a value other than its default, on both sides: the same segments (4 detection bands, so a
    chi-square of 4 degrees of freedom; other Tmask bands, window size, span, Tmask constant and thresholds)."""
    series = synthetic_series(12, 5, _landsat_dates(12, 725000, 25))
    params = {"MEOW_SIZE": 16, "DAY_DELTA": 300, "T_CONST": 3.5, "DETECTION_BANDS": [2, 3, 4, 5], "TMASK_BANDS": [2, 5],
              "CHANGE_THRESHOLD": chi2_ppf(0.95, 4), "OUTLIER_THRESHOLD": chi2_ppf(0.9999, 4), "PEEK_SIZE": 5}
    ref, _ = pyccd(series, params)
    ds, mask, snow = _dataset(series)
    out = ccdc_segments(ds, mask=mask, snow=snow, stat_end=PYCCD_STAT_END, min_obs=16, day_delta=300, t_const=3.5,
                        detection_bands=("red", "nir", "swir16", "swir22"), tmask_bands=("red", "swir22"),
                        change_prob=0.95, outlier_prob=0.9999, peek=5)
    tally = _compare(series, ref, out)
    assert tally["same_dates"] == tally["segments"] >= 6
    assert out.attrs["change_threshold"] == chi2_ppf(0.95, 4) and out.attrs["peek"] == 5
    default = ccdc_segments(ds, mask=mask, snow=snow, stat_end=PYCCD_STAT_END)
    assert not default.n_segments.equals(out.n_segments) or not default.break_day.equals(out.break_day)


def test_numpy_sort_port_matches_numpy_1_23():
    """pyccd picks the 24 residuals closest in day of year with numpy's (unstable) argsort: ties at the 24th are
    broken the way numpy 1.23's introsort breaks them, checked against that numpy in pyccd's venv."""
    require_pyccd()
    rng = np.random.default_rng(5)
    arrays = [np.abs(np.round(rng.normal(0, 30, n))) for n in (20, 30, 50, 100, 250)]
    arrays += [np.abs((np.arange(n) * 16.0 % 365.25) - 180) for n in (40, 300)]
    code = "import json, sys, numpy as np; print(json.dumps([np.argsort(np.array(a)).tolist() for a in json.load(sys.stdin)]))"
    run = subprocess.run([PYTHON, "-c", code], input=json.dumps([a.tolist() for a in arrays]), capture_output=True,
                         text=True, check=True)
    for a, ref in zip(arrays, json.loads(run.stdout)):
        np.testing.assert_array_equal(k._argsort_np123(a), ref)


def test_closest_doy_shortcut_equals_the_full_sort():
    rng = np.random.default_rng(6)
    for trial in range(200):
        n = int(rng.integers(25, 300))
        step = int(rng.choice([1, 5, 8, 16]))
        pt = np.cumsum(rng.integers(1, 3, n) * step).astype(np.float64) + 725000
        phase = pt % 365.25
        order = np.argsort(phase)
        ref = pt[int(rng.integers(0, n))] + rng.integers(0, 40)
        full = np.array([abs(k._round_half_even(d / 365.25) * 365.25 - d) for d in pt - ref])
        fast = k._closest_doy(pt, 0, n, float(ref), phase[order], order)
        assert set(fast.tolist()) == set(k._closest24(full).tolist()) == set(k._argsort_np123(full)[:24].tolist())


def test_lasso_kernel_matches_scikit_learn():
    """The kernel's Lasso is scikit-learn's ``Lasso(alpha=1)`` on pyccd's design (coordinate descent, same stop)."""
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(7)
    for n, ncoef in ((14, 4), (20, 6), (40, 8), (120, 8)):
        t = np.sort(rng.choice(np.arange(730000, 731500), n, replace=False)).astype(np.float64)
        x7 = k._design7(t, n)
        y = 2000 + 400 * x7[:, 1] - 150 * x7[:, 4] + 0.05 * (t - t[0]) + rng.normal(0, 60, (3, n))
        coef, resid, rmse = np.zeros((3, 8)), np.zeros((3, n)), np.zeros(3)
        k._lasso_fit(x7, y, np.arange(3), ncoef, 1.0, coef, resid, rmse)
        for b in range(3):
            cols = x7.copy()
            cols[:, ncoef - 1 :] = 0.0
            ref = Lasso(alpha=1.0, max_iter=1000).fit(cols, y[b])
            np.testing.assert_allclose(x7 @ coef[b, 1:] + coef[b, 0], ref.predict(cols), rtol=0, atol=0.05)
            pred = ref.predict(cols)
            assert rmse[b] == pytest.approx(np.sqrt(((y[b] - pred) ** 2).sum() / (n - ncoef)), rel=1e-4)


def test_chi2_quantiles_against_scipy():
    from scipy.stats import chi2

    for df in range(1, 9):
        for q in (0.5, 0.9, 0.99, 0.999999):
            assert chi2_ppf(q, df) == pytest.approx(chi2.ppf(q, df), rel=1e-10)


def _planted(nx=6, ny=4, seed=8):
    rng = np.random.default_rng(seed)
    t = np.arange("2000-01-01", "2012-01-01", 16, dtype="datetime64[D]")
    doy = 2 * np.pi * (t - np.datetime64("2000-01-01")).astype(float) / 365.2425
    brk = np.datetime64("2000-01-01") + rng.integers(1500, 3000, (ny, nx)).astype("timedelta64[D]")
    after = t[:, None, None] >= brk[None]
    levels = {"green": (0.08, 0.02, 0.04), "red": (0.07, 0.03, 0.05), "nir": (0.3, 0.08, -0.15),
              "swir16": (0.2, 0.03, 0.08), "swir22": (0.1, 0.02, 0.06)}
    ds = xr.Dataset(
        {b: (("time", "y", "x"), (lv + amp * np.cos(doy)[:, None, None] + rng.normal(0, 0.004, (t.size, ny, nx))
                                  + jump * after).astype(np.float32))
         for b, (lv, amp, jump) in levels.items()},
        coords={"time": t.astype("datetime64[ns]"), "y": np.arange(ny) * -30.0, "x": np.arange(nx) * 30.0},
    )
    clouds = xr.DataArray(rng.random((t.size, ny, nx)) < 0.25, dims=("time", "y", "x"))
    return ds, clouds, brk


def test_planted_breaks_found_lazily_and_chunking_changes_nothing():
    ds, clouds, brk = _planted()
    eager = ccdc_segments(ds, mask=clouds, max_segments=3)
    lazy = ccdc_segments(ds.chunk({"y": 2, "x": 3}), mask=clouds.chunk({"y": 2, "x": 3}), max_segments=3)
    assert lazy.coefs.data.numblocks[-2:] == (2, 2)  # one task per chunk, nothing computed yet
    lazy = lazy.compute()
    xr.testing.assert_identical(eager, lazy)
    assert (eager.n_segments == 2).all()
    found = eager.break_day[0].values.astype("timedelta64[D]") + np.datetime64("1970-01-01")
    t = ds.time.values.astype("datetime64[D]")
    clear_after = (t[:, None, None] >= brk[None]) & ~clouds.values
    first = t[clear_after.argmax(axis=0)]  # the first clear observation on or after the change
    np.testing.assert_array_equal(found, first)
    assert (eager.change_prob[0] == 1).all() and (eager.change_prob[1] == 0).all()
    assert eager.start_day[1].values.tolist() == eager.break_day[0].values.tolist()
    # the fitted nir level drops by the planted 0.15 across the break
    nir = list(eager.band.values).index("nir")
    for y in range(ds.sizes["y"]):
        for x in range(ds.sizes["x"]):
            mid = np.array([(int(eager.start_day[1, y, x]) + int(eager.end_day[1, y, x])) / 2 + EPOCH])
            before = _predict(eager.coefs[0, nir, :, y, x].values.astype(float), mid)
            after = _predict(eager.coefs[1, nir, :, y, x].values.astype(float), mid)
            assert after - before == pytest.approx(-0.15, abs=0.01)  # the planted drop in nir
    assert geoproc.ccdc_segments is ccdc_segments and ds.geoproc.ccdc_segments.__doc__ == ccdc_segments.__doc__


def test_stored_integers_give_the_decoded_floats_result():
    """Bands as geoproc.load(..., raw=True) gives them (uint16 with scale/offset/nodata attrs) are decoded first."""
    ds, clouds, _ = _planted(nx=3, ny=2)
    scale, offset = 2.75e-5, -0.2
    raw = xr.Dataset({b: ds[b].copy(data=np.round((ds[b].values - offset) / scale).astype(np.uint16)) for b in ds})
    for b in raw:
        raw[b].attrs = {"scale": scale, "offset": offset, "nodata": 0}
    raw["red"][5, 0, 0] = 0  # nodata: a fill observation
    f = np.float32
    decoded = xr.Dataset({b: raw[b].copy(data=np.where(raw[b] == 0, np.nan, raw[b].values.astype(f) * f(scale) + f(offset)))
                          for b in raw})
    for b in decoded:
        decoded[b].attrs = {}
    a = ccdc_segments(raw, mask=clouds, max_segments=3)
    b = ccdc_segments(decoded, mask=clouds, max_segments=3)
    xr.testing.assert_identical(a, b)
    assert (a.n_segments == 2).all()


def test_segments_write_to_zarr_and_read_back(tmp_path):
    ds, clouds, _ = _planted(nx=4, ny=2)
    out = ccdc_segments(ds.chunk({"x": 2}), mask=clouds, max_segments=3)
    geoproc.to_zarr(out, tmp_path / "ccdc.zarr", stac_item=False)
    back = xr.open_zarr(tmp_path / "ccdc.zarr", decode_times=False)
    computed = out.compute()
    for name in ("n_segments", "break_day", "coefs", "rmse", "curve_qa"):
        np.testing.assert_array_equal(back[name].values, computed[name].values)


def test_bad_input_gets_a_clear_error():
    ds, clouds, _ = _planted(nx=2, ny=1)
    with pytest.raises(InvalidArgumentError, match="Dataset of bands"):
        ccdc_segments(ds.nir)
    with pytest.raises(UnknownBandError, match="blue"):
        ccdc_segments(ds, bands=["blue", "green"])
    with pytest.raises(InvalidArgumentError, match="detection_bands"):
        ccdc_segments(ds, bands=["green", "red"], detection_bands=("green", "nir"))
    with pytest.raises(InvalidArgumentError, match="boolean"):
        ccdc_segments(ds, mask=clouds.astype(np.uint8))
    with pytest.raises(InvalidArgumentError, match="increase"):
        ccdc_segments(ds.isel(time=slice(None, None, -1)))
    with pytest.raises(InvalidArgumentError, match="max_segments"):
        ccdc_segments(ds, max_segments=0)
