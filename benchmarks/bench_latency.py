"""The benchmark job read from object storage at cloud latency: geoproc vs odc-stac vs stackstac (vs lazycogs).

What is measured
----------------
The job of ``bench_load.py`` (8 dates x 2048 x 2048 px of the synthetic archive,
``generate_archive(size=2048, dates=8, tiles=1, seed=0)``; red + nir + SCL,
mask SCL 3/8/9/10, NDVI, median over time, float32 Zarr on local disk), with
the COGs in a real S3 store: SeaweedFS ``weed mini`` on 127.0.0.1, started as
the storage tests start it (``tests/services/seaweedfs.py``), the archive's
files uploaded to it. Every library reads ``s3://`` hrefs through GDAL's
``/vsis3/`` (signed requests, credentials from the ``AWS_*`` variables),
pointed at :class:`LatencyProxy`: a small threaded reverse proxy on 127.0.0.1
that forwards each request to SeaweedFS unchanged (the ``Host`` header too, so
signatures hold) and holds each response back by the chosen delay before
sending it, as a far-away store would. It serves loopback clients only, and
stops by itself (``--lifetime``, default 1 h) if this script does not stop it.

Settings: ``disk`` (the files read from local disk), ``direct`` (from SeaweedFS,
no proxy: what the proxy itself costs is the difference to 0 ms) and 0, 20, 40
and 80 ms per request. Each run is a fresh Python process (so no library starts
with GDAL's caches already holding the headers of an earlier run) that first
runs the job once from local disk (imports, numba kernels and thread pools
warm, no S3 byte cached), then times the job on the setting: wall time from
building the lazy graph to the Zarr store written, and the process's CPU time
(user + system, all threads). Dask's threaded scheduler with 2 threads, chunks
of (all dates, 1024, 1024) px: four chunk tasks. Each library uses its own
default GDAL settings. The proxy counts, per run: requests, bytes, the most
requests in flight at once, and *serial round trips*: the time during which at
least one response was being held back by the delay, divided by the delay (how
many back-to-back round trips the run's waiting amounts to; requests waiting
together count once; the time to fetch from SeaweedFS and send, which the
0 ms runs show, is not counted).

Rounds are interleaved (round 1: every library at every setting, then round
2, ...) so that load from other work on the machine spreads over all; the
table gives medians over ``--rounds`` (default 3). The outputs of the last
round are compared as ``bench_load.py`` compares them.

The round-trip bound for geoproc is its 0 ms wall time plus 2 x the delay per
request: a read of a file needs its header before it knows where its tiles
are, so whatever overlaps, the job waits at least two round trips.

lazycogs (GDAL-free: async-geotiff + obstore, items in stac-geoparquet queried
with DuckDB) needs Python >= 3.12 and DuckDB extensions that its default
version downloads at run time. It runs in its own environment, pinned to work
offline (:data:`LAZYCOGS_ENV`: rustac 0.9.9 embeds the DuckDB that the
``rustac-duckdb-extensions`` wheel was built for), named by
``--lazycogs-python``; without it, it is reported as skipped, with why. Its
output is compared with geoproc's too.

``--before PATH`` also runs the geoproc of another checkout (e.g. ``git
worktree add /tmp/before <commit>``) as ``geoproc-before``, interleaved with the
rest, for before/after figures from one run.

Usage::

    python benchmarks/bench_latency.py                      # disk, 0, 20, 40, 80 ms; 3 rounds
    python benchmarks/bench_latency.py --delays 0,40 --rounds 1 --direct
    python benchmarks/bench_latency.py --lazycogs-python /tmp/lazycogs-venv/bin/python --before /tmp/before
    python benchmarks/bench_latency.py --check-cog          # only: are the archive's files laid out as COGs?
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))

LIBRARIES = ("geoproc", "odc-stac", "stackstac")
OUTDIR = "/tmp/geoproc-bench-latency"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


# --------------------------------------------------------------------------- the latency proxy


@dataclass
class Request:
    start: float
    end: float
    waited: float  # when the delay began (the response was in from SeaweedFS)
    method: str
    path: str
    range: str
    status: int
    nbytes: int


@dataclass
class ProxyStats:
    requests: int
    nbytes: int
    max_in_flight: int
    busy_s: float  # time with at least one request in the proxy (waiting, fetching or sending)
    waiting_s: float  # time with at least one request held back by the delay

    def round_trips(self, delay_s: float) -> float | None:
        return self.waiting_s / delay_s if delay_s > 0 else None


def _union(intervals: list[tuple[float, float]]) -> tuple[float, int]:
    """Total length of the union of ``intervals``, and the most of them overlapping at once."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    total, n, most, since = 0.0, 0, 0, 0.0
    for t, step in events:
        if n == 0 and step > 0:
            since = t
        n += step
        most = max(most, n)
        if n == 0:
            total += t - since
    return total, most


def stats(log: list[Request], delay: float = 0.0) -> ProxyStats:
    busy, most = _union([(r.start, r.end) for r in log])
    waiting, _ = _union([(r.waited, r.waited + delay) for r in log])
    return ProxyStats(len(log), sum(r.nbytes for r in log), most, busy, waiting)


class LatencyProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream_port`` that delays every response by :attr:`delay` s.

    Use as a context manager. Only loopback clients are served; the server shuts
    itself down after ``lifetime_s`` whatever happens to its owner.
    """

    def __init__(self, upstream_port: int, lifetime_s: float = 3600.0):
        self.upstream_port = upstream_port
        self.lifetime_s = lifetime_s
        self.delay = 0.0
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                if self.client_address[0] != "127.0.0.1":
                    self.send_error(403, "loopback clients only")
                    return
                start = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, resp_headers, data = proxy._upstream(self.command, self.path, body, headers)
                waited = time.perf_counter()
                if proxy.delay:
                    time.sleep(proxy.delay)
                self.send_response_only(status)
                for k, v in resp_headers:
                    if k.lower() not in HOP_BY_HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                with proxy._lock:
                    proxy._log.append(Request(start, time.perf_counter(), waited, self.command, self.path,
                                              self.headers.get("Range", ""), status, len(data)))

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"127.0.0.1:{self.port}"

    def _upstream(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, list, bytes]:
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def take_log(self) -> list[Request]:
        with self._lock:
            log, self._log = self._log, []
        return log

    def __enter__(self) -> LatencyProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="latency-proxy").start()
        self._timer = threading.Timer(self.lifetime_s, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- COG layout


def cog_layout(path: str) -> list[str]:
    """Why ``path`` is not laid out as a COG (empty when it is), after GDAL's ``validate_cloud_optimized_geotiff``.

    Tiled; overviews, if any, as reduced-resolution IFDs; every IFD (and the
    GDAL structural-metadata ghost area, ``LAYOUT=IFDS_BEFORE_DATA``) before the
    first tile; tile data of the smallest overview first, the full resolution
    last, and tiles of each level in increasing offset order.
    """
    import tifffile

    problems = []
    with open(path, "rb") as fh:
        ghost = fh.read(400)
    if b"LAYOUT=IFDS_BEFORE_DATA" not in ghost:
        problems.append("no GDAL ghost area saying LAYOUT=IFDS_BEFORE_DATA")
    with tifffile.TiffFile(path) as tif:
        pages = [p for p in tif.pages]
        if not all(p.is_tiled for p in pages):
            problems.append("not tiled")
        first_data = min(min(o for o in p.dataoffsets if o) for p in pages)
        if max(p.offset for p in pages) > first_data:
            problems.append("an IFD comes after tile data")
        starts = [min(o for o in p.dataoffsets if o) for p in pages]
        if starts != sorted(starts, reverse=True):
            problems.append("overview tiles are not stored smallest first before the full resolution")
        for p in pages:
            offs = [o for o in p.dataoffsets if o]
            if offs != sorted(offs):
                problems.append(f"tiles of the {p.shape} level are not in increasing offset order")
                break
    return problems


# --------------------------------------------------------------------------- the archive


def cached_archive(size: int, dates: int, seed: int = 0) -> str:
    """The catalog of ``generate_archive(size=size, dates=dates, tiles=1, seed=seed)`` under /tmp, made once
    (``bench_load``'s cache, now that the generator writes into folders whose names hold a dot)."""
    from bench_load import cached_archive as cached

    return cached(size, dates, seed)


# --------------------------------------------------------------------------- one run (in a fresh process)


def _items(catalog: str, base: str | None, library: str):
    """The archive's items (pystac), with hrefs under ``base`` (``s3://bucket/prefix``) when given."""
    import geoproc
    from bench_load import stac_items

    items = list(geoproc.search(catalog)) if library == "geoproc" else stac_items(catalog)
    if base is None:
        return items
    root = os.path.dirname(catalog)
    for item in items:
        for asset in item.assets.values():
            asset.href = f"{base}/{os.path.relpath(asset.get_absolute_href(), root)}"
    return items


def _job(library: str, items, out: str, chunk: int):
    import geoproc
    from bench_load import (MASK_CLASSES, NIR, RED, SCL, decode, odc_stac_load, raster_band, stackstac_stack,
                            write_zarr, xarray_ndvi_median)

    if library == "geoproc":
        ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=chunk, raw=True)
        mask = geoproc.cloud_mask(ds, classes=MASK_CLASSES)
        median = geoproc.composite(geoproc.ndvi(ds), "median", mask=mask).rename("ndvi_median")
        return geoproc.to_zarr(median, out, compute=False)
    if library == "odc-stac":
        ds = odc_stac_load(items, chunk)
        red = decode(ds.red, *raster_band(items, RED))
        nir = decode(ds.nir, *raster_band(items, NIR))
        return write_zarr(xarray_ndvi_median(red, nir, ds.SCL), out)
    stack = stackstac_stack(items, chunk)
    red = decode(stack.sel(band=RED), *raster_band(items, RED)[:2], None)
    nir = decode(stack.sel(band=NIR), *raster_band(items, NIR)[:2], None)
    return write_zarr(xarray_ndvi_median(red, nir, stack.sel(band=SCL)), out)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_one(library: str, catalog: str, base: str | None, out: str, chunk: int, threads: int) -> dict:
    """Warm up from local disk, then time the job reading from ``base`` (local disk when None)."""
    import warnings

    import dask

    warnings.filterwarnings("ignore")
    with dask.config.set(scheduler="threads", num_workers=threads):
        warm = out + ".warm"
        shutil.rmtree(warm, ignore_errors=True)
        dask.compute(_job(library, _items(catalog, None, library), warm, chunk))
        shutil.rmtree(warm, ignore_errors=True)
        items = _items(catalog, base, library)
        shutil.rmtree(out, ignore_errors=True)
        c0, t0 = _cpu(), time.perf_counter()
        dask.compute(_job(library, items, out, chunk))
        return {"wall": time.perf_counter() - t0, "cpu": _cpu() - c0}


def _item_dicts(catalog: str, base: str | None) -> list[dict]:
    """The archive's item JSON, hrefs as ``file://`` URLs or under ``base`` (no geoproc or pystac needed)."""
    root = os.path.dirname(catalog)
    items = []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".json") and name not in ("catalog.json", "collection.json", "truth.json"):
                path = os.path.join(dirpath, name)
                with open(path) as fh:
                    item = json.load(fh)
                if item.get("type") != "Feature":
                    continue
                for asset in item["assets"].values():
                    full = os.path.normpath(os.path.join(dirpath, asset["href"]))
                    asset["href"] = f"{base}/{os.path.relpath(full, root)}" if base else f"file://{full}"
                items.append(item)
    return items


def run_lazycogs(catalog: str, base: str | None, out: str, chunk: int, threads: int) -> dict:
    """The job with ``lazycogs.open`` (async-geotiff + obstore, no GDAL), timed as :func:`run_one`; Python >= 3.12.

    Items go to a stac-geoparquet file (rustac); DuckDB's extensions come from the
    ``rustac-duckdb-extensions`` wheel, so nothing is downloaded at run time
    (rustac 0.9.9 embeds the DuckDB version that wheel was built for).
    """
    import dask
    import numpy as np
    import rustac
    import rustac_duckdb_extensions
    import lazycogs
    import xarray as xr

    def job(items: list[dict], dest: str):
        parquet = dest + ".parquet"
        rustac.write_sync(parquet, items)
        client = rustac.DuckdbClient(extension_directory=rustac_duckdb_extensions.extension_directory(),
                                     install_extensions=False)
        a = items[0]["assets"]["B04"]
        t, (h, w) = a["proj:transform"], a["proj:shape"]
        kwargs = {}
        if items[0]["assets"]["B04"]["href"].startswith("s3://"):
            from obstore.store import S3Store

            bucket = items[0]["assets"]["B04"]["href"].split("/")[2]
            kwargs["store"] = S3Store(bucket, endpoint="http://" + os.environ["AWS_S3_ENDPOINT"],
                                      access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                                      secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                                      client_options={"allow_http": True})
            kwargs["path_from_href"] = lambda href: href.split("/", 3)[3]
        da = lazycogs.open(parquet, bbox=(t[2], t[5] + t[4] * h, t[2] + t[0] * w, t[5]), crs="EPSG:32633",
                           resolution=10, bands=["B04", "B08", "SCL"], chunks={"time": -1, "y": chunk, "x": chunk},
                           duckdb_client=client, **kwargs)

        def decode(key: str):
            band = items[0]["assets"][key]["raster:bands"][0]
            raw = da.sel(band=key)
            values = raw.astype(np.float32) * np.float32(band.get("scale", 1)) + np.float32(band.get("offset", 0))
            return values.where(raw != band.get("nodata", 0))

        red, nir, scl = decode("B04"), decode("B08"), da.sel(band="SCL")
        result = ((nir - red) / (nir + red)).where(~scl.isin((3, 8, 9, 10))).median("time").rename("ndvi_median")
        ds = result.reset_coords(drop=True).to_dataset().drop_attrs()
        for name in ds.variables:
            ds[name].attrs.clear()
            ds[name].encoding.clear()
        return ds.to_zarr(dest, mode="w-", zarr_format=3, consolidated=True, compute=False)

    import warnings

    warnings.filterwarnings("ignore")
    with dask.config.set(scheduler="threads", num_workers=threads):
        warm = out + ".warm"
        shutil.rmtree(warm, ignore_errors=True)
        dask.compute(job(_item_dicts(catalog, None), warm))
        shutil.rmtree(warm, ignore_errors=True)
        items = _item_dicts(catalog, base)
        shutil.rmtree(out, ignore_errors=True)
        c0, t0 = _cpu(), time.perf_counter()
        dask.compute(job(items, out))
        return {"wall": time.perf_counter() - t0, "cpu": _cpu() - c0}


# --------------------------------------------------------------------------- the whole benchmark


@dataclass
class Sample:
    wall: float
    cpu: float
    stats: ProxyStats | None


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)

    def add(self, library: str, setting: str, sample: Sample) -> None:
        self.samples.setdefault((library, setting), []).append(sample)

    def median(self, library: str, setting: str, what: str) -> float | None:
        got = self.samples.get((library, setting), [])
        values = [getattr(s, what) if what in ("wall", "cpu") else getattr(s.stats, what) for s in got
                  if what in ("wall", "cpu") or s.stats is not None]
        return statistics.median(values) if values else None


def _upload(server, root: str, prefix: str) -> int:
    import obstore
    from obstore.store import S3Store

    store = S3Store(server.bucket, endpoint=server.endpoint, access_key_id=server.access_key,
                    secret_access_key=server.secret_key, region="us-east-1", client_options={"allow_http": True})
    n = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".tif"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as fh:
                    obstore.put(store, f"{prefix}/{os.path.relpath(path, root)}", fh.read())
                n += 1
    return n


def _child(library: str, catalog: str, base: str | None, out: str, chunk: int, threads: int, env: dict,
           python: str | None = None) -> dict:
    cmd = [python or sys.executable, os.path.abspath(__file__), "--one", library, "--catalog", catalog, "--out", out,
           "--chunk", str(chunk), "--threads", str(threads)] + (["--base", base] if base else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"{library} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


#: How to make an interpreter for --lazycogs-python (PyPI only; nothing is downloaded at run time).
LAZYCOGS_ENV = ("python3.12 -m venv /tmp/lazycogs-venv && /tmp/lazycogs-venv/bin/pip install lazycogs==0.7.0 "
                "rustac==0.9.9 rustac-duckdb-extensions==1.5.1.post0 'dask[array]' zarr")


def lazycogs_status(python: str | None) -> str | None:
    """None when lazycogs can run under ``python``, else why it is skipped."""
    if not python:
        return ("lazycogs needs Python >= 3.12 (this venv's is "
                f"{sys.version_info.major}.{sys.version_info.minor}) and DuckDB extensions that its default version "
                f"downloads at run time; make an environment pinned to work offline ({LAZYCOGS_ENV}) and pass "
                "--lazycogs-python /tmp/lazycogs-venv/bin/python")
    probe = subprocess.run(
        [python, "-c", "import lazycogs, rustac, rustac_duckdb_extensions as e, dask, zarr; "
                       "rustac.DuckdbClient(extension_directory=e.extension_directory(), install_extensions=False)"],
        capture_output=True, text=True)
    return None if probe.returncode == 0 else f"{python} cannot run lazycogs offline: {probe.stderr.strip()[-300:]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delays", default="0,20,40,80", help="ms per request, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--dates", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=0, help="default: size / 2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-disk", action="store_true", help="skip the local-disk setting")
    ap.add_argument("--direct", action="store_true", help="also read from SeaweedFS without the proxy")
    ap.add_argument("--lifetime", type=float, default=3600.0, help="the proxy stops itself after this many s")
    ap.add_argument("--lazycogs-python", default=None)
    ap.add_argument("--check-cog", action="store_true")
    ap.add_argument("--json", default=None, help="also write the samples here")
    ap.add_argument("--before", default=None,
                    help="a checkout of geoproc as it was: also runs it (as geoproc-before), interleaved")
    # one run, in a child process
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--catalog", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    chunk = args.chunk or args.size // 2
    if not args.one:
        # this checkout's geoproc and tests.services (each run gets its geoproc from PYTHONPATH, set below)
        sys.path.insert(1, os.path.dirname(HERE))
        # a SIGTERM still stops SeaweedFS and the proxy (the finally blocks run)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.one == "lazycogs":
        print(json.dumps(run_lazycogs(args.catalog, args.base, args.out, chunk, args.threads)))
        return 0
    if args.one:
        print(json.dumps(run_one(args.one, args.catalog, args.base, args.out, chunk, args.threads)))
        return 0

    from bench_load import compare_outputs

    catalog = cached_archive(args.size, args.dates)
    root = os.path.dirname(catalog)
    tifs = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".tif"))
    bad = {p: why for p in tifs if (why := cog_layout(p))}
    cog_line = (f"COG layout: all {len(tifs)} files of the archive are laid out as COGs (GDAL ghost area "
                "LAYOUT=IFDS_BEFORE_DATA, every IFD before the tiles, overviews smallest first, tiles in order)"
                if not bad else f"COG layout: {len(bad)} of {len(tifs)} files are not COGs: {bad}")
    print(cog_line, flush=True)
    if args.check_cog:
        return 0 if not bad else 1

    from tests.services.seaweedfs import seaweedfs

    libraries = [s for s in args.libraries.split(",") if s]
    why_not_lazycogs = lazycogs_status(args.lazycogs_python)
    if why_not_lazycogs is None:
        libraries.append("lazycogs")
    if args.before:
        libraries.insert(1, "geoproc-before")
    print(f"lazycogs: skipped: {why_not_lazycogs}" if why_not_lazycogs else f"lazycogs: with {args.lazycogs_python}",
          flush=True)
    delays = [float(d) for d in args.delays.split(",") if d]
    settings = ([] if args.no_disk else ["disk"]) + (["direct"] if args.direct else []) + [f"{d:g} ms" for d in delays]
    results = Results()
    shutil.rmtree(OUTDIR, ignore_errors=True)
    os.makedirs(OUTDIR)
    with seaweedfs() as server, LatencyProxy(server.port, args.lifetime) as proxy:
        prefix = "archive"
        n = _upload(server, root, prefix)
        print(f"uploaded {n} files to {server.endpoint}/{server.bucket}/{prefix}; proxy on {proxy.endpoint}", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GDAL_", "CPL_"))}
        env.update({"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                    "AWS_REGION": "us-east-1", "AWS_S3_ENDPOINT": proxy.endpoint, "AWS_HTTPS": "NO",
                    "AWS_VIRTUAL_HOSTING": "FALSE", "NO_PROXY": "127.0.0.1,localhost",
                    "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), env.get("PYTHONPATH", "")])})
        base = f"s3://{server.bucket}/{prefix}"
        for r in range(args.rounds):
            for setting in settings:
                for library in libraries:
                    disk, direct = setting == "disk", setting == "direct"
                    proxy.delay = 0.0 if disk or direct else float(setting.split()[0]) / 1000
                    proxy.take_log()
                    run_env = {**env, "AWS_S3_ENDPOINT": f"127.0.0.1:{server.port}"} if direct else env
                    if library == "geoproc-before":
                        run_env = {**run_env, "PYTHONPATH": os.pathsep.join([HERE, os.path.abspath(args.before)])}
                    got = _child(library.replace("-before", ""), catalog, None if disk else base, os.path.join(OUTDIR, f"{library}.zarr"),
                                 chunk, args.threads, run_env,
                                 args.lazycogs_python if library == "lazycogs" else None)
                    st = None if disk or direct else stats(proxy.take_log(), proxy.delay)
                    results.add(library, setting, Sample(got["wall"], got["cpu"], st))
                    rt = st.round_trips(proxy.delay) if st else None
                    print(f"round {r + 1} {setting:6s} {library:10s} wall {got['wall']:6.2f} s  cpu {got['cpu']:6.2f} s"
                          + (f"  requests {st.requests}  in flight <= {st.max_in_flight}  "
                             f"MB {st.nbytes / 1e6:.1f}" + (f"  serial round trips {rt:.0f}" if rt else "") if st else ""),
                          flush=True)
    rows, agree = compare_outputs(OUTDIR) if set(LIBRARIES) <= set(libraries) else ([], True)
    if "lazycogs" in libraries and "geoproc" in libraries:
        rows.append(compare_lazycogs(OUTDIR))
    print(table(results, libraries, settings))
    print(f"\n{cog_line}")
    print(f"lazycogs: skipped: {why_not_lazycogs}" if why_not_lazycogs else "lazycogs: run")
    for row in rows:
        print("  " + " | ".join(str(c) for c in row))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({f"{k[0]}|{k[1]}": [s.__dict__ | {"stats": s.stats.__dict__ if s.stats else None} for s in v]
                       for k, v in results.samples.items()}, fh, indent=1)
    return 0 if agree else 1


def compare_lazycogs(outdir: str) -> list[str]:
    """geoproc's output against lazycogs': the largest difference and the share of NaN pixels that differ."""
    import numpy as np
    import xarray as xr

    a = xr.open_zarr(os.path.join(outdir, "geoproc.zarr"))["ndvi_median"].values
    b = xr.open_zarr(os.path.join(outdir, "lazycogs.zarr"))["ndvi_median"].values
    if a.shape != b.shape:
        return ["geoproc vs lazycogs", "grids differ", f"{a.shape} vs {b.shape}"]
    both = np.isfinite(a) & np.isfinite(b)
    diff = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
    return ["geoproc vs lazycogs", f"max |diff| {diff:.2e}", f"NaN mismatch {(np.isnan(a) != np.isnan(b)).mean():.2%}"]


def table(results: Results, libraries: list[str], settings: list[str]) -> str:
    lines = ["| library | setting | wall s | CPU s | requests | serial round trips | in flight at most | vs geoproc |",
             "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for setting in settings:
        delay = 0.0 if setting in ("disk", "direct") else float(setting.split()[0]) / 1000
        ref = results.median("geoproc", setting, "wall")
        for library in libraries:
            wall = results.median(library, setting, "wall")
            cpu = results.median(library, setting, "cpu")
            req = results.median(library, setting, "requests")
            busy = results.median(library, setting, "waiting_s")
            most = results.median(library, setting, "max_in_flight")
            rts = f"{busy / delay:.0f}" if busy is not None and delay else "-"
            ratio = f"{wall / ref:.2f}x" if ref and wall else "-"
            lines.append(f"| {library} | {setting} | {wall:.2f} | {cpu:.2f} | {'-' if req is None else f'{req:.0f}'} | "
                         f"{rts} | {'-' if most is None else f'{most:.0f}'} | {ratio} |")
    zero = results.median("geoproc", "0 ms", "wall")
    disk = results.median("geoproc", "disk", "wall")
    if zero:
        for setting in settings:
            if setting in ("disk", "direct", "0 ms"):
                continue
            delay = float(setting.split()[0]) / 1000
            wall = results.median("geoproc", setting, "wall")
            peers = [w for lib in libraries if not lib.startswith("geoproc")
                     if (w := results.median(lib, setting, "wall")) is not None]
            line = (f"\ngeoproc at {setting}: {wall:.2f} s; bound (0 ms wall + 2 round trips) {zero + 2 * delay:.2f} s, "
                    f"ratio {wall / (zero + 2 * delay):.2f}")
            if disk:
                line += f"; bound from local disk ({disk:.2f} s + 2 round trips) ratio {wall / (disk + 2 * delay):.2f}"
            if peers:
                line += f"; fastest peer {min(peers):.2f} s = {min(peers) / wall:.2f}x geoproc's time"
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
