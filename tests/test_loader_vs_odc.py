"""geoproc.load against odc-stac (``odc.stac.load``) on identical grids with nearest resampling.

Both libraries load the session ``archive`` (two overlapping tiles in EPSG:32633, one in EPSG:32634
overlapping the second across the zone boundary at 18 deg E; 5 dates) onto the same grid: geoproc's
grid (``bounds=``/``resolution=``, snapped to multiples of the resolution) handed to odc-stac as an
explicit ``GeoBox``. Both group by solar day and fuse by taking the first valid pixel in order of
(acquisition time, item id), so every pixel should come from the same item and the same source pixel.

A third, independent reference locates every output pixel centre in every file exactly with pyproj
(``tests.helpers.exact_nearest``) and mosaics in the same order. geoproc must equal it everywhere.

Where odc-stac differs, the difference is explained, pixel by pixel, rather than tolerated:

* odc-stac warps through ``rasterio.warp.reproject``, i.e. GDAL's warper with its default
  approximate transformer (error threshold 0.125 source pixel, the value of ``gdalwarp -et``; the
  linear approximation is fitted per destination row segment, so it also depends on odc-stac's
  chunking). Neither odc-stac's ``load`` nor ``rasterio.warp.reproject`` (which drives
  ``GDALWarp()`` with a fixed argument list; extra keywords become ``-to``/``-wo`` options, and
  ``tolerance=``/``ERROR_THRESHOLD=`` are ignored) lets a caller set that threshold, so it cannot
  be made equal to geoproc's (1e-9, effectively exact). A pixel can then differ only if its
  exact position in the source lies within 0.125 source pixel of a source pixel edge, and only where
  the pixel comes from a file in another CRS (same-CRS transforms are affine, which the
  approximation reproduces exactly). The tests assert exactly that, and that geoproc holds the exact
  nearest-neighbour value at each such pixel. In practice the exact positions of all differing pixels
  are within 0.001 source pixel of an edge.
* Exactly-half-pixel ties do not occur on these grids: at 10 m the 20 m SCL pixel centres fall at
  1/4 and 3/4 of a source pixel; at 20 m and 30 m both libraries read the COG's 2x overview
  (geoproc: "the coarsest overview no coarser than the output", odc-stac: ``use_overviews=True``,
  its default), whose 20 m pixels are either aligned with the output (20 m) or met at 3/4 of a pixel
  (30 m). The reference reads the same overview level.

The measured fractions of differing pixels (where both have data) are printed per case
(``pytest -s``).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pytest
import rasterio

import geoproc
from geoproc.grid import GridSpec

from .helpers import exact_nearest

odc_stac = pytest.importorskip("odc.stac")
# odc-geo/odc-stac's own deprecated calls (Affine `*`, shapely.ops.transform), not ours
pytestmark = [
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:odc"),
    pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning"),
]
GeoBox = pytest.importorskip("odc.geo.geobox").GeoBox

#: geoproc band name -> odc-stac band name (asset key) in the synthetic archive
BANDS = {"red": "B04", "nir": "B08", "scl": "SCL"}
#: GDAL's default approximate-transformer error, in source pixels (gdalwarp -et 0.125)
GDAL_APPROX_ERROR = 0.125

#: case -> (output CRS, resolution, bounds in the output CRS or None for the union of the footprints)
CASES = {
    # (a) the whole archive, zone 33 at 10 m: both zone-33 tiles aligned, the zone-34 tile warped
    "extent-32633-10m": ("EPSG:32633", 10, None),
    # (b) a window straddling 18 deg E (x ~ 734400 here): 33TB only, 33TB + 34TA overlap, 34TA only;
    # deliberately off-grid bounds, snapped by both
    "boundary-32633-10m": ("EPSG:32633", 10, (733805.3, 5040283.7, 736415.2, 5042991.9)),
    # (b) the same area on a zone-34 grid: now the zone-33 tile, first in fuse order, is the warped one
    "boundary-32634-10m": ("EPSG:32634", 10, (265000.5, 5040300.3, 267500.7, 5042900.1)),
    # (c) downsampling, nearest. Both libraries read the COGs' 2x overviews here (odc-stac's default
    # use_overviews=True; geoproc always). With use_overviews=False odc-stac reads the full-resolution
    # pixels instead and then differs from geoproc at ~73% of the 10 m bands' pixels (overviews are
    # 2x2 averages), which is a difference of settings, not of correctness.
    "extent-32633-20m": ("EPSG:32633", 20, None),
    "extent-32633-30m": ("EPSG:32633", 30, None),
}


def _grid_of(ds) -> GridSpec:
    return GridSpec(ds.rio.crs.to_string(), ds.rio.transform(), (ds.sizes["y"], ds.sizes["x"]))


def _decode(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    out[dn == 0] = np.nan
    return out


def _source(path: str, out_res: float) -> tuple[int | None, str]:
    """The file's CRS, and the overview both libraries read from it: the one with the largest
    factor not above the output / source pixel size ratio (None: full resolution)."""
    with rasterio.open(path) as src:
        factors, src_res, crs = src.overviews(1), src.res[0], src.crs.to_string()
    level = None
    for i, f in enumerate(factors):
        if f <= out_res / src_res:
            level = i
    return level, crs


def _reference(items, grid: GridSpec, key: str):
    """Exact nearest-neighbour mosaic of asset ``key``: slots by solar day, first valid pixel by (time, id).

    Returns ``(values, warped, edge)``, each ``(time, y, x)``: the value, whether it came from a file in
    another CRS than the grid, and that source position's distance to a source pixel edge.
    (All acquisitions are at 09:50 UTC near 18 deg E, so the local solar day is the UTC date.)
    """
    slots: dict[dt.date, list] = {}
    for it in items:
        slots.setdefault(it.datetime.date(), []).append(it)
    shape = (len(slots), *grid.shape)
    values = np.zeros(shape, np.uint16 if key != "SCL" else np.uint8)
    warped = np.zeros(shape, bool)
    edge = np.full(shape, 0.5)
    for t, day in enumerate(sorted(slots)):
        filled = np.zeros(grid.shape, bool)
        for it in sorted(slots[day], key=lambda i: (i.datetime, i.id)):
            href = it.assets[key].get_absolute_href()
            level, crs = _source(href, grid.resolution[0])
            v, inside, e = exact_nearest(href, grid, overview_level=level)
            take = inside & (v != 0) & ~filled
            values[t][take] = v[take]
            warped[t][take] = crs != grid.crs
            edge[t][take] = e[take]
            filled |= take
    return values, warped, edge


@lru_cache(maxsize=None)
def _loads(catalog: str, case: str):
    """(grid, geoproc raw, geoproc decoded, odc-stac raw) for one case, computed once."""
    items = geoproc.search(catalog)
    crs, res, bounds = CASES[case]
    kw = dict(crs=crs, resolution=res, chunks=128)
    if bounds is not None:
        kw["bounds"] = bounds
    raw = geoproc.load(items, list(BANDS), raw=True, **kw)
    grid = _grid_of(raw)
    if bounds is not None:
        assert grid == GridSpec.from_bounds(bounds, res, crs)
    dec = geoproc.load(items, list(BANDS), **kw)
    gbox = GeoBox(grid.shape, grid.transform, grid.crs)
    odc = odc_stac.load(items, list(BANDS.values()), geobox=gbox, groupby="solar_day", resampling="nearest")
    # identical grids and time axes before any pixel is compared
    np.testing.assert_array_equal(odc.x.values, raw.x.values)
    np.testing.assert_array_equal(odc.y.values, raw.y.values)
    np.testing.assert_array_equal(raw.x.values, grid.xs())
    np.testing.assert_array_equal(raw.y.values, grid.ys())
    # same solar days; the labels may differ: odc-stac labels a slot with the first acquisition among
    # all the items it is given, geoproc with the first among the items that overlap the grid (in
    # the boundary windows, 33TA is 5 s earlier than 33TB but lies outside the window)
    np.testing.assert_array_equal(odc.time.values.astype("datetime64[D]"), raw.time.values.astype("datetime64[D]"))
    used = [i for i in items if i.id in raw.attrs["input_items"]]
    first = sorted({min(i.datetime for i in used if i.datetime.date() == d) for d in {i.datetime.date() for i in used}})
    np.testing.assert_array_equal(raw.time.values, np.array([np.datetime64(t.replace(tzinfo=None), "ns") for t in first]))
    raw, dec = raw.compute(), dec.compute()
    return grid, raw, dec, odc, items


@pytest.mark.parametrize("case", list(CASES))
def test_pixels_equal_odc_stac(archive, case):
    grid, raw, dec, odc, items = _loads(archive.catalog, case)
    lines = []
    for band, key in BANDS.items():
        got, other = raw[band].values, odc[key].values
        assert got.dtype == other.dtype  # raw integers on both sides (uint16 reflectance, uint8 SCL)
        ref, warped, edge = _reference(items, grid, key)
        np.testing.assert_array_equal(got, ref, err_msg=f"{case} {band}: geoproc is not the exact nearest neighbour")

        differ = got != other
        explained = warped & (edge < GDAL_APPROX_ERROR)
        unexplained = differ & ~explained
        assert not unexplained.any(), (
            f"{case} {band}: {int(unexplained.sum())} pixels differ from odc-stac that GDAL's approximation cannot "
            f"explain, first at (t, y, x) {tuple(int(v[0]) for v in np.nonzero(unexplained))}"
        )
        both = (got != 0) & (other != 0)
        lines.append(
            f"{band}: {int(differ.sum())} of {int(both.sum())} pixels with data differ ({differ.sum() / both.sum():.4%}); "
            f"max edge distance of a differing pixel {edge[differ].max() if differ.any() else 0:.2g} px"
        )

        # decoded float32: geoproc's decode is exactly the documented formula on its own integers,
        # and equals the same formula on odc-stac's integers wherever those are equal
        if band != "scl":
            expected = _decode(got, 1e-4, -0.1)
            np.testing.assert_array_equal(dec[band].values, expected)
            odc_dec = _decode(other, 1e-4, -0.1)
            same = ~differ
            np.testing.assert_array_equal(dec[band].values[same], odc_dec[same])
        else:
            np.testing.assert_array_equal(dec[band].values, got)
    print(f"\n[geoproc vs odc-stac] {case} {grid.shape}: " + "; ".join(lines))


@pytest.mark.parametrize("case", list(CASES))
def test_cases_cover_overlaps_and_the_zone_boundary(archive, case):
    """The comparison means something: every case has overlap pixels, and warped as well as aligned sources."""
    grid, raw, dec, odc, items = _loads(archive.catalog, case)
    _, warped, _ = _reference(items, grid, "B04")
    has_data = raw["red"].values != 0
    assert (warped & has_data).sum() > 1000
    assert (~warped & has_data).sum() > 1000
    # pixels that two tiles of one slot both cover (the fused overlap)
    cover = np.zeros(grid.shape, int)
    first_day = min(it.datetime.date() for it in items)
    for it in [i for i in items if i.datetime.date() == first_day]:  # the three tiles of one date
        _, inside, _ = exact_nearest(it.assets["B04"].get_absolute_href(), grid)
        cover += inside
    assert (cover >= 2).sum() > 100


def test_odc_geobox_snapping_matches_geoproc():
    """odc-geo's own snapping (anchor at the origin) gives geoproc's grid, once its 1% pixel tolerance is off.

    ``GeoBox.from_bbox`` by default lets the grid fall short of the bounds by up to 1/100 pixel;
    geoproc's grid always covers them. With ``tol=1e-9`` (geoproc's own snapping tolerance) the grids
    are identical.
    """
    rng = np.random.default_rng(3)
    for _ in range(500):
        x0, y0 = rng.uniform(-1e6, 1e6), rng.uniform(0, 1e7)
        w, h = rng.uniform(0.5, 30000, 2)
        res = float(rng.choice([10, 20, 30, 60, 7.5, 0.3]))
        bounds = (x0, y0, x0 + w, y0 + h)
        ours = GridSpec.from_bounds(bounds, res, "EPSG:32633")
        theirs = GeoBox.from_bbox(bounds, "EPSG:32633", resolution=res, tol=1e-9)
        assert theirs.shape == ours.shape
        assert theirs.affine.almost_equals(ours.transform, precision=1e-6)
