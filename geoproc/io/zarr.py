"""Write results to Zarr (v3, or v2 for older readers; local or S3) with their grid, provenance and optional
overviews: template first, then regions.

How a write goes:

1. **Checks before any compute**: the URL parses, the bucket exists and takes a
   write with these credentials (or the local folder is writable), and what is
   already there fits the mode (nothing for ``create``; a Zarr store of the same
   variables, shape, chunks, CRS and grid for ``resume`` and ``append``).
2. **Template**: the store's metadata (arrays, coordinates, attributes, the
   ``spatial_ref`` grid mapping) is written once from the lazy result.
3. **Regions**: one dask task per compute chunk writes the Zarr chunks of its
   region (chunks are aligned with the compute chunks, so no two tasks ever
   write one Zarr chunk), then records the region as done with one atomic PUT
   of an empty marker object in the manifest (``<store>.geoproc/done/<write>/``,
   where ``<write>`` numbers the writes to the store: 1 for the first, one more
   for each append). Regions that the write being finished already marked done
   are not computed again.
4. **Finish**: consolidated metadata, the manifest's ``status`` set to
   ``complete``, and a STAC Item describing the output beside the store
   (``<store>.stac-item.json``); for a time series (a ``time`` dimension) also
   a STAC Collection whose temporal extent spans its dates
   (``<store>.stac-collection.json``).

With ``overviews``, the store follows the ``multiscales`` convention: the full
resolution in group ``0``, downsampled levels in sibling groups ``1``, ``2``, ...,
each written by the task that writes the full-resolution region it covers
(:mod:`geoproc.io._overviews`).

An interrupted or failed write leaves a store whose manifest says
``writing``; :func:`open_result` refuses it, and the same job with
``mode="resume"`` finishes it, computing only the missing regions.
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..errors import InvalidArgumentError, OutputError
from .._provenance import PROVENANCE_KEYS, collect, merge
from .geozarr import geozarr
from ._overviews import MULTISCALES_CONVENTION, level_chunks, level_dataset, multiscales_attrs, plan_levels
from ._regions import COLLECTION_SUFFIX, Write, _delete_beside, _now
from ._target import ITEM_SUFFIX, _json_safe, _s3_error, _Target
from .output_item import output_item, store_collection
from .storage import zarr_store

__all__ = ["to_zarr", "open_result", "output_status", "MODES"]

#: Write modes and their aliases.
MODES = {"w-": "create", "create": "create", "w": "overwrite", "overwrite": "overwrite", "r+": "resume",
         "resume": "resume", "a": "append", "append": "append"}



def _as_dataset(data: xr.DataArray | xr.Dataset, attrs: Mapping[str, Any] | None) -> xr.Dataset:
    from .. import __version__

    ds = data.to_dataset(name=data.name or "data") if isinstance(data, xr.DataArray) else data
    crs = ds.rio.crs
    if crs is not None:
        transform = ds.rio.transform(recalc=True)
        ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    ds = geozarr(ds.copy())  # CF grid_mapping and the proj:/spatial: Zarr conventions (io/geozarr.py)
    for name in ds.variables:
        ds[name].attrs = _json_safe(dict(ds[name].attrs))
    if crs is not None:
        # xarray leaves a grid_mapping variable out of the "coordinates" attribute, so a plain
        # xr.open_zarr would read spatial_ref back as data and lose the CRS; list it explicitly
        for name in ds.data_vars:
            ds[name].encoding["coordinates"] = " ".join(
                sorted({*ds[name].encoding.get("coordinates", "").split(), "spatial_ref"})
            )
    # provenance from the data itself (its variables' attrs when the Dataset's own have none), so that
    # a result written from Python describes its inputs as a workflow's does
    ds.attrs = _json_safe({**collect(ds), **ds.attrs, **(attrs or {}), "geoproc_version": __version__})
    for name in ds.data_vars:  # a variable's list of items, when it is the store's, is written once
        if ds[name].attrs.get("input_items") == ds.attrs.get("input_items"):
            ds[name].attrs.pop("input_items", None)
    for name, var in ds.data_vars.items():
        if var.dtype.kind not in "biuf":
            raise InvalidArgumentError(
                f"variable {name!r} has dtype {var.dtype}; to_zarr writes numeric and boolean variables only"
            )
        if not isinstance(var.data, da.Array):
            ds[name] = var.chunk({d: -1 for d in var.dims})
    return ds


def _zarr_chunks(ds: xr.Dataset, append_dim: str, inner: int | None) -> dict[str, dict]:
    """Zarr chunk (and shard) shape per variable, checking that compute chunks are regular and aligned."""
    plan = {}
    for name, var in ds.data_vars.items():
        dask_chunks = var.data.chunks
        zchunks, shards = [], []
        for dim, sizes in zip(var.dims, dask_chunks):
            size = sizes[0]
            if any(s != size for s in sizes[:-1]) or sizes[-1] > size:
                raise InvalidArgumentError(
                    f"variable {name!r} has irregular chunks along {dim!r} {sizes[:4]}...: Zarr chunks must be aligned "
                    f"with the compute chunks so that no two tasks write one chunk; rechunk it regularly first, "
                    f"e.g. data.chunk({{{dim!r}: {size}}})"
                )
            if dim == append_dim:
                zchunks.append(1)  # one date a chunk: appended dates never share a chunk with earlier ones
                shards.append(1)
            elif inner and dim in ("y", "x") and size > inner:
                if size % inner:
                    raise InvalidArgumentError(
                        f"shards: the compute chunk of {name!r} along {dim!r} ({size}) is not a multiple of the inner "
                        f"chunk {inner}; pick an inner chunk that divides it"
                    )
                zchunks.append(inner)
                shards.append(size)
            else:
                zchunks.append(size)
                shards.append(size)
        plan[name] = {"chunks": tuple(zchunks), "shards": tuple(shards) if shards != zchunks else None}
    return plan


def _encoding(ds: xr.Dataset, chunking: dict, level: int, zarr_format: int = 3) -> dict:
    if zarr_format == 2:
        from numcodecs import Zstd as ZstdCodec  # Zarr v2's codec (GDAL >= 3.4 reads it)
    else:
        from zarr.codecs import ZstdCodec

    enc = {}
    for name in ds.data_vars:
        enc[name] = {"chunks": chunking[name]["chunks"], "compressors": [ZstdCodec(level=level)]}
        if chunking[name]["shards"]:
            enc[name]["shards"] = chunking[name]["shards"]
    return enc


def _level_encoding(ds: xr.Dataset, chunking: dict, level: int, factor: int, zarr_format: int) -> dict:
    """A level's encoding: the compute chunk (the shard, if sharded) divided by ``factor`` along y and x."""
    enc = _encoding(ds, {name: {"chunks": level_chunks(c["shards"] or c["chunks"], ds[name].dims, factor), "shards": None}
                         for name, c in chunking.items()}, level, zarr_format)
    return enc


def _layout(target: _Target) -> tuple[int, int]:
    """The existing store's Zarr format and number of overview levels."""
    import zarr

    group = zarr.open_group(zarr_store(target.loc, target.opts), mode="r")
    multiscales = group.attrs.get("multiscales")
    levels = len(multiscales["layout"]) - 1 if isinstance(multiscales, Mapping) and "layout" in multiscales else 0
    return int(group.metadata.zarr_format), levels


def _grid_fingerprint(ds: xr.Dataset, append_dim: str) -> dict:
    """What must match for a store to be resumed or appended to."""
    out: dict[str, Any] = {"variables": {}}
    for name, var in ds.data_vars.items():
        out["variables"][name] = {
            "dims": list(var.dims),
            "shape": [n for d, n in zip(var.dims, var.shape) if d != append_dim],
            "dtype": str(var.dtype),
        }
    crs = ds.rio.crs
    out["crs"] = crs.to_wkt() if crs is not None else None
    out["transform"] = list(ds.rio.transform(recalc=True))[:6] if crs is not None else None
    return out


def _check_compatible(target: _Target, ds: xr.Dataset, existing: xr.Dataset, append_dim: str, chunking: dict) -> None:
    new, old = _grid_fingerprint(ds, append_dim), _grid_fingerprint(existing, append_dim)
    advice = "pass mode='w' to replace it, or write to another URL"
    if set(new["variables"]) != set(old["variables"]):
        raise OutputError(
            f"output {target.url} holds variables {sorted(old['variables'])}, this result {sorted(new['variables'])}; {advice}"
        )
    for name, spec in new["variables"].items():
        if spec != old["variables"][name]:
            raise OutputError(
                f"output {target.url} holds {name!r} with dims/shape/dtype {old['variables'][name]}, this result "
                f"{spec}; {advice}"
            )
        stored = tuple(existing[name].encoding.get("chunks") or ())
        if stored and stored != chunking[name]["chunks"]:
            raise OutputError(
                f"output {target.url} stores {name!r} in chunks {stored}, this result would write {chunking[name]['chunks']}; "
                f"use the same chunks as the first run, or {advice}"
            )
    if (new["crs"] is None) != (old["crs"] is None) or (
        new["crs"] is not None and not _same_crs(new["crs"], old["crs"])
    ):
        raise OutputError(f"output {target.url} has another CRS than this result; {advice}")
    if new["transform"] and old["transform"] and not np.allclose(new["transform"], old["transform"], rtol=0, atol=1e-6):
        raise OutputError(
            f"output {target.url} has grid transform {old['transform']}, this result {new['transform']}; {advice}"
        )


def _same_crs(a: str, b: str) -> bool:
    from pyproj import CRS

    return CRS.from_wkt(a) == CRS.from_wkt(b)


def _open_existing(target: _Target, levels: int = 0) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return xr.open_zarr(zarr_store(target.loc, target.opts), consolidated=False, group="0" if levels else None)


def to_zarr(
    data: xr.DataArray | xr.Dataset,
    url: str | os.PathLike,
    *,
    mode: str = "w-",
    compute: bool = True,
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    append_dim: str = "time",
    compression_level: int = 3,
    shard_inner_chunk: int | None = None,
    stac_item: bool = True,
    zarr_format: int | None = None,
    overviews: bool | int = False,
    overview_resampling: str | Mapping[str, str] = "auto",
):
    """Write ``data`` to a Zarr v3 store (local or S3) with its CRS, transform and provenance; resumable.

    Parameters
    ----------
    data
        A DataArray (stored as one variable named after it, or ``data``) or a
        Dataset; numeric or boolean variables, lazy (dask) or in memory.
    url
        Local path, ``file://`` URL or ``s3://bucket/prefix/name.zarr``.
    mode
        ``"w-"``/``"create"`` (default): fail if a store exists. ``"w"``/``"overwrite"``:
        replace an existing Zarr store. ``"resume"``/``"r+"``: finish an interrupted
        write of the same result, computing only the regions not yet written
        (creates the store if there is none). ``"a"``/``"append"``: add new
        dates along ``append_dim`` to an existing store (creates it if there is
        none; rerunning an interrupted append resumes it).
    compute
        Write now (True), or return a ``dask.delayed`` object that writes when computed.
    attrs
        Extra attributes for the store (job parameters, ...).
    storage_options
        S3 connection settings (``endpoint_url``, ``region``, ``access_key_id``,
        ``secret_access_key``, ``session_token``, ``profile``, ``anonymous``,
        ``retry_timeout``, ...); see :func:`geoproc.io.storage.s3_options`.
        Default: the standard AWS environment variables or profile.
    append_dim
        The dimension that ``append`` extends; stored one step per Zarr chunk.
    compression_level
        Zstandard level (1-22).
    shard_inner_chunk
        Store each compute chunk as one Zarr shard of ``shard_inner_chunk``-pixel
        inner chunks (many small chunks, few objects). Default: one Zarr chunk per
        compute chunk (one date each along ``append_dim``).
    stac_item
        Write a STAC Item describing the output beside the store
        (``<url>.stac-item.json``) and, for a time series (a ``time``
        dimension), a STAC Collection whose temporal extent spans its dates
        (``<url>.stac-collection.json``).
    zarr_format
        3 (the default for a new store) or 2, for readers whose GDAL predates
        Zarr v3 support (3.10, in rasterio's wheels, opens v2 stores only).
        Resume and append keep the store's own format.
    overviews
        Also write downsampled levels (True: halve until the larger side is at
        most 256 px; an int: that many levels), each half the resolution of the
        one before, as ``multiscales`` (the full resolution in group ``0``,
        level ``l`` in group ``l``; open one with ``open_result(url, level=l)``
        or all with ``xr.open_datatree``). Each level is computed in the task
        that writes the full-resolution chunk it covers, so the compute chunks
        along ``y`` and ``x`` must be multiples of ``2**levels``.
    overview_resampling
        ``"auto"`` (mean ignoring NaN and nodata for floats; the most frequent
        value for integers and booleans, i.e. classes and masks), or one of
        ``"mean"``, ``"mode"``, ``"nearest"``, or a dict of them per variable.

    Returns
    -------
    str or dask.delayed.Delayed
        The store's URL, or the pending write (which returns the URL).

    Raises
    ------
    OutputError
        Before any compute: the location cannot be written (missing bucket,
        rejected credentials, unwritable folder), or what is there does not
        fit the mode (a store exists for ``create``; another shape, chunking or
        CRS for ``resume``/``append``). During the write: a region could not be
        written after the retry budget (the regions already written stay
        recorded; resume later).

    Notes
    -----
    Chunks of the store are the compute chunks (one date per chunk along
    ``append_dim``); irregular compute chunks are refused rather than risk two
    tasks writing one Zarr chunk. Each task records its region in the manifest
    ``<url>.geoproc/`` once written; the store becomes readable through
    :func:`open_result` when the manifest says ``complete``. Credentials never
    appear in errors or in anything written.

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red", "nir"], resolution=40)
    >>> composite = geoproc.composite(geoproc.ndvi(ds), "median")
    >>> geoproc.to_zarr(composite, "out/ndvi.zarr")
    'out/ndvi.zarr'
    >>> geoproc.to_zarr(composite, "out/ndvi.zarr", mode="resume")  # nothing left to write
    'out/ndvi.zarr'
    >>> xr.open_zarr("out/ndvi.zarr").rio.crs.to_epsg()
    32633

    On S3 and compatibles, the same with a URL (credentials from the environment
    or ``storage_options``)::

        geoproc.to_zarr(composite, "s3://bucket/ndvi.zarr", mode="resume")
    """
    w = begin_write(data, url, mode=mode, attrs=attrs, storage_options=storage_options, append_dim=append_dim,
                    compression_level=compression_level, shard_inner_chunk=shard_inner_chunk, stac_item=stac_item,
                    zarr_format=zarr_format, overviews=overviews, overview_resampling=overview_resampling)
    finish = w.delayed(w.pending())
    if not compute:
        return finish
    return finish.compute()


def begin_write(
    data: xr.DataArray | xr.Dataset,
    url: str | os.PathLike,
    *,
    mode: str = "w-",
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    append_dim: str = "time",
    compression_level: int = 3,
    shard_inner_chunk: int | None = None,
    stac_item: bool = True,
    zarr_format: int | None = None,
    overviews: bool | int = False,
    overview_resampling: str | Mapping[str, str] = "auto",
) -> Write:
    """Steps 1 and 2 of :func:`to_zarr` (checks, template, manifest ``writing``): a :class:`Write` whose
    regions are yet to run, as one graph or tile by tile (:mod:`geoproc.run.tiles`)."""
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 1 <= int(compression_level) <= 22:
        raise InvalidArgumentError(f"compression_level must be 1..22 (zstd), got {compression_level}")
    if zarr_format not in (None, 2, 3):
        raise InvalidArgumentError(f"zarr_format must be 3 or 2, got {zarr_format!r}")
    if zarr_format == 2 and shard_inner_chunk:
        raise InvalidArgumentError("shard_inner_chunk needs Zarr v3 (shards are a v3 codec); drop it, or use zarr_format=3")
    how = MODES[mode]
    target = _Target(url, storage_options)
    ds = _as_dataset(data, attrs)
    chunking = _zarr_chunks(ds, append_dim, shard_inner_chunk)
    levels, resampling = plan_levels(ds, overviews, overview_resampling)
    fmt = zarr_format or 3

    # 1. checks, before any compute
    target.check_writable()
    try:
        exists = target.store_exists()
    except OutputError:
        raise
    except Exception as exc:
        raise _s3_error(target, exc) if not target.loc.is_local else target.error("cannot read", exc, "check the path") from None
    offsets = {name: (0,) * ds[name].ndim for name in ds.data_vars}
    done: set[str] = set()
    manifest = target.read_manifest() if exists else None
    if exists and how == "create":
        raise OutputError(
            f"output {target.url} already exists; pass mode='w' (CLI: --overwrite) to replace it, mode='resume' to "
            "finish an interrupted write of the same job, or choose another URL"
        )
    if exists and how in ("resume", "append"):
        stored_format, stored_levels = _layout(target)
        if zarr_format is not None and zarr_format != stored_format:
            raise OutputError(
                f"output {target.url} is a Zarr v{stored_format} store, this write asks for v{zarr_format}; leave "
                f"zarr_format out to keep the store's, or pass mode='w' to replace it"
            )
        if stored_levels != levels:
            raise OutputError(
                f"output {target.url} has {stored_levels} overview level(s), this write {levels}; pass "
                f"overviews={stored_levels or False} as the first write did, or mode='w' to replace it"
            )
        fmt = stored_format
        existing = _open_existing(target, levels)
        _check_compatible(target, ds, existing, append_dim, chunking)
    if how == "overwrite" and exists:
        target.delete_all()
        _delete_beside(target, COLLECTION_SUFFIX)
        exists, manifest = False, None

    # 2. template (or what to skip)
    write_template = not exists
    write = 1  # the write's number: an append adds one, a resume keeps the number of the write it finishes
    if exists and how == "resume":
        if append_dim in ds.dims and existing.sizes.get(append_dim) != ds.sizes[append_dim]:
            raise OutputError(
                f"output {target.url} has {existing.sizes.get(append_dim)} steps along {append_dim!r}, this result "
                f"{ds.sizes[append_dim]}; resume only finishes the same result (mode='a' appends new dates)"
            )
        write = manifest.get("write", 1) if manifest else 1
        done = target.done_regions()  # by any write: region keys are absolute positions and extents
    elif exists and how == "append":
        start, resuming = _append_start(target, ds, existing, append_dim)
        for name, var in ds.data_vars.items():
            offsets[name] = tuple(start if d == append_dim else 0 for d in var.dims)
        if resuming:
            write = manifest.get("write", 1) if manifest else 1
            done = target.done_regions()
        else:
            write = manifest.get("write", 0) + 1 if manifest else 1
            # the store's provenance covers every write: xarray's append replaces the attrs it writes
            ds.attrs.update(merge(existing.attrs, ds.attrs))
            for name, var in ds.data_vars.items():
                if name in existing.data_vars and any(k in var.attrs for k in PROVENANCE_KEYS):
                    var.attrs.update(merge(existing[name].attrs, var.attrs))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=UserWarning)
                    for group, part in _groups(ds, levels, chunking):
                        _template(part).to_zarr(zarr_store(target.loc, target.opts), mode="a", append_dim=append_dim,
                                     compute=False, consolidated=False, zarr_format=fmt, group=group)
            except Exception as exc:
                raise target.error("cannot extend", exc, "check the store and the credentials") from None
    if write_template:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                for level, (group, part) in enumerate(_groups(ds, levels, chunking)):
                    encoding = _encoding(ds, chunking, int(compression_level), fmt) if level == 0 else \
                        _level_encoding(ds, chunking, int(compression_level), 2**level, fmt)
                    _template(part).to_zarr(zarr_store(target.loc, target.opts), mode="w", zarr_format=fmt, consolidated=False,
                                 compute=False, encoding=encoding, group=group)
                if levels:  # the root group: what the store is (provenance, grid) and its multiscales layout
                    import zarr

                    root = zarr.open_group(zarr_store(target.loc, target.opts), mode="r+", zarr_format=fmt)
                    conventions = [*ds.attrs.get("zarr_conventions", []), dict(MULTISCALES_CONVENTION)]
                    root.attrs.update(_json_safe({**ds.attrs, "zarr_conventions": conventions,
                                                  **multiscales_attrs(ds, levels, resampling)}))
        except OutputError:
            raise
        except Exception as exc:
            raise target.error("cannot create the Zarr store", exc, "check the location and the credentials") from None

    total = sum(math.prod(ds[name].data.numblocks) for name in ds.data_vars)
    manifest = {
        "format": "geoproc-manifest/1",
        "status": "writing",
        "store": target.url,
        "mode": how,
        "write": write,
        "regions_total": total,
        "started": _now(),
        "chunks": {name: list(c["chunks"]) for name, c in chunking.items()},
        "zarr_format": fmt,
        "overviews": levels,
        "geoproc_version": ds.attrs["geoproc_version"],
    }
    target.write_manifest(manifest)

    # 3. the regions, each one task, of which those not yet recorded as done are pending
    item = collection = None
    if stac_item:  # after an append, the item describes the whole store, earlier dates included
        described = _open_existing(target, levels) if how == "append" else ds
        media = f"application/vnd.zarr; version={fmt}"
        title = f"Zarr v{fmt} store (consolidated metadata)" + (f", {levels} overview level(s)" if levels else "")
        item = output_item(described, target.url, target.loc.name, media_type=media, title=title)
        if "time" in described.dims:  # a time series: a Collection whose temporal extent spans its dates
            collection = store_collection(described, target.url, target.loc.name,
                                          item_href=f"./{target.loc.name}{ITEM_SUFFIX}")
            collection["assets"]["data"].update(type=media, title=title)
    w = Write(target, ds, manifest, write, offsets, done, item, token=uuid.uuid4().hex, levels=levels,
              resampling=resampling, collection=collection)
    w.carry_over()
    return w


def _groups(ds: xr.Dataset, levels: int, chunking: dict) -> list[tuple[str | None, xr.Dataset]]:
    """The store's groups and their (template) datasets: the root alone, or ``0`` and every level."""
    if not levels:
        return [(None, ds)]
    compute = {name: c["shards"] or c["chunks"] for name, c in chunking.items()}
    return [("0", ds)] + [(str(level), level_dataset(ds, level, compute)) for level in range(1, levels + 1)]


def _template(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each data variable one lazy, never computed dask chunk of its shape: xarray writes the
    store's metadata from it (``compute=False``) without building and optimising the store graph of the
    real result, which cost 13 s at 38,416 chunks."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        out[name] = var.copy(data=da.empty(var.shape, dtype=var.dtype, chunks=var.shape))
        out[name].encoding = dict(var.encoding)
    return out


def _append_start(target: _Target, ds: xr.Dataset, existing: xr.Dataset, dim: str) -> tuple[int, bool]:
    """Where appended steps start, and whether this append was already begun (resume it)."""
    if dim not in ds.dims or dim not in existing.dims:
        raise InvalidArgumentError(f"append needs a {dim!r} dimension in both the result and {target.url}")
    old = existing[dim].values
    new = ds[dim].values
    n = len(new)
    if len(old) >= n and np.array_equal(old[-n:], new):
        return len(old) - n, True  # these dates are already in the store's coordinates: an interrupted append
    if len(old) and new.min() <= old.max():
        raise OutputError(
            f"cannot append to {target.url}: the new {dim} values start at {new.min()}, not after the store's last "
            f"({old.max()}); append only later steps, or use mode='w'"
        )
    return len(old), False


def output_status(url: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> dict:
    """The manifest of a store written by :func:`to_zarr`, with ``regions_done`` counted.

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red"], resolution=40, chunks=64)
    >>> _ = geoproc.to_zarr(ds, "out/red.zarr")
    >>> status = geoproc.io.zarr.output_status("out/red.zarr")
    >>> status["status"], status["regions_done"]
    ('complete', 2)
    """
    target = _Target(url, storage_options)
    manifest = target.read_manifest()
    if manifest is None:
        raise OutputError(f"no geoproc manifest beside {target.url}; it was not written by geoproc.to_zarr")
    manifest["regions_done"] = len(target.done_regions(manifest.get("write", 1)))
    return manifest


def open_result(
    url: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None, level: int = 0
) -> xr.Dataset:
    """Open a store written by :func:`to_zarr`, lazily, with its CRS; refuses an unfinished write.

    ``level`` opens an overview level of a store written with ``overviews``
    (0, the default: the full resolution; ``l``: ``2**l`` times coarser).

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red"], resolution=40)
    >>> _ = geoproc.to_zarr(ds, "out/red.zarr")
    >>> result = geoproc.open_result("out/red.zarr")
    >>> result.rio.crs.to_epsg(), result.red.dims
    (32633, ('time', 'y', 'x'))

    A store with overviews: each level is half the resolution of the one before.

    >>> _ = geoproc.to_zarr(ds, "out/red-overviews.zarr", overviews=2)
    >>> [geoproc.open_result("out/red-overviews.zarr", level=k).rio.resolution() for k in range(3)]
    [(40.0, -40.0), (80.0, -80.0), (160.0, -160.0)]
    """
    target = _Target(url, storage_options)
    try:
        exists = target.store_exists()
    except OutputError:
        raise
    except Exception as exc:
        raise _s3_error(target, exc) from None
    if not exists:
        raise OutputError(f"no Zarr store at {target.url}; check the URL")
    manifest = target.read_manifest()
    if manifest is not None and manifest.get("status") != "complete":
        done = len(target.done_regions(manifest.get("write", 1)))
        raise OutputError(
            f"the write of {target.url} is unfinished ({done} of {manifest.get('regions_total')} regions written); "
            "rerun the job with mode='resume' (CLI: --resume) to finish it"
        )
    levels = manifest.get("overviews", 0) if manifest is not None else _layout(target)[1]
    if not 0 <= int(level) <= levels:
        raise InvalidArgumentError(
            f"level must be 0..{levels} for {target.url}" + ("" if levels else " (it was written without overviews)")
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return xr.open_zarr(zarr_store(target.loc, target.opts), consolidated=manifest is not None or None,
                            group=str(int(level)) if levels else None)
