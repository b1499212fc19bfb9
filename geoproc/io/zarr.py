"""Write results to Zarr v3 with their grid and provenance, and read them back.

The store is created from the lazy result's metadata first (template); the
chunk writes then run as dask tasks, one per output chunk, aligned with the
compute chunks. Everything that can be checked before compute (the location is
writable, nothing is in the way) is checked first, so a bad output path fails
in a second, not after an hour of compute.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import dask
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from ..errors import InvalidArgumentError, OutputError

__all__ = ["to_zarr", "open_result", "local_path", "discard_staging"]

_MODES = ("w-", "w")


def local_path(url: str | os.PathLike) -> str:
    """The filesystem path of a local output URL (a path or ``file://``)."""
    text = os.fspath(url)
    if text.startswith("file://"):
        return text[len("file://") :]
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise OutputError(
            f"output URL scheme {scheme}:// is not supported by this version of geoproc; "
            "write to a local path or file:// URL"
        )
    return text


def _check_writable(path: str, mode: str) -> None:
    if os.path.exists(path):
        if mode == "w-":
            raise OutputError(f"output {path} already exists; pass mode='w' (CLI: --overwrite) to replace it, or choose another path")
        if not _is_zarr_store(path):
            raise OutputError(
                f"output {path} exists and is not a Zarr store; geoproc only replaces Zarr stores. "
                "Remove it yourself or choose another path"
            )
    parent = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(parent, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".geoproc-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write output {path}: {exc.strerror or exc}; choose a writable directory (CLI: --output PATH)"
        ) from None


def _is_zarr_store(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zgroup", ".zarray"))


def _staging_prefix(path: str) -> str:
    return f"{path.rstrip(os.sep)}.geoproc-staging-"


def discard_staging(url: str | os.PathLike) -> None:
    """Remove the staging stores of unfinished writes to ``url`` (after a failed or interrupted job)."""
    prefix = _staging_prefix(local_path(url))
    parent = os.path.dirname(os.path.abspath(prefix))
    if os.path.isdir(parent):
        for name in os.listdir(parent):
            full = os.path.join(parent, name)
            if full.startswith(os.path.abspath(prefix)):
                shutil.rmtree(full, ignore_errors=True)


def _publish(_written, staging: str, path: str) -> str:
    """Move a completely written store from ``staging`` to ``path``, replacing an older store."""
    old = None
    if os.path.exists(path):
        old = f"{path}.geoproc-old-{uuid.uuid4().hex[:8]}"
        os.rename(path, old)
    os.rename(staging, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return path


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


def to_zarr(
    data: xr.DataArray | xr.Dataset,
    url: str | os.PathLike,
    *,
    mode: str = "w-",
    compute: bool = True,
    attrs: Mapping[str, Any] | None = None,
):
    """Write ``data`` to a Zarr v3 store with its CRS, transform and provenance.

    Parameters
    ----------
    data
        A DataArray (stored as one variable named after it, or ``data``) or a Dataset.
    url
        Local path or ``file://`` URL of the store.
    mode
        ``"w-"``: create, fail if it exists (default). ``"w"``: replace.
    compute
        Write now (True), or return a ``dask.delayed`` object that writes the
        chunks when computed.
    attrs
        Extra attributes for the store (parameters of the job, ...).

    Returns
    -------
    str or dask.delayed.Delayed
        The store's path, or the pending write (which returns the path).

    Notes
    -----
    The store is written into a staging folder beside ``url`` and moved into
    place when every chunk is written, so a failed or interrupted job never
    leaves a half-written store at ``url``, and ``mode="w"`` keeps the previous
    store until the new one is complete. Only Zarr stores are ever replaced.

    Raises
    ------
    OutputError
        The location cannot be written or already holds data (before any compute).

    Examples
    --------
    >>> geoproc.to_zarr(composite, "out/ndvi.zarr")  # doctest: +SKIP
    'out/ndvi.zarr'
    >>> xr.open_zarr("out/ndvi.zarr").rio.crs  # doctest: +SKIP
    CRS.from_epsg(32633)
    """
    if mode not in _MODES:
        raise InvalidArgumentError(f"mode must be one of {_MODES}, got {mode!r}")
    path = local_path(url)
    _check_writable(path, mode)
    ds = data.to_dataset(name=data.name or "data") if isinstance(data, xr.DataArray) else data
    crs = ds.rio.crs
    if crs is not None:
        transform = ds.rio.transform(recalc=True)
        ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    ds = ds.copy()
    for name in ds.variables:
        ds[name].attrs = _json_safe(dict(ds[name].attrs))
    if crs is not None:
        # xarray leaves a grid_mapping variable out of the "coordinates" attribute, so a plain
        # xr.open_zarr would read spatial_ref back as data and lose the CRS; list it explicitly
        for name in ds.data_vars:
            ds[name].encoding["coordinates"] = " ".join(
                sorted({*ds[name].encoding.get("coordinates", "").split(), "spatial_ref"})
            )
    from .. import __version__

    ds.attrs = _json_safe(
        {
            **ds.attrs,
            **(attrs or {}),
            "geoproc_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    # Write into a staging store beside the target and move it into place only when every chunk is
    # written: a failed or interrupted job leaves the previous output intact and no half-written one.
    staging = _staging_prefix(path) + uuid.uuid4().hex[:8]
    try:
        with warnings.catch_warnings():
            # consolidated metadata is a zarr-python extension to v3; we want it for fast opens on object storage
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            written = ds.to_zarr(staging, mode="w-", zarr_format=3, consolidated=True, compute=False)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot create the Zarr store {path}: {exc}; choose a writable location") from None
    pending = dask.delayed(_publish, pure=False)(written, staging, path)
    if not compute:
        return pending
    try:
        return pending.compute()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def open_result(url: str | os.PathLike) -> xr.Dataset:
    """Open a store written by :func:`to_zarr`, lazily, with its CRS.

    Examples
    --------
    >>> ds = geoproc.open_result("out/ndvi.zarr")  # doctest: +SKIP
    >>> ds.rio.crs  # doctest: +SKIP
    CRS.from_epsg(32633)
    """
    path = local_path(url)
    if not os.path.isdir(path):
        raise OutputError(f"no Zarr store at {path}; check the path")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return xr.open_zarr(path, consolidated=True)
