"""geoproc.fmask_classes: Fmask 4's formulas, chunking independence, object matching, and the metric floor.

The published formulas are written out here again in numpy (Zhu & Woodcock 2012; Qiu et al. 2019;
Frantz et al. 2018) as the independent reference.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr

from geoproc import fmask_classes
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.kernels import fmask as k
from geoproc.kernels import fmask_commission as kc
from tests.helpers import missing_data

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
SIX = ("blue", "green", "red", "nir", "swir16", "swir22")


def _scene(seed=0, size=60, thermal=False, cirrus=False, p=(0.35, 0.15, 0.1, 0.1, 0.2, 0.1)):
    """Vegetation, bare soil, water, hazy land and bright and thin clouds (shares ``p``), with per-pixel noise."""
    rng = np.random.default_rng(seed)
    kinds = {  # blue, green, red, nir, swir16, swir22, BT (K)
        "veg": (0.05, 0.07, 0.05, 0.30, 0.18, 0.09, 298.0),
        "soil": (0.10, 0.13, 0.16, 0.25, 0.30, 0.22, 305.0),
        "haze": (0.13, 0.12, 0.10, 0.18, 0.15, 0.10, 296.0),
        "water": (0.06, 0.05, 0.03, 0.02, 0.01, 0.005, 290.0),
        "cloud": (0.45, 0.45, 0.44, 0.46, 0.35, 0.25, 265.0),
        "thin": (0.22, 0.21, 0.19, 0.28, 0.22, 0.14, 280.0),
    }
    layout = rng.choice(list(kinds), size=(size // 6, size // 6), p=list(p))
    layout = np.kron(layout == np.array(list(kinds))[:, None, None], np.ones((1, 6, 6), bool))
    values = np.zeros((7, size, size))
    for i, v in enumerate(kinds.values()):
        values[:, layout[i]] = np.array(v)[:, None]
    noise = rng.uniform(0.85, 1.15, values.shape)
    noise[6] = 1 + rng.normal(0, 0.005, (size, size))
    values = (values * noise).astype(np.float32)
    coords = {"y": 1e6 - np.arange(size) * 30.0, "x": 4e5 + np.arange(size) * 30.0}
    ds = xr.Dataset({b: (("y", "x"), values[i]) for i, b in enumerate(SIX)}, coords=coords)
    if thermal:
        ds["lwir11"] = (("y", "x"), values[6])
    if cirrus:  # thin cirrus over the "thin" blocks, 0.012 over soil (cirrus only above the scene's floor of 0.005)
        values = np.where(layout[5], 0.02, np.where(layout[1], 0.012, 0.005))
        ds["cirrus"] = (("y", "x"), values.astype(np.float32) * noise[0])
    return ds


def _quantised(v, grid):
    low, step, bins = grid
    return low + np.clip(np.floor((v - low) / step + 0.5), 0, bins - 1) * step


def _reference_cloud(ds, constant=0.2, thin_weight=0.3):
    """Fmask's potential cloud layer (before the 3 x 3 fill), written from the papers."""
    b, g, r, n, s1, s2 = (ds[x].values.astype(np.float64) for x in SIX)
    ndvi, ndsi, ndbi = (n - r) / (n + r), (g - s1) / (g + s1), (s1 - n) / (s1 + n)
    mean = (b + g + r) / 3
    white = (abs(b - mean) + abs(g - mean) + abs(r - mean)) / mean
    hot = b - 0.5 * r
    thermal = "lwir11" in ds
    bt = ds["lwir11"].values.astype(np.float32) - np.float32(273.15) if thermal else None
    ci = ds["cirrus"].values.astype(np.float64) if "cirrus" in ds else np.zeros_like(b)
    # Zhu & Woodcock 2012: basic (with BT < 27 C), whiteness, HOT, NIR/SWIR-1.6 tests; water test
    pcp = (s2 > 0.03) & (ndsi < 0.8) & (ndvi < 0.8) & (white < 0.7) & (hot - 0.08 > 0) & (n / s1 > 0.75)
    if thermal:
        pcp &= bt < 27
    if "cirrus" in ds:  # Fmask 4 without a DEM: the cirrus band less its 2nd percentile over the clear pixels
        ci = np.maximum(ci - np.percentile(_quantised(ci, k.HIST_GRIDS["hot"])[~pcp], 2), 0)
    pcp |= ci > 0.01  # Zhu, Wang & Woodcock 2015: cirrus test
    water = ((ndvi < 0.01) & (n < 0.11)) | ((ndvi > 0) & (ndvi < 0.1) & (n < 0.05))
    clear_land = ~pcp & ~water
    clear_water = ~pcp & water  # Fmask 4: every clear water pixel
    # Fmask 4: the land statistics from all clear pixels when clear land is under 0.1 % of the scene
    used = clear_land if clear_land.sum() >= 0.001 * b.size else clear_land | clear_water
    vari = 1 - np.maximum(np.maximum(np.maximum(abs(ndvi), abs(ndsi)), abs(ndbi)), white)  # Fmask 4: with NDBI
    wb = np.minimum(s1, 0.11) / 0.11
    if thermal:  # Z12 temperature probabilities from the 17.5th / 82.5th percentiles
        btq = _quantised(bt.astype(np.float64), k.HIST_GRIDS["bt"])
        t_low, t_high = np.percentile(btq[used], [17.5, 82.5])
        t_water = np.percentile(btq[clear_water], 82.5)
        lprob = np.maximum((t_high + 4 - bt) / (t_high + 4 - (t_low - 4)), 0) * vari
        wprob = np.maximum((t_water - bt) / 4, 0) * wb
    else:  # Qiu et al. 2019: HOT brightness probability between the percentiles widened by 0.04
        hq = _quantised(hot, k.HIST_GRIDS["hot"])
        h_low, h_high = np.percentile(hq[used], [17.5, 82.5]) + np.array([-0.04, 0.04])
        lprob = np.clip((hot - h_low) / (h_high - h_low), 0, 1) * vari
        wprob = wb
    thin = thin_weight * np.maximum(ci / 0.04, 0)  # Z15 / Q19: the weighted thin cloud probability, added to both
    lprob, wprob = lprob + thin, wprob + thin
    lprob, wprob = _quantised(lprob, k.HIST_GRIDS["prob"]), _quantised(wprob, k.HIST_GRIDS["prob"])
    land_thr = np.percentile(lprob[clear_land], 82.5) + constant
    water_thr = np.percentile(wprob[clear_water], 82.5) + constant if clear_water.any() else -np.inf
    cloud = pcp & np.where(water, wprob > water_thr, lprob > land_thr)
    if thermal:
        cloud |= bt < t_low - 35
    return cloud, pcp


@pytest.mark.parametrize("thermal, cirrus, few_land", [(False, False, False), (True, False, False),
                                                       (False, True, False), (False, False, True)])
def test_cloud_layer_is_the_published_formulas(thermal, cirrus, few_land):
    # few_land: water and clouds only (under 0.1 % clear land): the land statistics come from all clear pixels
    ds = _scene(seed=3, thermal=thermal, cirrus=cirrus)
    if few_land:
        ds = _scene(seed=3, thermal=thermal, cirrus=cirrus, p=(0, 0, 0, 0.6, 0.3, 0.1))
        ds["blue"][:1, :2] = 0.06  # two clear land pixels among 3,600 (hazy blue for a HOT spread)
        for b, v in zip(SIX[1:], (0.07, 0.05, 0.3, 0.18, 0.09)):
            ds[b][:1, :2] = v
    expected, pcp = _reference_cloud(ds, constant=0.175, thin_weight=0.3)
    got = fmask_classes(ds, sensor="landsat-8", cloud_probability=0.175, cloud_fill=False, shadows=False,
                        erosion_radius=-1, min_clear_pixels=0) == 4
    # the scene-wide step matters here: it drops some potential cloud pixels and keeps others
    assert 0 < expected.sum() < pcp.sum()
    assert (got.values == expected).all()


def test_few_clear_pixels_make_every_potential_cloud_pixel_cloud():
    ds = _scene(seed=3)
    expected, pcp = _reference_cloud(ds, constant=0.2, thin_weight=0.0)
    n_clear = int((~pcp).sum())
    kw = {"cloud_fill": False, "shadows": False, "erosion_radius": -1, "cloud_probability": 0.2}
    # Fmask 4: at most 40,000 clear pixels (this 60 x 60 px scene has fewer) -> all potential cloud pixels
    classes = fmask_classes(ds, **kw)
    assert classes.attrs["sensor"] == "landsat-4-7" and classes.attrs["min_clear_pixels"] == 40000
    np.testing.assert_array_equal(classes.values == 4, pcp)
    np.testing.assert_array_equal(fmask_classes(ds, min_clear_pixels=n_clear, **kw).values == 4, pcp)
    np.testing.assert_array_equal(fmask_classes(ds, min_clear_pixels=n_clear - 1, **kw).values == 4, expected)
    assert 0 < expected.sum() < pcp.sum()


def test_sensor_defaults_are_fmask4s():
    ds = _scene(seed=1)
    out = fmask_classes(ds, shadows=False)  # 30 m, no cirrus band: Landsat 4-7, but no thermal band: 0.2
    assert (out.attrs["sensor"], out.attrs["cloud_probability"], out.attrs["erosion_radius"]) == \
        ("landsat-4-7", 0.2, 150.0)
    ds["lwir11"] = ds["blue"] * 0 + 290.0
    assert fmask_classes(ds, shadows=False).attrs["cloud_probability"] == 0.1
    fine = ds.assign_coords(y=ds.y / 3, x=ds.x / 3)  # 10 m: Sentinel-2
    out = fmask_classes(fine, shadows=False)
    assert (out.attrs["sensor"], out.attrs["cloud_probability"], out.attrs["erosion_radius"]) == \
        ("sentinel-2", 0.2, 90.0)
    ds.attrs["platform"] = "landsat-8"
    assert fmask_classes(ds, shadows=False).attrs["cloud_probability"] == 0.175
    with pytest.raises(InvalidArgumentError, match="sensor must be one of"):
        fmask_classes(ds, sensor="modis")


def test_enhance_line_is_guindons_templates():
    rng = np.random.default_rng(4)
    band = rng.normal(0, 0.2, (23, 31))
    lines = [np.array(t, float) / 6 for t in (
        [[-1, 2, -1]] * 3, [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]],
        [[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], [[-1, -1, 2], [-1, 2, -1], [2, -1, -1]])]
    # MATLAB's imfilter: correlation, zeros outside
    expected = np.max([ndi.correlate(band, t, mode="constant", cval=0.0) for t in lines], axis=0)
    np.testing.assert_allclose(kc.enhance_line(band), expected, atol=1e-6)


def test_histogram_otsu_is_otsus_split():
    rng = np.random.default_rng(5)
    grid = k.HIST_GRIDS["bt"]
    values = _quantised(np.concatenate([rng.normal(-5, 3, 300), rng.normal(25, 2, 900)]), grid)
    hist = np.bincount(np.round((values - grid[0]) / grid[1]).astype(int), minlength=grid[2])
    levels = np.unique(values)
    between = [(values <= t).mean() * (values > t).mean()
               * (values[values <= t].mean() - values[values > t].mean()) ** 2 for t in levels[:-1]]
    split = levels[int(np.argmax(between))]
    assert kc.histogram_otsu(hist, grid) == pytest.approx(values[values > split].min(), abs=1e-9)
    assert np.isnan(kc.histogram_otsu(np.zeros(grid[2], np.int64), grid))


def _disk(r):
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy ** 2 + xx ** 2 <= r ** 2


def test_erosion_of_commissions_is_qiu_2019():
    rng = np.random.default_rng(6)
    cloud = ndi.binary_opening(rng.random((90, 120)) < 0.55, np.ones((2, 2))) | False
    cloud[66:78, :45] = False
    cloud[70:74, 5:40] = True  # a thin strip alone: eroded away, it is a potential false positive
    cloud[10:40, 60:100] = True  # a big block: survives and grows back
    water = np.zeros_like(cloud)
    water[:, 110:] = True
    urban = np.zeros_like(cloud)
    urban[rng.integers(0, 90, 40), rng.integers(0, 120, 40)] = True
    snow = np.zeros_like(cloud)
    snow[60:80, :50] = True
    valid = np.ones_like(cloud)
    valid[:, :2] = False
    confident = rng.random(cloud.shape) < 0.002
    r, ur = 2, 3
    pfpl = kc.false_positive_layer(urban, snow, valid, ur)
    expected_pfpl = (ndi.binary_dilation(urban, np.ones((2 * ur + 1,) * 2)) | snow) & valid
    np.testing.assert_array_equal(pfpl, expected_pfpl)
    for use_confident in (False, True):
        got = kc.erode_commissions(cloud, pfpl, water, r, confident, use_confident, 200, 3)
        # the rule written again with scipy.ndimage: erosion (outside counts as cloud), drop eroded pixels in the
        # layer, objects with nothing left go, the rest grows back by 2 r within its object; water clouds stay
        core = ndi.binary_erosion(cloud, _disk(r), border_value=1)
        left = cloud & ~(~core & pfpl)
        labels, n = ndi.label(cloud, np.ones((3, 3)))
        kept = np.isin(labels, np.unique(labels[left])) & (labels > 0)
        expected = (ndi.binary_dilation(left, _disk(2 * r)) & kept) | (water & cloud)
        if use_confident:  # objects under 200 px without a confident pixel go
            labels, n = ndi.label(expected, np.ones((3, 3)))
            sizes = np.bincount(labels.ravel())
            ok = np.isin(labels, np.unique(labels[confident & expected]))
            expected &= ok | (sizes[labels] >= 200)
        labels, n = ndi.label(expected, np.ones((3, 3)))
        expected &= np.bincount(labels.ravel())[labels] >= 3
        np.testing.assert_array_equal(got, expected)
        assert 0 < got.sum() < cloud.sum() and not got[70:74, 5:40].any() and got[10:40, 60:100].all()


def test_histogram_percentile_is_numpys():
    rng = np.random.default_rng(1)
    grid = k.HIST_GRIDS["prob"]
    values = _quantised(rng.normal(0.3, 0.2, 5001), grid)
    hist = np.bincount(np.round((values - grid[0]) / grid[1]).astype(int), minlength=grid[2])
    for q in (0.0, 17.5, 50.0, 82.5, 100.0):
        assert k.histogram_percentile(hist, q, grid) == pytest.approx(np.percentile(values, q), abs=1e-12)


def test_cloud_displacement_index_is_frantz():
    rng = np.random.default_rng(2)
    b7, b8, b8a = (rng.uniform(0.1, 0.4, (20, 17)).astype(np.float32) for _ in range(3))
    b8[3, 4] = np.nan
    radius = 2

    def var(ratio):  # variance over the (2r+1)^2 window cut at the edges, NaN left out
        return ndi.generic_filter(ratio.astype(np.float64), np.nanvar, size=2 * radius + 1, mode="constant",
                                  cval=np.nan)

    r7, r8 = b7 / b8a, b8 / b8a
    r7 = np.where(np.isnan(r8), np.nan, r7)  # a window pixel counts when both ratios exist
    v7, v8 = var(r7), var(r8)
    expected = (v7 - v8) / (v7 + v8)
    got = k.cloud_displacement_index(b7, b8, b8a, radius)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_object_matching_finds_the_shadow_height():
    cloud = np.zeros((80, 80), bool)
    cloud[10:20, 10:25] = True
    cloud[50:53, 60:62] = True  # a second, small cloud with no shadow in the scene
    dark = np.zeros_like(cloud)
    dark[10 + 12:20 + 12, 10 + 9:25 + 9] = True  # 15 px away along (0.8, 0.6): 12 rows down, 9 columns right
    dark[5:9, 70:75] = True  # a dark patch no cloud casts
    valid = np.ones_like(cloud)
    shadow = k.match_shadows(cloud, dark, valid, 0.8, 0.6, 2.0, 40.0, 3, 0.3, 0.98, 400)
    expected = np.zeros_like(cloud)
    expected[22:32, 19:34] = True
    assert (shadow[:40] == (expected & ~cloud)[:40]).all()
    assert not shadow[5:9, 70:75].any()


def test_chunking_does_not_change_the_classes():
    scenes = [_scene(seed=s, size=72, thermal=True, cirrus=True) for s in (4, 5)]
    ds = xr.concat(scenes, dim="time")
    rng = np.random.default_rng(9)  # Sentinel-2 B7 and B8A for the CDI (a halo of 3 px at 30 m)
    ds["rededge3"] = ds["nir"] * rng.uniform(0.8, 1.0, ds["nir"].shape).astype(np.float32)
    ds["nir08"] = ds["nir"] * rng.uniform(0.95, 1.05, ds["nir"].shape).astype(np.float32)
    for b in SIX:  # a dark shadow south-east of each bright block: NIR and SWIR at 40 %
        ds[b].values[:, 40:50, 40:50] = [[0.45]] if b != "swir22" else [[0.25]]
    for b in ("nir", "swir16"):
        ds[b].values[:, 50:58, 46:56] *= 0.4
    # statistics and shadows on this small scene (min_clear_pixels=0); the CDI makes it Sentinel-2: erosion 3 px
    kw = {"sun_azimuth": [300.0, 320.0], "sun_elevation": 45.0, "cloud_height": (200.0, 2000.0),
          "background_radius": 300.0, "min_clear_pixels": 0}
    whole = fmask_classes(ds, **kw)
    assert whole.attrs["sensor"] == "sentinel-2"
    assert set(whole.attrs["bands"]) == set(ds.data_vars)  # thermal, cirrus and the CDI all in use
    whole = whole.values
    assert (whole == 2).sum() > 20 and (whole == 4).sum() > 100
    for chunks in ({"time": 1, "y": 20, "x": 33}, {"time": 2, "y": 72, "x": 9}):
        lazy = fmask_classes(ds.chunk(chunks), **kw)
        assert lazy.chunks == ds.chunk(chunks)["blue"].chunks
        np.testing.assert_array_equal(lazy.values, whole)


def test_four_band_mode_and_errors():
    ds = _scene(seed=6)
    kw = {"shadows": False, "min_clear_pixels": 0}  # the statistics of this small scene: hazy land is not cloud
    four = fmask_classes(ds[["blue", "green", "red", "nir"]], **kw)
    assert four.attrs["mode"] == "four-band"
    truth = ds["blue"].values > 0.17  # the bright and thin cloud blocks (hazy land: blue <= 0.15)
    six = fmask_classes(ds, **kw).values == 4
    assert _f1(four.values == 4, truth) >= 0.93 and _f1(six, truth) >= 0.93  # measured 0.940 and 0.940
    with pytest.raises(UnknownBandError, match="swir16 and swir22"):
        fmask_classes(ds.drop_vars("swir22"))
    with pytest.raises(UnknownBandError, match="nir"):
        fmask_classes(ds.drop_vars("nir"))


def _f1(pred, ref):
    return 2 * (pred & ref).sum() / (pred.sum() + ref.sum())


def test_metric_floor_on_real_sentinel2():
    eo = os.path.join(DATA, "eolearn")
    if not os.path.isdir(eo):
        missing_data("eo-learn Sentinel-2 scenes")
    align = json.load(open(os.path.join(eo, "REFERENCE_SCENES.alignment.json")))
    scenes = np.load(os.path.join(eo, "REFERENCE_SCENES.npy"))
    ref = np.load(os.path.join(eo, "TestEOPatch", "mask", "CLM.npy"))[..., 0].astype(bool)
    ref = ref[align["index_into_TestEOPatch_timestamps"]]
    order = align["band_order"]
    names = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12",
             "cirrus": "B10", "rededge3": "B07", "nir08": "B8A"}
    t, h, w, _ = scenes.shape
    ds = xr.Dataset({c: (("time", "y", "x"), scenes[..., order.index(b)]) for c, b in names.items()},
                    coords={"y": 5e6 - np.arange(h) * 10.0, "x": 5e5 + np.arange(w) * 10.0})
    # measured by benchmarks/eval_fmask.py: 0.966 with Fmask 4's rule (the 1 km patch has fewer than 40,000 clear
    # pixels, so every potential cloud pixel is cloud), all bands or four; 0.756 with the statistics all the same
    assert _f1(fmask_classes(ds).values == 4, ref) >= 0.95
    assert _f1(fmask_classes(ds[["blue", "green", "red", "nir"]]).values == 4, ref) >= 0.95
    assert _f1(fmask_classes(ds, min_clear_pixels=0).values == 4, ref) >= 0.74

    # winter dates, pixels s2cloudless masked set to NaN: mostly clear land, haze and snow left. The scene-wide
    # probability removes the false clouds the pixel tests make there (F1 0.820 against spectral_classes' 0.209)
    old = os.path.join(eo, "TestEOPatch_v2018-12-11_T36")
    index = json.load(open(os.path.join(old, "alignment_with_T68.json")))["REFERENCE_SCENES_index_into_T68"]
    winter = np.load(os.path.join(old, "data", "REFERENCE_SCENES.npy"))
    ref = np.load(os.path.join(eo, "TestEOPatch", "mask", "CLM.npy"))[..., 0].astype(bool)[index]
    ds = xr.Dataset({c: (("time", "y", "x"), winter[..., order.index(names[c])]) for c in SIX},
                    coords={"y": 5e6 - np.arange(h) * 10.0, "x": 5e5 + np.arange(w) * 10.0})
    classes = fmask_classes(ds, min_clear_pixels=0).values  # measured 0.820; 0.279 by Fmask's rule on this patch
    kept = classes != 255
    assert _f1((classes == 4)[kept], ref[kept]) >= 0.80


def test_metric_floor_on_real_landsat8_with_thermal():
    import rasterio

    folder = os.path.join(DATA, "stactools-landsat", "LC08_L2SP_008059_20191201_20200825_02_T1")
    if not os.path.isdir(folder):
        missing_data("stactools-landsat Landsat 8 scene")
    sid = os.path.basename(folder)
    meta = json.load(open(os.path.join(folder, f"{sid}_MTL.json")))["LANDSAT_METADATA_FILE"]["IMAGE_ATTRIBUTES"]
    sr = {"scale": 2.75e-5, "offset": -0.2, "nodata": 0}
    files = {"blue": ("SR_B2", sr), "green": ("SR_B3", sr), "red": ("SR_B4", sr), "nir": ("SR_B5", sr),
             "swir16": ("SR_B6", sr), "swir22": ("SR_B7", sr),
             "lwir11": ("ST_B10", {"scale": 0.00341802, "offset": 149.0, "nodata": 0})}
    variables = {}
    for common, (f, attrs) in files.items():
        with rasterio.open(os.path.join(folder, f"{sid}_{f}.TIF")) as src:
            variables[common] = (("y", "x"), src.read(1), attrs)
            tr = src.transform
    with rasterio.open(os.path.join(folder, f"{sid}_QA_PIXEL.TIF")) as src:
        qa = src.read(1)
    h, w = qa.shape
    coords = {"y": tr.f + (np.arange(h) + 0.5) * tr.e, "x": tr.c + (np.arange(w) + 0.5) * tr.a}
    ds = xr.Dataset(variables, coords=coords)
    res = abs(tr.a)
    classes = fmask_classes(ds, sun_azimuth=float(meta["SUN_AZIMUTH"]), sun_elevation=float(meta["SUN_ELEVATION"]),
                            background_radius=10 * res, sensor="landsat-8").values
    keep = ((qa & 1) == 0) & (classes != 255)
    cloud_ref = (((qa >> 1) & 1) | ((qa >> 3) & 1)).astype(bool)
    shadow_ref = ((qa >> 4) & 1).astype(bool)
    # measured 0.801 (cloud) and 0.336 (shadow) by benchmarks/eval_fmask.py
    assert _f1((classes == 4)[keep], cloud_ref[keep]) >= 0.79
    assert _f1((classes == 2)[keep], shadow_ref[keep]) >= 0.32


def test_flood_fill_is_imfill_and_finds_enclosed_darkness():
    from skimage.morphology import reconstruction

    rng = np.random.default_rng(7)
    image = rng.uniform(0, 1, (30, 40))
    seed = image.copy()
    seed[1:-1, 1:-1] = image.max()  # MATLAB's imfill of holes: reconstruction by erosion from the edge
    expected = reconstruction(seed, image, method="erosion")
    np.testing.assert_array_equal(k.fill_depressions(image, np.ones(image.shape, bool), 0.0), expected)

    nir = np.full((20, 20), 3000, np.int16)
    s1 = np.full((20, 20), 1800, np.int16)
    nir[5:9, 5:9], s1[5:9, 5:9] = 1500, 900  # enclosed: filled up to 3000 / 1800
    nir[0:3, 12:16] = 1500  # on the edge: runs off, not filled
    valid = np.ones((20, 20), bool)
    dark = k.flood_dark(nir, s1, valid, valid, 200)
    expected = np.zeros((20, 20), bool)
    expected[5:9, 5:9] = True
    np.testing.assert_array_equal(dark, expected)
    ds = _scene(seed=3)
    assert (fmask_classes(ds, sun_azimuth=120.0, sun_elevation=50.0, shadow_layer="flood").values != 255).all()


def test_cloud_mask_method_fmask():
    import geoproc

    ds = _scene(seed=8)
    kw = {"sun_azimuth": 120.0, "sun_elevation": 50.0}
    mask = geoproc.cloud_mask(ds, method="fmask", spectral=kw)
    classes = fmask_classes(ds, **kw).values
    np.testing.assert_array_equal(mask.values, np.isin(classes, (255, 4, 2)))
    assert mask.attrs["kind"] == "fmask" and mask.values.any()
