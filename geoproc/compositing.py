"""Per-pixel composites over time.

The time axis must be whole inside each chunk (``geoproc.load`` does this);
each chunk is then reduced by one numba pass, fused by dask with the load,
mask and index steps before it.
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from .errors import InvalidArgumentError
from .kernels.composite import METHODS, count_valid, reduce_time

__all__ = ["composite", "composite_array", "COMPOSITE_METHODS"]

COMPOSITE_METHODS = (*METHODS, "count")


def _composite_block(method: str, code: int, keepdims: bool, v: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    """One block: reduce axis 0 (module-level, so tasks pickle it by reference; see geoproc._blocks)."""
    t_len = v.shape[0]
    rest = v.shape[1:]
    flat = np.ascontiguousarray(v).reshape(t_len, -1)
    mflat = np.ascontiguousarray(m).reshape(t_len, -1) if m is not None else np.zeros((0, 0), np.bool_)
    res = count_valid(flat, mflat) if method == "count" else reduce_time(flat, mflat, code)
    return res.reshape((1, *rest) if keepdims else rest)


def composite_array(values, invalid=None, method: str = "median"):
    """The dask/numpy layer: reduce axis 0 of ``values`` (time first), skipping NaN and ``invalid``.

    Returns float32 (``count``: int16) with axis 0 dropped.
    """
    if method not in COMPOSITE_METHODS:
        raise InvalidArgumentError(f"unknown composite method {method!r}; use one of {', '.join(COMPOSITE_METHODS)}")
    if np.dtype(values.dtype).kind != "f":
        values = values.astype(np.float32)
    if is_dask(values) and values.numblocks[0] > 1:
        values = values.rechunk({0: -1})
    inputs = [values]
    if invalid is not None:
        if invalid.shape != values.shape:
            raise InvalidArgumentError(f"mask shape {invalid.shape} differs from data shape {values.shape}")
        if is_dask(values):
            invalid = (invalid if is_dask(invalid) else da.from_array(invalid)).rechunk(values.chunks)
        inputs.append(invalid)

    code = METHODS.get(method, -1)
    out_dtype = np.int16 if method == "count" else np.float32
    if not is_dask(values):
        return _composite_block(method, code, False, *inputs)
    # Blocks keep a length-1 time axis that is indexed away afterwards: with two inputs (values and
    # mask), dask does not fuse producers into a map_blocks that drops an axis, and the load, mask
    # and index steps would then run as separate tasks, their chunks moved between workers.
    out = da.map_blocks(
        partial(_composite_block, method, code, True), *inputs, dtype=out_dtype, chunks=((1,), *values.chunks[1:])
    )
    return out[0]


def composite(
    data: xr.DataArray | xr.Dataset,
    method: str = "median",
    *,
    mask: xr.DataArray | None = None,
    dim: str = "time",
) -> xr.DataArray | xr.Dataset:
    """Composite a stack of observations over ``dim``, pixel by pixel.

    Parameters
    ----------
    data
        A DataArray, or a Dataset (each variable is composited).
    method
        ``median`` (as ``numpy.nanmedian``), ``mean``, ``min``, ``max``, or
        ``count`` (number of valid observations).
    mask
        Boolean, True where an observation must be left out (as
        :func:`geoproc.cloud_mask` returns); must share ``data``'s dims along
        ``dim`` and space.
    dim
        The dimension to reduce.

    Returns
    -------
    Same type as ``data`` without ``dim``; float32 with NaN where no valid
    observation exists (``count``: int16).

    Examples
    --------
    >>> v = xr.DataArray(np.float32([[1, 9], [3, np.nan], [2, 5]]), dims=("time", "x"))
    >>> composite(v, "median").values
    array([2., 7.], dtype=float32)
    >>> m = xr.DataArray(np.array([[False, True], [False, False], [True, False]]), dims=("time", "x"))
    >>> composite(v, "median", mask=m).values
    array([2., 5.], dtype=float32)
    """
    if isinstance(data, xr.Dataset):
        out = xr.Dataset({k: composite(v, method, mask=mask, dim=dim) for k, v in data.data_vars.items()})
        out.attrs = dict(data.attrs)
        return out
    if dim not in data.dims:
        raise InvalidArgumentError(f"data has no dimension {dim!r} (dims: {data.dims}); pass dim=...")
    ordered = data.transpose(dim, ...)
    invalid = None
    if mask is not None:
        missing = set(mask.dims) - set(ordered.dims)
        if missing:
            raise InvalidArgumentError(f"mask has dims {sorted(missing)} that the data lacks; build it from the same load")
        invalid = mask.broadcast_like(ordered).transpose(*ordered.dims).data
    values = composite_array(ordered.data, invalid, method)
    coords = {k: v for k, v in ordered.coords.items() if dim not in v.dims}
    out = xr.DataArray(values, dims=ordered.dims[1:], coords=coords, name=data.name)
    out.attrs = {**data.attrs, "composite": method}
    if method != "count":
        out.attrs["nodata"] = np.nan
    else:
        out.attrs.pop("nodata", None)
    return out
