"""BFAST Monitor per pixel as R's ``bfastmonitor``: the stable history by reverse-ordered CUSUM, then OLS-MOSUM monitoring.

Inputs are time-first ``(T, N)`` arrays and a design matrix ``(T, p)`` shared
by all pixels (see :mod:`geoproc.kernels.timeseries`, whose least-squares
helpers are reused). Each pixel uses its own valid observations only (not NaN,
not ``invalid``), as bfastmonitor drops NA.

The stable history (``history = "ROC"``, Verbesselt et al. 2012, bfast's
``history_roc``): the history observations are put in reverse order, their
recursive residuals ``w`` computed (strucchange ``recresid``), and the
Rec-CUSUM process ``cumsum(w) / (sd(w) sqrt(N))`` (``efp(type = "Rec-CUSUM")``,
``N = n - p``) tested with strucchange's ``sctest``: the statistic
``max |process_i| / (1 + 2 i / N)``, its p-value from the Brownian-motion
formula of ``pvalue.efp``. When p < ``roc_level``, the history starts just
after the newest observation where the process crosses the boundary
``b (1 + 2 i / N)`` (``boundary.efp``, b solving p-value(b) = level).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .timeseries import (
    REASON_FEW_HISTORY,
    REASON_OK,
    REASON_SINGULAR,
    _fit_history,
    _gather,
    _TILE,
    strucchange_log_plus,
)

__all__ = ["bfast_monitor", "roc_history", "rec_cusum_pvalue", "ROWS"]

#: Rows of :func:`bfast_monitor`'s output before the optional process and boundary rows.
ROWS = 6


@numba.njit(cache=True, nogil=True, inline="always")
def _pnorm(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@numba.njit(cache=True, nogil=True)
def rec_cusum_pvalue(stat: float) -> float:
    """strucchange's ``pvalue.efp`` for a Brownian-motion limit, functional "max", one column, standard boundary."""
    if stat < 0.3:
        return 1.0 - 0.1465 * stat
    return 2.0 * (
        1.0
        - _pnorm(3.0 * stat)
        + math.exp(-4.0 * stat * stat) * (_pnorm(stat) + _pnorm(5.0 * stat) - 1.0)
        - math.exp(-16.0 * stat * stat) * (1.0 - _pnorm(stat))
    )


#: R's ``lm.fit`` tolerance in strucchange's ``recresid`` (``qr.tol = 1e-7``): a column whose part not
#: explained by the columns before it has a norm below ``tol`` times its own norm is aliased (dropped).
QR_TOL = 1e-7


@numba.njit(cache=True, nogil=True)
def _qr_fit(design, y, ti, n, r, a, qb, rr, cols, beta) -> int:
    """Least squares on the ``r`` newest of ``y[:n]`` (reversed order: row k is observation ``n - 1 - k``).

    Householder QR with the limited column pivoting of R's ``lm.fit`` (LINPACK
    ``dqrdc2``): columns in order, a column whose remaining norm is below
    :data:`QR_TOL` times its own norm is aliased (coefficient 0). Fills the
    upper-triangular ``rr`` (rank x rank, over the accepted columns ``cols``),
    ``qb`` (Q'y) and ``beta`` (0 at aliased columns); returns the rank.
    """
    p = design.shape[1]
    for k in range(r):
        q = n - 1 - k
        for j in range(p):
            a[k, j] = design[ti[q], j]
        qb[k] = y[q]
    rank = 0
    for j in range(p):
        orig = 0.0
        for k in range(r):
            orig += design[ti[n - 1 - k], j] ** 2
        orig = math.sqrt(orig)
        nrm = 0.0
        for k in range(rank, r):
            nrm += a[k, j] * a[k, j]
        nrm = math.sqrt(nrm)
        if rank >= r or not nrm >= QR_TOL * orig or nrm == 0.0:
            continue
        alpha = -nrm if a[rank, j] >= 0.0 else nrm  # Householder: a[rank:, j] -> (alpha, 0, ..., 0)
        v0 = a[rank, j] - alpha
        vnorm2 = v0 * v0 + nrm * nrm - a[rank, j] * a[rank, j]
        for jj in range(j + 1, p):
            d = v0 * a[rank, jj]
            for k in range(rank + 1, r):
                d += a[k, j] * a[k, jj]
            f = 2.0 * d / vnorm2
            a[rank, jj] -= f * v0
            for k in range(rank + 1, r):
                a[k, jj] -= f * a[k, j]
        d = v0 * qb[rank]
        for k in range(rank + 1, r):
            d += a[k, j] * qb[k]
        f = 2.0 * d / vnorm2
        qb[rank] -= f * v0
        for k in range(rank + 1, r):
            qb[k] -= f * a[k, j]
        a[rank, j] = alpha
        cols[rank] = j
        rank += 1
    for i in range(rank):
        for k in range(rank):
            rr[i, k] = a[i, cols[k]] if k >= i else 0.0
    _back_solve(rr, qb, rank, beta, cols, p)
    return rank


@numba.njit(cache=True, nogil=True, inline="always")
def _back_solve(rr, qb, rank, beta, cols, p):
    """``beta[cols[:rank]] = rr^-1 qb[:rank]``, 0 elsewhere."""
    for j in range(p):
        beta[j] = 0.0
    for i in range(rank - 1, -1, -1):
        acc = qb[i]
        for k in range(i + 1, rank):
            acc -= rr[i, k] * beta[cols[k]]
        beta[cols[i]] = acc / rr[i, i]


@numba.njit(cache=True, nogil=True, inline="always")
def _leverage(rr, rank, cols, x, z) -> float:
    """``x' (R'R)^-1 x`` over the accepted columns: ``|R^-T x|^2``."""
    quad = 0.0
    for i in range(rank):
        acc = x[cols[i]]
        for k in range(i):
            acc -= rr[k, i] * z[k]
        z[i] = acc / rr[i, i]
        quad += z[i] * z[i]
    return quad


@numba.njit(cache=True, nogil=True)
def roc_history(design, y, ti, n, level, crit, w, a, qb, rr, cols, beta, x, z):
    """Offset (0-based, into ``y[:n]``) where the stable history starts, by the reverse-ordered CUSUM test.

    ``y[:n]`` and ``ti[:n]`` are the history observations, oldest first. Returns
    0 (the whole history) when the test does not reject at ``level``, and -1
    when ``n < p + 2`` (too few for the test). ``crit`` is the boundary
    constant ``b``. Recursive residuals as strucchange's ``recresid``: the fit
    on the first ``r`` reversed observations (R's pivoted QR while it is
    rank-deficient, then Givens updates of its full-rank factor) predicts
    observation ``r + 1``; ``w = (y - x'beta) / sqrt(1 + x'(X'X)^-1 x)``. The
    rest are work arrays: ``w``, ``a`` (T x p), ``qb`` (T), ``rr`` (p x p),
    ``cols`` (p, int), ``beta``, ``x``, ``z`` (p).
    """
    p = design.shape[1]
    big = n - p
    if big < 2:
        return -1
    rank = 0
    for r in range(p, n):  # fit on reversed rows 0..r-1, predict row r
        q = n - 1 - r
        for j in range(p):
            x[j] = design[ti[q], j]
        if rank < p:
            rank = _qr_fit(design, y, ti, n, r, a, qb, rr, cols, beta)
            if rank == p:  # a positive diagonal (Q's columns flipped to match), for the updates below
                for i in range(p):
                    if rr[i, i] < 0.0:
                        for k in range(i, p):
                            rr[i, k] = -rr[i, k]
                        qb[i] = -qb[i]
        if rank < p:  # rank-deficient (R: aliased coefficients are 0): predict from the fit
            pred = 0.0
            for j in range(p):
                pred += x[j] * beta[j]
            w[r - p] = (y[q] - pred) / math.sqrt(1.0 + _leverage(rr, rank, cols, x, z))
            continue
        # full rank: fold row r into R by Givens rotations; with R's diagonal positive, what is left of the
        # row's response is its recursive residual (y - x'beta) / sqrt(1 + x'(R'R)^-1 x)
        yv = y[q]
        for i in range(p):
            if x[i] == 0.0:
                continue
            hyp = math.sqrt(rr[i, i] * rr[i, i] + x[i] * x[i])
            c, s = rr[i, i] / hyp, x[i] / hyp
            for k in range(i, p):
                t1 = rr[i, k]
                rr[i, k] = c * t1 + s * x[k]
                x[k] = c * x[k] - s * t1
            t1 = qb[i]
            qb[i] = c * t1 + s * yv
            yv = c * yv - s * t1
        w[r - p] = yv
    mean = 0.0
    for i in range(big):
        mean += w[i]
    mean /= big
    ss = 0.0
    for i in range(big):
        ss += (w[i] - mean) * (w[i] - mean)
    scale = math.sqrt(ss / (big - 1)) * math.sqrt(big)
    if not scale > 0.0:
        return 0
    stat = 0.0
    cum = 0.0
    for i in range(big):
        cum += w[i]
        v = abs(cum / scale) / (1.0 + 2.0 * (i + 1) / big)
        if v > stat:
            stat = v
    if not rec_cusum_pvalue(stat) < level:
        return 0
    cum = 0.0
    for i in range(big):
        cum += w[i]
        if abs(cum / scale) > crit * (1.0 + 2.0 * (i + 1) / big):
            # R: y_start = N - i* + 2 (1-based, i* the 1-based crossing) -> 0-based N - i*
            return big - (i + 1) + 1
    return 0


@numba.njit(cache=True, nogil=True)
def bfast_monitor(
    values: np.ndarray,
    invalid: np.ndarray,
    design: np.ndarray,
    hist_start: int,
    mon_start: int,
    h: float,
    crit: float,
    min_obs: int,
    want_process: bool,
    roc: bool,
    roc_level: float,
    roc_crit: float,
) -> np.ndarray:
    """bfastmonitor per pixel: (ROC) stable history, fit, OLS-MOSUM of the residuals, first boundary crossing.

    Dates ``hist_start:mon_start`` are the history, ``mon_start:`` the
    monitoring period. With ``roc``, the stable history is the part of the
    pixel's history after the reverse-ordered CUSUM test's crossing
    (:func:`roc_history`); else all of it. Then as
    ``strucchange::mefp(type = "OLS-MOSUM")`` + ``monitor``: with ``n``
    stable-history observations, coefficients and ``sigma = sqrt(RSS / (n - p))``
    from them, window ``K = floor(h * n)``, the process at the ``i``-th
    observation from the history start (1-based, ``i > n``) is the sum of the
    last ``K`` residuals over ``sigma * sqrt(n)`` and the boundary
    ``crit * sqrt(2 * log+(i / n))``; the break is the first monitoring
    observation where ``|process| > boundary``.

    Returns
    -------
    float64 ``(6, N)``, or ``(6 + 2T, N)`` with ``want_process``: row 0 the
    date index of the break (-1: none or no result), 1 the magnitude (median
    of the monitoring-period residuals, as bfastmonitor), 2 the reason code, 3
    n, 4 sigma, 5 the date index where the stable history starts (-1: no
    result); then the process and the boundary at each monitoring date (NaN
    elsewhere). A pixel needs ``n > p``, ``floor(h * n) > 1`` (as
    bfastmonitor), ``n >= min_obs`` and, with ``roc``, ``p + 2`` history
    observations for the test; else :data:`REASON_FEW_HISTORY`.
    """
    t_len, n_pix = values.shape
    p = design.shape[1]
    use_mask = invalid.shape[0] == t_len
    rows = ROWS + (2 * t_len if want_process else 0)
    out = np.full((rows, n_pix), np.nan)
    out[0, :] = -1
    out[5, :] = -1
    tile = np.empty((_TILE, t_len), dtype=np.float64)
    tidx = np.empty((_TILE, t_len), dtype=np.int64)
    counts = np.empty(_TILE, dtype=np.int64)
    xtx = np.empty((p, p))
    xty = np.empty(p)
    beta = np.empty(p)
    resid = np.empty(t_len)
    cum = np.empty(t_len + 1)
    qr_a = np.empty((t_len, p))
    qr_b = np.empty(t_len)
    qr_r = np.empty((p, p))
    qr_cols = np.empty(p, dtype=np.int64)
    x = np.empty(p)
    z = np.empty(p)
    for s0 in range(0, n_pix, _TILE):
        width = min(_TILE, n_pix - s0)
        _gather(values, invalid, use_mask, hist_start, s0, width, tile, tidx, counts)
        for j in range(width):
            px = s0 + j
            m = counts[j]
            off = 0
            if roc:
                n_all = 0
                while n_all < m and tidx[j, n_all] < mon_start:
                    n_all += 1
                off = roc_history(
                    design, tile[j], tidx[j], n_all, roc_level, roc_crit, resid, qr_a, qr_b, qr_r, qr_cols, beta, x, z
                )
                if off < 0:
                    out[3, px] = n_all
                    out[2, px] = REASON_FEW_HISTORY
                    continue
            y = tile[j, off:]
            ti = tidx[j, off:]
            m -= off
            n, sigma, reason = _fit_history(design, y, ti, m, mon_start, min_obs, h, xtx, xty, beta, resid)
            out[3, px] = n
            if n > 0:
                out[5, px] = ti[0]
            if reason != REASON_OK:
                out[2, px] = reason
                continue
            window = int(math.floor(h * n))
            out[4, px] = sigma
            if not sigma > 0.0:
                out[2, px] = REASON_SINGULAR
                continue
            out[2, px] = REASON_OK
            cum[0] = 0.0
            for q in range(m):
                cum[q + 1] = cum[q] + resid[q]
            scale = sigma * math.sqrt(n)
            brk = -1
            for q in range(n, m):
                process = (cum[q + 1] - cum[q + 1 - window]) / scale
                bound = crit * math.sqrt(2.0 * strucchange_log_plus((q + 1) / n))
                if want_process:
                    t = ti[q]
                    out[ROWS + t, px] = process
                    out[ROWS + t_len + t, px] = bound
                if brk < 0 and abs(process) > bound:
                    brk = ti[q]
                    if not want_process:
                        break
            out[0, px] = brk
            out[1, px] = np.median(resid[n:m])
    return out
