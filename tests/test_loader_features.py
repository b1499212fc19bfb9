"""Overviews, the dry-run plan, and geometry areas."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rasterio

import geoproc
from geoproc.grid import transform_bounds

from .helpers import item_file, reflectance


@pytest.fixture(scope="module")
def items(archive):
    return geoproc.search(archive.catalog)


@pytest.mark.parametrize("resolution, level", [(20, 0), (40, 1)])
def test_coarse_reads_use_the_matching_overview(archive, items, resolution, level):
    """On the first tile's grid at 20 m / 40 m the pixels are exactly the COG's overview pixels."""
    name, _, grid = archive.tiles[0]
    first_item = next(i for i in archive.item_ids if f"_{name}_" in i)
    anchor = (grid.transform.c, grid.transform.f)  # the overview grid starts at the tile corner
    ds = geoproc.load(items, ["red"], bounds=grid.bounds, resolution=resolution, anchor=anchor, chunks=64)
    with dask.config.set(scheduler="synchronous"):
        got = ds.red.values[0]
    with rasterio.open(item_file(archive, first_item, "B04.tif"), overview_level=level) as ovr:
        assert ovr.res == (resolution, resolution)
        expected = reflectance(ovr.read(1))
    np.testing.assert_array_equal(got, expected)


def test_plan_matches_the_load(archive, items):
    p = geoproc.plan(items, ["red", "nir", "scl"], resolution=10, chunks=128)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=128)
    assert p.shape == (ds.sizes["time"], ds.sizes["y"], ds.sizes["x"])
    assert p.items == p.items_used == len(archive.item_ids)
    assert p.bands == {"red": "float32", "nir": "float32", "scl": "uint8"}
    graph = {k: v for b in ds.data_vars for k, v in dict(ds[b].data.__dask_graph__()).items()}
    graph_tasks = sum(1 for k in graph if not str(k).startswith("assets-"))  # and a table of assets per band
    assert p.tasks == graph_tasks == p.chunks * 3  # a task per chunk and band
    assert p.task_bytes == ds.sizes["time"] * 128 * 128 * (4 + 4 + 1)  # a chunk of each band
    assert p.chunk_bytes == ds.sizes["time"] * 128 * 128 * 4
    # every pixel of every tile is read once per band (chunks partition the grid); the zone-34 tile's
    # footprint is its bounding box in the output CRS, so the estimate may exceed the truth a little
    exact = len(archive.item_ids) * (256 * 256 * 2 * 2 + 128 * 128 * 1)
    assert exact <= p.bytes_to_read <= 1.1 * exact
    text = str(p)
    assert "load tasks" in text and "uncompressed" in text and "EPSG:32633" in text


def test_plan_counts_overview_bytes(items):
    fine = geoproc.plan(items, ["red"], resolution=10)
    coarse = geoproc.plan(items, ["red"], resolution=40)
    assert coarse.bytes_to_read < fine.bytes_to_read / 10


def test_geometry_bounds_the_grid(archive, items):
    w, s, e, n = archive.bbox
    poly = {"type": "Polygon", "coordinates": [[[w + 0.01, s + 0.01], [w + 0.03, s + 0.01], [w + 0.02, s + 0.02], [w + 0.01, s + 0.01]]]}
    ds = geoproc.load(items, ["red"], geometry=poly, resolution=10)
    want = transform_bounds((w + 0.01, s + 0.01, w + 0.03, s + 0.02), "EPSG:4326", "EPSG:32633")
    minx, miny, maxx, maxy = ds.rio.bounds()
    assert minx <= want[0] < minx + 10 and maxx - 10 < want[2] <= maxx
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="one of"):
        geoproc.load(items, ["red"], geometry=poly, bbox=(w, s, e, n))
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="GeoJSON"):
        geoproc.load(items, ["red"], geometry={"type": "Polygon"})


def test_multi_band_asset_reads_the_named_band(tmp_path):
    """A 3-band 'visual' COG described by eo:bands: each common name reads its own band."""
    import datetime as dt

    import pystac
    from affine import Affine

    rng = np.random.default_rng(5)
    data = rng.integers(1, 255, (3, 64, 80)).astype(np.uint8)
    transform = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    path = str(tmp_path / "visual.tif")
    with rasterio.open(path, "w", driver="COG", width=80, height=64, count=3, dtype="uint8", crs="EPSG:32633", transform=transform, nodata=0) as dst:
        dst.write(data)
    item = pystac.Item("rgb", None, (14.99, 45.1, 15.01, 45.11), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), {"proj:epsg": 32633})
    bands = [{"name": n, "common_name": n} for n in ("red", "green", "blue")]
    item.add_asset("visual", pystac.Asset(path, extra_fields={"eo:bands": bands, "proj:shape": [64, 80], "proj:transform": list(transform)[:6], "raster:bands": [{"nodata": 0, "data_type": "uint8"}] * 3}))
    ds = geoproc.load([item], ["green", "blue", "red"])
    with dask.config.set(scheduler="synchronous"):
        for i, name in enumerate(("red", "green", "blue")):
            np.testing.assert_array_equal(ds[name].values[0], data[i])
    assert ds.green.dtype == np.uint8


def test_class_bands_never_read_averaged_overviews(tmp_path):
    """An SCL COG whose overviews were built by AVERAGE: a coarse load must not invent classes."""
    import datetime as dt

    import pystac
    from affine import Affine

    rng = np.random.default_rng(2)
    classes = np.array([4, 5, 6, 8, 9], np.uint8)
    data = classes[rng.integers(0, 5, (512, 512))]
    transform = Affine(20, 0, 500_000, 0, -20, 5_000_000)
    path = str(tmp_path / "SCL.tif")
    with rasterio.open(path, "w", driver="COG", width=512, height=512, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=transform, nodata=0, blocksize=128, overview_resampling="average") as dst:
        dst.write(data, 1)
    with rasterio.open(path, overview_level=1) as ovr:
        assert not np.isin(ovr.read(1), classes).all(), "the overview should hold averaged, invented classes"
    item = pystac.Item("scl", None, (14.99, 45.1, 15.01, 45.11), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), {"proj:epsg": 32633})
    item.add_asset("scl", pystac.Asset(path, extra_fields={"proj:shape": [512, 512], "proj:transform": list(transform)[:6], "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}))
    ds = geoproc.load([item], ["scl"], resolution=80, anchor=(500_000, 5_000_000))
    with dask.config.set(scheduler="synchronous"):
        got = ds.scl.values[0]
    assert np.isin(got, classes).all()
    # nearest from the full-resolution file: the pixel containing each 80 m pixel's centre
    np.testing.assert_array_equal(got, data[2::4, 2::4])


def test_normalize_crs_recognises_wkt1_exports():
    from pyproj import CRS

    from geoproc.grid import normalize_crs

    # CRS objects as rasterio and pyproj hand them out (their WKT carries the authority)
    assert normalize_crs(rasterio.crs.CRS.from_epsg(3035)) == "EPSG:3035"
    assert normalize_crs(rasterio.crs.CRS.from_epsg(32633)) == "EPSG:32633"
    assert normalize_crs(CRS.from_epsg(6933)) == "EPSG:6933"
