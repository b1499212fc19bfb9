"""Lazy loading of STAC items onto one pixel grid as a Dask-backed ``xarray.Dataset``.

Convention: one data variable per band, each with dims ``(time, y, x)`` and its
own dtype (reflectance float32 after scale/offset, SCL uint8, ...). For the
``(time, band, y, x)`` array form, use ``ds.to_dataarray("band")`` (this casts
all bands to a common dtype).

The graph holds one task per output chunk per band, whatever the number of
items: each task reads only the assets whose footprint intersects its chunk,
and the whole time axis lives in one chunk so that per-pixel reductions over
time need no rechunking.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import dask.array as da
import numpy as np
import pystac
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .errors import AssetReadError, InvalidArgumentError, NoItemsFoundError, NoOverlapError
from .grid import GridSpec, bounds_intersect, normalize_crs, transform_bounds
from .io.items import AssetSpec, as_items, asset_spec, is_categorical, numpy_dtype
from .io.reader import DEFAULT_GDAL_ENV, ChunkTask, RasterioReader, Reader, read_chunk, resampling_method

__all__ = ["load", "grid_of", "DEFAULT_CHUNK_BYTES"]

#: Default byte budget of one chunk of one band (whole time axis included).
DEFAULT_CHUNK_BYTES = 128 * 2**20
_GROUPBY = ("solar_day", "time")


def load(
    items: Iterable[pystac.Item | Mapping],
    bands: str | Sequence[str],
    *,
    crs: object = None,
    resolution: float | tuple[float, float] | None = None,
    bbox: Sequence[float] | None = None,
    bounds: Sequence[float] | None = None,
    like: xr.DataArray | xr.Dataset | None = None,
    anchor: tuple[float, float] = (0.0, 0.0),
    chunks: int | tuple[int, int] | Mapping[str, int] | None = None,
    groupby: str = "solar_day",
    resampling: str | Mapping[str, str] = "nearest",
    dtype: str = "float32",
    raw: bool = False,
    gdal_env: Mapping[str, object] | None = None,
    reader: Reader | None = None,
) -> xr.Dataset:
    """Load STAC items lazily onto one grid.

    Parameters
    ----------
    items
        STAC Items (``pystac.Item``, an ``ItemCollection`` or Item dicts).
    bands
        Band names: asset keys or ``eo:bands`` names/common names (``"red"``,
        ``"nir"``, ``"scl"``); see :data:`geoproc.io.items.BAND_ALIASES`.
    crs
        Output CRS (EPSG code, ``"EPSG:n"``, WKT). Default: the most common CRS
        among the items.
    resolution
        Output pixel size in CRS units. Default: the finest native resolution of
        the requested bands among items in the output CRS.
    bbox
        Area as ``(west, south, east, north)`` in longitude/latitude.
    bounds
        Area as ``(minx, miny, maxx, maxy)`` in the output CRS. Default (neither
        ``bbox`` nor ``bounds``): the union of the items' footprints.
    like
        An xarray object with a CRS and transform (rioxarray): load onto its grid.
    anchor
        Pixel edges fall on ``anchor + k * resolution``; identical requests
        therefore give identical grids.
    chunks
        Spatial chunk size in pixels: an int, ``(y, x)``, or ``{"y": .., "x": ..}``.
        Default: the largest multiple of 256 px that keeps one chunk of one band,
        whole time axis included, within 128 MiB.
    groupby
        ``"solar_day"`` (default): items acquired on the same local solar day
        (UTC time shifted by longitude / 15 h) form one time slice.
        ``"time"``: one slice per distinct acquisition time. Within a slice,
        each pixel takes the first valid value from the items in order of
        acquisition time, then item id.
    resampling
        Resampling for non-categorical bands (``nearest``, ``bilinear``,
        ``cubic``, ``average``, ...), or a ``{band: method}`` mapping.
        Categorical bands (SCL, QA) use ``nearest`` unless named in the mapping.
    dtype
        Float dtype of bands whose ``raster:bands`` carry a scale or offset.
    raw
        Keep stored integers instead of applying scale/offset; the variable's
        attrs then carry ``scale``, ``offset`` and ``nodata``.
    gdal_env
        GDAL options overriding :data:`geoproc.io.reader.DEFAULT_GDAL_ENV`.
    reader
        A custom :class:`geoproc.io.reader.Reader` (tests, benchmarks).

    Returns
    -------
    xarray.Dataset
        One variable per band, dims ``(time, y, x)``, Dask-backed, with
        ``spatial_ref`` (CRS and GeoTransform, as rioxarray writes them).
        Unscaled bands keep their integer dtype and nodata value; scaled bands
        are ``dtype`` with NaN for nodata.

    Raises
    ------
    NoItemsFoundError, NoOverlapError, UnknownBandError, MetadataError, InvalidArgumentError

    Examples
    --------
    >>> import geoproc
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json", datetime="2024-06")  # doctest: +SKIP
    >>> ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10)  # doctest: +SKIP
    >>> ds.red.dims  # doctest: +SKIP
    ('time', 'y', 'x')
    """
    item_list = as_items(items)
    if not item_list:
        raise NoItemsFoundError("no items to load; the search returned nothing. Widen the bbox or datetime range")
    band_list = [bands] if isinstance(bands, str) else list(bands)
    if not band_list:
        raise InvalidArgumentError("no bands requested; pass bands=['red', 'nir', ...]")
    if groupby not in _GROUPBY:
        raise InvalidArgumentError(f"groupby must be one of {_GROUPBY}, got {groupby!r}")
    if np.dtype(dtype).kind != "f":
        raise InvalidArgumentError(f"dtype must be a float dtype for scaled bands, got {dtype!r}; use raw=True for integers")

    specs = {band: [asset_spec(item, band) for item in item_list] for band in band_list}
    grid = _output_grid(specs, crs=crs, resolution=resolution, bbox=bbox, bounds=bounds, like=like, anchor=anchor)

    # footprints in the output CRS; an item takes part if any of its bands overlaps
    footprints = {b: [transform_bounds(s.bounds, s.crs, grid.crs) for s in ss] for b, ss in specs.items()}
    keep = [i for i in range(len(item_list)) if any(bounds_intersect(footprints[b][i], grid.bounds) for b in band_list)]
    if not keep:
        raise NoOverlapError(
            f"none of the {len(item_list)} items overlaps the requested area {tuple(round(v, 6) for v in grid.bounds)} "
            f"in {grid.crs}; check the bbox (west, south, east, north in degrees) or bounds, or search that area first"
        )

    slots = _time_slots([specs[band_list[0]][i] for i in keep], keep, groupby)
    times = np.array([np.datetime64(when.replace(tzinfo=None), "ns") for when, _ in slots])
    chunk = _chunk_shape(chunks, grid, len(slots))
    reader = reader or RasterioReader({**DEFAULT_GDAL_ENV, **(gdal_env or {})})

    data_vars = {}
    for band in band_list:
        arr, attrs = _band_array(band, specs[band], footprints[band], slots, grid, chunk, resampling, dtype, raw, reader)
        data_vars[band] = (("time", "y", "x"), arr, attrs)
    ds = xr.Dataset(data_vars, coords={"time": times, "y": grid.ys(), "x": grid.xs()})
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform).rio.write_coordinate_system()
    ds.attrs["input_items"] = [item_list[i].id for i in keep]
    return ds


def grid_of(obj: xr.DataArray | xr.Dataset) -> GridSpec:
    """The :class:`GridSpec` of an xarray object with a CRS (rioxarray) and x/y coordinates."""
    if obj.rio.crs is None:
        raise InvalidArgumentError(
            "the object has no CRS; set one with obj.rio.write_crs('EPSG:...') before using it as a grid"
        )
    return GridSpec(normalize_crs(obj.rio.crs), obj.rio.transform(recalc=True), (obj.sizes["y"], obj.sizes["x"]))


def _output_grid(specs, *, crs, resolution, bbox, bounds, like, anchor) -> GridSpec:
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
    if bounds is not None and bbox is not None:
        raise InvalidArgumentError("give either bbox (lon/lat) or bounds (output CRS), not both")
    if bbox is not None:
        _check_bbox(bbox)
        area = transform_bounds(tuple(bbox), "EPSG:4326", out_crs)
    elif bounds is not None:
        area = tuple(float(v) for v in bounds)
    else:
        fps = [transform_bounds(s.bounds, s.crs, out_crs) for s in all_specs]
        area = (min(f[0] for f in fps), min(f[1] for f in fps), max(f[2] for f in fps), max(f[3] for f in fps))
    return GridSpec.from_bounds(area, resolution, out_crs, anchor=anchor)


def _check_bbox(bbox: Sequence[float]) -> None:
    if len(bbox) != 4:
        raise InvalidArgumentError(f"bbox must have 4 numbers (west, south, east, north), got {len(bbox)}")
    w, s, e, n = bbox
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90 and w < e):
        raise InvalidArgumentError(
            f"bbox {tuple(bbox)} is not (west, south, east, north) in degrees with west < east and south < north"
        )


def _time_slots(specs: list[AssetSpec], indices: list[int], groupby: str) -> list[tuple[dt.datetime, list[int]]]:
    """Group item indices into time slots; each slot's items in fuse order."""
    groups: dict[object, list[tuple[dt.datetime, str, int]]] = {}
    for spec, idx in zip(specs, indices):
        when = spec.datetime
        key = (when + dt.timedelta(hours=spec.lon / 15.0)).date() if groupby == "solar_day" else when
        groups.setdefault(key, []).append((when, spec.item_id, idx))
    slots = []
    for members in groups.values():
        members.sort()
        slots.append((members[0][0], [m[2] for m in members]))
    slots.sort(key=lambda s: s[0])
    return slots


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


def _band_array(band, specs, footprints, slots, grid, chunk, resampling, dtype, raw, reader):
    categorical = is_categorical(band, specs[0])
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
        fill = 0 if nodata is None or np.isnan(nodata) else nodata

    name = f"load-{band}-" + tokenize(band, grid.to_dict(), chunk, [(s.item_id, s.href) for s in specs], method, str(out_dtype), decode)
    dsk = {}
    for iy, ix, sub in grid.chunks(chunk):
        task_slots = []
        for t, (_, members) in enumerate(slots):
            hits = tuple(specs[i] for i in members if bounds_intersect(footprints[i], sub.bounds))
            if hits:
                task_slots.append((t, hits))
        task = ChunkTask(sub, tuple(task_slots), len(slots), out_dtype.str, float(fill), decode, method)
        dsk[(name, 0, iy, ix)] = (read_chunk, task, reader)
    ys, xs = grid.chunk_sizes(chunk)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    arr = da.Array(graph, name, chunks=((len(slots),), ys, xs), dtype=out_dtype)

    attrs: dict = {"resampling": method}
    if decode:
        attrs["nodata"] = np.nan
    else:
        if nodata is not None:
            attrs["nodata"] = nodata
        if scaled:
            attrs["scale"], attrs["offset"] = specs[0].scale, specs[0].offset
    return arr, attrs


def _probe_dtype(spec: AssetSpec) -> np.dtype:
    """Read the data type from the file header when the metadata does not give it."""
    try:
        with rasterio.Env(**DEFAULT_GDAL_ENV), rasterio.open(spec.href) as src:
            return np.dtype(src.dtypes[spec.band_index - 1])
    except Exception as exc:
        raise AssetReadError(
            f"cannot open item {spec.item_id!r} asset {spec.key!r} at {spec.href} to learn its data type: {exc}"
        ) from None
