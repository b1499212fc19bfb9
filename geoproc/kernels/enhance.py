"""Contrast enhancement kernels: value range, histograms, stretch, gamma, equalisation, CLAHE, RGBA.

Point operations take C-contiguous 2-D blocks ``(rows, columns)`` (any chunk
reshaped so); CLAHE takes ``(n, H, W)`` stacks of planes. Kernels that produce an
image fill an ``out`` array the caller allocates (and return it): numpy's allocator
asks the OS for huge pages for large arrays and numba's does not, and 4 KiB page
faults on a fresh output cost several times a point operation itself.
NaN is nodata everywhere: it is left out of statistics and stays NaN.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "value_range",
    "histogram",
    "stretch",
    "gamma",
    "equalize",
    "rgba",
    "clip_histogram",
    "clahe_luts",
    "clahe_apply",
]


@numba.njit(cache=True, nogil=True)
def value_range(values: np.ndarray) -> np.ndarray:
    """``[min, max]`` of the non-NaN values of a 2-D array as float64; ``[nan, nan]`` if none."""
    lo = np.inf
    hi = -np.inf
    found = False
    for r in range(values.shape[0]):
        row = values[r]
        for c in range(row.shape[0]):
            v = row[c]
            if v == v:
                found = True
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
    out = np.full(2, np.nan)
    if found:
        out[0] = lo
        out[1] = hi
    return out


@numba.njit(cache=True, nogil=True)
def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the values of a 2-D array in the equal-width bins ``edges`` (float64, ``nbins + 1``).

    Same bins as ``np.histogram(values, edges)`` with float64 arithmetic (the bin
    from ``(v - lo) * nbins / (hi - lo)``, corrected by one where rounding puts
    ``v`` across an edge): the last bin includes its right edge; NaN and values
    outside ``[edges[0], edges[-1]]`` are not counted. A single-value range
    (``edges[0] == edges[-1]``) puts its values in bin 0.
    """
    nbins = edges.shape[0] - 1
    counts = np.zeros(nbins, dtype=np.int64)
    lo = edges[0]
    hi = edges[nbins]
    norm = nbins / (hi - lo) if hi > lo else 0.0
    last = nbins - 1
    for r in range(values.shape[0]):
        row = values[r]
        for c in range(row.shape[0]):
            v = np.float64(row[c])
            if v >= lo and v <= hi:
                i = int((v - lo) * norm)
                if i > last:
                    i = last
                if v < edges[i]:
                    i -= 1
                elif i != last and v >= edges[i + 1]:
                    i += 1
                counts[i] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def stretch(values: np.ndarray, lo: float, hi: float, out: np.ndarray) -> np.ndarray:
    """``(v - lo) / (hi - lo)`` clipped to ``[0, 1]`` into ``out`` (float32, 2-D); NaN stays NaN; 0 where ``hi <= lo``.

    Computed as ``(v - lo) * (1 / (hi - lo))`` in float64 (within an ulp of the
    division), branch-free so that the loop vectorises.
    """
    rows, cols = values.shape
    if lo != lo or hi != hi:
        out[:] = np.nan
        return out
    inv = 1.0 / (hi - lo) if hi > lo else 0.0
    for r in range(rows):
        src = values[r]
        dst = out[r]
        for c in range(cols):
            t = (np.float64(src[c]) - lo) * inv
            t = 0.0 if t < 0.0 else t  # NaN passes both tests unchanged
            dst[c] = 1.0 if t > 1.0 else t
    return out


def gamma(values: np.ndarray, g: float, gain: float) -> np.ndarray:
    """``gain * v ** g`` as float32 (skimage.exposure.adjust_gamma); NaN where ``v`` is NaN or negative.

    Plain numpy rather than numba, on purpose: numpy's float32 ``power`` is SIMD
    vectorised (about 1 ns a value here), while numba without Intel SVML calls the
    scalar ``pow`` (about 20 ns a value). One pass for the power, one more only for
    an integer ``g`` (which would map negative values to numbers) or a gain.
    """
    out = np.empty(values.shape, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # negative ** non-integer is NaN, as intended
        np.power(values, np.float32(g), out=out, dtype=np.float32, casting="same_kind")
    if float(g).is_integer():
        np.putmask(out, values < 0, np.float32(np.nan))
    if gain != 1:
        out *= np.float32(gain)
    return out


@numba.njit(cache=True, nogil=True)
def equalize(values: np.ndarray, lo: float, hi: float, cdf: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a 2-D array: ``np.interp(v, centres, cdf)`` into ``out`` (float32), NaN stays NaN.

    ``centres`` are those of ``len(cdf)`` equal bins of ``[lo, hi]``
    (``lo + (j + 0.5) (hi - lo) / nbins``), as ``skimage.exposure.equalize_hist``
    uses: values below the first centre map to ``cdf[0]``, above the last to
    ``cdf[-1]``, linearly in between.
    """
    rows, cols = values.shape
    nb = cdf.shape[0]
    width = (hi - lo) / nb
    first = lo + 0.5 * width
    last = lo + (nb - 0.5) * width
    inv = 1.0 / width if width > 0 else 0.0
    for r in range(rows):
        src = values[r]
        for c in range(cols):
            v = np.float64(src[c])
            if v != v:
                out[r, c] = np.nan
            elif v <= first or width <= 0:
                out[r, c] = cdf[0]
            elif v >= last:
                out[r, c] = cdf[nb - 1]
            else:
                j = min(int((v - first) * inv), nb - 2)
                t = (v - (lo + (j + 0.5) * width)) * inv
                out[r, c] = cdf[j] + t * (cdf[j + 1] - cdf[j])
    return out


@numba.njit(cache=True, nogil=True)
def rgba(r: np.ndarray, g: np.ndarray, b: np.ndarray, limits: np.ndarray, g_exp: float, out: np.ndarray) -> np.ndarray:
    """Three 2-D bands to uint8 RGBA in ``out`` ``(4, rows, cols)`` (RGB without alpha if it has 3 channels).

    Each band is stretched linearly from ``limits[c] = (lo, hi)`` to ``[0, 1]``
    (clipped), raised to ``g_exp`` and scaled to ``floor(255 v + 0.5)``. A pixel
    where any band is NaN is ``(0, 0, 0, 0)``: black and transparent.
    """
    rows, cols = r.shape
    alpha = out.shape[0] == 4
    for y in range(rows):
        for x in range(cols):
            vr = np.float64(r[y, x])
            vg = np.float64(g[y, x])
            vb = np.float64(b[y, x])
            if vr != vr or vg != vg or vb != vb:
                for c in range(out.shape[0]):
                    out[c, y, x] = 0
                continue
            for c in range(3):
                v = vr if c == 0 else (vg if c == 1 else vb)
                span = limits[c, 1] - limits[c, 0]
                s = min(max((v - limits[c, 0]) / span, 0.0), 1.0) if span > 0 else 0.0
                if g_exp != 1.0:
                    s = s**g_exp
                out[c, y, x] = np.uint8(np.floor(s * 255.0 + 0.5))
            if alpha:
                out[3, y, x] = 255
    return out


# --------------------------------------------------------------------------- CLAHE


@numba.njit(cache=True, nogil=True)
def clip_histogram(hist: np.ndarray, clip_limit: int) -> None:
    """Clip ``hist`` (int64) at ``clip_limit`` and redistribute the excess, in place.

    The integer redistribution of Zuiderveld (Graphics Gems IV, 1994), step for step
    as ``skimage.exposure._adapthist.clip_histogram``: an equal share to every bin
    below the limit, then single counts spread at a stride until none is left or no
    bin can take more.
    """
    nb = hist.shape[0]
    n_excess = 0
    for i in range(nb):
        if hist[i] > clip_limit:
            n_excess += hist[i] - clip_limit
            hist[i] = clip_limit
    bin_incr = n_excess // nb
    upper = clip_limit - bin_incr
    for i in range(nb):
        if hist[i] < upper:
            hist[i] += bin_incr
            n_excess -= bin_incr
    for i in range(nb):  # after the increments, as skimage does: raised bins can reach this band too
        if upper <= hist[i] < clip_limit:
            n_excess -= clip_limit - hist[i]
            hist[i] = clip_limit
    while n_excess > 0:
        prev = n_excess
        for index in range(nb):
            under = 0
            for i in range(nb):
                if hist[i] < clip_limit:
                    under += 1
            step = max(1, under // n_excess)
            for i in range(index, nb, step):
                if hist[i] < clip_limit:
                    hist[i] += 1
                    n_excess -= 1
            if n_excess <= 0:
                break
        if prev == n_excess:
            break


@numba.njit(cache=True, nogil=True, inline="always")
def _level(v, lo, hi, nbins):
    """Grey level (histogram bin) of ``v`` in ``[lo, hi]`` quantised to ``nbins`` levels."""
    if hi <= lo:
        return 0
    i = int((v - lo) / (hi - lo) * nbins)
    return min(max(i, 0), nbins - 1)


@numba.njit(cache=True, nogil=True)
def clahe_luts(
    values: np.ndarray, lo: float, hi: float, tile_y: int, tile_x: int, nbins: int, clip_limit: float
) -> np.ndarray:
    """Contrast-limited equalisation mappings of the tiles of each plane.

    Parameters
    ----------
    values
        ``(n, H, W)``; tiles are ``tile_y x tile_x`` from ``values[:, 0, 0]`` on (the
        caller aligns blocks to the global tile grid); the last tile row/column may be
        cut short.
    lo, hi
        Value range quantised into ``nbins`` grey levels.
    clip_limit
        Fraction of a tile's valid pixels one level may hold (skimage's
        ``clip_limit``); 0 or >= 1 for no clipping.

    Returns
    -------
    float32 ``(n, ceil(H / tile_y), ceil(W / tile_x), nbins)``: per tile, the clipped
    cumulative histogram divided by its number of valid pixels (``<= 1``); NaN for a
    tile without valid pixels.
    """
    n, h_len, w_len = values.shape
    ty = (h_len + tile_y - 1) // tile_y
    tx = (w_len + tile_x - 1) // tile_x
    luts = np.empty((n, ty, tx, nbins), dtype=np.float32)
    hist = np.zeros(nbins, dtype=np.int64)
    for p in range(n):
        for i in range(ty):
            for j in range(tx):
                hist[:] = 0
                count = 0
                for y in range(i * tile_y, min((i + 1) * tile_y, h_len)):
                    for x in range(j * tile_x, min((j + 1) * tile_x, w_len)):
                        v = np.float64(values[p, y, x])
                        if v == v:
                            hist[_level(v, lo, hi, nbins)] += 1
                            count += 1
                if count == 0:
                    luts[p, i, j, :] = np.nan
                    continue
                if 0 < clip_limit < 1:
                    clip_histogram(hist, max(int(clip_limit * count), 1))
                acc = 0
                for k in range(nbins):
                    acc += hist[k]
                    luts[p, i, j, k] = min(acc / count, 1.0)
    return luts


@numba.njit(cache=True, nogil=True)
def clahe_apply(
    values: np.ndarray,
    lo: float,
    hi: float,
    luts: np.ndarray,
    y0: int,
    x0: int,
    ty0: int,
    tx0: int,
    n_ty: int,
    n_tx: int,
    tile_y: int,
    tile_x: int,
    out: np.ndarray,
) -> np.ndarray:
    """Map each pixel through the bilinear blend of the mappings of its four nearest tiles.

    ``values`` ``(n, h, w)`` is a block whose first pixel is at global ``(y0, x0)``;
    ``luts[:, a, b]`` is the mapping of global tile ``(ty0 + a, tx0 + b)`` (``n_ty x
    n_tx`` tiles in all). The tile centres and weights are skimage's: a pixel at
    global ``y`` lies between tiles ``i = (y + tile_y // 2) // tile_y - 1`` and
    ``i + 1`` (clamped to the grid) with weight ``((y + tile_y // 2) % tile_y) / tile_y``
    on ``i + 1``; likewise along x. Tiles without valid pixels are left out and the
    weights of the others renormalised. Into ``out`` (float32 like ``values``, returned),
    in ``[0, 1]``; NaN where the pixel is.
    """
    n, h_len, w_len = values.shape
    nbins = luts.shape[3]
    for p in range(n):
        for y in range(h_len):
            gy = y0 + y + tile_y // 2
            iy = gy // tile_y - 1
            fy = (gy % tile_y) / tile_y
            ia = min(max(iy, 0), n_ty - 1) - ty0
            ib = min(max(iy + 1, 0), n_ty - 1) - ty0
            for x in range(w_len):
                v = np.float64(values[p, y, x])
                if v != v:
                    out[p, y, x] = np.nan
                    continue
                k = _level(v, lo, hi, nbins)
                gx = x0 + x + tile_x // 2
                ix = gx // tile_x - 1
                fx = (gx % tile_x) / tile_x
                ja = min(max(ix, 0), n_tx - 1) - tx0
                jb = min(max(ix + 1, 0), n_tx - 1) - tx0
                acc = 0.0
                wsum = 0.0
                for a in range(2):
                    wy_ = (1.0 - fy) if a == 0 else fy
                    row = ia if a == 0 else ib
                    for b in range(2):
                        wgt = wy_ * ((1.0 - fx) if b == 0 else fx)
                        m = luts[p, row, ja if b == 0 else jb, k]
                        if m == m and wgt > 0:
                            acc += wgt * m
                            wsum += wgt
                out[p, y, x] = acc / wsum
    return out
