"""Exact weighted quantiles per zone (zonal medians and percentiles).

The quantile of weighted values ``x_1 <= ... <= x_n`` (weights ``w_i``, total ``W``) is interpolated on the
positions ``s_1 = 0``, ``s_i = (i - 1) w_i + (n - 1) (w_1 + ... + w_{i-1})``: the value at ``q (n - 1) W``. With
equal weights this is the linear interpolation numpy's ``quantile`` uses by default (R's type 7); with coverage
fractions it is the weighted quantile exactextract computes.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _quantile_sorted(x, w, q):
    n = x.shape[0]
    if n == 0:
        return np.nan
    if n == 1:
        return x[0]
    total = 0.0
    s = np.empty(n)
    cum = 0.0
    for i in range(n):
        s[i] = 0.0 if i == 0 else i * w[i] + (n - 1) * cum
        cum += w[i]
    total = cum
    target = q * total * (n - 1)
    # first position strictly above the target
    j = 0
    while j < n and s[j] <= target:
        j += 1
    if j == n:
        return x[n - 1]
    if j == 0:
        return x[0]
    return x[j - 1] + (target - s[j - 1]) * (x[j] - x[j - 1]) / (s[j] - s[j - 1])


@numba.njit(cache=True, nogil=True)
def zone_quantiles(values, weights, starts, qs):
    """Weighted quantiles ``qs`` (in [0, 1]) of each zone, for every row of ``values``.

    Parameters
    ----------
    values
        ``(t, m)`` float64: the pixels of all zones, zone after zone (NaN: missing, skipped).
    weights
        ``(m,)`` coverage weights (> 0).
    starts
        ``(k + 1,)`` int64: zone ``j`` is ``values[:, starts[j]:starts[j + 1]]``.
    qs
        ``(nq,)`` quantiles.

    Returns
    -------
    ``(t, k, nq)`` float64; NaN for a zone without valid pixels.
    """
    t = values.shape[0]
    k = starts.shape[0] - 1
    out = np.full((t, k, qs.shape[0]), np.nan)
    for r in range(t):
        for j in range(k):
            a, b = starts[j], starts[j + 1]
            v = values[r, a:b]
            ww = weights[a:b]
            ok = ~np.isnan(v)
            v = v[ok]
            ww = ww[ok]
            order = np.argsort(v, kind="mergesort")
            v = v[order]
            ww = ww[order]
            for iq in range(qs.shape[0]):
                out[r, j, iq] = _quantile_sorted(v, ww, qs[iq])
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _clip_half(xs, ys, n, out_x, out_y, axis, bound, keep_above):
    """Sutherland-Hodgman: the part of a closed ring (``n`` vertices, not repeated) on one side of a line."""
    m = 0
    for i in range(n):
        j = (i + 1) % n
        ai = xs[i] if axis == 0 else ys[i]
        aj = xs[j] if axis == 0 else ys[j]
        in_i = ai >= bound if keep_above else ai <= bound
        in_j = aj >= bound if keep_above else aj <= bound
        if in_i:
            out_x[m] = xs[i]
            out_y[m] = ys[i]
            m += 1
        if in_i != in_j:
            t = (bound - ai) / (aj - ai)
            if axis == 0:
                out_x[m] = bound
                out_y[m] = ys[i] + t * (ys[j] - ys[i])
            else:
                out_x[m] = xs[i] + t * (xs[j] - xs[i])
                out_y[m] = bound
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def rect_coverage(coords, ring_starts, x0, y0, x1, y1):
    """Area of a polygon inside each axis-aligned rectangle ``[x0, x1] x [y0, y1]`` (pixels), exactly.

    ``coords``: the vertices of all rings, exteriors counter-clockwise and holes clockwise, each ring closed (its
    first vertex repeated last); ring ``r`` is ``coords[ring_starts[r]:ring_starts[r + 1]]``. Each ring is clipped
    to the rectangle (Sutherland-Hodgman) and the signed areas of the clipped rings add up to the area of the
    polygon inside it (edges that clipping lays along the rectangle's sides enclose no area).
    """
    nrect = x0.shape[0]
    out = np.zeros(nrect)
    maxn = 0
    for r in range(ring_starts.shape[0] - 1):
        maxn = max(maxn, ring_starts[r + 1] - ring_starts[r])
    cap = 2 * maxn + 8
    ax, ay = np.empty(cap), np.empty(cap)
    bx, by = np.empty(cap), np.empty(cap)
    for k in range(nrect):
        total = 0.0
        for r in range(ring_starts.shape[0] - 1):
            s, e = ring_starts[r], ring_starts[r + 1] - 1  # the last vertex repeats the first
            rx0, rx1, ry0, ry1 = np.inf, -np.inf, np.inf, -np.inf
            for i in range(s, e):
                rx0 = min(rx0, coords[i, 0])
                rx1 = max(rx1, coords[i, 0])
                ry0 = min(ry0, coords[i, 1])
                ry1 = max(ry1, coords[i, 1])
            if rx1 <= x0[k] or rx0 >= x1[k] or ry1 <= y0[k] or ry0 >= y1[k]:
                continue
            n = e - s
            for i in range(n):  # relative to the rectangle's corner: no cancellation in the shoelace sums
                ax[i] = coords[s + i, 0] - x0[k]
                ay[i] = coords[s + i, 1] - y0[k]
            n = _clip_half(ax, ay, n, bx, by, 0, 0.0, True)
            n = _clip_half(bx, by, n, ax, ay, 0, x1[k] - x0[k], False)
            n = _clip_half(ax, ay, n, bx, by, 1, 0.0, True)
            n = _clip_half(bx, by, n, ax, ay, 1, y1[k] - y0[k], False)
            area = 0.0
            for i in range(n):
                j = (i + 1) % n
                area += ax[i] * ay[j] - ax[j] * ay[i]
            total += 0.5 * area
        out[k] = total
    return out
