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
