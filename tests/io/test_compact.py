"""Compact region graphs (geoproc.io._compact) against dask's own fused graph of the same write.

A compact graph sends one small task per region and the graph's layers once; each region's tasks are
made where it runs. It must write the same bytes as the fused graph, fall back to the fused graph where
regions share work (a task run twice would be wasted, or wrong for side effects), and never let a
blockwise input answer for a block it was not given.
"""

from __future__ import annotations

import pickle

import dask
import numpy as np
import pytest
from dask._task_spec import DataNode

import geoproc
from geoproc.grid import ChunkIndex
from geoproc.io._compact import Recipe, _Subset, compact_graph
from geoproc.io.zarr import begin_write


def _median(catalog):
    items = geoproc.search(catalog)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=32)
    return geoproc.composite(geoproc.ndvi(ds).where(~geoproc.cloud_mask(ds)), "median")


def _write(data, url, compact: bool, blocks=None):
    """Write ``data`` to ``url`` through the graph of its regions; returns that graph."""
    w = begin_write(data, url, stac_item=False)
    w.compact = compact
    pending = w.pending()
    dsk = w.graph(pending if blocks is None else [pending[i] for i in blocks])
    dask.get(dsk, [w.key(b) for b in (pending if blocks is None else [pending[i] for i in blocks])])
    if blocks is None:
        w.finish()
    return dsk


def _same(a, b):
    for name in a.data_vars:
        assert a[name].values.tobytes() == b[name].values.tobytes(), name


def test_a_compact_graph_has_one_task_per_region_and_writes_the_fused_graphs_bytes(archive, tmp_path):
    data = _median(archive.catalog)
    compact = _write(data, tmp_path / "compact.zarr", True)
    fused = _write(data, tmp_path / "fused.zarr", False)
    regions = data.data.npartitions
    tasks = [k for k, v in compact.items() if not isinstance(v, DataNode)]
    data_nodes = [v.value for v in compact.values() if isinstance(v, DataNode)]
    assert len(tasks) == regions
    assert sum(isinstance(v, Recipe) for v in data_nodes) == 1 and len(data_nodes) == 1 + 3  # recipe, 3 tables
    # what travels per region: a key and references, against the fused tasks' reads, windows and subgraphs
    per_region = {name: len(pickle.dumps([v for v in g.values() if not isinstance(v, DataNode)])) / regions
                  for name, g in (("compact", compact), ("fused", fused))}
    assert per_region["compact"] * 4 < per_region["fused"], per_region
    _same(geoproc.open_result(tmp_path / "compact.zarr"), geoproc.open_result(tmp_path / "fused.zarr"))
    ref = data.compute()  # and both are what dask computes without any of this
    assert np.array_equal(geoproc.open_result(tmp_path / "compact.zarr")["NDVI"].values, ref.values, equal_nan=True)


def test_a_tiles_recipe_keeps_only_the_tiles_blocks(archive, tmp_path):
    """A culled recipe's chunk index and block_info hold the regions sent, not the whole grid."""
    data = _median(archive.catalog)
    whole = _write(data, tmp_path / "a.zarr", True)
    one = _write(data, tmp_path / "b.zarr", True, blocks=[0])
    size = {name: len(pickle.dumps(next(v.value for v in g.values() if isinstance(v, DataNode) and
                                         isinstance(v.value, Recipe)))) for name, g in (("whole", whole), ("one", one))}
    assert size["one"] < size["whole"]
    recipe = next(v.value for v in one.values() if isinstance(v, DataNode) and isinstance(v.value, Recipe))
    subsets = [dep for layer in recipe.blockwise.values() for dep in layer.io_deps.values()]
    for dep in subsets:
        if isinstance(dep, _Subset):
            assert len(dep.values) == 1
        else:  # the load's chunk tasks: its index has rows for the tile's chunk alone, and no asset table
            assert dep.band.table == () and np.count_nonzero(np.diff(dep.band.index.ptr)) <= 1


def test_regions_that_share_work_get_the_fused_graph(archive, tmp_path):
    items = geoproc.search(archive.catalog)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=32)
    mask = geoproc.cloud_mask(ds)
    # two variables read the same SCL chunk: the mask is shared by their regions at each block
    both = geoproc.composite(ds[["red", "nir"]].where(~mask), "median")
    w = begin_write(both, tmp_path / "shared.zarr", stac_item=False)
    keys = [w.key(b) for b in w.pending()]
    assert compact_graph(w._culled(keys), keys, "t") is None
    # neighbours sharing halo chunks (an overlapping filter) are found too
    ndvi = geoproc.ndvi(ds).isel(time=0)
    smooth = ndvi.copy(data=ndvi.data.map_overlap(lambda b: b, depth=1, boundary="none"))
    w2 = begin_write(smooth.to_dataset(name="s"), tmp_path / "halo.zarr", stac_item=False)
    keys2 = [w2.key(b) for b in w2.pending()]
    assert compact_graph(w2._culled(keys2), keys2, "t") is None
    # and such writes still give the right bytes
    _write(both, tmp_path / "both.zarr", True)
    _same(geoproc.open_result(tmp_path / "both.zarr"), both.compute())


def test_a_subset_never_answers_for_a_block_it_was_not_given():
    from dask.layers import ArrayValuesDep

    dep = ArrayValuesDep(((2, 2), (2, 2)), np.array([[1, 2], [3, 4]], dtype=object))
    sub = _Subset(dep, [(1, 0)])
    assert sub[(1, 0)] == 3
    with pytest.raises(KeyError):
        sub.get((0, 0), "default")  # dask's BlockwiseDep.get would have given "default"


def test_a_chunk_index_subset_keeps_the_rows_asked_for():
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 5, 30)
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    idx = ChunkIndex(ptr, rng.integers(0, 100, ptr[-1]).astype(np.int32), 6)
    rows = rng.choice(30, 11, replace=False)
    sub = idx.subset(rows)
    for k in range(30):
        iy, ix = divmod(k, 6)
        expect = idx.of(iy, ix).tolist() if k in set(rows.tolist()) else []
        assert sub.of(iy, ix).tolist() == expect
