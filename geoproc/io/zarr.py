"""Write results to Zarr v3 (local or S3) with their grid and provenance: template first, then regions.

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
   (``<store>.stac-item.json``).

An interrupted or failed write leaves a store whose manifest says
``writing``; :func:`open_result` refuses it, and the same job with
``mode="resume"`` finishes it, computing only the missing regions.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..errors import InvalidArgumentError, OutputError
from .._provenance import PROVENANCE_KEYS, collect, merge
from .geozarr import geozarr
from .output_item import output_item
from .storage import Location, S3Options, object_store, parse_location, redact, s3_options, zarr_store

__all__ = ["to_zarr", "open_result", "output_status", "MODES"]

#: Write modes and their aliases.
MODES = {"w-": "create", "create": "create", "w": "overwrite", "overwrite": "overwrite", "r+": "resume",
         "resume": "resume", "a": "append", "append": "append"}

MANIFEST_SUFFIX = ".geoproc"
ITEM_SUFFIX = ".stac-item.json"
_MANIFEST = "manifest.json"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value)).lower()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


class _Target:
    """One output: the store, its manifest and item, and the connection to reach them."""

    def __init__(self, url: str | os.PathLike, storage_options: Mapping[str, Any] | None):
        self.loc = parse_location(url)
        if self.loc.is_local and storage_options:
            raise InvalidArgumentError(f"storage_options apply to s3:// URLs, not to the local path {self.loc.url}")
        self.opts: S3Options | None = None if self.loc.is_local else s3_options(storage_options)
        self.manifest_loc = self.loc.sibling(MANIFEST_SUFFIX)

    @property
    def url(self) -> str:
        return self.loc.url

    def error(self, what: str, exc: BaseException, advice: str) -> OutputError:
        return OutputError(f"{what} {self.url}: {_reason(exc, self.opts)}; {advice}")

    def manifest_store(self):
        return object_store(self.manifest_loc, self.opts)

    def read_manifest(self) -> dict | None:
        import obstore

        if self.loc.is_local and not os.path.isdir(self.manifest_loc.path):
            return None
        try:
            return json.loads(bytes(obstore.get(self.manifest_store(), _MANIFEST).bytes()))
        except FileNotFoundError:
            return None

    def write_manifest(self, manifest: dict) -> None:
        import obstore

        obstore.put(self.manifest_store(), _MANIFEST, json.dumps(manifest, indent=1).encode())

    def done_regions(self, write: int | None = None) -> set[str]:
        """The regions recorded as written (their markers): by write number ``write``, or by any write."""
        import obstore

        folder = "done" if write is None else f"done/{write}"
        if self.loc.is_local and not os.path.isdir(os.path.join(self.manifest_loc.path, folder)):
            return set()
        found = set()
        for page in obstore.list(self.manifest_store(), folder + "/"):
            # done/<write>/<variable>/<region>: the region's key is what follows the write number
            found.update(entry["path"].split("/", 2)[2] for entry in page)
        return found

    def store_exists(self) -> bool:
        """True if a Zarr store is at the URL; raises if something else is."""
        import obstore

        if self.loc.is_local:
            path = self.loc.path
            if not os.path.exists(path):
                return False
            if os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zgroup")):
                return True
            if os.path.isdir(path) and not os.listdir(path):
                return False
            raise OutputError(
                f"output {self.url} exists and is not a Zarr store; geoproc only replaces Zarr stores. "
                "Remove it yourself or choose another path"
            )
        store = object_store(self.loc, self.opts)
        try:
            obstore.head(store, "zarr.json")
            return True
        except FileNotFoundError:
            pass
        if next(iter(obstore.list(store, chunk_size=1)), []):
            raise OutputError(
                f"output {self.url} holds objects but no Zarr store; geoproc only replaces Zarr stores. "
                "Remove them yourself or choose another prefix"
            )
        return False

    def check_writable(self) -> None:
        """Fail now, with the reason, if the location cannot be written."""
        import obstore

        if self.loc.is_local:
            parent = os.path.dirname(os.path.abspath(self.loc.path)) or "."
            try:
                os.makedirs(parent, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=parent, prefix=".geoproc-probe-"):
                    pass
            except OSError as exc:
                raise OutputError(
                    f"cannot write output {self.url}: {exc.strerror or exc}; choose a writable directory (CLI: --output PATH)"
                ) from None
            return
        probe = f"probe-{os.getpid()}"
        try:
            store = self.manifest_store()
            obstore.put(store, probe, b"")
            obstore.delete(store, probe)
        except Exception as exc:
            raise _s3_error(self, exc) from None

    def delete_all(self) -> None:
        """Remove the store, its manifest and its item (``overwrite``)."""
        import obstore

        if self.loc.is_local:
            for path in (self.loc.path, self.manifest_loc.path):
                if os.path.isdir(path):
                    shutil.rmtree(path)
            item = self.loc.path + ITEM_SUFFIX
            if os.path.exists(item):
                os.remove(item)
            return
        for loc in (self.loc, self.manifest_loc):
            store = object_store(loc, self.opts)
            for page in obstore.list(store, chunk_size=1000):
                obstore.delete(store, [entry["path"] for entry in page])
        parent = object_store(self.loc, self.opts, prefix=self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else "")
        try:
            obstore.delete(parent, self.loc.name + ITEM_SUFFIX)
        except FileNotFoundError:
            pass

    def put_item(self, item: dict) -> None:
        import obstore

        body = json.dumps(item, indent=1).encode()
        if self.loc.is_local:
            tmp = f"{self.loc.path}{ITEM_SUFFIX}.tmp-{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, self.loc.path + ITEM_SUFFIX)
            return
        parent = self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else ""
        obstore.put(object_store(self.loc, self.opts, prefix=parent), self.loc.name + ITEM_SUFFIX, body)


def _reason(exc: BaseException, opts: S3Options | None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for marker in ("<Code>", "<Message>"):
        full = str(exc)
        if marker in full:
            text = text.split(":")[0] + ": " + full.split(marker, 1)[1].split("<", 1)[0]
            break
    return redact(text[:300], opts)


def _s3_error(target: _Target, exc: BaseException) -> OutputError:
    text = str(exc)
    name = type(exc).__name__
    endpoint = (target.opts.endpoint_url if target.opts else None) or "AWS S3"
    if "NoSuchBucket" in text:
        return OutputError(f"bucket {target.loc.bucket!r} of output {target.url} does not exist; create it or check the URL")
    if name in ("PermissionDeniedError", "UnauthenticatedError") or "403" in text or "AccessDenied" in text:
        return OutputError(
            f"the object store at {endpoint} refused the credentials for {target.url} "
            f"({_reason(exc, target.opts)}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, "
            "or storage_options"
        )
    if any(w in text.lower() for w in ("connect", "timed out", "timeout", "dns", "refused")):
        return OutputError(
            f"cannot reach the object store at {endpoint} for {target.url} ({_reason(exc, target.opts)}); "
            "check the endpoint and that the store is running"
        )
    return target.error("cannot write output", exc, "check the URL, the credentials and the endpoint")


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


def _encoding(ds: xr.Dataset, chunking: dict, level: int) -> dict:
    from zarr.codecs import ZstdCodec

    enc = {}
    for name in ds.data_vars:
        enc[name] = {"chunks": chunking[name]["chunks"], "compressors": [ZstdCodec(level=level)]}
        if chunking[name]["shards"]:
            enc[name]["shards"] = chunking[name]["shards"]
    return enc


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


def _open_existing(target: _Target) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return xr.open_zarr(zarr_store(target.loc, target.opts), consolidated=False)


def _region_key(name: str, starts: Sequence[int], sizes: Sequence[int]) -> str:
    """``<variable>/<start>+<size>_...``: a marker stands for exactly that region, so a rerun chunked otherwise
    along time never takes a larger region for written."""
    return f"{name}/" + "_".join(f"{int(s)}+{int(n)}" for s, n in zip(starts, sizes, strict=True))


@dataclass(frozen=True)
class _Output:
    """What a write task needs to reach one variable of the store and the manifest; small to pickle.

    The zarr array and the marker store are opened once per worker process (:func:`_open_output`):
    unpickling an obstore S3Store costs 3-20 ms, which every task paid when they travelled with it.
    """

    loc: Location
    manifest_loc: Location
    opts: S3Options | None
    variable: str
    token: str  # one per to_zarr call: a later write to the same URL never reuses an array opened for this one
    write: int  # the write's number in the manifest: its markers go to done/<write>/

    def open(self):
        return _open_output(self)


@functools.lru_cache(maxsize=16)
def _open_output(output: _Output):
    import zarr

    array = zarr.open_array(zarr_store(output.loc, output.opts), path=output.variable, mode="r+")
    return array, object_store(output.manifest_loc, output.opts)


def _write_block(block: np.ndarray, store: _Output, offsets: tuple[int, ...], url: str, block_info=None) -> np.ndarray:
    """Write one compute chunk into its Zarr region, then mark the region done (module level: pickled by reference)."""
    import obstore

    target, markers = store.open()
    variable, opts = store.variable, store.opts
    location = block_info[0]["array-location"]
    starts = [a + off for (a, _), off in zip(location, offsets)]
    region = tuple(slice(s, s + (b - a)) for s, (a, b) in zip(starts, location))
    values = np.asarray(block).astype(target.dtype, copy=False)
    # Writing whole chunks is idempotent, so a region is simply written again after a failure that
    # the client's own retries gave up on (a request cut by a store that went away mid-flight),
    # until the retry budget is spent.
    budget = opts.retry_timeout if opts is not None else 0.0
    deadline, pause = time.monotonic() + budget, 0.5
    while True:
        try:
            target[region] = values
            obstore.put(markers, f"done/{store.write}/" + _region_key(variable, starts, values.shape), b"")
            break
        except Exception as exc:
            if _transient(exc) and time.monotonic() + pause < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 8.0)
                continue
            failure = exc
        # raised without the original as context: distributed pickles the whole chain
        raise OutputError(
            f"cannot write {variable!r} region {[(r.start, r.stop) for r in region]} of {url}"
            f"{f' (retried for {budget:.0f} s)' if budget else ''}: {_reason(failure, opts)}. "
            "The regions written so far are recorded: rerun with mode='resume' once the store is reachable"
        )
    return np.ones((1,) * block.ndim, dtype=bool)


def _transient(exc: BaseException) -> bool:
    """Worth writing again: not refused credentials, a missing bucket or a programming error."""
    if isinstance(exc, TypeError | ValueError | IndexError | KeyError | OutputError):
        return False
    text = str(exc)
    return type(exc).__name__ not in ("PermissionDeniedError", "UnauthenticatedError") and "NoSuchBucket" not in text


def _finish(_written, target: _Target, manifest: dict, item: dict | None) -> str:
    """Consolidate metadata, mark the manifest complete and write the STAC Item (the last task)."""
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # consolidated metadata is a zarr-python extension
            zarr.consolidate_metadata(zarr_store(target.loc, target.opts))
        target.write_manifest({**manifest, "status": "complete", "completed": _now()})
        if item is not None:
            target.put_item(item)
    except Exception as exc:
        raise OutputError(
            f"every region of {target.url} is written, but finishing the store failed: {_reason(exc, target.opts)}; "
            "rerun with mode='resume' to finish it"
        ) from None
    return target.url


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
        Write a STAC Item describing the output beside the store.

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
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 1 <= int(compression_level) <= 22:
        raise InvalidArgumentError(f"compression_level must be 1..22 (zstd), got {compression_level}")
    how = MODES[mode]
    target = _Target(url, storage_options)
    ds = _as_dataset(data, attrs)
    chunking = _zarr_chunks(ds, append_dim, shard_inner_chunk)

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
        existing = _open_existing(target)
        _check_compatible(target, ds, existing, append_dim, chunking)
    if how == "overwrite" and exists:
        target.delete_all()
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
                    ds.to_zarr(zarr_store(target.loc, target.opts), mode="a", append_dim=append_dim, compute=False,
                               consolidated=False, zarr_format=3)
            except Exception as exc:
                raise target.error("cannot extend", exc, "check the store and the credentials") from None
    if write_template:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                ds.to_zarr(zarr_store(target.loc, target.opts), mode="w", zarr_format=3, consolidated=False,
                           compute=False, encoding=_encoding(ds, chunking, int(compression_level)))
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
        "geoproc_version": ds.attrs["geoproc_version"],
    }
    target.write_manifest(manifest)

    # 3. one write task per compute chunk not yet recorded as done
    writes = []
    token = uuid.uuid4().hex
    for name, var in ds.data_vars.items():
        output = _Output(target.loc, target.manifest_loc, target.opts, name, token, write)
        # name and meta given: dask would otherwise tokenize the arguments and call the function on an empty block
        written = da.map_blocks(
            _write_block, var.data, dtype=bool, chunks=tuple((1,) * n for n in var.data.numblocks),
            meta=np.empty((0,) * var.ndim, dtype=bool), name=f"geoproc-write-{name}-{token}",
            store=output, offsets=offsets[name], url=target.url,
        )
        writes.append((name, written, var.data.chunks))
    optimized = dask.optimize(*[w for _, w, _ in writes])
    pending, carried = [], []
    own = target.done_regions(write) if done else set()
    for (name, _, chunks), written in zip(writes, optimized):
        starts = [np.cumsum((0,) + c[:-1]) for c in chunks]
        blocks = written.to_delayed(optimize_graph=False)
        for index in np.ndindex(blocks.shape):
            key = _region_key(
                name, [s[i] + off for s, i, off in zip(starts, index, offsets[name])], [c[i] for c, i in zip(chunks, index)]
            )
            if key not in done:
                pending.append(blocks[index])
            elif key not in own:  # written by an earlier write: counted as this write's too, so counts add up
                carried.append(key)
    if carried:
        _mark(target, write, carried)
    item = None
    if stac_item:  # after an append, the item describes the whole store, earlier dates included
        described = _open_existing(target) if how == "append" else ds
        item = output_item(described, target.url, target.loc.name)
    finish = dask.delayed(_finish, pure=False)(pending, target, manifest, item)
    if not compute:
        return finish
    return finish.compute()


def _mark(target: _Target, write: int, keys: Sequence[str]) -> None:
    """Markers of ``keys`` under write number ``write`` (regions an earlier write already stored)."""
    import obstore

    store = target.manifest_store()
    try:
        for key in keys:
            obstore.put(store, f"done/{write}/{key}", b"")
    except Exception as exc:
        raise target.error("cannot record the regions written in", exc, "rerun with mode='resume'") from None


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


def open_result(url: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a store written by :func:`to_zarr`, lazily, with its CRS; refuses an unfinished write.

    Examples
    --------
    >>> ds = geoproc.load(geoproc.search("geoproc-demo/archive/catalog.json"), ["red"], resolution=40)
    >>> _ = geoproc.to_zarr(ds, "out/red.zarr")
    >>> result = geoproc.open_result("out/red.zarr")
    >>> result.rio.crs.to_epsg(), result.red.dims
    (32633, ('time', 'y', 'x'))
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return xr.open_zarr(zarr_store(target.loc, target.opts), consolidated=manifest is not None or None)
