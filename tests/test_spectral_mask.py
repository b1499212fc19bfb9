"""Spectral (Fmask-like) cloud and shadow detection: synthetic truth, real scenes, geometry, chunk safety."""

from __future__ import annotations

import datetime as dt
import json
import os

import dask.array as da
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr

import geoproc
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.spectral_mask import FmaskThresholds, spectral_classes, sun_angles

BANDS = ["blue", "green", "red", "nir", "swir16", "swir22"]
VEG = {"blue": 0.04, "green": 0.06, "red": 0.04, "nir": 0.35, "swir16": 0.18, "swir22": 0.09}
CLOUD = {"blue": 0.5, "green": 0.5, "red": 0.5, "nir": 0.5, "swir16": 0.4, "swir22": 0.3}


def _f1(pred, ref):
    return 2 * (pred & ref).sum() / (pred.sum() + ref.sum())


@pytest.fixture(scope="module")
def synthetic(archive):
    """Spectral classes and truth band 2 of every tile of the session archive, each on its own 10 m grid."""
    items = geoproc.search(archive.catalog)
    preds, truths = [], []
    for name, _, _ in archive.tiles:
        ds = geoproc.load([it for it in items if f"_{name}_" in it.id], BANDS, resolution=10, chunks=128)
        preds.append(spectral_classes(ds).values.ravel())
        for iid in ds.attrs["input_items"]:
            with rasterio.open(os.path.join(archive.item_dir(iid), "truth.tif")) as src:
                truths.append(src.read(2).ravel())
    return np.concatenate(preds), np.concatenate(truths)


def test_finds_synthetic_clouds_and_shadows(synthetic):
    pred, truth = synthetic
    np.testing.assert_array_equal(pred == 255, truth == 255)  # no data where the scene has none
    keep = truth != 255
    pred, truth = pred[keep], truth[keep]
    assert _f1(pred == 4, truth == 1) >= 0.9
    assert _f1(pred == 2, truth == 2) >= 0.9
    assert (truth == 2).sum() > 0.05 * truth.size  # shadows are a real share of the test


def _scene(t=2, y=80, x=90, res=10.0):
    coords = {"time": np.array(["2024-05-01T10:00", "2024-05-06T10:00"], "datetime64[ns]")[:t],
              "y": 5e6 - np.arange(y) * res, "x": 4e5 + np.arange(x) * res}
    ds = xr.Dataset({k: (("time", "y", "x"), np.full((t, y, x), v, np.float32)) for k, v in VEG.items()}, coords=coords)
    noise = np.random.default_rng(0).normal(1.0, 0.02, (len(BANDS), t, y, x)).astype(np.float32)
    for i, k in enumerate(BANDS):
        ds[k].values *= noise[i]
    return ds.rio.write_crs(32633)


def _put(ds, values, ys, xs):
    for k, v in values.items():
        ds[k][:, ys, xs] = v


def _darken(ds, ys, xs, factor=0.4):
    for k in ("nir", "swir16"):
        ds[k][:, ys, xs] = ds[k][:, ys, xs] * factor


@pytest.mark.parametrize("azimuth, shift", [(0, (1, 0)), (90, (0, -1)), (180, (-1, 0)), (270, (0, 1)), (135, (-1, -1))])
def test_shadow_is_projected_away_from_the_sun(azimuth, shift):
    """A dark patch where the cloud's shadow falls is shadow; the same patch on the sunny side is not."""
    ds = _scene(t=1, y=120, x=120)
    _put(ds, CLOUD, slice(50, 70), slice(50, 70))
    dy, dx = shift  # unit step (rows, cols) away from the sun: north-up grid, x to the east
    d = 30  # px: 300 m, a 300 m high cloud at 45 degrees
    for sgn in (1, -1):
        ys = slice(50 + sgn * dy * d, 70 + sgn * dy * d)
        xs = slice(50 + sgn * dx * d, 70 + sgn * dx * d)
        _darken(ds, ys, xs)
    kw = {"sun_azimuth": azimuth, "sun_elevation": 45.0, "cloud_height": (250.0, 350.0), "background_radius": 400.0}
    classes = spectral_classes(ds, **kw).values[0]
    cast = classes[60 + dy * d, 60 + dx * d]
    sunny = classes[60 - dy * d, 60 - dx * d]
    assert cast == 2 and sunny == 0, (cast, sunny)
    assert (classes[55:65, 55:65] == 4).all()
    # without angles, both dark patches lie within shadow_distance of the cloud
    near = spectral_classes(ds, shadow_distance=500.0, background_radius=400.0).values[0]
    assert near[60 + dy * d, 60 + dx * d] == 2 and near[60 - dy * d, 60 - dx * d] == 2
    far = spectral_classes(ds, shadow_distance=50.0, background_radius=400.0).values[0]
    assert far[60 + dy * d, 60 + dx * d] == 0


def test_chunked_equals_whole_bit_for_bit():
    ds = _scene(t=2, y=80, x=90)
    _put(ds, CLOUD, slice(10, 25), slice(15, 40))
    _put(ds, CLOUD, slice(50, 53), slice(60, 62))  # small: removed by min_cloud_size
    _darken(ds, slice(30, 45), slice(15, 40))
    ds["blue"][1, 70:, :10] = np.nan  # no data
    options = [
        {},
        {"sun_azimuth": [10.0, 200.0], "sun_elevation": [40.0, 60.0], "cloud_height": (100.0, 400.0)},
        {"min_cloud_size": 8, "cloud_buffer": 30.0, "shadow_buffer": 20.0, "background_radius": 150.0},
        {"shadow_distance": None, "cloud_fill": False},
    ]
    for kw in options:
        whole = spectral_classes(ds, **kw)
        for chunks in ({"y": 13, "x": 17}, {"time": 1, "y": 40, "x": 30}):
            got = spectral_classes(ds.chunk(chunks), **kw)
            assert isinstance(got.data, da.Array) and got.chunks == ds.blue.chunk(chunks).chunks
            np.testing.assert_array_equal(got.values, whole.values)
    assert set(np.unique(whole.values)) >= {0, 2, 4, 255}
    small = spectral_classes(ds, min_cloud_size=8).values
    assert (small[:, 50:53, 60:62] != 4).all() and (whole.values[:, 50:53, 60:62] == 4).all()


def test_buffers_and_no_shadows():
    ds = _scene(t=1)
    _put(ds, CLOUD, slice(20, 40), slice(20, 40))
    base = spectral_classes(ds, shadows=False).values[0]
    buffered = spectral_classes(ds, shadows=False, cloud_buffer=50.0).values[0]
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[-5:6, -5:6]
    ref = ndi.binary_dilation(base == 4, structure=yy**2 + xx**2 <= 25)
    np.testing.assert_array_equal(buffered == 4, ref)


def test_raw_integers_decode_like_floats_on_real_landsat(shared_data):
    """Landsat C2 L2 raw DN with scale/offset/nodata attrs == the same bands decoded to float first."""
    scene = "LC08_L2SP_008059_20191201_20200825_02_T1"
    folder = shared_data / "stactools-landsat" / scene
    raw = {}
    for name, b in zip(BANDS, range(2, 8)):
        with rasterio.open(folder / f"{scene}_SR_B{b}.TIF") as src:
            raw[name] = src.read(1)[::2, ::2]  # 256 x 256 keeps the test fast
    coords = {"y": 3e5 - np.arange(256) * 900.0, "x": 4e5 + np.arange(256) * 900.0}
    attrs = {"scale": 2.75e-5, "offset": -0.2, "nodata": 0}
    as_raw = xr.Dataset({k: (("y", "x"), v, attrs) for k, v in raw.items()}, coords=coords)
    f = np.float32
    decoded = xr.Dataset(
        {k: (("y", "x"), np.where(v == 0, np.nan, v.astype(f) * f(2.75e-5) + f(-0.2)).astype(f)) for k, v in raw.items()},
        coords=coords,
    )
    a = spectral_classes(as_raw, sun_azimuth=136.3, sun_elevation=57.1, background_radius=9000.0)
    b = spectral_classes(decoded.chunk({"y": 100, "x": 100}), sun_azimuth=136.3, sun_elevation=57.1, background_radius=9000.0)
    np.testing.assert_array_equal(a.values, b.values)
    with rasterio.open(folder / f"{scene}_QA_PIXEL.TIF") as src:
        qa = src.read(1)[::2, ::2].astype(np.int64)
    keep = (qa & 1) == 0
    cloud_ref = (((qa >> 1) | (qa >> 3)) & 1).astype(bool)
    pred = a.values == 4
    # the pixel tests on surface reflectance find most of USGS' clouds and invent almost none
    assert (pred & cloud_ref)[keep].sum() / pred[keep].sum() > 0.95
    assert (pred & cloud_ref)[keep].sum() / cloud_ref[keep].sum() > 0.6


def test_agrees_with_s2cloudless_on_real_sentinel2(shared_data):
    eo = shared_data / "eolearn"
    align = json.load(open(eo / "REFERENCE_SCENES.alignment.json"))
    scenes = np.load(eo / "REFERENCE_SCENES.npy")
    names = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12", "cirrus": "B10"}
    t, h, w, _ = scenes.shape
    ds = xr.Dataset(
        {k: (("time", "y", "x"), np.ascontiguousarray(scenes[..., align["band_order"].index(b)])) for k, b in names.items()},
        coords={"time": np.arange(t), "y": 5e6 - np.arange(h) * 10.0, "x": 4e5 + np.arange(w) * 10.0},
    )
    clm = np.load(eo / "TestEOPatch" / "mask" / "CLM.npy")[align["index_into_TestEOPatch_timestamps"], ..., 0].astype(bool)
    pred = spectral_classes(ds.chunk({"y": 50, "x": 50})).values == 4
    oa = (pred == clm).mean()
    assert oa > 0.9 and _f1(pred, clm) > 0.9, (oa, _f1(pred, clm))


def test_sun_angles_from_items():
    def item(iid, hour, az, el):
        props = {"view:sun_azimuth": az, "view:sun_elevation": el}
        return pystac.Item(iid, None, None, dt.datetime(2024, 5, 1, hour, tzinfo=dt.timezone.utc), props)

    items = [item("a", 10, 350.0, 50.0), item("b", 10, 10.0, 52.0), item("c", 9, 150.0, 40.0)]
    ds = xr.Dataset(coords={"time": np.array(["2024-05-01T10:00", "2024-05-03T10:00"], "datetime64[ns]")})
    ds.attrs["input_items"] = ["a", "b"]
    az, el = sun_angles(ds, items)
    np.testing.assert_allclose(az, [0.0, np.nan], atol=1e-9)  # circular mean of 350 and 10; nothing for day 2
    np.testing.assert_allclose(el, [51.0, np.nan])
    # spectral_classes reads them from the items: the same classes as with the angles given
    scene = _scene(t=2)
    _put(scene, CLOUD, slice(10, 30), slice(10, 30))
    _darken(scene, slice(40, 60), slice(10, 30))
    scene.attrs["input_items"] = ["a", "b"]
    by_items = spectral_classes(scene, items=items, cloud_height=(100.0, 600.0))
    by_args = spectral_classes(scene, sun_azimuth=[0.0, np.nan], sun_elevation=[51.0, np.nan], cloud_height=(100.0, 600.0))
    np.testing.assert_array_equal(by_items.values, by_args.values)
    assert by_items.attrs["shadow_search"] == ["projected", "nearby"]


def test_thresholds_are_parameters():
    ds = _scene(t=1)
    _put(ds, CLOUD, slice(20, 40), slice(20, 40))
    strict = FmaskThresholds(hot_offset=0.5)  # no pixel passes the haze test
    assert (spectral_classes(ds, thresholds=strict).values != 4).all()


def test_errors_and_pickling():
    ds = _scene(t=1)
    with pytest.raises(UnknownBandError, match="swir22"):
        spectral_classes(ds.drop_vars("swir22"))
    with pytest.raises(InvalidArgumentError, match="both"):
        spectral_classes(ds, sun_azimuth=10.0)
    with pytest.raises(InvalidArgumentError, match="per time step"):
        spectral_classes(ds, sun_azimuth=[1.0, 2.0, 3.0], sun_elevation=[1.0, 2.0, 3.0])
    with pytest.raises(InvalidArgumentError, match="geographic"):
        spectral_classes(ds.rio.write_crs(4326))
    with pytest.raises(InvalidArgumentError, match="cloud_height"):
        spectral_classes(ds, cloud_height=(500.0, 100.0))
    renamed = ds.rename({"nir": "B08"})
    np.testing.assert_array_equal(spectral_classes(renamed, bands={"nir": "B08"}).values, spectral_classes(ds).values)

    import cloudpickle

    lazy = spectral_classes(ds.chunk({"y": 40, "x": 45}))
    assert b"numba" not in cloudpickle.dumps(dict(lazy.data.__dask_graph__())), "a kernel is pickled by value"


# --- the published thresholds, pinned literally, and met by pixels on both sides ----------------------------------


def test_fmask_thresholds_are_the_published_values():
    """Zhu & Woodcock 2012, "Object-based cloud and cloud shadow detection in Landsat imagery", Remote Sensing of
    Environment 118:83-94: Eq. 1 basic test (Band 7 > 0.03, NDSI < 0.8, NDVI < 0.8), Eq. 2 whiteness < 0.7, Eq. 3
    HOT (Band 1 - 0.5 Band 3 - 0.08 > 0), Eq. 4 Band 4 / Band 5 > 0.75, Eq. 5 water (NDVI < 0.01 and Band 4 < 0.11,
    or 0 < NDVI < 0.1 and Band 4 < 0.05), Eq. 19 (0.02 darker NIR), Eq. 20 snow (NDSI > 0.15, Band 4 > 0.11,
    Band 2 > 0.1); Zhu, Wang & Woodcock 2015 (RSE 159:269-277), cirrus band > 0.01. ``shadow_ratio`` 0.8 is
    geoproc's own documented choice."""
    expected = {
        "swir22_min": 0.03, "ndsi_max": 0.8, "ndvi_max": 0.8, "whiteness_max": 0.7, "hot_offset": 0.08,
        "nir_swir16_min": 0.75, "cirrus_min": 0.01, "water_ndvi_max": 0.01, "water_nir_max": 0.11,
        "water_ndvi_max_low": 0.1, "water_nir_max_low": 0.05, "snow_ndsi_min": 0.15, "snow_nir_min": 0.11,
        "snow_green_min": 0.1, "shadow_nir_difference": 0.02, "shadow_ratio": 0.8,
    }
    assert vars(FmaskThresholds()) == expected
    # the kernel gets them in its order
    from geoproc.kernels.spectral_mask import THRESHOLD_NAMES

    np.testing.assert_array_equal(FmaskThresholds().pixel_tests(), [expected[n] for n in THRESHOLD_NAMES])


def _pixels(spectra: list[dict]) -> xr.Dataset:
    """One pixel per spectrum (two identical rows), 10 m apart, as float32 reflectance."""
    n = len(spectra)
    data = {b: (("y", "x"), np.tile(np.array([s[b] for s in spectra], np.float32), (2, 1))) for b in BANDS}
    return xr.Dataset(data, coords={"y": [5e6, 5e6 - 10.0], "x": 4e5 + 10.0 * np.arange(n)})


def _classes(spectra):
    """The pixel tests alone: no 3 x 3 fill, no shadow search (classes 0 clear, 1 water, 3 snow, 4 cloud)."""
    return spectral_classes(_pixels(spectra), shadows=False, cloud_fill=False).values[0].tolist()


def _spectrum(blue, green, red, nir, swir16, swir22):
    return dict(zip(BANDS, (blue, green, red, nir, swir16, swir22)))


def test_water_test_on_both_sides_of_each_threshold():
    """Eq. 5; blue 0.02 keeps the haze test (Eq. 3) negative and green = SWIR-1.6 keeps NDSI at 0 (no snow)."""
    def px(red, nir):
        return _spectrum(0.02, 0.05, red, nir, 0.05, 0.02)

    cases = [
        (px(0.050, 0.045), 1),  # NDVI -0.05, NIR 0.045: first part
        (px(0.110, 0.105), 1),  # NDVI -0.02, NIR 0.105 < 0.11
        (px(0.120, 0.115), 0),  # NDVI -0.02, NIR 0.115 > 0.11
        (px(0.160, 0.150), 0),  # NIR 0.15: water only if the NIR threshold were 0.2
        (px(0.0785, 0.080), 1),  # NDVI 0.0095 < 0.01, NIR 0.08
        (px(0.0776, 0.080), 0),  # NDVI 0.0152 > 0.01 and NIR 0.08 > 0.05: neither part
        (px(0.040, 0.045), 1),  # NDVI 0.059 in (0, 0.1), NIR 0.045 < 0.05: second part
        (px(0.050, 0.055), 0),  # NDVI 0.048, NIR 0.055 > 0.05
        (px(0.0354, 0.045), 0),  # NDVI 0.12 > 0.1
    ]
    assert _classes([c for c, _ in cases]) == [w for _, w in cases]


def test_snow_test_on_both_sides_of_each_threshold():
    """Eq. 20 without its thermal test; SWIR-2.2 0.01 fails the basic test (Eq. 1), so no pixel is a cloud, and red
    0.02 keeps NDVI high (no water)."""
    def px(green, nir, ndsi):
        swir16 = green * (1 - ndsi) / (1 + ndsi)  # NDSI = (green - swir16) / (green + swir16)
        return _spectrum(0.3, green, 0.02, nir, swir16, 0.01)

    cases = [
        (px(0.5, 0.3, 0.20), 3),  # NDSI 0.2 > 0.15
        (px(0.5, 0.3, 0.10), 0),  # NDSI 0.1 < 0.15
        (px(0.5, 0.3, 0.30), 3),  # NDSI 0.3: snow unless the threshold were 0.4
        (px(0.5, 0.12, 0.5), 3),  # NIR 0.12 > 0.11
        (px(0.5, 0.10, 0.5), 0),  # NIR 0.10 < 0.11
        (px(0.11, 0.3, 0.5), 3),  # green 0.11 > 0.1
        (px(0.09, 0.3, 0.5), 0),  # green 0.09 < 0.1
    ]
    assert _classes([c for c, _ in cases]) == [w for _, w in cases]


def test_cloud_tests_on_both_sides_of_each_threshold():
    """Eq. 1-4 one at a time around a bright pixel that passes them all."""
    def px(blue=0.45, green=0.3, red=0.3, nir=0.5, swir16=0.4, swir22=0.3):
        return _spectrum(blue, green, red, nir, swir16, swir22)

    cases = [
        (px(), 4),  # whiteness 0.57, HOT 0.22, NIR/SWIR 1.25
        (px(blue=0.52), 0),  # whiteness 0.79 > 0.7
        (px(nir=0.32), 4),  # NIR/SWIR-1.6 0.8 > 0.75
        (px(nir=0.28), 0),  # 0.7 < 0.75 (a cloud if the threshold were 0.6)
        (px(swir22=0.035), 4),  # SWIR-2.2 above 0.03
        (px(swir22=0.025), 0),
        (px(blue=0.2, green=0.2, red=0.2, nir=0.2, swir16=0.15, swir22=0.1), 4),  # HOT 0.2 - 0.1 - 0.08 > 0
        (px(blue=0.14, green=0.14, red=0.14, nir=0.2, swir16=0.15, swir22=0.1), 0),  # HOT -0.01
        (px(green=0.9, swir16=0.08, nir=0.5), 0),  # NDSI 0.84 > 0.8 (and snow instead: 3)
        (px(nir=0.9, red=0.05, swir16=0.4), 0),  # NDVI 0.89 > 0.8
    ]
    got = _classes([c for c, _ in cases])
    want = [w for _, w in cases]
    want[8] = 3  # the NDSI > 0.8 pixel is snow (Eq. 20) once it is no cloud
    assert got == want


@pytest.mark.parametrize("elevation", [20.0, 30.0, 45.0, 60.0, 70.0])
def test_shadow_distance_is_height_over_tan_elevation(elevation):
    """A cloud at height H casts its shadow H / tan(elevation) away, along the sun azimuth (plain geometry): a dark
    patch there is shadow; one at H * tan(elevation) (the same distance only at 45 degrees) is not."""
    import math

    height, res = 300.0, 10.0
    right = height / math.tan(math.radians(elevation)) / res  # px
    wrong = height * math.tan(math.radians(elevation)) / res
    ds = _scene(t=1, y=150, x=40)
    r0, c0 = 20, 15  # a 10 x 10 px cloud; the sun in the north (azimuth 0): shadows fall south, to larger rows
    _put(ds, CLOUD, slice(r0, r0 + 10), slice(c0, c0 + 10))
    at = round(right)
    _darken(ds, slice(r0 + at, r0 + at + 10), slice(c0, c0 + 10))
    off = round(wrong)
    apart = abs(off - at) >= 12
    if apart:
        _darken(ds, slice(r0 + off, r0 + off + 10), slice(c0, c0 + 10))
    kw = {"sun_azimuth": 0.0, "sun_elevation": elevation, "cloud_height": (0.9 * height, 1.1 * height),
          "background_radius": 300.0}
    classes = spectral_classes(ds, **kw).values[0]
    assert (classes[r0 + 2 : r0 + 8, c0 + 2 : c0 + 8] == 4).all()
    assert (classes[r0 + at + 2 : r0 + at + 8, c0 + 2 : c0 + 8] == 2).all(), (elevation, at)
    if apart:
        assert (classes[r0 + off : r0 + off + 10, c0 : c0 + 10] == 0).all(), (elevation, off)
    # nothing else is shadow: the zone is the cloud moved 0.9 .. 1.1 x the distance
    rows = np.flatnonzero((classes == 2).any(axis=1))
    assert rows.min() >= r0 + math.floor(0.9 * right) - 1 and rows.max() <= r0 + 9 + math.ceil(1.1 * right) + 1


@pytest.mark.parametrize("azimuth", [30.0, 120.0, 210.0, 300.0, 63.0])
@pytest.mark.parametrize("flip", ["", "y", "x"])
def test_shadow_falls_along_any_azimuth_on_any_grid_orientation(azimuth, flip):
    """The shadow of a cloud lies H / tan(el) away from it, opposite the sun, in map (east, north) coordinates, on
    north-up and south-up grids and with x running west; chunked (halo included) equals whole."""
    import math

    el, height, res = 40.0, 250.0, 10.0
    d = height / math.tan(math.radians(el)) / res  # px, about 29.8
    az = math.radians(azimuth)
    de, dn = -math.sin(az) * d, -math.cos(az) * d  # the shadow is away from the sun
    ds = _scene(t=1, y=100, x=100)
    rc, cc = 50, 50  # cloud centre (row, col) on a north-up, east-right grid
    _put(ds, CLOUD, slice(rc - 4, rc + 4), slice(cc - 4, cc + 4))
    rs, cs = round(rc - dn), round(cc + de)
    _darken(ds, slice(rs - 4, rs + 4), slice(cs - 4, cs + 4))
    rw, cw = round(rc + dn), round(cc - de)  # the same patch on the sunny side: not shadow
    _darken(ds, slice(rw - 4, rw + 4), slice(cw - 4, cw + 4))
    if flip:
        ds = ds.isel({flip: slice(None, None, -1)})
    kw = {"sun_azimuth": azimuth, "sun_elevation": el, "cloud_height": (200.0, 300.0), "background_radius": 200.0}
    classes = spectral_classes(ds, **kw)
    chunked = spectral_classes(ds.chunk({"y": 23, "x": 31}), **kw)
    np.testing.assert_array_equal(chunked.values, classes.values)
    north_up = classes.sortby("y", ascending=False).sortby("x").values[0]
    assert (north_up[rs - 2 : rs + 2, cs - 2 : cs + 2] == 2).all(), (azimuth, flip)
    assert (north_up[rw - 3 : rw + 3, cw - 3 : cw + 3] == 0).all(), (azimuth, flip)
    assert classes.attrs["shadow_search"] == ["projected"]


def test_sun_angles_match_items_within_12_hours_and_average_on_the_circle():
    def item(iid, when, az=None, el=None):
        props = {} if az is None else {"view:sun_azimuth": az, "view:sun_elevation": el}
        return pystac.Item(iid, None, None, when, props)

    utc = dt.timezone.utc
    day = dt.datetime(2024, 5, 1, 10, tzinfo=utc)
    items = [
        item("no-angles", day),  # skipped, not the end of the list
        item("a", day, 20.0, 40.0), item("b", day + dt.timedelta(hours=1), 40.0, 44.0),
        item("c", day + dt.timedelta(days=1, minutes=1), 100.0, 50.0),  # 11 h 59 min before the second step
        item("far", day + dt.timedelta(days=2, hours=11, minutes=30), 200.0, 60.0),  # 12 h 30 min from the third
    ]
    times = np.array(["2024-05-01T10:00", "2024-05-02T22:00", "2024-05-04T10:00"], "datetime64[ns]")
    ds = xr.Dataset(coords={"time": times})
    az, el = sun_angles(ds, items)
    np.testing.assert_allclose(az, [30.0, 100.0, np.nan], atol=1e-9)
    np.testing.assert_allclose(el, [42.0, 50.0, np.nan])
    ds.attrs["input_items"] = ["b", "c"]  # only the load's items count
    az, el = sun_angles(ds, items)
    np.testing.assert_allclose(az, [40.0, 100.0, np.nan], atol=1e-9)
    np.testing.assert_allclose(el, [44.0, 50.0, np.nan])
    around = [item("x", day, 350.0, 30.0), item("y", day, 20.0, 30.0), item("z", day, 330.0, 30.0)]
    az, _ = sun_angles(xr.Dataset(coords={"time": times[:1]}), around)
    np.testing.assert_allclose(az, [math_degrees_mean([350.0, 20.0, 330.0])], atol=1e-9)
    with pytest.raises(InvalidArgumentError, match="no time coordinate"):
        sun_angles(xr.Dataset(), items)


def math_degrees_mean(angles):
    """Circular mean of angles in degrees, in [0, 360)."""
    import math

    s = sum(math.sin(math.radians(a)) for a in angles)
    c = sum(math.cos(math.radians(a)) for a in angles)
    return math.degrees(math.atan2(s, c)) % 360.0


def test_distances_are_metres_at_any_resolution_and_attrs_describe_the_run():
    """Buffers, the background window and shadow_distance are in metres: at 20 m a 40 m buffer is 2 px."""
    from scipy import ndimage as ndi

    ds = _scene(t=1, y=60, x=60, res=20.0)
    _put(ds, CLOUD, slice(20, 30), slice(20, 30))
    base = spectral_classes(ds, shadows=False).values[0] == 4
    yy, xx = np.mgrid[-2:3, -2:3]
    buffered = spectral_classes(ds, shadows=False, cloud_buffer=40.0).values[0] == 4
    np.testing.assert_array_equal(buffered, ndi.binary_dilation(base, structure=yy**2 + xx**2 <= 4))
    _darken(ds, slice(32, 36), slice(22, 28))  # 2-6 px (40-120 m) south of the cloud
    near = spectral_classes(ds, shadow_distance=140.0, background_radius=200.0).values[0]
    assert (near[33:35, 23:27] == 2).all()
    assert not (spectral_classes(ds, shadow_distance=20.0, background_radius=200.0).values[0] == 2).any()
    grown = spectral_classes(ds, shadow_distance=140.0, background_radius=200.0, shadow_buffer=40.0).values[0] == 2
    np.testing.assert_array_equal(grown, ndi.binary_dilation(near == 2, structure=yy**2 + xx**2 <= 4) & (near != 4))
    out = spectral_classes(ds, shadow_distance=140.0)
    assert out.name == "spectral_classes" and out.dtype == np.uint8 and out.dims == ("time", "y", "x")
    np.testing.assert_array_equal(out.x.values, ds.x.values)
    assert out.attrs["flag_values"] == [0, 1, 2, 3, 4, 255]
    assert out.attrs["flag_meanings"] == "clear water shadow snow cloud no_data"
    assert out.attrs["bands"] == ["blue", "green", "red", "nir", "swir16", "swir22"]
    assert out.attrs["thresholds"]["whiteness_max"] == 0.7 and out.attrs["shadow_search"] == ["nearby"]
    assert spectral_classes(ds, shadows=False).attrs["shadow_search"] == ["off"]
    assert spectral_classes(ds, shadow_distance=None).attrs["shadow_search"] == ["anywhere"]


def test_cloud_fill_is_on_by_default_and_fills_a_one_pixel_hole():
    """Fmask's 3 x 3 majority fill: a clear pixel inside a cloud becomes cloud (default), or stays clear."""
    ds = _scene(t=1)
    _put(ds, CLOUD, slice(20, 30), slice(20, 30))
    for k, v in VEG.items():
        ds[k][:, 25, 25] = v  # a clear hole in the cloud
    default = spectral_classes(ds, shadows=False).values[0]
    filled = spectral_classes(ds, shadows=False, cloud_fill=True).values[0]
    unfilled = spectral_classes(ds, shadows=False, cloud_fill=False).values[0]
    assert default[25, 25] == 4 and filled[25, 25] == 4 and unfilled[25, 25] == 0
    np.testing.assert_array_equal(default, filled)


def test_the_cirrus_band_is_used_by_default_when_the_data_has_one():
    """Zhu et al. 2015: cirrus reflectance above 0.01 is cloud; use_cirrus=False ignores the band."""
    ds = _scene(t=1)
    ds["cirrus"] = xr.full_like(ds["blue"], 0.002)
    ds["cirrus"][:, 10:20, 10:20] = 0.03  # thin cirrus over clear vegetation: only the cirrus test sees it
    default = spectral_classes(ds, shadows=False, cloud_fill=False).values[0]
    without = spectral_classes(ds, shadows=False, cloud_fill=False, use_cirrus=False).values[0]
    assert (default[10:20, 10:20] == 4).all() and (without[10:20, 10:20] == 0).all()
    assert (default[40:, 40:] == 0).all()
