"""Write results as Cloud-Optimized GeoTIFFs (local or S3), block by block from their Dask chunks.

How a write goes:

1. **Checks before any compute**: the result is 2-D (``y, x``) or 3-D (``band, y,
   x``) with a CRS, the location takes a write, nothing is there unless
   ``overwrite``.
2. **Blocks**: the Dask chunks are computed a few at a time (as many as the
   scheduler has threads, twice over) and each is written into its window of a
   tiled, ZSTD-compressed GeoTIFF in a temporary folder: the process that
   writes never holds more than those few chunks, whatever the size of the
   result.
3. **COG**: GDAL's COG driver copies that file into the final layout (tiles,
   compression with a predictor, internal overviews down to one block, nodata,
   the IFDs first), streaming window by window; the file is then moved into
   place (local) or uploaded with obstore (S3, multipart for large files).
4. A STAC Item beside it (``<file>.stac-item.json``).

A result too large for one file (``tile_size=``) becomes a folder: one COG per
tile, a STAC Item per tile, a STAC Collection over them (``collection.json``)
and a GDAL VRT mosaic (``mosaic.vrt``) that GIS tools open as one raster.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import dask
import dask.array as da
import numpy as np
import rasterio
import rasterio.shutil
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from rasterio.windows import Window

from ..errors import InvalidArgumentError, OutputError
from .._provenance import collect
from .output_item import collection, output_item
from .storage import Location, S3Options, object_store, parse_location, redact, s3_options

__all__ = ["to_cog", "COG_MEDIA_TYPE"]

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
ITEM_SUFFIX = ".stac-item.json"
#: above this many pixels a side, one file is refused unless ``tile_size`` cuts it into tiles
MAX_SINGLE_SIDE = 65_536
_COMPRESSIONS = ("deflate", "zstd", "lzw", "lerc", "webp", "jpeg", "none")


def _nodata_of(arr: xr.DataArray, nodata: float | None) -> float | None:
    if nodata is not None:
        return float(nodata)
    for value in (arr.rio.nodata, arr.attrs.get("nodata"), arr.attrs.get("_FillValue"), arr.encoding.get("_FillValue")):
        if value is None:
            continue
        try:
            return float(value)  # "nan", as Zarr attrs store it, included
        except (TypeError, ValueError):
            continue
    return float("nan") if arr.dtype.kind == "f" else None


def _as_raster(data: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """``data`` as a lazy ``(band, y, x)`` DataArray, with the reason when it cannot be one."""
    if isinstance(data, xr.Dataset):
        names = [n for n, v in data.data_vars.items() if v.ndim >= 2]
        if not names:
            raise InvalidArgumentError("to_cog needs a variable with y and x dimensions; the Dataset has none")
        arr = xr.concat([data[n] for n in names], dim="band", coords="minimal", compat="override", join="exact")
        arr = arr.assign_coords(band=names)
        arr.attrs = {**collect(data), **data[names[0]].attrs}
        arr.name = "_".join(names) if len(names) <= 3 else f"{len(names)}_bands"
        arr = arr.rio.write_crs(data.rio.crs) if data.rio.crs is not None else arr
    elif isinstance(data, xr.DataArray):
        arr = data
    else:
        raise InvalidArgumentError(f"to_cog takes an xarray DataArray or Dataset, got {type(data).__name__}")
    if arr.rio.crs is None:
        raise InvalidArgumentError(
            "to_cog: the result has no CRS; set it with data.rio.write_crs('EPSG:32633') (or load it with geoproc.load)"
        )
    y, x = arr.rio.y_dim, arr.rio.x_dim
    for dim in [d for d in arr.dims if d not in (y, x)]:
        if dim == "time" and arr.sizes[dim] == 1:
            arr = arr.isel(time=0, drop=True)
        elif dim == "time":
            raise InvalidArgumentError(
                f"to_cog writes one raster; the result has {arr.sizes[dim]} dates: pick one (data.isel(time=0)), "
                "reduce them (geoproc.composite) or write the series with geoproc.to_zarr"
            )
    others = [d for d in arr.dims if d not in (y, x)]
    if len(others) > 1:
        raise InvalidArgumentError(
            f"to_cog writes (band, y, x); the result has dims {arr.dims}: select or stack all but one of {others}"
        )
    if not others:
        arr = arr.expand_dims(band=[arr.name or "data"])
    arr = arr.transpose(*(others or ["band"]), y, x)
    if arr.dtype.kind == "b":
        arr = arr.astype("uint8")
    if arr.dtype.kind not in "iuf":
        raise InvalidArgumentError(f"to_cog writes numbers; the result has dtype {arr.dtype}")
    if not isinstance(arr.data, da.Array):
        arr = arr.chunk({d: -1 if d not in (y, x) else 2048 for d in arr.dims})
    return arr


def _batch_size() -> int:
    """How many chunks to compute at once: twice the scheduler's threads."""
    try:
        from distributed import default_client

        return max(2, 2 * sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return max(2, 2 * (os.cpu_count() or 1))


def _write_blocks(arr: xr.DataArray, path: str, nodata: float | None, blocksize: int) -> None:
    """The chunks of ``arr`` into a tiled GeoTIFF at ``path``, a batch of chunks at a time."""
    bands, height, width = arr.shape
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": arr.dtype.name,
        "crs": arr.rio.crs, "transform": arr.rio.transform(recalc=True), "nodata": nodata,
        "tiled": True, "blockxsize": blocksize, "blockysize": blocksize, "compress": "zstd", "zstd_level": 1,
        "bigtiff": "if_safer", "interleave": "band",
    }
    data = arr.data
    starts = [np.cumsum((0,) + c[:-1]) for c in data.chunks]
    blocks = data.to_delayed()
    indices = list(np.ndindex(blocks.shape))
    fill = nodata is not None and not math.isnan(nodata) and arr.dtype.kind == "f"
    with rasterio.open(path, "w", **profile) as dst:
        for name, i in zip(arr[arr.dims[0]].values, range(bands)):
            dst.set_band_description(i + 1, str(name))
        step = _batch_size()
        for first in range(0, len(indices), step):
            batch = indices[first:first + step]
            for (b, r, c), block in zip(batch, dask.compute(*[blocks[i] for i in batch])):
                block = np.asarray(block)
                if fill:
                    block = np.where(np.isnan(block), nodata, block)
                b0, r0, c0 = starts[0][b], starts[1][r], starts[2][c]
                dst.write(block, indexes=[int(b0) + k + 1 for k in range(block.shape[0])],
                          window=Window(int(c0), int(r0), block.shape[2], block.shape[1]))
                del block
        tags = {k: str(v) for k, v in arr.attrs.items() if k in ("long_name", "units", "input_start", "input_end")}
        if tags:
            dst.update_tags(**tags)


def _to_cog_file(arr: xr.DataArray, dest: str, *, nodata, blocksize, compress, level, resampling, workdir) -> None:
    """Write ``arr`` as a COG at the local path ``dest`` (through a tiled GeoTIFF in ``workdir``)."""
    staging = os.path.join(workdir, "blocks.tif")
    _write_blocks(arr, staging, nodata, blocksize)
    options: dict[str, Any] = {
        "COMPRESS": compress.upper(), "BLOCKSIZE": blocksize, "OVERVIEW_RESAMPLING": resampling.upper(),
        "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS",
    }
    if compress in ("deflate", "zstd", "lzw"):
        options["PREDICTOR"] = "YES"
    if level is not None:
        options["LEVEL"] = int(level)
    if compress in ("webp", "jpeg") and arr.dtype != np.uint8:
        raise InvalidArgumentError(f"compress={compress!r} takes uint8 data, the result is {arr.dtype}; use 'deflate'")
    tmp = os.path.join(workdir, "cog.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        rasterio.shutil.copy(staging, tmp, driver="COG", **options)
    os.remove(staging)
    shutil.move(tmp, dest)


class _Destination:
    """Where the files go: a local folder, or a prefix in a bucket (uploaded from a local staging folder)."""

    def __init__(self, loc: Location, opts: S3Options | None):
        self.loc, self.opts = loc, opts

    def _store(self, prefix: str):
        return object_store(self.loc, self.opts, prefix=prefix)

    def exists(self, name: str) -> bool:
        import obstore

        if self.loc.is_local:
            return os.path.exists(os.path.join(os.path.dirname(self.loc.path) or ".", name))
        parent = self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else ""
        try:
            obstore.head(self._store(parent), name)
            return True
        except FileNotFoundError:
            return False

    def check_writable(self) -> None:
        import obstore

        if self.loc.is_local:
            parent = os.path.dirname(os.path.abspath(self.loc.path))
            try:
                os.makedirs(parent, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=parent, prefix=".geoproc-probe-"):
                    pass
            except OSError as exc:
                raise OutputError(f"cannot write output {self.loc.url}: {exc.strerror or exc}; choose a writable directory") from None
            return
        try:
            store = self._store(self.loc.path)
            obstore.put(store, ".geoproc-probe", b"")
            obstore.delete(store, ".geoproc-probe")
        except Exception as exc:
            text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self.opts)
            if "NoSuchBucket" in str(exc):
                raise OutputError(f"bucket {self.loc.bucket!r} of output {self.loc.url} does not exist; create it or check the URL") from None
            raise OutputError(
                f"cannot write output {self.loc.url}: {text[:300]}; check the URL, the credentials and the endpoint"
            ) from None

    def put_file(self, local: str, key: str) -> None:
        """Move (local) or upload (S3) the file ``local`` to ``key`` under the output's parent."""
        import obstore
        from pathlib import Path

        if self.loc.is_local:
            target = os.path.join(os.path.dirname(self.loc.path) or ".", key)
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            os.replace(local, target)
            return
        parent = self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else ""
        try:
            obstore.put(self._store(parent), key, Path(local))
        except Exception as exc:
            text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self.opts)
            raise OutputError(f"cannot upload {key} to {self.loc.url}: {text[:300]}; rerun the write") from None

    def remove_tiles(self) -> None:
        """Delete the tiles (and their Items) of an earlier tiled write in this folder (``overwrite``)."""
        import obstore

        folder = self.loc.path.rsplit("/", 1)[0]
        if self.loc.is_local:
            for name in os.listdir(folder) if os.path.isdir(folder) else ():
                if name.startswith("tile-r") and name.endswith((".tif", ".json")):
                    os.remove(os.path.join(folder, name))
            return
        store = self._store(folder)
        for page in obstore.list(store, "tile-r"):
            obstore.delete(store, [e["path"] for e in page if e["path"].endswith((".tif", ".json"))])

    def put_json(self, doc: dict, key: str, workdir: str) -> None:
        local = os.path.join(workdir, os.path.basename(key) + ".tmp")
        with open(local, "w") as fh:
            json.dump(doc, fh, indent=1)
        self.put_file(local, key)


def _staging_dir(dest: _Destination) -> str:
    """A temporary folder on the output's filesystem (local: the move into place is a rename)."""
    parent = os.path.dirname(os.path.abspath(dest.loc.path)) if dest.loc.is_local else None
    return tempfile.mkdtemp(prefix=".geoproc-cog-", dir=parent)


def _vrt(arr: xr.DataArray, tiles: list[tuple[str, int, int, int, int]], nodata: float | None) -> str:
    """A GDAL VRT mosaic of the tile files (paths relative to the VRT), which share ``arr``'s grid."""
    bands, height, width = arr.shape
    transform = arr.rio.transform(recalc=True)
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
                 "float64": "Float64"}[arr.dtype.name]
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(arr.rio.crs.to_wkt())}</SRS>",
             "  <GeoTransform>" + ", ".join(repr(float(v)) for v in transform.to_gdal()) + "</GeoTransform>"]
    for b in range(bands):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{b + 1}">')
        lines.append(f"    <Description>{escape(str(arr[arr.dims[0]].values[b]))}</Description>")
        if nodata is not None:
            lines.append(f"    <NoDataValue>{'nan' if math.isnan(nodata) else repr(nodata)}</NoDataValue>")
        for name, r0, c0, h, w in tiles:
            lines += [
                "    <ComplexSource>" if nodata is not None else "    <SimpleSource>",
                f'      <SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>',
                f"      <SourceBand>{b + 1}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}" />',
                f'      <DstRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}" />',
            ]
            if nodata is not None:
                lines.append(f"      <NODATA>{'nan' if math.isnan(nodata) else repr(nodata)}</NODATA>")
            lines.append("    </ComplexSource>" if nodata is not None else "    </SimpleSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def to_cog(
    data: xr.DataArray | xr.Dataset,
    url: str | os.PathLike,
    *,
    nodata: float | None = None,
    compress: str = "deflate",
    level: int | None = None,
    blocksize: int = 512,
    resampling: str | None = None,
    tile_size: int | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    stac_item: bool = True,
) -> str:
    """Write ``data`` as a Cloud-Optimized GeoTIFF (local or S3), or as a folder of COG tiles with a VRT.

    The Dask chunks are computed a few at a time and written into their windows,
    so no process holds the whole result; GDAL's COG driver then adds internal
    overviews and lays the file out for HTTP range reads. The file passes
    ``rio_cogeo.cog_validate``.

    Parameters
    ----------
    data
        A 2-D ``(y, x)`` or 3-D ``(band, y, x)`` DataArray with a CRS (a single
        date along ``time`` is dropped), or a Dataset whose 2-D variables become
        the bands (named after them); lazy or in memory.
    url
        ``path/name.tif``, ``file://`` or ``s3://bucket/prefix/name.tif``; with
        ``tile_size``, the folder (prefix) that receives the tiles.
    nodata
        The value of missing pixels. Default: the data's own (``rio.nodata``,
        ``attrs["nodata"]``), else NaN for floats and none for integers. NaN in
        float data is written as ``nodata`` when that is a number.
    compress
        ``"deflate"`` (default; read by every GDAL), ``"zstd"`` (faster, smaller,
        GDAL >= 2.3), ``"lzw"``, ``"lerc"``, ``"webp"``/``"jpeg"`` (uint8 only, lossy) or ``"none"``.
    level
        Compression level (deflate 1-12, zstd 1-22); GDAL's default when None.
    blocksize
        Tile size of the COG in pixels (a multiple of 16).
    resampling
        Overview resampling. Default: ``"average"`` for floats (indices,
        reflectance), ``"nearest"`` for integers (classes, masks: a class is never
        averaged into another); ``"mode"`` suits classes too.
    tile_size
        Cut the result into tiles of ``tile_size`` pixels a side (a multiple of
        ``blocksize``): ``url`` is then a folder holding ``tile-r<row>-c<col>.tif``,
        a STAC Item per tile, ``collection.json`` (a STAC Collection over them)
        and ``mosaic.vrt`` (a GDAL VRT of the whole). Required above
        65,536 pixels a side.
    overwrite
        Replace what is there (default: refuse).
    storage_options
        S3 connection settings, as for :func:`geoproc.to_zarr`.
    stac_item
        Write a STAC Item beside the file (``<url>.stac-item.json``).

    Returns
    -------
    str
        The COG's URL; with ``tile_size``, the VRT's (``<url>/mosaic.vrt``).

    Raises
    ------
    InvalidArgumentError
        The result has no CRS, several dates or more than three dims, or an option is out of range.
    OutputError
        Before any compute: the location cannot be written, or something is there and ``overwrite`` is False.

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red", "nir"], resolution=40)
    >>> ndvi = geoproc.composite(geoproc.ndvi(ds), "median")
    >>> geoproc.to_cog(ndvi, "out/ndvi.tif", blocksize=64)  # small blocks: the demo is small
    'out/ndvi.tif'
    >>> import rasterio
    >>> with rasterio.open("out/ndvi.tif") as src:
    ...     src.crs.to_epsg(), src.overviews(1), src.compression.name
    (32633, [2], 'deflate')
    """
    compress = str(compress).lower()
    if compress not in _COMPRESSIONS:
        raise InvalidArgumentError(f"compress must be one of {', '.join(_COMPRESSIONS)}, got {compress!r}")
    if int(blocksize) < 16 or int(blocksize) % 16:
        raise InvalidArgumentError(f"blocksize must be a multiple of 16 (TIFF tiles), got {blocksize}")
    blocksize = int(blocksize)
    arr = _as_raster(data)
    nodata = _nodata_of(data if isinstance(data, xr.DataArray) else arr, nodata)
    if nodata is not None and math.isnan(nodata) and arr.dtype.kind != "f":
        nodata = None
    if resampling is None:
        resampling = "average" if arr.dtype.kind == "f" else "nearest"
    _, height, width = arr.shape
    if tile_size is not None and (int(tile_size) <= 0 or int(tile_size) % blocksize):
        raise InvalidArgumentError(f"tile_size must be a positive multiple of blocksize ({blocksize}), got {tile_size}")
    if tile_size is None and max(height, width) > MAX_SINGLE_SIDE:
        raise InvalidArgumentError(
            f"the result is {height} x {width} pixels, too large for one file (over {MAX_SINGLE_SIDE} a side); "
            f"pass tile_size=16384 to write a folder of COG tiles with a VRT mosaic"
        )
    loc = parse_location(url)
    if loc.is_local and storage_options:
        raise InvalidArgumentError(f"storage_options apply to s3:// URLs, not to the local path {loc.url}")
    opts = None if loc.is_local else s3_options(storage_options)
    provenance = {**(collect(data) if isinstance(data, xr.Dataset) else {}),
                  **{k: v for k, v in arr.attrs.items() if k in ("input_items", "input_start", "input_end")}}
    settings = dict(nodata=nodata, blocksize=blocksize, compress=compress, level=level, resampling=resampling)
    if tile_size is None:
        return _write_single(arr, loc, opts, overwrite, stac_item, provenance, settings)
    return _write_tiles(arr, loc, opts, int(tile_size), overwrite, provenance, settings)


def _described(arr: xr.DataArray, provenance: dict) -> xr.Dataset:
    ds = arr.to_dataset(dim=arr.dims[0]) if arr.shape[0] > 1 else arr.isel({arr.dims[0]: 0}, drop=True).to_dataset(
        name=str(arr[arr.dims[0]].values[0]))
    ds = ds.rio.write_crs(arr.rio.crs)
    ds.attrs = dict(provenance)
    return ds


def _write_single(arr, loc: Location, opts, overwrite: bool, stac_item: bool, provenance: dict, settings: dict) -> str:
    if not loc.path.lower().endswith((".tif", ".tiff")):
        raise InvalidArgumentError(f"a COG's URL ends with .tif or .tiff, got {loc.url} (for tiles, pass tile_size=)")
    dest = _Destination(loc, opts)
    dest.check_writable()
    if dest.exists(loc.name) and not overwrite:
        raise OutputError(f"output {loc.url} already exists; pass overwrite=True to replace it, or choose another URL")
    workdir = _staging_dir(dest)
    try:
        local = os.path.join(workdir, "out.tif")
        _to_cog_file(arr, local, workdir=workdir, **settings)
        dest.put_file(local, loc.name)
        if stac_item:
            item = output_item(_described(arr, provenance), f"./{loc.name}", loc.name, media_type=COG_MEDIA_TYPE,
                               title="Cloud-optimized GeoTIFF")
            dest.put_json(item, loc.name + ITEM_SUFFIX, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return loc.url


def _write_tiles(arr, loc: Location, opts, tile_size: int, overwrite: bool, provenance: dict, settings: dict) -> str:
    _, height, width = arr.shape
    folder = _Destination(Location(loc.url.rstrip("/") + "/mosaic.vrt", loc.scheme, loc.path + "/mosaic.vrt",
                                   loc.bucket), opts)
    folder.check_writable()
    if folder.exists("collection.json"):
        if not overwrite:
            raise OutputError(f"output {loc.url} already holds tiles; pass overwrite=True to replace them, or choose another URL")
        folder.remove_tiles()  # another tile_size would leave tiles the new VRT and Collection do not list
    workdir = _staging_dir(folder)
    tiles, items = [], []
    try:
        for r0 in range(0, height, tile_size):
            for c0 in range(0, width, tile_size):
                name = f"tile-r{r0 // tile_size:03d}-c{c0 // tile_size:03d}"
                part = arr.isel({arr.rio.y_dim: slice(r0, r0 + tile_size), arr.rio.x_dim: slice(c0, c0 + tile_size)})
                local = os.path.join(workdir, name + ".tif")
                _to_cog_file(part, local, workdir=workdir, **settings)
                folder.put_file(local, name + ".tif")
                tiles.append((name + ".tif", r0, c0, part.shape[1], part.shape[2]))
                item = output_item(_described(part, provenance), f"./{name}.tif", name, media_type=COG_MEDIA_TYPE,
                                   title="Cloud-optimized GeoTIFF (one tile)")
                item["collection"] = loc.name
                item["links"] = [{"rel": "collection", "href": "./collection.json", "type": "application/json"},
                                 {"rel": "parent", "href": "./collection.json", "type": "application/json"},
                                 {"rel": "root", "href": "./collection.json", "type": "application/json"}]
                folder.put_json(item, name + ".json", workdir)
                items.append(item)
        vrt = os.path.join(workdir, "mosaic.vrt")
        with open(vrt, "w") as fh:
            fh.write(_vrt(arr, tiles, settings["nodata"]))
        folder.put_file(vrt, "mosaic.vrt")
        coll = collection(items, loc.name, description=f"{len(items)} COG tiles of {loc.name} and their VRT mosaic")
        coll["links"] = [{"rel": "root", "href": "./collection.json", "type": "application/json"},
                         *({"rel": "item", "href": f"./{it['id']}.json", "type": "application/geo+json"} for it in items)]
        coll["assets"] = {"mosaic": {"href": "./mosaic.vrt", "type": "application/xml", "title": "GDAL VRT mosaic of the tiles",
                                     "roles": ["data"]}}
        folder.put_json(coll, "collection.json", workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return folder.loc.url
