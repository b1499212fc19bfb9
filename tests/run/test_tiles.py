"""Jobs written tile by tile (geoproc.run.write_tiled) against the same job written as one graph.

The job is the real one (load red/nir/SCL from the synthetic archive's GeoTIFFs, SCL mask, NDVI, median)
in 16 px chunks; tiles of 2 x 2 chunks make dozens of tiles, and a budget of 12 tasks keeps only a few
of them submitted at once. Equality is byte for byte (NaN where NaN).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import geoproc
from geoproc.errors import OutputError
from geoproc.io.zarr import output_status
from geoproc.run import write_tiled
from geoproc.run.tiles import recorded_failures

from . import tiled_job
from .tiled_job import MAX_TASKS, TILE, job

SCRIPT = str(Path(tiled_job.__file__))


def same_bytes(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), f"{name} differs"


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """The job written as one graph (geoproc.to_zarr), and the same per-date cube."""
    root = tmp_path_factory.mktemp("one-graph")
    geoproc.to_zarr(job(archive.catalog), root / "median.zarr")
    geoproc.to_zarr(job(archive.catalog, per_date=True), root / "cube.zarr")
    return {"median": geoproc.open_result(root / "median.zarr").load(),
            "cube": geoproc.open_result(root / "cube.zarr").load()}


def test_tiles_equal_one_graph_on_the_threaded_scheduler(archive, reference, tmp_path):
    result = job(archive.catalog)
    run = write_tiled(result, tmp_path / "tiles.zarr", tile=TILE, max_tasks=MAX_TASKS)
    assert run.tiles >= 16 and run.tiles_written == run.tiles and run.complete and not run.failed
    ny, nx = (len(c) for c in result.data.chunks)
    assert run.regions_written == ny * nx and run.pixels == result.size
    assert run.max_tasks_in_flight <= 2 * TILE * TILE + 3  # one tile's fused tasks and its tables of assets
    same_bytes(geoproc.open_result(tmp_path / "tiles.zarr"), reference["median"])
    # a rerun in resume mode finds every tile written and computes nothing
    again = write_tiled(result, tmp_path / "tiles.zarr", tile=TILE, mode="resume")
    assert again.tiles_skipped == run.tiles and again.regions_written == 0 and again.complete


def test_tiles_equal_one_graph_on_a_distributed_cluster_within_the_task_budget(archive, reference, tmp_path):
    from distributed import Client, LocalCluster

    result = job(archive.catalog, per_date=True)  # per-date chunks: (time, y, x) regions
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        run = write_tiled(result, tmp_path / "cube.zarr", tile=TILE, max_tasks=MAX_TASKS, client=client)
        # released futures leave the scheduler a moment later: nothing of the run may stay
        deadline = time.monotonic() + 30
        while (on_scheduler := client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
    assert run.tiles >= 16 and run.complete and not run.failed
    assert run.max_tasks_in_flight <= MAX_TASKS + 3 * result.data.numblocks[0] * TILE * TILE
    assert on_scheduler == 0, f"{on_scheduler} tasks of a finished run stay on the scheduler"
    same_bytes(geoproc.open_result(tmp_path / "cube.zarr"), reference["cube"])


def test_tiles_equal_one_graph_on_the_s3_store(archive, reference, s3_server):
    opts = s3_server.storage_options()
    url = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/tiles.zarr"
    run = write_tiled(job(archive.catalog), url, tile=TILE, max_tasks=MAX_TASKS, storage_options=opts)
    assert run.tiles >= 16 and run.complete
    same_bytes(geoproc.open_result(url, storage_options=opts).load(), reference["median"])


def test_a_sigkilled_tiled_run_resumes_at_the_missing_regions_and_ends_identical(archive, reference, tmp_path):
    url = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(SCRIPT).parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, SCRIPT, archive.catalog, str(url), "w-", "0.02"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.communicate()}")
            try:
                if output_status(url)["regions_done"] >= 10:
                    break
            except OutputError:  # no manifest yet
                pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = output_status(url)
    assert before["status"] == "writing" and 10 <= before["regions_done"] < before["regions_total"]
    run = write_tiled(job(archive.catalog), url, tile=TILE, max_tasks=MAX_TASKS, mode="resume")
    # tile-level resume: finished tiles are skipped whole; only regions without their marker are computed
    assert run.regions_written == before["regions_total"] - before["regions_done"]
    assert run.tiles_skipped >= 1 and run.complete
    same_bytes(geoproc.open_result(url), reference["median"])


def _broken_archive(archive, tmp_path) -> tuple[str, Path, Path]:
    """A copy of the archive with one asset file cut short (GDAL cannot read it, every time)."""
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    victim = sorted(root.rglob("B04.tif"))[0]
    good = tmp_path / "good-B04.tif"
    shutil.copy(victim, good)
    victim.write_bytes(victim.read_bytes()[:4096])
    return str(root / "catalog.json"), victim, good


def test_a_tile_that_keeps_failing_is_recorded_and_the_others_finish(archive, reference, tmp_path):
    catalog, victim, good = _broken_archive(archive, tmp_path)
    url = tmp_path / "partial.zarr"
    run = write_tiled(job(catalog), url, tile=TILE, max_tasks=MAX_TASKS, retries=1, on_failure="continue")
    assert run.failed and not run.complete
    assert run.tiles_written + len(run.failed) == run.tiles
    assert all(f.attempts == 2 for f in run.failed)  # the first try and one retry
    assert all("B04.tif" in f.error for f in run.failed), run.failed[0].error
    text = run.summary()
    assert f"{len(run.failed)} failed" in text and str(run.failed[0].tile) in text and "resume" in text
    recorded = recorded_failures(url)
    assert [tuple(f["tile"]) for f in recorded] == [f.tile for f in run.failed]
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(url)
    # the tiles that finished hold the one-graph values; the file repaired, a resume writes the rest
    status = output_status(url)
    assert status["regions_done"] == run.regions_written
    shutil.copy(good, victim)
    seen = []  # a resume in another tiling: the old tiles' failure records go once the store is complete
    again = write_tiled(job(catalog), url, tile=TILE + 1, max_tasks=MAX_TASKS, mode="resume",
                        progress=lambda run, done, total: seen.append((done, total)))
    assert again.regions_written == status["regions_total"] - status["regions_done"] and again.complete
    assert seen[-1] == (again.regions_written, again.regions_written)  # the callback gets the total
    assert recorded_failures(url) == []
    same_bytes(geoproc.open_result(url), reference["median"])


def test_on_failure_stop_stops_at_the_first_failed_tile_with_the_resume_hint(archive, tmp_path):
    catalog, _, _ = _broken_archive(archive, tmp_path)
    # the library's own error first (what failed, where), then the tile and the resume hint, in one line
    with pytest.raises(geoproc.errors.AssetReadError, match=r"B04.*\(tile \(\d+, \d+\), 1 attempts\).*mode='resume'") as info:
        write_tiled(job(catalog), tmp_path / "stopped.zarr", tile=TILE, retries=0, on_failure="stop")
    assert "\n" not in str(info.value)
    status = output_status(tmp_path / "stopped.zarr")
    assert status["status"] == "writing" and status["regions_done"] < status["regions_total"]


def test_bad_arguments_are_named(archive, tmp_path):
    result = job(archive.catalog)
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="on_failure"):
        write_tiled(result, tmp_path / "a.zarr", on_failure="ignore")
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="max_tasks"):
        write_tiled(result, tmp_path / "a.zarr", max_tasks=0)
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="outside the tiling"):
        write_tiled(result, tmp_path / "b.zarr", tile=TILE, only=[(999, 0)])


def test_the_default_tile_fits_the_task_budget_whatever_the_tasks_per_region(archive, tmp_path):
    """Per-date chunks reduced over time make several tasks per region: the default tile is measured,
    not guessed, so one tile's graph stays within a quarter of the budget."""
    ds = geoproc.load(geoproc.search(archive.catalog), ["red", "nir"], resolution=20,
                      chunks={"time": 2, "y": 16, "x": 16})
    result = geoproc.composite(geoproc.ndvi(ds), "median")
    run = write_tiled(result, tmp_path / "budget.zarr", max_tasks=200)
    assert run.complete and run.tiles > 1
    assert run.max_tasks_in_flight <= 200 // 4
