"""Per-pixel reductions along time (axis 0) of time-first arrays."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["METHODS", "reduce_time", "count_valid"]

#: Reduction names and their codes in :func:`reduce_time`.
METHODS = {"median": 0, "mean": 1, "min": 2, "max": 3}


_TILE = 256  # pixels gathered at a time: each date's row is read sequentially, each pixel's series is contiguous
_SORT_MAX = 32  # up to this many values, insertion sort; beyond, quickselect


@numba.njit(cache=True, nogil=True, inline="always")
def _insertion_sort(a, n):
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@numba.njit(cache=True, nogil=True)
def _select(a, n, kth):
    """Rearrange ``a[:n]`` so that ``a[kth]`` is the kth smallest (Hoare's quickselect, median-of-3 pivot)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three as the pivot, moved to a[lo]
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        a[lo], a[mid] = a[mid], a[lo]
        pivot = a[lo]
        i, j = lo + 1, hi
        while True:
            while i <= j and a[i] < pivot:
                i += 1
            while i <= j and a[j] > pivot:
                j -= 1
            if i >= j:
                break
            a[i], a[j] = a[j], a[i]
            i += 1
            j -= 1
        a[lo], a[j] = a[j], a[lo]
        if j == kth:
            return
        if j < kth:
            lo = j + 1
        else:
            hi = j - 1


@numba.njit(cache=True, nogil=True, inline="always")
def _median(a, k):
    h = k // 2
    if k <= _SORT_MAX:
        _insertion_sort(a, k)
        return a[h] if k % 2 == 1 else (a[h - 1] + a[h]) / 2
    _select(a, k, h)
    if k % 2 == 1:
        return a[h]
    lower = a[0]  # the largest of a[:h], all <= a[h]
    for j in range(1, h):
        if a[j] > lower:
            lower = a[j]
    return (lower + a[h]) / 2


@numba.njit(cache=True, nogil=True)
def reduce_time(values: np.ndarray, invalid: np.ndarray, method: int) -> np.ndarray:
    """Reduce ``values`` of shape ``(T, N)`` along T, skipping NaN and ``invalid``.

    Parameters
    ----------
    values
        Float array ``(T, N)``.
    invalid
        Boolean array ``(T, N)`` (True: leave out), or shape ``(0, 0)`` for none.
    method
        A code from :data:`METHODS`.

    Returns
    -------
    float32 array ``(N,)``; NaN where no valid observation exists. The median of
    an even count is the mean of the two middle values, as in ``np.nanmedian``.
    """
    t_len, n = values.shape
    use_mask = invalid.shape[0] == t_len
    out = np.empty(n, dtype=np.float32)
    tile = np.empty((_TILE, t_len), dtype=values.dtype)
    counts = np.empty(_TILE, dtype=np.int64)
    for start in range(0, n, _TILE):
        width = min(_TILE, n - start)
        counts[:width] = 0
        # gather the valid values of each pixel of the tile, reading every date's row in order
        for t in range(t_len):
            for j in range(width):
                v = values[t, start + j]
                if np.isnan(v) or (use_mask and invalid[t, start + j]):
                    continue
                tile[j, counts[j]] = v
                counts[j] += 1
        for j in range(width):
            k = counts[j]
            a = tile[j]
            if k == 0:
                out[start + j] = np.nan
            elif method == 0:
                out[start + j] = _median(a, k)
            elif method == 1:
                acc = 0.0
                for q in range(k):
                    acc += a[q]
                out[start + j] = acc / k
            elif method == 2:
                lo = a[0]
                for q in range(1, k):
                    if a[q] < lo:
                        lo = a[q]
                out[start + j] = lo
            else:
                hi = a[0]
                for q in range(1, k):
                    if a[q] > hi:
                        hi = a[q]
                out[start + j] = hi
    return out


@numba.njit(cache=True, nogil=True)
def count_valid(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Number of observations along T that are neither NaN nor ``invalid``; ``(N,)`` int16."""
    t_len, n = values.shape
    use_mask = invalid.shape[0] == t_len
    out = np.zeros(n, dtype=np.int16)
    for i in range(n):
        c = 0
        for t in range(t_len):
            if not (np.isnan(values[t, i]) or (use_mask and invalid[t, i])):
                c += 1
        out[i] = c
    return out
