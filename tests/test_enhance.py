"""Enhancement: global percentiles (vs numpy, with their error bound), stretch, gamma, histogram equalisation and
CLAHE (vs scikit-image), RGBA composites; numpy vs dask and chunked vs unchunked; real scenes."""

from __future__ import annotations

import warnings

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from skimage import exposure

from geoproc.enhance import adjust_gamma, clahe, equalize_hist, percentiles, rgb, stretch
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.kernels.enhance import clahe_apply, clahe_luts, clip_histogram, histogram

rng = np.random.default_rng(5)


def _bands(t=3, y=48, x=40) -> xr.Dataset:
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": 100.0 - np.arange(y), "x": np.arange(x) * 1.0}
    out = {}
    for i, name in enumerate(("red", "green", "blue", "nir")):
        v = rng.lognormal(-2.0 + 0.3 * i, 0.6, (t, y, x)).astype(np.float32)
        v[rng.random(v.shape) < 0.03] = np.nan
        out[name] = xr.DataArray(v, dims=("time", "y", "x"), coords=coords, attrs={"units": "1"})
    out["red"][1, :10, :10] = np.nan  # a nodata block
    return xr.Dataset(out).rio.write_crs(32633)


def _chunked(ds):
    return ds.chunk({"time": 1, "y": 17, "x": 13})


def _bound(values: np.ndarray, bins: int = 65536) -> float:
    return (np.nanmax(values) - np.nanmin(values)) / bins


# --------------------------------------------------------------------------- histogram and percentiles


def test_histogram_kernel_equals_numpy_including_edge_values():
    v = np.concatenate([rng.normal(size=5000), np.linspace(-1, 1, 101), [np.nan, 5.0, -5.0]])
    edges = np.linspace(-1.0, 1.0, 257)
    ref, _ = np.histogram(v[~np.isnan(v)], bins=edges)
    np.testing.assert_array_equal(histogram(v[None], edges), ref)
    v32 = v.astype(np.float32)
    ref32 = np.histogram(v32[~np.isnan(v32)].astype(np.float64), bins=edges)[0]
    np.testing.assert_array_equal(histogram(v32.reshape(2, -1), edges), ref32)


@pytest.mark.parametrize("q", [(2, 98), (0, 1, 50, 99.5, 100)])
def test_percentiles_within_bound_of_numpy_and_chunking_free(q):
    ds = _bands()
    got = percentiles(ds, q)
    lazy = percentiles(_chunked(ds), q)
    assert isinstance(lazy.red.data, da.Array)
    for name in ds.data_vars:
        v = ds[name].values
        ref = np.nanpercentile(v, q)
        np.testing.assert_array_less(np.abs(got[name].values - ref), _bound(v) + 1e-12)
        np.testing.assert_array_equal(lazy[name].values, got[name].values)  # integer counts: exact
    assert list(got.red.percentile.values) == list(q)
    assert got.red.values[0] == np.nanmin(ds.red.values) or q[0] != 0  # q = 0 is the exact minimum


def test_percentiles_per_band_dim_and_all_nan_band():
    arr = _bands().to_array("band")
    arr[3] = np.nan
    got = percentiles(arr, (5, 95), bins=1024)
    assert got.dims == ("band", "percentile")
    for b in range(3):
        v = arr.values[b]
        np.testing.assert_array_less(np.abs(got.values[b] - np.nanpercentile(v, (5, 95))), _bound(v, 1024) + 1e-12)
    assert np.isnan(got.values[3]).all()


# --------------------------------------------------------------------------- stretch and gamma


def test_stretch_uses_global_percentiles_so_tiles_match():
    ds = _bands()
    got = stretch(ds, (2, 98))
    lazy = stretch(_chunked(ds), (2, 98))
    for name in ds.data_vars:
        v = ds[name].values
        lo, hi = np.nanpercentile(v, (2, 98))
        ref = np.clip((v - lo) / (hi - lo), 0, 1)
        tol = 2 * _bound(v) / (hi - lo)  # percentiles within one bin width
        np.testing.assert_allclose(got[name].values, ref, atol=tol + 1e-6, equal_nan=True)
        np.testing.assert_array_equal(lazy[name].values, got[name].values)
        assert got[name].dtype == np.float32 and np.array_equal(np.isnan(got[name].values), np.isnan(v))
    assert got.rio.crs == ds.rio.crs and got.red.attrs["stretch"] == "percentiles 2..98"


def test_stretch_with_limits_and_constant_band():
    arr = xr.DataArray(np.float32([[0, 5, 10, 20, np.nan]]), dims=("y", "x"))
    np.testing.assert_array_equal(stretch(arr, limits=(0, 10)).values, np.float32([[0, 0.5, 1, 1, np.nan]]))
    const = xr.DataArray(np.full((3, 3), 7, np.float32), dims=("y", "x"))
    np.testing.assert_array_equal(stretch(const).values, np.zeros((3, 3), np.float32))


def test_adjust_gamma_equals_skimage():
    img = rng.random((30, 20)).astype(np.float32)
    arr = xr.DataArray(img, dims=("y", "x"))
    for g, gain in ((0.5, 1.0), (2.2, 0.8)):
        ref = exposure.adjust_gamma(img.astype(np.float64), g, gain)
        np.testing.assert_allclose(adjust_gamma(arr, g, gain).values, ref, rtol=1e-6)
        lazy = adjust_gamma(arr.chunk({"y": 7}), g, gain)
        np.testing.assert_array_equal(lazy.values, adjust_gamma(arr, g, gain).values)


# --------------------------------------------------------------------------- histogram equalisation


def test_equalize_hist_equals_skimage_and_is_chunking_free():
    img = rng.gamma(2.0, 1.0, (50, 45)).astype(np.float32)
    arr = xr.DataArray(img, dims=("y", "x"))
    for nbins in (256, 64):
        got = equalize_hist(arr, nbins).values
        np.testing.assert_allclose(got, exposure.equalize_hist(img, nbins=nbins), atol=2e-6)
        np.testing.assert_array_equal(equalize_hist(arr.chunk({"y": 12, "x": 20}), nbins).values, got)


def test_equalize_hist_pools_dates_and_skips_nan():
    ds = _bands()
    got = equalize_hist(ds).red.values
    v = ds.red.values
    ref = exposure.equalize_hist(v[~np.isnan(v)])
    np.testing.assert_allclose(got[~np.isnan(v)], ref, atol=2e-6)
    assert np.isnan(got[np.isnan(v)]).all()


# --------------------------------------------------------------------------- CLAHE


def test_clip_histogram_equals_scikit_image():
    sk_clip = getattr(pytest.importorskip("skimage.exposure._adapthist"), "clip_histogram", None)
    if sk_clip is None:
        pytest.skip("scikit-image's private clip_histogram moved")

    for _ in range(20):
        hist = rng.integers(0, 60, 256) * (rng.random(256) < 0.4) + rng.integers(0, 3, 256)
        hist[rng.integers(0, 256, 3)] += rng.integers(50, 2000, 3)
        limit = int(rng.integers(1, 40))
        ref = sk_clip(hist.copy(), limit)
        got = hist.astype(np.int64)
        clip_histogram(got, limit)
        np.testing.assert_array_equal(got, ref)


def _skimage_levels(img: np.ndarray) -> np.ndarray:
    """The grey levels skimage's CLAHE works on: 14-bit rounding, then bins of ``1 + 16384 // 256``."""
    from skimage.exposure import rescale_intensity
    from skimage.util import img_as_uint

    q = np.round(rescale_intensity(img_as_uint(img), out_range=(0, 16383))).astype(np.uint16)
    return (q // (1 + 16384 // 256)).astype(np.float32)


@pytest.mark.parametrize("clip", [0.01, 0.05, 0.0])
def test_clahe_kernels_equal_skimage_on_the_same_grey_levels(clip):
    """Given skimage's grey levels, the tiles, clipping, redistribution and bilinear blending agree to skimage's
    integer truncation (2 / 16383), once both are rescaled to span [0, 1] as skimage does."""
    img = rng.random((96, 80)) ** 2
    ky, kx = 24, 20
    levels = _skimage_levels(img)[None]
    luts = clahe_luts(levels, 0.0, 256.0, ky, kx, 256, clip)
    out = np.empty(levels.shape, np.float32)
    ours = clahe_apply(levels, 0.0, 256.0, luts, 0, 0, 0, 0, 96 // ky, 80 // kx, ky, kx, out)[0].astype(np.float64)
    ours = (ours - ours.min()) / (ours.max() - ours.min())
    ref = exposure.equalize_adapthist(img, kernel_size=(ky, kx), clip_limit=clip, nbins=256)
    np.testing.assert_allclose(ours, ref, atol=2.5e-4)


def test_clahe_close_to_skimage_on_a_real_band(shared_data):
    """Public function vs skimage on whole tiles of a real band: they differ by the grey levels only (256 float
    bins of [min, max] here; 253 levels of a 14-bit rounding there) and by skimage's final rescale."""
    import rioxarray

    red = rioxarray.open_rasterio(shared_data / "rio-tiler" / "red.tif").squeeze("band", drop=True)
    img = red.values[49:209, 47:207].astype(np.float64)  # the central 160 x 160 px (5 x 5 tiles of 32), no nodata
    assert (img > 0).all()
    arr = xr.DataArray(img.astype(np.float32), dims=("y", "x"))
    ours = clahe(arr, kernel_size=32).values.astype(np.float64)
    ours = (ours - ours.min()) / (ours.max() - ours.min())
    ref = exposure.equalize_adapthist(img / img.max(), kernel_size=32, clip_limit=0.01, nbins=256)
    diff = np.abs(ours - ref)
    # measured: mean 0.0021, 99th percentile 0.0097, max 0.045, correlation 0.9998
    assert diff.mean() < 0.005 and np.percentile(diff, 99) < 0.02 and diff.max() < 0.08
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("chunks", [{"y": 20, "x": 13}, {"y": 48, "x": 7}, {"time": 1, "y": 9, "x": 40}])
def test_clahe_chunked_equals_unchunked_bit_for_bit(chunks):
    ds = _bands()
    got = clahe(ds.red, kernel_size=(12, 10), clip_limit=0.02, nbins=64)
    lazy = clahe(ds.red.chunk(chunks), kernel_size=(12, 10), clip_limit=0.02, nbins=64)
    assert lazy.chunks == ds.red.chunk(chunks).chunks  # back on the input's chunks
    np.testing.assert_array_equal(lazy.values, got.values)
    v = ds.red.values
    assert np.array_equal(np.isnan(got.values), np.isnan(v))
    assert np.nanmin(got.values) >= 0 and np.nanmax(got.values) <= 1


def test_clahe_of_a_nan_free_image_is_unaffected_by_a_nan_area_elsewhere():
    img = rng.random((40, 40)).astype(np.float32)
    holed = img.copy()
    holed[:, 30:] = np.nan
    holed[0, 0], img[0, 0] = 1.0, 1.0  # same global range
    holed[0, 1], img[0, 1] = 0.0, 0.0
    a = clahe(xr.DataArray(img, dims=("y", "x")), kernel_size=10).values
    b = clahe(xr.DataArray(holed, dims=("y", "x")), kernel_size=10).values
    np.testing.assert_array_equal(a[:, :15], b[:, :15])  # tiles 0 and 1 only: no NaN in their reach
    assert np.isfinite(b[:, :30]).all() and np.isnan(b[:, 30:]).all()


def test_clahe_errors():
    arr = _bands().red
    with pytest.raises(InvalidArgumentError, match="kernel_size"):
        clahe(arr, kernel_size=1)
    with pytest.raises(InvalidArgumentError, match="clip_limit"):
        clahe(arr, clip_limit=-0.1)
    with pytest.raises(InvalidArgumentError, match="nbins"):
        clahe(arr, nbins=1)


# --------------------------------------------------------------------------- RGB(A)


def _rgba_reference(bands: list[np.ndarray], limits: list[tuple[float, float]], g: float = 1.0) -> np.ndarray:
    out = []
    for v, (lo, hi) in zip(bands, limits):
        s = np.clip((v.astype(np.float64) - lo) / (hi - lo), 0, 1) ** g
        out.append(np.floor(s * 255 + 0.5))
    valid = ~np.any([np.isnan(v) for v in bands], axis=0)
    rgb_ = np.where(valid, np.stack(out), 0).astype(np.uint8)
    return np.concatenate([rgb_, (valid * 255).astype(np.uint8)[None]])


def test_rgb_true_colour_with_percentile_stretch():
    ds = _bands()
    got = rgb(ds, ("red", "green", "blue"), stretch=(2, 98))
    assert got.dims == ("time", "band", "y", "x") and got.dtype == np.uint8
    assert list(got.band.values) == ["R", "G", "B", "A"] and got.rio.crs == ds.rio.crs
    # percentiles from the global histogram are within a bin of numpy's, so at most 1 level apart
    lims = [tuple(np.nanpercentile(ds[b].values, (2, 98))) for b in ("red", "green", "blue")]
    for t in range(ds.sizes["time"]):
        ref = _rgba_reference([ds[b].values[t] for b in ("red", "green", "blue")], lims)
        diff = np.abs(got.values[t].astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    lazy = rgb(_chunked(ds), ("red", "green", "blue"), stretch=(2, 98))
    np.testing.assert_array_equal(lazy.values, got.values)


def test_rgb_false_colour_limits_gamma_and_nodata_transparent():
    ds = _bands()
    got = rgb(ds, ("nir", "red", "green"), limits=(0.0, 0.4), gamma=0.8)
    ref = np.stack(
        [_rgba_reference([ds[b].values[t] for b in ("nir", "red", "green")], [(0.0, 0.4)] * 3, 0.8) for t in range(3)]
    )
    np.testing.assert_array_equal(got.values, ref)
    alpha = got.sel(band="A").values
    nodata = np.isnan(ds.nir.values) | np.isnan(ds.red.values) | np.isnan(ds.green.values)
    np.testing.assert_array_equal(alpha == 0, nodata)
    assert (got.values[:, :3][np.broadcast_to(nodata[:, None], got.values[:, :3].shape)] == 0).all()
    assert got.attrs["source_bands"] == "nir,red,green"
    no_alpha = rgb(ds, ("nir", "red", "green"), limits=(0.0, 0.4), gamma=0.8, alpha=False)
    np.testing.assert_array_equal(no_alpha.values, got.values[:, :3])


def test_rgb_from_a_band_dim_and_errors():
    ds = _bands().isel(time=0)
    arr = ds.to_array("band")
    np.testing.assert_array_equal(rgb(arr, limits=(0, 0.3)).values, rgb(ds, limits=(0, 0.3)).values)
    with pytest.raises(UnknownBandError, match="swir16"):
        rgb(ds, ("swir16", "red", "green"))
    with pytest.raises(InvalidArgumentError, match="three bands"):
        rgb(ds, ("red", "green"))
    with pytest.raises(InvalidArgumentError, match="low < high"):
        rgb(ds, stretch=(98, 2))


def test_tasks_pickle_kernels_by_reference():
    lazy = _chunked(_bands())
    results = [stretch(lazy).red, equalize_hist(lazy).red, clahe(lazy.red, kernel_size=8), rgb(lazy)]
    results.append(adjust_gamma(lazy.red, 2))
    for r in results:
        payload = cloudpickle.dumps(dict(r.data.__dask_graph__()))
        assert b"numba" not in payload


def test_real_rgb_composite_stretches_two_percent_to_each_end(shared_data):
    """The rio-tiler Landsat red/green/blue bands (uint16, nodata 0): each band's 2nd/98th percentiles map to 0/255,
    so about 2 % of the valid pixels saturate at each end, and nodata is transparent."""
    import rioxarray

    base = shared_data / "rio-tiler"
    bands = ("red", "green", "blue")
    ds = xr.Dataset({b: rioxarray.open_rasterio(base / f"{b}.tif").squeeze("band", drop=True) for b in bands})
    for b in ds.data_vars:
        ds[b].attrs["nodata"] = 0  # raw integers with their nodata value, as load(raw=True) leaves them
    out = rgb(ds.chunk({"y": 100, "x": 100}), stretch=(2, 98))
    values = out.values
    nodata = (ds.red.values == 0) | (ds.green.values == 0) | (ds.blue.values == 0)
    assert nodata.any()
    np.testing.assert_array_equal(values[3] == 0, nodata)
    for c in range(3):
        v = values[c][~nodata]
        assert 0.01 < (v == 0).mean() < 0.03 and 0.01 < (v == 255).mean() < 0.03
    assert out.rio.crs == ds.rio.crs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(values, rgb(ds, stretch=(2, 98)).values)
