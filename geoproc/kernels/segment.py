"""Connected components of equal values and Felzenszwalb's graph segmentation, on one 2-D block."""

from __future__ import annotations

import numba
import numpy as np

from ._unionfind import find, union


@numba.njit(cache=True, nogil=True)
def label_equal(values: np.ndarray, connectivity: int) -> np.ndarray:
    """Connected regions of equal non-zero values of an int64 2-D array.

    ``connectivity`` 1: 4-neighbours; 2: 8-neighbours. Returns int64 labels ``1..n`` in raster order of each
    region's first pixel, 0 where the value is 0.
    """
    h, w = values.shape
    parent = np.arange(h * w + 1).astype(np.int64)
    lab = np.zeros((h, w), dtype=np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            v = values[y, x]
            if v == 0:
                continue
            cur = 0
            for k in range(4):
                if k == 0:
                    dy, dx = 0, -1
                elif k == 1:
                    dy, dx = -1, 0
                elif k == 2:
                    dy, dx = -1, -1
                else:
                    dy, dx = -1, 1
                if k >= 2 and connectivity == 1:
                    continue
                yy, xx = y + dy, x + dx
                if yy < 0 or xx < 0 or xx >= w or values[yy, xx] != v:
                    continue
                if cur == 0:
                    cur = lab[yy, xx]
                else:
                    union(parent, cur, lab[yy, xx])
            if cur == 0:
                n += 1
                cur = n
            lab[y, x] = cur
    final = np.zeros(n + 1, dtype=np.int64)
    m = 0
    for i in range(1, n + 1):
        r = find(parent, i)
        if final[r] == 0:
            m += 1
            final[r] = m
        final[i] = final[r]
    for y in range(h):
        for x in range(w):
            lab[y, x] = final[lab[y, x]]
    return lab


@numba.njit(cache=True, nogil=True)
def _root(forest, n):
    root = n
    while forest[root] < root:
        root = forest[root]
    while forest[n] < n:  # point the path at the root
        j = forest[n]
        forest[n] = root
        n = j
    return root


@numba.njit(cache=True, nogil=True)
def _join(forest, n, m):
    if n != m:
        root = _root(forest, n)
        root_m = _root(forest, m)
        if root > root_m:
            root = root_m
        _root_set(forest, n, root)
        _root_set(forest, m, root)


@numba.njit(cache=True, nogil=True)
def _root_set(forest, n, root):
    while forest[n] < n:
        j = forest[n]
        forest[n] = root
        n = j
    forest[n] = root


def felzenszwalb_edges(image: np.ndarray):
    """The 8-connected pixel graph of an ``(h, w, c)`` float64 image, sorted by cost (numpy's sort, as skimage).

    Returns ``(edges (m, 2) intp, costs (m,) float64)``: right, down, down-right and up-right edges, weights the
    Euclidean distance between the pixels' band vectors.
    """
    h, w = image.shape[:2]

    def cost(a, b):
        d = a - b
        return np.sqrt(np.sum(d * d, axis=-1))

    costs = np.hstack([cost(image[:, 1:], image[:, :-1]).ravel(), cost(image[1:], image[:-1]).ravel(),
                       cost(image[1:, 1:], image[:-1, :-1]).ravel(), cost(image[1:, :-1], image[:-1, 1:]).ravel()])
    seg = np.arange(h * w, dtype=np.intp).reshape(h, w)
    edges = np.vstack([np.c_[seg[:, 1:].ravel(), seg[:, :-1].ravel()], np.c_[seg[1:, :].ravel(), seg[:-1, :].ravel()],
                       np.c_[seg[1:, 1:].ravel(), seg[:-1, :-1].ravel()],
                       np.c_[seg[:-1, 1:].ravel(), seg[1:, :-1].ravel()]])
    order = np.argsort(costs)
    return np.ascontiguousarray(edges[order]), np.ascontiguousarray(costs[order])


@numba.njit(cache=True, nogil=True)
def felzenszwalb_merge(n: int, edges: np.ndarray, costs: np.ndarray, scale: float, min_size: int) -> np.ndarray:
    """Felzenszwalb-Huttenlocher merging over sorted edges, then the small-segment pass; the root of each pixel.

    The internal costs are kept in single precision, as scikit-image keeps them, so that ties break alike.
    """
    forest = np.arange(n).astype(np.intp)
    size = np.ones(n, dtype=np.intp)
    cint = np.zeros(n)
    for e in range(costs.shape[0]):
        s0 = _root(forest, edges[e, 0])
        s1 = _root(forest, edges[e, 1])
        if s0 == s1:
            continue
        i0 = np.float32(cint[s0] + scale / size[s0])
        i1 = np.float32(cint[s1] + scale / size[s1])
        if costs[e] < min(i0, i1):
            _join(forest, s0, s1)
            new = _root(forest, s0)
            size[new] = size[s0] + size[s1]
            cint[new] = costs[e]
    for e in range(costs.shape[0]):
        s0 = _root(forest, edges[e, 0])
        s1 = _root(forest, edges[e, 1])
        if s0 == s1:
            continue
        if size[s0] < min_size or size[s1] < min_size:
            _join(forest, s0, s1)
            new = _root(forest, s0)
            size[new] = size[s0] + size[s1]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = _root(forest, i)
    return out
