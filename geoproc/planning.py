"""A dry run of a load: what would be read, how many tasks, how much memory, before anything is read."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._prepare import prepare
from .io.items import numpy_dtype
from .io.reader import shrink_factor

__all__ = ["LoadPlan", "plan"]


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
        Spatial chunk shape ``(y, x)``; time is one chunk.
    chunks, tasks
        Spatial chunks, and tasks of the load: one per chunk and band (dask
        fuses a chunk's bands into the steps that use them together).
    reads
        Asset windows read, summed over tasks.
    bytes_to_read
        Estimated uncompressed bytes of those windows (at the overview that
        would be used; whole internal tiles make the real figure somewhat larger).
    bytes_out
        Bytes of the loaded arrays.
    chunk_bytes
        Memory of the largest chunk of one band (whole time axis).
    """

    items: int
    items_used: int
    bands: dict[str, str]
    shape: tuple[int, int, int]
    crs: str
    resolution: tuple[float, float]
    bounds: tuple[float, float, float, float]
    chunk: tuple[int, int]
    chunks: int
    tasks: int
    reads: int
    bytes_to_read: int
    bytes_out: int
    chunk_bytes: int

    def __str__(self) -> str:
        t, h, w = self.shape
        return "\n".join(
            [
                f"items       {self.items_used} of {self.items} overlap the grid",
                f"bands       {', '.join(f'{b} ({d})' for b, d in self.bands.items())}",
                f"grid        {h} x {w} px at {self.resolution[0]:g} in {self.crs}, {t} time slices",
                f"chunks      {self.chunks} of {self.chunk[0]} x {self.chunk[1]} px (time whole); {self.tasks} load tasks",
                f"reads       {self.reads} asset windows, about {_size(self.bytes_to_read)} uncompressed",
                f"output      {_size(self.bytes_out)}; largest chunk of one band {_size(self.chunk_bytes)}",
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
        for task in band.tasks.values():
            cb = task.grid.bounds
            for pos in task.assets:
                a, fp = band.table[pos], band.footprints[pos]
                ix = max(0.0, min(cb[2], fp[2]) - max(cb[0], fp[0]))
                iy = max(0.0, min(cb[3], fp[3]) - max(cb[1], fp[1]))
                if ix <= 0 or iy <= 0:
                    continue
                if a.placed:
                    # the overview a read would use (COG overviews halve the resolution level by level)
                    shrink = shrink_factor(task.grid, a.crs, a.resolution)
                    ovr = 2 ** int(math.floor(math.log2(shrink) + 1e-9)) if shrink >= 2 else 1
                    src_px = (fp[2] - fp[0]) / a.shape[1]  # a source pixel, in output units
                else:  # no proj: metadata: count output pixels
                    ovr, src_px = 1, task.grid.transform.a
                px = (ix / (src_px * ovr)) * (iy / (src_px * ovr))
                itemsize = _itemsize(a.data_type, band)
                reads += 1
                nbytes += px * itemsize
    n_chunks = len(prep.bands[0].tasks)
    cy, cx = prep.chunk
    return LoadPlan(
        items=prep.n_items,
        items_used=len(prep.item_ids),
        bands={b.name: b.dtype.name if b.dtype_known else "unknown" for b in prep.bands},
        shape=(n_time, grid.height, grid.width),
        crs=grid.crs,
        resolution=grid.resolution,
        bounds=grid.bounds,
        chunk=prep.chunk,
        chunks=n_chunks,
        tasks=n_chunks * len(prep.bands),
        reads=reads,
        bytes_to_read=round(nbytes),
        bytes_out=int(sum(n_time * grid.height * grid.width * _out_itemsize(b) for b in prep.bands)),
        chunk_bytes=int(max(n_time * cy * cx * _out_itemsize(b) for b in prep.bands)),
    )


def _out_itemsize(band) -> int:
    return band.dtype.itemsize if band.dtype_known else 2
