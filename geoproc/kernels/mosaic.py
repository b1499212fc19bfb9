"""Fusing reads into an output chunk: first valid pixel wins, decoding on the way."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["fuse_into"]


@numba.njit(cache=True, nogil=True)
def fuse_into(out: np.ndarray, filled: np.ndarray, raw: np.ndarray, valid: np.ndarray, scale: float, offset: float, decode: bool) -> int:
    """Copy ``raw`` into ``out`` where ``valid`` and not yet ``filled``; return how many pixels are filled now.

    All arrays are 1-D views of one time slice of a chunk. With ``decode``, the
    value stored is ``float32(raw) * float32(scale) + float32(offset)`` (the
    arithmetic of ``raster:bands`` decoding, in float32); otherwise ``raw`` itself.
    """
    s = np.float32(scale)
    o = np.float32(offset)
    n = 0
    for i in range(out.shape[0]):
        if not filled[i] and valid[i]:
            if decode:
                out[i] = np.float32(raw[i]) * s + o
            else:
                out[i] = raw[i]
            filled[i] = True
        if filled[i]:
            n += 1
    return n
