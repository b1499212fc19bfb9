"""geoproc.load against independent reads of the generated COGs."""

from __future__ import annotations

from dataclasses import dataclass, field

import dask
import pickle

import numpy as np
import pytest
from pyproj import Transformer

import geoproc
from geoproc.errors import InvalidArgumentError, NoOverlapError, UnknownBandError
from geoproc.grid import GridSpec, bounds_intersect, transform_bounds
from geoproc.io.items import AssetSpec
from geoproc.io.reader import ChunkTask, RasterioReader

from .helpers import item_file, read, reflectance


@pytest.fixture(scope="module")
def items(archive):
    return geoproc.search(archive.catalog)


def _by_date(archive, tile_name):
    return [i for i in archive.item_ids if f"_{tile_name}_" in i]


def test_structure_dtypes_and_time(archive, items):
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=128)
    assert list(ds.data_vars) == ["red", "nir", "scl"]
    assert ds.red.dims == ("time", "y", "x")
    assert ds.red.dtype == np.float32 and ds.scl.dtype == np.uint8
    assert ds.red.attrs["nodata"] != ds.red.attrs["nodata"]  # NaN
    assert ds.scl.attrs["nodata"] == 0 and ds.scl.attrs["resampling"] == "nearest"
    # one slice per solar day; its time is the first acquisition of that day (UTC)
    assert ds.sizes["time"] == len(archive.dates)
    np.testing.assert_array_equal(ds.time.values, np.array([np.datetime64(d.replace(tzinfo=None), "ns") for d in archive.dates]))
    assert ds.red.chunks[0] == (len(archive.dates),)
    assert ds.rio.crs.to_epsg() == 32633  # the most common CRS
    assert ds.rio.resolution() == (10.0, -10.0)
    assert sorted(ds.attrs["input_items"]) == sorted(archive.item_ids)


def test_one_task_per_chunk_per_band(archive, items):
    """Per band: one task per chunk and one table of assets; a task holds the positions of only the assets
    its chunk intersects, not the assets themselves."""
    ds = geoproc.load(items, ["red", "scl"], resolution=10, chunks=128)
    n_chunks = len(ds.red.data.chunks[1]) * len(ds.red.data.chunks[2])
    graph = dict(ds.red.data.__dask_graph__())
    tables = [k for k in graph if isinstance(k, str) and k.startswith("assets-")]
    assert len(tables) == 1 and len(graph) == n_chunks + 1
    table = graph[tables[0]].value
    assert all(isinstance(a, AssetSpec) for a in table)
    chunk_tasks = [arg.value for task in graph.values() if hasattr(task, "args") for arg in task.args
                   if isinstance(getattr(arg, "value", None), ChunkTask)]
    assert len(chunk_tasks) == n_chunks
    per_task = [[table[i] for i in t.assets] for t in chunk_tasks]
    assert all(len(pickle.dumps(t)) < 2000 for t in chunk_tasks)  # positions, not hrefs and metadata
    # every item is read somewhere, and some chunk reads fewer than all (the tiles only overlap)
    assert {a.item_id for specs in per_task for a in specs} == set(archive.item_ids)
    assert min(len(specs) for specs in per_task) < len(archive.item_ids)
    # each task reads exactly the assets whose footprint overlaps its chunk (checked for those in the grid's CRS)
    same = {i for i, a in enumerate(table) if a.crs == chunk_tasks[0].grid.crs}
    assert same and len(same) < len(table)
    for t in chunk_tasks:
        b = t.grid.bounds
        want = {i for i in same if table[i].bounds[0] < b[2] and b[0] < table[i].bounds[2]
                and table[i].bounds[1] < b[3] and b[1] < table[i].bounds[3]}
        assert set(t.assets.tolist()) & same == want


def test_bands_of_a_chunk_fuse_into_their_consumer(items):
    """Loads used together by one blockwise step become one task per chunk after dask's optimisation.

    That task reads every band of its chunk and computes on one worker, so no band crosses between
    workers.
    """
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=128)
    out = geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds))
    n_chunks = len(ds.red.data.chunks[1]) * len(ds.red.data.chunks[2])
    (optimized,) = dask.optimize(out.data)
    graph = dict(optimized.__dask_graph__())
    names = {k[0] if isinstance(k, tuple) else k for k in graph}
    assert not any(n.startswith("load-") for n in names), names
    # the fused task per chunk, plus at most an alias key per chunk that fusing leaves behind, and one
    # table of assets per band
    assert sum(str(n).startswith("assets-") for n in names) == 3
    assert n_chunks + 3 <= len(graph) <= 2 * n_chunks + 3
    np.testing.assert_array_equal(
        out.values, geoproc.composite(geoproc.ndvi(ds.compute()), "median", mask=geoproc.cloud_mask(ds.compute())).values
    )


def test_aligned_pixels_equal_the_files_and_mosaic(archive, items):
    """On the first tile's own grid: its pixels, with the overlapping tile filling its no-data triangle."""
    name_a, _, grid_a = archive.tiles[0]
    name_b, _, grid_b = archive.tiles[1]
    ds = geoproc.load(items, ["red", "scl"], bounds=grid_a.bounds, resolution=10, chunks=100).compute()
    assert ds.sizes["y"] == grid_a.height and ds.sizes["x"] == grid_a.width
    shift = int((grid_b.transform.c - grid_a.transform.c) / 10)
    for t, (ia, ib) in enumerate(zip(_by_date(archive, name_a), _by_date(archive, name_b))):
        ref = reflectance(read(item_file(archive, ia, "B04.tif")))
        other = np.full_like(ref, np.nan)
        other[:, shift:] = reflectance(read(item_file(archive, ib, "B04.tif")))[:, : grid_a.width - shift]
        expected = np.where(np.isnan(ref), other, ref)
        np.testing.assert_array_equal(ds.red.values[t], expected)
        scl = np.repeat(np.repeat(read(item_file(archive, ia, "SCL.tif")), 2, 0), 2, 1)
        scl_b = np.zeros_like(scl)
        scl_b[:, shift:] = np.repeat(np.repeat(read(item_file(archive, ib, "SCL.tif")), 2, 0), 2, 1)[:, : grid_a.width - shift]
        np.testing.assert_array_equal(ds.scl.values[t], np.where(scl == 0, scl_b, scl))
    assert np.isnan(reflectance(read(item_file(archive, _by_date(archive, name_a)[1], "B04.tif")))).any(), (
        "date 1 of the first tile should have a no-data corner for this test to mean something"
    )


def test_reprojected_tile_equals_exact_nearest_neighbour(archive, items):
    """Inside the zone-34 tile only: each output pixel holds the source pixel that contains its
    centre, transformed exactly with pyproj (no GDAL involved in the reference)."""
    name34, _, g34 = archive.tiles[2]
    fp = transform_bounds(g34.bounds, g34.crs, "EPSG:32633")
    east33 = archive.tiles[1][2].bounds[2]
    bounds = (east33 + 500, fp[1] + 800, fp[2] - 800, fp[3] - 800)
    ds = geoproc.load(items, ["nir"], bounds=bounds, resolution=10, chunks=64).compute()
    grid = GridSpec.from_bounds(bounds, 10, "EPSG:32633")
    xs, ys = np.meshgrid(grid.xs(), grid.ys())
    sx, sy = Transformer.from_crs(grid.crs, g34.crs, always_xy=True).transform(xs, ys)
    cols = np.floor((sx - g34.transform.c) / 10).astype(int)
    rows = np.floor((g34.transform.f - sy) / 10).astype(int)
    assert cols.min() >= 0 and rows.min() >= 0 and cols.max() < g34.width and rows.max() < g34.height
    for t, item_id in enumerate(_by_date(archive, name34)):
        expected = reflectance(read(item_file(archive, item_id, "B08.tif")))[rows, cols]
        np.testing.assert_array_equal(ds.nir.values[t], expected)


@pytest.mark.parametrize("chunks", [64, 100, (256, 90)])
def test_chunking_does_not_change_pixels(items, chunks):
    ref = geoproc.load(items, ["red", "scl"], resolution=10, chunks=256).compute()
    got = geoproc.load(items, ["red", "scl"], resolution=10, chunks=chunks).compute()
    np.testing.assert_array_equal(ref.red.values, got.red.values)
    np.testing.assert_array_equal(ref.scl.values, got.scl.values)


def test_raw_integers_carry_scale_and_offset(items):
    dec = geoproc.load(items, ["red"], resolution=10, chunks=256).red.values
    raw = geoproc.load(items, ["red"], resolution=10, chunks=256, raw=True).red
    assert raw.dtype == np.uint16
    assert (raw.attrs["scale"], raw.attrs["offset"], raw.attrs["nodata"]) == (0.0001, -0.1, 0)
    values = raw.values
    expected = np.where(values == 0, np.nan, values.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1))
    np.testing.assert_array_equal(dec, expected)


def test_groupby_time_keeps_each_acquisition(archive, items):
    ds = geoproc.load(items, ["red"], resolution=10, groupby="time")
    assert ds.sizes["time"] == len(archive.item_ids)


def test_bbox_in_degrees_is_snapped_and_like_reuses_the_grid(archive, items):
    w, s, e, n = archive.bbox
    box = (w + 0.01, s + 0.01, w + 0.03, s + 0.02)
    ds = geoproc.load(items, ["red"], bbox=box, resolution=20)
    minx, miny, maxx, maxy = ds.rio.bounds()
    assert all(v % 20 == 0 for v in (minx, miny, maxx, maxy))
    want = transform_bounds(box, "EPSG:4326", "EPSG:32633")
    assert minx <= want[0] and miny <= want[1] and maxx >= want[2] and maxy >= want[3]
    assert maxx - want[2] < 20 and want[0] - minx < 20
    again = geoproc.load(items, ["nir"], like=ds)
    np.testing.assert_array_equal(again.x.values, ds.x.values)
    np.testing.assert_array_equal(again.y.values, ds.y.values)


@dataclass(frozen=True)
class RecordingReader:
    """A real reader that also records (chunk bounds, asset footprint) of every read."""

    log: list = field(default_factory=list)
    inner: RasterioReader = field(default_factory=RasterioReader)

    def read(self, asset, grid, resampling, overviews=True):
        self.log.append((grid.bounds, transform_bounds(asset.bounds, asset.crs, grid.crs)))
        return self.inner.read(asset, grid, resampling, overviews)


def test_each_chunk_reads_only_intersecting_assets(archive, items):
    reader = RecordingReader()
    ds = geoproc.load(items, ["red"], resolution=10, chunks=128, reader=reader)
    with dask.config.set(scheduler="synchronous"):
        ds.red.compute()
    assert reader.log
    assert all(bounds_intersect(chunk, footprint) for chunk, footprint in reader.log)
    n_chunks = len(ds.red.chunks[1]) * len(ds.red.chunks[2])
    assert len(reader.log) < n_chunks * len(archive.item_ids) / 2


def test_errors_name_the_problem(items):
    with pytest.raises(UnknownBandError, match="'purple'.*available"):
        geoproc.load(items, ["red", "purple"])
    with pytest.raises(NoOverlapError, match="none of the"):
        geoproc.load(items, ["red"], bbox=(10.0, 40.0, 10.1, 40.1))
    with pytest.raises(InvalidArgumentError, match="west, south, east, north"):
        geoproc.load(items, ["red"], bbox=(18.1, 45.5, 17.9, 45.4))
    with pytest.raises(InvalidArgumentError, match="groupby"):
        geoproc.load(items, ["red"], groupby="month")
    with pytest.raises(InvalidArgumentError, match=r"chunks\['time'\] must be a whole number >= 1"):
        geoproc.load(items, ["red"], chunks={"time": 0, "x": 10})
    with pytest.raises(InvalidArgumentError, match="'time', 'y' and 'x'"):
        geoproc.load(items, ["red"], chunks={"band": 1})
    with pytest.raises(InvalidArgumentError, match="resampling"):
        geoproc.load(items, ["red"], resampling="sharpest")
    with pytest.raises(geoproc.errors.NoItemsFoundError):
        geoproc.load([], ["red"])


@pytest.mark.parametrize("time_chunk", [1, 2])
def test_time_chunks_load_the_same_pixels_and_each_task_reads_only_its_dates(items, time_chunk):
    """Per-date chunks (a cube written date by date) hold what the whole-series load holds; a task reads
    only the assets of its own time steps, so its memory does not grow with the number of dates."""
    whole = geoproc.load(items, ["red", "scl"], resolution=20, chunks=64)
    split = geoproc.load(items, ["red", "scl"], resolution=20, chunks={"time": time_chunk, "y": 64, "x": 64})
    n = whole.sizes["time"]
    assert split.red.data.chunks[0] == tuple(min(time_chunk, n - t) for t in range(0, n, time_chunk))
    for band in ("red", "scl"):
        np.testing.assert_array_equal(split[band].values, whole[band].values)
    graph = dict(split.red.data.__dask_graph__())
    table = next(v.value for k, v in graph.items() if str(k).startswith("assets-"))
    tasks = [arg.value for task in graph.values() if hasattr(task, "args") for arg in task.args
             if isinstance(getattr(arg, "value", None), ChunkTask)]
    assert tasks and all(t.n_time <= time_chunk for t in tasks)
    for task in tasks:
        assert all(0 <= step < task.n_time and specs for step, specs in task.slots(table))
    # a task of one time step reads fewer assets than a task over the whole series
    full = geoproc.load(items, ["red"], resolution=20, chunks=64)
    full_tasks = [arg.value for task in dict(full.red.data.__dask_graph__()).values() if hasattr(task, "args")
                  for arg in task.args if isinstance(getattr(arg, "value", None), ChunkTask)]
    assert max(len(t.assets) for t in tasks) < max(len(t.assets) for t in full_tasks)
