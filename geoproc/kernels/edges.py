"""Sobel gradients and the Canny edge detector on 2-D blocks with a halo.

Both replay scipy.ndimage's and scikit-image's arithmetic step by step (the
same separable passes, summation order and float precision), so that Canny
gives the same edges as ``skimage.feature.canny`` on float images.

A block carries a halo of pixels around the part it computes; the caller says
which rows and columns of the block lie inside the whole image, so that image
borders are handled as scipy does (``reflect``) wherever the block sits.
"""

from __future__ import annotations

import numba
import numpy as np

from ._unionfind import find, union

__all__ = ["sobel_gradient", "canny_classes", "label_classes", "union_roots"]


@numba.njit(cache=True, nogil=True)
def sobel_gradient(block: np.ndarray, direction: bool) -> np.ndarray:
    """Sobel magnitude (and direction) of the interior of a block with a 1-pixel halo.

    ``gx = scipy.ndimage.sobel(img, axis=1)`` (along columns) and
    ``gy = scipy.ndimage.sobel(img, axis=0)`` (along rows), in float64 and in
    scipy's order of operations (``[-1, 0, 1]``: ``c*0 + (l - r)*-1``, then
    ``[1, 2, 1]``: ``2c + (l + r)``); the halo holds the image's neighbours (or
    its mirror, ``reflect``, past the image border).

    Returns
    -------
    float32 ``(1 or 2, H - 2, W - 2)``: ``sqrt(gx**2 + gy**2)`` and, if
    ``direction``, ``arctan2(gy, gx)`` (radians). NaN propagates from any pixel
    of the 3 x 3 neighbourhood (as in scipy); the direction is NaN where the
    magnitude is 0.
    """
    h = block.shape[0] - 2
    w = block.shape[1] - 2
    out = np.empty((2 if direction else 1, max(h, 0), max(w, 0)), dtype=np.float32)
    for y in range(h):
        r0 = block[y]
        r1 = block[y + 1]
        r2 = block[y + 2]
        for x in range(w):
            gx_u = np.float64(r0[x + 1]) * 0.0 + (np.float64(r0[x]) - np.float64(r0[x + 2])) * -1.0
            gx_c = np.float64(r1[x + 1]) * 0.0 + (np.float64(r1[x]) - np.float64(r1[x + 2])) * -1.0
            gx_d = np.float64(r2[x + 1]) * 0.0 + (np.float64(r2[x]) - np.float64(r2[x + 2])) * -1.0
            gx = gx_c * 2.0 + (gx_u + gx_d) * 1.0
            gy_l = np.float64(r1[x]) * 0.0 + (np.float64(r0[x]) - np.float64(r2[x])) * -1.0
            gy_c = np.float64(r1[x + 1]) * 0.0 + (np.float64(r0[x + 1]) - np.float64(r2[x + 1])) * -1.0
            gy_r = np.float64(r1[x + 2]) * 0.0 + (np.float64(r0[x + 2]) - np.float64(r2[x + 2])) * -1.0
            gy = gy_c * 2.0 + (gy_l + gy_r) * 1.0
            out[0, y, x] = np.sqrt(gx * gx + gy * gy)
            if direction:
                out[1, y, x] = np.arctan2(gy, gx)
        if direction:
            for x in range(w):
                if out[0, y, x] == 0:
                    out[1, y, x] = np.nan
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _reflect(i, lo, hi):
    """Index ``i`` mirrored into ``[lo, hi)`` as scipy's ``reflect`` mode (``d c b a | a b c d``), for |step| <= 1."""
    if i < lo:
        return 2 * lo - 1 - i
    if i >= hi:
        return 2 * hi - 1 - i
    return i


@numba.njit(cache=True, nogil=True)
def canny_classes(
    block: np.ndarray,
    top: int,
    bottom: int,
    left: int,
    right: int,
    weights: np.ndarray,
    consts: np.ndarray,
    low: float,
    high: float,
) -> np.ndarray:
    """Canny edge candidates of the interior of a float block (everything before hysteresis).

    Parameters
    ----------
    block
        float32 or float64 ``(H + 2 h, W + 2 h)`` with ``h = len(weights) // 2 + 2``;
        NaN marks pixels left out (no data), as ``mask=False`` in
        ``skimage.feature.canny``.
    top, bottom, left, right
        Rows ``[top, bottom)`` and columns ``[left, right)`` of the block that lie
        inside the image (the rest of the halo is past the image border).
    weights
        float64 Gaussian weights, ``scipy.ndimage._gaussian_kernel1d(sigma, 0, r)``.
    consts
        One element of the block's dtype: ``np.finfo(dtype).eps``.
    low, high
        Thresholds on the gradient magnitude, already rounded as skimage
        compares them (``low`` to float32; ``high`` to the block's dtype).

    Returns
    -------
    uint8 ``(H, W)``: 0 not an edge, 1 weak candidate (local maximum >= low),
    2 strong candidate (>= high as well).

    Notes
    -----
    The steps and their precision are skimage's (0.26, the version tested):
    Gaussian of the masked image and of the mask (``mode='constant'``), one
    axis after the other, each pass accumulated in float64 and stored in the
    block's dtype;
    their quotient; ``scipy.ndimage.sobel`` along each axis (``reflect``);
    magnitude; bilinear non-maximum suppression on the mask eroded by a 3 x 3
    square.
    """
    dt = consts.dtype
    eps = consts[0]
    r = weights.shape[0] // 2
    hp, wp = block.shape
    hh = r + 2
    h = hp - 2 * hh
    w = wp - 2 * hh
    out = np.zeros((max(h, 0), max(w, 0)), dtype=np.uint8)
    if h <= 0 or w <= 0:
        return out

    # masked image and mask: 0 outside the image and at NaN
    img = np.zeros((hp, wp), dtype=dt)
    msk = np.zeros((hp, wp), dtype=dt)
    for y in range(max(top, 0), min(bottom, hp)):
        for x in range(max(left, 0), min(right, wp)):
            v = block[y, x]
            if v == v:
                img[y, x] = v
                msk[y, x] = 1

    # Gaussian along rows (axis 0) on rows [r, hp - r), then columns (axis 1) on columns [r, wp - r):
    # scipy's symmetric correlate1d, c*w0 + sum over k = r..1 of (x[-k] + x[+k]) * w_k, in float64
    g1i = np.zeros((hp, wp), dtype=dt)
    g1m = np.zeros((hp, wp), dtype=dt)
    for y in range(r, hp - r):
        for x in range(wp):
            ai = np.float64(img[y, x]) * weights[r]
            am = np.float64(msk[y, x]) * weights[r]
            for k in range(r, 0, -1):
                ai += (np.float64(img[y - k, x]) + np.float64(img[y + k, x])) * weights[r - k]
                am += (np.float64(msk[y - k, x]) + np.float64(msk[y + k, x])) * weights[r - k]
            g1i[y, x] = ai
            g1m[y, x] = am
    # smoothed image on rows and columns [r, size - r): the interior and 2 pixels around it; each pass is
    # stored in the block's dtype, and the quotient too, as skimage does
    g2i = np.zeros((hp, wp), dtype=dt)
    g2m = np.zeros((hp, wp), dtype=dt)
    sm = np.zeros((hp, wp), dtype=dt)
    for y in range(r, hp - r):
        for x in range(r, wp - r):
            ai = np.float64(g1i[y, x]) * weights[r]
            am = np.float64(g1m[y, x]) * weights[r]
            for k in range(r, 0, -1):
                ai += (np.float64(g1i[y, x - k]) + np.float64(g1i[y, x + k])) * weights[r - k]
                am += (np.float64(g1m[y, x - k]) + np.float64(g1m[y, x + k])) * weights[r - k]
            g2i[y, x] = ai
            g2m[y, x] = am
            sm[y, x] = g2i[y, x] / (g2m[y, x] + eps)

    # Sobel (scipy.ndimage.sobel), reflect at the image border. jsobel: [-1, 0, 1] along axis 1 (ta), then
    # [1, 2, 1] along axis 0; isobel: [-1, 0, 1] along axis 0 (tb), then [1, 2, 1] along axis 1. Needed on the
    # interior and 1 pixel around it (y0 + 1 .. y1 - 2), so ta on rows y0 .. y1 - 1, tb on columns x0 .. x1 - 1.
    y0, y1 = hh - 2, hp - hh + 2
    x0, x1 = hh - 2, wp - hh + 2
    ta = np.zeros((hp, wp), dtype=dt)
    tb = np.zeros((hp, wp), dtype=dt)
    for y in range(y0, y1):
        for x in range(x0, x1):
            if y < top or y >= bottom or x < left or x >= right:
                continue
            c = np.float64(sm[y, x]) * 0.0
            if x > x0 and x < x1 - 1:
                xl, xr = _reflect(x - 1, left, right), _reflect(x + 1, left, right)
                ta[y, x] = c + (np.float64(sm[y, xl]) - np.float64(sm[y, xr])) * -1.0
            if y > y0 and y < y1 - 1:
                yu, yd = _reflect(y - 1, top, bottom), _reflect(y + 1, top, bottom)
                tb[y, x] = c + (np.float64(sm[yu, x]) - np.float64(sm[yd, x])) * -1.0
    isob = np.zeros((hp, wp), dtype=dt)
    jsob = np.zeros((hp, wp), dtype=dt)
    mag = np.zeros((hp, wp), dtype=dt)
    for y in range(y0 + 1, y1 - 1):
        for x in range(x0 + 1, x1 - 1):
            if y < top or y >= bottom or x < left or x >= right:
                continue
            xl, xr = _reflect(x - 1, left, right), _reflect(x + 1, left, right)
            yu, yd = _reflect(y - 1, top, bottom), _reflect(y + 1, top, bottom)
            jsob[y, x] = np.float64(ta[y, x]) * 2.0 + (np.float64(ta[yu, x]) + np.float64(ta[yd, x])) * 1.0
            isob[y, x] = np.float64(tb[y, x]) * 2.0 + (np.float64(tb[y, xl]) + np.float64(tb[y, xr])) * 1.0
            ii = isob[y, x] * isob[y, x]
            jj = jsob[y, x] * jsob[y, x]
            mag[y, x] = np.sqrt(ii + jj)

    # non-maximum suppression (skimage's _nonmaximum_suppression_bilinear) and the two thresholds
    for y in range(hh, hp - hh):
        for x in range(hh, wp - hh):
            m = mag[y, x]
            eroded = True
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if msk[y + dy, x + dx] == 0:
                        eroded = False
            if not (eroded and m >= low):
                continue
            gi = isob[y, x]
            gj = jsob[y, x]
            is_down = gi <= 0
            is_up = not is_down
            is_left = gj <= 0
            is_right = not is_left
            cond1 = (is_up and is_right) or (is_down and is_left)
            ai = abs(gi)
            aj = abs(gj)
            if cond1:
                if ai > aj:
                    wgt = aj / ai
                    n11, n12 = mag[y + 1, x], mag[y + 1, x + 1]
                    n21, n22 = mag[y - 1, x], mag[y - 1, x - 1]
                else:
                    wgt = ai / aj
                    n11, n12 = mag[y, x + 1], mag[y + 1, x + 1]
                    n21, n22 = mag[y, x - 1], mag[y - 1, x - 1]
            else:
                if ai < aj:
                    wgt = ai / aj
                    n11, n12 = mag[y, x + 1], mag[y - 1, x + 1]
                    n21, n22 = mag[y, x - 1], mag[y + 1, x - 1]
                else:
                    wgt = aj / ai
                    n11, n12 = mag[y - 1, x], mag[y - 1, x + 1]
                    n21, n22 = mag[y + 1, x], mag[y + 1, x - 1]
            if (n12 * wgt + n11 * (1.0 - wgt)) <= m:
                if (n22 * wgt + n21 * (1.0 - wgt)) <= m:
                    if m > 0:
                        out[y - hh, x - hh] = 2 if m >= high else 1
    return out


@numba.njit(cache=True, nogil=True)
def label_classes(classes: np.ndarray) -> np.ndarray:
    """8-connected components of the non-zero pixels of a uint8 2-D array.

    Returns
    -------
    int32 labels numbered ``1..n`` in raster order of their first pixel; 0 for
    background; the label is negative for a component that holds a pixel of
    class 2 (strong).
    """
    h, w = classes.shape
    lab = np.zeros((h, w), dtype=np.int32)
    parent = np.zeros(h * w // 2 + 2, dtype=np.int32)
    n = 0
    for y in range(h):
        for x in range(w):
            if classes[y, x] == 0:
                continue
            cur = 0
            for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if yy < 0 or xx < 0 or xx >= w:
                    continue
                nb = lab[yy, xx]
                if nb == 0:
                    continue
                if cur == 0:
                    cur = nb
                else:
                    union(parent, cur, nb)
            if cur == 0:
                n += 1
                if n >= parent.shape[0]:
                    grown = np.empty(2 * parent.shape[0], dtype=np.int32)
                    grown[: parent.shape[0]] = parent
                    parent = grown
                parent[n] = n
                cur = n
            lab[y, x] = cur
    # compact the roots to 1..m in raster order, and flag the strong ones
    final = np.zeros(n + 1, dtype=np.int32)
    m = 0
    for i in range(1, n + 1):
        root = find(parent, i)
        if final[root] == 0:
            m += 1
            final[root] = m
        final[i] = final[root]
    strong = np.zeros(m + 1, dtype=np.bool_)
    for y in range(h):
        for x in range(w):
            if lab[y, x] != 0:
                lab[y, x] = final[lab[y, x]]
                if classes[y, x] == 2:
                    strong[lab[y, x]] = True
    for y in range(h):
        for x in range(w):
            if strong[lab[y, x]] and lab[y, x] != 0:
                lab[y, x] = -lab[y, x]
    return lab


@numba.njit(cache=True, nogil=True)
def union_roots(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root (smallest member) of each of ``n`` ids after joining ``a[k]`` with ``b[k]`` for every k."""
    parent = np.arange(n).astype(np.int64)
    for k in range(a.shape[0]):
        ra = find(parent, a[k])
        rb = find(parent, b[k])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb
    roots = np.empty(n, dtype=np.int64)
    for i in range(n):
        roots[i] = find(parent, i)
    return roots
