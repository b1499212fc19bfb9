"""Union-find on a flat parent array, for connected-component labelling (edges' hysteresis, morphology)."""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True, inline="always")
def find(parent, i):
    """The root of ``i``, compressing the path to it."""
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True, inline="always")
def union(parent, a, b):
    """Join the sets of ``a`` and ``b``; the smaller root becomes the root of both."""
    ra = find(parent, a)
    rb = find(parent, b)
    if ra < rb:
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb
