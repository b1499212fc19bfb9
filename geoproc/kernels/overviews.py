"""Overview levels: the most frequent value of each ``f x f`` window (class bands), ignoring NaN."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["window_mode"]


@numba.njit(cache=True, nogil=True)
def window_mode(values: np.ndarray, factor: int) -> np.ndarray:
    """Mode of each ``factor x factor`` window of ``values`` (``(n, ny, nx)`` float64), NaN ignored.

    Windows at the bottom and right edges hold what is left of the array
    (the output is ``ceil(ny / factor) x ceil(nx / factor)``). A tie goes to
    the smallest value; a window of NaN only gives NaN.
    """
    n, ny, nx = values.shape
    oy = (ny + factor - 1) // factor
    ox = (nx + factor - 1) // factor
    out = np.empty((n, oy, ox), dtype=np.float64)
    buf = np.empty(factor * factor, dtype=np.float64)
    for k in range(n):
        for i in range(oy):
            for j in range(ox):
                m = 0
                for y in range(i * factor, min((i + 1) * factor, ny)):
                    for x in range(j * factor, min((j + 1) * factor, nx)):
                        v = values[k, y, x]
                        if not np.isnan(v):
                            buf[m] = v
                            m += 1
                if m == 0:
                    out[k, i, j] = np.nan
                    continue
                window = np.sort(buf[:m])
                best, best_count = window[0], 1
                run = 1
                for t in range(1, m):
                    if window[t] == window[t - 1]:
                        run += 1
                    else:
                        run = 1
                    if run > best_count:  # strictly more: the first (smallest) value keeps a tie
                        best, best_count = window[t], run
                out[k, i, j] = best
    return out
