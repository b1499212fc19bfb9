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


# --- the tables, pinned by literal values from their sources (never read back from geoproc's own constants) -----


def test_scl_classes_and_default_mask_are_esas():
    """Sentinel-2 L2A Scene Classification: ESA, "Sentinel-2 Products Specification Document" (S2-PDGS-TAS-DI-PSD),
    L2A SCL table, and the Sen2Cor Software Release Note / Product Readme (class 2 "dark area pixels", "cast shadows"
    from processing baseline 04.00); geoproc's default mask as the README documents it: no data, saturated or
    defective, cloud shadows, cloud medium and high probability, thin cirrus."""
    from geoproc.masking import SCL_CLASSES, SCL_DEFAULT_MASK

    assert SCL_CLASSES == {
        0: "no_data",
        1: "saturated_or_defective",
        2: "dark_area_pixels",
        3: "cloud_shadows",
        4: "vegetation",
        5: "not_vegetated",
        6: "water",
        7: "unclassified",
        8: "cloud_medium_probability",
        9: "cloud_high_probability",
        10: "thin_cirrus",
        11: "snow",
    }
    assert tuple(SCL_DEFAULT_MASK) == (0, 1, 3, 8, 9, 10)
    codes = xr.DataArray(np.arange(12, dtype=np.uint8), dims="x", name="scl")
    #                          0     1      2     3      4      5      6      7     8     9     10     11
    expected = np.array([True, True, False, True, False, False, False, False, True, True, True, False])
    np.testing.assert_array_equal(cloud_mask(codes).values, expected)
    np.testing.assert_array_equal(cloud_mask(codes.chunk(5)).values, expected)
    # names select the classes ESA gives them (the README's example among them)
    by_name = {
        "no_data": 0, "saturated_or_defective": 1, "dark_area_pixels": 2, "cloud_shadows": 3, "vegetation": 4,
        "not_vegetated": 5, "water": 6, "unclassified": 7, "cloud_medium_probability": 8,
        "cloud_high_probability": 9, "thin_cirrus": 10, "snow": 11,
    }
    for name, code in by_name.items():
        assert np.flatnonzero(cloud_mask(codes, classes=[name]).values).tolist() == [code], name
    readme = cloud_mask(codes, classes=["cloud_high_probability", "cloud_shadows"])
    assert np.flatnonzero(readme.values).tolist() == [3, 9]
    assert cloud_mask(codes, classes=[2, 11]).attrs["masked_classes"] == [2, 11]


# USGS, "Landsat 8-9 Collection 2 (C2) Level 2 Science Product (L2SP) Guide" (LSDS-1619) and "Landsat 8-9 OLI/TIRS
# Collection 2 Level 1 Data Format Control Book" / product guide (LSDS-1328), QA_PIXEL bit table: bit 0 fill,
# 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water, 8-9 cloud confidence, 10-11 cloud
# shadow confidence, 12-13 snow/ice confidence, 14-15 cirrus confidence (00 none, 01 low, 10 medium, 11 high).
USGS_QA_BITS = {"fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "shadow": 4, "snow": 5, "water": 7}
USGS_QA_CONFIDENCE = {"cloud": 8, "shadow": 10, "snow": 12, "cirrus": 14}
CLEAR_BIT = 6


def test_qa_pixel_bits_and_confidences_are_usgs():
    from geoproc.masking import CONFIDENCE_LEVELS, QA_PIXEL_CONFIDENCE

    assert QA_PIXEL_FLAGS == USGS_QA_BITS
    assert QA_PIXEL_CONFIDENCE == USGS_QA_CONFIDENCE
    assert CONFIDENCE_LEVELS == {"low": 1, "medium": 2, "high": 3}
    assert tuple(QA_PIXEL_DEFAULT_MASK) == ("fill", "dilated_cloud", "cirrus", "cloud", "shadow")
    # each flag masks a pixel with its own bit set and nothing else, and never the clear bit (6) alone
    single = xr.DataArray(np.array([1 << b for b in range(16)], np.uint16), dims="x", name="qa_pixel")
    for name, bit in USGS_QA_BITS.items():
        got = cloud_mask(single, classes=[name]).values
        assert np.flatnonzero(got).tolist() == [bit], (name, np.flatnonzero(got))
    assert not cloud_mask(single, classes=list(USGS_QA_BITS)).values[CLEAR_BIT]
    # the default mask: bits 0-4
    assert np.flatnonzero(cloud_mask(single).values).tolist() == [0, 1, 2, 3, 4]
    # a clear land pixel of Landsat 8 (clear bit 6, low cloud/shadow/snow/cirrus confidence: 2^6+2^8+2^10+2^12+2^14)
    clear = 64 + 256 + 1024 + 4096 + 16384
    assert clear == 21824
    # ... the same over water (+ bit 7), and snow (+ bit 5, snow confidence high: + bit 13)
    values = np.array([clear, clear + 128, clear + 32 + 8192], np.uint16)
    qa = xr.DataArray(values, dims="x", name="qa_pixel")
    np.testing.assert_array_equal(cloud_mask(qa).values, [False, False, False])
    np.testing.assert_array_equal(cloud_mask(qa, classes=["water"]).values, [False, True, False])
    np.testing.assert_array_equal(cloud_mask(qa, classes=["snow"]).values, [False, False, True])
    np.testing.assert_array_equal(cloud_mask(qa, classes=["fill"], confidence={"snow": "high"}).values,
                                  [False, False, True])


@pytest.mark.parametrize("name, low_bit", sorted(USGS_QA_CONFIDENCE.items()))
def test_qa_pixel_confidence_levels_at_usgs_bits(name, low_bit):
    """Two bits from ``low_bit``: 00 none, 01 low, 10 medium, 11 high; a level masks itself and the levels above."""
    codes = np.array([level << low_bit for level in range(4)], np.uint16)
    qa = xr.DataArray(codes, dims="x", name="qa_pixel")
    expected = {"low": [False, True, True, True], "medium": [False, False, True, True], "high": [False, False, False, True]}
    for level, want in expected.items():
        np.testing.assert_array_equal(cloud_mask(qa, classes=[], confidence={name: level}).values, want, err_msg=level)
    # the neighbouring bits (another confidence) mask nothing
    others = xr.DataArray(np.array([3 << b for b in range(8, 16, 2) if b != low_bit], np.uint16), dims="x", name="qa")
    assert not cloud_mask(others, kind="qa_pixel", classes=[], confidence={name: "low"}).values.any()


def test_float_codes_nan_and_nodata_count_as_no_data_or_fill():
    """SCL and QA_PIXEL loaded as float (NaN where missing) or with a nodata value: NaN is SCL class 0 and QA fill
    (bit 0) only, a pixel equal to ``nodata`` is fill only when fill is masked; the result is boolean either way."""
    from geoproc.masking import qa_pixel_mask_array, scl_mask_array

    scl = np.array([np.nan, 3.0, 4.0, 9.0, 1.0], np.float32)
    for arr in (scl, da.from_array(scl, chunks=2)):
        got = scl_mask_array(arr)
        assert got.dtype == bool
        np.testing.assert_array_equal(np.asarray(got), [True, True, False, True, True])
        np.testing.assert_array_equal(np.asarray(scl_mask_array(arr, [0])), [True, False, False, False, False])
        np.testing.assert_array_equal(np.asarray(scl_mask_array(arr, [1])), [False, False, False, False, True])
    qa = np.array([np.nan, 21824.0, 22280.0, 2.0], np.float32)  # missing, clear, cloud, dilated cloud only
    for arr in (qa, da.from_array(qa, chunks=2)):
        got = qa_pixel_mask_array(arr)
        assert got.dtype == bool
        np.testing.assert_array_equal(np.asarray(got), [True, False, True, True])
        np.testing.assert_array_equal(np.asarray(qa_pixel_mask_array(arr, ["fill"])), [True, False, False, False])
        np.testing.assert_array_equal(np.asarray(qa_pixel_mask_array(arr, ["dilated_cloud"])), [False, False, False, True])
    codes = np.array([0, 21824, 22280], np.uint16)  # 0: the loader's fill value, no bit set
    assert qa_pixel_mask_array(codes).tolist() == [False, False, True]
    assert qa_pixel_mask_array(codes, nodata=0).tolist() == [True, False, True]
    assert qa_pixel_mask_array(codes, ["fill"], nodata=0).tolist() == [True, False, False]
    assert qa_pixel_mask_array(codes, ["cloud"], nodata=0).tolist() == [False, False, True]
    assert qa_pixel_mask_array(codes, nodata=np.nan).tolist() == [False, False, True]
    # through cloud_mask: the nodata attribute of the band
    band = xr.DataArray(codes, dims="x", name="qa_pixel", attrs={"nodata": 0})
    assert cloud_mask(band).values.tolist() == [True, False, True]
    assert cloud_mask(band, classes=["cloud"]).values.tolist() == [False, False, True]
    with pytest.raises(InvalidArgumentError, match="integer"):
        scl_mask_array(np.array(["a"]))
    with pytest.raises(InvalidArgumentError, match="integer"):
        qa_pixel_mask_array(np.array(["a"]))


def test_confidence_levels_by_number_and_several_at_once():
    qa = xr.DataArray(np.array([1 << 8, 2 << 8, 3 << 8, 3 << 14, (3 << 8) | (3 << 14), 3 << 10], np.uint16), dims="x",
                      name="qa_pixel")
    for level, name in ((1, "low"), (2, "medium"), (3, "high")):
        np.testing.assert_array_equal(cloud_mask(qa, classes=[], confidence={"cloud": level}).values,
                                      cloud_mask(qa, classes=[], confidence={"cloud": name}).values)
    both = cloud_mask(qa, classes=[], confidence={"cloud": "high", "cirrus": "high"})
    assert both.values.tolist() == [False, False, True, True, True, False]
    assert both.attrs["masked_confidence"] == {"cloud": "high", "cirrus": "high"}
    mixed = cloud_mask(qa, classes=[], confidence={"cloud": "medium", "shadow": "high"})
    assert mixed.values.tolist() == [False, True, True, False, True, True]
    for bad in (0, 4, "extreme"):
        with pytest.raises(InvalidArgumentError, match="confidence level"):
            cloud_mask(qa, confidence={"cloud": bad})
    with pytest.raises(InvalidArgumentError, match="confidences exist for cloud, shadow, snow, cirrus"):
        cloud_mask(qa, confidence={"water": "high"})
    with pytest.raises(InvalidArgumentError, match="'clear' is also set on some shadow pixels"):
        cloud_mask(qa, classes=["clear"])
    with pytest.raises(InvalidArgumentError, match="unknown QA_PIXEL flag 'cloudy'; use some of fill, dilated_cloud"):
        cloud_mask(qa, classes=["cloudy"])


def test_outputs_keep_coords_and_say_what_they_mask():
    """Every path returns a boolean DataArray named cloud_mask on the input's dims and coords, with attrs naming
    what it masks; spectral options reach spectral_classes (band names, classes, shadows) in every method."""
    ds = _scene()
    ds["scl"].attrs = {}
    expected_attrs = {
        "scl": {"long_name": "pixels left out (True)", "source": "scl", "kind": "scl", "masked_classes": [0, 1, 3, 8, 9, 10]},
        "spectral": {"long_name": "pixels left out (True)", "source": "spectral tests", "kind": "spectral",
                     "masked_classes": [255, 4, 2]},
    }
    for method, kind in (("quality", "scl"), ("spectral", "spectral")):
        out = cloud_mask(ds, method=method)
        assert out.name == "cloud_mask" and out.dtype == bool and out.dims == ("time", "y", "x")
        for c in ("time", "y", "x"):
            np.testing.assert_array_equal(out[c].values, ds[c].values)
        assert out.attrs == expected_attrs[kind], method
    both = cloud_mask(ds, method="both")
    assert both.name == "cloud_mask" and both.attrs["kind"] == "scl + spectral"
    np.testing.assert_array_equal(both.x.values, ds.x.values)
    qa = xr.DataArray(np.array([[1, 21824]], np.uint16), dims=("y", "x"), coords={"y": [5.0], "x": [1.0, 2.0]}, name="QA_PIXEL")
    got = cloud_mask(qa, confidence={"cloud": 2})
    assert got.name == "cloud_mask" and got.dims == ("y", "x") and got.x.values.tolist() == [1.0, 2.0]
    assert got.attrs == {"long_name": "pixels left out (True)", "source": "QA_PIXEL", "kind": "qa_pixel",
                         "masked_flags": ["fill", "dilated_cloud", "cirrus", "cloud", "shadow"],
                         "masked_confidence": {"cloud": "2"}}
    # spectral options: band names mapped, in auto (no quality band) and spectral modes; classes from either place
    renamed = ds.drop_vars("scl").rename({"nir": "B08"})
    plain = cloud_mask(ds.drop_vars("scl"))
    np.testing.assert_array_equal(cloud_mask(renamed, spectral={"bands": {"nir": "B08"}}).values, plain.values)
    clouds = cloud_mask(ds, method="spectral", spectral={"classes": ["cloud"]})
    assert clouds.attrs["masked_classes"] == [4] and not clouds.values[:, 24:30, 12:18].any()
    assert cloud_mask(ds.drop_vars("scl"), spectral={"classes": ["cloud"]}).attrs["masked_classes"] == [4]
    assert cloud_mask(ds, method="spectral", classes=["shadow"], spectral={"classes": ["cloud"]}).attrs["masked_classes"] == [2]
    no_shadows = cloud_mask(ds, method="spectral", spectral={"shadows": False})
    assert plain.values[:, 24:30, 12:18].all() and not no_shadows.values[:, 24:30, 12:18].any()
    with pytest.raises(UnknownBandError, match="no quality band 'quality' in the dataset"):
        cloud_mask(ds, band="quality", method="quality")
    with pytest.raises(UnknownBandError, match="no quality band 'scl/qa_pixel'"):
        cloud_mask(ds[["red"]])


@pytest.mark.parametrize("prefix, sensor", [
    # Landsat Collection 2 product ids (USGS LSDS-1619): LXSS_..., sensor L C/O/E/T, satellite 04..09
    ("LC08", "landsat"), ("LC09", "landsat"), ("LO08", "landsat"), ("LO09", "landsat"), ("LE07", "landsat"),
    ("LT05", "landsat"), ("LT04", "landsat"),
    # Sentinel-2 product names (ESA): S2A/S2B/S2C_MSIL2A_..., and the S2_/S2X ids of derived and synthetic items
    ("S2A", "sentinel-2"), ("S2B", "sentinel-2"), ("S2C", "sentinel-2"), ("S2_", "sentinel-2"), ("S2X", "sentinel-2"),
])
def test_sensor_from_item_ids(prefix, sensor):
    ds = xr.Dataset(attrs={"input_items": [f"{prefix}_L2SP_000000_20200101", f"{prefix.lower()}_x"]})
    assert sensor_of(ds) == sensor
    mixed = xr.Dataset(attrs={"input_items": [f"{prefix}_a", "LC08_b" if sensor != "landsat" else "S2A_b"]})
    assert sensor_of(mixed) is None


def test_classes_reach_every_path_and_bare_arrays_keep_their_dims():
    ds = _scene()
    refl = ds.drop_vars("scl")
    classes = geoproc.spectral_mask.spectral_classes(refl)
    # auto without a quality band: classes are spectral classes
    np.testing.assert_array_equal(cloud_mask(refl, classes=["cloud"]).values, classes.values == 4)
    # both: the spectral part masks the spectral "classes" only (here clouds, not the shadow south of them)
    both = cloud_mask(ds, method="both", spectral={"classes": ["cloud"]})
    np.testing.assert_array_equal(both.values, cloud_mask(ds).values | (classes.values == 4))
    assert (classes.values[:, 24:30, 12:18] == 2).any() and not both.values[:, 24:30, 12:18].any()
    # no coordinates at all: the dims are the input's
    bare = xr.DataArray(np.array([[0, 4], [9, 4]], np.uint8), dims=("y", "x"), name="scl")
    assert cloud_mask(bare).dims == ("y", "x") and cloud_mask(bare).values.tolist() == [[True, False], [True, False]]
    bare_refl = refl.drop_vars(["time", "y", "x"])
    got = cloud_mask(bare_refl, method="spectral", spectral={"resolution": 10.0})
    assert got.dims == ("time", "y", "x")
    np.testing.assert_array_equal(got.values, cloud_mask(refl, method="spectral").values)
    with pytest.raises(UnknownBandError, match="no quality band 'quality'"):
        cloud_mask(ds[["red"]], band="quality")
