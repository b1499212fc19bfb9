"""geoproc.edges: Sobel against scipy.ndimage / scikit-image, Canny against skimage.feature.canny, on any chunking."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage as ndi

import geoproc
from geoproc.edges import canny, sobel
from geoproc.errors import InvalidArgumentError
from geoproc.kernels.edges import label_classes

skimage = pytest.importorskip("skimage")
from skimage.feature import canny as sk_canny  # noqa: E402
from skimage.filters import sobel as sk_sobel  # noqa: E402

rng = np.random.default_rng(8)


def _smooth_random(shape, dtype=np.float32, sigma=1.5):
    return ndi.gaussian_filter(rng.random(shape), sigma).astype(dtype)


def _da(img):
    dims = ("y", "x") if img.ndim == 2 else ("time", "y", "x")
    coords = {"y": 100.0 - np.arange(img.shape[-2]), "x": np.arange(img.shape[-1]) * 1.0}
    return xr.DataArray(img, dims=dims, coords=coords, name="b").rio.write_crs(3857)


def _sk_reference(img, sigma, low, high):
    return sk_canny(np.nan_to_num(img), sigma, low, high, mask=~np.isnan(img))


# --- Sobel ---------------------------------------------------------------------------------------------


def test_sobel_matches_scipy_and_skimage():
    img = rng.random((31, 37)).astype(np.float32)
    out = sobel(_da(img))
    f64 = img.astype(np.float64)
    gx, gy = ndi.sobel(f64, axis=1), ndi.sobel(f64, axis=0)  # mode="reflect", scipy's default
    np.testing.assert_allclose(out.magnitude.values, np.hypot(gx, gy), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.direction.values, np.arctan2(gy, gx), rtol=1e-6, atol=1e-6)
    # skimage's sobel is the same magnitude scaled by 1 / (4 sqrt 2)
    np.testing.assert_allclose(out.magnitude.values / (4 * np.sqrt(2)), sk_sobel(f64), rtol=1e-6, atol=1e-7)
    assert out.magnitude.dtype == np.float32 and out.rio.crs.to_epsg() == 3857
    np.testing.assert_array_equal(out.x.values, np.arange(37.0))


def test_sobel_nan_neighbourhood_and_flat_direction():
    img = np.ones((7, 8), np.float32)
    img[3, 4] = np.nan
    out = sobel(_da(img))
    nan = np.isnan(out.magnitude.values)
    expected = np.zeros_like(nan)
    expected[2:5, 3:6] = True  # every pixel whose 3 x 3 neighbourhood holds the NaN
    np.testing.assert_array_equal(nan, expected)
    assert (out.magnitude.values[~nan] == 0).all()
    assert np.isnan(out.direction.values).all()  # no gradient, no direction


@pytest.mark.parametrize("chunks", [{"y": 5, "x": 7}, {"y": 1, "x": 40}])
def test_sobel_dask_equals_numpy_bit_for_bit(chunks):
    img = _smooth_random((2, 23, 40))
    img[0, 4, 6] = np.nan
    eager = sobel(_da(img))
    lazy = sobel(_da(img).chunk(chunks))
    assert isinstance(lazy.magnitude.data, da.Array)
    for var in ("magnitude", "direction"):
        np.testing.assert_array_equal(lazy[var].values, eager[var].values)
    np.testing.assert_array_equal(eager.magnitude.values[1], sobel(_da(img[1])).magnitude.values)


# --- Canny ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma", [1.0, 2.3])
def test_canny_identical_to_skimage(dtype, sigma):
    img = _smooth_random((61, 54), dtype)
    yy, xx = np.mgrid[:61, :54]
    img += ((yy - 30) ** 2 + (xx - 25) ** 2 < 300).astype(dtype) * dtype(0.3)
    low, high = 0.02, 0.06
    ref = sk_canny(img, sigma, low, high)
    got = canny(_da(img), sigma=sigma, low_threshold=low, high_threshold=high)
    assert got.dtype == bool and ref.sum() > 100
    np.testing.assert_array_equal(got.values, ref)
    for chunks in ({"y": 9, "x": 14}, {"y": 30, "x": 7}):
        np.testing.assert_array_equal(canny(_da(img).chunk(chunks), sigma=sigma, low_threshold=low,
                                            high_threshold=high).values, ref)  # fmt: skip


def test_canny_nan_pixels_are_left_out_as_skimage_mask():
    img = _smooth_random((48, 50), np.float64)
    img[rng.random(img.shape) < 0.03] = np.nan
    img[10:20, 30:45] = np.nan  # and a hole
    ref = _sk_reference(img, 1.0, 0.01, 0.04)
    got = canny(_da(img).chunk({"y": 13, "x": 16}), low_threshold=0.01, high_threshold=0.04)
    np.testing.assert_array_equal(got.values, ref)
    assert not got.values[np.isnan(img)].any()


def test_canny_hysteresis_links_edges_across_chunks():
    """One long edge whose gradient rises along it, strong only near the bottom: the weak part in chunks with
    no strong pixel must be kept because it connects, through other chunks, to the strong end."""
    h, w = 96, 60
    yy, xx = np.mgrid[:h, :w]
    contrast = 0.2 + 0.8 * yy / (h - 1)
    img = ((xx - 0.3 * yy) > 15).astype(np.float64) * contrast + 0.002 * rng.random((h, w))
    mag_on_edge = np.hypot(ndi.sobel(ndi.gaussian_filter(img, 1.0), 0), ndi.sobel(ndi.gaussian_filter(img, 1.0), 1))
    profile = mag_on_edge.max(axis=1)[5:-5]
    low, high = 0.5 * profile.min(), np.quantile(profile, 0.85)  # strong only in the bottom rows
    ref = sk_canny(img, 1.0, low, high)
    strong_rows = np.flatnonzero(sk_canny(img, 1.0, high, high).any(axis=1))
    assert strong_rows.min() > 60 and ref[:48].sum() > 40  # the top half holds edges but no strong pixel
    chunks = {"y": 16, "x": 12}  # the edge crosses many chunk borders, some diagonally
    got = canny(_da(img).chunk(chunks), low_threshold=low, high_threshold=high)
    np.testing.assert_array_equal(got.values, ref)
    # and hysteresis inside each chunk alone would lose the top of the edge: the linking is what keeps it
    per_chunk = np.zeros_like(ref)
    for y0 in range(0, h, 16):
        for x0 in range(0, w, 12):
            cls = ref[y0 : y0 + 16, x0 : x0 + 12].astype(np.uint8) * 1
            cls[(sk_canny(img, 1.0, high, high)[y0 : y0 + 16, x0 : x0 + 12])] = 2
            per_chunk[y0 : y0 + 16, x0 : x0 + 12] = label_classes(cls) < 0
    assert per_chunk[:48].sum() == 0


def test_canny_random_chunkings_many_components():
    img = _smooth_random((70, 66), np.float32, sigma=1.0)
    ref = sk_canny(img, 1.0, 0.005, 0.03)
    assert ref.sum() > 300
    for chunks in ({"y": 7, "x": 8}, {"y": (20, 3, 40, 7), "x": (33, 33)}):
        got = canny(_da(img).chunk(chunks), low_threshold=0.005, high_threshold=0.03)
        np.testing.assert_array_equal(got.values, ref)


def test_canny_stack_coords_and_errors():
    img = _smooth_random((2, 30, 32))
    out = canny(_da(img).chunk({"time": 1, "y": 10}), low_threshold=0.01, high_threshold=0.04)
    assert out.dims == ("time", "y", "x") and out.rio.crs.to_epsg() == 3857
    for t in range(2):
        np.testing.assert_array_equal(out.values[t], sk_canny(img[t], 1.0, 0.01, 0.04))
    with pytest.raises(InvalidArgumentError, match="sigma"):
        canny(_da(img), sigma=0)
    with pytest.raises(InvalidArgumentError, match="below low_threshold"):
        canny(_da(img), low_threshold=0.5, high_threshold=0.1)


def test_canny_on_real_scenes(shared_data):
    """Real rasters: the eo-learn NDVI (one date, float32) and DEM; skimage's edges, whole and chunked."""
    patch = shared_data / "eolearn" / "TestEOPatch"
    ndvi = np.load(patch / "data" / "NDVI.npy")[12, ..., 0]
    dem = np.load(patch / "data_timeless" / "DEM.npy")[..., 0].astype(np.float64)
    for img, sigma, low, high in ((ndvi, 1.0, 0.1, 0.3), (dem, 2.0, 2.0, 8.0)):
        ref = sk_canny(img, sigma, low, high)
        assert 50 < ref.sum() < ref.size / 4
        arr = _da(img)
        np.testing.assert_array_equal(canny(arr, sigma=sigma, low_threshold=low, high_threshold=high).values, ref)
        lazy = canny(arr.chunk({"y": 32, "x": 27}), sigma=sigma, low_threshold=low, high_threshold=high)
        np.testing.assert_array_equal(lazy.values, ref)


def test_hysteresis_across_chunks_equals_global_labelling():
    """The chunk-joining step alone, on made-up candidate maps: sparse random ones (every kind of contact across
    chunk borders and corners) and a diagonal line that crosses chunk corners, strong at one end only."""
    from geoproc.edges import hysteresis_array

    for density in (0.25, 0.45):
        classes = (rng.random((57, 61)) < density).astype(np.uint8)
        classes[rng.random(classes.shape) < 0.01] = 2
        ref = label_classes(classes) < 0
        assert 0 < ref.sum() < (classes > 0).sum()
        for chunks in ((8, 8), (5, 13), ((30, 27), (1, 60))):
            got = hysteresis_array(da.from_array(classes, chunks=chunks)).compute()
            np.testing.assert_array_equal(got, ref)
    line = np.zeros((40, 40), np.uint8)
    line[np.arange(40), np.arange(40)] = 1  # touches its neighbours only through corners
    line[39, 39] = 2
    got = hysteresis_array(da.from_array(line, chunks=8)).compute()  # crosses 4 chunk corners diagonally
    np.testing.assert_array_equal(got, line > 0)
    anti = np.fliplr(line)
    np.testing.assert_array_equal(hysteresis_array(da.from_array(anti, chunks=8)).compute(), anti > 0)


def test_numpy_input_is_tiled_without_changing_a_bit(monkeypatch):
    import geoproc.edges

    img = _smooth_random((45, 50), np.float64)
    img[7, 9] = np.nan
    whole_s, whole_c = sobel(_da(img)), canny(_da(img), low_threshold=0.01, high_threshold=0.04)
    monkeypatch.setattr(geoproc.edges, "TILE", 16)  # 3 x 4 tiles, the last ones partial
    tiled_s, tiled_c = sobel(_da(img)), canny(_da(img), low_threshold=0.01, high_threshold=0.04)
    np.testing.assert_array_equal(tiled_s.magnitude.values, whole_s.magnitude.values)
    np.testing.assert_array_equal(tiled_s.direction.values, whole_s.direction.values)
    np.testing.assert_array_equal(tiled_c.values, whole_c.values)
    assert whole_c.values.sum() > 50


def test_tasks_pickle_kernels_by_reference():
    """Kernels reach workers by reference (module + name): a kernel pickled by value would compile again in
    every worker process."""
    import cloudpickle

    from geoproc.texture import glcm

    arr = _da(_smooth_random((40, 40))).chunk(16)
    for result in (sobel(arr).magnitude, canny(arr), glcm(arr, window=3)):
        payload = cloudpickle.dumps(dict(result.data.__dask_graph__()))
        assert b"numba" not in payload


def test_stored_integers_are_decoded_like_the_loader_does():
    """``load(..., raw=True)`` output (uint16 with scale/offset/nodata attrs) gives the edges of the reflectance."""
    rng = np.random.default_rng(5)
    raw = rng.integers(1, 4000, (40, 50)).astype(np.uint16)
    raw[10:30, 20:35] += 3000  # a bright square: edges to find
    raw[0, :5] = 0  # nodata
    attrs = {"scale": 1e-4, "offset": -0.1, "nodata": 0}
    stored = xr.DataArray(raw, dims=("y", "x"), attrs=attrs)
    decoded = raw.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)
    decoded[raw == 0] = np.nan
    reflectance = xr.DataArray(decoded, dims=("y", "x"))
    xr.testing.assert_identical(geoproc.sobel(stored).drop_attrs(), geoproc.sobel(reflectance).drop_attrs())
    np.testing.assert_array_equal(
        geoproc.canny(stored, sigma=1, low_threshold=0.02, high_threshold=0.05).values,
        geoproc.canny(reflectance, sigma=1, low_threshold=0.02, high_threshold=0.05).values,
    )
    assert geoproc.canny(reflectance, sigma=1, low_threshold=0.02, high_threshold=0.05).values.any()
    np.testing.assert_array_equal(
        geoproc.glcm(stored, window=5, levels=8).values, geoproc.glcm(reflectance, window=5, levels=8).values
    )
