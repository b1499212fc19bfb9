"""Everything a load decides before reading a pixel: grid, time slots, and each chunk's reads.

Pure computation on STAC metadata, and no dask. Files are opened only for what
the metadata leaves out, and only when ``probe`` allows it: a band's data type
when ``raster:bands`` has no ``data_type`` (one header per band and collection,
remembered in the process), and the grid of items without ``proj:`` fields when
the output grid cannot be decided without it (one header per asset, in
parallel). Both :func:`geoproc.load` (which turns the result into a dask
graph) and :func:`geoproc.plan` (which summarises it, opening nothing) start
here. Vectorised with numpy, so preparing 2,000 items x 3 bands costs a
fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ._extent import centre_lon, lonlat_to, output_grid
from .errors import (AssetReadError, BandNotFoundError, GeoprocWarning, InvalidArgumentError, MetadataError,
                     NoItemsFoundError, NoOverlapError, listing)
from .grid import GridSpec, _transformer, chunk_index, normalize_crs
from .io.headers import band_dtype, known_dtype, place_specs
from .io.items import AssetSpec, as_items, asset_spec, is_categorical, item_datetime, item_end_datetime, numpy_dtype
from .io.reader import ChunkTask, resampling_method
from .io.report import record_missing

__all__ = ["BandPlan", "Prepared", "prepare", "grid_of", "DEFAULT_CHUNK_BYTES", "GROUPBY", "ON_ERROR"]

#: Default byte budget of one chunk of one band (whole time axis included).
DEFAULT_CHUNK_BYTES = 128 * 2**20
#: Chunks per band a load may have. Tasks are made only for the chunks a computation uses and
#: geoproc.run.write_tiled submits them a tile at a time, so the bound is the client's index of chunks
#: (about 16 bytes per chunk and band, plus 4 per asset read): 200,000^2 px in 176 px chunks (1,000 dates)
#: is 1.3 million.
MAX_CHUNKS = 8_000_000
GROUPBY = ("solar_day", "time")
ON_ERROR = ("raise", "fill")


@dataclass(frozen=True)
class BandPlan:
    """One output variable: its dtype, decoding, its assets (``table``, in fuse order; ``None`` for an
    item without the band) with their ``footprints`` in the output CRS (same order; NaN where missing),
    the time slot of each (``slots``) and the assets of every chunk (``index``). ``dtype_known`` is false
    when no metadata gave the stored data type and no header was read (a plan, or ``probe=False``).
    ``missing``: ids of items without the band."""

    name: str
    dtype: np.dtype
    fill: float
    decode: bool
    resampling: str
    attrs: dict
    table: tuple[AssetSpec | None, ...]
    footprints: np.ndarray
    slots: np.ndarray
    index: ChunkIndex
    overviews: bool = True
    on_error: str = "raise"
    report_token: str | None = None
    dtype_known: bool = True
    missing: tuple[str, ...] = ()

    def task(self, grid: GridSpec, chunk: tuple[int, int], time_chunk: int, n_time: int,
             it: int, iy: int, ix: int) -> ChunkTask:
        """The read task of block ``(it, iy, ix)`` (time steps ``it * time_chunk`` onwards)."""
        hit = self.index.of(iy, ix)
        t0 = it * time_chunk
        t1 = min(t0 + time_chunk, n_time)
        times = self.slots[hit]
        if t0 > 0 or t1 < n_time:  # the chunk's assets are in slot order: its time steps are one run of them
            a, b = np.searchsorted(times, [t0, t1])
            hit, times = hit[a:b], times[a:b]
        (row, col), (h, w) = (iy * chunk[0], ix * chunk[1]), (min(chunk[0], grid.height - iy * chunk[0]),
                                                             min(chunk[1], grid.width - ix * chunk[1]))
        return ChunkTask(
            grid=grid.window(row, col, h, w), assets=hit, times=(times - t0).astype(np.int32), n_time=t1 - t0,
            dtype=self.dtype.str, fill=self.fill, decode=self.decode, resampling=self.resampling,
            overviews=self.overviews, on_error=self.on_error, report_token=self.report_token,
        )


@dataclass(frozen=True)
class Prepared:
    """A fully decided load."""

    grid: GridSpec
    chunk: tuple[int, int]
    times: np.ndarray
    bands: list[BandPlan]
    item_ids: list[str]
    n_items: int
    report_token: str | None = None
    span: tuple[dt.datetime, dt.datetime] | None = None
    time_end: np.ndarray | None = None  # per slot, the end of its last acquisition (end_datetime, else datetime)
    time_chunk: int = 0  # time steps per chunk (the whole axis unless chunks= says otherwise)

    def block_counts(self) -> tuple[int, int, int]:
        """Blocks of each band along time, y and x."""
        n_time = len(self.times)
        return (max(1, math.ceil(n_time / (self.time_chunk or n_time or 1))),
                math.ceil(self.grid.height / self.chunk[0]), math.ceil(self.grid.width / self.chunk[1]))


def prepare(
    items,
    bands,
    *,
    crs=None,
    resolution=None,
    bbox=None,
    bounds=None,
    geometry=None,
    like=None,
    anchor=None,
    chunks=None,
    groupby="solar_day",
    resampling="nearest",
    dtype="float32",
    raw=False,
    use_overviews=True,
    on_error="raise",
    report_token: str | None = None,
    reader=None,
    probe: bool = True,
    for_plan: bool = False,
) -> Prepared:
    """Decide the grid, time slots and per-chunk reads of a load (see :func:`geoproc.load`).

    ``reader`` reads headers for what the metadata lacks, when ``probe`` is true. ``for_plan``: the
    result only describes a load (:func:`geoproc.plan`), so nothing is recorded for a read report.
    """
    item_list = as_items(items)
    if not item_list:
        raise NoItemsFoundError("no items to load; the search returned nothing. Widen the bbox or datetime range")
    band_list = [bands] if isinstance(bands, str) else list(bands)
    if not band_list:
        raise InvalidArgumentError("no bands requested; pass bands=['red', 'nir', ...]")
    if len(set(band_list)) != len(band_list):
        raise InvalidArgumentError(f"bands {band_list} name a band twice; list each once")
    if groupby not in GROUPBY:
        raise InvalidArgumentError(f"groupby must be one of {GROUPBY}, got {groupby!r}")
    if on_error not in ON_ERROR:
        raise InvalidArgumentError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    try:
        float_dtype = np.dtype(dtype)
    except TypeError:
        raise InvalidArgumentError(f"dtype must be a float dtype such as 'float32', got {dtype!r}") from None
    if float_dtype.kind != "f":
        raise InvalidArgumentError(f"dtype must be a float dtype for scaled bands, got {dtype!r}; use raw=True for integers")

    if on_error == "fill" and not for_plan:
        report_token = report_token or _new_token()  # where the reads that fail are recorded
    when = [item_datetime(item) for item in item_list]
    specs, missing = _specs(item_list, band_list)
    area_given = any(v is not None for v in (bbox, bounds, geometry, like))
    if any(s is not None and not s.placed for ss in specs.values() for s in ss):
        if not (like is not None or (crs is not None and resolution is not None and area_given)):
            specs = _placed(specs, reader, probe, on_error, report_token)
    by_crs: dict[str, dict[str, np.ndarray]] = {}

    def footprints_in(dst_crs: str) -> dict[str, np.ndarray]:
        """Per band, each item's footprint in ``dst_crs``, ``(n_items, 4)``; computed once per CRS."""
        if dst_crs not in by_crs:
            done: dict[tuple, np.ndarray] = {}  # bands of the same files' extents (red, nir, SCL) are computed once
            by_crs[dst_crs] = {}
            for b, ss in specs.items():
                key = tuple((s.crs, s.bounds, s.lonlat_bbox) if s is not None and s.placed else
                            (None, None, s.lonlat_bbox if s is not None else None) for s in ss)
                if key not in done:
                    done[key] = _footprints(ss, dst_crs)
                by_crs[dst_crs][b] = done[key]
        return by_crs[dst_crs]

    if like is not None:
        grid = grid_of(like)
    else:
        grid = output_grid(specs, footprints_in, crs=crs, resolution=resolution, bbox=bbox, bounds=bounds,
                           geometry=geometry, anchor=anchor)

    # an item takes part if any of its bands overlaps the grid
    footprints = footprints_in(grid.crs)
    gb = grid.bounds
    overlaps = np.zeros(len(item_list), bool)
    for fp in footprints.values():
        overlaps |= _hits(fp, gb)
    keep = np.flatnonzero(overlaps)
    if not keep.size:
        raise NoOverlapError(
            f"none of the {len(item_list)} items overlaps the requested area {tuple(round(v, 6) for v in gb)} "
            f"in {grid.crs}; check the bbox (west, south, east, north in degrees) or bounds, or search that area first"
        )

    slot_of, slot_times = _time_slots([when[i] for i in keep], groupby, centre_lon(grid))
    times = np.array([np.datetime64(t.replace(tzinfo=None), "ns") for t in slot_times])
    chunk, time_chunk = _chunk_shape(chunks, grid, len(slot_times))
    n_chunks = math.ceil(grid.height / chunk[0]) * math.ceil(grid.width / chunk[1])
    if n_chunks > MAX_CHUNKS:
        raise InvalidArgumentError(
            f"the grid of {grid.height} x {grid.width} px in chunks of {chunk[0]} x {chunk[1]} px makes {n_chunks:,} "
            f"chunks per band, more than a load indexes ({MAX_CHUNKS:,}); use larger chunks (per-date chunks, "
            "chunks={'time': 1}, allow larger sides), a smaller area or a coarser resolution"
        )
    # fuse order: by slot, then acquisition time, then id (the order of `keep` after this sort)
    order = sorted(range(len(keep)), key=lambda j: (slot_of[j], when[keep[j]], item_list[keep[j]].id))
    ordered_items = keep[order]
    ordered_slots = np.asarray(slot_of)[order]

    kept_ids = {item_list[i].id for i in keep}
    plans = []
    indexes: dict[bytes, object] = {}  # bands whose assets have the same footprints share one chunk index
    for band in band_list:
        gone = tuple(i for i in missing[band] if i in kept_ids)
        if gone:
            if not for_plan:
                report_token = report_token or _new_token()
                record_missing(report_token, band, gone)
            warnings.warn(
                f"band {band!r} is missing from {len(gone)} of {len(keep)} item(s) ({listing(gone)}); their pixels "
                "are nodata in that band" + ("" if for_plan else ". geoproc.read_report(ds) lists them"),
                GeoprocWarning, stacklevel=3,
            )
        plans.append(
            _band_plan(band, specs[band], footprints[band], ordered_items, ordered_slots, len(slot_times), grid, chunk,
                       resampling, float_dtype, raw, use_overviews, on_error, report_token, reader, probe, gone, indexes)
        )
    ends = [item_end_datetime(item_list[i], when[i]) for i in keep]
    span = (min(when[i] for i in keep), max(ends))
    slot_ends = list(slot_times)
    for j, end in zip(slot_of, ends):
        slot_ends[j] = max(slot_ends[j], end)
    time_end = np.array([np.datetime64(t.replace(tzinfo=None), "ns") for t in slot_ends])
    return Prepared(grid, chunk, times, plans, [item_list[i].id for i in ordered_items], len(item_list), report_token,
                    span, time_end, time_chunk)


def _new_token() -> str:
    import uuid

    return uuid.uuid4().hex


def _specs(item_list, band_list) -> tuple[dict[str, list[AssetSpec | None]], dict[str, tuple[str, ...]]]:
    """Each band's spec per item (``None`` where the item lacks the band), and the items lacking it."""
    specs: dict[str, list[AssetSpec | None]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    memo: dict = {}  # each item's data bands, listed once for all requested bands
    for band in band_list:
        row: list[AssetSpec | None] = []
        first_error = None
        for item in item_list:
            try:
                row.append(asset_spec(item, band, memo))
            except BandNotFoundError as exc:
                first_error = first_error or exc
                row.append(None)
        if all(s is None for s in row):
            raise first_error  # type: ignore[misc]
        specs[band] = row
        missing[band] = tuple(item.id for item, s in zip(item_list, row) if s is None)
    return specs, missing


def _placed(specs, reader, probe: bool, on_error: str, report_token: str | None):
    """Specs with the grid of items lacking ``proj:`` read from their files (in parallel)."""
    unplaced = [s for ss in specs.values() for s in ss if s is not None and not s.placed]
    if not probe or reader is None:
        s = unplaced[0]
        raise MetadataError(
            f"item {s.item_id!r} asset {s.key!r}{f' (and {len(unplaced) - 1} more)' if len(unplaced) > 1 else ''} "
            "lack proj:epsg/proj:transform/"
            "proj:shape and no file headers may be read here; pass crs=..., resolution=... and bbox=... "
            "(then nothing is read before compute), or load them with probe=True"
        )
    placed = iter(place_specs(unplaced, reader, on_error, report_token))
    out = {band: [s if s is None or s.placed else next(placed) for s in ss] for band, ss in specs.items()}
    for band, ss in out.items():
        if all(s is None for s in ss):
            raise AssetReadError(
                f"no file of band {band!r} could be opened to learn its grid (the items lack proj: fields); "
                "see geoproc.read_report(ds) for each failure, or check the hrefs and credentials"
            )
    return out


def grid_of(obj: xr.DataArray | xr.Dataset) -> GridSpec:
    """The :class:`GridSpec` of an xarray object with a CRS (rioxarray) and x/y coordinates."""
    if obj.rio.crs is None:
        raise InvalidArgumentError(
            "the object has no CRS; set one with obj.rio.write_crs('EPSG:...') before using it as a grid"
        )
    return GridSpec(normalize_crs(obj.rio.crs), obj.rio.transform(recalc=True), (obj.sizes["y"], obj.sizes["x"]))


def _hits(fp: np.ndarray, b) -> np.ndarray:
    return (fp[:, 0] < b[2]) & (b[0] < fp[:, 2]) & (fp[:, 1] < b[3]) & (b[1] < fp[:, 3])


def _footprints(specs: Sequence[AssetSpec | None], dst_crs: str, densify: int = 21) -> np.ndarray:
    """Bounds of each asset in ``dst_crs`` (NaN where an item lacks the band), one pyproj call per source
    CRS, edges densified. Assets without ``proj:`` fields are placed by their item's bbox."""
    out = np.full((len(specs), 4), np.nan)
    by_crs: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        if s is None:
            continue
        if not s.placed:
            if s.lonlat_bbox is None:
                raise MetadataError(
                    f"item {s.item_id!r} has neither a bbox nor proj: fields for asset {s.key!r}, so it cannot be "
                    "placed without reading the file; load it with probe=True"
                )
            w, so, e, n = s.lonlat_bbox
            out[i] = lonlat_to((w, so, e + 360.0 if e < w else e, n), dst_crs)
            continue
        by_crs.setdefault(s.crs, []).append(i)
    t = np.linspace(0.0, 1.0, densify)
    for src, idx in by_crs.items():
        b = np.array([specs[i].bounds for i in idx])  # (n, 4)
        if src == dst_crs:
            out[idx] = b
            continue
        x0, y0, x1, y1 = (b[:, k : k + 1] for k in range(4))
        xs = np.hstack([x0 + (x1 - x0) * t, np.repeat(x1, densify, 1), x1 - (x1 - x0) * t, np.repeat(x0, densify, 1)])
        ys = np.hstack([np.repeat(y1, densify, 1), y1 - (y1 - y0) * t, np.repeat(y0, densify, 1), y0 + (y1 - y0) * t])
        tx, ty = _transformer(src, dst_crs).transform(xs, ys)
        out[idx] = np.column_stack([np.min(tx, 1), np.min(ty, 1), np.max(tx, 1), np.max(ty, 1)])
    return out


def _time_slots(when: Sequence[dt.datetime], groupby: str, lon: float) -> tuple[list[int], list[dt.datetime]]:
    """Slot index of each acquisition, and each slot's time (its first acquisition), slots in time order.

    ``solar_day``: the local solar date at longitude ``lon`` (the centre of the output grid), one
    longitude for every item, so one overpass never splits in two (a strip across 180 degrees, MODIS
    tiles of one composite period) and slot times are unique and increasing.
    """
    shift = dt.timedelta(hours=lon / 15.0)
    keys = [(t + shift).date() if groupby == "solar_day" else t for t in when]
    first: dict[object, dt.datetime] = {}
    for k, t in zip(keys, when):
        first[k] = min(first.get(k, t), t)
    ordered = sorted(first, key=lambda k: first[k])
    index = {k: i for i, k in enumerate(ordered)}
    return [index[k] for k in keys], [first[k] for k in ordered]


def auto_side(n_time: int, budget: int = DEFAULT_CHUNK_BYTES, itemsize: int = 4) -> int:
    """The side of a square chunk of ``n_time`` steps that holds ``budget`` bytes: a multiple of 256 px up to
    4,096, or of 16 px below 256 (long series get small chunks rather than tasks over budget)."""
    side = math.sqrt(budget / (max(n_time, 1) * itemsize))
    if side >= 256:
        return int(min(side // 256 * 256, 4096))
    return int(max(16, side // 16 * 16))


def _chunk_shape(chunks, grid: GridSpec, n_time: int) -> tuple[tuple[int, int], int]:
    """``((y, x), time)`` chunk sizes. Time is whole unless ``chunks`` gives ``"time"``; a side not given
    follows :func:`auto_side` for the time steps of one chunk."""
    time_chunk = n_time
    if chunks is None:
        side = auto_side(n_time)
        return (min(side, grid.height), min(side, grid.width)), max(n_time, 1)
    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"x", "y", "time"}
        if unknown:
            raise InvalidArgumentError(f"chunks takes 'time', 'y' and 'x' sizes, got {dict(chunks)}")
        t = chunks.get("time", -1)
        if t not in (-1, None):
            if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 1:
                raise InvalidArgumentError(f"chunks['time'] must be a whole number >= 1 or -1 (whole), got {t!r}")
            time_chunk = min(int(t), max(n_time, 1))
        auto = auto_side(time_chunk) if "time" in chunks else None
        cy, cx = chunks.get("y", auto or grid.height), chunks.get("x", auto or grid.width)
    elif isinstance(chunks, int):
        cy = cx = chunks
    else:
        cy, cx = chunks
    cy = grid.height if cy in (-1, None) else int(cy)
    cx = grid.width if cx in (-1, None) else int(cx)
    if cy <= 0 or cx <= 0:
        raise InvalidArgumentError(f"chunk sizes must be positive, got {(cy, cx)}")
    return (min(cy, grid.height), min(cx, grid.width)), max(time_chunk, 1)


def _band_plan(band, specs, footprints, ordered_items, ordered_slots, n_time, grid, chunk, resampling, float_dtype,
               raw, use_overviews, on_error, report_token, reader, probe, missing, indexes) -> BandPlan:
    present = [s for s in specs if s is not None]
    categorical = is_categorical(band, present[0].key)
    # an overview of a class band may have been built by averaging, which invents classes
    overviews = use_overviews and not categorical
    if isinstance(resampling, Mapping):
        method = resampling.get(band, "nearest")
    else:
        method = "nearest" if categorical else resampling
    resampling_method(method)  # validate early

    stored, dtype_known = _stored_dtype(present, reader, probe)
    if stored is None and categorical:  # classes stored as uint8 by some, uint16 by others
        stored = np.result_type(*{numpy_dtype(s.data_type) or np.dtype("uint8") for s in present})
    scaled = not categorical and any(s.is_scaled for s in present)
    # items that store the band differently (scale/offset, nodata or data type: Sentinel-2 before and
    # after processing baseline 04.00, Sentinel-2 with Landsat) cannot share one encoding: decode them
    # at read time, each with its own, even with raw=True
    disagree = not categorical and dtype_known and _encodings_differ(present, stored)
    decode = (scaled and not raw) or disagree or not dtype_known
    if disagree and raw:
        warnings.warn(
            f"raw=True: the items store band {band!r} in {len(_encodings(present))} different encodings "
            f"({_describe_encodings(present)}); it is decoded to {float_dtype.name} at read time instead, "
            "so that every pixel has its true value",
            GeoprocWarning, stacklevel=4,
        )
    nodata = present[0].nodata
    if missing and not decode and stored is not None and stored.kind in "iu" and nodata is None:
        # items without the band need a value that no pixel has: an integer band without nodata has none
        decode = True
    if decode:
        out_dtype, fill = float_dtype, np.nan
    else:
        out_dtype = stored
        if nodata is not None and not (np.isnan(nodata) and out_dtype.kind != "f"):
            fill = nodata
        else:  # no nodata value (or NaN for an integer band): NaN for floats, 0 for integers
            fill = np.nan if out_dtype.kind == "f" else 0

    fp = footprints[ordered_items]
    table = tuple(specs[i] for i in ordered_items)  # fuse order
    key = fp.tobytes()
    if key not in indexes:
        indexes[key] = chunk_index(fp, grid, chunk)
    index = indexes[key]
    attrs: dict = {"resampling": method}
    if decode or nodata is not None or np.isnan(fill):
        attrs["nodata"] = fill  # what marks a missing pixel in this variable
    if scaled and not decode:
        attrs["scale"], attrs["offset"] = present[0].scale, present[0].offset
    return BandPlan(band, out_dtype, float(fill), decode, method, attrs, table, fp, ordered_slots.astype(np.int32), index,
                    overviews, on_error, report_token, dtype_known, missing)


def _stored_dtype(present: Sequence[AssetSpec], reader, probe: bool) -> tuple[np.dtype | None, bool]:
    """The data type the files store the band in, and whether metadata or a header said so.

    Where ``raster:bands`` gives no ``data_type``, one header per collection is read (``probe``), or a
    header read earlier in this process is used. ``None`` when the items store it in several types.
    """
    groups: dict[object, list[AssetSpec]] = {}
    for s in present:
        groups.setdefault(s.collection or s.href, []).append(s)
    found: set[np.dtype] = set()
    known = True
    for group in groups.values():
        declared = {numpy_dtype(s.data_type) for s in group}
        if None in declared:
            remembered = known_dtype(group)
            if remembered is not None:
                declared.add(remembered)
            elif probe and reader is not None and (probed := band_dtype(group, reader)) is not None:
                declared.add(probed)
            else:  # not to be read, or no file of the group could be opened: decode to float
                known = False
            declared.discard(None)
        found |= declared
    if not known:
        return None, False
    return (found.pop() if len(found) == 1 else None), True


def _encodings(present: Sequence[AssetSpec]) -> set[tuple]:
    return {(s.scale, s.offset, "nan" if s.nodata is not None and np.isnan(s.nodata) else s.nodata) for s in present}


def _encodings_differ(present: Sequence[AssetSpec], stored: np.dtype | None) -> bool:
    return stored is None or len(_encodings(present)) > 1


def _describe_encodings(present: Sequence[AssetSpec]) -> str:
    seen: dict[tuple, str] = {}
    for s in present:
        key = (s.scale, s.offset, s.nodata, s.data_type)
        seen.setdefault(key, s.item_id)
    return "; ".join(f"scale {k[0]:g} offset {k[1]:g} nodata {k[2]} {k[3] or ''} (e.g. {v})".replace(" )", ")")
                     for k, v in list(seen.items())[:4])
