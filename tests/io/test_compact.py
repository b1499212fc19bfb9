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
import xarray as xr
from dask._task_spec import DataNode

import geoproc
from geoproc.io._compact import Recipe, _Subset
from geoproc.io.zarr import begin_write


def _median(catalog, chunks=32):
    items = geoproc.search(catalog)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=chunks)
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


def _recipe_of(dsk):
    return next(v.value for v in dsk.values() if isinstance(v, DataNode) and isinstance(v.value, Recipe))


def test_a_tiles_recipe_keeps_only_the_tiles_blocks(archive, tmp_path):
    """A culled recipe's inputs (the load's chunk tasks, block_info) hold the regions sent, not the whole grid:
    one region's recipe weighs the same on a grid of 4 times as many chunks."""
    sizes = {}
    for chunk in (32, 16):
        data = _median(archive.catalog, chunk)
        one = _write(data, tmp_path / f"one{chunk}.zarr", True, blocks=[0])
        recipe = _recipe_of(one)
        for layer in recipe.blockwise.values():
            for dep in layer.io_deps.values():
                assert isinstance(dep, _Subset) and len(dep.values) == 1
        sizes[chunk] = len(pickle.dumps(recipe))
    whole = len(pickle.dumps(_recipe_of(_write(data, tmp_path / "whole.zarr", True))))
    assert sizes[16] < 1.2 * sizes[32] and sizes[16] * 3 < whole, (sizes, whole)


def test_regions_that_share_work_get_the_fused_graph(archive, tmp_path):
    items = geoproc.search(archive.catalog)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=32)
    mask = geoproc.cloud_mask(ds)
    ndvi = geoproc.ndvi(ds)
    cases = {
        # two variables read the same SCL chunk: the mask is shared by their regions at each block
        "mask": geoproc.composite(ds[["red", "nir"]].where(~mask), "median"),
        # a per-date cube beside its median: variables of other ranks share the reads
        "ranks": xr.Dataset({"ts": ndvi, "med": geoproc.composite(ndvi, "median")}),
        # neighbours share halo chunks
        "halo": ndvi.isel(time=0).copy(data=ndvi.isel(time=0).data.map_overlap(lambda b: b, depth=1,
                                                                                boundary="none")).to_dataset(name="s"),
        # every region needs the mean of the whole scene
        "global": (ndvi.isel(time=0) - ndvi.isel(time=0).mean()).to_dataset(name="d"),
    }
    for name, data in cases.items():
        w = begin_write(data, tmp_path / f"{name}.zarr", stac_item=False)
        assert w.shares_work(), name
        # even a graph of one region (a retried or resumed tile) is the fused one
        one = w.graph(w.pending()[:1])
        assert not any(isinstance(v, DataNode) and isinstance(v.value, Recipe) for v in one.values()), name
    w = begin_write(geoproc.composite(ndvi, "median"), tmp_path / "plain.zarr", stac_item=False)
    assert not w.shares_work()
    # and such writes still give the right bytes
    _write(cases["ranks"], tmp_path / "ranks-out.zarr", True)
    _same(geoproc.open_result(tmp_path / "ranks-out.zarr"), cases["ranks"].compute())


def test_a_subset_never_answers_for_a_block_it_was_not_given():
    from dask.layers import ArrayValuesDep

    dep = ArrayValuesDep(((2, 2), (2, 2)), np.array([[1, 2], [3, 4]], dtype=object))
    sub = _Subset(dep, [(1, 0)])
    assert sub[(1, 0)] == 3
    with pytest.raises(KeyError):
        sub.get((0, 0), "default")  # dask's BlockwiseDep.get would have given "default"
