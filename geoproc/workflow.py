"""Declarative jobs: search -> load -> cloud mask -> index -> composite -> Zarr, on a Dask cluster.

A job is a YAML file (see ``workflows/demo.yaml``) or a dict with the same
keys. It only wires library functions that are tested on their own; the steps
add nothing of their own but logging and timing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import InvalidArgumentError

__all__ = ["JobSpec", "JobResult", "DEMO_SPEC", "run_job", "load_spec", "is_workflow_file"]

#: The embedded default job: a small synthetic archive generated on first use.
DEMO_SPEC: dict[str, Any] = {
    "catalog": "geoproc-demo/archive/catalog.json",
    "generate": {"size": 512, "dates": 6, "tiles": 3, "seed": 0},
    "search": {
        "bbox": [17.88, 45.45, 18.08, 45.51],
        "datetime": "2024-05-01/2024-05-31",
        "query": {"eo:cloud_cover": {"lt": 50}},
    },
    "load": {"bands": ["red", "nir", "scl"], "resolution": 10, "chunks": 512, "raw": True},
    "mask": {"classes": [0, 1, 3, 8, 9, 10]},
    "index": "NDVI",
    "composite": "median",
    "output": "geoproc-demo/ndvi_median.zarr",
    "quicklook": "geoproc-demo/ndvi_median.png",
}


@dataclass(frozen=True)
class JobSpec:
    """A job's parameters.

    Attributes
    ----------
    catalog
        Path of a static ``catalog.json`` or URL of a STAC API.
    output
        Where the Zarr store goes: a path, ``file://`` or ``s3://bucket/prefix`` URL (S3 settings come from the
        standard AWS environment variables or profile, never from the job file).
    generate
        If set and ``catalog`` does not exist, a synthetic archive is generated
        there first with these :func:`geoproc.testing.generate_archive` arguments.
    search
        Arguments of :func:`geoproc.search` (``bbox``, ``datetime``, ``query``,
        ``collections``, ``max_items``). The search ``bbox`` also bounds the output.
    load
        Arguments of :func:`geoproc.load` (``bands``, ``resolution``, ``crs``, ``chunks``, ...).
    mask
        Arguments of :func:`geoproc.cloud_mask` (``classes``, ``band``).
    index
        Spectral index name (:data:`geoproc.indices.INDICES`).
    composite
        Composite method (:func:`geoproc.composite`).
    quicklook
        Path of a PNG preview of the result, or ``None`` for none.
    overwrite
        Replace an existing output store.
    resume
        Finish an interrupted run of the same job: regions already written are kept and not computed again.
    cluster
        Which Dask cluster runs the job: a string or mapping that :meth:`geoproc.run.cluster.ClusterSpec.parse`
        reads (``tcp://host:8786``, ``gateway:URL?min=1&max=8``, ``kubernetes:NAME``, ``slurm:PROFILE``, ...);
        ``None`` starts a LocalCluster. The CLI's ``--cluster`` overrides it.
    preflight
        Before compute, check that every worker can run the job (:func:`geoproc.run.preflight.preflight`):
        ``check`` stops with the failing workers named, ``exclude`` retires them and runs on the rest, ``off``.
    """

    catalog: str
    output: str
    generate: Mapping[str, Any] | None = None
    search: Mapping[str, Any] = field(default_factory=dict)
    load: Mapping[str, Any] = field(default_factory=lambda: {"bands": ["red", "nir", "scl"]})
    mask: Mapping[str, Any] = field(default_factory=dict)
    index: str = "NDVI"
    composite: str = "median"
    quicklook: str | None = None
    overwrite: bool = False
    resume: bool = False
    cluster: str | Mapping[str, Any] | None = None
    preflight: str = "check"

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], **overrides: Any) -> JobSpec:
        """Build from a mapping; unknown keys are an error, ``None`` overrides are ignored."""
        merged = {**spec, **{k: v for k, v in overrides.items() if v is not None}}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(merged) - names
        if unknown:
            raise InvalidArgumentError(f"unknown job keys {sorted(unknown)}; valid keys: {', '.join(sorted(names))}")
        missing = {"catalog", "output"} - set(merged)
        if missing:
            raise InvalidArgumentError(f"the job lacks {sorted(missing)}; give a catalog path/URL and an output path")
        if merged.get("overwrite") and merged.get("resume"):
            raise InvalidArgumentError("a job cannot both overwrite and resume its output; choose one")
        from .run.cluster import ClusterSpec
        from .run.preflight import check_mode

        ClusterSpec.parse(merged.get("cluster"))  # a bad cluster is refused before any work
        check_mode(merged.get("preflight"))
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_workflow_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a workflow file with ``steps:`` (any pipeline, :mod:`geoproc.run.workflow_file`),
    False for a single-pipeline job file (this module) or a file that cannot be read (its error comes later)."""
    try:
        with open(path) as fh:
            return any(line.startswith("steps:") for line in fh)
    except OSError:
        return False


def load_spec(path: str | os.PathLike, **overrides: Any) -> JobSpec:
    """Read a job from a YAML file."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read workflow file {path}: {exc.strerror}; check the path") from None
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"workflow file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"workflow file {path} must hold a mapping of job keys")
    return JobSpec.from_dict(data, **overrides)


@dataclass(frozen=True)
class JobResult:
    """Summary of a finished job."""

    scenes: int
    time_slices: int
    shape: tuple[int, int]
    seconds: float
    output: str
    quicklook: str | None
    dashboard: str | None

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1]

    def summary(self) -> str:
        lines = [
            f"scenes     {self.scenes} items in {self.time_slices} time slices",
            f"pixels     {self.pixels:,} ({self.shape[0]} x {self.shape[1]})",
            f"seconds    {self.seconds:.1f}",
            f"output     {self.output}",
        ]
        if self.quicklook:
            lines.append(f"quicklook  {self.quicklook}")
        return "\n".join(lines)


def run_job(
    spec: JobSpec,
    *,
    cluster: Any = None,
    n_workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    preflight: str | None = None,
) -> JobResult:
    """Run a job on a Dask cluster: ``cluster`` (a :class:`geoproc.run.cluster.ClusterSpec` or what its ``parse``
    reads), else the job's ``cluster`` key, else a new LocalCluster. Before compute the workers are checked
    (``preflight``, default the job's: ``check``, ``exclude`` or ``off``).

    Examples
    --------
    The embedded demo job (what ``geoproc demo`` runs; ``tests/test_e2e.py`` runs it
    and checks its output against the archive's ground truth)::

        from geoproc.workflow import DEMO_SPEC, JobSpec, run_job
        result = run_job(JobSpec.from_dict(DEMO_SPEC))
        print(result.summary())
    """
    from . import cloud_mask, composite, index, load, search
    from .io.zarr import begin_write, open_result
    from .quicklook import quicklook
    from .run.cluster import ClusterSpec, connect
    from .run.preflight import check_mode, input_href
    from .run.preflight import preflight as check_workers
    from .planning import check_task_memory
    from .run.tiles import _memory_limit, run_tiles
    from .run.watch import Watch

    started = time.perf_counter()
    cluster_spec = ClusterSpec.parse(cluster if cluster is not None else spec.cluster)  # refused before any work
    if spec.generate and "://" not in spec.catalog and not os.path.exists(spec.catalog):
        from .testing import generate_archive

        root = os.path.dirname(os.path.abspath(spec.catalog))
        log(f"generating a synthetic archive in {root} ...")
        generate_archive(root, **spec.generate)

    items = search(spec.catalog, **spec.search)
    log(f"found {len(items)} items in {spec.catalog}")
    load_args = dict(spec.load)
    if "bbox" in spec.search and "bbox" not in load_args and "bounds" not in load_args:
        load_args["bbox"] = spec.search["bbox"]
    ds = load(items, **load_args)
    mask = cloud_mask(ds, **spec.mask)
    values = index(ds, spec.index)
    result = composite(values, spec.composite, mask=mask)
    result.name = f"{spec.index.lower()}_{spec.composite}"
    provenance = {"input_items": ds.attrs["input_items"], "job": spec.to_dict()}
    mode = "w" if spec.overwrite else "resume" if spec.resume else "w-"
    # the store's checks and template now, before any cluster starts; its regions run tile by tile below
    write = begin_write(result, spec.output, mode=mode, attrs=provenance)

    checks = check_mode(preflight or spec.preflight)
    connection = connect(cluster_spec, n_workers=n_workers)
    with connection as client:
        dashboard = client.dashboard_link
        log(f"dask cluster: {connection.spec.describe()}")
        log(f"dask dashboard: {dashboard}")
        if checks != "off":
            report = check_workers(client, input_href=input_href(items, load_args.get("bands")), output=spec.output,
                                   exclude=checks == "exclude")
            log(report.summary())
        # a task that cannot fit a worker's memory is refused here, with a chunk size that fits
        task_bytes = check_task_memory(ds, _memory_limit(client))
        log(
            f"computing {result.name} on a {ds.sizes['y']} x {ds.sizes['x']} grid from {ds.sizes['time']} time slices "
            f"({len(ds.attrs['input_items'])} scenes)"
        )
        # each region is a future released as soon as it is written: a worker lost mid-job costs only the
        # regions it was computing; a failure stops the job with the --resume hint (the written regions stay)
        run = run_tiles(write, client=client, progress=progress, on_failure="stop", retries=1, task_bytes=task_bytes,
                        watch=Watch(client, log=log))
        log(run.summary())

    png = None
    if spec.quicklook:
        png = quicklook(open_result(spec.output)[result.name], spec.quicklook)
    return JobResult(
        scenes=len(ds.attrs["input_items"]),
        time_slices=ds.sizes["time"],
        shape=(ds.sizes["y"], ds.sizes["x"]),
        seconds=time.perf_counter() - started,
        output=spec.output,
        quicklook=png,
        dashboard=dashboard,
    )
