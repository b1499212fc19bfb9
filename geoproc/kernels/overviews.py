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
    # a table of the window's distinct values and their counts, searched linearly: class bands hold a
    # few distinct values per window, so this is O(pixels x classes), with no sort and no allocation
    seen = np.empty(factor * factor, dtype=np.float64)
    counts = np.empty(factor * factor, dtype=np.int64)
    for k in range(n):
        for i in range(oy):
            for j in range(ox):
                distinct = 0
                for y in range(i * factor, min((i + 1) * factor, ny)):
                    for x in range(j * factor, min((j + 1) * factor, nx)):
                        v = values[k, y, x]
                        if np.isnan(v):
                            continue
                        for t in range(distinct):
                            if seen[t] == v:
                                counts[t] += 1
                                break
                        else:
                            seen[distinct] = v
                            counts[distinct] = 1
                            distinct += 1
                if distinct == 0:
                    out[k, i, j] = np.nan
                    continue
                best, best_count = seen[0], counts[0]
                for t in range(1, distinct):
                    # more pixels wins; a tie goes to the smaller value
                    if counts[t] > best_count or (counts[t] == best_count and seen[t] < best):
                        best, best_count = seen[t], counts[t]
                out[k, i, j] = best
    return out
