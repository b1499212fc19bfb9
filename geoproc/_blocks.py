"""Apply a per-block numpy function to numpy or dask arrays alike (the dask layer).

Block functions are module-level and refer to numba kernels by import path, so
that a task pickles them by reference: on a worker, the kernel is the module's
own dispatcher with its on-disk compilation cache. (A kernel pickled by value,
as inside a closure, is rebuilt without that cache and compiled again in every
new worker process: seconds per kernel.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache, partial

import dask.array as da
import numpy as np


def is_dask(arr) -> bool:
    return isinstance(arr, da.Array)


def kernel_path(kernel) -> str:
    """``"module:name"`` of a numba kernel (or any module-level function)."""
    func = getattr(kernel, "py_func", kernel)
    return f"{func.__module__}:{func.__name__}"


@lru_cache(maxsize=None)
def resolve(path: str) -> Callable:
    """The function at ``"module:name"``, imported in this process."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def map_blocks(func: Callable[..., np.ndarray], *arrays, dtype, **kwargs):
    """``func(*blocks)`` per block when any input is dask, else ``func(*arrays)`` directly.

    ``kwargs`` go to :func:`dask.array.map_blocks` (``drop_axis``, ``chunks``...).
    The inputs must already share their chunking. ``func`` should be a module-level
    function or a ``functools.partial`` of one (see the module docstring).
    """
    if any(is_dask(a) for a in arrays):
        return da.map_blocks(func, *arrays, dtype=dtype, **kwargs)
    return func(*arrays)


def _elementwise_block(path: str, args: tuple, *blocks):
    shape = blocks[0].shape
    flat = [np.ascontiguousarray(b).reshape(-1) for b in blocks]
    return resolve(path)(*flat, *args).reshape(shape)


def elementwise(kernel_1d: Callable[..., np.ndarray], *arrays, dtype, args=()):
    """Run a kernel on flattened blocks of equally shaped arrays and restore the shape."""
    return map_blocks(partial(_elementwise_block, kernel_path(kernel_1d), tuple(args)), *arrays, dtype=dtype)
