"""Memory the plan predicts: a job whose region task cannot fit the workers' memory limit is refused before
compute with a chunk size that fits, and a task that really exceeds its worker's limit ends in one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import geoproc
from geoproc.cli import main
from geoproc.planning import IDLE_WORKER_BYTES, check_task_memory, task_memory
from geoproc.run import write_tiled
from geoproc.run.watch import WorkersKilledError

from .conftest import job_dict

DASK = str(Path(sys.executable).parent / "dask")


@contextlib.contextmanager
def _one_worker(tmp_path, worker_args: list[str], scheduler_env: dict | None = None, worker_env: dict | None = None):
    """A ``dask scheduler`` and one ``dask worker`` (``worker_args``) on 127.0.0.1, SIGKILLed at the end; yields
    the scheduler's address."""
    procs = []
    try:
        file = tmp_path / "scheduler.json"
        procs.append(subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                       "127.0.0.1:0", "--scheduler-file", str(file)], env=scheduler_env, cwd=tmp_path,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip().endswith("}"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        address = yaml.safe_load(file.read_text())["address"]
        procs.append(subprocess.Popen([DASK, "worker", address, *worker_args, "--host", "127.0.0.1", "--dashboard-address",
                                       "127.0.0.1:0", "--local-directory", str(tmp_path / "w")], env=worker_env,
                                      cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        yield address
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


def test_plan_states_the_task_peak_and_run_refuses_a_task_that_cannot_fit(archive, tmp_path, capsys):
    items = geoproc.search(archive.catalog)
    plan = geoproc.plan(items, ["red", "nir", "scl"], resolution=1, chunks=4096)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=1, chunks=4096)
    # float32 red and nir, uint8 SCL: 9 B per pixel per date, twice that at the peak (benchmarks/task_memory.py)
    assert plan.task_bytes == 5 * 2745 * 4096 * 9 == task_memory(ds) // 2 == plan.peak_task_bytes // 2
    # refused where idle worker + task exceed 95% of the limit, with a chunk size that fits under 80%
    gib = 2**30
    with pytest.raises(geoproc.errors.InvalidArgumentError, match=r"needs about 965\.0 MiB \(2745 x 4096 px chunks\)") as info:
        check_task_memory(ds, gib)
    side = int(str(info.value).split("chunks=")[1].split(" ")[0])
    small = geoproc.load(items, ["red", "nir", "scl"], resolution=1, chunks=side)
    assert IDLE_WORKER_BYTES + check_task_memory(small, gib) <= 0.8 * gib < IDLE_WORKER_BYTES + task_memory(
        geoproc.load(items, ["red", "nir", "scl"], resolution=1, chunks=side + 64))
    assert check_task_memory(ds, 4 * gib) == task_memory(ds)

    # through the CLI on a LocalCluster of 1 GiB workers: one line, exit 2, nothing computed
    out = tmp_path / "big.zarr"
    job = tmp_path / "job.yaml"
    spec = job_dict(archive, out, cluster="local?workers=1&memory_limit=1GiB")
    spec["load"].update(resolution=1, chunks=4096)
    job.write_text(yaml.safe_dump(spec))
    assert main(["run", str(job), "--no-progress", "--preflight", "off"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoproc: error: a region task needs about 965.0 MiB"), lines
    assert f"load with chunks={side}" in lines[0] and "1.0 GiB" in lines[0]
    assert not list(out.glob("ndvi_median/c/*"))


def test_a_task_that_exceeds_its_workers_memory_limit_ends_in_one_line(archive, tmp_path):
    from distributed import Client

    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")  # KilledWorker at the first death
    # with its nanny, which kills it past 95% of 700 MiB: an idle worker holds about 400 MiB
    with _one_worker(tmp_path, ["--nthreads", "1", "--memory-limit", "700MiB"], env, env) as address:
        items = geoproc.search(archive.catalog)
        ds = geoproc.load(items, ["red", "nir", "scl"], resolution=1, chunks=2560)
        result = geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds))
        with Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            with pytest.raises(WorkersKilledError) as info:
                write_tiled(result, tmp_path / "oom.zarr", tile=1, client=client, on_failure="stop",
                            task_bytes=task_memory(ds))
    text = str(info.value)
    assert "\n" not in text
    assert "died on every attempt" in text and "ran out of memory" in text and "smaller chunks" in text
    assert "more memory" in text and "--resume" in text and "workers have 700 MiB" in text


def test_workers_paused_at_their_memory_limit_are_said_with_their_memory_then_the_run_stops(archive, tmp_path):
    from distributed import Client

    from geoproc.run.watch import ClusterStalledError, Watch

    # a pause threshold of 1% of 1 GiB: the worker pauses as soon as it starts, as one full of data would
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE="0.01", DASK_DISTRIBUTED__WORKER__MEMORY__TARGET="False",
               DASK_DISTRIBUTED__WORKER__MEMORY__SPILL="False")
    said: list[str] = []
    with _one_worker(tmp_path, ["--nthreads", "1", "--no-nanny", "--memory-limit", "1GiB", "--name", "full"],
                     worker_env=env) as address:
        items = geoproc.search(archive.catalog)
        ndvi = geoproc.ndvi(geoproc.load(items, ["red", "nir"], resolution=20, chunks=64))
        with Client(address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            began = time.monotonic()
            with pytest.raises(ClusterStalledError) as info:
                write_tiled(ndvi, tmp_path / "paused.zarr", client=client,
                            watch=Watch(client, warn=1, stop=4, log=said.append))
            waited = time.monotonic() - began
    assert len(said) == 1 and said[0].startswith("geoproc: all 1 workers are paused at their memory limit (full "), said
    assert "MiB of 1,024 MiB) for 1 s; waiting up to 4 s" in said[0]
    text = str(info.value)
    assert text.startswith("all 1 workers are paused at their memory limit (full ") and "--resume" in text
    assert "\n" not in text and 4 <= waited < 20
    assert not list((tmp_path / "paused.zarr").glob("NDVI/c/*")), "a paused worker computed"
