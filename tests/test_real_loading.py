"""geoproc.load on real imagery from ../shared/data, described by STAC items built here from the files.

* Landsat-8 Collection-2 Level-2 scenes (``stactools-landsat/``): whole scenes downsampled to
  512 x 512 pixels of about 445 x 454 m (not square), uint16, nodata 0 for SR/ST, QA_PIXEL bit flags
  with value 1 for fill. Items follow Earth Search's ``landsat-c2-l2`` layout: asset keys ``red``,
  ``nir08`` (eo:bands common name ``nir08``), ``qa_pixel``, ``lwir11``...; ``raster:bands`` scale
  2.75e-05 / offset -0.2 for SR, 0.00341802 / 149 for ST; everything from the files' headers and MTL.
* Sentinel-2 L2A bands bundled with xarray-spatial (``xarray-spatial/``): NetCDF, float64 DN
  (10000 x reflectance), 10 m bands 200 x 300 px and 20 m bands 200 x 300 px sharing the upper-left
  corner, EPSG:32719 (in a NetCDF attribute GDAL does not read: the files have no CRS for rasterio).

References are independent of geoproc's reader: direct rasterio reads at native resolution,
numpy (``np.repeat``, block means, area-weighted means, exact pyproj nearest neighbour) for
resampled grids.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio
import rioxarray  # noqa: F401
from pyproj import Transformer

import geoproc
from geoproc.grid import GridSpec, transform_bounds

from .helpers import block_mean, exact_nearest, missing_data

SR_SCALE, SR_OFFSET = 2.75e-05, -0.2
ST_SCALE, ST_OFFSET = 0.00341802, 149.0
#: Earth Search landsat-c2-l2 asset key -> (file suffix, eo:bands name, common name)
LANDSAT_ASSETS = {
    "coastal": ("SR_B1", "OLI_B1", "coastal"),
    "blue": ("SR_B2", "OLI_B2", "blue"),
    "green": ("SR_B3", "OLI_B3", "green"),
    "red": ("SR_B4", "OLI_B4", "red"),
    "nir08": ("SR_B5", "OLI_B5", "nir08"),
    "swir16": ("SR_B6", "OLI_B6", "swir16"),
    "swir22": ("SR_B7", "OLI_B7", "swir22"),
    "lwir11": ("ST_B10", "TIRS_B10", "lwir11"),
    "qa_pixel": ("QA_PIXEL", None, None),
}
LANDSAT_SCENES = ["LC08_L2SP_008059_20191201_20200825_02_T1", "LC08_L2SP_017036_20130419_20200913_02_T2"]
#: asset key -> (file, band name, resolution in m)
S2_ASSETS = {
    "blue": ("blue_band.nc", "B02", 10),
    "green": ("green_band.nc", "B03", 10),
    "red": ("red_band.nc", "B04", 10),
    "nir": ("nir_band.nc", "B08", 10),
    "swir16": ("swir1_band.nc", "B11", 20),
    "swir22": ("swir2_band.nc", "B12", 20),
}
S2_EPSG = 32719


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


# ---------------------------------------------------------------------------------------------- items


def _footprint(bounds, crs) -> tuple[dict, list[float]]:
    minx, miny, maxx, maxy = bounds
    ring = [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy), (minx, miny)]
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*zip(*ring))
    geom = {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in zip(lon, lat)]]}
    return geom, [min(lon), min(lat), max(lon), max(lat)]


def landsat_item(folder: Path) -> pystac.Item:
    """A STAC item for one Landsat C2 L2 scene folder, proj: from the files, time from the MTL."""
    scene = folder.name
    mtl = json.loads((folder / f"{scene}_MTL.json").read_text())["LANDSAT_METADATA_FILE"]
    attrs = mtl["IMAGE_ATTRIBUTES"]
    when = dt.datetime.fromisoformat(f"{attrs['DATE_ACQUIRED']}T{attrs['SCENE_CENTER_TIME'][:15]}+00:00")
    with rasterio.open(folder / f"{scene}_SR_B4.TIF") as src:
        epsg, transform, shape, bounds = src.crs.to_epsg(), src.transform, src.shape, src.bounds
    geom, bbox = _footprint(bounds, f"EPSG:{epsg}")
    item = pystac.Item(
        scene, geom, bbox, when,
        {"platform": "landsat-8", "proj:epsg": epsg, "proj:transform": list(transform)[:6], "proj:shape": list(shape)},
    )
    for key, (suffix, name, common) in LANDSAT_ASSETS.items():
        path = folder / f"{scene}_{suffix}.TIF"
        with rasterio.open(path) as src:  # every band on the same grid (the item-level proj: fields)
            assert (src.crs.to_epsg(), src.transform, src.shape) == (epsg, transform, shape)
        if key == "qa_pixel":
            extra = {"raster:bands": [{"nodata": 1, "data_type": "uint16", "unit": "bit index"}]}
        else:
            scale, offset = (ST_SCALE, ST_OFFSET) if key == "lwir11" else (SR_SCALE, SR_OFFSET)
            extra = {
                "eo:bands": [{"name": name, "common_name": common}],
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": scale, "offset": offset}],
            }
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"], extra_fields=extra))
    return item


def s2_item(folder: Path) -> pystac.Item:
    """A STAC item for the xarray-spatial Sentinel-2 bands (one asset per NetCDF file).

    proj:transform/proj:shape come from rasterio; the EPSG code from the variable's ``crs``
    attribute (``+init=epsg:32719``), which GDAL does not turn into a CRS. The acquisition date is
    not recorded in the files; 2020-01-01 stands in for it.
    """
    item = pystac.Item("xrspatial-s2-l2a", None, None, dt.datetime(2020, 1, 1, 14, tzinfo=dt.timezone.utc), {})
    boxes = []
    for key, (name, band, res) in S2_ASSETS.items():
        path = folder / name
        with rasterio.open(path) as src:
            assert src.crs is None and src.res == (res, res)
            epsg = int(src.tags(1)["crs"].rsplit(":", 1)[1])
            transform, shape, bounds = src.transform, src.shape, src.bounds
        assert epsg == S2_EPSG
        boxes.append(bounds)
        item.add_asset(key, pystac.Asset(str(path), media_type="application/netcdf", roles=["data"], extra_fields={
            "proj:epsg": epsg, "proj:transform": list(transform)[:6], "proj:shape": list(shape),
            "eo:bands": [{"name": band, "common_name": key}],
            "raster:bands": [{"nodata": "nan", "data_type": "float64", "scale": 1e-4, "offset": 0.0}],
        }))
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    item.geometry, item.bbox = _footprint(union, f"EPSG:{S2_EPSG}")
    return item


@pytest.fixture(scope="module", params=LANDSAT_SCENES)
def landsat(request, shared_data):
    folder = shared_data / "stactools-landsat" / request.param
    if not folder.is_dir():
        missing_data(f"Landsat scene {request.param} not found under {folder.parent}")
    return landsat_item(folder)


@pytest.fixture(scope="module")
def s2(shared_data):
    folder = shared_data / "xarray-spatial"
    if not folder.is_dir():
        missing_data(f"xarray-spatial Sentinel-2 bands not found at {folder}")
    return s2_item(folder)


def _read(item: pystac.Item, key: str) -> tuple[np.ndarray, rasterio.Affine]:
    with rasterio.open(item.assets[key].href) as src:
        return src.read(1), src.transform


def _decode(dn: np.ndarray, scale: float, offset: float, nodata=0) -> np.ndarray:
    """The documented decode in float32: DN * scale + offset, NaN at nodata."""
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    out[np.isnan(dn) if nodata != nodata else dn == nodata] = np.nan
    return out


def _grid(ds) -> GridSpec:
    return GridSpec(ds.rio.crs.to_string(), ds.rio.transform(), (ds.sizes["y"], ds.sizes["x"]))


# ------------------------------------------------------------------------------------------ Landsat


def _landsat_load(item, bands, factor=1.0, **kw):
    """Load on the scene's own pixel grid (anchor at its corner), pixel size times ``factor``."""
    t = _item_transform(item)
    res = (t.a * factor, -t.e * factor)
    return geoproc.load([item], bands, resolution=res, anchor=(t.c, t.f), **kw)


def _item_transform(item) -> rasterio.Affine:
    return rasterio.Affine(*item.properties["proj:transform"][:6])


def test_landsat_native_resolution_equals_the_files(landsat):
    """On the scene's own grid: exactly the stored pixels; SR and ST decoded as DN*scale+offset (float32)."""
    ds = _landsat_load(landsat, ["red", "nir", "nir08", "swir22", "lwir11", "qa_pixel"], chunks=200).compute()
    dn, t = _read(landsat, "red")
    g = _grid(ds)
    assert g.transform == t and g.shape == dn.shape  # not resampled: the file's grid
    assert ds.time.values[0] == np.datetime64(landsat.datetime.replace(tzinfo=None), "ns")
    np.testing.assert_array_equal(ds.red.values[0], _decode(dn, SR_SCALE, SR_OFFSET))
    # the float32 decode is the documented formula to float32 rounding
    valid = dn != 0
    np.testing.assert_allclose(ds.red.values[0][valid], dn[valid] * SR_SCALE + SR_OFFSET, rtol=0, atol=3e-7)
    # `nir` finds Landsat's nir08 (SR_B5) through the alias
    b5, _ = _read(landsat, "nir08")
    np.testing.assert_array_equal(ds.nir.values[0], _decode(b5, SR_SCALE, SR_OFFSET))
    np.testing.assert_array_equal(ds.nir08.values[0], ds.nir.values[0])
    np.testing.assert_array_equal(ds.swir22.values[0], _decode(_read(landsat, "swir22")[0], SR_SCALE, SR_OFFSET))
    st, _ = _read(landsat, "lwir11")
    np.testing.assert_array_equal(ds.lwir11.values[0], _decode(st, ST_SCALE, ST_OFFSET))
    kelvin = ds.lwir11.values[0][st != 0]
    # kelvin: 150.0015 (DN 293, where no temperature was retrieved, e.g. under cloud) up to plausible surface values
    assert 150 < np.nanmin(kelvin) and np.nanmax(kelvin) < 350
    # QA_PIXEL: categorical, stored integers and their fill value kept
    qa, _ = _read(landsat, "qa_pixel")
    assert ds.qa_pixel.dtype == np.uint16 and ds.qa_pixel.attrs["nodata"] == 1
    assert ds.qa_pixel.attrs["resampling"] == "nearest"
    np.testing.assert_array_equal(ds.qa_pixel.values[0], qa)


def test_landsat_raw_keeps_the_stored_integers(landsat):
    ds = _landsat_load(landsat, ["red", "qa_pixel"], raw=True).compute()
    assert ds.red.dtype == np.uint16
    assert (ds.red.attrs["scale"], ds.red.attrs["offset"], ds.red.attrs["nodata"]) == (SR_SCALE, SR_OFFSET, 0)
    np.testing.assert_array_equal(ds.red.values[0], _read(landsat, "red")[0])
    np.testing.assert_array_equal(ds.qa_pixel.values[0], _read(landsat, "qa_pixel")[0])


def test_landsat_like_a_file_gives_the_same_pixels(landsat):
    """like= an xarray object opened from one of the files: its grid, its pixels."""
    with rioxarray.open_rasterio(landsat.assets["red"].href) as template:
        ds = geoproc.load([landsat], ["red"], like=template, raw=True).compute()
        np.testing.assert_array_equal(ds.x.values, template.x.values)
        np.testing.assert_array_equal(ds.y.values, template.y.values)
        np.testing.assert_array_equal(ds.red.values[0], template.values[0])


@pytest.mark.parametrize("factor", [2, 3])
def test_landsat_coarser_average_is_the_block_mean(landsat, factor):
    """2x and 3x coarser with resampling="average": each pixel is the mean of the valid DNs of its
    factor x factor block (nodata excluded), rounded by GDAL to the uint16 DN, then decoded. Expected
    agreement: within half a DN (0.5 * 2.75e-05 in reflectance) plus float32 rounding; NaN exactly
    where the whole block is nodata."""
    ds = _landsat_load(landsat, ["red", "qa_pixel"], factor=factor, resampling="average", raw=True).compute()
    dn, _ = _read(landsat, "red")
    g = _grid(ds)
    assert g.shape == (-(-dn.shape[0] // factor), -(-dn.shape[1] // factor))
    blocks = np.where(dn == 0, np.nan, dn.astype(np.float64))
    mean = _nanblock_mean(blocks, factor)
    n = mean.shape
    got = ds.red.values[0][: n[0], : n[1]].astype(np.float64)
    empty = np.isnan(mean)
    np.testing.assert_array_equal(got[empty], 0)  # nodata where no valid pixel
    assert empty.sum() > 0 and (~empty).sum() > 0
    assert np.abs(got[~empty] - mean[~empty]).max() <= 0.5 + 1e-9
    # the decoded values follow
    dec = _landsat_load(landsat, ["red"], factor=factor, resampling="average").red.values[0][: n[0], : n[1]]
    np.testing.assert_array_equal(dec, _decode(ds.red.values[0][: n[0], : n[1]], SR_SCALE, SR_OFFSET))
    assert np.nanmax(np.abs(dec - (mean * SR_SCALE + SR_OFFSET))) <= 0.5 * SR_SCALE + 3e-7

    # QA_PIXEL is categorical: nearest even though "average" was asked for, integers kept. At 3x the
    # output pixel centre is the centre of the block's middle pixel; at 2x it is the corner shared by
    # four pixels (an exact tie), which GDAL's nearest resolves to the lower-right one, as a floor does
    qa, _ = _read(landsat, "qa_pixel")
    assert ds.qa_pixel.dtype == np.uint16 and ds.qa_pixel.attrs["resampling"] == "nearest"
    ref, inside, _ = exact_nearest(landsat.assets["qa_pixel"].href, g)
    assert inside.all()
    np.testing.assert_array_equal(ds.qa_pixel.values[0], ref)
    k = factor // 2  # 1 for both 2x (tie -> lower right) and 3x (middle)
    np.testing.assert_array_equal(ds.qa_pixel.values[0][: n[0], : n[1]], qa[k::factor, k::factor][: n[0], : n[1]])
    assert set(np.unique(ds.qa_pixel.values)) <= set(np.unique(qa))  # no invented flag combinations


@pytest.mark.parametrize("factor", [2, 3])
def test_landsat_coarser_nearest_picks_the_centre_pixel(landsat, factor):
    ds = _landsat_load(landsat, ["red"], factor=factor, raw=True).compute()
    g = _grid(ds)
    ref, inside, _ = exact_nearest(landsat.assets["red"].href, g)
    np.testing.assert_array_equal(ds.red.values[0], ref)
    dn, _ = _read(landsat, "red")
    n = (dn.shape[0] // factor, dn.shape[1] // factor)
    k = factor // 2  # the middle pixel (3x) or, at the 2x tie, the lower-right one
    np.testing.assert_array_equal(ds.red.values[0][: n[0], : n[1]], dn[k::factor, k::factor][: n[0], : n[1]])


def test_landsat_finer_nearest_repeats_pixels(landsat):
    ds = _landsat_load(landsat, ["red", "qa_pixel"], factor=0.5, chunks=256).compute()
    dn, _ = _read(landsat, "red")
    qa, _ = _read(landsat, "qa_pixel")
    assert ds.sizes["y"] == 2 * dn.shape[0] and ds.sizes["x"] == 2 * dn.shape[1]
    up = lambda a: np.repeat(np.repeat(a, 2, 0), 2, 1)  # noqa: E731
    np.testing.assert_array_equal(ds.red.values[0], _decode(up(dn), SR_SCALE, SR_OFFSET))
    np.testing.assert_array_equal(ds.qa_pixel.values[0], up(qa))


def test_landsat_default_grid_is_the_files_own_non_square_grid(landsat):
    """Without resolution/anchor: the file's own grid, non-square pixels and edges included (as odc-stac)."""
    ds = geoproc.load([landsat], ["red"], raw=True).compute()
    t = _item_transform(landsat)
    g = _grid(ds)
    assert g.resolution == (t.a, -t.e) and t.a != -t.e
    assert g.transform.almost_equals(t, precision=1e-9)
    with rasterio.open(landsat.assets["red"].href) as src:
        np.testing.assert_array_equal(ds.red.values[0], src.read(1))


def test_landsat_square_pixels_on_request_are_exact_nearest_neighbours(landsat):
    """Square pixels of the finer side, edges on multiples of it: the exact nearest neighbours of the
    non-square source pixels."""
    t = _item_transform(landsat)
    res = min(t.a, -t.e)
    ds = geoproc.load([landsat], ["red"], raw=True, resolution=res, anchor=(0, 0)).compute()
    g = _grid(ds)
    assert g.resolution == (res, res)
    assert g.transform.c % g.resolution[0] == 0 and g.transform.f % g.resolution[1] == 0
    ref, inside, edge = exact_nearest(landsat.assets["red"].href, g)
    assert inside.mean() > 0.95
    np.testing.assert_array_equal(ds.red.values[0], ref)
    assert edge.min() > 1e-6  # no near-ties on this grid, so the comparison is unambiguous


# -------------------------------------------------------------------------------------- Sentinel-2


def test_s2_native_10m_with_20m_bands_upsampled(s2):
    """At 10 m on the files' corner: 10 m bands exactly as stored; 20 m bands repeated 2x2 (nearest);
    the grid is the union of both extents (the 20 m files cover twice the area), NaN outside a file."""
    ds = geoproc.load([s2], ["red", "nir", "swir16", "swir22"], resolution=10).compute()
    red, t = _read(s2, "red")
    g = _grid(ds)
    assert g.crs == f"EPSG:{S2_EPSG}" and g.transform == t and g.shape == (400, 600)
    np.testing.assert_array_equal(ds.red.values[0][:200, :300], _decode(red, 1e-4, 0.0, np.nan))
    assert np.isnan(ds.red.values[0][200:, :]).all() and np.isnan(ds.red.values[0][:, 300:]).all()
    np.testing.assert_array_equal(ds.nir.values[0][:200, :300], _decode(_read(s2, "nir")[0], 1e-4, 0.0, np.nan))
    for key in ("swir16", "swir22"):
        v, _ = _read(s2, key)
        np.testing.assert_array_equal(ds[key].values[0], _decode(np.repeat(np.repeat(v, 2, 0), 2, 1), 1e-4, 0.0, np.nan))
    # reflectances in a plausible range
    assert 0.0 < np.nanmin(ds.red.values) and np.nanmax(ds.swir16.values) < 1.0


def test_s2_20m_average_and_nearest(s2):
    """At 20 m: the 20 m bands exactly; 10 m bands by average = 2x2 block mean (float64 DN, then the
    float32 decode: agreement to float32 rounding, rtol 1e-6), by nearest = the lower-right pixel of
    each block (output centres fall on block corners, exact ties that GDAL's nearest and a floor both
    resolve downwards and to the right)."""
    avg = geoproc.load([s2], ["red", "swir16"], resolution=20, resampling="average").compute()
    near = geoproc.load([s2], ["red"], resolution=20).compute()
    red, _ = _read(s2, "red")
    sw, _ = _read(s2, "swir16")
    np.testing.assert_array_equal(avg.swir16.values[0], _decode(sw, 1e-4, 0.0, np.nan))
    np.testing.assert_allclose(avg.red.values[0][:100, :150], block_mean(red, 2, 2) * 1e-4, rtol=1e-6)
    assert np.isnan(avg.red.values[0][100:]).all()
    np.testing.assert_array_equal(near.red.values[0][:100, :150], _decode(red[1::2, 1::2], 1e-4, 0.0, np.nan))


def test_s2_30m_on_the_files_corner_is_the_3x3_block_mean(s2):
    """At 30 m the default anchor (0, 0) does not line up with the files (4700020 is not a multiple of
    30); anchor at the files' corner makes each output pixel one 3x3 block of 10 m pixels."""
    red, t = _read(s2, "red")
    ds = geoproc.load([s2], ["red", "swir16"], resolution=30, anchor=(t.c, t.f), resampling="average").compute()
    g = _grid(ds)
    assert (g.transform.c, g.transform.f) == (t.c, t.f)
    np.testing.assert_allclose(ds.red.values[0][:66, :100], block_mean(red, 3, 3) * 1e-4, rtol=1e-6)
    # 20 m -> 30 m: each 30 m pixel covers 1.5 x 1.5 source pixels; GDAL's average weights them by the
    # area covered, which is the 3x3 mean of the 20 m band repeated onto 10 m cells
    sw, _ = _read(s2, "swir16")
    area_weighted = block_mean(np.repeat(np.repeat(sw, 2, 0), 2, 1), 3, 3)
    np.testing.assert_allclose(ds.swir16.values[0][:133, :200], area_weighted * 1e-4, rtol=1e-6)


def test_s2_finer_5m_repeats_pixels(s2):
    ds = geoproc.load([s2], ["red", "swir16"], resolution=5).compute()
    red, _ = _read(s2, "red")
    sw, _ = _read(s2, "swir16")
    up2 = np.repeat(np.repeat(red, 2, 0), 2, 1)
    np.testing.assert_array_equal(ds.red.values[0][:400, :600], _decode(up2, 1e-4, 0.0, np.nan))
    np.testing.assert_array_equal(ds.swir16.values[0], _decode(np.repeat(np.repeat(sw, 4, 0), 4, 1), 1e-4, 0.0, np.nan))


def test_s2_in_another_crs_uses_the_items_crs(s2):
    """The files carry no CRS for GDAL; the item's proj:epsg (32719) says where they are. Loaded on a
    zone-20 grid, each pixel must be the exact nearest neighbour (pyproj) of the 10 m band."""
    fp = transform_bounds((601000, 4698520, 602000, 4699520), f"EPSG:{S2_EPSG}", "EPSG:32720")
    grid = GridSpec.from_bounds(fp, 10, "EPSG:32720")
    ds = geoproc.load([s2], ["red"], crs="EPSG:32720", bounds=grid.bounds, resolution=10).compute()
    ref, inside, edge = exact_nearest(s2.assets["red"].href, grid, src_crs=f"EPSG:{S2_EPSG}")
    assert inside.all()
    clear = edge > 1e-6  # leave out the few pixels within 1e-6 source pixel of a tie
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(ds.red.values[0][clear], _decode(ref, 1e-4, 0.0, np.nan)[clear])


@pytest.mark.parametrize("unscaled", [False, True])
def test_s2_undecoded_float_bands_keep_nan_for_missing_pixels(s2, unscaled):
    """red (10 m) and swir16 (20 m, twice the area) on one 10 m grid: outside the red file there is no data.
    raw=True keeps the stored float64 DNs; an item without scale/offset is never decoded."""
    item = s2.clone()
    if unscaled:
        for asset in item.assets.values():
            asset.extra_fields["raster:bands"] = [{"nodata": "nan", "data_type": "float64"}]
    ds = geoproc.load([item], ["red", "swir16"], resolution=10, raw=not unscaled).compute()
    red, _ = _read(s2, "red")
    assert ds.red.dtype == np.float64 and np.isnan(ds.red.attrs["nodata"])
    np.testing.assert_array_equal(ds.red.values[0][:200, :300], red)
    outside = ds.red.values[0][200:, :]
    assert np.isnan(outside).all(), f"missing pixels hold {np.unique(outside)[:5]}, not the nodata value NaN"


# ------------------------------------------------------------------------------------------ helpers


def _nanblock_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean of the non-NaN values of each whole f x f block; NaN for all-NaN blocks."""
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    blocks = a[:h, :w].reshape(h // f, f, w // f, f)
    count = (~np.isnan(blocks)).sum(axis=(1, 3))
    total = np.nansum(blocks, axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
