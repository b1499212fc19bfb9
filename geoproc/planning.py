"""A dry run of a load: what would be read, how many tasks, how much memory, before anything is read."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._prepare import prepare
from .io.items import numpy_dtype
from .io.reader import shrink_factor

__all__ = ["LoadPlan", "plan", "task_memory", "check_task_memory", "IDLE_WORKER_BYTES", "PEAK_PER_TASK_BYTE"]

#: Memory of an idle worker process that has imported geoproc and run its kernels once (measured 407-436 MiB
#: with ``benchmarks/task_memory.py``; ~380 MiB on the issue's workers).
IDLE_WORKER_BYTES = 400 * 2**20
#: A region task's peak memory over its input chunks (``task_bytes``): the reads, plus the arrays that the
#: mask, the index and the composite make. Measured 1.5-1.9 for mask + NDVI + median (13.6-17.2 B per pixel
#: per date over 9 B of float32 red/nir and uint8 SCL: ``benchmarks/task_memory.py``).
PEAK_PER_TASK_BYTE = 2.0


@dataclass(frozen=True)
class LoadPlan:
    """The numbers of a load, from STAC metadata alone.

    Attributes
    ----------
    items, items_used
        Items given, and items that overlap the grid.
    bands
        Band names, and their output dtypes (``"unknown"`` where the metadata
        gives no data type: :func:`geoproc.load` reads one header per band and
        collection to learn it; estimates then assume 2 bytes per pixel).
    shape
        ``(time, y, x)`` of each band.
    crs, resolution, bounds
        The output grid.
    chunk
        Spatial chunk shape ``(y, x)``.
    time_chunk
        Time steps per chunk (the whole axis unless ``chunks`` gives ``"time"``).
    chunks, tasks
        Chunks of one band (spatial chunks x time chunks), and tasks of the
        load: one per chunk and band (dask fuses a chunk's bands into the steps
        that use them together).
    reads
        Asset windows read, summed over tasks.
    bytes_to_read
        Estimated uncompressed bytes of those windows (at the overview that
        would be used; whole internal tiles make the real figure somewhat larger).
    bytes_out
        Bytes of the loaded arrays.
    chunk_bytes
        Memory of the largest chunk of one band.
    task_bytes
        Memory of one chunk of every band: what one fused task (read, mask,
        index, reduce) holds at least, whatever the number of items or the
        size of the area. Steps that make new arrays add to it (about one
        float32 chunk each).
    peak_task_bytes
        The peak memory of one region task of a mask + index + composite job:
        ``task_bytes`` times :data:`PEAK_PER_TASK_BYTE` (measured). A worker
        needs :data:`IDLE_WORKER_BYTES` plus this per thread.
    """

    items: int
    items_used: int
    bands: dict[str, str]
    shape: tuple[int, int, int]
    crs: str
    resolution: tuple[float, float]
    bounds: tuple[float, float, float, float]
    chunk: tuple[int, int]
    time_chunk: int
    chunks: int
    tasks: int
    reads: int
    bytes_to_read: int
    bytes_out: int
    chunk_bytes: int
    task_bytes: int
    peak_task_bytes: int = 0

    def __str__(self) -> str:
        t, h, w = self.shape
        return "\n".join(
            [
                f"items       {self.items_used} of {self.items} overlap the grid",
                f"bands       {', '.join(f'{b} ({d})' for b, d in self.bands.items())}",
                f"grid        {h} x {w} px at {self.resolution[0]:g} in {self.crs}, {t} time slices",
                f"chunks      {self.chunks} of {self.chunk[0]} x {self.chunk[1]} px "
                f"({'time whole' if self.time_chunk >= t else f'{self.time_chunk} time steps'}); {self.tasks} load tasks",
                f"reads       {self.reads} asset windows, about {_size(self.bytes_to_read)} uncompressed",
                f"output      {_size(self.bytes_out)}; largest chunk of one band {_size(self.chunk_bytes)}",
                f"memory      {_size(self.task_bytes)} per task (one chunk of every band), peak about "
                f"{_size(self.peak_task_bytes)} with mask + index + composite",
            ]
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _itemsize(data_type: str | None, band) -> int:
    """Bytes per stored pixel of one asset: its declared data type, else the band's output estimate."""
    dtype = numpy_dtype(data_type)
    return dtype.itemsize if dtype is not None else _out_itemsize(band)


def plan(items, bands, **load_args) -> LoadPlan:
    """Describe what :func:`geoproc.load` would do with these arguments, without reading pixels.

    Takes the same arguments as :func:`geoproc.load`. Opens no file (``probe``
    defaults to ``False`` here): what the metadata does not say is reported as
    unknown, so a plan needs no network and costs the same for 10 or 10,000 items.

    Examples
    --------
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> print(geoproc.plan(items, ["red", "nir", "scl"], resolution=10, chunks=128))
    items       18 of 18 overlap the grid
    bands       red (float32), nir (float32), scl (uint8)
    grid        138 x 356 px at 10 in EPSG:32633, 6 time slices
    chunks      6 of 128 x 128 px (time whole); 18 load tasks
    reads       180 asset windows, about 1.2 MiB uncompressed
    output      2.5 MiB; largest chunk of one band 384.0 KiB
    memory      864.0 KiB per task (one chunk of every band), peak about 1.7 MiB with mask + index + composite

    A long series in per-date chunks (each task reads and holds one date):

    >>> p = geoproc.plan(items, ["red", "nir"], resolution=10, chunks={"time": 1})
    >>> p.time_chunk, p.chunk, p.task_bytes
    (1, (138, 356), 393024)
    """
    probe = load_args.pop("probe", False)
    reader = load_args.pop("reader", None)
    if probe and reader is None:
        from .loader import default_reader

        reader = default_reader(load_args.get("gdal_env"), load_args.get("patch_url"), load_args.get("retries", 3))
    for name in ("patch_url", "retries", "gdal_env", "on_error", "read_concurrency"):
        load_args.pop(name, None)
    prep = prepare(items, bands, reader=reader, probe=probe, for_plan=True, **load_args)
    grid = prep.grid
    n_time = len(prep.times)
    reads, nbytes = 0, 0.0
    for band in prep.bands:
        r, b = _band_reads(band, grid)
        reads += r
        nbytes += b
    nt, ny, nx = prep.block_counts()
    cy, cx = prep.chunk
    tc = min(prep.time_chunk or n_time, n_time)
    return LoadPlan(
        items=prep.n_items,
        items_used=len(prep.item_ids),
        bands={b.name: b.dtype.name if b.dtype_known else "unknown" for b in prep.bands},
        shape=(n_time, grid.height, grid.width),
        crs=grid.crs,
        resolution=grid.resolution,
        bounds=grid.bounds,
        chunk=prep.chunk,
        time_chunk=tc,
        chunks=nt * ny * nx,
        tasks=nt * ny * nx * len(prep.bands),
        reads=reads,
        bytes_to_read=round(nbytes),
        bytes_out=int(sum(n_time * grid.height * grid.width * _out_itemsize(b) for b in prep.bands)),
        chunk_bytes=int(max(tc * cy * cx * _out_itemsize(b) for b in prep.bands)),
        task_bytes=int(sum(tc * cy * cx * _out_itemsize(b) for b in prep.bands)),
        peak_task_bytes=int(PEAK_PER_TASK_BYTE * sum(tc * cy * cx * _out_itemsize(b) for b in prep.bands)),
    )


def task_memory(ds) -> int:
    """The peak memory of one region task over the loaded ``ds`` (a :func:`geoproc.load` Dataset): its
    largest chunk of every band times :data:`PEAK_PER_TASK_BYTE`.

    Examples
    --------
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> ds = geoproc.load(items, ["red", "nir"], resolution=10, chunks=64)
    >>> task_memory(ds)  # 6 dates x 64 x 64 px x 2 float32 bands x 2
    393216
    """
    total = 0
    for var in ds.data_vars.values():
        chunks = var.data.chunks if var.chunks is not None else tuple((n,) for n in var.shape)
        total += math.prod(max(c) for c in chunks) * var.dtype.itemsize
    return int(PEAK_PER_TASK_BYTE * total)


def check_task_memory(ds, memory_limit: int | None, threads: int = 1) -> int:
    """Refuse, before compute, a job whose region tasks would not fit a worker's memory.

    A worker holds :data:`IDLE_WORKER_BYTES` plus, per thread, one task's peak (:func:`task_memory`); past
    distributed's ``terminate`` fraction of ``memory_limit`` (95%) its nanny kills it. Returns the task's
    peak; raises :class:`geoproc.errors.InvalidArgumentError` naming a spatial chunk size that fits.

    Examples
    --------
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=512)
    >>> check_task_memory(ds, 2 * 2**30)  # fits a 2 GiB worker: the task's peak
    5305824
    >>> check_task_memory(ds, 420 * 2**20)
    Traceback (most recent call last):
    geoproc.errors.InvalidArgumentError: a region task needs about 5.1 MiB (138 x 356 px chunks) on top of an idle worker's 400.0 MiB, more than the workers' memory limit of 420.0 MiB allows: use smaller chunks or give each worker more memory
    """
    import dask

    from .errors import InvalidArgumentError

    peak = task_memory(ds)
    if not memory_limit:
        return peak
    fraction = dask.config.get("distributed.worker.memory.terminate", 0.95) or 1.0
    usable = memory_limit * fraction - IDLE_WORKER_BYTES
    if peak * threads <= usable:
        return peak
    var = next(iter(ds.data_vars.values()))
    cy, cx = (max(var.chunks[var.dims.index(d)]) for d in ("y", "x"))
    # the spatial chunk that fits with a margin (the pause fraction, 80%), in steps of 64 px
    target = max(memory_limit * 0.8 - IDLE_WORKER_BYTES, 0) / threads
    side = int(math.sqrt(target / peak * cy * cx)) // 64 * 64 if target > 0 else 0
    fix = (f"load with chunks={side} (a task then needs about {_size(peak * side * side / (cy * cx))}) "
           if side >= 64 else "")
    raise InvalidArgumentError(
        f"a region task needs about {_size(peak)} ({cy} x {cx} px chunks) on top of an idle worker's "
        f"{_size(IDLE_WORKER_BYTES)}{f' with {threads} threads' if threads > 1 else ''}, more than the workers' "
        f"memory limit of {_size(memory_limit)} allows: {fix or 'use smaller chunks '}or give each worker more memory"
    )


def _band_reads(band, grid) -> tuple[int, float]:
    """Asset windows one band reads, and their uncompressed bytes.

    Chunks partition the grid, so the windows of one asset add up to its footprint within the grid: the
    bytes come per asset, and the count of windows from the chunk index, whatever the number of chunks.
    """
    counts = np.bincount(band.index.hit, minlength=len(band.table))  # windows per asset
    fp = band.footprints
    gx0, gy0, gx1, gy1 = grid.bounds
    with np.errstate(invalid="ignore"):
        wx = np.clip(np.minimum(fp[:, 2], gx1) - np.maximum(fp[:, 0], gx0), 0, None)
        wy = np.clip(np.minimum(fp[:, 3], gy1) - np.maximum(fp[:, 1], gy0), 0, None)
    nbytes = 0.0
    shrinks: dict[tuple, float] = {}
    for i, a in enumerate(band.table):
        if a is None or not counts[i]:
            continue
        if a.placed:
            key = (a.crs, a.resolution)
            if key not in shrinks:  # the overview a read would use (COG overviews halve the resolution level by level)
                shrinks[key] = shrink_factor(grid, a.crs, a.resolution)
            shrink = shrinks[key]
            ovr = 2 ** int(math.floor(math.log2(shrink) + 1e-9)) if shrink >= 2 else 1
            size = (fp[i, 2] - fp[i, 0]) / a.shape[1] * ovr  # a read pixel, in output units
        else:  # no proj: metadata: count output pixels
            size = grid.transform.a
        nbytes += (wx[i] / size) * (wy[i] / size) * _itemsize(a.data_type, band)
    return int(counts.sum()), nbytes


def _out_itemsize(band) -> int:
    return band.dtype.itemsize if band.dtype_known else 2
