"""The public functions: numpy- vs dask-backed input, coords kept, and checks on real eo-learn data."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import geoproc
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.masking import SCL_DEFAULT_MASK

rng = np.random.default_rng(3)


def _cube(t=6, y=40, x=50):
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": np.arange(y)[::-1] * 10.0, "x": np.arange(x) * 10.0}
    red = rng.uniform(0.01, 0.3, (t, y, x)).astype(np.float32)
    nir = rng.uniform(0.01, 0.5, (t, y, x)).astype(np.float32)
    red[rng.random(red.shape) < 0.05] = np.nan
    scl = rng.integers(0, 12, (t, y, x)).astype(np.uint8)
    ds = xr.Dataset(
        {"red": (("time", "y", "x"), red), "nir": (("time", "y", "x"), nir), "scl": (("time", "y", "x"), scl)},
        coords=coords,
    )
    return ds.rio.write_crs(32633)


def _chunked(ds):
    return ds.chunk({"time": -1, "y": 16, "x": 20})


def test_cloud_mask_numpy_vs_dask_and_reference():
    ds = _cube()
    m_np = geoproc.cloud_mask(ds)
    m_da = geoproc.cloud_mask(_chunked(ds))
    assert isinstance(m_da.data, da.Array)
    np.testing.assert_array_equal(m_np.values, m_da.values)
    np.testing.assert_array_equal(m_np.values, np.isin(ds.scl.values, SCL_DEFAULT_MASK))
    assert m_np.dims == ds.scl.dims and "spatial_ref" in m_np.coords


def test_cloud_mask_custom_classes_and_float_scl():
    ds = _cube()
    scl = ds.scl.astype(np.float32).where(ds.scl != 0)  # NaN as no data
    got = geoproc.cloud_mask(scl, classes=[0, 9])
    np.testing.assert_array_equal(got.values, np.isin(ds.scl.values, [0, 9]))


def test_cloud_mask_errors():
    with pytest.raises(UnknownBandError, match="quality band"):
        geoproc.cloud_mask(_cube().drop_vars("scl"))
    with pytest.raises(InvalidArgumentError, match="0..11"):
        geoproc.cloud_mask(_cube(), classes=[300])


def test_ndvi_numpy_vs_dask_and_formula():
    ds = _cube()
    n_np = geoproc.ndvi(ds)
    n_da = geoproc.ndvi(_chunked(ds))
    np.testing.assert_array_equal(n_np.values, n_da.values)
    ref = (ds.nir - ds.red) / (ds.nir + ds.red)
    np.testing.assert_allclose(n_np.values, ref.values, rtol=1e-6, equal_nan=True)
    assert n_np.name == "NDVI" and n_np.dtype == np.float32


def test_index_on_raw_integers_equals_decoded_floats():
    red = rng.integers(1, 5000, (3, 8, 9)).astype(np.uint16)
    nir = rng.integers(1, 9000, (3, 8, 9)).astype(np.uint16)
    red[0, 0, 0] = 0
    attrs = {"scale": 1e-4, "offset": -0.1, "nodata": 0}
    raw = xr.Dataset({"red": (("time", "y", "x"), red, attrs), "nir": (("time", "y", "x"), nir, attrs)})
    decode = lambda v: np.where(v == 0, np.nan, v.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1))  # noqa: E731
    dec = xr.Dataset({k: (("time", "y", "x"), decode(v)) for k, v in (("red", red), ("nir", nir))})
    np.testing.assert_array_equal(geoproc.ndvi(raw).values, geoproc.ndvi(dec).values)
    assert np.isnan(geoproc.ndvi(raw).values[0, 0, 0])


def test_index_band_mapping_and_errors():
    ds = _cube().rename({"nir": "B08"})
    with pytest.raises(UnknownBandError, match="nir"):
        geoproc.ndvi(ds)
    ok = geoproc.index(ds, "ndvi", bands={"nir": "B08"})
    assert np.isfinite(ok.values).any()
    with pytest.raises(InvalidArgumentError, match="unknown index"):
        geoproc.index(ds, "NOPE")


@pytest.mark.parametrize("method", ["median", "mean", "min", "max"])
def test_composite_numpy_vs_dask_vs_numpy_reference(method):
    ds = _cube()
    vi = geoproc.ndvi(ds)
    mask = geoproc.cloud_mask(ds)
    c_np = geoproc.composite(vi, method, mask=mask)
    c_da = geoproc.composite(geoproc.ndvi(_chunked(ds)), method, mask=geoproc.cloud_mask(_chunked(ds)))
    np.testing.assert_array_equal(c_np.values, c_da.values)
    ref_fn = {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        ref = ref_fn(np.where(mask.values, np.nan, vi.values), axis=0)
    np.testing.assert_allclose(c_np.values, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert c_np.dims == ("y", "x") and "spatial_ref" in c_np.coords and "time" not in c_np.coords


def test_composite_rechunks_split_time_and_counts():
    ds = _cube()
    vi = geoproc.ndvi(ds)
    split = vi.chunk({"time": 2, "y": 10, "x": 10})
    np.testing.assert_array_equal(geoproc.composite(split).values, geoproc.composite(vi).values)
    count = geoproc.composite(vi, "count", mask=geoproc.cloud_mask(ds))
    expected = (~np.isnan(vi.values) & ~np.isin(ds.scl.values, SCL_DEFAULT_MASK)).sum(axis=0)
    np.testing.assert_array_equal(count.values, expected)


def test_composite_dataset_and_errors():
    ds = _cube()[["red", "nir"]]
    out = geoproc.composite(ds, "max")
    assert set(out.data_vars) == {"red", "nir"}
    with pytest.raises(InvalidArgumentError, match="unknown composite"):
        geoproc.composite(ds.red, "mode")
    with pytest.raises(InvalidArgumentError, match="no dimension"):
        geoproc.composite(ds.red, dim="band")


# --- real data: the eo-learn Sentinel-2 patch in ../shared/data/eolearn -------------------------------


def test_ndvi_on_real_l1c_scenes_equals_eolearn_ndvi(shared_data):
    base = shared_data / "eolearn"
    scenes = np.load(base / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13): B01..B12 incl. B8A
    alignment = json.load(open(base / "REFERENCE_SCENES.alignment.json"))
    ndvi_ref = np.load(base / "TestEOPatch" / "data" / "NDVI.npy")[..., 0]
    order = alignment["band_order"]
    dates = alignment["index_into_TestEOPatch_timestamps"]
    red, nir = scenes[..., order.index("B04")], scenes[..., order.index("B08")]
    ds = xr.Dataset({"red": (("time", "y", "x"), red), "nir": (("time", "y", "x"), nir)})
    got = geoproc.ndvi(ds.chunk({"y": 50, "x": 50})).values
    np.testing.assert_allclose(got, ndvi_ref[dates], rtol=1e-6, atol=1e-7)


def test_max_composite_and_valid_count_on_real_series(shared_data):
    patch = shared_data / "eolearn" / "TestEOPatch"
    ndvi = np.load(patch / "data" / "NDVI.npy")[..., 0]
    is_valid = np.load(patch / "mask" / "IS_VALID.npy")[..., 0].astype(bool)
    v = xr.DataArray(ndvi, dims=("time", "y", "x")).chunk({"y": 32, "x": 32})
    got_max = geoproc.composite(v, "max").values
    np.testing.assert_array_equal(got_max, np.load(patch / "data_timeless" / "MAX_NDVI.npy")[..., 0].astype(np.float32))
    invalid = xr.DataArray(~is_valid, dims=("time", "y", "x"))
    count = geoproc.composite(v, "count", mask=invalid).values
    np.testing.assert_array_equal(count, np.load(patch / "mask_timeless" / "VALID_COUNT.npy")[..., 0])


def test_scl_cloud_mask_on_real_sen2cor_scl(shared_data):
    scl = np.load(shared_data / "eolearn" / "TestEOPatch_v2018-12-11_T36" / "mask" / "SCL.npy")[..., 0]
    got = geoproc.cloud_mask(xr.DataArray(scl, dims=("time", "y", "x")).chunk({"time": -1, "y": 40, "x": 40}))
    np.testing.assert_array_equal(got.values, np.isin(scl, SCL_DEFAULT_MASK))
    assert 0 < got.values.mean() < 1


def test_tasks_pickle_kernels_by_reference():
    """Kernels must reach workers by reference (module + name), not pickled by value: numba rebuilds a
    by-value dispatcher without its disk cache and compiles it again in every new worker process."""
    import cloudpickle

    cube = _cube()
    ds = _chunked(cube)
    for result in (geoproc.ndvi(ds), geoproc.cloud_mask(ds), geoproc.composite(geoproc.ndvi(ds), "median")):
        payload = cloudpickle.dumps(dict(result.data.__dask_graph__()))
        assert b"numba" not in payload, "a numba kernel is pickled by value into the task graph"
    # and the by-reference form still computes the same thing as calling the kernel directly
    np.testing.assert_array_equal(geoproc.ndvi(ds).values, geoproc.ndvi(cube).values)
