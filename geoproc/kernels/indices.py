"""Spectral index kernels."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["normalized_difference"]


@numba.njit(cache=True, nogil=True)
def normalized_difference(
    a: np.ndarray,
    b: np.ndarray,
    a_scale: float,
    a_offset: float,
    a_nodata: float,
    b_scale: float,
    b_offset: float,
    b_nodata: float,
) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32 over 1-D arrays of any numeric dtype.

    Each input is decoded as ``raw * scale + offset`` first, so raw integers can
    be passed without a float copy. A pixel is NaN where either input equals its
    nodata value (pass NaN for "no nodata value"), is NaN itself, or where
    ``a + b == 0``.
    """
    out = np.empty(a.shape[0], dtype=np.float32)
    # decode in float32, exactly as the loader does, so raw and decoded inputs give identical results
    sa, oa = np.float32(a_scale), np.float32(a_offset)
    sb, ob = np.float32(b_scale), np.float32(b_offset)
    for i in range(a.shape[0]):
        ra = a[i]
        rb = b[i]
        if ra == a_nodata or rb == b_nodata:
            out[i] = np.nan
            continue
        va = np.float32(ra) * sa + oa
        vb = np.float32(rb) * sb + ob
        den = va + vb
        if den == 0 or np.isnan(den):
            out[i] = np.nan
        else:
            out[i] = (va - vb) / den
    return out
