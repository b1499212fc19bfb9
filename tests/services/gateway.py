"""A real Dask Gateway for tests: ``dask-gateway-server`` with ``cluster/gateway/local_config.py`` on 127.0.0.1.

:func:`dask_gateway` starts the server (its Go proxy ships in the ``dask-gateway-server`` wheel) on a free
port of 127.0.0.1, with the simple password authenticator on and a fresh password, its clusters' working
folders (TLS files, scheduler and worker logs) under a temporary folder, and clusters that run the venv's
``dask scheduler`` / ``dask worker``. Readiness: ``/api/health`` answers through the proxy. On exit the
server is stopped (SIGTERM to its process group, then SIGKILL), which stops its clusters, and the folder
is deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .pgstac import ServiceFailed, ServiceUnavailable, free_port

__all__ = ["GatewayServer", "dask_gateway", "CONFIG"]

CONFIG = Path(__file__).resolve().parents[2] / "cluster" / "gateway" / "local_config.py"
STARTUP_TIMEOUT_S = 60.0


@dataclass
class GatewayServer:
    """A running ``dask-gateway-server``.

    Attributes
    ----------
    address
        ``http://127.0.0.1:PORT``: the proxy, where clients (API and schedulers) connect.
    password
        The password the server asks of every user.
    workdir
        The server's log (``gateway.log``) and the clusters' folders (``clusters/``).
    """

    address: str
    password: str
    workdir: Path
    process: subprocess.Popen

    @property
    def clusters_dir(self) -> Path:
        return self.workdir / "clusters"

    def logs(self) -> str:
        """Everything logged so far: the server's log and every cluster's scheduler and worker logs."""
        texts = []
        for path in [self.workdir / "gateway.log", *sorted(self.clusters_dir.glob("*/logs/*.log"))]:
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def env(self) -> dict[str, str]:
        """What a client needs to authenticate (user and password for ``auth=basic``)."""
        return {"GEOPROC_GATEWAY_USER": "geoproc-test", "GEOPROC_GATEWAY_PASSWORD": self.password}


def find_server() -> str:
    here = Path(sys.executable).parent / "dask-gateway-server"
    found = str(here) if here.exists() else shutil.which("dask-gateway-server")
    if not found:
        raise ServiceUnavailable("dask-gateway-server is not installed: pip install 'dask-gateway-server[local]' (test extra)")
    try:
        import dask_gateway  # noqa: F401
    except ImportError:
        raise ServiceUnavailable("dask-gateway (the client) is not installed: pip install 'geoproc[gateway]'") from None
    return found


@contextlib.contextmanager
def dask_gateway() -> Iterator[GatewayServer]:
    """Start a password-protected Dask Gateway on 127.0.0.1; stop it and delete its folder afterwards."""
    server = find_server()
    workdir = Path(tempfile.mkdtemp(prefix="geoproc-gateway-"))
    (workdir / "clusters").mkdir()
    password = secrets.token_urlsafe(16)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DASK_GATEWAY"))}
    env.update({
        "GEOPROC_GATEWAY_PASSWORD": password,
        "GEOPROC_GATEWAY_ADDRESS": f"127.0.0.1:{port}",
        "GEOPROC_GATEWAY_API": f"127.0.0.1:{free_port()}",
        "GEOPROC_GATEWAY_CLUSTERS": str(workdir / "clusters"),
        "GEOPROC_GATEWAY_BIN": str(Path(sys.executable).parent),
        "GEOPROC_GATEWAY_MAX_WORKERS": "4",
    })
    log = open(workdir / "gateway.log", "ab")  # noqa: SIM115 (kept open by the child)
    proc = subprocess.Popen([server, "-f", str(CONFIG)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=workdir, start_new_session=True)
    log.close()
    gateway = GatewayServer(f"http://127.0.0.1:{port}", password, workdir, proc)
    try:
        _wait_healthy(gateway)
        yield gateway
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_healthy(gateway: GatewayServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "not started"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise ServiceFailed(f"dask-gateway-server exited with status {gateway.process.returncode}:\n{gateway.logs()[-3000:]}")
        try:
            with opener.open(f"{gateway.address}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    _stop(gateway.process)
    raise ServiceFailed(f"the Dask Gateway did not answer /api/health in {STARTUP_TIMEOUT_S:.0f} s ({last}):\n{gateway.logs()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the server stops its clusters' processes on SIGTERM
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
