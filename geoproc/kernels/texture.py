"""Grey-level co-occurrence matrix (GLCM) texture features in a moving window.

The features of every pixel are those of scikit-image's ``graycomatrix`` +
``graycoprops`` on the ``window`` x ``window`` patch centred on it: a pair
``(p, p + offset)`` counts when both pixels lie in the patch and neither is
missing (level -1).

The window slides along each row: a step removes the pairs of the column that
leaves and adds those of the column that enters, so a pixel costs
``O(window)`` updates per offset instead of ``O(window**2)``. Everything the
features need is kept as exact integers (pair counts and sums of ``i``,
``i**2``, ``i*j``..., and fixed-point sums for homogeneity and entropy), so the
result does not depend on where a row, or a chunk, starts: chunked and
unchunked runs agree bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["FEATURES", "MAX_LEVELS", "MAX_WINDOW", "quantize", "glcm_features"]

#: Feature names, in the order of their codes in :func:`glcm_features`.
FEATURES = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "ASM",
    "energy",
    "correlation",
    "entropy",
    "mean",
    "variance",
    "std",
)

MAX_LEVELS = 256
MAX_WINDOW = 255

_FIXED = 2.0**40  # fixed-point scale of the homogeneity and entropy sums (exact integer arithmetic)

# columns of the per-offset state
_N, _SI, _SJ, _SII, _SJJ, _SIJ, _SAD, _SSD, _SHOM, _SSQ, _SENT = range(11)


@numba.njit(cache=True, nogil=True)
def quantize(values: np.ndarray, lo: float, hi: float, levels: int) -> np.ndarray:
    """Grey levels ``0 .. levels-1`` of a 1-D array; -1 where the value is NaN.

    ``q = floor((v - lo) / (hi - lo) * levels)`` in float64, clipped to
    ``[0, levels - 1]``; every valid value is level 0 when ``hi == lo``, and
    every value is -1 when ``lo`` or ``hi`` is NaN.
    """
    out = np.empty(values.shape[0], dtype=np.int16)
    span = hi - lo
    top = levels - 1
    for k in range(values.shape[0]):
        v = values[k]
        if v != v or not (span >= 0.0):  # NaN value, or NaN / reversed range
            out[k] = -1
            continue
        if span == 0.0:
            out[k] = 0
            continue
        x = np.floor((np.float64(v) - lo) / span * levels)
        if x < 0.0:
            out[k] = 0
        elif x > top:
            out[k] = top
        else:
            out[k] = np.int16(x)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _bump(mat, st, k, a, b, delta, ent_tab):
    old = np.int64(mat[k, a, b])
    new = old + delta
    mat[k, a, b] = new
    st[k, _SSQ] += new * new - old * old
    st[k, _SENT] += ent_tab[new] - ent_tab[old]


@numba.njit(cache=True, nogil=True)
def _column(q, st, mat, k, dr, dc, r0, r1, c, sign, symmetric, need_matrix, hom_tab, ent_tab):
    """Add (sign=1) or remove (sign=-1) the pairs whose first pixel is in column ``c``, rows ``r0..r1-1``."""
    for r in range(r0, r1):
        i = np.int64(q[r, c])
        j = np.int64(q[r + dr, c + dc])
        if i < 0 or j < 0:
            continue
        d = i - j
        ad = d if d >= 0 else -d
        st[k, _N] += sign
        st[k, _SI] += sign * i
        st[k, _SJ] += sign * j
        st[k, _SII] += sign * i * i
        st[k, _SJJ] += sign * j * j
        st[k, _SIJ] += sign * i * j
        st[k, _SAD] += sign * ad
        st[k, _SSD] += sign * d * d
        st[k, _SHOM] += sign * hom_tab[ad]
        if need_matrix:
            _bump(mat, st, k, i, j, sign, ent_tab)
            if symmetric:
                _bump(mat, st, k, j, i, sign, ent_tab)


@numba.njit(cache=True, nogil=True)
def _features(st, k, symmetric, codes, out):
    """The requested features (float64) of offset ``k`` into ``out``; NaN if the GLCM is empty."""
    n = st[k, _N]
    if n == 0:
        for f in range(codes.shape[0]):
            out[f] = np.nan
        return
    big_n = 2 * n if symmetric else n
    if symmetric:
        s1 = st[k, _SI] + st[k, _SJ]
        var_i = big_n * (st[k, _SII] + st[k, _SJJ]) - s1 * s1
        var_j = var_i
        cov = big_n * (2 * st[k, _SIJ]) - s1 * s1
        mean = s1 / big_n
    else:
        var_i = n * st[k, _SII] - st[k, _SI] * st[k, _SI]
        var_j = n * st[k, _SJJ] - st[k, _SJ] * st[k, _SJ]
        cov = n * st[k, _SIJ] - st[k, _SI] * st[k, _SJ]
        mean = st[k, _SI] / n
    nn = np.float64(big_n) * np.float64(big_n)
    for f in range(codes.shape[0]):
        code = codes[f]
        if code == 0:
            v = st[k, _SSD] / n
        elif code == 1:
            v = st[k, _SAD] / n
        elif code == 2:
            v = st[k, _SHOM] / _FIXED / n
        elif code == 3:
            v = st[k, _SSQ] / nn
        elif code == 4:
            v = np.sqrt(st[k, _SSQ] / nn)
        elif code == 5:
            if var_i == 0 or var_j == 0:
                v = 1.0  # as graycoprops: a constant GLCM marginal has correlation 1
            else:
                v = cov / (np.sqrt(np.float64(var_i)) * np.sqrt(np.float64(var_j)))
        elif code == 6:
            if st[k, _SSQ] == big_n * big_n:  # a single non-zero cell
                v = 0.0
            else:
                v = max(0.0, np.log(np.float64(big_n)) - st[k, _SENT] / _FIXED / big_n)
        elif code == 7:
            v = mean
        elif code == 8:
            v = var_i / nn
        else:
            v = np.sqrt(var_i / nn)
        out[f] = v


@numba.njit(cache=True, nogil=True)
def glcm_features(
    q: np.ndarray,
    radius: int,
    offsets: np.ndarray,
    n_dist: int,
    levels: int,
    symmetric: bool,
    codes: np.ndarray,
    average: bool,
) -> np.ndarray:
    """GLCM features in a ``(2 radius + 1)``-pixel square window around every pixel.

    Parameters
    ----------
    q
        int16 grey levels ``(H + 2 radius, W + 2 radius)``: the image with a halo
        of ``radius`` pixels on each side; -1 marks missing pixels (NaN, outside
        the image), whose pairs are left out.
    radius
        Half the window size.
    offsets
        int64 ``(n_dist * n_angle, 2)``: ``(row, col)`` offsets, distance-major
        (row ``d * n_angle + a``).
    n_dist
        Number of distances.
    levels
        Number of grey levels (at most :data:`MAX_LEVELS`).
    symmetric
        Count each pair both ways, as ``graycomatrix(symmetric=True)``.
    codes
        int64 indices into :data:`FEATURES` of the features to compute.
    average
        Average the features over the angles.

    Returns
    -------
    float32 ``(n_features, n_dist, n_angle or 1, H, W)``; NaN where the centre
    pixel is missing or the GLCM holds no pair (any angle's, when averaging).
    """
    w = 2 * radius + 1
    h = q.shape[0] - 2 * radius
    wd = q.shape[1] - 2 * radius
    n_off = offsets.shape[0]
    n_ang = n_off // n_dist
    n_feat = codes.shape[0]
    n_ang_out = 1 if average else n_ang
    out = np.empty((n_feat, n_dist, n_ang_out, max(h, 0), max(wd, 0)), dtype=np.float32)
    if h <= 0 or wd <= 0:
        return out

    need_matrix = False
    for f in range(n_feat):
        if codes[f] == 3 or codes[f] == 4 or codes[f] == 6:
            need_matrix = True
    hom_tab = np.empty(levels, dtype=np.int64)
    for d in range(levels):
        hom_tab[d] = np.int64(np.round(_FIXED / (1.0 + d * d)))
    max_count = 2 * w * w + 1
    ent_tab = np.zeros(max_count + 1, dtype=np.int64)
    if need_matrix:
        for c in range(2, max_count + 1):
            ent_tab[c] = np.int64(np.round(c * np.log(np.float64(c)) * _FIXED))

    st = np.zeros((n_off, 11), dtype=np.int64)
    m = levels if need_matrix else 1
    mat = np.zeros((n_off if need_matrix else 1, m, m), np.int32)
    vals = np.empty(n_feat, dtype=np.float64)
    acc = np.empty((n_feat, n_dist), dtype=np.float64)
    # per offset: first-pixel rows [y + b0, y + w - b1) and columns [x + a0, x + w - a1) of the window
    b0 = np.empty(n_off, np.int64)
    b1 = np.empty(n_off, np.int64)
    a0 = np.empty(n_off, np.int64)
    a1 = np.empty(n_off, np.int64)
    for k in range(n_off):
        dr, dc = offsets[k, 0], offsets[k, 1]
        b0[k], b1[k] = max(0, -dr), max(0, dr)
        a0[k], a1[k] = max(0, -dc), max(0, dc)

    for y in range(h):
        # the window of x = 0 (the matrices are all zero here)
        st[:, :] = 0
        for k in range(n_off):
            dr, dc = offsets[k, 0], offsets[k, 1]
            for c in range(a0[k], w - a1[k]):
                _column(q, st, mat, k, dr, dc, y + b0[k], y + w - b1[k], c, 1, symmetric, need_matrix, hom_tab, ent_tab)
        for x in range(wd):
            if x > 0:
                for k in range(n_off):
                    dr, dc = offsets[k, 0], offsets[k, 1]
                    r0, r1 = y + b0[k], y + w - b1[k]
                    c_out = x - 1 + a0[k]
                    c_in = x + w - 1 - a1[k]
                    if w - a0[k] - a1[k] > 0:  # the window holds at least one column of pairs
                        _column(q, st, mat, k, dr, dc, r0, r1, c_out, -1, symmetric, need_matrix, hom_tab, ent_tab)
                        _column(q, st, mat, k, dr, dc, r0, r1, c_in, 1, symmetric, need_matrix, hom_tab, ent_tab)
            if q[y + radius, x + radius] < 0:
                for f in range(n_feat):
                    for d in range(n_dist):
                        for a in range(n_ang_out):
                            out[f, d, a, y, x] = np.nan
                continue
            if average:
                acc[:, :] = 0.0
            for d in range(n_dist):
                for a in range(n_ang):
                    _features(st, d * n_ang + a, symmetric, codes, vals)
                    for f in range(n_feat):
                        if average:
                            acc[f, d] += vals[f]
                        else:
                            out[f, d, a, y, x] = vals[f]
            if average:
                for f in range(n_feat):
                    for d in range(n_dist):
                        out[f, d, 0, y, x] = acc[f, d] / n_ang
        if need_matrix:  # take the last window's pairs out again, so the matrices are zero for the next row
            for k in range(n_off):
                dr, dc = offsets[k, 0], offsets[k, 1]
                r0, r1 = y + b0[k], y + w - b1[k]
                for c in range(wd - 1 + a0[k], wd - 1 + w - a1[k]):
                    _column(q, st, mat, k, dr, dc, r0, r1, c, -1, symmetric, need_matrix, hom_tab, ent_tab)
    return out
