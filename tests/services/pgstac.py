"""A real STAC API for tests: stac-fastapi-pgstac on a throw-away PostgreSQL + PostGIS cluster.

:func:`pgstac_api` starts, in a temporary folder and on free ports of 127.0.0.1 only:

1. a private PostgreSQL cluster (``initdb`` + ``pg_ctl``; run as the ``postgres``
   user when we are root, since PostgreSQL refuses to run as root), with its
   unix socket in the same folder and no durability (fsync off) - it never
   touches the system cluster or port 5432;
2. a database and a login role with a password, migrated to the installed
   pgstac version (``pypgstac``'s ``Migrate``, the code behind ``pypgstac
   migrate``) with the ``context`` setting on, so searches report counts;
3. the given collections and items, written as ndjson files and loaded with
   ``pypgstac``'s ``Loader`` (``pypgstac load``), collections upserted;
4. ``uvicorn stac_fastapi.pgstac.app:create_app --factory`` as a subprocess,
   configured through ``PG*`` environment variables (``POSTGRES_*`` too, for
   older stac-fastapi-pgstac), started in parallel with 2. and 3. and awaited
   on ``/_mgmt/ping``;

and stops all of it afterwards (uvicorn terminated, ``pg_ctl stop -m immediate``,
the folder removed). Missing binaries or packages raise :class:`ServiceUnavailable`,
whose message the tests use as their skip reason.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PgstacAPI", "ServiceUnavailable", "pgstac_api", "find_postgres", "static_catalog_records"]

#: The API's database role, password and database (the cluster is private and deleted afterwards).
DB_USER, DB_PASSWORD, DB_NAME = "geoproc", "geoproc-test-pw", "pgstac"
STARTUP_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 5


class ServiceUnavailable(RuntimeError):
    """What the service needs is not installed here; the message says what is missing."""


class ServiceFailed(RuntimeError):
    """The service was installed but did not start; the message holds the tail of its log."""


@dataclass
class PgstacAPI:
    """A running stac-fastapi-pgstac.

    Attributes
    ----------
    url
        Root of the STAC API (``http://127.0.0.1:PORT``).
    dsn
        Connection string of its database (TCP, password auth).
    workdir
        The temporary folder (cluster, socket, logs, ndjson files).
    timings
        Seconds per start-up step.
    """

    url: str
    dsn: str
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path
    version: int

    def __getitem__(self, name: str) -> str:
        return str(self.bindir / name)


def find_postgres() -> PostgresBinaries:
    """Locate PostgreSQL server binaries with PostGIS available, or raise :class:`ServiceUnavailable`."""
    candidates: list[Path] = []
    for name in ("pg_ctl", "initdb"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for bindir in dict.fromkeys(candidates):
        if not all((bindir / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            continue
        version, sharedir, libdir = _version_and_dirs(bindir)
        if version is None:
            continue
        control = sharedir / "extension" / "postgis.control"
        absent = control if not control.is_file() else None if list(libdir.glob("postgis-3*.so")) else libdir / "postgis-3.so"
        if absent is not None:
            raise ServiceUnavailable(
                f"PostgreSQL {version} found in {bindir} but not PostGIS (no {absent}); "
                f"install postgresql-{version}-postgis-3 (bash scripts/install.sh test does)"
            )
        return PostgresBinaries(bindir, version)
    raise ServiceUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install postgresql-15 and "
        "postgresql-15-postgis-3 (bash scripts/install.sh test does)"
    )


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def _version_and_dirs(bindir: Path) -> tuple[int | None, Path, Path]:
    """Major version, share directory (extension control files) and library directory of a PostgreSQL."""
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30).stdout
        version = int(out.split()[-1].split(".")[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None, Path(), Path()
    dirs = {"--sharedir": Path(f"/usr/share/postgresql/{version}"), "--pkglibdir": Path(f"/usr/lib/postgresql/{version}/lib")}
    pg_config = bindir / "pg_config"
    for flag in dirs:
        if pg_config.is_file():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                found = subprocess.run([str(pg_config), flag], capture_output=True, text=True, timeout=30).stdout.strip()
                if found:
                    dirs[flag] = Path(found)
    return version, dirs["--sharedir"], dirs["--pkglibdir"]


def _check_python_packages() -> None:
    missing = []
    for module in ("pypgstac", "psycopg", "psycopg_pool", "stac_fastapi.pgstac", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ServiceUnavailable(
            f"Python packages missing for the STAC API tests: {', '.join(missing)}; install geoproc's test extra "
            "(bash scripts/install.sh test)"
        )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing uses now: never 5432, and below the ephemeral range when possible.

    Ports above the range's start are handed out to outgoing connections at any moment, so a
    port free now may be taken before a server binds it; below it, only listeners compete.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            ephemeral = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    for _ in range(200):
        port = random.randint(15000, ephemeral - 1) if ephemeral > 16000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port != 5432:
            return port
    raise ServiceFailed("found no free TCP port on 127.0.0.1")


def static_catalog_records(catalog: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Collections and items of a static catalog as dicts ready for pgstac.

    Asset hrefs are made absolute (so the API serves usable hrefs) and the
    catalog's own links dropped (the API writes its own).
    """
    import pystac

    root = pystac.Catalog.from_file(os.fspath(catalog))
    collections, items = [], []
    for coll in root.get_all_collections():
        d = coll.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = []
        collections.append(d)
    for item in root.get_items(recursive=True):
        item = item.clone()
        item.make_asset_hrefs_absolute()
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = []
        items.append(d)
    return collections, items


def _write_ndjson(path: Path, records: Iterable[Mapping]) -> Path:
    with open(path, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return path


class _Cluster:
    """A private PostgreSQL cluster in ``workdir``; run as ``postgres`` when we are root."""

    def __init__(self, pg: PostgresBinaries, workdir: Path):
        self.pg, self.workdir = pg, workdir
        self.data = workdir / "data"
        self.log = workdir / "postgresql.log"
        self.port = free_port()
        self.started = False
        self.owner: str | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable("running as root but there is no 'postgres' user to run PostgreSQL as") from None
            self.owner = "postgres"
            os.chown(workdir, pw.pw_uid, pw.pw_gid)

    def _cmd(self, args: list[str]) -> list[str]:
        if self.owner is None:
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", self.owner, "--", *args]
        return ["su", self.owner, "-s", "/bin/sh", "-c", shlex.join(args)]

    def _run(self, args: list[str], what: str) -> None:
        proc = subprocess.run(self._cmd(args), cwd=self.workdir, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise ServiceFailed(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}\n{log}")

    def start(self) -> None:
        self._run(
            [self.pg["initdb"], "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
            "initdb",
        )
        options = {
            "listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": str(self.workdir),
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": 40,
        }
        for attempt in range(PORT_ATTEMPTS):
            options["port"] = self.port
            opts = " ".join(f"-c {k}={v}" for k, v in options.items())
            self.started = True
            try:
                self._run([self.pg["pg_ctl"], "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts,
                           "start"], "pg_ctl start")
                return
            except ServiceFailed as exc:
                self.started = False
                if "already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()  # taken between choosing and binding: choose another

    def superuser_connect(self):
        import psycopg

        return psycopg.connect(host=str(self.workdir), port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                subprocess.run(self._cmd([self.pg["pg_ctl"], "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
                               cwd=self.workdir, capture_output=True, timeout=60)
            self.started = False


def _start_api(workdir: Path, port: int, db_port: int) -> subprocess.Popen:
    env = dict(os.environ)
    db = {"PGHOST": "127.0.0.1", "PGPORT": str(db_port), "PGUSER": DB_USER, "PGPASSWORD": DB_PASSWORD, "PGDATABASE": DB_NAME}
    env.update(db)
    env.update({  # the names stac-fastapi-pgstac < 6 read
        "POSTGRES_USER": DB_USER, "POSTGRES_PASS": DB_PASSWORD, "POSTGRES_DBNAME": DB_NAME,
        "POSTGRES_HOST_READER": "127.0.0.1", "POSTGRES_HOST_WRITER": "127.0.0.1", "POSTGRES_PORT": str(db_port),
    })
    env.update({"DB_MIN_CONN_SIZE": "1", "DB_MAX_CONN_SIZE": "4"})
    env.pop("ENABLED_EXTENSIONS", None)  # all extensions: query, sort, fields, filter, pagination
    log = open(workdir / "uvicorn.log", "wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def _wait_for_ping(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never through a proxy
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceFailed(f"the STAC API exited with {proc.returncode} at start-up:\n{log.read_text()[-4000:]}")
        try:
            with direct.open(f"{url}/_mgmt/ping", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise ServiceFailed(f"the STAC API did not answer {url}/_mgmt/ping within {STARTUP_TIMEOUT_S:.0f} s:\n"
                        f"{log.read_text()[-4000:]}")


@contextlib.contextmanager
def pgstac_api(collections: Iterable[Mapping], items: Iterable[Mapping]) -> Iterator[PgstacAPI]:
    """Run stac-fastapi-pgstac serving ``collections`` and ``items`` for the duration of the block.

    Raises
    ------
    ServiceUnavailable
        PostgreSQL, PostGIS or a Python package is missing (skip the tests).
    ServiceFailed
        Something did not start; the message holds the log's tail.
    """
    _check_python_packages()
    pg = find_postgres()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="geoproc-pgstac-"))
    cluster = _Cluster(pg, workdir)
    api_proc: subprocess.Popen | None = None
    try:
        cluster.start()
        timings["postgres"] = time.perf_counter() - t0
        with cluster.superuser_connect() as conn:
            conn.execute(f"CREATE ROLE {DB_USER} LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        dsn = f"postgresql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{cluster.port}/{DB_NAME}"
        # the API only opens connections at start-up: it imports while the schema is migrated and loaded
        api_port = free_port()
        api_proc = _start_api(workdir, api_port, cluster.port)
        t1 = time.perf_counter()
        _migrate_and_load(dsn, workdir, list(collections), list(items))
        timings["migrate_load"] = time.perf_counter() - t1
        for attempt in range(PORT_ATTEMPTS):
            url = f"http://127.0.0.1:{api_port}"
            try:
                _wait_for_ping(url, api_proc, workdir / "uvicorn.log")
                break
            except ServiceFailed as exc:
                if "already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
                api_port = free_port()  # taken between choosing and binding: choose another
                api_proc = _start_api(workdir, api_port, cluster.port)
        timings["total"] = time.perf_counter() - t0
        yield PgstacAPI(url=url, dsn=dsn, workdir=workdir, timings=timings)
    finally:
        if api_proc is not None:
            api_proc.terminate()
            try:
                api_proc.wait(10)
            except subprocess.TimeoutExpired:
                api_proc.kill()
                api_proc.wait(10)
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _migrate_and_load(dsn: str, workdir: Path, collections: list[Mapping], items: list[Mapping]) -> None:
    import psycopg
    from psycopg_pool import ConnectionPool
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods
    from pypgstac.migrate import Migrate

    coll_file = _write_ndjson(workdir / "collections.ndjson", collections)
    item_file = _write_ndjson(workdir / "items.ndjson", items)
    pool = ConnectionPool(dsn, min_size=1, max_size=1, open=True)
    try:
        db = PgstacDB(pool=pool)
        with db:
            Migrate(db).run_migration()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('context', 'on') "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
            )
        db = PgstacDB(pool=pool)
        with db:
            loader = Loader(db)
            loader.load_collections(str(coll_file), Methods.upsert)
            loader.load_items(str(item_file), Methods.insert)
    finally:
        pool.close()
