"""Pre-flight on real worker processes: ``dask scheduler`` + ``dask worker`` on 127.0.0.1.

Three workers: one healthy; one that runs as ``nobody`` (where the tests run as root) and so can neither read
the input files nor write beside the output (both live in pytest's private temporary folder), or, run as another
user, one whose GDAL skips the GeoTIFF driver; and one from a plain venv that has distributed but not geoproc.
Pre-flight must name both bad workers in one line, through the CLI too, and with ``exclude`` retire them and let
the job run on the healthy one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import geoproc
from geoproc.cli import main
from geoproc.run.preflight import PreflightError, preflight
from geoproc.workflow import JobSpec, run_job

from ..helpers import item_file
from .conftest import job_dict

DASK = str(Path(sys.executable).parent / "dask")
#: What the plain venv pins to the client's versions, so that geoproc (and its stack) is all it lacks.
PINNED = ("distributed", "dask", "cloudpickle", "msgpack", "tornado", "toolz", "psutil", "pyyaml")


def _plain_venv() -> Path:
    """A venv with distributed (same versions as here) and no geoproc, built once and kept under /tmp."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
    key = hashlib.sha1(" ".join([sys.version, *pins]).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"geoproc-test-plain-venv-{key}"
    if (root / "ready").exists():
        return root
    base = getattr(sys, "_base_executable", sys.executable)
    tmp = root.with_name(f"{root.name}-{os.getpid()}")  # venvs hold absolute paths: built beside where it lives
    try:
        subprocess.run([base, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=120)
        proc = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"cannot build a plain venv for the worker without geoproc: {exc}")
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"pip cannot install {' '.join(pins)} into a plain venv: {proc.stderr.strip()[-300:]}")
    (tmp / "ready").touch()
    try:
        tmp.rename(root)
    except OSError:  # another test process built it first: either copy works
        return tmp
    return root


def _runs(args: list[str], env: dict[str, str]) -> bool:
    try:
        return subprocess.run(args, env=env, capture_output=True, timeout=120, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class _Processes:
    """Processes started here, each in its own session, killed by process-group id at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (kept open by the child)
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env or dict(os.environ),
                                cwd=self.folder, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def workers(tmp_path_factory):
    """A scheduler and three workers (``good``, ``blind``, ``plain``); yields (scheduler address, processes)."""
    plain = _plain_venv()
    folder = tmp_path_factory.mktemp("preflight-cluster")
    os.chmod(folder, 0o755)  # the scheduler file and logs; nobody may read them
    procs = _Processes(folder)
    cleanup: list[Path] = []
    scheduler_file = folder / "scheduler.json"
    try:
        procs.start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                  "127.0.0.1:0", "--scheduler-file", str(scheduler_file)])
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, procs.log("scheduler")
            time.sleep(0.1)
        time.sleep(0.2)  # written in one go, but let the writer close it
        address = yaml.safe_load(scheduler_file.read_text())["address"]
        worker = ["worker", address, "--nthreads", "1", "--no-nanny", "--dashboard-address", "127.0.0.1:0",
                  "--host", "127.0.0.1"]
        procs.start("good", [DASK, *worker, "--name", "good", "--local-directory", str(folder / "good")])

        # outside pytest's private folder, which nobody cannot enter: its scratch space and numba cache
        blind_dir = Path(tempfile.mkdtemp(prefix="geoproc-test-blind-worker-"))
        cleanup.append(blind_dir)
        env = dict(os.environ, NUMBA_CACHE_DIR=str(blind_dir / "numba"), HOME=str(blind_dir))
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if os.geteuid() == 0:
            os.chown(blind_dir, 65534, 65534)
        if os.geteuid() == 0 and _runs([*as_nobody, sys.executable, "-c", "import distributed, geoproc"], env):
            blind = [*as_nobody, DASK]
        else:  # not root, or a checkout nobody cannot enter: a worker whose GDAL lacks the GeoTIFF driver
            env["GDAL_SKIP"] = "GTiff"
            blind = [DASK]
        procs.start("blind", [*blind, *worker, "--name", "blind", "--local-directory", str(blind_dir)], env=env)
        procs.start("plain", [str(plain / "bin" / "python"), "-m", "dask", *worker, "--name", "plain",
                              "--local-directory", str(folder / "plain")])
        yield address, procs, blind[0] == "setpriv"
    finally:
        procs.stop()
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _names(client) -> dict[str, str]:
    return {info["name"]: addr for addr, info in client.scheduler_info(n_workers=-1)["workers"].items()}


def test_preflight_names_the_workers_that_cannot_run_the_job_then_excludes_them(workers, archive, tmp_path, capsys):
    from distributed import Client

    address, procs, blind_is_nobody = workers
    href = item_file(archive, archive.item_ids[0], "B04.tif")
    out = tmp_path / "out.zarr"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_dict(archive, out, cluster=address)))
    with Client(address, timeout="30s", set_as_default=False) as client:
        client.wait_for_workers(3, timeout=60)
        names = _names(client)
        assert sorted(names) == ["blind", "good", "plain"]

        # the CLI run path: one line naming both bad workers, exit 2, nothing computed
        assert main(["run", str(job), "--no-progress"]) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("geoproc: error: pre-flight: worker "), err
        line = lines[0]
        assert f"worker {names['plain']} (plain) lacks geoproc" in line
        assert f"worker {names['blind']} (blind) cannot open the input asset" in line
        assert names["good"] not in line
        assert "--preflight exclude" in line
        if blind_is_nobody:
            assert "Permission denied" in line
            assert f"worker {names['blind']} (blind) cannot write to the output location {out}" in line
        assert not list(out.glob("ndvi_median/c/*")), "pre-flight let the job compute"

        # the same in Python, then with exclude: the two are retired and reported
        with pytest.raises(PreflightError, match="lacks geoproc"):
            preflight(client, input_href=href, output=str(out))
        report = preflight(client, input_href=href, output=str(out), exclude=True)
        assert sorted(report.excluded) == sorted([names["blind"], names["plain"]])
        assert {p.check for p in report.problems} >= {"versions", "input"}
        assert report.summary().startswith("pre-flight: retired 2 of 3 workers: ")
        deadline = time.monotonic() + 30
        while len(client.scheduler_info(n_workers=-1)["workers"]) > 1:
            assert time.monotonic() < deadline, "the bad workers were not retired"
            time.sleep(0.1)
        assert _names(client) == {"good": names["good"]}
        assert preflight(client, input_href=href, output=str(out)).ok

    # the job now runs on the healthy worker, checked again, and its output is the LocalCluster's
    lines_seen: list[str] = []
    run_job(JobSpec.from_dict(job_dict(archive, out, overwrite=True)), cluster=address, progress=False, log=lines_seen.append)
    assert "pre-flight: 1 workers ready" in lines_seen
    assert not list(tmp_path.glob(".geoproc-probe-*")) and not list(out.glob(".geoproc-probe-*"))
    result = geoproc.open_result(out)["ndvi_median"].values
    assert np.isfinite(result).any()
    assert "lacks" not in procs.log("good")


def test_preflight_probes_an_s3_output_and_names_refused_credentials(s3_server):
    """The write check on object storage: a probe object is written and deleted where the output goes, and a
    worker whose credentials are refused is named without the secret appearing in the message."""
    import obstore
    from distributed import Client, LocalCluster

    from geoproc.io.storage import object_store, parse_location, s3_options

    out = f"s3://{s3_server.bucket}/preflight/out.zarr"
    good = s3_server.storage_options()
    wrong = s3_server.storage_options(secret_access_key="not-the-secret-0123456789")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster, Client(cluster) as client:
        (worker,) = client.scheduler_info(n_workers=-1)["workers"]
        assert preflight(client, output=out, storage_options=good).ok
        store = object_store(parse_location(f"s3://{s3_server.bucket}/x"), s3_options(good), prefix="")
        assert [o["path"] for batch in obstore.list(store, prefix="preflight") for o in batch] == []
        with pytest.raises(PreflightError) as info:
            preflight(client, output=out, storage_options=wrong)
    text = str(info.value)
    assert text.startswith(f"pre-flight: worker {worker}") and f"cannot write to the output location {out}" in text
    assert "not-the-secret" not in text and "\n" not in text
