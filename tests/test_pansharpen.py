"""Pan-sharpening against the published formulas and their properties (spectral angle, Wald's protocol)."""

from __future__ import annotations

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from geoproc.errors import InvalidArgumentError
from geoproc.pansharpen import pansharpen

rng = np.random.default_rng(9)
NAMES = ("blue", "green", "red", "nir")


def _scene(t=2, y=40, x=36):
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": 1000.0 - 15 * np.arange(y), "x": 15.0 * np.arange(x)}
    ms = xr.Dataset(
        {n: (("time", "y", "x"), rng.uniform(0.02, 0.4, (t, y, x)).astype(np.float32), {"units": "1"}) for n in NAMES},
        coords=coords,
    ).rio.write_crs(32618)
    ms["red"][0, 3, 4] = np.nan
    pan = xr.DataArray(rng.uniform(0.05, 0.4, (y, x)).astype(np.float32), dims=("y", "x"))
    pan = pan.assign_coords(y=coords["y"], x=coords["x"])
    pan[10, 10] = np.nan
    return ms, pan


def _stack(ds) -> np.ndarray:
    return np.stack([ds[n].values for n in NAMES]).astype(np.float64)


def test_brovey_formula_and_spectral_angle():
    ms, pan = _scene()
    out = pansharpen(ms, pan, "brovey")
    m, p = _stack(ms), pan.values.astype(np.float64)
    ref = m * p / m.mean(axis=0)
    np.testing.assert_allclose(_stack(out), ref, rtol=1e-6, equal_nan=True)
    # each pixel's spectrum is scaled by one factor: the spectral angle to the input is zero
    f = _stack(out)
    valid = ~np.isnan(f).any(axis=0)
    fv, mv = f[:, valid], m[:, valid]
    cos = (fv * mv).sum(axis=0) / np.sqrt((fv * fv).sum(axis=0) * (mv * mv).sum(axis=0))
    assert np.arccos(np.clip(cos, -1, 1)).max() < 1e-5
    # and the weighted mean of the fused bands is the pan
    np.testing.assert_allclose(f.mean(axis=0)[valid], np.broadcast_to(p, valid.shape)[valid], rtol=1e-6)
    # NaN in any band or the pan makes the pixel NaN everywhere
    assert np.isnan(f[:, 0, 3, 4]).all() and np.isnan(f[:, :, 10, 10]).all() and valid.sum() == valid.size - 3


def test_weighted_brovey_and_ihs_formulas():
    ms, pan = _scene()
    w = np.array([0.1, 0.45, 0.45, 0.0])
    m, p = _stack(ms), pan.values.astype(np.float64)
    inten = np.tensordot(w, m, axes=1)
    brovey = _stack(pansharpen(ms, pan, "brovey", weights=w))
    np.testing.assert_allclose(brovey, m * p / inten, rtol=1e-6, equal_nan=True)
    by_name = dict(zip(NAMES, [2, 9, 9, 0]))  # any positive scale: normalised
    ihs = _stack(pansharpen(ms, pan, "ihs", weights=by_name))
    np.testing.assert_allclose(ihs, m + (p - inten), rtol=1e-6, atol=1e-7, equal_nan=True)
    # the detail injected is the same in every band
    detail = ihs - m
    valid = ~np.isnan(detail).any(axis=0)
    np.testing.assert_allclose((detail - detail[1])[:, valid], 0, atol=1e-6)


def test_gram_schmidt_equals_its_formula():
    ms, pan = _scene()
    out = _stack(pansharpen(ms, pan, "gs"))
    m = _stack(ms)
    p = np.broadcast_to(pan.values.astype(np.float64), m.shape[1:])
    inten = m.mean(axis=0)
    ok = ~(np.isnan(inten) | np.isnan(p))
    i_v, p_v = inten[ok], p[ok]
    gains = [np.cov(m[b][ok], i_v, bias=True)[0, 1] / i_v.var() for b in range(4)]
    matched = (p - p_v.mean()) * (i_v.std() / p_v.std()) + i_v.mean()
    ref = np.stack([m[b] + gains[b] * (matched - inten) for b in range(4)])
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("method", ["brovey", "ihs", "gs"])
def test_dask_chunked_equals_numpy(method):
    ms, pan = _scene()
    ref = pansharpen(ms, pan, method)
    lazy = pansharpen(ms.chunk({"time": 1, "y": 13, "x": 11}), pan.chunk({"y": 20, "x": 36}), method)
    assert isinstance(lazy.red.data, da.Array)
    if method == "gs":  # global statistics summed in another order: float rounding only
        np.testing.assert_allclose(_stack(lazy), _stack(ref), rtol=1e-6, atol=1e-7, equal_nan=True)
    else:
        np.testing.assert_array_equal(_stack(lazy), _stack(ref))
    payload = cloudpickle.dumps(dict(lazy.red.data.__dask_graph__()))
    assert b"numba" not in payload


def test_keeps_dims_coords_crs_and_band_dim_input():
    ms, pan = _scene()
    out = pansharpen(ms, pan, "ihs")
    assert set(out.data_vars) == set(NAMES) and out.red.dims == ("time", "y", "x") and out.red.dtype == np.float32
    assert out.rio.crs == ms.rio.crs and out.red.attrs["pansharpen"] == "ihs" and out.red.attrs["units"] == "1"
    arr = ms.to_array("band").transpose("time", "y", "x", "band")
    got = pansharpen(arr, pan, "brovey")
    assert got.dims == arr.dims and list(got.band.values) == list(NAMES)
    ref = _stack(pansharpen(ms, pan, "brovey")).astype(np.float32)
    np.testing.assert_array_equal(got.transpose("band", ...).values, ref)


def test_errors():
    ms, pan = _scene()
    with pytest.raises(InvalidArgumentError, match="different grids"):
        pansharpen(ms, pan.isel(y=slice(1, None)), "brovey")
    with pytest.raises(InvalidArgumentError, match="different grids"):
        pansharpen(ms, pan.assign_coords(x=pan.x + 7.5), "brovey")
    with pytest.raises(InvalidArgumentError, match="brovey, ihs, gs"):
        pansharpen(ms, pan, "pca")
    with pytest.raises(InvalidArgumentError, match="weights must be 4"):
        pansharpen(ms, pan, weights=[1, 2])
    with pytest.raises(InvalidArgumentError, match="no entry for band 'nir'"):
        pansharpen(ms, pan, weights={"blue": 1, "green": 1, "red": 1})


def _degrade(a: np.ndarray, f: int = 2) -> np.ndarray:
    b, h, w = a.shape
    return a.reshape(b, h // f, f, w // f, f).mean(axis=(2, 4))


def test_walds_protocol_on_real_sentinel2_bands(shared_data):
    """Wald's protocol on real 10 m Sentinel-2 B02, B03, B04, B08 (eo-learn): the 10 m bands are the truth, the pan
    is simulated as 0.1 B02 + 0.45 B03 + 0.45 B04 (Landsat 8 band 8 spans green to red), the multispectral bands are
    degraded to 20 m (2 x 2 means) and put back on the 10 m grid by repetition, as the loader does. Every method
    must beat the upsampled bands (synthesis), and the fused bands degraded again must match the 20 m bands
    (consistency)."""
    scenes = np.load(shared_data / "eolearn" / "REFERENCE_SCENES.npy")
    truth = scenes[0, :100, :100][..., [1, 2, 3, 7]].transpose(2, 0, 1).astype(np.float64)
    w = np.array([0.1, 0.45, 0.45, 0.0])
    pan = xr.DataArray(np.tensordot(w, truth, axes=1).astype(np.float32), dims=("y", "x"))
    low = _degrade(truth)
    up = np.repeat(np.repeat(low, 2, axis=1), 2, axis=2)
    ms = xr.Dataset({n: (("y", "x"), up[i].astype(np.float32)) for i, n in enumerate(NAMES)})
    rmse = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2)))  # noqa: E731
    baseline = rmse(up, truth)
    for method in ("brovey", "ihs", "gs"):
        fused = _stack(pansharpen(ms.chunk({"y": 50, "x": 50}), pan, method, weights=w))
        assert rmse(fused, truth) < 0.6 * baseline, method  # measured 0.54 (brovey), 0.45 (ihs, gs)
        consistency = rmse(_degrade(fused), low)
        assert consistency < (1e-4 if method != "gs" else 0.15) * baseline, method  # measured ~2e-6, 2e-6, 0.075
    # GS also copes with the default (equal) weights, where NIR makes the intensity unlike the pan
    fused = _stack(pansharpen(ms, pan, "gs"))
    assert rmse(fused, truth) < 0.8 * baseline and rmse(_degrade(fused), low) < 0.6 * baseline
