"""Public morphology functions: against scipy/scikit-image per slice, numpy vs dask, chunked vs whole."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr

from geoproc.errors import InvalidArgumentError
from geoproc.morphology import dilate, pixel_size, remove_small_objects

from .helpers import skimage_remove_small

rng = np.random.default_rng(11)


def _mask(t=3, y=61, x=77, p=0.05, res=20.0):
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": 5e6 - np.arange(y) * res, "x": 4e5 + np.arange(x) * res}
    m = xr.DataArray(rng.random((t, y, x)) < p, dims=("time", "y", "x"), coords=coords, name="m", attrs={"a": 1})
    return m.rio.write_crs(32633)


def _disk(r):
    n = int(np.floor(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return yy**2 + xx**2 <= r * r


@pytest.mark.parametrize("radius", [0, 1, 2.5, 9])
@pytest.mark.parametrize("shape", ["disk", "square"])
def test_dilate_matches_scipy_numpy_and_chunked(radius, shape):
    m = _mask()
    r = int(np.floor(radius))
    se = _disk(radius) if shape == "disk" else np.ones((2 * r + 1, 2 * r + 1), bool)
    ref = np.stack([ndi.binary_dilation(s, structure=se) for s in m.values])
    whole = dilate(m, radius, shape=shape)
    chunked = dilate(m.chunk({"time": 1, "y": 7, "x": 10}), radius, shape=shape)
    assert isinstance(chunked.data, da.Array) and chunked.chunks == m.chunk({"time": 1, "y": 7, "x": 10}).chunks
    np.testing.assert_array_equal(whole.values, ref)
    np.testing.assert_array_equal(chunked.values, ref)
    assert whole.dims == m.dims and "spatial_ref" in whole.coords and whole.attrs["a"] == 1


def test_dilate_in_metres_uses_the_pixel_size():
    m = _mask(res=20.0)
    assert pixel_size(m) == 20.0
    np.testing.assert_array_equal(dilate(m, 50.0, units="m").values, dilate(m, 2.5).values)


def test_dilate_on_real_masks_with_time_not_first(shared_data):
    clm = np.load(shared_data / "eolearn" / "TestEOPatch" / "mask" / "CLM.npy")[:8, ..., 0].astype(bool)
    m = xr.DataArray(np.moveaxis(clm, 0, -1), dims=("y", "x", "time"))  # time last: slices are still (y, x)
    got = dilate(m.chunk({"y": 30, "x": 40}), 3)
    assert got.dims == ("y", "x", "time")
    ref = np.stack([ndi.binary_dilation(s, structure=_disk(3)) for s in clm], axis=-1)
    np.testing.assert_array_equal(got.values, ref)


@pytest.mark.parametrize("min_size", [2, 6, 25])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_remove_small_objects_matches_skimage_numpy_and_chunked(min_size, connectivity):
    m = _mask(p=0.35)
    ref = np.stack([
        skimage_remove_small(s, min_size, connectivity) for s in m.values
    ])
    whole = remove_small_objects(m, min_size, connectivity=connectivity)
    np.testing.assert_array_equal(whole.values, ref)
    for chunks in ({"y": 9, "x": 13}, {"y": 30, "x": 25}):
        got = remove_small_objects(m.chunk(chunks), min_size, connectivity=connectivity)
        np.testing.assert_array_equal(got.values, ref)


def test_remove_small_objects_on_real_masks_matches_label_sizes(shared_data):
    clm = np.load(shared_data / "eolearn" / "TestEOPatch" / "mask" / "CLM.npy")[:10, ..., 0].astype(bool)
    clear = xr.DataArray(~clm, dims=("time", "y", "x"))
    got = remove_small_objects(clear.chunk({"y": 25, "x": 30}), 60).values
    for s, g in zip(~clm, got):
        labels, _ = ndi.label(s, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())
        np.testing.assert_array_equal(g, (labels > 0) & (sizes[labels] >= 60))


def test_remove_small_objects_area_in_square_metres():
    m = _mask(p=0.35, res=20.0)  # 400 m2 pixels: 2,000 m2 -> 5 pixels
    np.testing.assert_array_equal(remove_small_objects(m, 2000, units="m2").values, remove_small_objects(m, 5).values)


def test_errors():
    m = _mask()
    with pytest.raises(InvalidArgumentError, match="boolean"):
        dilate(m.astype(int), 1)
    with pytest.raises(InvalidArgumentError, match="shape"):
        dilate(m, 1, shape="diamond")
    with pytest.raises(InvalidArgumentError, match="units"):
        dilate(m, 1, units="km")
    with pytest.raises(InvalidArgumentError, match="connectivity"):
        remove_small_objects(m, 3, connectivity=6)
    with pytest.raises(InvalidArgumentError, match="geographic"):
        dilate(m.rio.write_crs(4326), 10.0, units="m")
    bare = xr.DataArray(np.zeros((4, 4), bool), dims=("y", "x"))
    with pytest.raises(InvalidArgumentError, match="pixel size"):
        dilate(bare, 10.0, units="m")
    assert dilate(bare, 10.0, units="m", resolution=5.0).shape == (4, 4)
