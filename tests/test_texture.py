"""geoproc.texture.glcm: scikit-image on the same quantised windows, numpy vs dask, chunking, coords, real data."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from geoproc.errors import InvalidArgumentError
from geoproc.texture import DEFAULT_GLCM_FEATURES, GLCM_FEATURES, glcm

from .kernels.test_texture_kernels import reference_features

skimage_feature = pytest.importorskip("skimage.feature")

rng = np.random.default_rng(5)


def _image(shape=(23, 29), nan_fraction=0.05):
    img = rng.gamma(2.0, 0.1, shape).astype(np.float32)
    img[rng.random(shape) < nan_fraction] = np.nan
    coords = {"y": 5000.0 - 10 * np.arange(shape[-2]), "x": 300000.0 + 10 * np.arange(shape[-1])}
    dims = ("y", "x")
    if len(shape) == 3:
        coords["time"] = np.arange(shape[0]).astype("datetime64[D]")
        dims = ("time", "y", "x")
    return xr.DataArray(img, dims=dims, coords=coords, name="red").rio.write_crs(32633)


def _reference(img: np.ndarray, window, levels, distances, angles, symmetric, names, value_range=None):
    """skimage on the windows of the image quantised by the documented formula (global min/max by default)."""
    lo, hi = value_range if value_range is not None else (np.nanmin(img), np.nanmax(img))
    q = np.clip(np.floor((img.astype(np.float64) - lo) / (hi - lo) * levels), 0, levels - 1)
    q = np.where(np.isnan(img), -1, q).astype(np.int16)
    r = window // 2
    return reference_features(np.pad(q, r, constant_values=-1), r, distances, angles, levels, symmetric, names)


def test_glcm_matches_skimage_per_window_with_global_quantisation():
    img = _image()
    angles = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
    got = glcm(img, window=5, levels=16, distances=(1, 2), angles=angles, features=GLCM_FEATURES, average_angles=False)
    ref = _reference(img.values, 5, 16, [1, 2], list(angles), True, GLCM_FEATURES)
    assert got.dims == ("feature", "distance", "angle", "y", "x")
    np.testing.assert_array_equal(np.isnan(got.values), np.isnan(ref))
    np.testing.assert_allclose(got.values, ref, rtol=2e-6, atol=2e-6, equal_nan=True)


def test_glcm_value_range_non_symmetric_and_averaged():
    img = _image((18, 21), nan_fraction=0.0)
    got = glcm(img, window=7, levels=8, value_range=(0.0, 0.5), symmetric=False, features=["entropy", "correlation"])
    ref = _reference(img.values, 7, 8, [1], [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4], False,
                     ["entropy", "correlation"], value_range=(0.0, 0.5))  # fmt: skip
    assert got.dims == ("feature", "distance", "y", "x")
    np.testing.assert_allclose(got.values, ref.mean(axis=2), rtol=2e-6, atol=2e-6)
    assert got.attrs["value_range"] == [0.0, 0.5]


@pytest.mark.parametrize("chunks", [{"y": 8, "x": 10}, {"y": 2, "x": 3}, {"y": 11, "x": -1}])
def test_glcm_dask_equals_numpy_bit_for_bit(chunks):
    img = _image((2, 26, 31))
    kwargs = dict(window=7, levels=32, distances=(1, 3), features=GLCM_FEATURES)
    eager = glcm(img, **kwargs)
    lazy = glcm(img.chunk({"time": 1, **chunks}), **kwargs)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.values, eager.values)  # NaN in the same places, every bit the same


def test_glcm_stack_is_sliced_with_one_global_range_and_keeps_coords():
    img = _image((2, 15, 17))
    out = glcm(img.chunk({"y": 6}), window=3, levels=8)
    assert out.dims == ("time", "feature", "distance", "y", "x")
    assert list(out.feature.values) == list(DEFAULT_GLCM_FEATURES) and out.distance.values.tolist() == [1]
    np.testing.assert_array_equal(out.time.values, img.time.values)
    np.testing.assert_array_equal(out.x.values, img.x.values)
    assert out.rio.crs.to_epsg() == 32633
    # one global (lo, hi) over the whole stack: each slice equals the slice run alone with that range
    lo, hi = float(np.nanmin(img.values)), float(np.nanmax(img.values))
    for t in range(2):
        alone = glcm(img.isel(time=t), window=3, levels=8, value_range=(lo, hi))
        np.testing.assert_array_equal(out.isel(time=t).values, alone.values)


def test_glcm_dataset_and_integer_input():
    raw = rng.integers(0, 1000, (12, 14)).astype(np.uint16)
    ds = xr.Dataset({"a": (("y", "x"), raw), "b": (("y", "x"), raw.astype(np.float32) / 2)})
    out = glcm(ds, window=3, levels=10, features="contrast")
    assert set(out.data_vars) == {"a", "b"}
    # scaling the values does not change the quantised image, so the features agree
    np.testing.assert_array_equal(out.a.values, out.b.values)
    ref = _reference(raw.astype(np.float32), 3, 10, [1], [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4], True,
                     ["contrast"])  # fmt: skip
    np.testing.assert_allclose(out.a.values[0], ref[0].mean(axis=1), rtol=2e-6)


def test_glcm_offsets_round_like_skimage():
    """Pairs for unusual angles and distances land where graycomatrix puts them: with one grey level per
    pixel, the contrast of a window is (9 dr + dc)**2 for the offset (dr, dc) it used."""
    n = 9
    ids = np.arange(n * n, dtype=np.float32).reshape(n, n)
    for d, a in [(1, math.pi / 6), (2, math.pi / 4), (3, 5 * math.pi / 6), (2, -math.pi / 3), (1, math.pi)]:
        got = glcm(xr.DataArray(ids, dims=("y", "x")), window=7, levels=n * n, distances=[d], angles=[a],
                   features="contrast", value_range=(0, n * n))  # fmt: skip
        ref = _reference(ids, 7, n * n, [d], [a], True, ["contrast"], value_range=(0, n * n))
        np.testing.assert_allclose(got.values[0, 0], ref[0, 0, 0], rtol=1e-6, equal_nan=True)
        rnd = lambda v: math.copysign(math.floor(abs(v) + 0.5), v)  # noqa: E731  (the documented rounding)
        dr, dc = rnd(math.sin(a) * d), rnd(math.cos(a) * d)
        assert np.nanmax(got.values) == pytest.approx((9 * dr + dc) ** 2, rel=0.05)


def test_glcm_nan_rules():
    img = np.arange(36, dtype=np.float32).reshape(6, 6)
    img[2, 3] = np.nan
    out = glcm(xr.DataArray(img, dims=("y", "x")), window=3, levels=4, features="contrast").values[0, 0]
    assert np.isnan(out[2, 3])  # a NaN pixel is NaN
    assert np.isfinite(np.delete(out.ravel(), 2 * 6 + 3)).all()  # its neighbours just lose the pairs with it
    assert np.isnan(glcm(xr.DataArray(np.full((4, 4), np.nan, np.float32), dims=("y", "x")), window=3).values).all()


def test_glcm_errors():
    img = _image((8, 8))
    with pytest.raises(InvalidArgumentError, match="odd"):
        glcm(img, window=4)
    with pytest.raises(InvalidArgumentError, match="distances"):
        glcm(img, window=3, distances=[3])
    with pytest.raises(InvalidArgumentError, match="unknown GLCM feature"):
        glcm(img, features=["sharpness"])
    with pytest.raises(InvalidArgumentError, match="levels"):
        glcm(img, levels=1000)
    with pytest.raises(InvalidArgumentError, match="dimension 'y'"):
        glcm(img.rename(y="row"))
    with pytest.raises(InvalidArgumentError, match="value_range"):
        glcm(img, value_range=(1.0, 0.0))


def test_glcm_on_real_dem_and_ndvi(shared_data):
    """Real rasters: the eo-learn DEM and one NDVI date; skimage on a sample of windows, and chunked == whole."""
    patch = shared_data / "eolearn" / "TestEOPatch"
    for img in (np.load(patch / "data_timeless" / "DEM.npy")[..., 0], np.load(patch / "data" / "NDVI.npy")[20, ..., 0]):
        arr = xr.DataArray(img, dims=("y", "x"))
        kwargs = dict(window=9, levels=32, distances=(1, 2), features=GLCM_FEATURES, average_angles=False)
        whole = glcm(arr, **kwargs)
        np.testing.assert_array_equal(glcm(arr.chunk({"y": 40, "x": 35}), **kwargs).values, whole.values)
        sub = img[30:52, 40:63]  # windows reach 4 px around the sample: compare on its interior
        lo, hi = float(img.min()), float(img.max())
        ref = _reference(sub, 9, 32, [1, 2], [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4], True, GLCM_FEATURES,
                         value_range=(lo, hi))  # fmt: skip
        np.testing.assert_allclose(whole.values[..., 34:48, 44:59], ref[..., 4:-4, 4:-4], rtol=2e-6, atol=2e-6)


def test_glcm_numpy_input_is_tiled_without_changing_a_bit(monkeypatch):
    import geoproc.edges

    img = _image((2, 37, 41))
    whole = glcm(img, window=5, features=GLCM_FEATURES, distances=(1, 2))
    monkeypatch.setattr(geoproc.edges, "TILE", 16)
    np.testing.assert_array_equal(glcm(img, window=5, features=GLCM_FEATURES, distances=(1, 2)).values, whole.values)
