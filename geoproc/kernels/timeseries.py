"""Per-pixel time-series models: harmonic regression; the least-squares helpers BFAST Monitor shares (CCDC: :mod:`geoproc.kernels.ccdc`).

Inputs are time-first ``(T, N)`` arrays and a design matrix ``(T, p)`` shared
by all pixels (intercept, trend, harmonics, evaluated at each date). Each
pixel is fitted by least squares on its own valid observations only (not NaN,
not ``invalid``): normal equations accumulated in float64 and solved by
Cholesky. Outputs are stacked float32 rows ``(rows, N)``; see each kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "REASON_OK",
    "REASON_FEW_HISTORY",
    "REASON_NO_MONITORING",
    "REASON_SINGULAR",
    "harmonic_fit",
    "strucchange_log_plus",
]

#: Reason codes (why a pixel has no result; 0 when it has one).
REASON_OK = 0
REASON_FEW_HISTORY = 1  # too few valid observations in the fitting (history) period
REASON_NO_MONITORING = 2  # no valid observation in the monitoring period
REASON_SINGULAR = 3  # the valid dates do not determine the model (collinear design), or zero residual variance

_TILE = 256  # pixels gathered at a time: each date's row is read sequentially


@numba.njit(cache=True, nogil=True, inline="always")
def strucchange_log_plus(x: float) -> float:
    """``log+(x) = max(1, log x)`` as strucchange's ``logPlus`` (1 for ``x <= e``)."""
    return 1.0 if x <= math.e else math.log(x)


@numba.njit(cache=True, nogil=True, inline="always")
def _gather(values, invalid, use_mask, first, start, width, tile, tidx, counts):
    """Valid observations (dates ``>= first``) of pixels ``start:start + width`` into ``tile``; their dates in ``tidx``."""
    counts[:width] = 0
    for t in range(first, values.shape[0]):
        for j in range(width):
            v = values[t, start + j]
            if np.isnan(v) or (use_mask and invalid[t, start + j]):
                continue
            c = counts[j]
            tile[j, c] = v
            tidx[j, c] = t
            counts[j] = c + 1


@numba.njit(cache=True, nogil=True)
def _fit(design, y, ti, m, stop, xtx, xty, beta):
    """Least squares on the observations ``y[:m]`` at dates ``ti[:m]`` that are ``< stop``.

    Returns ``(n, ok)``: the number of observations used, and whether the
    normal equations were positive definite (``beta`` then holds the fit).
    """
    p = design.shape[1]
    xtx[:, :] = 0.0
    xty[:] = 0.0
    n = 0
    for q in range(m):
        t = ti[q]
        if t >= stop:
            break
        yv = y[q]
        for a in range(p):
            xa = design[t, a]
            xty[a] += xa * yv
            for b in range(a + 1):
                xtx[a, b] += xa * design[t, b]
        n += 1
    if n < p:
        return n, False
    # Cholesky L L' = X'X in the lower triangle; a pivot that all but vanishes relative to its
    # column's own norm means the valid dates do not determine the coefficients
    for j in range(p):
        d = xtx[j, j]
        norm = d
        for k in range(j):
            d -= xtx[j, k] * xtx[j, k]
        if not d > 1e-10 * norm:
            return n, False
        d = math.sqrt(d)
        xtx[j, j] = d
        for i in range(j + 1, p):
            s = xtx[i, j]
            for k in range(j):
                s -= xtx[i, k] * xtx[j, k]
            xtx[i, j] = s / d
    for i in range(p):  # L z = X'y
        s = xty[i]
        for k in range(i):
            s -= xtx[i, k] * beta[k]
        beta[i] = s / xtx[i, i]
    for i in range(p - 1, -1, -1):  # L' beta = z
        s = beta[i]
        for k in range(i + 1, p):
            s -= xtx[k, i] * beta[k]
        beta[i] = s / xtx[i, i]
    return n, True


@numba.njit(cache=True, nogil=True, inline="always")
def _residuals(design, y, ti, m, beta, resid):
    p = design.shape[1]
    for q in range(m):
        t = ti[q]
        pred = 0.0
        for a in range(p):
            pred += design[t, a] * beta[a]
        resid[q] = y[q] - pred


@numba.njit(cache=True, nogil=True, inline="always")
def _fit_history(design, y, ti, m, stop, min_obs, h, xtx, xty, beta, resid):
    """Fit the history of one series and compute its residuals: ``(n, sigma, reason)``.

    ``n`` history observations, ``sigma = sqrt(RSS / (n - p))`` (NaN unless the
    reason is :data:`REASON_OK`). Too little history (``n <= p``, ``n < min_obs``,
    or, for ``h > 0``, a MOSUM window ``floor(h * n) <= 1``) comes first, then a
    singular fit, then no monitoring observation. ``resid`` holds the ``m``
    residuals when the reason is :data:`REASON_OK`.
    """
    p = design.shape[1]
    n, ok = _fit(design, y, ti, m, stop, xtx, xty, beta)
    if n <= p or n < min_obs or (h > 0.0 and int(math.floor(h * n)) <= 1):
        return n, np.nan, REASON_FEW_HISTORY
    if not ok:
        return n, np.nan, REASON_SINGULAR
    if m == n:
        return n, np.nan, REASON_NO_MONITORING
    _residuals(design, y, ti, m, beta, resid)
    rss = 0.0
    for q in range(n):
        rss += resid[q] * resid[q]
    return n, math.sqrt(rss / (n - p)), REASON_OK


@numba.njit(cache=True, nogil=True)
def harmonic_fit(
    values: np.ndarray, invalid: np.ndarray, design: np.ndarray, start: int, stop: int, min_obs: int
) -> np.ndarray:
    """Per-pixel least-squares fit of ``design`` to the valid observations of dates ``start:stop``.

    Returns float32 ``(p + 3, N)``: the p coefficients, the RMSE
    ``sqrt(RSS / (n - p))`` (NaN when ``n == p``), the number n of
    observations used, and the reason code (:data:`REASON_OK`, or
    :data:`REASON_FEW_HISTORY` when ``n < max(p, min_obs)``,
    :data:`REASON_SINGULAR`); coefficients and RMSE are NaN unless the reason
    is OK.
    """
    t_len, n_pix = values.shape
    p = design.shape[1]
    use_mask = invalid.shape[0] == t_len
    out = np.full((p + 3, n_pix), np.nan, dtype=np.float32)
    tile = np.empty((_TILE, t_len), dtype=np.float64)
    tidx = np.empty((_TILE, t_len), dtype=np.int64)
    counts = np.empty(_TILE, dtype=np.int64)
    xtx = np.empty((p, p))
    xty = np.empty(p)
    beta = np.empty(p)
    resid = np.empty(t_len)
    view = values[:stop]
    mask_view = invalid[:stop] if use_mask else invalid
    for s0 in range(0, n_pix, _TILE):
        width = min(_TILE, n_pix - s0)
        _gather(view, mask_view, use_mask, start, s0, width, tile, tidx, counts)
        for j in range(width):
            m = counts[j]
            n, ok = _fit(design, tile[j], tidx[j], m, stop, xtx, xty, beta)
            out[p + 1, s0 + j] = n
            if n < p or n < min_obs:
                out[p + 2, s0 + j] = REASON_FEW_HISTORY
                continue
            if not ok:
                out[p + 2, s0 + j] = REASON_SINGULAR
                continue
            _residuals(design, tile[j], tidx[j], m, beta, resid)
            rss = 0.0
            for q in range(m):
                rss += resid[q] * resid[q]
            for a in range(p):
                out[a, s0 + j] = beta[a]
            if n > p:
                out[p, s0 + j] = math.sqrt(rss / (n - p))
            out[p + 2, s0 + j] = REASON_OK
    return out
