"""Losing workers and the scheduler mid-job, on real ``dask scheduler`` + ``dask worker`` processes on 127.0.0.1.

The job is the tiled runner's (load red/nir/SCL, SCL mask, NDVI, median: ``tests/run/tiled_job.py``) in 32 px chunks
(60 regions), each asset read slowed down so that a job lasts long enough to kill processes in the middle of it.
Every scenario ends with the output byte for byte equal to the same job written as one graph, and the run log
(one record per run of a region task, written by the task itself) showing no region written twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pytest
import yaml

import geoproc
from geoproc.cli import main
from geoproc.errors import OutputError
from geoproc.io.zarr import output_status
from geoproc.run import write_tiled
from geoproc.run.watch import ClusterStalledError, SchedulerLostError, recomputed, run_log

from ..run.tiled_job import SlowReader
from .conftest import job_dict

DASK = str(Path(sys.executable).parent / "dask")
ROOT = str(Path(__file__).parents[2])
CHUNK, SLEEP = 32, 0.003


def job(catalog: str, sleep: float = SLEEP):
    items = geoproc.search(catalog)
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=CHUNK,
                      reader=SlowReader(sleep) if sleep else None, read_concurrency=1)
    return geoproc.composite(geoproc.ndvi(ds).where(~geoproc.cloud_mask(ds)), "median")


class Cluster:
    """A scheduler and workers, each its own process group, killed by id."""

    def __init__(self, folder: Path):
        self.folder, self.workers, self.scheduler, self.address, self.n = folder, [], None, None, 0

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        with open(self.folder / f"{name}.log", "wb") as log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
                                    start_new_session=True)

    def start_scheduler(self) -> str:
        file = self.folder / f"scheduler-{self.n}.json"
        self.scheduler = self._start(f"scheduler-{self.n}", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                                             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(file)])
        self.n += 1
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip().endswith("}"):
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        self.address = yaml.safe_load(file.read_text())["address"]
        return self.address

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            self.n += 1
            self.workers.append(self._start(f"worker-{self.n}", [
                DASK, "worker", self.address, "--nthreads", "1", "--no-nanny", "--name", f"w{self.n}", "--host",
                "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--local-directory", str(self.folder / f"w{self.n}")]))

    def kill(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def kill_workers(self, n: int | None = None) -> None:
        for proc in self.workers[: n or len(self.workers)]:
            self.kill(proc)
        self.workers = self.workers[n or len(self.workers):]

    def stop(self) -> None:
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            self.kill(proc)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    c.start_scheduler()
    c.start_workers(3)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    url = tmp_path_factory.mktemp("clean") / "median.zarr"
    geoproc.to_zarr(job(archive.catalog, sleep=0), url)
    return geoproc.open_result(url).load()


def same_bytes(url, reference) -> None:
    out = geoproc.open_result(url).load()
    for name in reference.data_vars:
        assert out[name].values.tobytes() == reference[name].values.tobytes(), f"{name} differs"


class Run:
    """``write_tiled`` of the job in a thread, with its own client; ``outcome`` is the run or the error."""

    def __init__(self, catalog: str, address: str, url: Path, mode: str = "w-"):
        self.url, self.outcome = url, None
        self.thread = threading.Thread(target=self._run, args=(catalog, address, mode), daemon=True)
        self.thread.start()

    def _run(self, catalog, address, mode):
        from distributed import Client

        try:
            with Client(address, timeout="30s", set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
                self.outcome = write_tiled(job(catalog), self.url, tile=2, max_tasks=24, mode=mode, client=client)
        except Exception as exc:
            self.outcome = exc

    def until(self, regions: int) -> int:
        """Wait until ``regions`` regions are written; returns how many are."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.thread.is_alive(), f"the run ended before it could be disrupted: {self.outcome}"
            with contextlib.suppress(OutputError):
                done = output_status(self.url)["regions_done"]
                if done >= regions:
                    return done
            time.sleep(0.05)
        pytest.fail("the run did not progress")

    def result(self, timeout: float = 120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run hangs"
        return self.outcome


def _no_region_twice(url, killed: int = 0) -> list[dict]:
    """No region computed twice; every region's write logged, but for at most one per SIGKILLed worker thread: a
    region's record goes to the log just after its marker, so a kill between the two leaves the region written
    (and never computed again) and the log short of it."""
    log = run_log(url)
    assert recomputed(log) == 0, [r for r in log if r["status"] == "written"]
    written = {r["region"] for r in log if r["status"] == "written"}
    total = output_status(url)["regions_total"]
    assert total - killed <= len(written) <= total, (len(written), total, killed)
    return log


def test_one_worker_killed_then_all_killed_and_replaced(cluster, archive, reference, tmp_path):
    # one of three SIGKILLed mid-job: the others finish it
    run = Run(archive.catalog, cluster.address, tmp_path / "one.zarr")
    run.until(12)
    cluster.kill_workers(1)
    assert run.result().complete
    same_bytes(tmp_path / "one.zarr", reference)
    log = _no_region_twice(tmp_path / "one.zarr", killed=1)
    # the work was spread over the cluster (under load a worker may not have finished a region before the kill)
    assert len({r["worker"] for r in log}) >= 2

    # all SIGKILLed, three new ones started 2 s later: the written regions are not computed again
    run = Run(archive.catalog, cluster.address, tmp_path / "all.zarr")
    run.until(20)
    cluster.kill_workers()
    time.sleep(2)
    cluster.start_workers(3)
    assert run.result().complete
    same_bytes(tmp_path / "all.zarr", reference)
    _no_region_twice(tmp_path / "all.zarr", killed=3)


def test_workers_that_never_come_back_then_resume(cluster, archive, reference, tmp_path):
    url = tmp_path / "gone.zarr"
    with dask.config.set({"geoproc.stall.warn": 1, "geoproc.stall.stop": 3}):
        run = Run(archive.catalog, cluster.address, url)
        run.until(12)
        cluster.kill_workers()
        error = run.result()
    assert isinstance(error, ClusterStalledError), error
    assert str(error).startswith("no Dask worker is connected for ") and "--resume" in str(error)
    assert "\n" not in str(error)
    cluster.start_workers(3)
    assert Run(archive.catalog, cluster.address, url, mode="resume").result().complete
    same_bytes(url, reference)
    _no_region_twice(url, killed=3)


def test_scheduler_killed_then_resume(cluster, archive, reference, tmp_path):
    url = tmp_path / "lost.zarr"
    with dask.config.set({"geoproc.stall.warn": 1, "geoproc.stall.stop": 3}):
        run = Run(archive.catalog, cluster.address, url)
        run.until(12)
        cluster.kill(cluster.scheduler)
        error = run.result()
    assert isinstance(error, SchedulerLostError), error
    assert str(error).startswith(f"lost the connection to the Dask scheduler at {cluster.address}")
    assert "--resume" in str(error) and "\n" not in str(error)
    cluster.kill_workers()
    cluster.start_scheduler()
    cluster.start_workers(3)
    assert Run(archive.catalog, cluster.address, url, mode="resume").result().complete
    same_bytes(url, reference)
    _no_region_twice(url, killed=3)


def test_the_cli_says_when_no_worker_is_there_and_stops_with_the_resume_hint(cluster, archive, tmp_path, capsys):
    cluster.kill_workers()
    from distributed import Client

    with Client(cluster.address, timeout="30s", set_as_default=False) as client:  # the scheduler saw them go
        deadline = time.monotonic() + 30
        while client.scheduler_info(n_workers=-1)["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job_dict(archive, tmp_path / "out.zarr", cluster=cluster.address)))
    with dask.config.set({"geoproc.stall.warn": 1, "geoproc.stall.stop": 3}):
        assert main(["run", str(spec), "--no-progress", "--preflight", "off"]) == 2
    out, err = capsys.readouterr()
    assert "geoproc: no Dask worker is connected for " in out, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoproc: error: no Dask worker is connected for "), err
    assert "--resume" in lines[0]
