"""cloud_mask from quality bands (Landsat QA_PIXEL, Sentinel-2 SCL) and its spectral / combined methods."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr

import geoproc
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.masking import QA_PIXEL_DEFAULT_MASK, QA_PIXEL_FLAGS, cloud_mask, sensor_of

SCENES = (
    "LC08_L2SP_008059_20191201_20200825_02_T1",  # 81% cloud, shadows, clear, fill
    "LC08_L2SP_017036_20130419_20200913_02_T2",  # fully clouded
)


def _qa(shared_data, scene) -> np.ndarray:
    with rasterio.open(shared_data / "stactools-landsat" / scene / f"{scene}_QA_PIXEL.TIF") as src:
        return src.read(1)


def _bit(qa, b):
    return ((qa.astype(np.int64) >> b) & 1).astype(bool)


@pytest.mark.parametrize("scene", SCENES)
def test_qa_pixel_fractions_match_the_bits(shared_data, scene):
    qa = _qa(shared_data, scene)
    da_qa = xr.DataArray(qa, dims=("y", "x"), name="qa_pixel")
    for flag, bit in QA_PIXEL_FLAGS.items():
        got = cloud_mask(da_qa, classes=[flag]).values
        np.testing.assert_array_equal(got, _bit(qa, bit))
        assert got.mean() == _bit(qa, bit).mean()
    default = cloud_mask(da_qa).values
    expected = _bit(qa, 0) | _bit(qa, 1) | _bit(qa, 2) | _bit(qa, 3) | _bit(qa, 4)
    np.testing.assert_array_equal(default, expected)
    valid = ~_bit(qa, 0)
    if scene == SCENES[1]:
        assert default[valid].all()  # fully clouded
    else:
        # the shares the scene's description gives (of valid pixels): 81% cloud, 6% shadow, 16% clear
        assert abs(_bit(qa, 3)[valid].mean() - 0.81) < 0.01 and abs(_bit(qa, 4)[valid].mean() - 0.062) < 0.005
        # real pixels carry clear + shadow: the clear bit alone would keep them, the default mask does not
        clear_and_shadow = _bit(qa, 6) & _bit(qa, 4)
        assert clear_and_shadow.sum() > 1000 and default[clear_and_shadow].all()


@pytest.mark.parametrize("scene", SCENES)
def test_qa_pixel_confidence_levels(shared_data, scene):
    qa = _qa(shared_data, scene)
    da_qa = xr.DataArray(qa, dims=("y", "x"), name="qa_pixel")
    for name, shift in (("cloud", 8), ("shadow", 10), ("snow", 12), ("cirrus", 14)):
        for level, value in (("low", 1), ("medium", 2), ("high", 3)):
            got = cloud_mask(da_qa, classes=[], confidence={name: level}).values
            np.testing.assert_array_equal(got, ((qa.astype(np.int64) >> shift) & 3) >= value)
    both = cloud_mask(da_qa, classes=["fill"], confidence={"cloud": 3}).values
    np.testing.assert_array_equal(both, _bit(qa, 0) | (((qa >> 8) & 3) == 3))


def test_qa_pixel_numpy_vs_dask_float_and_nodata(shared_data):
    qa = _qa(shared_data, SCENES[0])
    ds = xr.Dataset({"qa_pixel": (("y", "x"), qa)}, coords={"y": np.arange(512.0)[::-1], "x": np.arange(512.0)})
    m_np = cloud_mask(ds)
    m_da = cloud_mask(ds.chunk({"y": 100, "x": 130}))
    assert isinstance(m_da.data, da.Array)
    np.testing.assert_array_equal(m_np.values, m_da.values)
    assert m_np.attrs["kind"] == "qa_pixel" and m_np.attrs["masked_flags"] == list(QA_PIXEL_DEFAULT_MASK)
    # NaN in a float QA band counts as fill
    as_float = ds.qa_pixel.astype(np.float32).where(ds.qa_pixel != 1)
    np.testing.assert_array_equal(cloud_mask(as_float, kind="qa_pixel").values, m_np.values)
    # a loader's nodata value (here 0, which has no bit set) counts as fill
    filled = ds.qa_pixel.where(~_bit(qa, 0), 0).assign_attrs(nodata=0)
    np.testing.assert_array_equal(cloud_mask(filled).values, m_np.values)


def test_kind_from_variable_name_and_from_sensor():
    codes = np.array([[21824, 22280], [23888, 1]], np.uint16)  # clear, cloud, clear + shadow, fill
    landsat = xr.Dataset({"QA": (("y", "x"), codes)}, attrs={"input_items": ["LC09_L2SP_010065_20220129_20220131_02_T1"]})
    assert sensor_of(landsat) == "landsat"
    np.testing.assert_array_equal(cloud_mask(landsat).values, [[False, True], [True, True]])
    renamed = landsat.rename({"QA": "quality"})
    np.testing.assert_array_equal(cloud_mask(renamed, band="quality").values, [[False, True], [True, True]])
    s2 = xr.Dataset({"quality": (("y", "x"), np.array([[4, 9]], np.uint8))}, attrs={"input_items": ["S2A_33TUM_20240501"]})
    assert sensor_of(s2) == "sentinel-2"
    np.testing.assert_array_equal(cloud_mask(s2, band="quality").values, [[False, True]])
    np.testing.assert_array_equal(cloud_mask(s2, band="quality", classes=["vegetation"]).values, [[True, False]])
    assert sensor_of(xr.Dataset()) is None


def test_scl_mask_agrees_with_s2cloudless_on_shared_dates(shared_data):
    """Sen2Cor SCL vs the s2cloudless CLM on the 36 dates both have: far above chance agreement."""
    old = shared_data / "eolearn" / "TestEOPatch_v2018-12-11_T36"
    scl = np.load(old / "mask" / "SCL.npy")[..., 0]
    index = json.load(open(old / "alignment_with_T68.json"))["index_into_T68_timestamps"]
    clm = np.load(shared_data / "eolearn" / "TestEOPatch" / "mask" / "CLM.npy")[index, ..., 0].astype(bool)
    got = geoproc.cloud_mask(xr.DataArray(scl, dims=("time", "y", "x")).chunk({"y": 50, "x": 50}), classes=[8, 9, 10])
    pred = got.values
    np.testing.assert_array_equal(pred, np.isin(scl, [8, 9, 10]))
    oa = (pred == clm).mean()
    chance = pred.mean() * clm.mean() + (1 - pred.mean()) * (1 - clm.mean())
    kappa = (oa - chance) / (1 - chance)
    f1 = 2 * (pred & clm).sum() / (pred.sum() + clm.sum())
    assert oa > 0.8 and kappa > 0.6 and f1 > 0.75, (oa, kappa, f1)


def _scene(t=2, y=40, x=50):
    veg = {"blue": 0.04, "green": 0.06, "red": 0.04, "nir": 0.35, "swir16": 0.18, "swir22": 0.09}
    cloud = {"blue": 0.5, "green": 0.5, "red": 0.5, "nir": 0.5, "swir16": 0.4, "swir22": 0.3}
    coords = {"time": np.arange(t).astype("datetime64[D]"), "y": 5e6 - np.arange(y) * 10.0, "x": 4e5 + np.arange(x) * 10.0}
    ds = xr.Dataset({k: (("time", "y", "x"), np.full((t, y, x), v, np.float32)) for k, v in veg.items()}, coords=coords)
    for k, v in cloud.items():
        ds[k][:, 10:20, 10:20] = v
    for k in ("nir", "swir16"):
        ds[k][:, 24:30, 12:18] *= 0.4  # dark, 40-100 m south of the cloud
    ds["scl"] = (("time", "y", "x"), np.full((t, y, x), 4, np.uint8))
    ds["scl"][:, 30:35, 30:35] = 9  # a cloud only the SCL knows
    return ds.rio.write_crs(32633)


def test_methods_spectral_both_and_auto():
    ds = _scene()
    quality = cloud_mask(ds)
    spectral = cloud_mask(ds, method="spectral")
    classes = geoproc.spectral_mask.spectral_classes(ds.drop_vars("scl"))
    np.testing.assert_array_equal(spectral.values, np.isin(classes.values, (255, 4, 2)))
    assert spectral.values[:, 24:30, 12:18].all() and spectral.values[:, 12:18, 12:18].all()
    assert not spectral.values[:, 30:35, 30:35].any() and quality.values[:, 30:35, 30:35].all()
    both = cloud_mask(ds, method="both")
    np.testing.assert_array_equal(both.values, quality.values | spectral.values)
    assert both.dims == quality.dims
    # auto: the quality band if there is one, else the reflectance tests
    np.testing.assert_array_equal(cloud_mask(ds).values, quality.values)
    np.testing.assert_array_equal(cloud_mask(ds.drop_vars("scl")).values, spectral.values)
    # spectral options and classes
    only_cloud = cloud_mask(ds, method="spectral", classes=["cloud"], spectral={"shadows": False})
    np.testing.assert_array_equal(only_cloud.values, classes.values == 4)
    scl_and_clouds = cloud_mask(ds, method="both", spectral={"classes": ["cloud"], "shadows": False})
    np.testing.assert_array_equal(scl_and_clouds.values, quality.values | (classes.values == 4))
    chunked = cloud_mask(ds.chunk({"y": 16, "x": 20}), method="both")
    np.testing.assert_array_equal(chunked.values, both.values)


def test_errors():
    ds = _scene()
    with pytest.raises(UnknownBandError, match="quality band"):
        cloud_mask(ds[["red", "nir"]])
    with pytest.raises(InvalidArgumentError, match="method"):
        cloud_mask(ds, method="magic")
    with pytest.raises(InvalidArgumentError, match="Landsat QA_PIXEL only"):
        cloud_mask(ds, confidence={"cloud": "high"})
    qa = xr.DataArray(np.zeros((2, 2), np.uint16), dims=("y", "x"), name="qa_pixel")
    with pytest.raises(InvalidArgumentError, match="not offered"):
        cloud_mask(qa, classes=["clear"])
    with pytest.raises(InvalidArgumentError, match="confidence level"):
        cloud_mask(qa, confidence={"cloud": "very"})
    with pytest.raises(InvalidArgumentError, match="no QA_PIXEL confidence"):
        cloud_mask(qa, confidence={"water": "high"})
    with pytest.raises(InvalidArgumentError, match="unknown SCL class"):
        cloud_mask(ds, classes=["clouds"])
    with pytest.raises(InvalidArgumentError, match="kind"):
        cloud_mask(qa, kind="fmask")
