"""Per-pixel reductions along time (axis 0) of time-first arrays.

Per-band reductions (:func:`reduce_time`, :func:`percentile_time`,
:func:`count_valid`) take ``(T, N)`` arrays; multi-band selections
(:func:`quality_select`) take a band stack ``(B, T, N)`` and return ``(B, N)``
with every band of a pixel taken from the same observation. :func:`decode`
turns stored integers into float32 reflectance.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["METHODS", "reduce_time", "percentile_time", "count_valid", "quality_select", "decode", "sorting_network"]

#: Reduction names and their codes in :func:`reduce_time`.
METHODS = {"median": 0, "mean": 1, "min": 2, "max": 3}


_SORT_TILE = 512  # pixels sorted at a time by the sorting network (T x 512 float32 stays in cache)


@numba.njit(cache=True, nogil=True)
def sorting_network(n: int) -> np.ndarray:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` values; ``(m, 2)`` int64.

    Built for the next power of two and pruned to ``j < n``: padding values of
    +inf at the top are never moved by a min/max comparator, so the comparators
    that touch them are no-ops and the rest still sort ``n`` values.
    """
    size = 1
    while size < n:
        size *= 2
    out = np.empty((max(1, size * 16), 2), dtype=np.int64)
    c = 0
    p = 1
    while p < size:
        k = p
        while k > 0:
            j = k % p
            while j < size - k:
                for i in range(k):
                    a = i + j
                    b = a + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        if c == out.shape[0]:
                            grown = np.empty((2 * c, 2), dtype=np.int64)
                            grown[:c] = out[:c]
                            out = grown
                        out[c, 0] = a
                        out[c, 1] = b
                        c += 1
                j += 2 * k
            k //= 2
        p *= 2
    return out[:c].copy()


@numba.njit(cache=True, nogil=True, inline="always")
def _sort_tile(values, invalid, use_mask, start, width, tile, counts, network):
    """Columns ``0:width`` of ``tile`` (``T x _SORT_TILE``) <- pixels ``start:start + width``, each sorted along T.

    Left-out values (NaN, ``invalid``) become +inf and sort last; ``counts``
    gets the number of valid values per pixel. The comparators run on whole
    rows, so the compiler vectorises them across pixels (no data-dependent
    branches, unlike a per-pixel quickselect).
    """
    t_len = values.shape[0]
    counts[:width] = 0
    for t in range(t_len):
        row = tile[t]
        for j in range(width):
            v = values[t, start + j]
            if np.isnan(v) or (use_mask and invalid[t, start + j]):
                row[j] = np.inf
            else:
                row[j] = v
                counts[j] += 1
    for c in range(network.shape[0]):
        lo_row = tile[network[c, 0]]
        hi_row = tile[network[c, 1]]
        for j in range(width):
            x = lo_row[j]
            y = hi_row[j]
            lo_row[j] = min(x, y)
            hi_row[j] = max(x, y)


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
    if method == 0:
        network = sorting_network(t_len)
        stile = np.empty((t_len, _SORT_TILE), dtype=values.dtype)
        scounts = np.empty(_SORT_TILE, dtype=np.int64)
        for start in range(0, n, _SORT_TILE):
            width = min(_SORT_TILE, n - start)
            _sort_tile(values, invalid, use_mask, start, width, stile, scounts, network)
            for j in range(width):
                k = scounts[j]
                h = k // 2
                if k == 0:
                    out[start + j] = np.nan
                elif k % 2 == 1:
                    out[start + j] = stile[h, j]
                else:
                    out[start + j] = (stile[h - 1, j] + stile[h, j]) / 2
        return out
    # mean, min, max: one pass over the dates, row by row (contiguous reads), per-pixel accumulators
    acc = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    for t in range(t_len):
        for i in range(n):
            v = values[t, i]
            if np.isnan(v) or (use_mask and invalid[t, i]):
                continue
            if method == 1:
                acc[i] += v
            elif counts[i] == 0 or (method == 2 and v < acc[i]) or (method == 3 and v > acc[i]):
                acc[i] = v
            counts[i] += 1
    for i in range(n):
        k = counts[i]
        if k == 0:
            out[i] = np.nan
        elif method == 1:
            out[i] = acc[i] / k
        else:
            out[i] = acc[i]
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


@numba.njit(cache=True, nogil=True, inline="always")
def _lerp32(a, b, gamma):
    """numpy's ``_lerp`` in float32 (``np.nanpercentile`` of float32 data with a Python float ``q``)."""
    diff = np.float32(b - a)
    if gamma >= 0.5:
        return np.float32(b - diff * np.float32(1.0 - gamma))
    return np.float32(a + diff * np.float32(gamma))


@numba.njit(cache=True, nogil=True)
def percentile_time(values: np.ndarray, invalid: np.ndarray, q: float) -> np.ndarray:
    """The ``q``-th percentile (0..100) along T of float32 ``values`` ``(T, N)``, skipping NaN and ``invalid``.

    Linear interpolation between order statistics, numpy's default
    ``method="linear"`` in the same floating-point operations: equal to
    ``np.nanpercentile(values, q, axis=0)`` for float32 input and a Python
    float ``q``. float32 ``(N,)``; NaN where no valid observation exists.
    """
    t_len, n = values.shape
    use_mask = invalid.shape[0] == t_len
    quantile = q / 100.0
    out = np.empty(n, dtype=np.float32)
    network = sorting_network(t_len)
    tile = np.empty((t_len, _SORT_TILE), dtype=np.float32)
    counts = np.empty(_SORT_TILE, dtype=np.int64)
    for start in range(0, n, _SORT_TILE):
        width = min(_SORT_TILE, n - start)
        _sort_tile(values, invalid, use_mask, start, width, tile, counts, network)
        for j in range(width):
            k = counts[j]
            if k == 0:
                out[start + j] = np.nan
                continue
            # numpy's virtual index for 'linear' (alpha = beta = 1), in the same float64 operations
            virtual = k * quantile + (1.0 + quantile * (1.0 - 1.0 - 1.0)) - 1.0
            if virtual >= k - 1:
                out[start + j] = tile[k - 1, j]
            elif virtual < 0:
                out[start + j] = tile[0, j]
            else:
                prev = int(np.floor(virtual))
                out[start + j] = _lerp32(tile[prev, j], tile[prev + 1, j], virtual - prev)
    return out


@numba.njit(cache=True, nogil=True)
def quality_select(stack: np.ndarray, score: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Per pixel, all bands of the observation with the highest ``score`` (a quality mosaic).

    Parameters
    ----------
    stack
        float32 ``(B, T, N)``: B bands, T dates.
    score
        Float ``(T, N)``, e.g. NDVI.
    invalid
        Boolean ``(T, N)``, True to leave an observation out; or shape ``(0, 0)``.

    Returns
    -------
    float32 ``(B, N)``. Candidates are observations whose score and bands are
    all finite and that are not ``invalid``; ties go to the earliest date. NaN
    where a pixel has no candidate.
    """
    n_bands, t_len, n = stack.shape
    use_mask = invalid.shape[0] == t_len
    out = np.full((n_bands, n), np.nan, dtype=np.float32)
    best = np.full(n, -np.inf)
    pick = np.full(n, -1, dtype=np.int64)
    for t in range(t_len):  # row by row: contiguous reads
        for i in range(n):
            s = score[t, i]
            if np.isnan(s) or (use_mask and invalid[t, i]) or (pick[i] >= 0 and s <= best[i]):
                continue
            ok = True
            for b in range(n_bands):
                if np.isnan(stack[b, t, i]):
                    ok = False
                    break
            if ok:
                best[i] = s
                pick[i] = t
    for b in range(n_bands):
        for i in range(n):
            if pick[i] >= 0:
                out[b, i] = stack[b, pick[i], i]
    return out


@numba.njit(cache=True, nogil=True)
def decode(raw: np.ndarray, scale: float, offset: float, nodata: float) -> np.ndarray:
    """``raw * scale + offset`` as float32 over a 1-D array of any numeric dtype; NaN where ``raw == nodata`` or NaN.

    The arithmetic is float32, as the loader's, so decoding here equals loading
    with ``raw=False``. Pass NaN as ``nodata`` for "no nodata value".
    """
    out = np.empty(raw.shape[0], dtype=np.float32)
    s, o = np.float32(scale), np.float32(offset)
    for i in range(raw.shape[0]):
        r = raw[i]
        out[i] = np.nan if r == nodata else np.float32(r) * s + o
    return out
