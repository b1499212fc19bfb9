"""Overviews of a Zarr store: downsampled levels as sibling groups described by the ``multiscales`` convention.

A store written with ``overviews`` is laid out as the multiscales convention (and xarray's DataTree, and
GDAL 3.13) expect: the root group carries the ``multiscales`` layout and each level is a child group of
its own, ``0`` the full resolution and ``1``, ``2``, ... each half the resolution of the one before,
all siblings. Every level group is a dataset with its own ``y``/``x`` coordinates, ``spatial_ref`` and
``spatial:`` attributes.

Each level is computed from the full-resolution values of one compute chunk in the task that writes
that chunk (:mod:`geoproc.io._regions`): a chunk whose sides are multiples of ``2**levels`` covers whole
chunks of every level (level ``l``'s Zarr chunks are the compute chunk divided by ``2**l``), so no two
tasks ever write one level chunk and no step needs the whole array. Levels are computed from the full
resolution (a ``2**l`` window): a mean ignoring NaN is the mean of all the pixels its window covers (sums
and counts of valid pixels are carried from level to level, not means), a mode the most frequent value
of the whole window.

Resampling: ``mean`` (floats: reflectance, indices; NaN and nodata ignored), ``mode`` (the most frequent
value, nodata ignored: classes, masks; the default for integers and booleans), ``nearest`` (the pixel
at the centre of the window).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError

__all__ = ["RESAMPLING", "MULTISCALES_CONVENTION", "plan_levels", "level_dataset", "level_chunks", "downsample",
           "pyramid", "multiscales_attrs", "MAX_LEVEL_SIDE"]

RESAMPLING = ("mean", "mode", "nearest")
#: ``overviews=True`` adds levels until the coarsest is at most this many pixels a side
MAX_LEVEL_SIDE = 256
#: the ``zarr_conventions`` entry of the ``multiscales`` convention (v1)
MULTISCALES_CONVENTION = {
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "name": "multiscales",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
    "description": "Multiscale layout of zarr datasets",
}
_GDAL_NAMES = {"mean": "average", "mode": "mode", "nearest": "nearest"}


def _spatial_chunk(ds: xr.Dataset) -> tuple[int, int, int, int]:
    """Compute chunk and size along y and x (the same for every variable, which must have both)."""
    found = None
    for name, var in ds.data_vars.items():
        if "y" not in var.dims or "x" not in var.dims:
            raise InvalidArgumentError(
                f"overviews: variable {name!r} has dims {var.dims}, without 'y' and 'x'; overviews downsample 2-D and "
                "3-D products on the grid: drop it, or write it without overviews"
            )
        chunks = var.data.chunks
        here = (chunks[var.dims.index("y")][0], chunks[var.dims.index("x")][0], var.sizes["y"], var.sizes["x"])
        if found is not None and here != found:
            raise InvalidArgumentError(
                f"overviews: variable {name!r} is chunked otherwise along y and x than the others; rechunk the "
                "result to one spatial chunking first"
            )
        found = here
    if found is None:
        raise InvalidArgumentError("overviews: the result has no data variables")
    return found


def plan_levels(ds: xr.Dataset, overviews: bool | int, resampling: str | Mapping[str, str]) -> tuple[int, dict[str, str]]:
    """How many levels to write, and the resampling of each variable; refuses what cannot be written.

    ``overviews=True`` halves the larger side until it is at most :data:`MAX_LEVEL_SIDE` pixels; an int
    asks for that many levels. The compute chunks along ``y`` and ``x`` must be multiples of
    ``2**levels`` (each chunk then covers whole chunks of every level).
    """
    if overviews is False or overviews is None or overviews == 0:
        return 0, {}
    if ds.rio.crs is None:
        raise InvalidArgumentError("overviews need a CRS on the result (data.rio.write_crs(...)) to georeference each level")
    cy, cx, ny, nx = _spatial_chunk(ds)
    if overviews is True:
        levels = max(1, math.ceil(math.log2(max(ny, nx) / MAX_LEVEL_SIDE))) if max(ny, nx) > MAX_LEVEL_SIDE else 1
    elif isinstance(overviews, int) and overviews >= 1:
        levels = int(overviews)
    else:
        raise InvalidArgumentError(f"overviews must be True, False or a number of levels >= 1, got {overviews!r}")
    factor = 2**levels
    # the last chunk along an axis may be shorter: only the others must be multiples
    fits = lambda c, n: c % factor == 0 or c >= n  # noqa: E731  (one chunk along the axis: any size)
    if not (fits(cy, ny) and fits(cx, nx)):
        largest = min(_twos(cy) if cy < ny else levels, _twos(cx) if cx < nx else levels)
        good = max(factor, (max(cy, cx) // factor) * factor)
        raise InvalidArgumentError(
            f"overviews: {levels} level(s) need compute chunks along y and x that are multiples of 2**{levels} = "
            f"{factor}, so that each chunk covers whole chunks of every level; these are {cy} x {cx} px. Rechunk, "
            f"e.g. data.chunk({{'y': {good}, 'x': {good}}})"
            + (f", or pass overviews={largest}" if largest >= 1 else "")
        )
    if isinstance(resampling, str):
        asked = {name: resampling for name in ds.data_vars}
    else:
        unknown = set(resampling) - set(ds.data_vars)
        if unknown:
            raise InvalidArgumentError(f"overview_resampling names {sorted(unknown)}, not variables of the result {list(ds.data_vars)}")
        asked = {name: resampling.get(name, "auto") for name in ds.data_vars}
    methods = {}
    for name, how in asked.items():
        if how == "auto":
            how = "mean" if ds[name].dtype.kind == "f" else "mode"
        if how not in RESAMPLING:
            raise InvalidArgumentError(f"overview_resampling for {name!r} must be 'auto' or one of {RESAMPLING}, got {how!r}")
        methods[name] = how
    return levels, methods


def _twos(n: int) -> int:
    """How many times 2 divides ``n``."""
    k = 0
    while n and n % 2 == 0:
        n //= 2
        k += 1
    return k


def _level_coords(ds: xr.Dataset, factor: int) -> tuple[np.ndarray, np.ndarray, Any]:
    from affine import Affine

    t = ds.rio.transform(recalc=True)
    ny, nx = -(-ds.sizes["y"] // factor), -(-ds.sizes["x"] // factor)
    level = t @ Affine.scale(factor)
    x = level.c + level.a * (np.arange(nx) + 0.5)
    y = level.f + level.e * (np.arange(ny) + 0.5)
    return y, x, level


def level_chunks(chunks: tuple[int, ...], dims: tuple[str, ...], factor: int) -> tuple[int, ...]:
    """Zarr chunks of a level: the compute chunk (``chunks``, per dim) divided by ``factor`` along y and x."""
    return tuple(max(1, c // factor) if d in ("y", "x") else c for c, d in zip(chunks, dims))


def level_dataset(ds: xr.Dataset, level: int, compute_chunks: Mapping[str, tuple[int, ...]]) -> xr.Dataset:
    """The lazy template of overview ``level`` (placeholder data: only its metadata is written)."""
    from .geozarr import geozarr

    factor = 2**level
    y, x, transform = _level_coords(ds, factor)
    coords = {"y": y, "x": x}
    for name, coord in ds.coords.items():
        if name in ("y", "x", "spatial_ref") or "y" in coord.dims or "x" in coord.dims:
            continue
        coords[name] = coord
    variables = {}
    for name, var in ds.data_vars.items():
        shape = tuple(len(y) if d == "y" else len(x) if d == "x" else n for d, n in zip(var.dims, var.shape))
        chunks = level_chunks(compute_chunks[name], var.dims, factor)
        attrs = {k: v for k, v in var.attrs.items()
                 if not k.startswith(("spatial:", "proj:")) and k not in ("zarr_conventions", "grid_mapping")}
        variables[name] = xr.Variable(var.dims, da.zeros(shape, dtype=var.dtype, chunks=chunks), attrs)
    out = xr.Dataset(variables, coords=coords)
    out = out.rio.write_crs(ds.rio.crs).rio.write_transform(transform)
    out = geozarr(out)
    for name in out.data_vars:
        out[name].encoding["coordinates"] = "spatial_ref"
    return out


def multiscales_attrs(ds: xr.Dataset, levels: int, methods: Mapping[str, str]) -> dict[str, Any]:
    """The root group's ``multiscales`` layout (with the convention's ``zarr_conventions`` entry)."""
    layout = []
    for level in range(levels + 1):
        factor = 2**level
        _, _, transform = _level_coords(ds, factor)
        entry: dict[str, Any] = {"asset": str(level)}
        if level:
            # derived from the full resolution directly (a 2**level window), not from the level before
            entry.update(derived_from="0", transform={"scale": [float(factor)] * 2, "translation": [0.0, 0.0]})
        else:
            entry["transform"] = {"scale": [1.0, 1.0], "translation": [0.0, 0.0]}
        entry["spatial:shape"] = [-(-ds.sizes["y"] // factor), -(-ds.sizes["x"] // factor)]
        entry["spatial:transform"] = [float(v) for v in list(transform)[:6]]
        layout.append(entry)
    gdal = {name: _GDAL_NAMES[m] for name, m in methods.items()}
    multiscales: dict[str, Any] = {"layout": layout}
    if len(set(gdal.values())) == 1:
        multiscales["resampling_method"] = next(iter(gdal.values()))
    multiscales["geoproc:resampling"] = gdal  # per variable: a store may mix classes and reflectance
    return {"multiscales": multiscales}


def downsample(block: np.ndarray, factor: int, method: str, nodata: float | None, axes: tuple[int, int]) -> np.ndarray:
    """One chunk's values at ``1/factor`` resolution (``factor`` a power of 2) along ``axes`` (y, x).

    Examples
    --------
    >>> downsample(np.array([[1.0, 3.0, 5.0], [np.nan, 2.0, 7.0]]), 2, "mean", None, (0, 1))
    array([[2., 6.]])
    >>> downsample(np.array([[1, 1, 4], [2, 1, 4]], "uint8"), 2, "mode", None, (0, 1))
    array([[1, 4]], dtype=uint8)
    """
    return pyramid(block, int(factor).bit_length() - 1, method, nodata, axes)[-1]


def pyramid(block: np.ndarray, levels: int, method: str, nodata: float | None, axes: tuple[int, int]) -> list[np.ndarray]:
    """One chunk's values at levels ``1..levels`` (``2**l`` times coarser along ``axes``, y and x): each level
    ``ceil(n / 2**l)`` pixels a side, its edge windows holding what is left of the chunk.

    ``mean`` carries sums and counts of the valid pixels from level to level (so a level's mean is the
    mean of all the pixels its window covers, NaN and nodata ignored, for the cost of one pass over the
    chunk); ``mode`` and ``nearest`` take each level's window from the full resolution.
    """
    from ..kernels.overviews import window_mode

    arr = np.moveaxis(np.asarray(block), axes, (-2, -1))
    ny, nx = arr.shape[-2:]
    dtype = arr.dtype
    missing = method != "nearest" and nodata is not None and not np.isnan(nodata)  # pixels equal to it are ignored
    out: list[np.ndarray] = []
    if method == "mean":
        valid = ~np.isnan(arr) if dtype.kind == "f" else np.ones(arr.shape, bool)
        if missing:
            valid &= arr != nodata
        sums = np.where(valid, arr, 0).astype(np.float64)
        counts = valid.astype(np.float32)  # exact: at most 2**24 pixels in a window
        for _ in range(levels):
            sums, counts = _sum2(sums), _sum2(counts)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(sums / counts)  # NaN where no pixel was valid
    if method == "mode":
        values = arr.astype(np.float64)
        if missing:
            values[arr == nodata] = np.nan
        flat = np.ascontiguousarray(values.reshape((-1, ny, nx)))
    for level in range(1, levels + 1) if method != "mean" else ():
        f = 2**level
        oy, ox = -(-ny // f), -(-nx // f)
        if method == "nearest":
            iy = np.minimum(np.arange(oy) * f + f // 2, ny - 1)
            ix = np.minimum(np.arange(ox) * f + f // 2, nx - 1)
            out.append(arr[..., iy, :][..., ix])
            continue
        out.append(window_mode(flat, f).reshape(arr.shape[:-2] + (oy, ox)))
    result = []
    for level in out:
        if method != "nearest":
            if dtype.kind in "iub":
                level = np.where(np.isnan(level), nodata if missing else 0, np.round(level) if method == "mean" else level)
            elif missing:
                level = np.where(np.isnan(level), nodata, level)
        result.append(np.moveaxis(level.astype(dtype, copy=False), (-2, -1), axes))
    return result


def _sum2(a: np.ndarray) -> np.ndarray:
    """Sums of 2 x 2 windows over the last two axes (an odd edge padded with zeros)."""
    ny, nx = a.shape[-2:]
    if ny % 2 or nx % 2:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ny % 2), (0, nx % 2)])
    # four strided adds: several times faster than a reduction over a reshaped array's inner axes
    return a[..., ::2, ::2] + a[..., 1::2, ::2] + a[..., ::2, 1::2] + a[..., 1::2, 1::2]
