"""A geoproc job through a real, password-protected Dask Gateway (TLS between client and scheduler)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import yaml

import geoproc
from geoproc.cli import main
from geoproc.run.cluster import close_gateway
from geoproc.workflow import JobSpec, run_job

from .conftest import job_dict

pytest.importorskip("dask_gateway", reason="dask-gateway (the client) is not installed: pip install 'geoproc[gateway]'")


def _workers(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_wrong_password_is_one_line_and_no_credential_is_logged(gateway, archive, tmp_path, monkeypatch, capsys):
    wrong = "wrong-" + gateway.password[::-1]
    monkeypatch.setenv("GEOPROC_GATEWAY_USER", "geoproc-test")
    monkeypatch.setenv("GEOPROC_GATEWAY_PASSWORD", wrong)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_dict(archive, tmp_path / "out.zarr", cluster=f"gateway:{gateway.address}?auth=basic")))
    assert main(["run", str(job), "--no-progress"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0] == (
        f"geoproc: error: the Dask Gateway at {gateway.address} refused the credentials of user 'geoproc-test' "
        "(HTTP 401); set GEOPROC_GATEWAY_USER / GEOPROC_GATEWAY_PASSWORD (auth=basic) or the dask config's gateway.auth"
    )
    assert wrong not in err and gateway.password not in err
    logs = gateway.logs()
    assert "401 GET /api/v1/options" in logs  # the refusal is the server's
    assert wrong not in logs and gateway.password not in logs


def test_a_job_through_the_gateway_scales_1_3_1_and_equals_a_local_run(gateway, archive, tmp_path, monkeypatch):
    """run_job on a Gateway cluster of 1 worker; while the job runs, the cluster is scaled to 3 workers and, once the
    job computes, back to 1 (through the Gateway's API, as an operator or adaptive scaling would), results held by
    the retired workers handed over. The output equals a LocalCluster run's bit for bit, and no credential appears
    in the server's, scheduler's or workers' logs."""
    from dask_gateway import BasicAuth, Gateway

    monkeypatch.setenv("GEOPROC_GATEWAY_USER", "geoproc-test")
    monkeypatch.setenv("GEOPROC_GATEWAY_PASSWORD", gateway.password)
    # 32 px chunks: 220 chunks of output, several seconds of work for one worker
    small_chunks = {"bands": ["red", "nir", "scl"], "resolution": 10, "chunks": 32}
    local = run_job(JobSpec.from_dict(job_dict(archive, tmp_path / "local.zarr", load=small_chunks)), cluster="local",
                    n_workers=1, progress=False, log=lambda line: None)

    lines: list[str] = []
    results, failures, finished = [], [], []
    spec = JobSpec.from_dict(job_dict(archive, tmp_path / "gateway.zarr", load=small_chunks,
                                      cluster=f"gateway:{gateway.address}?auth=basic&workers=1"))

    def run():
        try:
            results.append(run_job(spec, progress=False, log=lines.append))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finished.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    seen = []
    operator = Gateway(gateway.address, auth=BasicAuth("geoproc-test", gateway.password))
    try:
        # join the job's cluster as soon as it exists; grow it while the job checks its workers and starts
        # computing, shrink it once the job computes (growing takes seconds of process start-up, shrinking does not)
        (report,) = _wait(lambda: operator.list_clusters() or failures, 60, "the job's cluster")
        assert not failures, failures
        cluster = operator.connect(report.name)
        client = cluster.get_client(set_as_default=False)
        try:
            seen.append((_wait(lambda: _workers(client), 60, "a first worker"), thread.is_alive()))
            operator.scale_cluster(report.name, 3)
            seen.append((_wait(lambda: _workers(client) == 3 and 3, 60, "3 workers"), thread.is_alive()))
            _wait(lambda: any(line.startswith("computing") for line in lines) or failures, 60, "the job to compute")
            assert not failures, failures
            shrinking = time.monotonic()
            operator.scale_cluster(report.name, 1)
            seen.append((_wait(lambda: _workers(client) == 1 and 1, 60, "1 worker"), thread.is_alive()))
            back_to_one = time.monotonic()
            logs = gateway.logs()  # the cluster's logs are deleted with it
        finally:
            client.close()
            cluster.close()
            close_gateway(cluster.gateway)
    finally:
        close_gateway(operator)
    thread.join(120)
    assert not failures, failures
    assert seen == [(1, True), (3, True), (1, True)], f"worker counts (and whether the job still ran): {seen}"
    assert any(line.startswith("pre-flight: ") and line.endswith(" workers ready") for line in lines), lines
    assert "Start worker" in logs and "Scheduler at:" in logs  # the logs read are the cluster's
    assert gateway.password not in logs

    ours = geoproc.open_result(tmp_path / "gateway.zarr")["ndvi_median"].values
    theirs = geoproc.open_result(tmp_path / "local.zarr")["ndvi_median"].values
    assert np.isfinite(theirs).any()
    np.testing.assert_array_equal(ours, theirs)
    print(f"\njob seconds: LocalCluster (1 worker) {local.seconds:.1f}, Dask Gateway (1 -> 3 -> 1 workers) "
          f"{results[0].seconds:.1f}; back to 1 worker {back_to_one - shrinking:.1f} s after asking, "
          f"{finished[0] - back_to_one:.1f} s before the job's end")


def test_an_adaptive_gateway_cluster_is_owned_and_shut_down_once(gateway, monkeypatch):
    """min/max make the Gateway scale the cluster itself (its minimum is started without any work); closing the
    connection shuts the cluster it created down, and closing again does nothing."""
    from dask_gateway import BasicAuth, Gateway

    from geoproc.run.cluster import connect

    monkeypatch.setenv("GEOPROC_GATEWAY_USER", "geoproc-test")
    monkeypatch.setenv("GEOPROC_GATEWAY_PASSWORD", gateway.password)
    conn = connect(f"gateway:{gateway.address}?auth=basic&min=1&max=2")
    with conn as client:
        assert _wait(lambda: _workers(client) == 1, 60, "the adaptive minimum of 1 worker")
        assert client.submit(sum, [1, 2]).result() == 3
        assert client.scheduler.address.startswith("gateway://")  # TLS through the Gateway's proxy
    conn.close()
    operator = Gateway(gateway.address, auth=BasicAuth("geoproc-test", gateway.password))
    try:
        assert _wait(lambda: not operator.list_clusters(), 30, "the cluster to be shut down")
    finally:
        close_gateway(operator)
