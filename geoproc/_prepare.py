"""Everything a load decides before reading a pixel: grid, time slots, and each chunk's reads.

Pure computation on STAC metadata (no file IO except a header read when an
item does not state a band's data type, and no dask). Both :func:`geoproc.load`
(which turns the result into a dask graph) and :func:`geoproc.plan` (which
summarises it) start here. Vectorised with numpy, so preparing 2,000 items x 3
bands costs a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely.geometry
import xarray as xr
from pyproj import Transformer

from .errors import AssetReadError, InvalidArgumentError, NoItemsFoundError, NoOverlapError
from .grid import GridSpec, normalize_crs, transform_bounds
from .io.items import AssetSpec, as_items, asset_spec, is_categorical, numpy_dtype
from .io.reader import DEFAULT_GDAL_ENV, ChunkTask, resampling_method
from .io.stac import geojson_geometry

__all__ = ["BandPlan", "Prepared", "prepare", "grid_of", "DEFAULT_CHUNK_BYTES", "GROUPBY", "ON_ERROR"]

#: Default byte budget of one chunk of one band (whole time axis included).
DEFAULT_CHUNK_BYTES = 128 * 2**20
GROUPBY = ("solar_day", "time")
ON_ERROR = ("raise", "fill")


@dataclass(frozen=True)
class BandPlan:
    """One output variable: its dtype, decoding, its assets (``table``, in fuse order) with their
    ``footprints`` in the output CRS (same order), and the task of every chunk."""

    name: str
    dtype: np.dtype
    fill: float
    decode: bool
    resampling: str
    attrs: dict
    table: tuple[AssetSpec, ...]
    footprints: np.ndarray
    tasks: dict[tuple[int, int], ChunkTask]


@dataclass(frozen=True)
class Prepared:
    """A fully decided load."""

    grid: GridSpec
    chunk: tuple[int, int]
    times: np.ndarray
    bands: list[BandPlan]
    item_ids: list[str]
    n_items: int


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
    anchor=(0.0, 0.0),
    chunks=None,
    groupby="solar_day",
    resampling="nearest",
    dtype="float32",
    raw=False,
    use_overviews=True,
    on_error="raise",
    report_token: str | None = None,
) -> Prepared:
    """Decide the grid, time slots and per-chunk reads of a load (see :func:`geoproc.load`)."""
    item_list = as_items(items)
    if not item_list:
        raise NoItemsFoundError("no items to load; the search returned nothing. Widen the bbox or datetime range")
    band_list = [bands] if isinstance(bands, str) else list(bands)
    if not band_list:
        raise InvalidArgumentError("no bands requested; pass bands=['red', 'nir', ...]")
    if groupby not in GROUPBY:
        raise InvalidArgumentError(f"groupby must be one of {GROUPBY}, got {groupby!r}")
    if on_error not in ON_ERROR:
        raise InvalidArgumentError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if np.dtype(dtype).kind != "f":
        raise InvalidArgumentError(f"dtype must be a float dtype for scaled bands, got {dtype!r}; use raw=True for integers")

    specs = {band: [asset_spec(item, band) for item in item_list] for band in band_list}
    by_crs: dict[str, dict[str, np.ndarray]] = {}

    def footprints_in(dst_crs: str) -> dict[str, np.ndarray]:
        """Per band, each item's footprint in ``dst_crs``, ``(n_items, 4)``; computed once per CRS."""
        if dst_crs not in by_crs:
            by_crs[dst_crs] = {b: _footprints(ss, dst_crs) for b, ss in specs.items()}
        return by_crs[dst_crs]

    grid = _output_grid(specs, footprints_in, crs=crs, resolution=resolution, bbox=bbox, bounds=bounds,
                        geometry=geometry, like=like, anchor=anchor)

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

    slot_of, slot_times = _time_slots([specs[band_list[0]][i] for i in keep], groupby)
    times = np.array([np.datetime64(when.replace(tzinfo=None), "ns") for when in slot_times])
    chunk = _chunk_shape(chunks, grid, len(slot_times))
    # fuse order: by slot, then acquisition time, then id (the order of `keep` after this sort)
    order = sorted(range(len(keep)), key=lambda j: (slot_of[j], specs[band_list[0]][keep[j]].datetime, item_list[keep[j]].id))
    ordered_items = keep[order]
    ordered_slots = np.asarray(slot_of)[order]

    plans = []
    for band in band_list:
        plans.append(
            _band_plan(band, specs[band], footprints[band], ordered_items, ordered_slots, len(slot_times), grid, chunk,
                       resampling, dtype, raw, use_overviews, on_error, report_token)
        )
    return Prepared(grid, chunk, times, plans, [item_list[i].id for i in ordered_items], len(item_list))


def grid_of(obj: xr.DataArray | xr.Dataset) -> GridSpec:
    """The :class:`GridSpec` of an xarray object with a CRS (rioxarray) and x/y coordinates."""
    if obj.rio.crs is None:
        raise InvalidArgumentError(
            "the object has no CRS; set one with obj.rio.write_crs('EPSG:...') before using it as a grid"
        )
    return GridSpec(normalize_crs(obj.rio.crs), obj.rio.transform(recalc=True), (obj.sizes["y"], obj.sizes["x"]))


def _hits(fp: np.ndarray, b) -> np.ndarray:
    return (fp[:, 0] < b[2]) & (b[0] < fp[:, 2]) & (fp[:, 1] < b[3]) & (b[1] < fp[:, 3])


def _footprints(specs: Sequence[AssetSpec], dst_crs: str, densify: int = 21) -> np.ndarray:
    """Bounds of each asset in ``dst_crs``, one pyproj call per source CRS, edges densified."""
    out = np.empty((len(specs), 4))
    by_crs: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
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
        tx, ty = Transformer.from_crs(src, dst_crs, always_xy=True).transform(xs, ys)
        out[idx] = np.column_stack([np.min(tx, 1), np.min(ty, 1), np.max(tx, 1), np.max(ty, 1)])
    return out


def _output_grid(specs, footprints_in, *, crs, resolution, bbox, bounds, geometry, like, anchor) -> GridSpec:
    if like is not None:
        return grid_of(like)
    all_specs = [s for ss in specs.values() for s in ss]
    out_crs = normalize_crs(crs) if crs is not None else Counter(s.crs for s in all_specs).most_common(1)[0][0]
    if resolution is None:
        native = [s.resolution for s in all_specs if s.crs == out_crs]
        if native:
            resolution = min(native)
        else:  # measure a source pixel in the output CRS
            s = all_specs[0]
            b = transform_bounds(s.bounds, s.crs, out_crs)
            resolution = min((b[2] - b[0]) / s.shape[1], (b[3] - b[1]) / s.shape[0])
    given = [name for name, v in (("bbox", bbox), ("bounds", bounds), ("geometry", geometry)) if v is not None]
    if len(given) > 1:
        raise InvalidArgumentError(f"give one of bbox (degrees), bounds (output CRS) or geometry, not {' and '.join(given)}")
    if bbox is not None:
        _check_bbox(bbox)
        area = transform_bounds(tuple(bbox), "EPSG:4326", out_crs)
    elif bounds is not None:
        area = tuple(float(v) for v in bounds)
    elif geometry is not None:
        lonlat = shapely.geometry.shape(geojson_geometry(geometry, "geometry")).bounds
        area = transform_bounds(lonlat, "EPSG:4326", out_crs)
    else:
        fps = np.vstack(list(footprints_in(out_crs).values()))
        area = (fps[:, 0].min(), fps[:, 1].min(), fps[:, 2].max(), fps[:, 3].max())
    return GridSpec.from_bounds(area, resolution, out_crs, anchor=anchor)


def _check_bbox(bbox: Sequence[float]) -> None:
    if len(bbox) != 4:
        raise InvalidArgumentError(f"bbox must have 4 numbers (west, south, east, north), got {len(bbox)}")
    w, s, e, n = bbox
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90 and w < e):
        raise InvalidArgumentError(
            f"bbox {tuple(bbox)} is not (west, south, east, north) in degrees with west < east and south < north"
        )


def _time_slots(specs: Sequence[AssetSpec], groupby: str) -> tuple[list[int], list[dt.datetime]]:
    """Slot index of each spec, and each slot's time (its first acquisition), slots in time order."""
    keys = []
    for s in specs:
        keys.append((s.datetime + dt.timedelta(hours=s.lon / 15.0)).date() if groupby == "solar_day" else s.datetime)
    first: dict[object, dt.datetime] = {}
    for k, s in zip(keys, specs):
        first[k] = min(first.get(k, s.datetime), s.datetime)
    ordered = sorted(first, key=lambda k: first[k])
    index = {k: i for i, k in enumerate(ordered)}
    return [index[k] for k in keys], [first[k] for k in ordered]


def _chunk_shape(chunks, grid: GridSpec, n_time: int) -> tuple[int, int]:
    if chunks is None:
        side = math.sqrt(DEFAULT_CHUNK_BYTES / (max(n_time, 1) * 4))
        side = int(min(max(256, side // 256 * 256), 4096))
        return (min(side, grid.height), min(side, grid.width))
    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"x", "y", "time"}
        if unknown or chunks.get("time", -1) not in (-1, None, n_time):
            raise InvalidArgumentError(
                f"chunks takes 'y' and 'x' sizes (the time axis is always one chunk), got {dict(chunks)}"
            )
        cy, cx = chunks.get("y", grid.height), chunks.get("x", grid.width)
    elif isinstance(chunks, int):
        cy = cx = chunks
    else:
        cy, cx = chunks
    cy = grid.height if cy in (-1, None) else int(cy)
    cx = grid.width if cx in (-1, None) else int(cx)
    if cy <= 0 or cx <= 0:
        raise InvalidArgumentError(f"chunk sizes must be positive, got {(cy, cx)}")
    return (min(cy, grid.height), min(cx, grid.width))


def _band_plan(band, specs, footprints, ordered_items, ordered_slots, n_time, grid, chunk, resampling, dtype, raw,
               use_overviews, on_error, report_token) -> BandPlan:
    categorical = is_categorical(band, specs[0])
    # an overview of a class band may have been built by averaging, which invents classes
    overviews = use_overviews and not categorical
    if isinstance(resampling, Mapping):
        method = resampling.get(band, "nearest")
    else:
        method = "nearest" if categorical else resampling
    resampling_method(method)  # validate early

    scaled = not categorical and any(s.is_scaled for s in specs)
    decode = scaled and not raw
    nodata = specs[0].nodata
    if decode:
        out_dtype, fill = np.dtype(dtype), np.nan
    else:
        out_dtype = numpy_dtype(specs[0].data_type) or _probe_dtype(specs[0])
        if nodata is not None and not (np.isnan(nodata) and out_dtype.kind != "f"):
            fill = nodata
        else:  # no nodata value (or NaN for an integer band): NaN for floats, 0 for integers
            fill = np.nan if out_dtype.kind == "f" else 0

    fp = footprints[ordered_items]
    table = tuple(specs[i] for i in ordered_items)  # fuse order
    table_array = np.empty(len(table), dtype=object)  # for fast per-chunk selection (C, not Python, loops)
    table_array[:] = table
    tasks = {}
    for iy, ix, sub in grid.chunks(chunk):
        hit = np.flatnonzero(_hits(fp, sub.bounds)).astype(np.int32)
        tasks[(iy, ix)] = ChunkTask(
            grid=sub, specs=table_array[hit], assets=hit, times=ordered_slots[hit].astype(np.int32), n_time=n_time, dtype=out_dtype.str,
            fill=float(fill), decode=decode, resampling=method, overviews=overviews, on_error=on_error,
            report_token=report_token,
        )

    attrs: dict = {"resampling": method}
    if decode or nodata is not None or np.isnan(fill):
        attrs["nodata"] = fill  # what marks a missing pixel in this variable
    if scaled and not decode:
        attrs["scale"], attrs["offset"] = specs[0].scale, specs[0].offset
    return BandPlan(band, out_dtype, float(fill), decode, method, attrs, table, fp, tasks)


def _probe_dtype(spec: AssetSpec) -> np.dtype:
    """Read the data type from the file header when the metadata does not give it."""
    try:
        with rasterio.Env(**DEFAULT_GDAL_ENV), rasterio.open(spec.href) as src:
            return np.dtype(src.dtypes[spec.band_index - 1])
    except Exception as exc:
        raise AssetReadError(
            f"cannot open item {spec.item_id!r} asset {spec.key!r} at {spec.href} to learn its data type: {exc}"
        ) from None

