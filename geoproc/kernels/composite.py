"""Per-pixel reductions along time (axis 0) of time-first arrays."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["METHODS", "reduce_time", "count_valid"]

#: Reduction names and their codes in :func:`reduce_time`.
METHODS = {"median": 0, "mean": 1, "min": 2, "max": 3}


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
    buf = np.empty(t_len, dtype=values.dtype)
    for i in range(n):
        k = 0
        for t in range(t_len):
            v = values[t, i]
            if np.isnan(v) or (use_mask and invalid[t, i]):
                continue
            buf[k] = v
            k += 1
        if k == 0:
            out[i] = np.nan
        elif method == 0:
            s = np.sort(buf[:k])
            h = k // 2
            out[i] = s[h] if k % 2 == 1 else (s[h - 1] + s[h]) / 2
        elif method == 1:
            acc = 0.0
            for j in range(k):
                acc += buf[j]
            out[i] = acc / k
        elif method == 2:
            out[i] = buf[:k].min()
        else:
            out[i] = buf[:k].max()
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
