"""Read the pixels of assets onto a chunk's grid, and fuse items of one time slot.

The loader's dask tasks call :func:`read_chunk`: one call fills one output
chunk, shape ``(time, height, width)``, for one band, reading only the assets
that intersect the chunk. Each asset is read either as a plain window, when the
file's pixels line up with the output grid (same CRS, shared pixel edges, each
file pixel covering a whole k x k block of output pixels: k = 1, or k > 1 with
nearest resampling, e.g. 20 m SCL onto 10 m), or through GDAL's warper
(reprojection, other resampling), with an exact coordinate transform.

Knows how to decode values (nodata, ``raster:bands`` scale and offset) but no
algorithm.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from affine import Affine

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import AssetReadError, InvalidArgumentError
from ..grid import ALIGN_TOLERANCE, GridSpec, normalize_crs, transform_bounds
from ..kernels.mosaic import fuse_into
from .items import AssetSpec
from .report import record_failure

__all__ = ["DEFAULT_GDAL_ENV", "Reader", "RasterioReader", "ChunkTask", "Header", "read_chunk", "DEFAULT_READ_CONCURRENCY", "resampling_method", "is_transient", "shrink_factor"]

#: GDAL settings for reading COGs over HTTP/S3: no directory listing when a file
#: is opened, the header in one request, header and block caching, merged range
#: requests, and retries of transient HTTP errors. Override any of them with ``load(..., gdal_env={...})``.
DEFAULT_GDAL_ENV: dict[str, str | int | bool] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.vrt",
    # the first request of an open fetches this much: a COG's header (IFDs, tile offsets) in one round
    # trip, where GDAL's default 16 KB took two for the benchmark's files
    "GDAL_INGESTED_BYTES_AT_OPEN": 65_536,
    "VSI_CACHE": True,
    # per open file: reads of a chunk rarely come back to bytes already read (GDAL's block cache holds
    # decoded tiles), and up to MAX_OPEN_DATASETS files stay open between chunks
    "VSI_CACHE_SIZE": 5_000_000,
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 1,
    "GDAL_CACHEMAX": 256,
}

_RESAMPLING = {r.name: r for r in Resampling}
T = TypeVar("T")


def resampling_method(name: str) -> Resampling:
    """Map a resampling name (``nearest``, ``bilinear``, ``cubic``, ``average``, ...) to rasterio's enum."""
    try:
        return _RESAMPLING[name.lower()]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown resampling {name!r}; use one of {', '.join(sorted(_RESAMPLING))}"
        ) from None


class Reader(Protocol):
    """Reads one asset onto a grid. Implementations must be picklable."""

    def read(self, asset: AssetSpec, grid: GridSpec, resampling: str, overviews: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(raw values, valid mask)``, both of ``grid.shape``; values in the file's dtype.

        ``overviews``: a read at least 2x coarser than the file may use its overviews.
        """
        ...


# GDAL/HTTP messages of errors worth retrying: server errors, throttling, dropped connections
_TRANSIENT = re.compile(
    r"HTTP response code: (5\d\d|429)|timed? ?out|timeout|connection (reset|refused|aborted|closed)|"
    r"could not resolve|temporar|SSL|broken pipe|recv failure|send failure|Operation too slow|EOF",
    re.IGNORECASE,
)


_NON_CACHED = ":".join(f"/vsi{fs}/" for fs in ("curl", "s3", "gs", "az", "adls", "oss", "swift"))


def is_transient(exc: BaseException) -> bool:
    """True for read errors that a retry may cure (HTTP 5xx/429, timeouts, dropped connections)."""
    return bool(_TRANSIENT.search(str(exc)))


@dataclass(frozen=True)
class RasterioReader:
    """Reads assets with rasterio/GDAL under a GDAL configuration.

    Attributes
    ----------
    gdal_env
        GDAL configuration options applied around every read.
    patch_url
        Called on every href just before it is opened (at read time, on the
        worker), e.g. to sign URLs with a short-lived token. Must be picklable.
    retries
        Further attempts after a transient error (HTTP 5xx/429, timeout,
        dropped connection), with exponential backoff. Permanent errors (missing
        file, not a raster) are not retried.
    backoff
        Seconds before the first retry; doubled each time, at most 30 s.
    """

    gdal_env: Mapping[str, object] = field(default_factory=lambda: dict(DEFAULT_GDAL_ENV))
    patch_url: Callable[[str], str] | None = None
    retries: int = 3
    backoff: float = 0.5

    def read(self, asset: AssetSpec, grid: GridSpec, resampling: str, overviews: bool = True) -> tuple[np.ndarray, np.ndarray]:
        method = resampling_method(resampling)
        env_key = tuple(sorted((k, str(v)) for k, v in self.gdal_env.items()))
        # a retry opens afresh (and keeps nothing): the cached dataset may be what failed
        return self._retrying(asset, lambda href, attempt: _read(href, asset, grid, method, overviews, None if attempt else env_key))

    def header(self, asset: AssetSpec) -> Header:
        """The file's grid and data type, read from its header (with the same retries as reads)."""
        return self._retrying(asset, lambda href, attempt: _header(href, asset))

    def _retrying(self, asset: AssetSpec, action: Callable[[str, int], T]) -> T:
        attempt = 0
        while True:
            href = self.patch_url(asset.href) if self.patch_url else asset.href
            env = dict(self.gdal_env)
            if attempt:
                # GDAL caches a failed /vsicurl/ or /vsis3/ open for the life of the process, so a
                # plain retry never reaches the server again (rasterio issue #2119); bypass it
                env["CPL_VSIL_CURL_NON_CACHED"] = _NON_CACHED
            try:
                with rasterio.Env(**env):
                    return action(href, attempt)
            except (RasterioError, OSError) as exc:
                failure = exc
            if attempt < self.retries and is_transient(failure):
                time.sleep(min(30.0, self.backoff * 2**attempt))
                attempt += 1
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            # raised outside the except block, so it carries no GDAL exception as context: distributed
            # pickles the whole chain, and rasterio's exceptions do not unpickle, which would turn this
            # error into a bare Exception on the client
            raise AssetReadError(
                f"cannot read item {asset.item_id!r} asset {asset.key!r} at {asset.href}{tries}: {failure}. "
                "Check that the file exists and is readable with these credentials, or pass "
                "on_error='fill' to fill it with nodata and list it in geoproc.read_report(ds)"
            )


@dataclass(frozen=True)
class Header:
    """What a file header says about one band: grid, data type and nodata."""

    crs: str | None
    transform: Affine
    shape: tuple[int, int]
    dtype: str
    nodata: float | None


def _header(href: str, asset: AssetSpec) -> Header:
    with rasterio.open(href) as src:
        _check_band(src, asset)
        crs = None if src.crs is None else _source_crs(src, asset)
        return Header(crs, src.transform, (src.height, src.width), src.dtypes[asset.band_index - 1], src.nodata)


def _check_band(src, asset: AssetSpec) -> None:
    if not 1 <= asset.band_index <= src.count:
        raise AssetReadError(
            f"item {asset.item_id!r} asset {asset.key!r} at {asset.href} has {src.count} band(s), "
            f"so band {asset.band_index} ({asset.band!r}) does not exist; ask for '{asset.key}.1' .. '{asset.key}.{src.count}'"
        )


def _read(href: str, asset: AssetSpec, grid: GridSpec, method: Resampling, overviews: bool, env_key: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """Read through the process's open datasets (``env_key`` None: open afresh, keep nothing)."""
    with _OPEN.checkout(href, None, env_key) as src:
        _check_band(src, asset)
        level = _overview_level(src, asset, grid) if overviews and _may_shrink(asset, grid) else None
        if level is None:
            return _read_open(src, asset, grid, method)
    with _OPEN.checkout(href, level, env_key) as src:
        return _read_open(src, asset, grid, method)


def _may_shrink(asset: AssetSpec, grid: GridSpec) -> bool:
    """False when the item's metadata shows the read is less than a 2x shrink, so no overview can serve it.

    Saves asking the file for its overviews (for a file whose overview IFDs are not in the first
    bytes, a request). Unplaced assets (no ``proj:`` grid) are always asked.
    """
    if not asset.placed or asset.transform.b or asset.transform.d:
        return True
    try:
        shrink = shrink_factor(grid, asset.crs, abs(asset.transform.a))
    except Exception:  # a CRS that PROJ cannot transform here: let the file decide, as before
        return True
    return shrink * (1 + 1e-9) >= 2


class _OpenDatasets:
    """Datasets kept open in this process between reads, so chunk tasks do not reopen (and refetch) headers.

    Safe with GDAL's threading rules: a dataset is used by one thread at a time (checked out, then
    returned), and a thread that finds none idle opens another. Concurrent first opens of one file
    wait for each other, so the second finds the header in GDAL's cache of downloaded ranges
    instead of fetching it again. Bounded: at most :data:`MAX_OPEN_DATASETS` idle datasets, the
    least recently used closed first; a dataset that failed a read is closed, never reused; a
    retry (``env_key`` None) opens afresh. Keyed by href (after ``patch_url``), overview level and
    the GDAL configuration. Dropped in a forked child.
    """

    def __init__(self, size: int):
        self.size = size
        self._idle: OrderedDict[tuple, list] = OrderedDict()
        self._count = 0
        self._gates: dict[tuple, list] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def checkout(self, href: str, level: int | None, env_key: tuple | None) -> Iterator:
        kwargs = {} if level is None else {"overview_level": level}
        if env_key is None or self.size <= 0:
            with rasterio.open(href, **kwargs) as src:
                yield src
            return
        key = (href, level, env_key, _local_version(href))
        src = self._take(key) or self._open_once(key, href, kwargs)
        try:
            yield src
        except BaseException:
            src.close()
            raise
        self._give(key, src)

    def _take(self, key: tuple):
        with self._lock:
            idle = self._idle.get(key)
            if not idle:
                return None
            src = idle.pop()
            if not idle:
                del self._idle[key]
            self._count -= 1
            return src

    def _open_once(self, key: tuple, href: str, kwargs: dict):
        with self._lock:
            gate = self._gates.setdefault(key, [threading.Lock(), 0])
            gate[1] += 1
        try:
            with gate[0]:
                return self._take(key) or rasterio.open(href, **kwargs)
        finally:
            with self._lock:
                gate[1] -= 1
                if not gate[1]:
                    del self._gates[key]

    def _give(self, key: tuple, src) -> None:
        evicted = []
        with self._lock:
            self._idle.setdefault(key, []).append(src)
            self._idle.move_to_end(key)
            self._count += 1
            while self._count > self.size:
                old_key, old = next(iter(self._idle.items()))
                evicted.append(old.pop(0))
                if not old:
                    del self._idle[old_key]
                self._count -= 1
        for src in evicted:
            src.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle, self._count = self._idle, OrderedDict(), 0
        for sources in idle.values():
            for src in sources:
                src.close()


def _local_version(href: str) -> tuple[int, int] | None:
    """``(mtime, size)`` of a local file, so a file replaced in place is opened again; None for URLs."""
    if "://" in href and not href.startswith("file://") or href.startswith("/vsi"):
        return None
    try:
        st = os.stat(href[7:] if href.startswith("file://") else href)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


#: Idle datasets kept open per process (each holds its header and up to ``VSI_CACHE_SIZE`` bytes).
MAX_OPEN_DATASETS = 48
_OPEN = _OpenDatasets(MAX_OPEN_DATASETS)


def shrink_factor(grid: GridSpec, src_crs: str, src_res: float) -> float:
    """How many source pixels one output pixel spans, measured in the source CRS."""
    if src_crs == grid.crs:
        out_px = grid.transform.a
    else:
        b = transform_bounds(grid.bounds, grid.crs, src_crs)
        out_px = min((b[2] - b[0]) / grid.width, (b[3] - b[1]) / grid.height)
    return out_px / src_res


def _overview_level(src, asset: AssetSpec, grid: GridSpec) -> int | None:
    """The coarsest overview no coarser than the output pixels, if reading is a shrink by 2 or more."""
    factors = src.overviews(asset.band_index)
    if not factors:
        return None
    src_crs = _source_crs(src, asset)
    shrink = shrink_factor(grid, src_crs, abs(src.transform.a))
    level = None
    for i, f in enumerate(factors):
        if f <= shrink * (1 + 1e-9):
            level = i
    return level


def _on_lattice(value: float) -> int | None:
    nearest = round(value)
    return nearest if abs(value - nearest) < ALIGN_TOLERANCE else None


def _aligned(src_transform, grid: GridSpec, src_shape: tuple[int, int] = (1, 1)) -> tuple[int, int, int] | None:
    """``(row, col, k)`` when each file pixel covers exactly k x k output pixels, edges shared.

    ``row, col``: the output grid's top-left pixel, in output pixels from the file's
    corner. Nearest-neighbour sampling is then integer indexing: an output pixel
    centre never falls on a file pixel edge, so there are no ties to break.
    Edges count as shared within :data:`~geoproc.grid.ALIGN_TOLERANCE` pixels,
    across the whole file (a pixel size off by 1e-9 drifts over 10,000 pixels).
    """
    t, g = src_transform, grid.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        return None
    k = round(t.a / g.a)
    if k < 1 or round(t.e / g.e) != k:
        return None
    span = max(src_shape) * k  # output pixels across the file
    if abs(t.a / g.a - k) * span >= ALIGN_TOLERANCE or abs(t.e / g.e - k) * span >= ALIGN_TOLERANCE:
        return None
    col = _on_lattice((g.c - t.c) / g.a)
    row = _on_lattice((g.f - t.f) / g.e)
    if col is None or row is None:
        return None
    return row, col, k


def _source_crs(src, asset: AssetSpec) -> str:
    """The file's CRS; the item's ``proj:`` CRS when the file header has none (some NetCDF, plain TIFFs)."""
    if src.crs is None:
        if asset.crs is None:
            raise AssetReadError(
                f"item {asset.item_id!r} asset {asset.key!r} at {asset.href}: neither the file nor the item "
                "(proj:epsg/proj:code) gives a CRS, so its pixels cannot be placed; add proj:code to the item"
            )
        return asset.crs
    epsg = src.crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else normalize_crs(src.crs)


def _read_open(src, asset: AssetSpec, grid: GridSpec, resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
    h, w = grid.shape
    nodata = asset.nodata if asset.nodata is not None else src.nodata
    src_crs = _source_crs(src, asset)
    same_crs = src_crs == grid.crs
    aligned = _aligned(src.transform, grid, (src.height, src.width)) if same_crs else None
    if aligned is not None and (aligned[2] == 1 or resampling == Resampling.nearest):
        return _read_aligned(src, asset, grid, *aligned, nodata)
    with WarpedVRT(
        src,
        src_crs=rasterio.crs.CRS.from_user_input(src_crs),
        crs=rasterio.crs.CRS.from_user_input(grid.crs),
        transform=grid.transform,
        width=w,
        height=h,
        resampling=resampling,
        src_nodata=nodata,
        nodata=nodata,
        add_alpha=nodata is None,
        # near-exact transform: GDAL's default approximation (1/8 px) depends on the requested
        # window, so 0.03% of pixels changed with the chunk size. (tolerance=0 fails in rasterio
        # 1.4: "pfnTransformer is NULL".)
        tolerance=1e-9,
    ) as vrt:
        out = vrt.read(asset.band_index)
        if nodata is None:
            valid = vrt.read(vrt.count) > 0
        else:
            valid = ~_is_nodata(out, nodata)
    return out, valid


def _read_aligned(src, asset: AssetSpec, grid: GridSpec, row: int, col: int, k: int, nodata) -> tuple[np.ndarray, np.ndarray]:
    """Window read; for k > 1 (e.g. 20 m onto 10 m), each file pixel repeated k x k times."""
    h, w = grid.shape
    # output rows/cols inside the file, and the file pixels they fall in
    r_lo, r_hi = max(0, -row), min(h, src.height * k - row)
    c_lo, c_hi = max(0, -col), min(w, src.width * k - col)
    if k == 1 and (r_lo, r_hi, c_lo, c_hi) == (0, h, 0, w):  # the file covers the chunk: no copy
        out = src.read(asset.band_index, window=Window(col, row, w, h))
        return out, (~_is_nodata(out, nodata) if nodata is not None else np.ones((h, w), bool))
    out = np.zeros((h, w), dtype=src.dtypes[asset.band_index - 1])  # pixels outside the file stay invalid
    valid = np.zeros((h, w), dtype=bool)
    if r_lo < r_hi and c_lo < c_hi:
        sr0, sr1 = (row + r_lo) // k, (row + r_hi - 1) // k + 1
        sc0, sc1 = (col + c_lo) // k, (col + c_hi - 1) // k + 1
        win = src.read(asset.band_index, window=Window(sc0, sr0, sc1 - sc0, sr1 - sr0))
        if k > 1:
            # repeat each file pixel k times along both axes, then cut to the output rows/cols
            r_skip, c_skip = (row + r_lo) - sr0 * k, (col + c_lo) - sc0 * k
            win = np.repeat(np.repeat(win, k, axis=0), k, axis=1)[r_skip : r_skip + r_hi - r_lo, c_skip : c_skip + c_hi - c_lo]
        out[r_lo:r_hi, c_lo:c_hi] = win
        valid[r_lo:r_hi, c_lo:c_hi] = True
    if nodata is not None:
        valid &= ~_is_nodata(out, nodata)
    return out, valid


def _is_nodata(values: np.ndarray, nodata: float) -> np.ndarray:
    if np.isnan(nodata):
        return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    return values == nodata


@dataclass(frozen=True)
class ChunkTask:
    """Everything one dask task needs to fill one chunk of one band, except the assets themselves.

    A task refers to the assets its chunk intersects by their positions in the
    band's table of assets, which travels once per band (a graph key every task
    of the band depends on), not once per task: a task is a few hundred bytes
    plus four bytes per asset it reads, whatever the hrefs and metadata weigh.

    Attributes
    ----------
    grid
        The chunk's sub-grid.
    assets
        Positions, in the band's table of assets (one per item, in fuse order:
        by time slot, then acquisition time, then item id), of the assets
        intersecting the chunk within its time steps; in fuse order.
    times
        The output time step of each of those assets, counted from the chunk's
        first (non-decreasing).
    n_time
        Time steps of the chunk.
    dtype
        Output dtype (numpy name).
    fill
        Output value where no asset has a valid pixel.
    decode
        Apply ``scale``/``offset`` (the output is then float).
    resampling
        Resampling name for this band.
    overviews
        Reads at least 2x coarser than a file may use its overviews.
    on_error
        ``"raise"``: a failed read fails the task. ``"fill"``: the asset's
        pixels stay ``fill`` and the failure is recorded under ``report_token``.
    report_token
        Identifies the load in :mod:`geoproc.io.report`.
    """

    grid: GridSpec
    assets: np.ndarray
    times: np.ndarray
    n_time: int
    dtype: str
    fill: float
    decode: bool
    resampling: str
    overviews: bool = True
    on_error: str = "raise"
    report_token: str | None = None

    def slots(self, table: Sequence[AssetSpec]) -> Iterator[tuple[int, Sequence[AssetSpec]]]:
        """``(time step, assets in fuse order)`` for each step with at least one asset in the chunk."""
        if not len(self.assets):
            return
        starts = np.flatnonzero(np.diff(self.times, prepend=-1))
        ends = np.append(starts[1:], len(self.times))
        for a, b in zip(starts, ends):
            yield int(self.times[a]), [table[i] for i in self.assets[a:b]]


#: Reads of one chunk task in flight at once, by default (``load(..., read_concurrency=)``).
#: At 40 ms per request, eight overlapping reads bring a task of 24 assets from 24 to
#: about 3 sequential read times; on local disk the extra threads cost nothing measurable.
DEFAULT_READ_CONCURRENCY = 8

#: Threads of the per-process read pool: the sum over concurrent tasks of their reads in flight.
MAX_READ_THREADS = 64

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _read_pool() -> ThreadPoolExecutor:
    """The process's read pool (threads start on demand and are kept: GDAL's per-thread state stays warm)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(MAX_READ_THREADS, thread_name_prefix="geoproc-read")
        return _POOL


def _forget_pool_after_fork() -> None:
    # a forked child has none of the parent's threads, so the parent's pool would never run anything;
    # nor should it share the parent's open GDAL datasets
    global _POOL, _POOL_LOCK, _OPEN
    _POOL, _POOL_LOCK = None, threading.Lock()
    _OPEN = _OpenDatasets(MAX_OPEN_DATASETS)


os.register_at_fork(after_in_child=_forget_pool_after_fork)


class _Prefetch:
    """``(slot, asset, result getter)`` in fuse order, with up to ``concurrency`` reads started ahead."""

    def __init__(self, jobs: list, task: ChunkTask, reader: Reader, concurrency: int):
        self._jobs, self._task, self._reader, self._n = jobs, task, reader, concurrency
        self._next = 0
        self._ahead: deque = deque()  # (slot, asset, future)
        self._skip = -1  # a slot that is full: start no more of its reads
        self._pool = _read_pool()

    def skip_slot(self, t: int) -> None:
        self._skip = t
        for slot, _, fut in self._ahead:
            if slot == t:
                fut.cancel()

    def _fill(self) -> None:
        task = self._task
        while len(self._ahead) < self._n and self._next < len(self._jobs):
            t, asset = self._jobs[self._next]
            self._next += 1
            if t == self._skip:
                continue
            fut = self._pool.submit(self._reader.read, asset, task.grid, task.resampling, task.overviews)
            self._ahead.append((t, asset, fut))

    def __iter__(self) -> Iterator[tuple[int, AssetSpec, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
        self._fill()
        while self._ahead:
            t, asset, fut = self._ahead[0]
            yield t, asset, fut.result  # the caller waits for it (so at most n reads are in flight) ...
            self._ahead.popleft()
            self._fill()  # ... and only then is the next one started

    def close(self) -> None:
        """Cancel the reads not started yet (after an error, or at the end); running ones finish unheeded."""
        for _, _, fut in self._ahead:
            fut.cancel()
        self._ahead.clear()
        self._next = len(self._jobs)


def read_chunk(task: ChunkTask, table: Sequence[AssetSpec], reader: Reader,
               concurrency: int = DEFAULT_READ_CONCURRENCY) -> np.ndarray:
    """Fill one ``(time, y, x)`` chunk: read each slot's assets, fuse by first valid pixel.

    ``table`` is the band's table of assets, which ``task.assets`` index.

    Within a time slot the assets are tried in the order given; each output pixel
    takes the value of the first asset that has a valid (not nodata) pixel there.

    Up to ``concurrency`` reads are in flight at once (threads of a per-process
    pool; GDAL releases the GIL while it waits for the network or decompresses),
    in fuse order, and their results are fused in that same order in this
    thread, so the output is the sequential loop's, bit for bit. A slot whose
    pixels are all filled reads no further assets (reads already started are
    dropped), and only errors of reads that the sequential loop would have made
    count: they raise, or with ``on_error="fill"`` are recorded, from this
    thread (where a Dask worker can log them). At most ``concurrency`` results
    wait in memory.
    """
    h, w = task.grid.shape
    out = np.full((task.n_time, h, w), task.fill, dtype=task.dtype)
    filled = np.zeros(h * w, dtype=bool)
    jobs = [(t, asset) for t, assets in task.slots(table) for asset in assets]
    if concurrency > 1 and len(jobs) > 1:
        results = _Prefetch(jobs, task, reader, concurrency)
    else:
        results = ((t, asset, lambda asset=asset: reader.read(asset, task.grid, task.resampling, task.overviews)) for t, asset in jobs)
    current, full = -1, False
    try:
        for t, asset, result in results:
            if t != current:
                current, full = t, False
                filled[:] = False
            if full:
                continue  # the sequential loop stopped at the asset that filled the slot
            try:
                raw, valid = result()
            except AssetReadError as exc:
                if task.on_error != "fill":
                    raise
                record_failure(
                    task.report_token or "",
                    {"item_id": asset.item_id, "asset": asset.key, "href": asset.href, "error": str(exc)},
                )
                continue
            target = out[t].reshape(-1)
            n = fuse_into(target, filled, raw.reshape(-1), valid.reshape(-1), asset.scale, asset.offset, task.decode)
            full = n == h * w
            if full and isinstance(results, _Prefetch):
                results.skip_slot(t)
    finally:
        if isinstance(results, _Prefetch):
            results.close()
    return out
