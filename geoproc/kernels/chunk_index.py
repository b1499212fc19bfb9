"""Which chunks of a regular grid each box intersects, as compressed sparse rows (numpy + numba only).

The index of a continental load has tens of millions of (chunk, asset) pairs: two passes over the
boxes' chunk ranges (count, then fill in box order) build it in time linear in the pairs, where a
sort of the pairs would cost several times more.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["rows_from_ranges"]


@numba.njit(cache=True, nogil=True)
def rows_from_ranges(r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray, n_y: int, n_x: int):
    """``(ptr, hit)``: box ``i`` covers chunk rows ``r0[i]:r1[i]`` and columns ``c0[i]:c1[i]`` (empty when
    a stop is not past its start); chunk ``k = row * n_x + col`` lists its boxes in ``hit[ptr[k]:ptr[k+1]]``,
    in box order."""
    n = r0.shape[0]
    ptr = np.zeros(n_y * n_x + 1, dtype=np.int64)
    for i in range(n):
        for r in range(r0[i], r1[i]):
            for c in range(c0[i], c1[i]):
                ptr[r * n_x + c + 1] += 1
    for k in range(n_y * n_x):
        ptr[k + 1] += ptr[k]
    fill = ptr[:-1].copy()
    hit = np.empty(ptr[-1], dtype=np.int32)
    for i in range(n):
        for r in range(r0[i], r1[i]):
            for c in range(c0[i], c1[i]):
                k = r * n_x + c
                hit[fill[k]] = i
                fill[k] += 1
    return ptr, hit
