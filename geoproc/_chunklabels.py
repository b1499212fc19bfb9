"""Labels unique across chunks: per-block labels, offsets, seams joined with union-find, one relabel table.

The dask layer of :func:`geoproc.label` and :func:`geoproc.felzenszwalb`. Each block is labelled on its own
(``1..n``, 0 for background); a block's labels are shifted by the number of labels in the blocks before it; the
pixels facing each other across every seam between neighbouring blocks are paired, and pairs that a rule says
belong together are joined; the roots, numbered ``1..m`` in raster order of each object's first pixel (as
``scipy.ndimage.label`` and the one-block kernels number them), make one table that relabels every block. The
graph stays lazy: only the seams' edge rows and columns and the table (one integer per block label) travel.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as da
import numpy as np

from .kernels.edges import union_roots

__all__ = ["merge_block_labels"]


def _edges(result, row0: int, col0: int, width: int) -> dict:
    lab, keys = result
    n = int(lab.max(initial=0))
    ids, at = np.unique(lab.ravel(), return_index=True)
    first = np.zeros(n, np.int64)  # each label's first pixel, as a flat index into the whole array
    r, c = np.divmod(at[ids > 0], lab.shape[1])
    first[ids[ids > 0] - 1] = (r + row0) * width + c + col0
    return {"labels": {"top": lab[0], "bottom": lab[-1], "left": lab[:, 0], "right": lab[:, -1]},
            "keys": keys, "n": n, "first": first}


def _pairs(a: dict, b: dict, offa: int, offb: int, axis: int, rule: Callable) -> np.ndarray:
    """Label pairs to join across the seam between block ``a`` and the next block ``b`` along ``axis``."""
    sa, sb = ("bottom", "top") if axis == 0 else ("right", "left")
    la, lb = a["labels"][sa], b["labels"][sb]
    ia, ib = rule(a["keys"][sa], b["keys"][sb], la, lb)
    la, lb = la[ia], lb[ib]
    keep = (la > 0) & (lb > 0)
    return np.c_[la[keep] + offa, lb[keep] + offb]


def _offsets(counts: list[int]) -> list[int]:
    return np.r_[0, np.cumsum(counts)[:-1]].astype(int).tolist()


def _corner(a: dict, b: dict, offa: int, offb: int, ca: tuple, cb: tuple, corner_rule: Callable) -> np.ndarray:
    """The pair of pixels touching diagonally at a block corner, when ``corner_rule`` joins them."""
    (sa, ia), (sb, ib) = ca, cb
    la, lb = a["labels"][sa][ia], b["labels"][sb][ib]
    if la > 0 and lb > 0 and corner_rule(a["keys"][sa][ia], b["keys"][sb][ib]):
        return np.array([[la + offa, lb + offb]])
    return np.zeros((0, 2), np.int64)


def _table(counts: list[int], firsts: list[np.ndarray], *pairs: np.ndarray) -> np.ndarray:
    """Provisional label -> final label, numbered ``1..m`` in raster order of each object's first pixel."""
    total = int(sum(counts))
    pairs = np.concatenate([p for p in pairs if len(p)] or [np.zeros((0, 2), np.int64)])
    roots = union_roots(total + 1, pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64))
    first = np.concatenate([[-1], *firsts])
    start = np.full(total + 1, np.iinfo(np.int64).max)
    np.minimum.at(start, roots, first)  # the root of background (0) starts at -1: stays first, label 0
    _, final = np.unique(start[roots], return_inverse=True)
    return final.astype(np.int64)


def _apply(result, offset: int, table: np.ndarray) -> np.ndarray:
    lab = result[0]
    return np.where(lab > 0, table[np.where(lab > 0, lab + offset, 0)], 0)


def merge_block_labels(blocks: np.ndarray, chunks: tuple, rule: Callable, corner_rule: Callable | None = None
                       ) -> da.Array:
    """One lazy label array from a 2-D grid of delayed ``(labels, keys)`` block results.

    ``keys`` holds, per side (``top``/``bottom``/``left``/``right``), what ``rule(keys_a, keys_b, labels_a,
    labels_b)`` needs to pick the pixel pairs to join: it returns index arrays ``(ia, ib)`` into the two edges.
    ``corner_rule(key_a, key_b)``, when given, joins pixels that touch diagonally across a block corner.
    """
    ny, nx = blocks.shape
    edges = np.empty(blocks.shape, dtype=object)
    for iy in range(ny):
        for ix in range(nx):
            edges[iy, ix] = dask.delayed(_edges)(blocks[iy, ix], int(sum(chunks[0][:iy])), int(sum(chunks[1][:ix])),
                                                 int(sum(chunks[1])))
    counts = [edges[iy, ix]["n"] for iy in range(ny) for ix in range(nx)]
    firsts = [edges[iy, ix]["first"] for iy in range(ny) for ix in range(nx)]
    offsets = dask.delayed(_offsets)(counts)
    offs = {(iy, ix): offsets[iy * nx + ix] for iy in range(ny) for ix in range(nx)}
    pairs = []
    for iy in range(ny):
        for ix in range(nx):
            if iy + 1 < ny:
                pairs.append(dask.delayed(_pairs)(edges[iy, ix], edges[iy + 1, ix], offs[iy, ix], offs[iy + 1, ix],
                                                  0, rule))
            if ix + 1 < nx:
                pairs.append(dask.delayed(_pairs)(edges[iy, ix], edges[iy, ix + 1], offs[iy, ix], offs[iy, ix + 1],
                                                  1, rule))
            if corner_rule is not None and iy + 1 < ny and ix + 1 < nx:
                pairs.append(dask.delayed(_corner)(edges[iy, ix], edges[iy + 1, ix + 1], offs[iy, ix],
                                                   offs[iy + 1, ix + 1], ("bottom", -1), ("top", 0), corner_rule))
                pairs.append(dask.delayed(_corner)(edges[iy, ix + 1], edges[iy + 1, ix], offs[iy, ix + 1],
                                                   offs[iy + 1, ix], ("bottom", 0), ("top", -1), corner_rule))
    table = dask.delayed(_table)(counts, firsts, *pairs)
    rows = []
    for iy in range(ny):
        rows.append([da.from_delayed(dask.delayed(_apply)(blocks[iy, ix], offs[iy, ix], table),
                                     shape=(chunks[0][iy], chunks[1][ix]), dtype=np.int64) for ix in range(nx)])
    return da.block(rows)
