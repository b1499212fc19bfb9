"""Generate the deployment files of cluster/ from one set of settings.

    python cluster/generate.py           write the files
    python cluster/generate.py --check   exit 1 if a file differs from what would be written (CI runs this
                                         through tests/cluster/test_manifests.py, which also validates them)

Edit :data:`SETTINGS` (image, namespace, sizes, the Secret's name) and run it again; the files are not meant to be
edited by hand. The ``DaskCluster`` starts from ``dask_kubernetes.operator.make_cluster_spec`` (so it follows the
operator's own template) where dask-kubernetes is installed, and from the same template written out here where
it is not.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

#: Everything a deployment changes. Memory figures: an idle worker holds about 380 MiB; a mask + index + median
#: job adds about 8 B per pixel per date of a task (see issue 15), so 4 GiB fits 512 x 512 chunks of ~1,500 dates.
SETTINGS = {
    "name": "geoproc",
    "namespace": "geoproc",
    "image": "ghcr.io/example/geoproc:0.1.0",
    "workers": {"replicas": 2, "minimum": 1, "maximum": 20, "cpu": "1", "memory": "4Gi", "threads": 1},
    "scheduler": {"cpu": "1", "memory": "2Gi"},
    # a Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL, AWS_REGION)
    "s3_secret": "geoproc-s3",
    "idle_timeout": 3600,
    "cron": {"schedule": "0 3 * * *", "workflow": "nightly.yaml"},
    "jobqueue": {"queue": "normal", "account": "geoproc", "walltime": "02:00:00", "cores": 8, "processes": 8,
                 "memory": "32GiB", "local_directory": "$TMPDIR"},
}

#: The image's numba cache (filled at build time by cluster/warm_cache.py) and where a pod may write.
NUMBA_CACHE_DIR = "/opt/geoproc/numba-cache"


def _env(settings: dict) -> list[dict]:
    secret = settings["s3_secret"]
    env = [{"name": "NUMBA_CACHE_DIR", "value": NUMBA_CACHE_DIR}]
    for key, optional in (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_ENDPOINT_URL", True),
                          ("AWS_REGION", True)):
        ref = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def _base_cluster(settings: dict) -> dict:
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        make_cluster_spec = None
    if make_cluster_spec is not None:
        return make_cluster_spec(settings["name"], image=settings["image"], n_workers=settings["workers"]["replicas"],
                                 idle_timeout=settings["idle_timeout"])
    raise SystemExit("install dask-kubernetes (pip install 'geoproc[kubernetes]') to generate the DaskCluster")


def daskcluster(settings: dict = SETTINGS) -> dict:
    """The ``DaskCluster``: scheduler and worker groups, resources and memory limits, S3 credentials from a Secret."""
    spec = copy.deepcopy(_base_cluster(settings))
    spec["metadata"]["namespace"] = settings["namespace"]
    spec["metadata"]["labels"] = {"app.kubernetes.io/name": "geoproc"}
    w, s = settings["workers"], settings["scheduler"]
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    # geoproc's workers: one thread per process (numba and GDAL release the GIL but share cores badly), the
    # memory limit dask spills and pauses at equal to the container's, so the kubelet never OOM-kills first
    worker["args"] = ["dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", str(w["threads"]),
                      "--memory-limit", "$(MEMORY_LIMIT)", "--dashboard", "--dashboard-address", "8788"]
    worker["env"] = _env(settings) + [{"name": "MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {
        "containerName": "worker", "resource": "limits.memory"}}}]
    worker["resources"] = {"requests": {"cpu": w["cpu"], "memory": w["memory"]},
                           "limits": {"cpu": w["cpu"], "memory": w["memory"]}}
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    # distributed 2026 has no dask-scheduler command (make_cluster_spec still writes it)
    scheduler["args"] = ["dask", "scheduler", "--host", "0.0.0.0"]
    scheduler["env"] = [{"name": "NUMBA_CACHE_DIR", "value": NUMBA_CACHE_DIR}]
    scheduler["resources"] = {"requests": {"cpu": s["cpu"], "memory": s["memory"]},
                              "limits": {"cpu": s["cpu"], "memory": s["memory"]}}
    # Prometheus scrapes the scheduler's /metrics (prometheus-client is a geoproc dependency)
    spec["spec"]["scheduler"]["metadata"] = {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8787",
                                                             "prometheus.io/path": "/metrics"}}
    return spec


def daskautoscaler(settings: dict = SETTINGS) -> dict:
    w = settings["workers"]
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {"name": settings["name"], "namespace": settings["namespace"]},
        "spec": {"cluster": settings["name"], "minimum": w["minimum"], "maximum": w["maximum"]},
    }


def s3_secret(settings: dict = SETTINGS) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": settings["s3_secret"], "namespace": settings["namespace"]},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": "REPLACE-ME", "AWS_SECRET_ACCESS_KEY": "REPLACE-ME",
                       "AWS_REGION": "us-east-1"},
    }


def cronjob(settings: dict = SETTINGS) -> list[dict]:
    """A nightly ``geoproc run`` that creates its own DaskCluster (and deletes it after), with the RBAC it needs."""
    name, ns = settings["name"], settings["namespace"]
    account = f"{name}-runner"
    workflow = settings["cron"]["workflow"]
    rules = [
        {"apiGroups": ["kubernetes.dask.org"],
         "resources": ["daskclusters", "daskworkergroups", "daskautoscalers", "daskjobs"],
         "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "services", "pods/log"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create"]},
    ]
    container = {
        "name": "geoproc",
        "image": settings["image"],
        "args": ["geoproc", "run", f"/etc/geoproc/{workflow}", "--resume", "--no-progress",
                 "--cluster", "kubernetes:/etc/geoproc/daskcluster.yaml"],
        "env": _env(settings),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "volumeMounts": [{"name": "job", "mountPath": "/etc/geoproc", "readOnly": True}],
    }
    cluster = yaml.safe_dump(daskcluster(settings), sort_keys=False)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": account, "namespace": ns},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": account, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-job", "namespace": ns},
         "data": {workflow: _workflow_example(), "daskcluster.yaml": cluster}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"{name}-nightly", "namespace": ns},
         "spec": {
             "schedule": settings["cron"]["schedule"],
             # a run still going when the next is due is left to finish; the next one resumes what is left
             "concurrencyPolicy": "Forbid",
             "startingDeadlineSeconds": 3600,
             "successfulJobsHistoryLimit": 3,
             "failedJobsHistoryLimit": 3,
             "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                 "serviceAccountName": account,
                 "restartPolicy": "OnFailure",
                 "containers": [container],
                 "volumes": [{"name": "job", "configMap": {"name": f"{name}-job"}}],
             }}}},
         }},
    ]


def _workflow_example() -> str:
    return yaml.safe_dump({
        "catalog": "https://earth-search.aws.element84.com/v1",
        "search": {"collections": ["sentinel-2-l2a"], "bbox": [17.88, 45.45, 18.08, 45.51], "datetime": "2024-05-01/2024-05-31"},
        "load": {"bands": ["red", "nir", "scl"], "resolution": 10, "chunks": 1024},
        "mask": {"classes": [0, 1, 3, 8, 9, 10]},
        "index": "NDVI",
        "composite": "median",
        "output": "s3://my-bucket/geoproc/ndvi_median.zarr",
        "preflight": "exclude",
    }, sort_keys=False)


def gateway_values(settings: dict = SETTINGS) -> dict:
    """Values for the ``dask-gateway`` Helm chart: geoproc's image and worker shape, options users may change."""
    image, _, tag = settings["image"].rpartition(":")
    w = settings["workers"]
    extra = f'''from dask_gateway_server.options import Options, Integer, Float

# what users may ask for (gateway.cluster_options()), within what a node offers
def options_handler(options):
    return {{
        "worker_cores": options.worker_cores,
        "worker_memory": int(options.worker_memory * 2**30),
    }}

c.Backend.cluster_options = Options(
    Integer("worker_cores", default=1, min=1, max=4, label="Worker cores"),
    Float("worker_memory", default={float(w['memory'].removesuffix('Gi'))}, min=1, max=32, label="Worker memory (GiB)"),
    handler=options_handler,
)
# distributed 2026 has no dask-scheduler / dask-worker commands
c.ClusterConfig.scheduler_cmd = ["dask", "scheduler"]
c.ClusterConfig.worker_cmd = ["dask", "worker"]
c.ClusterConfig.worker_threads = {w['threads']}
c.ClusterConfig.cluster_max_workers = {w['maximum']}
c.ClusterConfig.idle_timeout = {float(settings['idle_timeout'])}
'''
    env = _env(settings)
    return {
        "gateway": {
            "loglevel": "INFO",
            "auth": {"type": "simple"},  # replace with jupyterhub (a Pangeo hub) or kerberos in production
            "backend": {
                "image": {"name": image, "tag": tag, "pullPolicy": "IfNotPresent"},
                "namespace": settings["namespace"],
                "environment": {"NUMBA_CACHE_DIR": NUMBA_CACHE_DIR},
                "scheduler": {"cores": {"request": 1, "limit": 1}, "memory": {"request": "2G", "limit": "2G"},
                              "extraContainerConfig": {}},
                "worker": {"cores": {"request": 1, "limit": 1}, "memory": {"request": "4G", "limit": "4G"},
                           "threads": w["threads"],
                           # S3 credentials from the Secret, never in the chart's values
                           "extraContainerConfig": {"env": [e for e in env if "valueFrom" in e]}},
            },
            "extraConfig": {"geoproc": extra},
        },
        "traefik": {"service": {"type": "LoadBalancer"}},
    }


def jobqueue_config(settings: dict = SETTINGS) -> dict:
    """dask config with two jobqueue profiles, ``geoproc-slurm`` and ``geoproc-pbs``."""
    j = settings["jobqueue"]
    common = {
        "cores": j["cores"], "processes": j["processes"], "memory": j["memory"], "walltime": j["walltime"],
        "queue": j["queue"], "account": j["account"], "local-directory": j["local_directory"],
        # cores / processes = 1 thread per worker process, as on every other cluster; the venv and the numba
        # cache (filled once by cluster/warm_cache.py) on the shared home
        "job-script-prologue": ["export NUMBA_CACHE_DIR=$HOME/.cache/geoproc-numba",
                                "source $HOME/geoproc/.venv/bin/activate"],
        "python": "python",  # the activated venv's, not the path of the client's interpreter
    }
    return {"jobqueue": {"geoproc-slurm": dict(common, **{"job-extra-directives": ["--exclusive"]}),
                         "geoproc-pbs": dict(common, **{"resource-spec": f"select=1:ncpus={j['cores']}:mem={j['memory'].replace('GiB', 'gb')}"})}}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # every value written out in full: no &id001 / *id001
        return True


def _str(dumper: yaml.SafeDumper, data: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def _yaml(docs: dict | list[dict], header: str) -> str:
    docs = docs if isinstance(docs, list) else [docs]
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False) for d in docs)
    return f"# {header}\n# Generated by cluster/generate.py from its SETTINGS; edit those and run it again.\n{body}"


def render(settings: dict = SETTINGS) -> dict[str, str]:
    """Every generated file: path relative to cluster/ -> text."""
    return {
        "kubernetes/daskcluster.yaml": _yaml(daskcluster(settings), "A geoproc DaskCluster for the Dask Kubernetes operator"),
        "kubernetes/daskautoscaler.yaml": _yaml(daskautoscaler(settings), "Adaptive scaling of the DaskCluster between minimum and maximum workers"),
        "kubernetes/s3-secret.example.yaml": _yaml(s3_secret(settings), "The S3 credentials workers read (fill in, then kubectl apply; never commit real ones)"),
        "kubernetes/cronjob.yaml": _yaml(cronjob(settings), "A scheduled workflow: each run creates a DaskCluster, resumes the output, deletes the cluster"),
        "gateway/values.yaml": _yaml(gateway_values(settings), "Values for the dask-gateway Helm chart (helm install ... -f cluster/gateway/values.yaml)"),
        "jobqueue/jobqueue.yaml": _yaml(jobqueue_config(settings), "dask-jobqueue profiles: copy to ~/.config/dask/ and run with --cluster slurm:geoproc-slurm"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are current")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render().items():
        path = HERE / rel
        if path.exists() and path.read_text() == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python cluster/generate.py", file=sys.stderr)
        return 1
    print(("would write " if args.check else "wrote ") + (", ".join(stale) or "nothing (all current)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
