"""to_zarr(..., overviews=...): downsampled levels as multiscales sibling groups, each level written by the task that
writes the full-resolution chunk it covers; checked against xarray's coarsen and a numpy mode, opened as a DataTree,
validated with geozarr-toolkit, and written the same as one graph, tile by tile, resumed and appended."""

from __future__ import annotations

import json
import os

import dask
import dask.array as da
import geozarr_toolkit  # scripts/install.sh test installs it
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
import zarr
from affine import Affine
from geozarr_toolkit.helpers import validate_multiscales_structure

import geoproc
from geoproc.errors import InvalidArgumentError, OutputError
from geoproc.io._overviews import downsample
from geoproc.io.zarr import begin_write, output_status
from geoproc.kernels.overviews import window_mode
from geoproc.run import write_tiled

X0, Y0, RES = 700_000.0, 5_000_000.0, 10.0
NY, NX, CHUNK = 70, 90, 16  # neither side a multiple of the chunk nor of 2**levels: partial edge windows


def _product(chunk=CHUNK, dates=2) -> xr.Dataset:
    """A 3-D float index with NaN holes, a 2-D class band with nodata 0 and a boolean mask."""
    rng = np.random.default_rng(7)
    ndvi = rng.uniform(-0.2, 0.9, (dates, NY, NX)).astype("float32")
    ndvi[rng.random(ndvi.shape) < 0.3] = np.nan
    ndvi[0, :8, :8] = np.nan  # whole windows of NaN at both levels
    classes = rng.choice(np.array([0, 3, 4, 5, 8], "uint8"), size=(NY, NX), p=[0.2, 0.3, 0.3, 0.1, 0.1])
    classes[-6:, -6:] = 0  # an edge window of nodata only
    ds = xr.Dataset(
        {
            "ndvi": (("time", "y", "x"), ndvi),
            "scl": (("y", "x"), classes, {"nodata": 0}),
            "clear": (("y", "x"), classes >= 4),
        },
        coords={
            "time": np.array(["2024-05-01", "2024-05-11", "2024-05-21"][:dates], "datetime64[ns]"),
            "y": Y0 - RES * np.arange(NY) - RES / 2,
            "x": X0 + RES * np.arange(NX) + RES / 2,
        },
    ).rio.write_crs(32633)
    return ds.chunk({"time": 1, "y": chunk, "x": chunk})


def _mode_reference(values: np.ndarray, f: int, nodata=None) -> np.ndarray:
    """Most frequent value of each f x f window (ties: the smallest; nodata ignored), window by window."""
    ny, nx = values.shape
    out = np.zeros((-(-ny // f), -(-nx // f)), values.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            window = values[i * f:(i + 1) * f, j * f:(j + 1) * f].ravel()
            if nodata is not None:
                window = window[window != nodata]
            if window.size == 0:
                out[i, j] = nodata
                continue
            uniq, counts = np.unique(window, return_counts=True)  # sorted: argmax takes the smallest of a tie
            out[i, j] = uniq[np.argmax(counts)]
    return out


def test_levels_equal_coarsen_and_mode_references_and_open_as_a_datatree(tmp_path):
    ds = _product()
    path = geoproc.to_zarr(ds, tmp_path / "p.zarr", overviews=2)
    tree = xr.open_datatree(path, engine="zarr")
    assert set(tree.children) == {"0", "1", "2"}  # sibling groups, full resolution in "0"
    layout = tree.attrs["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == ["0", "1", "2"]
    assert [e.get("derived_from") for e in layout] == [None, "0", "0"]
    assert [e["transform"]["scale"] for e in layout] == [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]]
    assert tree.attrs["multiscales"]["geoproc:resampling"] == {"ndvi": "average", "scl": "mode", "clear": "mode"}
    full = ds.load()
    xr.testing.assert_identical(tree["0"].ds.ndvi.reset_coords(drop=True), geoproc.open_result(path).ndvi.reset_coords(drop=True))
    for level in (1, 2):
        f = 2**level
        got = tree[str(level)].ds
        assert got.sizes["y"] == -(-NY // f) and got.sizes["x"] == -(-NX // f)
        # floats: the mean of the pixels each window covers, NaN ignored (xarray's skipna), edges padded
        with np.errstate(all="ignore"):
            reference = full.ndvi.astype("float64").coarsen(y=f, x=f, boundary="pad").mean()
        np.testing.assert_allclose(got.ndvi.values, reference.values, rtol=1e-6)
        assert got.ndvi.dtype == np.float32 and np.isnan(got.ndvi.values[0, 0, 0])  # a window of NaN only
        # classes: the most frequent class, nodata ignored; a window of nodata only stays nodata
        np.testing.assert_array_equal(got.scl.values, _mode_reference(full.scl.values, f, nodata=0))
        assert got.scl.dtype == np.uint8 and got.scl.values[-1, -1] == 0
        np.testing.assert_array_equal(got.clear.values, _mode_reference(full.clear.values, f))
        assert got.clear.dtype == bool
        # each level georeferenced on its own: coordinates, CF grid mapping and the conventions
        level_ds = geoproc.open_result(path, level=level)
        assert level_ds.rio.crs.to_epsg() == 32633
        assert level_ds.rio.transform() == Affine(RES * f, 0, X0, 0, -RES * f, Y0)
        np.testing.assert_allclose(got.x.values, X0 + RES * f * (np.arange(got.sizes["x"]) + 0.5))
        assert layout[level]["spatial:transform"] == [RES * f, 0.0, X0, 0.0, -RES * f, Y0]
    root = zarr.open_group(path, mode="r")
    assert validate_multiscales_structure(root) == (True, [])
    results = geozarr_toolkit.validate_group(root)
    assert set(results) >= {"multiscales", "spatial", "proj", "zarr_conventions"}
    assert all(errors == [] for errors in results.values()), results
    for level in ("0", "1", "2"):
        assert all(e == [] for e in geozarr_toolkit.validate_group(root[level]).values())
    # each level's Zarr chunks are the compute chunk divided by 2**level: one task writes each
    assert root["1"]["ndvi"].chunks == (1, 8, 8) and root["2"]["scl"].chunks == (4, 4)
    status = output_status(path)
    assert status["status"] == "complete" and status["overviews"] == 2 and status["regions_done"] == 2 * 30 + 30 + 30


def test_each_level_is_written_in_the_task_of_its_full_resolution_chunk(tmp_path):
    """No task but the region writes (and the finish) touches the store: the graph has no whole-array step."""
    ds = _product()
    w = begin_write(ds, tmp_path / "p.zarr", overviews=2)
    blocks = w.pending()
    dsk = w.graph(blocks)
    writes = [k for k in dsk if isinstance(k, tuple) and str(k[0]).startswith("geoproc-write-")]
    assert len(writes) == len(blocks) == 120  # one write task per full-resolution region, levels included
    # one block alone writes its levels: its level chunks hold the reference values, the others nothing
    first = next(b for b in blocks if b.variable == "scl" and b.index == (0, 0))
    dask.threaded.get(w.graph([first]), [w.key(first)])
    level2 = zarr.open_array(str(tmp_path / "p.zarr"), path="2/scl", mode="r")[:]
    np.testing.assert_array_equal(level2[:4, :4], _mode_reference(ds.scl.values[:16, :16], 4, nodata=0))
    assert (level2[4:, :] == 0).all() and (level2[:, 4:] == 0).all()


def test_tiles_and_resume_write_the_same_levels_as_one_graph(tmp_path):
    ds = _product()
    geoproc.to_zarr(ds, tmp_path / "one.zarr", overviews=2)
    run = write_tiled(ds, tmp_path / "tiles.zarr", tile=2, max_tasks=16, overviews=2)
    assert run.complete and run.tiles == 3 * 3
    # an interrupted write: a few regions done, then resumed
    w = begin_write(ds, tmp_path / "resumed.zarr", overviews=2)
    some = w.pending()[::7]
    dask.threaded.get(w.graph(some), [w.key(b) for b in some])
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(tmp_path / "resumed.zarr")
    with pytest.raises(OutputError, match="overview level"):
        geoproc.to_zarr(ds, tmp_path / "resumed.zarr", mode="resume")  # without overviews: refused, not mixed
    geoproc.to_zarr(ds, tmp_path / "resumed.zarr", mode="resume", overviews=2)
    for level in range(3):
        one = geoproc.open_result(tmp_path / "one.zarr", level=level).load()
        for other in ("tiles.zarr", "resumed.zarr"):
            got = geoproc.open_result(tmp_path / other, level=level).load()
            for name in ds.data_vars:
                assert got[name].values.tobytes() == one[name].values.tobytes(), (other, level, name)


def test_append_extends_every_level(tmp_path):
    ds = _product(dates=3)[["ndvi"]]
    path = geoproc.to_zarr(ds.isel(time=[0, 1]), tmp_path / "ts.zarr", overviews=1)
    geoproc.to_zarr(ds.isel(time=[2]), path, mode="append", overviews=1)
    level = geoproc.open_result(path, level=1)
    assert level.sizes["time"] == 3
    with np.errstate(all="ignore"):
        reference = ds.ndvi.load().astype("float64").coarsen(y=2, x=2, boundary="pad").mean()
    np.testing.assert_allclose(level.ndvi.values, reference.values, rtol=1e-6)


def test_chunks_that_are_not_multiples_of_the_levels_are_refused_with_advice(tmp_path):
    ds = _product(chunk=24)  # 24 = 8 x 3: three levels fit, four do not
    with pytest.raises(InvalidArgumentError, match=r"multiples of 2\*\*4 = 16.*overviews=3"):
        geoproc.to_zarr(ds, tmp_path / "p.zarr", overviews=4)
    assert not os.path.exists(tmp_path / "p.zarr")
    with pytest.raises(InvalidArgumentError, match="overview_resampling"):
        geoproc.to_zarr(ds, tmp_path / "p.zarr", overviews=1, overview_resampling="cubic")
    with pytest.raises(InvalidArgumentError, match="without 'y' and 'x'"):
        geoproc.to_zarr(ds.assign(total=ds.ndvi.sum(("y", "x"))), tmp_path / "p.zarr", overviews=1)
    # overviews=True picks the levels that bring the larger side to 256 px or less
    big = xr.DataArray(da.zeros((1024, 600), "float32", chunks=256), dims=("y", "x"), name="v",
                       coords={"y": Y0 - RES * np.arange(1024), "x": X0 + RES * np.arange(600)}).rio.write_crs(32633)
    path = geoproc.to_zarr(big, tmp_path / "big.zarr", overviews=True)
    assert output_status(path)["overviews"] == 2
    assert json.load(open(os.path.join(path, "2", "v", "zarr.json")))["shape"] == [256, 150]


def test_mode_kernel_and_nearest_against_references():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, (2, 13, 11)).astype("float64")
    values[0, :3, :3] = np.nan
    for f in (2, 4, 8):
        got = window_mode(values, f)
        for k in range(2):
            ref = _mode_reference(np.nan_to_num(values[k], nan=-1).astype(int), f, nodata=-1).astype(float)
            ref[ref == -1] = np.nan
            np.testing.assert_array_equal(got[k], ref)
    block = np.arange(7 * 5).reshape(7, 5)
    # nearest: the pixel at the window's centre (down-right of it for even windows), clipped at the edge
    np.testing.assert_array_equal(downsample(block, 4, "nearest", None, (0, 1)), block[[2, 6]][:, [2, 4]])
    # a (y, band, x) layout is downsampled along its y and x axes only
    cube = np.stack([block, block + 100], axis=1).astype("float32")
    np.testing.assert_allclose(downsample(cube, 2, "mean", None, (0, 2))[:, 1], downsample(block + 100.0, 2, "mean", None, (0, 1)))
