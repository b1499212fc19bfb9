"""Binary morphology on masks, chunk by chunk: dilation and removal of small objects.

Both run on every 2-D ``(y, x)`` slice (other dims, such as ``time``, are
looped over) through :func:`dask.array.map_overlap` with a halo at least as
wide as the operation reaches, so a chunked mask gives exactly what the whole
array gives:

* dilation by ``r`` pixels reads ``r`` pixels around each pixel: halo ``r``.
* removing objects of fewer than ``n`` pixels: a pixel's object is measured
  inside its padded block. An object that does not touch a cut edge of the
  block is whole and measured exactly. One that touches a cut edge is kept:
  with a halo of ``n`` pixels it joins a core pixel to a pixel ``n`` away, so
  it has at least ``n`` pixels and keeping it is right. The halo, and so the
  extra memory, grows with ``n``; chunks narrower than the halo are merged by
  dask first.
"""

from __future__ import annotations

import math
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask, kernel_path, resolve
from .errors import InvalidArgumentError
from .kernels.morphology import dilate_disk, dilate_square, remove_small

__all__ = [
    "dilate",
    "remove_small_objects",
    "dilate_array",
    "remove_small_objects_array",
    "pixel_size",
    "overlap_slices",
]

SHAPES = ("disk", "square")


def pixel_size(obj: xr.DataArray | xr.Dataset) -> float:
    """Pixel size in CRS units (metres for a projected CRS), from the ``x``/``y`` coordinates.

    Square pixels are assumed; where x and y spacing differ, their geometric
    mean is returned.

    Examples
    --------
    >>> m = xr.DataArray(np.zeros((2, 3), bool), dims=("y", "x"), coords={"y": [15.0, 5.0], "x": [5.0, 15.0, 25.0]})
    >>> pixel_size(m)
    10.0
    """
    sizes = []
    for dim in ("x", "y"):
        if dim not in obj.coords or obj.sizes.get(dim, 0) < 2:
            raise InvalidArgumentError(
                f"cannot tell the pixel size: the data has no {dim!r} coordinate with 2 or more values; "
                "give distances in pixels (units='px') or pass resolution=..."
            )
        c = np.asarray(obj[dim].values, dtype=np.float64)
        sizes.append(abs(float(c[1] - c[0])))
    crs = getattr(getattr(obj, "rio", None), "crs", None)
    if crs is not None and crs.is_geographic:
        raise InvalidArgumentError(
            f"the data is in a geographic CRS ({crs}), so distances in metres cannot be turned into pixels; "
            "load it in a projected CRS (crs='EPSG:326..') or give distances in pixels"
        )
    return float(math.sqrt(sizes[0] * sizes[1]))


def _open_edges(block_info) -> np.ndarray:
    """Which sides (top, bottom, left, right) of a block are cut out of a larger array."""
    if not block_info or 0 not in block_info:
        return np.zeros(4, dtype=np.bool_)
    iy, ix = block_info[0]["chunk-location"][-2:]
    ny, nx = block_info[0]["num-chunks"][-2:]
    return np.array([iy > 0, iy < ny - 1, ix > 0, ix < nx - 1], dtype=np.bool_)


def _slices_block(path: str, args: tuple, with_edges: bool, block: np.ndarray, block_info=None) -> np.ndarray:
    """Run a 2-D kernel on every ``(y, x)`` slice of a block (module-level: pickled by reference)."""
    kernel = resolve(path)
    extra = (_open_edges(block_info),) if with_edges else ()
    mask = np.asarray(block, dtype=np.bool_)
    out = np.empty(mask.shape, dtype=np.bool_)
    for idx in np.ndindex(mask.shape[:-2]):
        out[idx] = kernel(np.ascontiguousarray(mask[idx]), *args, *extra)
    return out


def overlap_slices(func, arrays, depth: tuple[int, int], dtype):
    """``func(*blocks, block_info=...)`` on blocks padded by ``depth = (y, x)`` pixels; chunks kept.

    Numpy input: ``func(*arrays)`` on the whole arrays. Dask input:
    :func:`dask.array.map_overlap` without padding at the array's edges
    (``boundary="none"``), so a block's outer edges are the array's; the
    result is rechunked back to the first array's chunks if dask had to merge
    chunks narrower than the halo. A halo of ``n - 1`` pixels already reaches
    across an axis of ``n``, so deeper ones are cut to that.

    Examples
    --------
    >>> import dask.array as da
    >>> from functools import partial
    >>> def shift_sum(block, block_info=None):  # uses its neighbours: needs a halo of 1
    ...     return np.roll(block, 1, axis=-1) + block
    >>> x = np.arange(12.0).reshape(3, 4)
    >>> lazy = overlap_slices(shift_sum, [da.from_array(x, chunks=2)], (0, 1), x.dtype)
    >>> bool((lazy.compute()[:, 1:] == shift_sum(x)[:, 1:]).all())
    True
    """
    if not any(is_dask(a) for a in arrays):
        return func(*arrays)
    first = next(a for a in arrays if is_dask(a))
    arrays = [(a if is_dask(a) else da.from_array(a, chunks=first.chunks)).rechunk(first.chunks) for a in arrays]
    ndim = first.ndim
    axes = {i: 0 for i in range(ndim)}
    # a halo of n - 1 pixels already reaches across the whole axis from any block
    axes[ndim - 2] = min(int(depth[0]), first.shape[-2] - 1)
    axes[ndim - 1] = min(int(depth[1]), first.shape[-1] - 1)
    if axes[ndim - 2] == 0 and axes[ndim - 1] == 0:
        out = da.map_blocks(func, *arrays, dtype=dtype)
    else:
        out = da.map_overlap(func, *arrays, depth=axes, boundary="none", dtype=dtype, align_arrays=False)
    return out.rechunk(first.chunks) if out.chunks != first.chunks else out


def dilate_array(mask, radius: float, shape: str = "disk"):
    """The dask/numpy layer of :func:`dilate`: ``radius`` in pixels, over the last two axes.

    Examples
    --------
    >>> dilate_array(np.eye(3, dtype=bool), 1, "square").sum()
    np.int64(9)
    """
    if shape not in SHAPES:
        raise InvalidArgumentError(f"shape must be one of {SHAPES}, got {shape!r}")
    if not np.isfinite(radius) or radius < 0:
        raise InvalidArgumentError(f"radius must be a finite number >= 0, got {radius}")
    if mask.ndim < 2:
        raise InvalidArgumentError(f"a mask needs 2 spatial dimensions (y, x), got shape {mask.shape}")
    if shape == "disk":
        func = partial(_slices_block, kernel_path(dilate_disk), (float(radius),), False)
    else:
        func = partial(_slices_block, kernel_path(dilate_square), (int(math.floor(radius)),), False)
    r = int(math.floor(radius))
    return overlap_slices(func, [mask], (r, r), np.bool_)


def remove_small_objects_array(mask, min_size: int, connectivity: int = 8):
    """The dask/numpy layer of :func:`remove_small_objects`: ``min_size`` in pixels, over the last two axes.

    Examples
    --------
    >>> remove_small_objects_array(np.eye(3, dtype=bool), 4).any()  # one 3-pixel object (8-connected)
    np.False_
    >>> remove_small_objects_array(np.eye(3, dtype=bool), 3, connectivity=8).sum()
    np.int64(3)
    """
    if connectivity not in (4, 8):
        raise InvalidArgumentError(f"connectivity must be 4 or 8, got {connectivity}")
    if min_size < 0:
        raise InvalidArgumentError(f"min_size must be >= 0, got {min_size}")
    if mask.ndim < 2:
        raise InvalidArgumentError(f"a mask needs 2 spatial dimensions (y, x), got shape {mask.shape}")
    n = int(min_size)
    if n <= 1:  # every object has at least one pixel
        return mask.astype(np.bool_) if is_dask(mask) else np.asarray(mask, dtype=np.bool_)
    func = partial(_slices_block, kernel_path(remove_small), (n, int(connectivity)), True)
    return overlap_slices(func, [mask], (n, n), np.bool_)


def _spatial(mask: xr.DataArray) -> xr.DataArray:
    if mask.dtype != np.bool_:
        raise InvalidArgumentError(f"expected a boolean mask (as cloud_mask returns), got dtype {mask.dtype}")
    if "y" in mask.dims and "x" in mask.dims:
        return mask.transpose(..., "y", "x")
    if mask.ndim < 2:
        raise InvalidArgumentError(f"a mask needs 2 spatial dimensions (y, x), got dims {mask.dims}")
    return mask


def _result(values, like: xr.DataArray, original: xr.DataArray, attrs: dict) -> xr.DataArray:
    out = xr.DataArray(values, dims=like.dims, coords=like.coords, name=original.name)
    out.attrs = {**original.attrs, **attrs}
    return out.transpose(*original.dims)


def dilate(
    mask: xr.DataArray, radius: float, *, units: str = "px", shape: str = "disk", resolution: float | None = None
) -> xr.DataArray:
    """Grow a mask by ``radius``: True within that distance of a True pixel.

    Parameters
    ----------
    mask
        Boolean, dims including ``y`` and ``x`` (else the last two dims are the
        spatial ones); other dims (``time``) are handled slice by slice.
    radius
        Distance, in pixels or metres (``units``).
    units
        ``"px"`` or ``"m"`` (converted with the grid's pixel size, see :func:`pixel_size`).
    shape
        ``"disk"``: pixels whose centres lie within ``radius`` (Euclidean);
        ``"square"``: within ``floor(radius)`` pixels in x and y (Chebyshev).
    resolution
        Pixel size in metres, if the mask has no x/y coordinates to read it from.

    Returns
    -------
    xarray.DataArray
        Boolean, same dims, coords and chunks; lazy for lazy input. Chunked and
        whole input give identical results (halo of ``radius`` pixels).

    Examples
    --------
    >>> m = xr.DataArray(np.zeros((5, 5), bool), dims=("y", "x"))
    >>> m[2, 2] = True
    >>> dilate(m, 1).values.astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    radius_px = _to_pixels(mask, radius, units, resolution, "radius")
    work = _spatial(mask)
    values = dilate_array(work.data, radius_px, shape)
    return _result(values, work, mask, {"dilated_by_px": radius_px, "dilation_shape": shape})


def remove_small_objects(
    mask: xr.DataArray,
    min_size: float,
    *,
    units: str = "px",
    connectivity: int = 8,
    resolution: float | None = None,
) -> xr.DataArray:
    """Remove connected groups of True pixels smaller than ``min_size``.

    Parameters
    ----------
    mask
        Boolean, dims including ``y`` and ``x``; other dims handled slice by slice.
    min_size
        Smallest object kept: a pixel count (``units="px"``) or an area in
        square metres (``units="m2"``, rounded up to whole pixels).
    connectivity
        8 (pixels touching by an edge or a corner belong together) or 4 (by an edge).
    resolution
        Pixel size in metres, if the mask has no x/y coordinates to read it from.

    Returns
    -------
    xarray.DataArray
        Boolean, same dims, coords and chunks; lazy for lazy input. Exact on
        chunks: see the module documentation for the halo (``min_size`` pixels).

    Examples
    --------
    >>> m = xr.DataArray(np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool), dims=("y", "x"))
    >>> remove_small_objects(m, 2).values.astype(int)
    array([[0, 0, 0, 0],
           [0, 0, 1, 1],
           [0, 0, 1, 1]])
    """
    if units == "m2":
        res = resolution if resolution is not None else pixel_size(mask)
        n = int(math.ceil(float(min_size) / (res * res) - 1e-9))
    elif units == "px":
        n = int(math.ceil(float(min_size)))
    else:
        raise InvalidArgumentError(f"units must be 'px' or 'm2' for an area, got {units!r}")
    work = _spatial(mask)
    values = remove_small_objects_array(work.data, n, connectivity)
    return _result(values, work, mask, {"min_object_px": n, "connectivity": connectivity})


def _to_pixels(obj, value: float, units: str, resolution: float | None, what: str) -> float:
    if units == "px":
        return float(value)
    if units == "m":
        res = resolution if resolution is not None else pixel_size(obj)
        return float(value) / float(res)
    raise InvalidArgumentError(f"units of {what} must be 'px' or 'm', got {units!r}")
