"""Pre-flight: check every worker of a cluster before a job computes anything.

A worker that lacks geoproc, runs other versions of the libraries the tasks need, cannot open the job's input
files or cannot write where the output goes would otherwise be found mid-job: a lost task, a misleading read
error, a result missing. :func:`preflight` asks every worker, names each one that fails in one line, and by
option retires those workers and lets the job run on the rest.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GeoprocError, InvalidArgumentError

__all__ = ["preflight", "PreflightReport", "WorkerProblem", "PreflightError", "input_href", "PACKAGES", "MODES"]

#: Packages whose versions must be the same on the client and every worker (besides distributed's own list:
#: dask, distributed, cloudpickle, msgpack, toolz, tornado, python).
PACKAGES = ("geoproc", "numba", "numpy", "xarray", "zarr", "rasterio")
#: What :func:`geoproc.workflow.run_job` does with pre-flight: stop on a bad worker, retire it, or not check.
MODES = ("check", "exclude", "off")
_DISTRIBUTED_REQUIRED = ("dask", "distributed", "cloudpickle", "msgpack", "toolz", "tornado", "python")


class PreflightError(GeoprocError):
    """A worker cannot run the job (or no worker is left to run it)."""


@dataclass(frozen=True)
class WorkerProblem:
    """Why one worker cannot run the job.

    Attributes
    ----------
    worker
        The worker's address.
    name
        The worker's name (as ``dask worker --name`` or the deployment set it).
    check
        ``versions``, ``input`` or ``output``.
    detail
        What failed, in a few words.
    """

    worker: str
    name: str
    check: str
    detail: str

    def __str__(self) -> str:
        named = f" ({self.name})" if self.name and self.name != self.worker else ""
        return f"worker {self.worker}{named} {self.detail}"


@dataclass(frozen=True)
class PreflightReport:
    """What :func:`preflight` found.

    Attributes
    ----------
    workers
        Addresses of the workers checked.
    problems
        One entry per failed check.
    excluded
        Addresses of the workers retired because of a problem (``exclude=True``).
    """

    workers: tuple[str, ...]
    problems: tuple[WorkerProblem, ...] = ()
    excluded: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line for the job's log."""
        if self.ok:
            return f"pre-flight: {len(self.workers)} workers ready"
        return (f"pre-flight: retired {len(self.excluded)} of {len(self.workers)} workers: "
                + "; ".join(str(p) for p in self.problems))


@dataclass
class _Probe:
    """Sent to every worker: what to open and where to write (S3 options may hold credentials: never logged)."""

    href: str | None
    output: str | None
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)


def preflight(client, *, input_href: str | None = None, output: str | None = None,
              storage_options: Mapping[str, Any] | None = None, exclude: bool = False,
              packages: Sequence[str] = PACKAGES, wait: float = 60.0) -> PreflightReport:
    """Check every worker of ``client``'s cluster before compute.

    Each worker must run the client's versions of distributed's required packages and of ``packages``
    (geoproc among them), open ``input_href`` (one input asset of the job, with the GDAL settings geoproc's
    reader uses) and write and delete a small probe object where ``output`` goes.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    input_href
        One input asset of the job (a path or URL as the catalog gives it); ``None`` skips the read check.
    output
        The job's output store (path, ``file://`` or ``s3://`` URL); ``None`` skips the write check. The probe
        goes inside the store when it exists, else beside it, and is deleted.
    storage_options
        S3 settings for ``output``, as :func:`geoproc.to_zarr` takes them.
    exclude
        Retire the workers that fail (``client.retire_workers``) and report them instead of raising; still
        raises when no worker is left.
    packages
        Packages whose versions must match the client's.
    wait
        Seconds to wait for a first worker (an adaptive cluster may start with none).

    Returns
    -------
    PreflightReport

    Raises
    ------
    PreflightError
        Naming each worker that fails and why, in one line (unless ``exclude``), or when no worker joins.

    Examples
    --------
    Check a cluster's workers against a job's first input and output
    (``tests/cluster/test_preflight.py`` runs it against workers that fail)::

        from geoproc.run.cluster import connect
        from geoproc.run.preflight import preflight
        with connect("tcp://scheduler:8786") as client:
            print(preflight(client, input_href="/data/B04.tif", output="s3://bucket/out.zarr").summary())
    """
    import warnings

    workers = _wait_for_workers(client, wait)
    names = {addr: str(info.get("name", addr)) for addr, info in workers.items()}
    problems: list[WorkerProblem] = []

    wanted = list(dict.fromkeys([*packages]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optional packages (lz4, ...) that differ are no reason to stop
            client.get_versions(check=True, packages=wanted)
        mismatch = False
    except ValueError:
        mismatch = True  # distributed's own table says so; name the workers below
    versions = client.get_versions(packages=wanted)
    mine = _packages(versions.get("client"))
    for addr in workers:
        theirs = _packages(versions["workers"].get(addr))
        differ = [(pkg, mine.get(pkg), theirs.get(pkg)) for pkg in (*_DISTRIBUTED_REQUIRED, *wanted)
                  if _major_minor(pkg, theirs.get(pkg)) != _major_minor(pkg, mine.get(pkg))]
        if differ:
            problems.append(WorkerProblem(addr, names[addr], "versions", _describe_versions(differ)))
    if mismatch and not problems:
        # the scheduler differs from the client (check=True compares it too): no worker to blame, stop
        raise PreflightError(f"the scheduler runs other versions than this client: {_scheduler_diff(versions, wanted)}; "
                             "install the same versions on the client, scheduler and workers")

    usable = [addr for addr in workers if addr not in {p.worker for p in problems}]
    if usable and (input_href or output):
        probe = _Probe(input_href, output, dict(storage_options) if storage_options else None)
        results = client.run(_check_worker, probe, workers=usable, on_error="return", nanny=False)
        for addr in usable:
            found = results.get(addr)
            if isinstance(found, BaseException):
                problems.append(WorkerProblem(addr, names[addr], "run", f"cannot run the checks: {_one_line(found)}"))
                continue
            for check, detail in found or ():
                problems.append(WorkerProblem(addr, names[addr], check, _redact(detail, storage_options)))

    bad = list(dict.fromkeys(p.worker for p in problems))
    if not bad:
        return PreflightReport(tuple(workers))
    listed = "; ".join(str(p) for p in problems)
    if not exclude:
        raise PreflightError(
            f"pre-flight: {listed}; fix those workers' environment (or their access), or rerun with "
            "--preflight exclude (preflight(..., exclude=True)) to retire them and run on the others"
        )
    if len(bad) == len(workers):
        raise PreflightError(f"pre-flight: no worker can run the job: {listed}; fix the workers' environment or access")
    client.retire_workers(workers=bad, close_workers=True)
    return PreflightReport(tuple(workers), tuple(problems), tuple(bad))


def input_href(items: Iterable[Any], bands: Sequence[str] | None = None) -> str | None:
    """The href of one raster asset of the first item (a band of ``bands`` if one is an asset key).

    Examples
    --------
    >>> import pystac, datetime
    >>> item = pystac.Item("a", None, None, datetime.datetime(2024, 5, 1), {})
    >>> item.add_asset("B04", pystac.Asset("/data/B04.tif", media_type="image/tiff; application=geotiff"))
    >>> input_href([item], ["B04"])
    '/data/B04.tif'
    """
    for item in items:
        assets = item.assets if hasattr(item, "assets") else item.get("assets", {})
        for key in bands or ():
            if key in assets:
                return _href(assets[key])
        for asset in assets.values():
            kind = (asset.media_type if hasattr(asset, "media_type") else asset.get("type")) or ""
            if "tiff" in kind or "jp2" in kind:
                return _href(asset)
        return None
    return None


def _href(asset) -> str:
    return asset.get_absolute_href() or asset.href if hasattr(asset, "href") else asset["href"]


# --- what runs on each worker: geoproc's own reader settings, a real open and a real write ---


def _check_worker(probe: _Probe) -> list[tuple[str, str]]:
    problems = []
    if probe.href:
        try:
            _open_input(probe.href)
        except Exception as exc:
            problems.append(("input", f"cannot open the input asset {probe.href}: {_one_line(exc)}"))
    if probe.output:
        try:
            _write_probe(probe.output, probe.storage_options)
        except Exception as exc:
            problems.append(("output", f"cannot write to the output location {probe.output}: {_one_line(exc)}"))
    return problems


def _open_input(href: str) -> None:
    import rasterio

    from ..io.reader import DEFAULT_GDAL_ENV
    from ..io.storage import gdal_defaults_from_environment

    with rasterio.Env(**{**DEFAULT_GDAL_ENV, **gdal_defaults_from_environment()}):
        with rasterio.open(href[7:] if href.startswith("file://") else href) as src:
            src.read(1, window=((0, 1), (0, 1)))  # the header and one block: the bytes, not only the name


def _write_probe(output: str, storage_options: Mapping[str, Any] | None) -> None:
    from ..io.storage import parse_location, s3_options

    location = parse_location(output)
    name = f".geoproc-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if location.is_local:
        folder = location.path if os.path.isdir(location.path) else os.path.dirname(os.path.abspath(location.path))
        while not os.path.isdir(folder):  # the writer creates missing folders: probe the nearest one that exists
            folder = os.path.dirname(folder)
        path = os.path.join(folder, name)
        with open(path, "xb") as fh:
            fh.write(b"geoproc pre-flight probe\n")
        os.unlink(path)
        return
    import obstore

    from ..io.storage import object_store

    store = object_store(location, s3_options(storage_options), prefix="")
    key = f"{location.path}/{name}"
    obstore.put(store, key, b"geoproc pre-flight probe\n")
    obstore.delete(store, key)


# --- helpers ---


def _wait_for_workers(client, wait: float) -> dict[str, dict]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if workers:
        return workers
    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        raise PreflightError(
            f"no worker joined the cluster in {wait:.0f} s; check that the deployment can start workers "
            "(quota, image, queue) and that they reach the scheduler"
        ) from None
    return client.scheduler_info(n_workers=-1)["workers"]


def _packages(entry: Mapping[str, Any] | None) -> dict[str, str | None]:
    if not entry:
        return {}
    found = dict(entry.get("packages", {}))
    python = entry.get("host", {}).get("python")
    if python:
        found["python"] = python
    return found


def _major_minor(pkg: str, version: str | None) -> str | None:
    # python's patch level does not change pickles or bytecode; every other package must match exactly
    if version is None or pkg != "python":
        return version
    return ".".join(str(version).split(".")[:2])


def _describe_versions(differ: list[tuple[str, str | None, str | None]]) -> str:
    missing = [pkg for pkg, _, theirs in differ if theirs is None]
    other = [f"{pkg} {theirs} (client {mine})" for pkg, mine, theirs in differ if theirs is not None]
    parts = []
    if missing:
        parts.append(f"lacks {', '.join(missing)}")
    if other:
        parts.append(f"runs {', '.join(other)}")
    return " and ".join(parts)


def _scheduler_diff(versions: Mapping[str, Any], wanted: Sequence[str]) -> str:
    mine, theirs = _packages(versions.get("client")), _packages(versions.get("scheduler"))
    diff = [f"{p} {theirs.get(p)} (client {mine.get(p)})" for p in ("dask", "distributed", "python", *wanted)
            if _major_minor(p, theirs.get(p)) != _major_minor(p, mine.get(p)) and p in theirs]
    return ", ".join(diff) or "see client.get_versions(check=True)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _redact(text: str, storage_options: Mapping[str, Any] | None) -> str:
    for key in ("secret_access_key", "session_token", "access_key_id"):
        secret = (storage_options or {}).get(key)
        if secret:
            text = text.replace(str(secret), "***")
    return text


def check_mode(mode: str | None) -> str:
    """``mode`` if it is one of :data:`MODES` (``None``: ``check``), else a one-line error."""
    if mode is None:
        return "check"
    if mode not in MODES:
        raise InvalidArgumentError(f"unknown preflight mode {mode!r}; use one of {', '.join(MODES)}")
    return mode
