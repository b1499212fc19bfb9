"""Lazy loading of STAC items onto one pixel grid as a Dask-backed ``xarray.Dataset``.

Convention: one data variable per band, each with dims ``(time, y, x)`` and its
own dtype (reflectance float32 after scale/offset, SCL uint8, ...). For the
``(time, band, y, x)`` array form, use ``ds.to_dataarray("band")`` (this casts
all bands to a common dtype).

The graph holds one task per output chunk per band, whatever the number of
items: each task reads only the assets whose footprint intersects its chunk,
and the whole time axis lives in one chunk so that per-pixel reductions over
time need no rechunking. Each band is a Blockwise layer, so dask fuses the
reads of a chunk into the per-pixel steps that use them: a job such as
load -> mask -> index -> median -> Zarr runs as one task per spatial chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import dask.array as da
import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from dask.base import tokenize
from dask._task_spec import DataNode, TaskRef
from dask.blockwise import BlockwiseDep, blockwise
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from ._provenance import iso
from ._prepare import DEFAULT_CHUNK_BYTES, BandPlan, Prepared, grid_of, prepare
from .errors import InvalidArgumentError
from .io.reader import DEFAULT_GDAL_ENV, DEFAULT_READ_CONCURRENCY, ChunkTask, RasterioReader, Reader, read_chunk
from .io.report import LoadReport
from .io.storage import gdal_defaults_from_environment

__all__ = ["load", "read_report", "grid_of", "DEFAULT_CHUNK_BYTES"]


def load(
    items: Iterable[pystac.Item | Mapping],
    bands: str | Sequence[str],
    *,
    crs: object = None,
    resolution: float | tuple[float, float] | None = None,
    bbox: Sequence[float] | None = None,
    bounds: Sequence[float] | None = None,
    geometry: Mapping | object | None = None,
    like: xr.DataArray | xr.Dataset | None = None,
    anchor: tuple[float, float] | None = None,
    chunks: int | tuple[int, int] | Mapping[str, int] | None = None,
    groupby: str = "solar_day",
    resampling: str | Mapping[str, str] = "nearest",
    dtype: str = "float32",
    raw: bool = False,
    use_overviews: bool = True,
    on_error: str = "raise",
    patch_url: Callable[[str], str] | None = None,
    retries: int = 3,
    gdal_env: Mapping[str, object] | None = None,
    reader: Reader | None = None,
    probe: bool = True,
    read_concurrency: int = DEFAULT_READ_CONCURRENCY,
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
        Area as ``(minx, miny, maxx, maxy)`` in the output CRS.
    geometry
        Area as a GeoJSON geometry in lon/lat (or an object with
        ``__geo_interface__``); the grid covers its bounds. Default (no
        ``bbox``, ``bounds`` or ``geometry``): the union of the items' footprints.
    like
        An xarray object with a CRS and transform (rioxarray): load onto its grid.
    anchor
        Pixel edges fall on ``anchor + k * resolution``; identical requests
        therefore give identical grids. Default: the items' own pixel edges
        when the output CRS and resolution match their native grid (or an
        integer multiple of it), so output pixels are file pixels (Landsat's
        edges at 15 m offsets of 30 m stay there); otherwise ``(0, 0)``.
    chunks
        Spatial chunk size in pixels: an int, ``(y, x)``, or ``{"y": .., "x": ..}``.
        Default: the largest multiple of 256 px that keeps one chunk of one band,
        whole time axis included, within 128 MiB.
    groupby
        ``"solar_day"`` (default): items acquired on the same local solar day
        form one time slice; the day is the UTC date shifted by the longitude
        of the output grid's centre / 15 h (one longitude for all items, so an
        overpass crossing 180 degrees or MODIS tiles of one period are one
        slice). ``"time"``: one slice per distinct acquisition time. Time
        coordinates are unique and increasing; a slice is stamped with its
        first acquisition. Within a slice, each pixel takes the first valid
        value from the items in order of acquisition time, then item id.
    resampling
        Resampling for non-categorical bands (``nearest``, ``bilinear``,
        ``cubic``, ``average``, ...), or a ``{band: method}`` mapping.
        Categorical bands (SCL, QA) use ``nearest`` unless named in the mapping.
    dtype
        Float dtype of bands whose ``raster:bands`` carry a scale or offset.
    raw
        Keep stored integers instead of applying scale/offset; the variable's
        attrs then carry ``scale``, ``offset`` and ``nodata``. When the items
        store a band in different encodings (Sentinel-2 before and after
        processing baseline 04.00, whose offset went from 0 to -0.1; Sentinel-2
        with Landsat), no single scale/offset is right for every pixel: that
        band is decoded to ``dtype`` at read time, item by item, with a
        :class:`~geoproc.errors.GeoprocWarning`.
    use_overviews
        Read from a file's overviews when the output is at least 2x coarser
        (default). Never for categorical bands (SCL, QA): their overviews may
        have been built by averaging, which invents classes.
    on_error
        ``"raise"`` (default): an asset that cannot be read fails the compute
        with an error naming the item id, asset key and href. ``"fill"``: its
        pixels are left as nodata and the failure is listed by
        :func:`read_report`. Transient errors (HTTP 5xx/429, timeouts, dropped
        connections) are retried with backoff first, in both modes.
    patch_url
        A picklable function applied to every href at read time, on the worker
        (e.g. signing URLs with a short-lived token, so long jobs never use an
        expired one).
    retries
        Further attempts per asset read after a transient error.
    gdal_env
        GDAL options overriding :data:`geoproc.io.reader.DEFAULT_GDAL_ENV`.
    reader
        A custom :class:`geoproc.io.reader.Reader` (tests, benchmarks); then
        ``patch_url``, ``retries`` and ``gdal_env`` are the reader's business.
    probe
        Read file headers for what the metadata lacks (default): a band's data
        type when ``raster:bands`` has no ``data_type`` (one file per band and
        collection, remembered in the process), and the grid of items without
        ``proj:`` fields when ``crs``, ``resolution`` and an area are not all
        given (one header per asset, 16 at a time, with the read retries).
        With ``False`` nothing is opened before compute: such bands load as
        ``dtype`` floats, and items without ``proj:`` need ``crs``,
        ``resolution`` and an area (they are then placed by their bbox).
    read_concurrency
        Reads of one chunk task in flight at once (default 8): a task's assets
        are read by a per-process thread pool and fused in the same order as
        one after another, so the result does not depend on it. Raise it for
        object storage with high latency; 1 reads one asset at a time.

    Bands are named by asset key (``"B04"``, ``"visual.2"`` for band 2 of a
    multi-band asset) or by ``eo:bands`` name or common name; previews never
    match a common name, an alias never crosses to another centre wavelength,
    and a name that matches different bands is an error listing them (see
    :mod:`geoproc.io.bands`). A band that some items lack loads as nodata for
    those items, with a warning, and :func:`read_report` lists them.

    Returns
    -------
    xarray.Dataset
        One variable per band, dims ``(time, y, x)``, Dask-backed, with
        ``spatial_ref`` (CRS and GeoTransform, as rioxarray writes them).
        Unscaled bands keep their integer dtype and nodata value; scaled bands
        are ``dtype`` with NaN for nodata. ``attrs["input_items"]`` lists the
        items used, in fuse order, and ``input_start``/``input_end`` the span
        of their acquisitions (on the Dataset and on each variable). The
        ``time_end`` coordinate gives, per slice, the end of its last
        acquisition (``end_datetime`` for composites such as MODIS 8-day
        products), so reductions over time know the span they cover.

    Notes
    -----
    Reading at a resolution at least twice as coarse as a file's uses the
    file's coarsest overview that is still at least as fine as the output
    (not for categorical bands, and not with ``use_overviews=False``).

    Raises
    ------
    NoItemsFoundError, NoOverlapError, UnknownBandError, MetadataError, InvalidArgumentError

    Examples
    --------
    >>> import geoproc
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json", datetime="2024-05")
    >>> ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10)
    >>> ds.red.dims, ds.red.dtype.name, ds.scl.dtype.name
    (('time', 'y', 'x'), 'float32', 'uint8')
    >>> len(ds.attrs["input_items"]), ds.attrs["input_start"], ds.attrs["input_end"]
    (18, '2024-05-03T09:50:00Z', '2024-05-28T09:50:10Z')
    """
    if isinstance(read_concurrency, bool) or not isinstance(read_concurrency, int) or read_concurrency < 1:
        raise InvalidArgumentError(f"read_concurrency must be a whole number >= 1, not {read_concurrency!r}")
    if reader is None:
        reader = default_reader(gdal_env, patch_url, retries)
    prep = prepare(
        items, bands, crs=crs, resolution=resolution, bbox=bbox, bounds=bounds, geometry=geometry, like=like,
        anchor=anchor, chunks=chunks, groupby=groupby, resampling=resampling, dtype=dtype, raw=raw,
        use_overviews=use_overviews, on_error=on_error, reader=reader, probe=probe,
    )
    token = prep.report_token
    grid = prep.grid
    ys, xs = grid.chunk_sizes(prep.chunk)
    # where the data came from, on the Dataset and on each variable, so results derived from either
    # describe their inputs (see geoproc._provenance)
    provenance = {"input_items": prep.item_ids, "input_start": iso(prep.span[0]), "input_end": iso(prep.span[1])}
    n_time = len(prep.times)
    tc = prep.time_chunk or max(n_time, 1)
    time_chunks = tuple(min(tc, n_time - t0) for t0 in range(0, n_time, tc)) or (0,)
    data_vars = {}
    for band in prep.bands:
        name = f"load-{band.name}-" + tokenize(
            band.name, grid.to_dict(), prep.chunk, tc, prep.item_ids, band.resampling, band.dtype.str, band.decode,
            reader, token
        )
        # The band's table of assets is one graph key that every read task of the band depends on: tasks
        # refer to their assets by position, so a task is small whatever the hrefs and metadata weigh, and
        # a distributed worker fetches the table once.
        table = np.empty(len(band.table), dtype=object)
        table[:] = band.table
        table_key = f"assets-{name}"
        # A Blockwise IO layer, as dask's own readers build: dask fuses it with the blockwise steps
        # that use it (mask, index, composite, store), so one task per chunk reads the bands of its
        # chunk and computes on them, and no band crosses between workers. Its tasks are made when
        # the graph is materialised, for the blocks a computation needs.
        per_chunk = _ChunkTasks(band, prep, token=name)
        layer = blockwise(
            read_chunk, name, "tyx", per_chunk, "tyx", TaskRef(table_key), None, reader, None, read_concurrency, None,
            numblocks={}, _data_producer=True,
        )
        graph = HighLevelGraph(
            {table_key: MaterializedLayer({table_key: DataNode(table_key, table)}), name: layer},
            {table_key: set(), name: {table_key}},
        )
        arr = da.Array(graph, name, chunks=(time_chunks, ys, xs), dtype=band.dtype)
        data_vars[band.name] = (("time", "y", "x"), arr, {**band.attrs, **provenance})
    coords = {"time": prep.times, "time_end": ("time", prep.time_end), "y": grid.ys(), "x": grid.xs()}
    ds = xr.Dataset(data_vars, coords=coords)
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform).rio.write_coordinate_system()
    ds.attrs.update(provenance)
    if token:
        ds.attrs["load_report"] = token
    return ds


def default_reader(gdal_env: Mapping[str, object] | None = None, patch_url: Callable[[str], str] | None = None,
                   retries: int = 3) -> RasterioReader:
    """The reader of a load that names none: GDAL defaults, then the environment's, then ``gdal_env``."""
    env = {**DEFAULT_GDAL_ENV, **gdal_defaults_from_environment(), **(gdal_env or {})}
    return RasterioReader(env, patch_url=patch_url, retries=retries)


class _ChunkTasks(BlockwiseDep):
    """The :class:`ChunkTask` of each block of one band, made on demand from the band's chunk index.

    Dask asks for the blocks it materialises (after culling, only those a computation needs), so a
    graph over a continent costs nothing until a part of it is computed. Tokenized by the layer's
    name: dask would otherwise pickle the band's plan to tokenize it.
    """

    produces_tasks = False

    def __init__(self, band: BandPlan, prep: Prepared, token: str):
        self.band = band
        self.grid, self.chunk, self.n_time = prep.grid, prep.chunk, len(prep.times)
        self.time_chunk = prep.time_chunk or max(self.n_time, 1)
        self.numblocks = prep.block_counts()
        self._token = token

    def __getitem__(self, idx: tuple[int, int, int]) -> ChunkTask:
        it, iy, ix = idx
        return self.band.task(self.grid, self.chunk, self.time_chunk, self.n_time, it, iy, ix)

    def __dask_tokenize__(self) -> str:
        return self._token

    def without_data(self) -> _ChunkTasks:
        """The same tasks without the band's table of assets (a graph key of its own, which the read tasks
        take as an argument): what a compact graph's recipe (:mod:`geoproc.io._compact`) sends."""
        import copy
        import dataclasses

        out = copy.copy(self)
        out.band = dataclasses.replace(self.band, table=(), footprints=self.band.footprints[:0])
        return out


def read_report(data: xr.Dataset | xr.DataArray) -> LoadReport:
    """The assets that a load with ``on_error="fill"`` could not read, and the items that lack a band.

    Compute (or write) the data first: reads happen then. Missing bands are
    known as soon as the load is built.

    Examples
    --------
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> ds = geoproc.load(items, ["red"], resolution=40, on_error="fill")
    >>> _ = ds.red.mean().compute()
    >>> print(geoproc.read_report(ds))
    no failed reads

    With an asset that cannot be read, the report names it, and its pixels are nodata::

        1 asset(s) could not be read and were filled with nodata:
          S2X_33TA_20240508_L2A B04 (.../B04.tif): cannot read ...
    """
    token = data.attrs.get("load_report")
    if not token:
        raise InvalidArgumentError(
            "this object was not loaded with on_error='fill' and no item lacked a band, so there is no read report"
        )
    return LoadReport(token)
