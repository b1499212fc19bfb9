"""cluster/ as a deployment kit: generated, current, and valid offline.

DaskCluster / DaskAutoscaler against the CRD schemas shipped in the dask-kubernetes wheel (nulls stripped, as the
API server does; unknown fields refused, which the API server would silently prune), core objects with
kubernetes-validate's bundled schemas (strict), jobqueue profiles by the job scripts dask-jobqueue writes from
them, the Gateway's Helm values by running their server config, the Dockerfile by what it copies and sets.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import importlib.util
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
K8S_VERSION = "1.30"


def _generate():
    spec = importlib.util.spec_from_file_location("cluster_generate", CLUSTER / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / rel).read_text()) if d is not None]


def _strip_nulls(value):
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value if v is not None]
    return value


def _closed(schema):
    """The schema with ``additionalProperties: false`` wherever it lists properties and allows no unknown fields."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def _crd_validator(kind: str) -> jsonschema.Validator:
    pytest.importorskip("dask_kubernetes", reason="dask-kubernetes ships the CRDs: pip install 'geoproc[kubernetes]'")
    crds = importlib.resources.files("dask_kubernetes") / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    crd = yaml.safe_load((crds / f"{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return jsonschema.Draft7Validator(_closed(spec_schema))


def _check_dask_resource(doc: dict) -> list[str]:
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    doc = _strip_nulls(doc)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in _crd_validator(doc["kind"]).iter_errors(doc["spec"])]


def _check_core(doc: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    kv.validate(_strip_nulls(doc), K8S_VERSION, strict=True)


def _daskclusters() -> list[dict]:
    """The DaskCluster file, and the copy the CronJob's ConfigMap carries."""
    configmap = next(d for d in _docs("kubernetes/cronjob.yaml") if d["kind"] == "ConfigMap")
    return [_docs("kubernetes/daskcluster.yaml")[0], yaml.safe_load(configmap["data"]["daskcluster.yaml"])]


def test_generated_files_are_current():
    stale = [rel for rel, text in _generate().render().items()
             if not (CLUSTER / rel).exists() or (CLUSTER / rel).read_text() != text]
    assert not stale, f"run python cluster/generate.py: {stale} differ from what it writes"


def test_dask_resources_validate_against_the_operators_crds():
    for doc in [*_daskclusters(), *_docs("kubernetes/daskautoscaler.yaml")]:
        assert _check_dask_resource(doc) == [], doc["kind"]
    cluster = _daskclusters()[0]
    assert cluster == _daskclusters()[1]
    worker = cluster["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"] and "--nthreads" in worker["args"]
    assert cluster["spec"]["scheduler"]["spec"]["containers"][0]["args"][:2] == ["dask", "scheduler"]
    assert worker["resources"]["limits"]["memory"] == worker["resources"]["requests"]["memory"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in worker["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets["AWS_SECRET_ACCESS_KEY"] == secrets["AWS_ACCESS_KEY_ID"] == _docs("kubernetes/s3-secret.example.yaml")[0]["metadata"]["name"]
    scaler = _docs("kubernetes/daskautoscaler.yaml")[0]["spec"]
    assert scaler["cluster"] == cluster["metadata"]["name"] and 0 < scaler["minimum"] <= scaler["maximum"]


def test_the_crd_check_refuses_what_the_operator_would_not_run():
    """The checks are not vacuous: a wrong type, a misspelt field and a missing required one each fail."""
    cluster = _daskclusters()[0]
    bad_type = copy.deepcopy(cluster)
    bad_type["spec"]["worker"]["replicas"] = "two"
    typo = copy.deepcopy(cluster)
    typo["spec"]["worker"]["spec"]["containers"][0]["resource"] = typo["spec"]["worker"]["spec"]["containers"][0].pop("resources")
    missing = copy.deepcopy(_docs("kubernetes/daskautoscaler.yaml")[0])
    del missing["spec"]["cluster"]
    for doc, where in ((bad_type, "worker.replicas"), (typo, "worker.spec.containers.0"), (missing, "")):
        errors = _check_dask_resource(doc)
        assert errors and any(e.startswith(where) for e in errors), (where, errors)
    # nulls are dropped first, as the API server does, not reported
    with_null = copy.deepcopy(cluster)
    with_null["spec"]["worker"]["spec"]["nodeSelector"] = None
    assert _check_dask_resource(with_null) == []


def test_core_objects_validate_strictly():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    docs = [*_docs("kubernetes/cronjob.yaml"), *_docs("kubernetes/s3-secret.example.yaml")]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "CronJob", "Role", "RoleBinding", "Secret", "ServiceAccount"]
    for doc in docs:
        _check_core(doc)
    # the pods the operator makes from the DaskCluster are valid pods too
    for group in ("scheduler", "worker"):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"geoproc-{group}"},
               "spec": _daskclusters()[0]["spec"][group]["spec"]}
        _check_core(pod)
    cron = next(d for d in docs if d["kind"] == "CronJob")
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["geoproc", "run"] and "--resume" in args
    assert args[args.index("--cluster") + 1] == "kubernetes:/etc/geoproc/daskcluster.yaml"
    typo = copy.deepcopy(cron)
    typo["spec"]["schedual"] = typo["spec"].pop("schedule")
    with pytest.raises(kv.ValidationError):
        _check_core(typo)


def test_the_cronjob_workflow_is_a_valid_job():
    from geoproc.run.cluster import ClusterSpec
    from geoproc.workflow import JobSpec

    configmap = next(d for d in _docs("kubernetes/cronjob.yaml") if d["kind"] == "ConfigMap")
    cron = next(d for d in _docs("kubernetes/cronjob.yaml") if d["kind"] == "CronJob")
    path = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][2]
    job = JobSpec.from_dict(yaml.safe_load(configmap["data"][Path(path).name]))
    assert job.output.startswith("s3://") and job.preflight == "exclude"
    spec = ClusterSpec.parse("kubernetes:/etc/geoproc/daskcluster.yaml")
    assert spec.kind == "kubernetes" and spec.manifest == "/etc/geoproc/daskcluster.yaml"


@pytest.mark.parametrize("kind, directives", [
    ("slurm", ["#SBATCH -p normal", "#SBATCH -A geoproc", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32G",
               "#SBATCH -t 02:00:00", "#SBATCH --exclusive"]),
    ("pbs", ["#PBS -q normal", "#PBS -A geoproc", "#PBS -l select=1:ncpus=8:mem=32gb", "#PBS -l walltime=02:00:00"]),
])
def test_jobqueue_profiles_write_the_expected_job_scripts(kind, directives):
    """geoproc.run.cluster opens the profile (a scheduler here, no job submitted) and dask-jobqueue writes the job
    script's header from it: queue, account, resources, walltime, the venv and numba cache, one thread per worker."""
    pytest.importorskip("dask_jobqueue", reason="pip install 'geoproc[jobqueue]'")
    import dask

    from geoproc.run.cluster import connect

    profiles = yaml.safe_load((CLUSTER / "jobqueue" / "jobqueue.yaml").read_text())
    # as a file in ~/.config/dask/ would be merged into dask's configuration (set() would replace "jobqueue" whole)
    with dask.config.set({f"jobqueue.{name}": profile for name, profile in profiles["jobqueue"].items()}):
        conn = connect(f"{kind}:geoproc-{kind}")
        with conn:
            script = conn.cluster.job_script()
    header = [line for line in script.splitlines() if line.startswith("#")]
    for directive in directives:
        assert directive in header, (directive, header)
    assert "source $HOME/geoproc/.venv/bin/activate" in script
    assert "export NUMBA_CACHE_DIR=$HOME/.cache/geoproc-numba" in script
    assert re.search(r"^python -m distributed.cli.dask_worker tcp://\S+ .*--nthreads 1 --memory-limit 4\.00GiB --nworkers 8 ",
                     script, flags=re.M), script


def test_jobqueue_without_the_profile_is_one_line():
    pytest.importorskip("dask_jobqueue", reason="pip install 'geoproc[jobqueue]'")
    from geoproc.errors import GeoprocError
    from geoproc.run.cluster import connect

    with pytest.raises(GeoprocError, match=r"^no jobqueue profile 'nope' in the dask configuration; copy cluster/jobqueue"):
        with connect("slurm:nope"):
            pass


def test_gateway_helm_values_run_as_server_config():
    pytest.importorskip("dask_gateway_server", reason="dask-gateway-server is in the test extra")
    from traitlets.config import Config

    values = _docs("gateway/values.yaml")[0]
    backend = values["gateway"]["backend"]
    settings = _generate().SETTINGS
    assert f"{backend['image']['name']}:{backend['image']['tag']}" == settings["image"]
    assert values["gateway"]["auth"]["type"] in ("simple", "kerberos", "jupyterhub", "custom")
    assert "password" not in yaml.safe_dump(values).lower().replace("simple", "")  # set at install, never here
    c = Config()
    for code in values["gateway"]["extraConfig"].values():
        exec(compile(code, "values.yaml:extraConfig", "exec"), {"c": c})
    assert c.ClusterConfig.scheduler_cmd == ["dask", "scheduler"] and c.ClusterConfig.worker_cmd == ["dask", "worker"]
    options = c.Backend.cluster_options
    chosen = options.get_configuration({"worker_cores": 2, "worker_memory": 8}, None)
    assert chosen == {"worker_cores": 2, "worker_memory": 8 * 2**30}


def test_dockerfile_copies_what_exists_and_warms_the_numba_cache():
    text = (CLUSTER / "Dockerfile").read_text()
    repo = CLUSTER.parent
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (repo / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    cache = _generate().NUMBA_CACHE_DIR
    assert f"NUMBA_CACHE_DIR={cache}" in text
    assert re.search(r"^RUN python cluster/warm_cache\.py", text, flags=re.M)
    worker_env = _daskclusters()[0]["spec"]["worker"]["spec"]["containers"][0]["env"]
    assert {"name": "NUMBA_CACHE_DIR", "value": cache} in worker_env
