"""The loader on real item layouts (Earth Search, Planetary Computer, USGS) pointed at small local files.

Issue 11's silent wrong results, each with a test that fails on the old behaviour:
native grids (pixel identity), raw vs float decoding across encodings, time slices, missing bands,
items without ``proj:``, the antimeridian, and the provenance of composites.
"""

from __future__ import annotations

import datetime as dt
import os
import json
import warnings

import dask
import numpy as np
import pytest
import rasterio
from affine import Affine

import geoproc
from geoproc._prepare import prepare
from geoproc.errors import GeoprocError, GeoprocWarning, MetadataError
from geoproc.io.reader import RasterioReader

from .layouts import as_item, index_values, localize, proj_of, raw_item, set_footprint, set_time, write_tif

ES_LS = "pystac-client/earth-search__landsat-c2-l2__LC08_L2SP_033032_20231008_02_T1.json"
ES_S2 = "pystac-client/earth-search__sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json"
ES_S2_NEW = "pystac-client/earth-search__sentinel-2-l2a__S2B_20EPT_20250731_0_L2A.json"
ES_C1 = "pystac-client/earth-search__sentinel-2-c1-l2a__S2B_T24MWV_20250731T130245_L2A.json"
PC_S2 = "pystac-client/planetarycomputer__sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652.json"


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def _local(shared_data, tmp_path, name, keys, shape, values=None, origin=None, when=None, item_id=None):
    """A real item with assets ``keys`` on small local files of ``shape`` px at the item's own origin."""
    d = raw_item(shared_data, name)
    if item_id:
        d["id"] = item_id
    files = {}
    for key in keys:
        crs, t = proj_of(d, key)
        if origin is not None:
            t = Affine(t.a, 0, origin[0], 0, t.e, origin[1])
        stored = ((d["assets"][key].get("raster:bands") or [{}])[0]).get("data_type", "uint16")
        v = index_values(shape, stored) if values is None else values[key]
        path = write_tif(tmp_path / f"{d['id']}_{key}.tif", v, crs, t, nodata=0)
        localize(d, key, path, shape, t)
        files[key] = (path, crs, t)
    crs, t = next(iter(files.values()))[1:]
    set_footprint(d, crs, (t.c, t.f + t.e * shape[0], t.c + t.a * shape[1], t.f))
    d["assets"] = {k: a for k, a in d["assets"].items() if k in keys}
    if when is not None:
        set_time(d, when)
    return d, files


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform


# ------------------------------------------------------------------------------ native grids (item 2)


@pytest.mark.parametrize(
    "name, key",
    [(ES_LS, "red"), (ES_C1, "coastal"), ("planetarycomputer__landsat-c2-l1__LM05_L1GS_039039_20130107_02_T2.json", "red")],
    ids=["landsat-30m-at-15m-offsets", "sentinel2-60m-at-20m-offsets", "landsat-mss-60m-at-30m-offsets"],
)
def test_native_grid_loads_every_file_pixel_in_place(shared_data, tmp_path, name, key):
    d, files = _local(shared_data, tmp_path, name, [key], (90, 70))
    path, crs, t = files[key]
    # the lattice is the catalog's: Landsat's edges at 15 m of 30 m, S2's 60 m band at 20 m of 60 m
    assert (t.c % t.a, t.f % t.a) != (0.0, 0.0)
    ds = geoproc.load([as_item(d)], [key], raw=True)
    values, transform = _read(path)
    assert ds.rio.transform() == transform
    np.testing.assert_array_equal(ds[key].values[0], values)


@pytest.mark.parametrize("name", [
    "planetarycomputer__cop-dem-glo-30__Copernicus_DSM_COG_10_S90_00_W180_00_DEM.json",
    "planetarycomputer__nasadem__NASADEM_HGT_s56w072.json",
    "planetarycomputer__3dep-seamless__n34w116-13.json",
], ids=["cop-dem-glo-30", "nasadem", "3dep-seamless"])
def test_dem_grid_in_degrees_loads_in_place(tmp_path, name):
    """DEMs in degrees whose edges are off the origin's lattice: pixel centres on whole degrees (half a pixel
    off), or 3DEP's tiles with a 6-pixel buffer beyond the degree."""
    d = raw_item(None, name)
    key = next(k for k, a in d["assets"].items() if "data" in (a.get("roles") or []))
    crs, t = proj_of(d, key)
    assert abs(t.c / t.a - round(t.c / t.a)) > 1e-3  # not on multiples of the pixel from the origin
    values = np.random.default_rng(1).uniform(0, 3000, (60, 80)).astype("float32")
    path = write_tif(tmp_path / "dem.tif", values, crs, t)
    localize(d, key, path, values.shape, t)
    set_footprint(d, crs, (t.c, t.f + t.e * 60, t.c + t.a * 80, t.f))
    ds = geoproc.load([as_item(d)], [key])
    got, transform = _read(path)
    assert ds.rio.transform().almost_equals(transform, precision=1e-12)
    assert ds[key].shape == (1, 60, 80)
    np.testing.assert_array_equal(ds[key].values[0], got)


def test_a_coarser_multiple_of_the_native_grid_keeps_its_edges(shared_data, tmp_path):
    d, files = _local(shared_data, tmp_path, ES_LS, ["red"], (90, 70))
    _, _, t = files["red"]
    ds = geoproc.load([as_item(d)], ["red"], resolution=90, raw=True)
    g = ds.rio.transform()
    assert ((g.c - t.c) / 30) == round((g.c - t.c) / 30) and ((g.f - t.f) / 30) == round((g.f - t.f) / 30)
    assert ds.red.shape == (1, 30, 24)  # 70 px of 30 m = 23.3 px of 90 m: 24 columns, no extra row


def test_explicit_anchor_still_wins(shared_data, tmp_path):
    d, _ = _local(shared_data, tmp_path, ES_LS, ["red"], (30, 30))
    ds = geoproc.load([as_item(d)], ["red"], anchor=(0, 0), raw=True)
    assert ds.rio.transform().c % 30 == 0 and ds.red.shape == (1, 31, 31)  # the old half-pixel grid


def test_rounded_transforms_read_as_the_same_grid(tmp_path):
    """Planet NICFI: transforms rounded to 12 digits must not add a row and column or force a warp."""
    d = raw_item(None, "planetarycomputer__planet-nicfi-visual__c2156297-623d-4793-a91e-fb317c9fef04-746-1013.json")
    key = next(k for k, a in d["assets"].items() if "data" in (a.get("roles") or []))
    crs, t = proj_of(d, key)
    exact = Affine(t.a, 0, t.c, 0, t.e, t.f)
    values = np.random.default_rng(2).integers(1, 255, (3, 64, 64)).astype("uint8")
    path = write_tif(tmp_path / "nicfi.tif", values, crs, exact)
    # the catalog's own rounding of the same grid
    rounded = Affine(*(float(f"{v:.12g}") for v in list(exact)[:6]))
    localize(d, key, path, (64, 64), rounded)
    set_footprint(d, crs, (exact.c, exact.f + exact.e * 64, exact.c + exact.a * 64, exact.f))
    ds = geoproc.load([as_item(d)], [f"{key}.2"], raw=True)
    assert ds[f"{key}.2"].shape == (1, 64, 64)
    np.testing.assert_array_equal(ds[f"{key}.2"].values[0], values[1])


def test_another_utm_zone_without_resolution_keeps_the_native_pixel(shared_data, tmp_path):
    d, _ = _local(shared_data, tmp_path, ES_S2, ["red"], (50, 50))
    p = geoproc.plan([as_item(d)], ["red"], crs="EPSG:32614")
    assert p.resolution == (10.0, 10.0)  # was 10.186: a pixel's rotated bounding box


# ------------------------------------------------------------------------------ raw vs float (item 1)


def _pair_same_tile(shared_data, tmp_path):
    """The same S2 tile before and after processing baseline 04.00 (25 January 2022): offset 0, then -0.1."""
    rng = np.random.default_rng(5)
    refl = {k: rng.uniform(0.02, 0.5, (40, 40)) for k in ("red", "nir")}
    before, _ = _local(shared_data, tmp_path, ES_S2, ["red", "nir"], (40, 40),
                       values={k: np.round(v * 10000).astype("uint16") for k, v in refl.items()},
                       when=dt.datetime(2022, 1, 20, 18), item_id="S2A_13TDE_20220120_0_L2A")
    after, _ = _local(shared_data, tmp_path, ES_S2, ["red", "nir"], (40, 40),
                      values={k: np.round(v * 10000 + 1000).astype("uint16") for k, v in refl.items()},
                      when=dt.datetime(2022, 2, 1, 18), item_id="S2A_13TDE_20220201_0_L2A")
    for d, offset in ((before, 0.0), (after, -0.1)):
        for k in ("red", "nir"):
            d["assets"][k]["raster:bands"][0]["offset"] = offset
    return [as_item(before), as_item(after)], refl


def test_raw_and_float_loads_agree_across_the_2022_baseline_change(shared_data, tmp_path):
    items, refl = _pair_same_tile(shared_data, tmp_path)
    with pytest.warns(GeoprocWarning, match="encodings") as caught:
        raw = geoproc.load(items, ["red", "nir"], raw=True)
    said = str(caught[0].message)  # both encodings, each with an item that uses it
    assert "scale 0.0001 offset 0 " in said and "scale 0.0001 offset -0.1 " in said
    assert "S2A_13TDE_20220120_0_L2A" in said and "S2A_13TDE_20220201_0_L2A" in said
    flt = geoproc.load(items, ["red", "nir"])
    np.testing.assert_array_equal(raw.red.values, flt.red.values)
    # and both are the reflectance, on both dates (the DN differ by 1000)
    for t in range(2):
        np.testing.assert_allclose(flt.red.values[t], refl["red"], atol=6e-5)
    ndvi_raw = geoproc.ndvi(raw).values
    np.testing.assert_allclose(ndvi_raw, geoproc.ndvi(flt).values, rtol=0, atol=0)
    expect = (refl["nir"] - refl["red"]) / (refl["nir"] + refl["red"])
    np.testing.assert_allclose(ndvi_raw[1], expect, atol=3e-3)  # DN quantisation at low reflectance


def test_raw_keeps_integers_when_the_items_agree(shared_data, tmp_path):
    items, _ = _pair_same_tile(shared_data, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeoprocWarning)
        one = geoproc.load(items[1:], ["red"], raw=True)
    assert one.red.dtype == np.uint16 and one.red.attrs["offset"] == -0.1 and one.red.attrs["scale"] == 1e-4


def test_sentinel2_and_landsat_in_one_raw_load_give_true_ndvi(shared_data, tmp_path):
    """S2 (scale 1e-4, offset -0.1) with Landsat C2 L2 (scale 2.75e-5, offset -0.2), same UTM zone."""
    ls_d = raw_item(shared_data, ES_LS)
    crs, lt = proj_of(ls_d, "red")
    origin = (lt.c + 30 * 1000, lt.f - 30 * 1000)  # inside the real scene, on its 15 m lattice
    rng = np.random.default_rng(7)
    refl = {k: rng.uniform(0.03, 0.45, (20, 20)) for k in ("red", "nir08")}
    ls_vals = {k: np.round((v + 0.2) / 2.75e-5).astype("uint16") for k, v in refl.items()}
    ls, _ = _local(shared_data, tmp_path, ES_LS, ["red", "nir08"], (20, 20), values=ls_vals, origin=origin,
                   when=dt.datetime(2023, 10, 8, 17, 37))
    s2_refl = {k: np.repeat(np.repeat(v, 3, 0), 3, 1) for k, v in refl.items()}  # 10 m pixels inside each 30 m one
    # S2's broad NIR (B08, asset `nir`, 10 m) stands in for Landsat's nir08 here; both are asked for as "nir"
    s2, _ = _local(shared_data, tmp_path, ES_S2, ["red", "nir"], (60, 60), origin=origin,
                   values={"red": np.round((s2_refl["red"] + 0.1) * 1e4).astype("uint16"),
                           "nir": np.round((s2_refl["nir08"] + 0.1) * 1e4).astype("uint16")},
                   when=dt.datetime(2023, 10, 9, 18, 2))
    items = [as_item(ls), as_item(s2)]
    with pytest.warns(GeoprocWarning):
        raw = geoproc.load(items, ["red", "nir"], raw=True, resolution=30, crs=crs)
    flt = geoproc.load(items, ["red", "nir"], resolution=30, crs=crs)
    ndvi_raw = geoproc.ndvi(raw).values
    np.testing.assert_array_equal(ndvi_raw, geoproc.ndvi(flt).values)
    expect = (refl["nir08"] - refl["red"]) / (refl["nir08"] + refl["red"])
    assert raw.sizes["time"] == 2
    for t in range(2):
        np.testing.assert_allclose(ndvi_raw[t], expect, atol=3e-3)


# ------------------------------------------------------------------------------ time slices (item 4)


def _at(shared_data, tmp_path, name, when, item_id, origin=None):
    key = "B04" if name == PC_S2 else "red"
    d, _ = _local(shared_data, tmp_path, name, [key], (20, 20), when=when, item_id=item_id, origin=origin)
    return as_item(d)


@pytest.mark.parametrize(
    "lon_name, times, slices",
    [
        # UTM 13 (~105 W, local = UTC - 7 h): 17:00 and 19:00 UTC are one afternoon; 06:00 UTC next day is
        # 23:00 local the day before, still that day
        (ES_S2, [dt.datetime(2023, 10, 8, 17), dt.datetime(2023, 10, 8, 19), dt.datetime(2023, 10, 9, 6)], 1),
        # a day apart locally: two slices
        (ES_S2, [dt.datetime(2023, 10, 8, 17), dt.datetime(2023, 10, 9, 17)], 2),
        # UTM 60 (~177 E, local = UTC + 11.8 h): 23:30 UTC on the 1st and 00:30 UTC on the 2nd are one morning
        (PC_S2, [dt.datetime(2019, 1, 1, 23, 30), dt.datetime(2019, 1, 2, 0, 30)], 1),
        # ... but 11:00 UTC and 13:00 UTC on the same UTC day are different local days
        (PC_S2, [dt.datetime(2019, 1, 1, 11), dt.datetime(2019, 1, 1, 13)], 2),
    ],
)
def test_solar_day_groups_by_local_date_at_the_grid_centre(shared_data, tmp_path, lon_name, times, slices):
    items = [_at(shared_data, tmp_path, lon_name, t, f"it{i}") for i, t in enumerate(times)]
    assert len(geoproc.plan(items, ["red"]).shape) == 3
    assert geoproc.plan(items, ["red"]).shape[0] == slices
    assert geoproc.plan(items, ["red"], groupby="time").shape[0] == len(times)


def test_groupby_time_orders_slices_by_time_whatever_the_item_order(shared_data, tmp_path):
    ts = [dt.datetime(2023, 10, 9, 18), dt.datetime(2023, 10, 7, 18), dt.datetime(2023, 10, 8, 18)]
    items = [_at(shared_data, tmp_path, ES_S2, t, f"x{i}") for i, t in enumerate(ts)]
    ds = geoproc.load(items, ["red"], groupby="time")
    assert list(ds.time.values) == [np.datetime64(t) for t in sorted(ts)]


def test_one_overpass_across_the_antimeridian_is_one_time_slice(tmp_path):
    """Two S2 granules of one pass, UTM 60 west of 180 and UTM 1 east of it, stamped the same second."""
    items = _fiji_pair(tmp_path)
    p = geoproc.plan(items, ["red"], bbox=(179.0, -17.5, -179.0, -16.5))
    assert p.shape[0] == 1
    prep = prepare(items, ["red"], bbox=(179.0, -17.5, -179.0, -16.5), groupby="solar_day")
    assert len(np.unique(prep.times)) == len(prep.times) == 1


def test_time_coordinates_of_the_tall_strip_are_unique_and_increasing(shared_data):
    """odc-stac's grouping test case: one pass of S2 down Africa, 9 granules (real items, plan only)."""
    fc = json.load(open(shared_data / "stac_items" / "odc-stac" / "site1-20200606-tall-strip-africa.geojson"))
    items = [as_item({**f, "links": []}) for f in fc["features"]]
    prep = prepare(items, ["B04"], resolution=60, probe=False)
    t = prep.times
    assert len(t) == len(np.unique(t)) and np.all(np.diff(t) > np.timedelta64(0))
    assert len(t) == 1


def test_modis_tiles_of_one_period_are_one_slice():
    """Three MODIS tiles with one start_datetime (8-day composite) across 60 degrees of longitude."""
    d = raw_item(None, "planetarycomputer__modis-09A1-061__MYD09A1.A2025057.h35v10.061.2025066034638.json")
    key = next(k for k, a in d["assets"].items() if "raster:bands" in a or "eo:bands" in a or "proj:shape" in a)
    items = []
    for i, shift in enumerate((0.0, -10.0, -20.0)):
        e = json.loads(json.dumps(d))
        e["id"] = f"{d['id']}-{i}"
        t = list(e["assets"][key].get("proj:transform", e["properties"].get("proj:transform")))
        t[2] += shift * 111195.0 * 10
        if "proj:transform" in e["assets"][key]:
            e["assets"][key]["proj:transform"] = t
        else:
            e["properties"]["proj:transform"] = t
        w, s, ea, n = e["bbox"]
        e["bbox"] = [w + shift * 10, s, ea + shift * 10, n]
        items.append(as_item(e))
    prep = prepare(items, [key], resolution=5000, probe=False)
    assert len(prep.times) == 1


# ------------------------------------------------------------------------------ antimeridian (item 11)


def _fiji_pair(tmp_path):
    when = dt.datetime(2019, 1, 1, 22, 10)
    out = []
    for zone, x0, name in ((60, 780000.0, "S2A_T60KYF"), (1, 220000.0, "S2A_T01KAA")):
        crs = f"EPSG:{32700 + zone}"
        t = Affine(10, 0, x0, 0, -10, 8100000.0)
        shape = (200, 200)
        path = write_tif(tmp_path / f"{name}.tif", index_values(shape), crs, t, nodata=0)
        d = {
            "type": "Feature", "stac_version": "1.0.0", "id": name, "links": [],
            "properties": {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "proj:epsg": 32700 + zone},
            "assets": {"B04": {"href": path, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                               "roles": ["data"], "proj:shape": list(shape), "proj:transform": list(t)[:6],
                               "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}],
                               "raster:bands": [{"data_type": "uint16", "nodata": 0}]}},
        }
        set_footprint(d, crs, (t.c, t.f - 2000, t.c + 2000, t.f))
        out.append(as_item(d))
    return out


def test_a_bbox_across_180_degrees_gives_a_local_grid(tmp_path):
    items = _fiji_pair(tmp_path)
    bbox = (179.5, -17.6, -179.5, -17.0)
    p = geoproc.plan(items, ["red"], bbox=bbox)
    assert p.crs in ("EPSG:32760", "EPSG:32701")
    assert p.shape[1] < 10_000 and p.shape[2] < 15_000  # ~110 km x 70 km at 10 m, not the globe
    split = {"type": "MultiPolygon", "coordinates": [
        [[[179.5, -17.6], [180, -17.6], [180, -17.0], [179.5, -17.0], [179.5, -17.6]]],
        [[[-180, -17.6], [-179.5, -17.6], [-179.5, -17.0], [-180, -17.0], [-180, -17.6]]]]}
    q = geoproc.plan(items, ["red"], geometry=split)
    assert (q.crs, q.shape, q.bounds) == (p.crs, p.shape, p.bounds)


def test_a_crs_tie_goes_to_the_items_nearest_the_area(tmp_path):
    items = _fiji_pair(tmp_path)
    west = geoproc.plan(items, ["red"], bbox=(178.0, -17.6, 179.9, -17.0))
    east = geoproc.plan(items, ["red"], bbox=(-179.9, -17.6, -178.0, -17.0))
    assert west.crs == "EPSG:32760" and east.crs == "EPSG:32701"
    # the order of the items does not decide
    assert geoproc.plan(items[::-1], ["red"], bbox=(178.0, -17.6, 179.9, -17.0)).crs == "EPSG:32760"


# ------------------------------------------------------------------------------ missing bands (item 9)


def test_a_band_missing_from_older_items_loads_as_nodata_and_is_reported(shared_data, tmp_path):
    old, _ = _local(shared_data, tmp_path, ES_S2_NEW, ["red"], (30, 30), when=dt.datetime(2021, 7, 31, 14),
                    item_id="S2B_20EPT_20210731_0_L2A")
    new, _ = _local(shared_data, tmp_path, ES_S2_NEW, ["red", "cloud"], (30, 30), when=dt.datetime(2025, 7, 31, 14))
    assert "cloud" not in old["assets"]
    with pytest.warns(GeoprocWarning, match="'cloud' is missing from 1 of 2"):
        ds = geoproc.load([as_item(old), as_item(new)], ["red", "cloud"])
    assert ds.cloud.sizes["time"] == 2
    assert np.all(ds.cloud.values[0] == ds.cloud.attrs.get("nodata", 0))
    assert np.any(ds.cloud.values[1] != 0)
    report = geoproc.read_report(ds)
    assert report.missing() == {"cloud": ("S2B_20EPT_20210731_0_L2A",)}
    # a plan says so too, without pointing at a report it has no dataset for
    with pytest.warns(GeoprocWarning, match="missing from 1 of 2") as caught:
        geoproc.plan([as_item(old), as_item(new)], ["red", "cloud"])
    assert "read_report" not in str(caught[0].message)
    assert "S2B_20EPT_20210731_0_L2A" in str(report)


def test_a_band_missing_from_every_item_is_still_an_error(shared_data, tmp_path):
    old, _ = _local(shared_data, tmp_path, ES_S2_NEW, ["red"], (30, 30))
    with pytest.raises(GeoprocError, match="'cloud' not found"):
        geoproc.load([as_item(old)], ["red", "cloud"])


# ------------------------------------------------------------------------------ no proj: (items 6, 7)


def _strip_proj(d):
    for where in [d["properties"], *d["assets"].values()]:
        for k in [k for k in where if k.startswith("proj:")]:
            del where[k]


def test_items_without_proj_load_from_headers_or_from_their_bbox(shared_data, tmp_path):
    d, files = _local(shared_data, tmp_path, ES_S2, ["red"], (40, 50))
    path, crs, t = files["red"]
    full = geoproc.load([as_item(d)], ["red"], raw=True)
    _strip_proj(d)
    item = as_item(d)
    # no crs/resolution: the header is read (in parallel, once per asset)
    from_headers = geoproc.load([item], ["red"], raw=True)
    assert from_headers.rio.transform() == full.rio.transform()
    np.testing.assert_array_equal(from_headers.red.values, full.red.values)
    # crs, resolution and an area given: nothing is opened before compute
    bounds = (t.c, t.f - 400, t.c + 500, t.f)
    lazy = geoproc.load([item], ["red"], raw=True, crs=crs, resolution=10, bounds=bounds, probe=False)
    np.testing.assert_array_equal(lazy.red.values, full.red.values)
    with pytest.raises(MetadataError, match="lack proj"):
        geoproc.plan([item], ["red"])
    # a load told to open nothing refuses the same way, even with a reader at hand
    with pytest.raises(MetadataError, match="no file headers may be read"):
        geoproc.load([item], ["red"], probe=False)


class _CountingReader(RasterioReader):
    def header(self, asset):
        _CountingReader.opened.append(asset.href)
        return super().header(asset)


def test_plan_opens_nothing_and_load_reads_one_header_per_band_and_collection(shared_data, tmp_path):
    """PC Sentinel-2 has no raster:bands: the data type is only in the file."""
    items = []
    for i in range(4):
        d, _ = _local(shared_data, tmp_path, PC_S2, ["B04", "SCL"], (20, 20),
                      when=dt.datetime(2019, 1, 1 + i, 0), item_id=f"pc{i}")
        assert "raster:bands" not in d["assets"]["B04"]
        items.append(as_item(d))
    p = geoproc.plan(items, ["red", "scl"])
    assert p.bands == {"red": "unknown", "scl": "unknown"}
    missing = [as_item({**json.loads(json.dumps(items[0].to_dict(include_self_link=False))), "id": "gone"})]
    missing[0].assets["B04"].href = "https://example.invalid/nothing.tif"
    assert geoproc.plan(missing, ["red"]).items == 1  # no network needed
    _CountingReader.opened = []
    ds = geoproc.load(items, ["red", "scl"], reader=_CountingReader())
    assert ds.red.dtype == np.uint16 and ds.scl.dtype == np.uint16
    assert len(_CountingReader.opened) == 2  # one per band for the collection, not one per item


# ------------------------------------------------------------------------------ provenance (item 5)


def test_a_composite_written_from_python_is_dated_by_its_inputs(archive, tmp_path):
    items = geoproc.search(archive.catalog)
    ds = geoproc.load(items, ["red", "nir"], resolution=40, chunks=256)
    comp = geoproc.composite(geoproc.ndvi(ds), "median")
    url = str(tmp_path / "ndvi.zarr")
    geoproc.to_zarr(comp, url)
    item = json.load(open(url + ".json")) if (tmp_path / "ndvi.zarr.json").exists() else None
    if item is None:
        found = list(tmp_path.rglob("*.json"))
        item = next(json.load(open(f)) for f in found if json.load(open(f)).get("type") == "Feature")
    props = item["properties"]
    # the span of the acquisitions themselves (a slice is stamped with its first; the last tile of the
    # last slice was acquired 10 s after it)
    acquired = sorted(it.datetime for it in items if it.id in ds.attrs["input_items"])
    assert props["datetime"] is None
    assert props["start_datetime"] == acquired[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert props["end_datetime"] == acquired[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert acquired[-1].replace(tzinfo=None) > ds.time.values.max().astype("datetime64[s]").item()
    assert props["geoproc:input_items"] == ds.attrs["input_items"]
    assert f"from {len(ds.attrs['input_items'])} input item(s)" in props["processing:lineage"]


def test_a_composite_of_modis_periods_ends_where_the_last_period_ends(tmp_path):
    """8-day composites: datetime is the period's start, end_datetime 8 days later; a composite of two
    periods covers until the second one's end, not its start."""
    d = raw_item(None, "planetarycomputer__modis-09A1-061__MYD09A1.A2025057.h35v10.061.2025066034638.json")
    key = "sur_refl_b01"
    crs, t = proj_of(d, key)
    items = []
    for i, start in enumerate((dt.datetime(2025, 2, 26), dt.datetime(2025, 3, 6))):
        e = json.loads(json.dumps(d))
        e["id"] = f"modis-{i}"
        path = write_tif(tmp_path / f"m{i}.tif", np.full((8, 8), 100 + i, "int16"), crs, t)
        localize(e, key, path, (8, 8), t)
        e["properties"].update(datetime=None, start_datetime=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               end_datetime=(start + dt.timedelta(days=8) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        items.append(as_item(e))
    ds = geoproc.load(items, [key])
    assert ds.attrs["input_end"] == "2025-03-13T23:59:59Z"
    comp = geoproc.composite(ds[key], "median")
    assert comp.attrs["input_start"] == "2025-02-26T00:00:00Z" and comp.attrs["input_end"] == "2025-03-13T23:59:59Z"
    # a composite of the first period alone ends with it
    first = geoproc.composite(ds[key].isel(time=[0]), "median")
    assert first.attrs["input_end"] == "2025-03-05T23:59:59Z"


# ------------------------------------------------------------------------------ found in review


def test_items_without_a_collection_never_share_a_remembered_data_type(tmp_path):
    """Two items with asset `data` and no collection id: uint8 and float32 files keep their own types."""
    items = []
    for i, (dtype, value) in enumerate((("uint8", 210), ("float32", 1234.75))):
        t = Affine(10, 0, 500000 + 1000 * i, 0, -10, 5000000)
        path = write_tif(tmp_path / f"f{i}.tif", np.full((4, 4), value, dtype), "EPSG:32633", t)
        d = {"type": "Feature", "stac_version": "1.0.0", "id": f"x{i}", "links": [],
             "properties": {"datetime": f"2024-05-0{i + 1}T10:00:00Z", "proj:epsg": 32633},
             "assets": {"data": {"href": path, "type": "image/tiff", "roles": ["data"],
                                 "proj:shape": [4, 4], "proj:transform": list(t)[:6]}}}
        set_footprint(d, "EPSG:32633", (t.c, t.f - 40, t.c + 40, t.f))
        items.append(as_item(d))
    one = geoproc.load(items[:1], ["data"])
    two = geoproc.load(items[1:], ["data"])
    assert one.data.dtype == np.uint8 and two.data.dtype == np.float32
    assert float(two.data.values.max()) == 1234.75
    both = geoproc.load(items, ["data"], groupby="time")
    assert both.data.dtype.kind == "f" and sorted(np.unique(both.data.values[~np.isnan(both.data.values)])) == [210, 1234.75]


def test_the_anchor_of_a_coarser_grid_depends_on_the_lattice_not_on_the_scene(shared_data, tmp_path):
    """Two Landsat framings of one path/row (origins 15 and 45 mod 60, both 15 mod 30) at 60 m: one grid."""
    bounds = []
    for i, shift in enumerate((0, 30)):
        ls_d = raw_item(shared_data, ES_LS)
        _, lt = proj_of(ls_d, "red")
        d, _ = _local(shared_data, tmp_path, ES_LS, ["red"], (40, 40), origin=(lt.c + shift, lt.f), item_id=f"ls{i}")
        bounds.append(geoproc.plan([as_item(d)], ["red"], resolution=60, bbox=tuple(d["bbox"])).bounds)
    assert (bounds[0][0] - bounds[1][0]) % 60 == 0 and (bounds[0][3] - bounds[1][3]) % 60 == 0


def test_non_square_dem_pixels_give_the_finest_size_on_each_axis_whatever_the_item_order(tmp_path):
    """Copernicus DEM: 1 arc-second wide below 50 N, 1.5 from 50 to 60 N, 1 high everywhere."""
    items = []
    for lat, width in ((49, 1 / 3600), (50, 1.5 / 3600)):
        t = Affine(width, 0, 10 - width / 2, 0, -1 / 3600, lat + 1 + 1 / 7200)
        path = write_tif(tmp_path / f"n{lat}.tif", np.ones((6, 6), "float32"), "EPSG:4326", t)
        d = {"type": "Feature", "stac_version": "1.0.0", "id": f"N{lat}", "links": [], "collection": "cop-dem-glo-30",
             "properties": {"datetime": "2021-04-22T00:00:00Z", "proj:epsg": 4326},
             "assets": {"data": {"href": path, "type": "image/tiff", "roles": ["data"],
                                 "proj:shape": [6, 6], "proj:transform": list(t)[:6]}}}
        set_footprint(d, "EPSG:4326", (t.c, t.f - 6 / 3600, t.c + 6 * width, t.f))
        items.append(as_item(d))
    a = geoproc.plan(items, ["data"])
    b = geoproc.plan(items[::-1], ["data"])
    assert a.resolution == b.resolution == (1 / 3600, 1 / 3600)


def test_one_name_for_different_bands_without_wavelengths_is_ambiguous(shared_data):
    from geoproc.errors import UnknownBandError
    from geoproc.io.bands import resolve_band

    d = raw_item(shared_data, ES_C1)
    for k in ("rededge1", "rededge2", "rededge3"):
        d["assets"][k]["eo:bands"][0].pop("center_wavelength")
    with pytest.raises(UnknownBandError, match="ambiguous"):
        resolve_band(as_item(d), "rededge")


def test_a_lonlat_grid_across_180_degrees_is_refused_with_what_to_do(tmp_path):
    items = _fiji_pair(tmp_path)
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="projected CRS"):
        geoproc.plan(items, ["red"], bbox=(179.5, -17.6, -179.5, -17.0), crs=4326, resolution=0.0001)


def test_append_keeps_the_provenance_of_every_write(archive, tmp_path):
    items = geoproc.search(archive.catalog)
    ds = geoproc.load(items, ["red"], resolution=80, chunks=256)
    url = str(tmp_path / "series.zarr")
    geoproc.to_zarr(ds.isel(time=[0, 1]), url)
    geoproc.to_zarr(ds.isel(time=[2, 3]), url, mode="a")
    out = geoproc.open_result(url)
    assert out.attrs["input_start"] == ds.attrs["input_start"]
    first_two = set(ds.attrs["input_items"])  # every item of the load is in one of the two writes
    assert set(out.attrs["input_items"]) == first_two


def test_an_unreadable_file_without_metadata_is_filled_and_reported_not_fatal(shared_data, tmp_path):
    items = []
    for i in range(3):
        d, files = _local(shared_data, tmp_path, PC_S2, ["B04"], (20, 20), when=dt.datetime(2019, 1, 1 + i, 0),
                          item_id=f"pc{i}")
        items.append((d, files["B04"][0]))
    os.remove(items[0][1])
    with pytest.raises(geoproc.errors.AssetReadError):
        geoproc.load([as_item(d) for d, _ in items], ["red"]).red.values
    for d, _ in items:  # no proj: either: headers are all that places them
        for k in [k for k in d["assets"]["B04"] if k.startswith("proj:")]:
            del d["assets"]["B04"][k]
        d["properties"].pop("proj:epsg", None)
    ds = geoproc.load([as_item(d) for d, _ in items], ["red"], on_error="fill")
    assert ds.red.dtype == np.uint16 and ds.sizes["time"] == 2
    assert [f["item_id"] for f in geoproc.read_report(ds).failures()] == ["pc0"]
