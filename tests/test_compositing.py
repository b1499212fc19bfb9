"""geoproc.composite beyond test_algorithms.py: percentiles, multi-band methods, raw integers, real eo-learn data."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import cdist

from geoproc.compositing import composite
from geoproc.errors import InvalidArgumentError, UnknownBandError

rng = np.random.default_rng(5)
BANDS = ("blue", "red", "nir", "swir16")


def _bands(t=7, y=24, x=30, nan=0.1) -> xr.Dataset:
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": np.arange(y)[::-1] * 10.0, "x": np.arange(x) * 10.0}
    data = {}
    for b in BANDS:
        v = rng.uniform(0.01, 0.5, (t, y, x)).astype(np.float32)
        v[rng.random(v.shape) < nan] = np.nan
        data[b] = (("time", "y", "x"), v, {"nodata": np.nan})
    data["scl"] = (("time", "y", "x"), rng.integers(0, 12, (t, y, x)).astype(np.uint8))
    return xr.Dataset(data, coords=coords).rio.write_crs(32633)


def _mask(ds: xr.Dataset) -> xr.DataArray:
    return xr.DataArray(rng.random(ds.red.shape) < 0.2, dims=ds.red.dims, coords=ds.red.coords)


def _chunked(obj, y=10, x=16):
    return obj.chunk({"time": -1, "y": y, "x": x})


@pytest.mark.parametrize("method,q", [("p10", 10.0), ("p90", 90.0), ("p2.5", 2.5), ("p0", 0.0), ("p100", 100.0)])
def test_percentiles_equal_nanpercentile_numpy_and_dask(method, q):
    ds = _bands()
    mask = _mask(ds)
    got = composite(ds.red, method, mask=mask)
    lazy = composite(_chunked(ds.red), method, mask=_chunked(mask))
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(got.values, lazy.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanpercentile(np.where(mask.values, np.nan, ds.red.values), q, axis=0)
    np.testing.assert_array_equal(got.values, expected)
    assert got.dims == ("y", "x") and "spatial_ref" in got.coords and got.attrs["composite"] == method
    assert np.isnan(got.attrs["nodata"])


def test_split_time_chunks_are_rechunked():
    ds = _bands()
    split = ds.red.chunk({"time": 2, "y": 12, "x": 12})
    np.testing.assert_array_equal(composite(split, "p75").values, composite(ds.red, "p75").values)


def test_raw_integers_are_decoded_like_the_loader():
    raw = rng.integers(1, 6000, (6, 12, 14)).astype(np.uint16)
    raw[rng.random(raw.shape) < 0.2] = 0
    raw[:, 0, 0] = 0  # a pixel with no data at all: NaN, never 0
    attrs = {"scale": 1e-4, "offset": -0.1, "nodata": 0}
    decoded = np.where(raw == 0, np.nan, raw.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1))
    as_raw = xr.DataArray(raw, dims=("time", "y", "x"), attrs=attrs)
    as_float = xr.DataArray(decoded, dims=("time", "y", "x"))
    for method in ("median", "mean", "max", "p90", "count"):
        got = composite(as_raw, method)
        np.testing.assert_array_equal(got.values, composite(as_float, method).values)
        assert "scale" not in got.attrs
    assert np.isnan(composite(as_raw, "median").values[0, 0])
    raw_ds = xr.Dataset({b: as_raw for b in ("red", "nir")})
    float_ds = xr.Dataset({b: as_float for b in ("red", "nir")})
    for method in ("medoid", "geomedian"):
        np.testing.assert_array_equal(composite(raw_ds, method).red.values, composite(float_ds, method).red.values)


@pytest.mark.parametrize("method", ["medoid", "geomedian", "quality"])
def test_multiband_numpy_vs_dask_and_chunking(method):
    ds = _bands()
    mask = _mask(ds)
    kw = {"score": "nir"} if method == "quality" else {}
    ref = composite(ds, method, mask=mask, **kw)
    assert set(ref.data_vars) == set(BANDS)  # scl left out by default
    for y, x in ((10, 16), (24, 30), (5, 7)):
        lazy = composite(_chunked(ds, y, x), method, mask=_chunked(mask, y, x), **kw)
        assert isinstance(lazy.red.data, da.Array)
        for b in BANDS:
            np.testing.assert_array_equal(lazy[b].values, ref[b].values)
    assert ref.red.dims == ("y", "x") and "spatial_ref" in ref.coords and ref.red.dtype == np.float32
    assert ref.attrs["composite"] == method


def test_medoid_and_quality_keep_spectra_whole():
    ds = _bands()
    mask = _mask(ds)
    stack = np.stack([ds[b].values for b in BANDS])  # (B, T, y, x)
    valid = ~mask.values & np.isfinite(stack).all(axis=0)
    med = composite(ds, "medoid", mask=mask)
    best = composite(ds, "quality", mask=mask, score="nir")
    got_med = np.stack([med[b].values for b in BANDS])
    got_best = np.stack([best[b].values for b in BANDS])
    for iy in range(ds.sizes["y"]):
        for ix in range(ds.sizes["x"]):
            dates = np.flatnonzero(valid[:, iy, ix])
            if dates.size == 0:
                assert np.isnan(got_med[:, iy, ix]).all() and np.isnan(got_best[:, iy, ix]).all()
                continue
            obs = stack[:, dates, iy, ix].T
            np.testing.assert_array_equal(got_med[:, iy, ix], obs[np.argmin(cdist(obs, obs).sum(axis=1))])
            np.testing.assert_array_equal(got_best[:, iy, ix], obs[np.argmax(obs[:, BANDS.index("nir")])])


def test_quality_score_by_index_name_and_dataarray():
    ds = _bands()
    ndvi = (ds.nir - ds.red) / (ds.nir + ds.red)
    by_name = composite(ds, "quality", score="NDVI", bands=["red", "nir"])
    by_array = composite(ds, "quality", score=ndvi, bands=["red", "nir"])
    np.testing.assert_array_equal(by_name.red.values, by_array.red.values)
    # the greenest observation: its NDVI is the max-NDVI composite
    picked = (by_array.nir - by_array.red) / (by_array.nir + by_array.red)
    np.testing.assert_allclose(picked.values, composite(ndvi, "max").values, rtol=1e-6, equal_nan=True)


def test_geomedian_tol_and_max_iter_reach_the_kernel():
    ds = _bands(nan=0.0)[["red", "nir", "swir16"]]
    coarse = composite(ds, "geomedian", max_iter=1)
    fine = composite(ds, "geomedian", tol=1e-9)
    assert float(np.abs(coarse.red - fine.red).max()) > 1e-5
    assert fine.attrs["tol"] == 1e-9 and coarse.attrs["max_iter"] == 1


def test_errors_name_the_problem():
    ds = _bands()
    with pytest.raises(InvalidArgumentError, match="Dataset of bands"):
        composite(ds.red, "geomedian")
    with pytest.raises(InvalidArgumentError, match="score"):
        composite(ds, "quality")
    with pytest.raises(UnknownBandError, match="NOPE"):
        composite(ds, "quality", score="NOPE")
    with pytest.raises(UnknownBandError, match="green"):
        composite(ds, "medoid", bands=["red", "green"])
    with pytest.raises(InvalidArgumentError, match="outside 0..100"):
        composite(ds.red, "p101")
    with pytest.raises(InvalidArgumentError, match="unknown composite"):
        composite(ds.red, "pX")
    with pytest.raises(InvalidArgumentError, match="boolean"):
        composite(ds.red, mask=ds.scl)
    with pytest.raises(InvalidArgumentError, match="tol"):
        composite(ds, "geomedian", tol=0)


def test_new_methods_pickle_kernels_by_reference():
    import cloudpickle

    ds = _chunked(_bands())
    for result in (composite(ds.red, "p90"), composite(ds, "geomedian").red, composite(ds, "quality", score="NDVI").red):
        payload = cloudpickle.dumps(dict(result.data.__dask_graph__()))
        assert b"numba" not in payload, "a numba kernel is pickled by value into the task graph"


# --- real data: the eo-learn Sentinel-2 patch in ../shared/data/eolearn -------------------------------------


def test_percentiles_and_median_on_real_ndvi_series_with_is_valid(shared_data):
    patch = shared_data / "eolearn" / "TestEOPatch"
    ndvi = np.load(patch / "data" / "NDVI.npy")[..., 0]
    invalid = ~np.load(patch / "mask" / "IS_VALID.npy")[..., 0].astype(bool)
    v = xr.DataArray(ndvi, dims=("time", "y", "x")).chunk({"y": 40, "x": 40})
    m = xr.DataArray(invalid, dims=("time", "y", "x"))
    masked = np.where(invalid, np.nan, ndvi)
    for method, q in (("p10", 10.0), ("p90", 90.0)):
        np.testing.assert_array_equal(composite(v, method, mask=m).values, np.nanpercentile(masked, q, axis=0))
    np.testing.assert_array_equal(composite(v, "median", mask=m).values, np.nanmedian(masked, axis=0))


def test_quality_mosaic_of_real_ndvi_is_max_ndvi(shared_data):
    """The greenest-pixel mosaic scored by NDVI itself picks the per-pixel maximum: eo-learn's MAX_NDVI."""
    patch = shared_data / "eolearn" / "TestEOPatch"
    ndvi = np.load(patch / "data" / "NDVI.npy")[..., 0]
    ds = xr.Dataset({"ndvi": (("time", "y", "x"), ndvi)}).chunk({"y": 50, "x": 50})
    got = composite(ds, "quality", score="ndvi").ndvi.values
    np.testing.assert_array_equal(got, np.load(patch / "data_timeless" / "MAX_NDVI.npy")[..., 0].astype(np.float32))


def _real_scenes(shared_data):
    base = shared_data / "eolearn"
    scenes = np.load(base / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13)
    order = json.load(open(base / "REFERENCE_SCENES.alignment.json"))["band_order"]
    dates = json.load(open(base / "REFERENCE_SCENES.alignment.json"))["index_into_TestEOPatch_timestamps"]
    clouds = np.load(base / "TestEOPatch" / "mask" / "CLM.npy")[dates, ..., 0].astype(bool)
    ds = xr.Dataset({b: (("time", "y", "x"), scenes[..., i]) for i, b in enumerate(order)})
    return ds, xr.DataArray(clouds, dims=("time", "y", "x")), scenes


def test_geomedian_and_medoid_on_real_13_band_scenes(shared_data):
    ds, clouds, scenes = _real_scenes(shared_data)
    gm = composite(ds.chunk({"y": 50, "x": 50}), "geomedian", mask=clouds)
    md = composite(ds, "medoid", mask=clouds)
    got_gm = np.stack([gm[b].values for b in ds.data_vars], axis=-1)
    got_md = np.stack([md[b].values for b in ds.data_vars], axis=-1)
    ok = ~clouds.values
    # medoid, every pixel, vectorised: the valid observation with the least summed distance
    d = np.linalg.norm(scenes[:, None].astype(np.float64) - scenes[None].astype(np.float64), axis=-1)  # (5, 5, y, x)
    d = np.where(ok[:, None] & ok[None], d, 0.0).sum(axis=1)
    d[~ok] = np.inf
    pick = np.argmin(d, axis=0)
    expected_md = np.take_along_axis(scenes, pick[None, ..., None], axis=0)[0]
    expected_md[~ok.any(axis=0)] = np.nan
    np.testing.assert_array_equal(got_md, expected_md)
    # geometric median against a float64 Weiszfeld on a sample of pixels
    from tests.kernels.test_composite_kernels import _weiszfeld_reference

    for iy, ix in zip(rng.integers(0, 101, 150), rng.integers(0, 100, 150)):
        obs = scenes[ok[:, iy, ix], iy, ix].astype(np.float64)
        if len(obs) == 0:
            assert np.isnan(got_gm[iy, ix]).all()
            continue
        np.testing.assert_allclose(got_gm[iy, ix], _weiszfeld_reference(obs), atol=1e-4)
