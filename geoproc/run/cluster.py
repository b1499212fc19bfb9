"""Which Dask cluster a job runs on, and the object that owns the connection to it.

One way to say which cluster, the same in Python, on the command line (``--cluster``) and in workflow files
(the ``cluster:`` key): a :class:`ClusterSpec`, parsed from a string or a mapping by :meth:`ClusterSpec.parse`.

========================================================  =================================================
string                                                    cluster
========================================================  =================================================
``local`` (or nothing)                                    a ``LocalCluster`` on this machine (the default)
``local?minimum=1&maximum=4``                             the same, scaled adaptively between 1 and 4 workers
``tcp://scheduler:8786`` (``tls://``, ``ws://``, ...)     an existing scheduler
``gateway:https://gw.example.org?minimum=1&maximum=8``    a new cluster of a Dask Gateway (adaptive 1 to 8)
``gateway:https://gw.example.org?name=NAME``              an existing cluster of a Dask Gateway
``kubernetes:NAME``                                       a running Dask Kubernetes operator cluster
``kubernetes:cluster/kubernetes/daskcluster.yaml``        one created from a ``DaskCluster`` manifest
``slurm:PROFILE`` / ``pbs:PROFILE``                       dask-jobqueue, from the ``jobqueue.PROFILE`` config
``path/to/cluster.yaml``                                  a mapping of :class:`ClusterSpec` fields
========================================================  =================================================

Query keys are :class:`ClusterSpec` fields (``min``/``max`` stand for ``minimum``/``maximum``); any other key is
an option of the deployment (a Gateway cluster option, a ``KubeCluster`` or jobqueue argument). Credentials never
appear in a spec: the Gateway's basic password comes from ``GEOPROC_GATEWAY_PASSWORD``, the rest from each
deployment's own configuration (dask config, kubeconfig, the cloud's environment).

The Gateway, Kubernetes and jobqueue clients are optional dependencies (extras ``gateway``, ``kubernetes``,
``jobqueue``), imported only when such a cluster is asked for.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..errors import GeoprocError, InvalidArgumentError

__all__ = ["ClusterSpec", "ClusterConnection", "connect", "KINDS"]

#: The kinds of cluster geoproc connects to.
KINDS = ("local", "address", "gateway", "kubernetes", "slurm", "pbs")
_PREFIXES = {"local": "local", "gateway": "gateway", "kubernetes": "kubernetes", "k8s": "kubernetes",
             "slurm": "slurm", "pbs": "pbs"}
_SCHEDULER_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
_ALIASES = {"min": "minimum", "max": "maximum"}
#: What to install for each optional kind.
_EXTRA = {"gateway": ("dask_gateway", "gateway"), "kubernetes": ("dask_kubernetes", "kubernetes"),
          "slurm": ("dask_jobqueue", "jobqueue"), "pbs": ("dask_jobqueue", "jobqueue")}


@dataclass(frozen=True)
class ClusterSpec:
    """Which cluster to run on, and how many workers it may have.

    Attributes
    ----------
    kind
        One of :data:`KINDS`: ``local``, ``address``, ``gateway``, ``kubernetes``, ``slurm``, ``pbs``.
    address
        The scheduler address (``address``) or the Gateway's URL (``gateway``).
    workers
        A fixed number of workers (the LocalCluster's worker processes; what other deployments scale to).
    minimum, maximum
        Adaptive scaling between these numbers of workers (both or only ``maximum``; ``minimum`` defaults to 0).
        A bare scheduler address cannot scale.
    threads_per_worker
        Threads per worker of a LocalCluster. Kernels release the GIL, but one thread per process keeps numba
        and GDAL from oversubscribing cores.
    memory_limit
        Per-worker memory limit of a LocalCluster (``"auto"``: the machine's memory divided among the workers).
    name
        An existing cluster to join: a Gateway cluster name or the name of a ``DaskCluster`` resource.
    manifest
        Kubernetes only: a ``DaskCluster`` manifest (path of a YAML file, or the mapping) to create a cluster from.
    namespace
        Kubernetes only: the namespace (default: the kubeconfig's).
    profile
        dask-jobqueue only: the name of a section under ``jobqueue:`` in the dask configuration
        (default: ``slurm`` or ``pbs``).
    auth
        Gateway only: ``basic`` (user ``GEOPROC_GATEWAY_USER`` or the login name, password
        ``GEOPROC_GATEWAY_PASSWORD``), ``kerberos`` or ``jupyterhub``; ``None`` uses the dask config's
        ``gateway.auth``.
    proxy_address
        Gateway only: the scheduler proxy's address when it is not the Gateway's own.
    options
        Options of the deployment: Gateway cluster options (``worker_cores``, ``image``, ...), or keyword
        arguments of ``KubeCluster`` / ``SLURMCluster`` / ``PBSCluster``.
    shutdown
        Shut the cluster down when the connection closes. Default: clusters created here are shut down,
        clusters joined by name or address are left running.
    timeout
        Seconds to wait for the cluster to answer and for its first worker.
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    name: str | None = None
    manifest: str | Mapping[str, Any] | None = None
    namespace: str | None = None
    profile: str | None = None
    auth: str | None = None
    proxy_address: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    shutdown: bool | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgumentError(f"unknown cluster kind {self.kind!r}; use one of {', '.join(KINDS)}")
        for name in ("workers", "minimum", "maximum"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidArgumentError(f"cluster {name} must be a whole number >= 0, got {value!r}")
        if self.workers is not None and self.adaptive:
            raise InvalidArgumentError("give the cluster either a fixed number of workers or minimum/maximum, not both")
        if self.minimum is not None and self.maximum is None:
            raise InvalidArgumentError("an adaptive cluster needs a maximum number of workers as well as its minimum")
        if self.adaptive and self.minimum is not None and self.minimum > self.maximum:
            raise InvalidArgumentError(f"cluster minimum {self.minimum} exceeds its maximum {self.maximum}; swap them")
        if self.kind in ("address", "gateway") and not self.address:
            raise InvalidArgumentError(f"a {self.kind} cluster needs an address, e.g. "
                                       + ("tcp://scheduler:8786" if self.kind == "address" else "gateway:https://gw.example.org"))
        if self.kind == "address" and (self.adaptive or self.workers is not None):
            raise InvalidArgumentError(
                f"the scheduler at {self.address} cannot add or remove workers for geoproc; start workers beside it, "
                "or use a Gateway, Kubernetes or jobqueue cluster to scale"
            )
        if self.kind == "kubernetes" and not (self.name or self.manifest):
            raise InvalidArgumentError("a kubernetes cluster needs the name of a running DaskCluster or a manifest to create one")
        if not isinstance(self.options, Mapping):
            raise InvalidArgumentError(f"cluster options must be a mapping, got {type(self.options).__name__}")
        if self.auth not in (None, "basic", "kerberos", "jupyterhub"):
            raise InvalidArgumentError(f"unknown Gateway auth {self.auth!r}; use basic, kerberos or jupyterhub")

    @property
    def adaptive(self) -> bool:
        """Whether the cluster scales itself between :attr:`minimum` and :attr:`maximum`."""
        return self.maximum is not None

    @classmethod
    def parse(cls, value: ClusterSpec | str | Mapping[str, Any] | None) -> ClusterSpec:
        """A spec from a string, a mapping or ``None`` (a LocalCluster).

        Examples
        --------
        >>> ClusterSpec.parse("tcp://10.0.0.5:8786").kind
        'address'
        >>> s = ClusterSpec.parse("gateway:https://gw.example.org?min=1&max=3&worker_cores=2")
        >>> s.kind, s.address, s.minimum, s.maximum, dict(s.options)
        ('gateway', 'https://gw.example.org', 1, 3, {'worker_cores': 2})
        >>> ClusterSpec.parse({"kind": "slurm", "profile": "geoproc", "maximum": 20}).maximum
        20
        >>> ClusterSpec.parse("gateway:https://gw?maximum=x")
        Traceback (most recent call last):
        ...
        geoproc.errors.InvalidArgumentError: cluster maximum must be a whole number >= 0, got 'x'
        """
        if value is None or isinstance(value, ClusterSpec):
            return value or cls()
        if isinstance(value, Mapping):
            return cls._from_mapping(value, "the cluster mapping")
        if not isinstance(value, str):
            raise InvalidArgumentError(f"a cluster is given as a string or a mapping, not {type(value).__name__}")
        return cls._from_string(value.strip())

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any], where: str) -> ClusterSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        merged = {_ALIASES.get(k, k): v for k, v in data.items()}
        unknown = set(merged) - names
        if unknown:
            raise InvalidArgumentError(f"unknown keys {sorted(unknown)} in {where}; valid keys: {', '.join(sorted(names))}")
        if "kind" not in merged:
            merged["kind"] = "address" if any(str(merged.get("address", "")).startswith(s) for s in _SCHEDULER_SCHEMES) else "local"
        return cls(**merged)

    @classmethod
    def _from_string(cls, text: str) -> ClusterSpec:
        import yaml

        if not text or text == "local":
            return cls()
        if text.endswith((".yaml", ".yml")) and ":" not in text.split("/", 1)[0]:
            try:
                with open(text) as fh:
                    data = yaml.safe_load(fh)
            except OSError as exc:
                raise InvalidArgumentError(f"cannot read cluster file {text}: {exc.strerror}; check the path") from None
            if not isinstance(data, Mapping):
                raise InvalidArgumentError(f"cluster file {text} must hold a mapping of cluster keys")
            return cls._from_mapping(data, f"cluster file {text}")
        body, _, query = text.partition("?")
        if body.startswith(_SCHEDULER_SCHEMES) or re.fullmatch(r"[\w.-]+:\d+", body):  # host:port too
            if query:
                raise InvalidArgumentError(f"a scheduler address takes no ?options ({text}); the deployment sets its workers")
            return cls(kind="address", address=body if "://" in body else f"tcp://{body}")
        head, _, target = body.partition(":")
        kind = _PREFIXES.get(head.lower())
        if kind is None:
            raise InvalidArgumentError(
                f"cannot tell which cluster {text!r} is; write tcp://HOST:PORT, gateway:URL, kubernetes:NAME, "
                "slurm:PROFILE, pbs:PROFILE, local, or the path of a cluster YAML file"
            )
        fields: dict[str, Any] = {"kind": kind}
        options: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)} - {"kind", "options"}
        for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            key = _ALIASES.get(key, key)
            (fields if key in names else options)[key] = yaml.safe_load(raw) if raw else None
        if options and kind in ("local",):
            raise InvalidArgumentError(f"unknown LocalCluster keys {sorted(options)}; valid keys: {', '.join(sorted(names))}")
        if options:
            fields["options"] = options
        if target:
            if kind == "gateway":
                fields["address"] = target
            elif kind == "kubernetes":
                fields["manifest" if target.endswith((".yaml", ".yml")) else "name"] = target
            elif kind in ("slurm", "pbs"):
                fields["profile"] = target
            else:
                raise InvalidArgumentError(f"write 'local' alone or with ?keys, not {text!r}")
        return cls(**fields)

    def describe(self) -> str:
        """One line: what this spec connects to (never a credential)."""
        scale = (f", {self.minimum or 0}-{self.maximum} workers, adaptive" if self.adaptive
                 else f", {self.workers} workers" if self.workers is not None else "")
        where = {
            "local": "a LocalCluster on this machine",
            "address": f"the scheduler at {self.address}",
            "gateway": f"Dask Gateway {self.address}" + (f" cluster {self.name}" if self.name else ""),
            "kubernetes": f"Kubernetes DaskCluster {self.name or '(from a manifest)'}",
            "slurm": f"SLURM jobs (profile {self.profile or 'slurm'})",
            "pbs": f"PBS jobs (profile {self.profile or 'pbs'})",
        }[self.kind]
        return where + scale


class ClusterConnection:
    """Owns a client and, where it started one, the cluster, from :meth:`open` until :meth:`close`.

    Use it as a context manager (``with connect(spec) as client``); :meth:`close` runs once however often
    it is called, closing the client first and then shutting down what was created here.

    Attributes
    ----------
    spec
        What it connects to.
    client
        The ``distributed.Client`` (``None`` before :meth:`open` and after :meth:`close`).
    cluster
        The cluster object that was created or joined (``LocalCluster``, ``GatewayCluster``, ``KubeCluster``,
        ``SLURMCluster``...); ``None`` for a bare scheduler address.
    """

    def __init__(self, spec: ClusterSpec):
        self.spec = spec
        self.client = None
        self.cluster = None
        self._closed = False

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self):
        """Connect (or start the cluster) and return the client."""
        if self.client is not None:
            return self.client
        if self._closed:
            raise GeoprocError("this cluster connection was closed; make a new one with geoproc.run.cluster.connect")
        opener = {"local": _open_local, "address": _open_address, "gateway": _open_gateway,
                  "kubernetes": _open_kubernetes, "slurm": _open_jobqueue, "pbs": _open_jobqueue}[self.spec.kind]
        try:
            self.cluster, self.client = opener(self.spec)
        except BaseException:
            self.close()
            raise
        return self.client

    def close(self) -> None:
        """Close the client, then shut down the cluster if it was created here; only the first call acts."""
        if self._closed:
            return
        self._closed = True
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                _close_cluster(cluster, self.spec)


def connect(cluster: ClusterSpec | str | Mapping[str, Any] | None = None, *, n_workers: int | None = None,
            threads_per_worker: int | None = None, memory_limit: str | None = None) -> ClusterConnection:
    """A connection to the cluster ``cluster`` names; use it in a ``with`` block, which yields the client.

    Parameters
    ----------
    cluster
        A :class:`ClusterSpec`, a string or mapping that :meth:`ClusterSpec.parse` reads, or ``None``
        for a LocalCluster of one worker process per core.
    n_workers, threads_per_worker, memory_limit
        Override the spec's ``workers``, ``threads_per_worker`` and ``memory_limit`` when given.

    Examples
    --------
    A local cluster of two worker processes for the duration of a block::

        from geoproc.run.cluster import connect
        with connect("local", n_workers=2) as client:
            print(client.dashboard_link)

    An adaptive cluster of a Dask Gateway (password in ``GEOPROC_GATEWAY_PASSWORD``), as
    ``tests/cluster/test_gateway.py`` runs it::

        with connect("gateway:https://gw.example.org?auth=basic&min=1&max=3") as client:
            ...
    """
    spec = ClusterSpec.parse(cluster)
    overrides = {k: v for k, v in (("workers", n_workers), ("threads_per_worker", threads_per_worker),
                                   ("memory_limit", memory_limit)) if v is not None}
    if overrides:
        spec = dataclasses.replace(spec, **overrides)
    return ClusterConnection(spec)


# --- one opener per kind: each returns (cluster or None, client) ---


def _open_local(spec: ClusterSpec):
    from distributed import Client, LocalCluster

    n = spec.workers if spec.workers is not None else (spec.minimum if spec.adaptive else os.cpu_count() or 1)
    cluster = LocalCluster(
        # a task's error reaches the client, which reports it; the workers' own log of it (a traceback
        # block per failed task) would only bury that one line
        silence_logs=logging.CRITICAL,
        n_workers=n or 0,
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        memory_limit=spec.memory_limit,
        dashboard_address="127.0.0.1:0",
        host="127.0.0.1",
        **dict(spec.options),
    )
    try:
        if spec.adaptive:
            cluster.adapt(minimum=spec.minimum or 0, maximum=spec.maximum)
        return cluster, Client(cluster)
    except BaseException:
        cluster.close()
        raise


def _open_address(spec: ClusterSpec):
    from distributed import Client

    try:
        return None, Client(spec.address, timeout=f"{spec.timeout}s")
    except (OSError, TimeoutError) as exc:
        raise GeoprocError(
            f"cannot reach a Dask scheduler at {spec.address}: {_first_line(exc)}; check the address and that the scheduler runs"
        ) from None


def _require(kind: str):
    module, extra = _EXTRA[kind]
    try:
        return __import__(module)
    except ImportError:
        raise GeoprocError(f"a {kind} cluster needs the {module} package: pip install 'geoproc[{extra}]'") from None


def _gateway_auth(spec: ClusterSpec):
    if spec.auth != "basic":
        return spec.auth  # None: dask config's gateway.auth; "kerberos"/"jupyterhub": dask-gateway's own
    import getpass

    from dask_gateway import BasicAuth

    user = os.environ.get("GEOPROC_GATEWAY_USER") or getpass.getuser()
    return BasicAuth(user, os.environ.get("GEOPROC_GATEWAY_PASSWORD", ""))


def _open_gateway(spec: ClusterSpec):
    _require("gateway")
    import aiohttp
    from dask_gateway import Gateway

    auth = _gateway_auth(spec)
    gateway = Gateway(spec.address, proxy_address=spec.proxy_address, auth=auth)
    user = getattr(auth, "username", None)
    try:
        if spec.name:
            cluster = gateway.connect(spec.name, shutdown_on_close=bool(spec.shutdown))
        else:
            options = gateway.cluster_options()
            for key, value in spec.options.items():
                if key not in options:
                    raise InvalidArgumentError(
                        f"the Dask Gateway at {spec.address} has no cluster option {key!r}; its options: {', '.join(sorted(options))}"
                    )
                try:
                    options[key] = value
                except (TypeError, ValueError) as exc:
                    raise InvalidArgumentError(f"Gateway cluster option {key}={value!r} refused: {_first_line(exc)}") from None
            cluster = gateway.new_cluster(options, shutdown_on_close=spec.shutdown is not False)
    except GeoprocError:
        close_gateway(gateway)
        raise
    except aiohttp.ClientResponseError as exc:
        close_gateway(gateway)
        if exc.status in (401, 403):
            who = f" of user {user!r}" if user else ""
            raise GeoprocError(
                f"the Dask Gateway at {spec.address} refused the credentials{who} (HTTP {exc.status}); "
                "set GEOPROC_GATEWAY_USER / GEOPROC_GATEWAY_PASSWORD (auth=basic) or the dask config's gateway.auth"
            ) from None
        raise GeoprocError(f"the Dask Gateway at {spec.address} answered HTTP {exc.status} ({exc.message}); check its address") from None
    except (aiohttp.ClientConnectionError, OSError, TimeoutError) as exc:
        close_gateway(gateway)
        raise GeoprocError(f"cannot reach the Dask Gateway at {spec.address}: {_first_line(exc)}; check the address") from None
    except ValueError as exc:  # 404: no such cluster
        close_gateway(gateway)
        raise GeoprocError(f"the Dask Gateway at {spec.address} has no cluster {spec.name!r}: {_first_line(exc)}") from None
    except BaseException:
        close_gateway(gateway)
        raise
    # the cluster has a Gateway client of its own on this one's event loop: this one closes last
    cluster._geoproc_gateway = gateway
    try:
        _scale(cluster, spec)
        return cluster, cluster.get_client()
    except BaseException:
        _close_cluster(cluster, spec)
        raise


def _open_kubernetes(spec: ClusterSpec):
    _require("kubernetes")
    from distributed import Client

    try:
        from dask_kubernetes.operator import KubeCluster
        from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode

        if spec.manifest is not None:
            manifest = spec.manifest
            if isinstance(manifest, str):
                import yaml

                with open(manifest) as fh:
                    manifest = yaml.safe_load(fh)
            cluster = KubeCluster(custom_cluster_spec=dict(manifest), namespace=spec.namespace, quiet=True,
                                  shutdown_on_close=spec.shutdown is not False, **dict(spec.options))
        else:
            cluster = KubeCluster(name=spec.name, namespace=spec.namespace, create_mode=CreateMode.CONNECT_ONLY,
                                  quiet=True, shutdown_on_close=bool(spec.shutdown), **dict(spec.options))
    except GeoprocError:
        raise
    except Exception as exc:  # kr8s and kubernetes errors share no base class
        raise GeoprocError(
            f"cannot reach the Kubernetes DaskCluster {spec.name or '(from the manifest)'}: {_first_line(exc)}; "
            "check kubectl access (KUBECONFIG), the namespace and that the Dask operator is installed"
        ) from None
    try:
        _scale(cluster, spec)
        return cluster, Client(cluster)
    except BaseException:
        _close_cluster(cluster, spec)
        raise


def _open_jobqueue(spec: ClusterSpec):
    _require(spec.kind)
    import dask
    import dask_jobqueue
    from distributed import Client

    profile = spec.profile or spec.kind
    if dask.config.get(f"jobqueue.{profile}", None) is None:
        raise GeoprocError(
            f"no jobqueue profile {profile!r} in the dask configuration; copy cluster/jobqueue/jobqueue.yaml to "
            "~/.config/dask/ (or point DASK_CONFIG at it) and name one of its profiles"
        )
    cls = dask_jobqueue.SLURMCluster if spec.kind == "slurm" else dask_jobqueue.PBSCluster
    # dask-jobqueue needs a profile to hold every key of its kind's defaults: take the defaults of the kind and
    # the profile's own keys as arguments, so a profile states only what differs
    kwargs = {key.replace("-", "_"): value for key, value in dask.config.get(f"jobqueue.{profile}").items()}
    cluster = cls(config_name=spec.kind, **{**kwargs, **dict(spec.options)})
    try:
        _scale(cluster, spec)
        return cluster, Client(cluster)
    except BaseException:
        cluster.close()
        raise


def _scale(cluster, spec: ClusterSpec) -> None:
    if spec.adaptive:
        cluster.adapt(minimum=spec.minimum or 0, maximum=spec.maximum)
    elif spec.workers is not None:
        cluster.scale(spec.workers)


def _close_cluster(cluster, spec: ClusterSpec) -> None:
    """Close the cluster object; each kind shuts down on close exactly what its ``shutdown_on_close`` says."""
    try:
        cluster.close()  # a GatewayCluster closes its Gateway client too ...
    finally:
        if type(cluster).__name__ == "GatewayCluster":
            close_gateway(cluster.gateway)  # ... but would close it again when collected
            owner = getattr(cluster, "_geoproc_gateway", None)
            if owner is not None:
                close_gateway(owner)


def close_gateway(gateway) -> None:
    """Close a ``dask_gateway.Gateway`` client once.

    Its ``__del__`` closes it again, which fails once distributed's loop runner has stopped
    ("Accessing the loop property while the loop is not running"); dropping the runner after the
    first close makes that second close a no-op.
    """
    try:
        if "_loop_runner" in vars(gateway):
            gateway.close()
    except RuntimeError:
        pass  # already closed through its cluster
    finally:
        vars(gateway).pop("_loop_runner", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
