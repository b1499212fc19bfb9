"""Zarr on a real S3-compatible store (SeaweedFS ``weed mini``): writes, reads, credentials and faults.

Every test uses its own prefix in the session's bucket. The store runs with an identities file, so the tests
can prove that a wrong secret and anonymous requests are refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dask
import numpy as np
import obstore
import pytest
import xarray as xr
from obstore.store import S3Store

import geoproc
from geoproc.errors import OutputError
from geoproc.io.storage import gdal_env, s3_options
from geoproc.io.zarr import output_status

from . import s3_writer

WRITER = str(Path(s3_writer.__file__))


@pytest.fixture
def url(s3_server):
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/ndvi.zarr"


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    """The standard AWS variables pointing at the test store (as a user's job would have them)."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.env()


def _bucket(server) -> S3Store:
    return S3Store(
        server.bucket, endpoint=server.endpoint, access_key_id=server.access_key,
        secret_access_key=server.secret_key, region="us-east-1", client_options={"allow_http": True},
    )


def _objects(server, prefix: str) -> dict[str, bytes]:
    store = _bucket(server)
    keys = [e["path"] for page in obstore.list(store, prefix) for e in page]
    return {k: bytes(obstore.get(store, k).bytes()) for k in keys}


def _counting(arr, log):
    def count(block, block_info=None):
        if block_info is not None and block.size:
            log.append(tuple(block_info[0]["chunk-location"]))
        return block

    return arr.copy(data=arr.data.map_blocks(count, dtype=arr.dtype))


def test_round_trip_metadata_and_no_credentials_written(s3_server, url):
    opts = s3_server.storage_options()
    arr = s3_writer.result()
    assert geoproc.to_zarr(arr, url, storage_options=opts, attrs={"input_items": ["a"]}) == url
    got = geoproc.open_result(url, storage_options=opts)
    np.testing.assert_array_equal(got.ndvi.values, arr.values)
    assert got.rio.crs.to_epsg() == 32633
    assert tuple(got.rio.transform())[:6] == (10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0)
    assert got.ndvi.encoding["chunks"] == (24, 24)
    status = output_status(url, storage_options=opts)
    assert status["status"] == "complete" and status["regions_done"] == status["regions_total"] == 24
    # consolidated metadata: the root zarr.json lists the arrays, so opening needs no listing
    prefix = url.split("/", 3)[3]
    written = _objects(s3_server, prefix.rsplit("/", 1)[0])
    root = json.loads(written[f"{prefix}/zarr.json"])
    assert "ndvi" in root["consolidated_metadata"]["metadata"]
    item = json.loads(written[f"{prefix}.stac-item.json"])
    assert item["assets"]["data"]["href"] == url and item["properties"]["proj:code"] == "EPSG:32633"
    # nothing written anywhere holds the credentials
    for key, body in written.items():
        assert s3_server.secret_key.encode() not in body and s3_server.access_key.encode() not in body, key


def test_credentials_from_the_aws_environment(aws_env, url):
    geoproc.to_zarr(s3_writer.result(), url)
    np.testing.assert_array_equal(geoproc.open_result(url).ndvi.values, s3_writer.result().values)


def test_bad_credentials_and_missing_bucket_fail_before_compute(s3_server, url):
    computed: list = []
    arr = _counting(s3_writer.result(), computed)
    wrong = s3_server.storage_options(secret_access_key="not-the-secret", retry_timeout=5)
    with pytest.raises(OutputError, match="refused the credentials") as info:
        geoproc.to_zarr(arr, url, storage_options=wrong)
    assert "not-the-secret" not in str(info.value) and s3_server.access_key not in str(info.value)
    anonymous = {"endpoint_url": s3_server.endpoint, "anonymous": True, "retry_timeout": 5}
    with pytest.raises(OutputError, match="refused the credentials"):
        geoproc.to_zarr(arr, url, storage_options=anonymous)
    with pytest.raises(OutputError, match="bucket 'no-such-bucket' .* does not exist"):
        geoproc.to_zarr(arr, "s3://no-such-bucket/x.zarr", storage_options=s3_server.storage_options())
    assert computed == []
    # and the store itself refuses them (not only our checks): anonymous reads of a written store fail too
    geoproc.to_zarr(s3_writer.result(), url, storage_options=s3_server.storage_options())
    with pytest.raises(OutputError, match="refused the credentials"):
        geoproc.open_result(url, storage_options=anonymous)


def test_existing_store_of_another_shape_is_refused_before_compute(s3_server, url):
    opts = s3_server.storage_options()
    geoproc.to_zarr(s3_writer.result(), url, storage_options=opts)
    computed: list = []
    with pytest.raises(OutputError, match="already exists"):
        geoproc.to_zarr(_counting(s3_writer.result(), computed), url, storage_options=opts)
    with pytest.raises(OutputError, match="shape"):
        geoproc.to_zarr(_counting(s3_writer.result()[:48], computed), url, storage_options=opts, mode="resume")
    assert computed == []
    geoproc.to_zarr(s3_writer.result()[:48], url, storage_options=opts, mode="w")
    assert geoproc.open_result(url, storage_options=opts).sizes["y"] == 48


def _run_writer(env, url, mode, log, sleep):
    return subprocess.Popen(
        [sys.executable, WRITER, url, mode, str(log), str(sleep)], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_regions(url, opts, n, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if output_status(url, storage_options=opts)["regions_done"] >= n:
                return
        except OutputError:
            pass  # the manifest is not there yet
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail(f"fewer than {n} regions written in {timeout} s")


def test_sigkilled_write_resumes_and_equals_an_uninterrupted_run(s3_server, aws_env, url, tmp_path):
    opts = s3_server.storage_options()
    log1, log2 = tmp_path / "first.log", tmp_path / "second.log"
    proc = _run_writer(aws_env, url, "w-", log1, sleep=0.15)
    _wait_regions(url, opts, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = output_status(url, storage_options=opts)
    assert before["status"] == "writing" and 8 <= before["regions_done"] < 24
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(url, storage_options=opts)
    proc = _run_writer(aws_env, url, "resume", log2, sleep=0.0)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    recomputed = log2.read_text().split()
    assert len(recomputed) == 24 - before["regions_done"], "only the regions not written may be computed again"
    np.testing.assert_array_equal(geoproc.open_result(url, storage_options=opts).ndvi.values, s3_writer.result().values)


def _write_in_background(url, opts, log: Path, blocks: int):
    """Start the slow write in a thread; return once ``blocks`` blocks are computed. Errors go to the list."""
    errors: list = []

    def write():
        try:
            with dask.config.set(scheduler="threads", num_workers=2):
                geoproc.to_zarr(s3_writer.result(str(log), sleep=0.1), url, storage_options=opts)
        except BaseException as exc:  # reported by the caller's assertions
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    deadline = time.monotonic() + 30
    while not (log.exists() and len(log.read_text().split()) >= blocks) and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread, errors


def test_write_survives_the_store_going_down_for_a_few_seconds(s3_server, url, tmp_path):
    opts = s3_server.storage_options(retry_timeout=60)
    thread, errors = _write_in_background(url, opts, tmp_path / "blocks.log", blocks=4)
    s3_server.stop()
    time.sleep(3)
    s3_server.start()
    thread.join(120)
    assert not thread.is_alive() and errors == []
    assert output_status(url, storage_options=opts)["status"] == "complete"
    np.testing.assert_array_equal(geoproc.open_result(url, storage_options=opts).ndvi.values, s3_writer.result().values)


def test_store_that_stays_down_gives_a_clear_error_and_keeps_the_manifest(s3_server, url, tmp_path):
    opts = s3_server.storage_options(retry_timeout=2, connect_timeout=1)
    thread, errors = _write_in_background(url, opts, tmp_path / "blocks.log", blocks=6)
    s3_server.stop()
    try:
        thread.join(120)
        assert len(errors) == 1 and isinstance(errors[0], OutputError), errors
        message = str(errors[0])
        assert url in message and "mode='resume'" in message and s3_server.secret_key not in message
    finally:
        s3_server.start()
    status = output_status(url, storage_options=opts)
    assert status["status"] == "writing" and status["regions_done"] >= 2
    geoproc.to_zarr(s3_writer.result(), url, storage_options=opts, mode="resume")
    np.testing.assert_array_equal(geoproc.open_result(url, storage_options=opts).ndvi.values, s3_writer.result().values)


def _upload_tree(server, root: Path, prefix: str) -> None:
    store = _bucket(server)
    for path in root.rglob("*"):
        if path.is_file():
            obstore.put(store, f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())


def test_static_catalog_and_cogs_on_s3_read_with_the_same_settings(s3_server, aws_env, archive, monkeypatch):
    """search() walks a catalog on s3://, and load() reads its COGs through GDAL's /vsis3/.

    Only the standard AWS variables are set: GDAL's endpoint settings are derived from AWS_ENDPOINT_URL.
    """
    for gdal_only in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(gdal_only)
    prefix = f"archive-{uuid.uuid4().hex[:6]}"
    _upload_tree(s3_server, Path(archive.root), prefix)
    remote = geoproc.search(f"s3://{s3_server.bucket}/{prefix}/catalog.json", datetime="2024-05-01/2024-05-12")
    local = geoproc.search(archive.catalog, datetime="2024-05-01/2024-05-12")
    assert sorted(i.id for i in remote) == sorted(i.id for i in local) and len(local) > 0
    assert all(i.assets["B04"].get_absolute_href().startswith("s3://") for i in remote)
    args = dict(bands=["red", "scl"], resolution=20, chunks=128)
    got = geoproc.load(remote, **args).compute()
    want = geoproc.load(local, **args).compute()
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    # with explicit settings instead of the environment: the same connection for GDAL as for the writer
    env = gdal_env(s3_options(s3_server.storage_options()))
    assert env["AWS_S3_ENDPOINT"] == f"127.0.0.1:{s3_server.port}" and env["AWS_HTTPS"] == "NO"


def test_cli_job_writes_to_s3_from_a_two_process_cluster(s3_server, aws_env, archive, tmp_path):
    """The job, run by the CLI on its LocalCluster (2 worker processes), writes to S3; --resume then has nothing to do."""
    import yaml

    url = f"s3://{s3_server.bucket}/cli-{uuid.uuid4().hex[:6]}/ndvi.zarr"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "catalog": archive.catalog, "output": url, "search": {"datetime": "2024-05-01/2024-05-31"},
        "load": {"bands": ["red", "nir", "scl"], "resolution": 20, "chunks": 128, "crs": 32633},
    }))
    cmd = [sys.executable, "-m", "geoproc.cli", "run", str(job)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **aws_env})
    assert done.returncode == 0, done.stderr
    got = geoproc.open_result(url)
    ds = geoproc.load(geoproc.search(archive.catalog, datetime="2024-05-01/2024-05-31"), ["red", "nir", "scl"],
                      resolution=20, chunks=128, crs=32633)
    want = geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds))
    np.testing.assert_array_equal(got["ndvi_median"].values, want.values)
    assert s3_server.secret_key not in done.stdout + done.stderr
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, env={**os.environ, **aws_env})
    assert again.returncode == 0, again.stderr
