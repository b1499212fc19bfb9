"""Fmask 4's potential false positive layer and the erosion of commission errors (kernels).

Source: **Q19**, Qiu, Zhu & He (2019), "Fmask 4.0: Improved cloud and cloud
shadow detection in Landsats 4-8 and Sentinel-2 imagery", RSE 231, 111205,
section 2.2.3: bright surfaces that pass the potential cloud tests (urban and
built-up land, bright rock, coastlines, snow and ice) are found as a
*potential false positive* layer; cloud objects are eroded there, objects
that vanish are dropped, and the survivors grow back to their shape. For
Sentinel-2, small objects without a pixel of low cloud displacement index
(Frantz et al. 2018) are dropped too.

* :func:`enhance_line`: Guindon et al. (2004)'s line detector on NDBI (four
  3 x 3 templates of one bright line between two dark ones, the largest
  response), which lights up built-up land and darkens other bright surfaces.
* :func:`histogram_otsu`: Otsu's threshold of a histogram (thermal data: the
  urban pixels colder than the warm class are cloud, not city).
* :func:`false_positive_layer`: the urban pixels dilated by a square of about
  250 m a side, plus potential snow, within the scene.
* :func:`erode_commissions`: the erosion itself.

Plain arrays in and out; the whole scene of one time step at once (the
objects need it), as Fmask works on whole scenes.
"""

from __future__ import annotations

import numba
import numpy as np

from .morphology import dilate_disk, dilate_square, remove_small

__all__ = ["enhance_line", "histogram_otsu", "false_positive_layer", "erode_commissions"]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def enhance_line(band):
    """The largest of the four 3 x 3 line templates' responses (weights 2 on the line, -1 beside it, over 6).

    Vertical, horizontal and the two diagonal lines; outside the array counts
    as 0 (MATLAB's ``imfilter``, as Fmask applies it). A uniform area gives 0.
    NaN propagates to the pixel's neighbours.
    """
    h, w = band.shape
    out = np.empty((h, w), dtype=np.float32)
    for y in range(h):
        for x in range(w):
            best = -np.inf
            for t in range(4):
                s = 0.0
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        yy, xx = y + dy, x + dx
                        if yy < 0 or xx < 0 or yy >= h or xx >= w:
                            continue
                        if t == 0:  # vertical line
                            on = dx == 0
                        elif t == 1:  # horizontal line
                            on = dy == 0
                        elif t == 2:  # main diagonal
                            on = dy == dx
                        else:  # anti-diagonal
                            on = dy == -dx
                        s += band[yy, xx] * (2.0 if on else -1.0)
                s /= 6.0
                if np.isnan(s):
                    best = np.nan
                    break
                best = max(best, s)
            out[y, x] = best
    return out


def histogram_otsu(hist: np.ndarray, grid: tuple[float, float, int]) -> float:
    """The lowest value of the upper class of Otsu's split of a histogram on ``grid`` (NaN if empty).

    Otsu (1979): the split maximising the between-class variance; the upper
    class is the bins above it. Fmask takes the coldest pixel of the warm
    class as the limit below which an urban pixel is cloud.
    """
    h = np.asarray(hist, dtype=np.float64)
    total = h.sum()
    if total == 0:
        return float("nan")
    low, step, bins = grid
    values = low + np.arange(bins) * step
    w0 = np.cumsum(h)  # weight of the class at or below each bin
    m0 = np.cumsum(h * values)
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    split = int(np.argmax(between))
    if between[split] < 0:  # one value only: no split, the whole histogram is the warm class
        return float(values[int(np.flatnonzero(h)[0])])
    upper = np.flatnonzero(h[split + 1:])
    return float(values[split + 1 + int(upper[0])])


@numba.njit(cache=True, nogil=True)
def false_positive_layer(urban, snow, valid, radius):
    """Q19's potential false positive layer: ``urban`` dilated by the ``(2 radius + 1)`` square, or ``snow``.

    Only within ``valid``.
    """
    out = dilate_square(urban, radius) if radius > 0 else urban.copy()
    h, w = out.shape
    for y in range(h):
        for x in range(w):
            out[y, x] = (out[y, x] or snow[y, x]) and valid[y, x]
    return out


@numba.njit(cache=True, nogil=True)
def _objects_with(labels, count, marked):
    """Which of ``count`` labelled objects have a ``marked`` pixel: ``keep[label]``."""
    keep = np.zeros(count + 1, dtype=np.bool_)
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            if marked[y, x] and labels[y, x] > 0:
                keep[labels[y, x]] = True
    return keep


@numba.njit(cache=True, nogil=True)
def label_objects(mask):
    """8-connected components of a 2-D mask: ``(labels, count)``, labels 1..count in raster order of first pixel."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    stack = np.empty(h * w, dtype=np.int64)
    count = 0
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0, x0] or labels[y0, x0]:
                continue
            count += 1
            labels[y0, x0] = count
            stack[0] = y0 * w + x0
            top = 1
            while top > 0:
                top -= 1
                p = stack[top]
                y, x = p // w, p % w
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and labels[yy, xx] == 0:
                            labels[yy, xx] = count
                            stack[top] = yy * w + xx
                            top += 1
    return labels, count


@numba.njit(cache=True, nogil=True)
def erode_commissions(cloud, pfpl, water, radius, confident, use_confident, small_size, min_size):
    """Q19's erosion of potential false positive clouds (Fmask 4's ``ErodeCommissons``).

    1. The land clouds are eroded by the disk of ``radius`` px (outside the
       array counts as cloud, as in MATLAB's ``imerode``); a pixel the erosion
       removes is dropped if it is in ``pfpl``.
    2. A cloud object (8-connected) with no pixel left is dropped; the pixels
       left grow back by the disk of ``2 radius`` within their objects.
    3. Clouds over ``water`` are kept as they were.
    4. ``use_confident`` (Sentinel-2's CDI): objects of fewer than
       ``small_size`` px without a ``confident`` pixel (CDI < -0.5) are dropped.
    5. Objects of fewer than ``min_size`` px are dropped (Fmask: 3).
    """
    h, w = cloud.shape
    if radius > 0:
        not_cloud = np.empty((h, w), dtype=np.bool_)
        for y in range(h):
            for x in range(w):
                not_cloud[y, x] = not cloud[y, x]
        core = dilate_disk(not_cloud, float(radius))  # True: removed by the erosion
        left = np.empty((h, w), dtype=np.bool_)
        for y in range(h):
            for x in range(w):
                left[y, x] = cloud[y, x] and not (core[y, x] and pfpl[y, x])
        labels, count = label_objects(cloud)
        keep = _objects_with(labels, count, left)
        grown = dilate_disk(left, 2.0 * radius)
        out = np.empty((h, w), dtype=np.bool_)
        for y in range(h):
            for x in range(w):
                out[y, x] = (grown[y, x] and keep[labels[y, x]] and labels[y, x] > 0) or (water[y, x] and cloud[y, x])
    else:
        out = cloud.copy()
    if use_confident:
        labels, count = label_objects(out)
        sizes = np.zeros(count + 1, dtype=np.int64)
        for y in range(h):
            for x in range(w):
                sizes[labels[y, x]] += 1
        keep = _objects_with(labels, count, confident)
        for y in range(h):
            for x in range(w):
                lab = labels[y, x]
                if lab > 0 and sizes[lab] < small_size and not keep[lab]:
                    out[y, x] = False
    if min_size > 1:
        out = remove_small(out, min_size, 8, np.zeros(4, dtype=np.bool_))
    return out
