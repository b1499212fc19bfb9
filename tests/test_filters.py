"""The public filters: numpy- vs dask-backed input, chunked vs unchunked (bit for bit), coords/CRS, real data."""

from __future__ import annotations

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr

from geoproc.errors import InvalidArgumentError
from geoproc.filters import bilateral_filter, gaussian_filter, lee_filter, median_filter

rng = np.random.default_rng(11)

FILTERS = {
    "median3": lambda d: median_filter(d, 3),
    "median5": lambda d: median_filter(d, 5),
    "gaussian": lambda d: gaussian_filter(d, 1.5),
    "gaussian_aniso": lambda d: gaussian_filter(d, (2.5, 0.6)),
    "bilateral": lambda d: bilateral_filter(d, sigma_color=0.8, sigma_spatial=1.2),
    "lee": lambda d: lee_filter(d, 7, looks=2),
    "lee_additive": lambda d: lee_filter(d, 5, noise_var=0.2),
}


def _cube(t=2, y=61, x=53) -> xr.DataArray:
    v = rng.gamma(4.0, 0.5, (t, y, x)).astype(np.float32)
    corner = v[0, 2 * y // 3 :, x // 2 :]
    corner[rng.random(corner.shape) < 0.25] = np.nan  # NaN only in one corner of one date
    v[1, :4, :4] = np.nan
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": 5000.0 - 10 * np.arange(y)}
    coords["x"] = 300.0 + 10 * np.arange(x)
    arr = xr.DataArray(v, dims=("time", "y", "x"), coords=coords, name="red", attrs={"units": "1"})
    return arr.rio.write_crs(32633)


@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("chunks", [{"y": 20, "x": 17}, {"y": 7, "x": 61}, {"time": 1, "y": 32, "x": 5}])
def test_chunked_equals_unchunked_bit_for_bit(name, chunks):
    f = FILTERS[name]
    arr = _cube()
    ref = f(arr)
    lazy = f(arr.chunk(chunks))
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.values, ref.values)
    assert np.array_equal(np.isnan(ref.values), np.isnan(arr.values))  # NaN stays NaN, nothing else becomes NaN


def test_halo_wider_than_the_image():
    """A window wider than the image (mirrored several times) gives the numpy result for any chunking."""
    img = xr.DataArray(rng.normal(size=(4, 30)).astype(np.float32), dims=("y", "x"))
    for f in (lambda d: median_filter(d, 7), lambda d: gaussian_filter(d, 3.0)):
        np.testing.assert_array_equal(f(img.chunk({"y": 2, "x": 13})).values, f(img).values)
    np.testing.assert_allclose(
        gaussian_filter(img, 3.0).values, ndi.gaussian_filter(img.values.astype(np.float64), 3.0), atol=1e-6
    )


@pytest.mark.parametrize("name", list(FILTERS))
def test_result_keeps_dims_coords_attrs_and_crs(name):
    arr = _cube().transpose("y", "time", "x")  # any dim order
    out = FILTERS[name](arr)
    assert out.dims == arr.dims and out.dtype == np.float32 and out.name == "red"
    for c in ("time", "y", "x"):
        np.testing.assert_array_equal(out[c].values, arr[c].values)
    assert out.rio.crs == arr.rio.crs
    assert out.attrs["units"] == "1" and np.isnan(out.attrs["nodata"]) and "filter" in out.attrs
    # each date is filtered as its own image
    np.testing.assert_array_equal(out.isel(time=1).values, FILTERS[name](arr.isel(time=1)).values)


def test_matches_scipy_per_image_on_a_band_stack():
    arr = xr.DataArray(rng.normal(size=(3, 30, 31)).astype(np.float32), dims=("band", "y", "x"))
    med = median_filter(arr.chunk({"band": 2, "y": 11, "x": 9}), 5).values
    gau = gaussian_filter(arr, 2.0).values
    for b in range(3):
        np.testing.assert_array_equal(med[b], ndi.median_filter(arr.values[b], size=5, mode="reflect"))
        np.testing.assert_allclose(gau[b], ndi.gaussian_filter(arr.values[b].astype(np.float64), 2.0), atol=1e-6)


def test_dataset_filters_image_variables_and_keeps_the_others():
    arr = _cube()
    ds = xr.Dataset({"red": arr, "nir": arr * 2, "scale_by_date": ("time", np.float32([1, 2]))})
    out = gaussian_filter(ds, 1.0)
    assert set(out.data_vars) == {"red", "nir", "scale_by_date"}
    np.testing.assert_array_equal(out.red.values, gaussian_filter(arr, 1.0).values)
    np.testing.assert_array_equal(out.scale_by_date.values, ds.scale_by_date.values)
    assert out.rio.crs == arr.rio.crs


def test_raw_integers_are_decoded_with_scale_offset_and_nodata():
    raw = rng.integers(1, 10000, (25, 27)).astype(np.uint16)
    raw[3, 4] = 0
    attrs = {"scale": 1e-4, "offset": -0.1, "nodata": 0}
    arr = xr.DataArray(raw, dims=("y", "x"), attrs=attrs)
    dec = np.where(raw == 0, np.nan, raw.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1))
    got = median_filter(arr, 3)
    np.testing.assert_array_equal(got.values, median_filter(xr.DataArray(dec, dims=("y", "x")), 3).values)
    assert np.isnan(got.values[3, 4]) and "scale" not in got.attrs
    lazy = median_filter(arr.chunk({"y": 10, "x": 10}), 3)
    np.testing.assert_array_equal(lazy.values, got.values)


def test_gaussian_sigma_zero_is_identity_and_defaults():
    arr = _cube()
    np.testing.assert_array_equal(gaussian_filter(arr, 0).values, arr.values)
    assert bilateral_filter(arr, sigma_color=1.0, sigma_spatial=2.0).attrs["filter"].startswith("bilateral size=13")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda a: median_filter(a, 4), "odd positive integer"),
        (lambda a: median_filter(a, 0), "odd positive integer"),
        (lambda a: gaussian_filter(a, -1.0), "sigma"),
        (lambda a: gaussian_filter(a, 1.0, truncate=0), "truncate"),
        (lambda a: bilateral_filter(a, sigma_color=0), "sigma_color"),
        (lambda a: lee_filter(a, looks=0), "looks"),
        (lambda a: median_filter(a.rename(y="lat"), 3), "dims=\\('y', 'x'\\)"),
        (lambda a: median_filter(a.values, 3), "DataArray or Dataset"),
        (lambda a: median_filter(a.astype(str), 3), "astype"),
    ],
)
def test_bad_arguments_raise_typed_errors(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(_cube(2, 8, 8))


def test_tasks_pickle_kernels_by_reference():
    lazy = _cube().chunk({"y": 20, "x": 20})
    for f in FILTERS.values():
        payload = cloudpickle.dumps(dict(f(lazy).data.__dask_graph__()))
        assert b"numba" not in payload, "a numba kernel is pickled by value into the task graph"


# --------------------------------------------------------------------------- real data


def _real_band(shared_data, name: str) -> xr.DataArray:
    import rioxarray

    arr = rioxarray.open_rasterio(shared_data / "rio-tiler" / f"{name}.tif", masked=True).squeeze("band", drop=True)
    return arr.astype(np.float32)


def test_real_landsat_band_median_and_gaussian_match_references(shared_data):
    red = _real_band(shared_data, "red")  # 259 x 255, nodata 0 -> NaN at the scene edges
    assert np.isnan(red.values).any()
    med = median_filter(red.chunk({"y": 64, "x": 64}), 3)
    np.testing.assert_array_equal(med.values, median_filter(red, 3).values)
    assert med.rio.crs == red.rio.crs and med.rio.transform() == red.rio.transform()
    # far from nodata the NaN-aware result is scipy's
    inner = (slice(100, 160), slice(100, 160))
    assert not np.isnan(red.values[90:170, 90:170]).any()
    np.testing.assert_array_equal(med.values[inner], ndi.median_filter(red.values, 3)[inner])
    gau = gaussian_filter(red, 1.0).values
    ref = ndi.gaussian_filter(red.values.astype(np.float64), 1.0)
    np.testing.assert_allclose(gau[inner], ref[inner], rtol=1e-6)


def test_lee_reduces_synthetic_speckle_on_a_real_scene(shared_data):
    """Real reflectance as the noise-free scene, multiplied by 4-look gamma speckle (mean 1, variance 1/4)."""
    scenes = np.load(shared_data / "eolearn" / "REFERENCE_SCENES.npy")
    clean = scenes[0, :, :, 7].astype(np.float32)  # B08 (NIR), 101 x 100
    speckle = rng.gamma(4.0, 0.25, clean.shape).astype(np.float32)
    noisy = xr.DataArray(clean * speckle, dims=("y", "x"))
    out = lee_filter(noisy.chunk({"y": 30, "x": 40}), 5, looks=4)
    np.testing.assert_array_equal(out.values, lee_filter(noisy, 5, looks=4).values)
    rmse = lambda a: float(np.sqrt(np.mean((a - clean) ** 2)))  # noqa: E731
    assert rmse(out.values) < 0.5 * rmse(noisy.values)
    # the speckle's coefficient of variation (1/sqrt(4) = 0.5) drops in flat areas
    ratio = out.values / clean
    assert np.std(ratio) < 0.5 * np.std(speckle)
