"""Which cluster: ClusterSpec from strings, mappings and files; the connection that owns it; /metrics."""

from __future__ import annotations

import urllib.request

import pytest
import yaml

from geoproc.errors import GeoprocError, InvalidArgumentError
from geoproc.run.cluster import ClusterSpec, connect


@pytest.mark.parametrize("text, expected", [
    (None, {"kind": "local", "workers": None}),
    ("local", {"kind": "local"}),
    ("local?workers=3&memory_limit=2GiB", {"kind": "local", "workers": 3, "memory_limit": "2GiB"}),
    ("local?min=1&max=4", {"kind": "local", "minimum": 1, "maximum": 4, "adaptive": True}),
    ("tcp://10.0.0.5:8786", {"kind": "address", "address": "tcp://10.0.0.5:8786", "adaptive": False}),
    ("tls://sched.example.org:8786", {"kind": "address", "address": "tls://sched.example.org:8786"}),
    ("10.0.0.5:8786", {"kind": "address", "address": "tcp://10.0.0.5:8786"}),
    ("gateway:https://gw.example.org/services/dask-gateway?min=0&max=8&auth=jupyterhub&worker_memory=4",
     {"kind": "gateway", "address": "https://gw.example.org/services/dask-gateway", "minimum": 0, "maximum": 8,
      "auth": "jupyterhub", "options": {"worker_memory": 4}}),
    ("gateway:http://127.0.0.1:8000?name=abc123", {"kind": "gateway", "name": "abc123"}),
    ("kubernetes:geoproc?namespace=science", {"kind": "kubernetes", "name": "geoproc", "namespace": "science", "manifest": None}),
    ("k8s:cluster/kubernetes/daskcluster.yaml?max=20", {"kind": "kubernetes", "manifest": "cluster/kubernetes/daskcluster.yaml", "maximum": 20}),
    ("slurm:geoproc-slurm?max=10&queue=gpu", {"kind": "slurm", "profile": "geoproc-slurm", "maximum": 10, "options": {"queue": "gpu"}}),
    ("pbs", {"kind": "pbs", "profile": None}),
    ({"kind": "gateway", "address": "http://gw", "min": 1, "max": 3}, {"minimum": 1, "maximum": 3}),
    ({"address": "tcp://h:1"}, {"kind": "address"}),
])
def test_cluster_specs_parse(text, expected):
    spec = ClusterSpec.parse(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value, (key, spec)
    assert ClusterSpec.parse(spec) is spec


@pytest.mark.parametrize("text, message", [
    ("nonsense", "cannot tell which cluster 'nonsense' is; write tcp://HOST:PORT, gateway:URL"),
    ("gateway:", "a gateway cluster needs an address"),
    ("kubernetes:", "a kubernetes cluster needs the name of a running DaskCluster or a manifest"),
    ("tcp://h:8786?x=1", "a scheduler address takes no ?options (tcp://h:8786?x=1)"),
    ("local?min=3&max=1", "cluster minimum 3 exceeds its maximum 1; swap them"),
    ("local?min=1", "an adaptive cluster needs a maximum"),
    ("local?workers=2&max=4", "either a fixed number of workers or minimum/maximum"),
    ("local?workers=-1", "cluster workers must be a whole number >= 0, got -1"),
    ("local?bogus=1", "unknown LocalCluster keys ['bogus']"),
    ("gateway:http://gw?auth=token", "unknown Gateway auth 'token'; use basic, kerberos or jupyterhub"),
    ({"kind": "swarm"}, "unknown cluster kind 'swarm'; use one of local, address, gateway, kubernetes, slurm, pbs"),
    ({"kind": "local", "nodes": 3}, "unknown keys ['nodes'] in the cluster mapping; valid keys:"),
    (42, "a cluster is given as a string or a mapping, not int"),
])
def test_bad_cluster_specs_are_one_line(text, message):
    with pytest.raises(InvalidArgumentError) as info:
        ClusterSpec.parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_address_cannot_scale():
    with pytest.raises(InvalidArgumentError, match="the scheduler at tcp://h:1 cannot add or remove workers"):
        connect("tcp://h:1", n_workers=3)


def test_a_cluster_file_and_the_job_key(tmp_path):
    from geoproc.workflow import JobSpec

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"kind": "gateway", "address": "https://gw", "maximum": 5, "options": {"worker_cores": 2}}))
    spec = ClusterSpec.parse(str(path))
    assert (spec.kind, spec.maximum, dict(spec.options)) == ("gateway", 5, {"worker_cores": 2})
    with pytest.raises(InvalidArgumentError, match=f"cannot read cluster file {tmp_path / 'missing.yaml'}"):
        ClusterSpec.parse(str(tmp_path / "missing.yaml"))
    # a job's cluster key is checked when the job is read, before any work
    with pytest.raises(InvalidArgumentError, match="cannot tell which cluster"):
        JobSpec.from_dict({"catalog": "c.json", "output": "o.zarr", "cluster": "nonsense"})
    with pytest.raises(InvalidArgumentError, match="unknown preflight mode 'maybe'; use one of check, exclude, off"):
        JobSpec.from_dict({"catalog": "c.json", "output": "o.zarr", "preflight": "maybe"})


def test_an_adaptive_local_cluster_is_owned_and_closed_once_and_serves_metrics():
    """The connection starts the LocalCluster, scales it between 1 and 2, and closes client and cluster once;
    the scheduler's /metrics answers in Prometheus text (prometheus-client is a core dependency)."""
    conn = connect("local?min=1&max=2", memory_limit="1GiB")
    with conn as client:
        cluster = conn.cluster
        assert type(cluster).__name__ == "LocalCluster"
        assert cluster._adaptive is not None and (cluster._adaptive.minimum, cluster._adaptive.maximum) == (1, 2)
        assert client.submit(sum, [1, 2]).result() == 3
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                client.dashboard_link.replace("/status", "/metrics"), timeout=10) as resp:
            text = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE dask_scheduler_workers gauge" in text
        assert "Prometheus metrics are not available" not in text
    assert client.status == "closed" and cluster.status.name == "closed"
    assert conn.client is None and conn.cluster is None
    conn.close()  # again: nothing happens
    with pytest.raises(GeoprocError, match="this cluster connection was closed"):
        conn.open()


def test_kubernetes_without_access_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("dask_kubernetes", reason="pip install 'geoproc[kubernetes]'")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(GeoprocError) as info:
        with connect("kubernetes:geoproc?namespace=science"):
            pass
    text = str(info.value)
    assert text.startswith("cannot reach the Kubernetes DaskCluster geoproc: ") and "\n" not in text
    assert text.endswith("check kubectl access (KUBECONFIG), the namespace and that the Dask operator is installed")


def test_a_missing_extra_names_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask_gateway", None)  # as if not installed
    with pytest.raises(GeoprocError, match=r"a gateway cluster needs the dask_gateway package: pip install 'geoproc\[gateway\]'"):
        with connect("gateway:http://127.0.0.1:9"):
            pass


def test_an_unreachable_gateway_is_one_line():
    pytest.importorskip("dask_gateway")
    with pytest.raises(GeoprocError, match=r"^cannot reach the Dask Gateway at http://127.0.0.1:9: .*; check the address$"):
        with connect("gateway:http://127.0.0.1:9?auth=basic"):
            pass
