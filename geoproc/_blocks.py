"""Apply a per-block numpy function to numpy or dask arrays alike (the dask layer)."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np


def is_dask(arr) -> bool:
    return isinstance(arr, da.Array)


def map_blocks(func: Callable[..., np.ndarray], *arrays, dtype, **kwargs):
    """``func(*blocks)`` per block when any input is dask, else ``func(*arrays)`` directly.

    ``kwargs`` go to :func:`dask.array.map_blocks` (``drop_axis``, ``chunks``...).
    The inputs must already share their chunking.
    """
    if any(is_dask(a) for a in arrays):
        return da.map_blocks(func, *arrays, dtype=dtype, **kwargs)
    return func(*arrays)


def elementwise(kernel_1d: Callable[..., np.ndarray], *arrays, dtype, args=()):
    """Run a kernel on flattened blocks of equally shaped arrays and restore the shape."""

    def block(*blocks):
        shape = blocks[0].shape
        flat = [np.ascontiguousarray(b).reshape(-1) for b in blocks]
        return kernel_1d(*flat, *args).reshape(shape)

    return map_blocks(block, *arrays, dtype=dtype)
