"""Two-date change kernels: difference and ratio, change vector analysis, class lookup, histograms."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["two_date", "change_vector", "classify", "histogram"]


@numba.njit(cache=True, nogil=True)
def two_date(
    before: np.ndarray,
    after: np.ndarray,
    b_scale: float,
    b_offset: float,
    b_nodata: float,
    a_scale: float,
    a_offset: float,
    a_nodata: float,
    ratio: bool,
) -> np.ndarray:
    """``after - before`` (or ``after / before``) as float32 over 1-D arrays of any numeric dtype.

    Each input is decoded as ``raw * scale + offset`` in float32 first (as the
    loader does); NaN where an input equals its nodata value (pass NaN for
    none) or is NaN, and for a ratio where ``before == 0``. The difference is
    formed in float32, the ratio in float64 and rounded once.
    """
    out = np.empty(before.shape[0], dtype=np.float32)
    sb, ob = np.float32(b_scale), np.float32(b_offset)
    sa, oa = np.float32(a_scale), np.float32(a_offset)
    for i in range(before.shape[0]):
        rb = before[i]
        ra = after[i]
        if rb == b_nodata or ra == a_nodata:
            out[i] = np.nan
            continue
        vb = np.float32(rb) * sb + ob
        va = np.float32(ra) * sa + oa
        if ratio:
            out[i] = np.nan if vb == 0 or np.isnan(vb) else np.float64(va) / np.float64(vb)
        else:
            out[i] = va - vb
    return out


@numba.njit(cache=True, nogil=True)
def change_vector(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Change vector analysis of band stacks ``(B, N)`` (float): float32 ``(3, N)``.

    Row 0 the magnitude ``sqrt(sum_b (after_b - before_b)^2)`` (float64 sums);
    row 1 the angle of the change vector in degrees, ``[0, 360)``, from the
    first band's axis towards the second's (only for B == 2; NaN otherwise);
    row 2 the sector code ``sum_b 2^b [after_b > before_b]`` (0 .. 2^B - 1).
    All NaN where any band of either date is NaN.
    """
    n_bands, n = before.shape
    out = np.full((3, n), np.nan, dtype=np.float32)
    for i in range(n):
        acc = 0.0
        code = 0
        ok = True
        for b in range(n_bands):
            d = np.float64(after[b, i]) - np.float64(before[b, i])
            if np.isnan(d):
                ok = False
                break
            acc += d * d
            if d > 0:
                code += 1 << b
        if not ok:
            continue
        out[0, i] = math.sqrt(acc)
        out[2, i] = code
        if n_bands == 2:
            d0 = np.float64(after[0, i]) - np.float64(before[0, i])
            d1 = np.float64(after[1, i]) - np.float64(before[1, i])
            angle = math.degrees(math.atan2(d1, d0))
            if angle < 0:
                angle += 360.0
            out[1, i] = 0.0 if angle >= 360.0 else angle
    return out


@numba.njit(cache=True, nogil=True)
def classify(values: np.ndarray, lower_bounds: np.ndarray) -> np.ndarray:
    """Class codes ``1 + #{k: values >= lower_bounds[k]}`` (bounds increasing) as uint8; 0 where NaN."""
    out = np.zeros(values.shape[0], dtype=np.uint8)
    m = lower_bounds.shape[0]
    for i in range(values.shape[0]):
        v = values[i]
        if np.isnan(v):
            continue
        c = 1
        for k in range(m):
            if v >= lower_bounds[k]:
                c += 1
        out[i] = c
    return out


@numba.njit(cache=True, nogil=True)
def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the finite ``values`` (1-D) in the equal-width bins ``edges`` (float64, ``bins + 1``).

    Bin assignment follows ``numpy.histogram`` for uniform bins exactly (the
    last bin includes its right edge; values outside the edges are ignored),
    computed in float64.
    """
    bins = edges.shape[0] - 1
    first = edges[0]
    last = edges[bins]
    denom = last - first
    counts = np.zeros(bins, dtype=np.int64)
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        if not (v >= first and v <= last):  # also NaN
            continue
        k = int((v - first) / denom * bins)
        if k == bins:
            k -= 1
        if v < edges[k]:
            k -= 1
        elif k != bins - 1 and v >= edges[k + 1]:
            k += 1
        counts[k] += 1
    return counts
