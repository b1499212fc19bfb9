"""Dask Gateway server on one machine: ``dask-gateway-server -f cluster/gateway/local_config.py``.

Clusters run as processes of the server's own user (``UnsafeLocalBackend``): fit for one machine, a
workstation or the tests (``tests/services/gateway.py`` starts it this way), not for many users. On
Kubernetes use ``cluster/gateway/values.yaml`` with the Dask Gateway Helm chart instead.

Settings come from the environment, so that no credential is ever written into a file:

GEOPROC_GATEWAY_PASSWORD  (required) the password every user must give (SimpleAuthenticator)
GEOPROC_GATEWAY_ADDRESS   where clients connect: the proxy's HTTP + scheduler address (default 127.0.0.1:8000)
GEOPROC_GATEWAY_API       the gateway's private API address (default 127.0.0.1:0, any free port)
GEOPROC_GATEWAY_CLUSTERS  folder for each cluster's working directory, TLS files and logs (default: temporary)
GEOPROC_GATEWAY_BIN       folder of the ``dask`` command the clusters run (default: this Python's bin folder)

Clients and schedulers talk TLS: the gateway makes a certificate per cluster and the proxy routes
``tls://`` connections by SNI.
"""

import os
import sys

from dask_gateway_server.options import Float, Integer, Options

c = get_config()  # noqa: F821 (traitlets config files get this name)

password = os.environ.get("GEOPROC_GATEWAY_PASSWORD")
if not password:
    raise SystemExit("set GEOPROC_GATEWAY_PASSWORD: the gateway does not run without authentication")

c.Gateway.address = os.environ.get("GEOPROC_GATEWAY_API", "127.0.0.1:0")
c.Proxy.address = os.environ.get("GEOPROC_GATEWAY_ADDRESS", "127.0.0.1:8000")
c.Gateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.Gateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = password

# distributed 2026 no longer installs dask-scheduler / dask-worker, the gateway's defaults
bin_dir = os.environ.get("GEOPROC_GATEWAY_BIN") or os.path.dirname(sys.executable)
c.ClusterConfig.scheduler_cmd = [os.path.join(bin_dir, "dask"), "scheduler"]
c.ClusterConfig.worker_cmd = [os.path.join(bin_dir, "dask"), "worker"]
if os.environ.get("GEOPROC_GATEWAY_CLUSTERS"):
    c.UnsafeLocalBackend.clusters_directory = os.environ["GEOPROC_GATEWAY_CLUSTERS"]
# what the workers need from the server's environment besides PATH and the venv: numba's compiled kernels,
# GDAL's and S3's settings (credentials included; they stay in the processes' environment, never in logs)
c.UnsafeLocalBackend.inherited_environment = [
    "PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "HOME", "TMPDIR",
    "NUMBA_CACHE_DIR", "GDAL_DATA", "PROJ_DATA", "GDAL_HTTP_MAX_RETRY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING",
]

# one thread per worker process, as geoproc's LocalCluster: numba and GDAL release the GIL but
# share cores badly; at most 8 workers per cluster on one machine
c.ClusterConfig.worker_threads = 1
c.ClusterConfig.cluster_max_workers = int(os.environ.get("GEOPROC_GATEWAY_MAX_WORKERS", "8"))
# adaptive clusters react within a second, and an idle cluster of a dead client is stopped after an hour
c.ClusterConfig.adaptive_period = 1.0
c.ClusterConfig.idle_timeout = 3600.0


def _options_handler(options):
    return {"worker_memory": f"{options.worker_memory_gib:g} G", "worker_threads": options.worker_threads}


c.Backend.cluster_options = Options(
    Integer("worker_threads", default=1, min=1, max=4, label="Threads per worker"),
    Float("worker_memory_gib", default=2.0, min=0.5, max=16.0, label="Memory per worker (GiB)"),
    handler=_options_handler,
)
