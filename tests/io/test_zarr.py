"""to_zarr / open_result on local disk: round trip, STAC item, manifest, resume, append, refusals before compute.

The same protocol on S3 (SeaweedFS), with its faults, is tested in test_zarr_s3.py.
"""

from __future__ import annotations

import json
import os

import dask
import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import geoproc
from geoproc.errors import InvalidArgumentError, OutputError
from geoproc.io.zarr import output_status


def _result():
    values = da.from_array(np.arange(60 * 80, dtype=np.float32).reshape(60, 80), chunks=(32, 40))
    values = da.where(values % 7 == 0, np.nan, values)
    arr = xr.DataArray(values, dims=("y", "x"), coords={"y": 5_000_000 - 10 * np.arange(60) - 5.0, "x": 700_000 + 10 * np.arange(80) + 5.0}, name="ndvi")
    arr.attrs = {"nodata": np.nan, "long_name": "test"}
    return arr.rio.write_crs(32633)


def test_round_trip_with_crs_transform_and_attrs(tmp_path):
    arr = _result()
    path = geoproc.to_zarr(arr, tmp_path / "out.zarr", attrs={"input_items": ["a", "b"]})
    ds = xr.open_zarr(path)  # plain xarray, no decode_coords="all"
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.ndvi.rio.crs.to_epsg() == 32633
    assert tuple(ds.rio.transform())[:6] == (10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0)
    np.testing.assert_array_equal(ds.ndvi.values, arr.values)
    assert ds.ndvi.encoding["chunks"] == (32, 40)
    assert ds.attrs["input_items"] == ["a", "b"] and ds.attrs["geoproc_version"] == geoproc.__version__
    # metadata is strict JSON (NaN attrs are written as strings) and Zarr v3
    meta = json.load(open(os.path.join(path, "zarr.json")))
    assert meta["zarr_format"] == 3
    json.loads(open(os.path.join(path, "ndvi", "zarr.json")).read(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert geoproc.open_result(path).ndvi.attrs["nodata"] == "nan"
    # compressed with zstd, one Zarr chunk per compute chunk; the manifest says complete
    assert meta_of(path, "ndvi")["codecs"][-1]["name"] == "zstd"
    status = output_status(path)
    assert status["status"] == "complete" and status["regions_done"] == status["regions_total"] == 4
    # the STAC Item beside the store: footprint around the grid, proj: and processing: fields
    item = json.load(open(f"{path}.stac-item.json"))
    assert item["properties"]["proj:code"] == "EPSG:32633" and item["properties"]["proj:shape"] == [60, 80]
    assert item["properties"]["proj:transform"] == [10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0]
    assert item["properties"]["processing:software"] == {"geoproc": geoproc.__version__}
    assert item["assets"]["data"]["href"] == str(path)
    west, south, east, north = item["bbox"]
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(700_400.0, 4_999_700.0)  # the grid's centre
    assert west < lon < east and south < lat < north and east - west < 0.02
    import pystac

    assert pystac.Item.from_dict(item).id == "out.zarr"


def meta_of(path, name):
    return json.load(open(os.path.join(path, name, "zarr.json")))


def _failing_after(arr, n, message, failed):
    """``arr`` whose blocks fail from the (n+1)-th computed on; those blocks' locations go to ``failed``."""
    seen: list = []

    def fail(block, block_info=None):
        if block_info is not None and block.size:
            seen.append(1)
            if len(seen) > n:
                failed.append(tuple(block_info[0]["chunk-location"]))
                raise RuntimeError(message)
        return block

    return arr.copy(data=arr.data.map_blocks(fail, dtype=arr.dtype))


def _counting(arr, log):
    """``arr`` whose blocks append their location to ``log`` when computed."""

    def count(block, block_info=None):
        if block_info is not None and block.size:  # not dask's meta probe
            log.append(tuple(block_info[0]["chunk-location"]))
        return block

    return arr.copy(data=arr.data.map_blocks(count, dtype=arr.dtype))


def test_existing_output_is_refused_then_replaced(tmp_path):
    path = geoproc.to_zarr(_result(), tmp_path / "out.zarr")
    with pytest.raises(OutputError, match="already exists.*mode='w'"):
        geoproc.to_zarr(_result(), path)
    smaller = _result()[:30]
    geoproc.to_zarr(smaller, path, mode="w")
    assert xr.open_zarr(path).sizes["y"] == 30


def test_unwritable_locations_fail_before_compute(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []

    def boom(block):
        if block.size:  # not dask's meta probe
            calls.append(1)
        return block

    arr = _result().copy(data=_result().data.map_blocks(boom, dtype=np.float32))
    with pytest.raises(OutputError, match="cannot write"):
        geoproc.to_zarr(arr, blocker / "out.zarr")
    with pytest.raises(OutputError, match="not supported"):
        geoproc.to_zarr(arr, "gs://bucket/out.zarr")
    assert calls == [], "nothing may be computed before the location is known to be writable"


def test_pending_write_is_unreadable_until_complete(tmp_path):
    target = tmp_path / "lazy.zarr"
    pending = geoproc.to_zarr(_result(), target, compute=False)
    with pytest.raises(OutputError, match="unfinished.*resume"):
        geoproc.open_result(target)  # the template is there, the data is not
    assert pending.compute() == str(target)
    np.testing.assert_array_equal(geoproc.open_result(target).ndvi.values, _result().values)


def test_failed_write_resumes_computing_only_the_missing_regions(tmp_path):
    target = tmp_path / "out.zarr"

    failed: list = []
    broken = _failing_after(_result(), 3, "worker died", failed)
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="worker died"):
        geoproc.to_zarr(broken, target)
    status = output_status(target)
    assert status["status"] == "writing" and status["regions_done"] == 3
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(target)
    with pytest.raises(OutputError, match="already exists.*resume"):
        geoproc.to_zarr(_result(), target)
    computed: list = []
    with dask.config.set(scheduler="synchronous"):
        geoproc.to_zarr(_counting(_result(), computed), target, mode="resume")
    assert computed == failed, "only the region that was not written may be computed again"
    np.testing.assert_array_equal(geoproc.open_result(target).ndvi.values, _result().values)


def test_resume_refuses_another_result_before_compute(tmp_path):
    target = tmp_path / "out.zarr"
    geoproc.to_zarr(_result(), target)
    computed: list = []
    with pytest.raises(OutputError, match="shape"):
        geoproc.to_zarr(_counting(_result()[:30], computed), target, mode="resume")
    moved = _result().rio.write_crs(32634)
    with pytest.raises(OutputError, match="CRS"):
        geoproc.to_zarr(_counting(moved, computed), target, mode="resume")
    rechunked = _result().chunk({"y": 20, "x": 40})
    with pytest.raises(OutputError, match="chunks"):
        geoproc.to_zarr(rechunked, target, mode="resume")
    assert computed == []


def _series(times, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random((len(times), 60, 80)).astype(np.float32)
    arr = xr.DataArray(
        da.from_array(values, chunks=(len(times), 32, 40)), dims=("time", "y", "x"),
        coords={"time": np.array(times, dtype="datetime64[ns]"), "y": 5_000_000 - 10 * np.arange(60) - 5.0,
                "x": 700_000 + 10 * np.arange(80) + 5.0}, name="ndvi",
    )
    return arr.rio.write_crs(32633)


def test_append_adds_dates_and_resumes_an_interrupted_append(tmp_path):
    target = tmp_path / "series.zarr"
    first = _series(["2024-05-01", "2024-05-06", "2024-05-11"], seed=1)
    second = _series(["2024-05-16", "2024-05-21"], seed=2)
    geoproc.to_zarr(first, target, mode="a")  # creates
    assert meta_of(target, "ndvi")["chunk_grid"]["configuration"]["chunk_shape"] == [1, 32, 40]

    failed: list = []
    broken = _failing_after(second, 2, "interrupted", failed)
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="interrupted"):
        geoproc.to_zarr(broken, target, mode="a")
    status = output_status(target)  # counts this append's regions, not the first write's
    assert (status["write"], status["regions_done"], status["regions_total"]) == (2, 2, 4)
    with pytest.raises(OutputError, match=r"\(2 of 4 regions written\)"):
        geoproc.open_result(target)
    computed: list = []
    with dask.config.set(scheduler="synchronous"):
        geoproc.to_zarr(_counting(second, computed), target, mode="a")  # same dates again: resumes the append
    # 2 of the 4 new regions were written before the failure: the other 2 (the failed one among them) are computed
    assert len(computed) == 2 and failed[0] in computed
    status = output_status(target)
    assert (status["status"], status["write"], status["regions_done"], status["regions_total"]) == ("complete", 2, 4, 4)
    got = geoproc.open_result(target)
    np.testing.assert_array_equal(got.time.values, np.concatenate([first.time.values, second.time.values]))
    np.testing.assert_array_equal(got.ndvi.values, np.concatenate([first.values, second.values]))
    assert got.rio.crs.to_epsg() == 32633
    item = json.load(open(f"{target}.stac-item.json"))
    assert item["properties"]["start_datetime"] == "2024-05-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2024-05-21T00:00:00Z"
    with pytest.raises(OutputError, match="not after the store's last"):
        geoproc.to_zarr(_series(["2024-05-18"]), target, mode="a")
    # the whole series, chunked as written, resumed: nothing to compute, and the counts still add up
    series = xr.concat([first, second], "time").chunk({"time": (3, 2), "y": 32, "x": 40})
    computed.clear()
    with dask.config.set(scheduler="synchronous"):
        geoproc.to_zarr(_counting(series, computed), target, mode="resume")
    status = output_status(target)
    assert computed == [] and status["regions_done"] == status["regions_total"] == 8


def test_resume_chunked_otherwise_along_time_never_skips_a_partly_written_region(tmp_path):
    """Markers name a region's extent too: the dates 0..2 of a tile are not 'done' because date 0 of it is."""
    import shutil

    target = tmp_path / "series.zarr"
    full = _series(["2024-05-01", "2024-05-06", "2024-05-11"], seed=3)
    geoproc.to_zarr(full.chunk({"time": 1}), target)
    # the state a write interrupted after date 0 leaves: dates 1 and 2 neither stored nor marked, status 'writing'
    manifest_dir = f"{target}.geoproc"
    for t in (1, 2):
        shutil.rmtree(target / "ndvi" / "c" / str(t))
        for marker in (tmp_path / manifest_dir / "done" / "1" / "ndvi").glob(f"{t}+1_*"):
            marker.unlink()
    manifest = json.load(open(os.path.join(manifest_dir, "manifest.json")))
    json.dump({**manifest, "status": "writing"}, open(os.path.join(manifest_dir, "manifest.json"), "w"))
    assert output_status(target)["regions_done"] == 4  # date 0 of the 4 tiles
    computed: list = []
    with dask.config.set(scheduler="synchronous"):
        geoproc.to_zarr(_counting(full, computed), target, mode="resume")  # one region = all 3 dates of a tile
    assert len(computed) == 4
    np.testing.assert_array_equal(geoproc.open_result(target).ndvi.values, full.values)


def test_irregular_chunks_are_refused(tmp_path):
    arr = _result().chunk({"y": (20, 40), "x": 40})
    with pytest.raises(InvalidArgumentError, match="irregular chunks along 'y'"):
        geoproc.to_zarr(arr, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_shards_and_compression_level(tmp_path):
    arr = _result().chunk({"y": 40, "x": 40})
    path = geoproc.to_zarr(arr, tmp_path / "sharded.zarr", shard_inner_chunk=20, compression_level=9)
    meta = meta_of(path, "ndvi")
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [40, 40]  # the shard: one per compute chunk
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed" and sharding["configuration"]["chunk_shape"] == [20, 20]
    assert sharding["configuration"]["codecs"][-1] == {"name": "zstd", "configuration": {"level": 9, "checksum": False}}
    np.testing.assert_array_equal(geoproc.open_result(path).ndvi.values, arr.values)


def test_overwrite_refuses_what_is_not_a_zarr_store(tmp_path):
    precious = tmp_path / "my-data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(OutputError, match="not a Zarr store"):
        geoproc.to_zarr(_result(), precious, mode="w")
    assert (precious / "thesis.tex").exists()


def test_open_result_missing(tmp_path):
    with pytest.raises(OutputError, match="no Zarr store"):
        geoproc.open_result(tmp_path / "nope.zarr")


@pytest.mark.parametrize("dx, dy", [(10.0, 0.0), (0.0, -20.0), (-30.0, 10.0), (5.0, 0.0), (0.5, 0.0)])
def test_resume_and_append_refuse_a_shifted_grid_of_the_same_shape(tmp_path, dx, dy):
    """Same variables, shape, dtype, CRS and chunks, on a grid moved by whole (or half) pixels: another result, so
    resume and append refuse it before computing anything, and the stored values are untouched."""
    target = tmp_path / "out.zarr"
    geoproc.to_zarr(_result(), target)
    before = {p: p.read_bytes() for p in sorted((target / "ndvi").rglob("*")) if p.is_file()}
    moved = _result().assign_coords(x=_result().x + dx, y=_result().y + dy)
    assert moved.shape == _result().shape and moved.chunks == _result().chunks
    computed: list = []
    with pytest.raises(OutputError, match="transform"):
        geoproc.to_zarr(_counting(moved, computed), target, mode="resume")
    assert computed == [] and before == {p: p.read_bytes() for p in before}

    series = tmp_path / "series.zarr"
    geoproc.to_zarr(_series(["2024-05-01", "2024-05-06"]), series, mode="a")
    later = _series(["2024-05-11"])
    later = later.assign_coords(x=later.x + dx, y=later.y + dy)
    with pytest.raises(OutputError, match="transform"):
        geoproc.to_zarr(_counting(later, computed), series, mode="a")
    assert computed == [] and geoproc.open_result(series).sizes["time"] == 2
    # the same grid is accepted: the check is the offset, not something that refuses every resume
    geoproc.to_zarr(_result(), target, mode="resume")
    geoproc.to_zarr(_series(["2024-05-11"]), series, mode="a")
    assert geoproc.open_result(series).sizes["time"] == 3


def test_overwrite_leaves_nothing_of_the_old_store(tmp_path):
    """mode='w' deletes the old store's objects first: chunks the new result does not write (all NaN: Zarr skips
    them), a variable it does not have, the old regions' markers and STAC Item are gone."""
    target = tmp_path / "out.zarr"
    old = _result().rename("old")
    geoproc.to_zarr(xr.Dataset({"old": old, "ndvi": _result()}), target)
    assert (target / "old").is_dir() and len(list((target / "ndvi" / "c").rglob("*"))) > 0
    new = _result().copy(data=da.where(da.arange(80)[None, :] < 40, np.nan, _result().data))  # left chunks all NaN
    geoproc.to_zarr(new, target, mode="w")
    got = geoproc.open_result(target)
    assert list(got.data_vars) == ["ndvi"] and not (target / "old").exists()
    np.testing.assert_array_equal(got.ndvi.values, new.values)
    status = output_status(target)
    assert status["regions_done"] == status["regions_total"] == 4 and status["write"] == 1
    markers = list((tmp_path / "out.zarr.geoproc" / "done").rglob("*+*"))
    assert sorted(m.parent.name for m in markers) == ["ndvi"] * 4
    item = json.load(open(f"{target}.stac-item.json"))
    assert list(item["assets"]) == ["data"] and "old" not in json.dumps(item["properties"].get("cube:variables", {}))


def test_append_refuses_dates_that_are_not_later_and_data_without_time(tmp_path):
    series = tmp_path / "series.zarr"
    geoproc.to_zarr(_series(["2024-05-01", "2024-05-06", "2024-05-11"]), series, mode="a")
    computed: list = []
    with pytest.raises(OutputError, match="not after the store's last"):
        geoproc.to_zarr(_counting(_series(["2024-05-11", "2024-05-16"]), computed), series, mode="a")  # repeats the last
    assert computed == [] and geoproc.open_result(series).sizes["time"] == 3
    flat = tmp_path / "flat.zarr"
    geoproc.to_zarr(_result(), flat, mode="a")  # creates a store without time
    with pytest.raises(InvalidArgumentError, match="append needs a 'time' dimension"):
        geoproc.to_zarr(_result(), flat, mode="a")


def test_an_interrupted_first_append_resumes(tmp_path):
    """The store an append created and did not finish holds exactly the dates of the rerun: it resumes them."""
    target = tmp_path / "series.zarr"
    first = _series(["2024-05-01", "2024-05-06"], seed=4)
    failed: list = []
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="cut"):
        geoproc.to_zarr(_failing_after(first, 2, "cut", failed), target, mode="a")
    computed: list = []
    with dask.config.set(scheduler="synchronous"):
        geoproc.to_zarr(_counting(first, computed), target, mode="a")
    assert len(computed) == 2 and failed[0] in computed
    np.testing.assert_array_equal(geoproc.open_result(target).ndvi.values, first.values)
