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
