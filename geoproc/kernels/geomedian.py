"""Multi-band per-pixel composites by distances between spectra: medoid and geometric median.

Both take a band stack ``(B, T, N)`` (B bands, T dates, N pixels) and return
``(B, N)`` float32. An observation takes part when it is not ``invalid`` and
all its B bands are finite; a pixel with no such observation is NaN in every
band. Distances are Euclidean over the bands, computed in float64.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["medoid", "geomedian"]

_TILE = 64  # pixels gathered at a time (each date's row of a band is read sequentially)


@numba.njit(cache=True, nogil=True, inline="always")
def _gather(stack, invalid, use_mask, start, width, tile, counts, index):
    """Valid observations of pixels ``start:start + width`` into ``tile[j, :counts[j], :]``; their dates in ``index``."""
    n_bands, t_len, _ = stack.shape
    counts[:width] = 0
    for t in range(t_len):
        for j in range(width):
            i = start + j
            if use_mask and invalid[t, i]:
                continue
            ok = True
            for b in range(n_bands):
                if np.isnan(stack[b, t, i]):
                    ok = False
                    break
            if not ok:
                continue
            c = counts[j]
            for b in range(n_bands):
                tile[j, c, b] = stack[b, t, i]
            index[j, c] = t
            counts[j] = c + 1


@numba.njit(cache=True, nogil=True)
def medoid(stack: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Per pixel, the observation whose summed distance to the pixel's other valid observations is least.

    Parameters
    ----------
    stack
        float ``(B, T, N)``.
    invalid
        Boolean ``(T, N)`` (True: leave out), or shape ``(0, 0)`` for none.

    Returns
    -------
    float32 ``(B, N)``: all bands of the chosen observation (ties: the
    earliest date); NaN where no valid observation exists.
    """
    n_bands, t_len, n = stack.shape
    use_mask = invalid.shape[0] == t_len
    out = np.full((n_bands, n), np.nan, dtype=np.float32)
    tile = np.empty((_TILE, t_len, n_bands), dtype=np.float64)
    index = np.empty((_TILE, t_len), dtype=np.int64)
    counts = np.empty(_TILE, dtype=np.int64)
    total = np.empty(t_len, dtype=np.float64)
    for start in range(0, n, _TILE):
        width = min(_TILE, n - start)
        _gather(stack, invalid, use_mask, start, width, tile, counts, index)
        for j in range(width):
            m = counts[j]
            if m == 0:
                continue
            obs = tile[j]
            total[:m] = 0.0
            for p in range(m):
                for q in range(p + 1, m):
                    acc = 0.0
                    for b in range(n_bands):
                        d = obs[p, b] - obs[q, b]
                        acc += d * d
                    dist = np.sqrt(acc)
                    total[p] += dist
                    total[q] += dist
            best = 0
            for p in range(1, m):
                if total[p] < total[best]:
                    best = p
            t = index[j, best]
            for b in range(n_bands):
                out[b, start + j] = stack[b, t, start + j]
    return out


@numba.njit(cache=True, nogil=True)
def _vertex_optimal(obs, m, p, tiny, resid):
    """Whether observation ``p`` is the geometric median of ``obs[:m]``.

    The optimality condition at a data point (Vardi & Zhang 2000, from
    Kuhn 1973): the summed unit vectors from it towards the other
    observations have a norm no larger than its multiplicity.
    """
    n_bands = obs.shape[1]
    resid[:] = 0.0
    eta = 0.0
    for q in range(m):
        acc = 0.0
        for b in range(n_bands):
            d = obs[q, b] - obs[p, b]
            acc += d * d
        dist = np.sqrt(acc)
        if dist <= tiny:
            eta += 1.0
            continue
        for b in range(n_bands):
            resid[b] += (obs[q, b] - obs[p, b]) / dist
    r = 0.0
    for b in range(n_bands):
        r += resid[b] * resid[b]
    return np.sqrt(r) <= eta


@numba.njit(cache=True, nogil=True)
def _weiszfeld(obs, m, x, tol, max_iter, num, resid):
    """Geometric median of ``obs[:m]`` into ``x`` (which holds the start); returns the iterations used.

    Weiszfeld's iteration with the Vardi-Zhang (2000) modification: where the
    estimate coincides with observations (multiplicity ``eta``), the plain
    step would divide by zero; the modified step is
    ``(1 - eta / r)+ * T(x) + min(1, eta / r) * x`` with ``r`` the norm of the
    summed unit vectors towards the other observations, so the estimate stays
    put exactly when it is the minimiser. Weiszfeld approaches a minimiser
    that is a data point only slowly, so every 8 iterations, and at the end,
    the observation nearest to the estimate is tested with the optimality
    condition and taken when it passes.
    """
    n_bands = x.shape[0]
    scale = 0.0
    for b in range(n_bands):
        scale = max(scale, abs(x[b]))
    tiny = 1e-12 * (1.0 + scale)  # distances below this count as "at an observation"
    used = max_iter
    for it in range(max_iter):
        num[:] = 0.0
        resid[:] = 0.0
        den = 0.0
        eta = 0.0
        nearest, best = 0, np.inf
        for p in range(m):
            acc = 0.0
            for b in range(n_bands):
                d = obs[p, b] - x[b]
                acc += d * d
            dist = np.sqrt(acc)
            if dist < best:
                nearest, best = p, dist
            if dist <= tiny:
                eta += 1.0
                continue
            w = 1.0 / dist
            den += w
            for b in range(n_bands):
                num[b] += w * obs[p, b]
                resid[b] += w * (obs[p, b] - x[b])
        if den == 0.0:  # every observation sits at x
            return it
        keep = 0.0  # weight of the current estimate in the update (Vardi-Zhang)
        if eta > 0.0:
            r = 0.0
            for b in range(n_bands):
                r += resid[b] * resid[b]
            r = np.sqrt(r)
            if r <= eta:  # x is the geometric median
                return it
            keep = eta / r
        elif it % 8 == 7 and _vertex_optimal(obs, m, nearest, tiny, resid):
            x[:] = obs[nearest]
            return it
        step = 0.0
        for b in range(n_bands):
            new = (1.0 - keep) * (num[b] / den) + keep * x[b]
            d = new - x[b]
            step += d * d
            x[b] = new
        if np.sqrt(step) < tol:
            used = it + 1
            break
    # the estimate may have stopped short of a data point that is the minimiser
    nearest, best = 0, np.inf
    for p in range(m):
        acc = 0.0
        for b in range(n_bands):
            d = obs[p, b] - x[b]
            acc += d * d
        if acc < best:
            nearest, best = p, acc
    if _vertex_optimal(obs, m, nearest, tiny, resid):
        x[:] = obs[nearest]
    return used


@numba.njit(cache=True, nogil=True)
def geomedian(stack: np.ndarray, invalid: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """Per pixel, the geometric median of the valid spectra: the point minimising the summed distances to them.

    Parameters
    ----------
    stack
        float ``(B, T, N)``.
    invalid
        Boolean ``(T, N)`` (True: leave out), or shape ``(0, 0)`` for none.
    tol
        Stop when an iteration moves the estimate by less than this (Euclidean
        distance, in the data's units).
    max_iter
        At most this many iterations per pixel.

    Returns
    -------
    float32 ``(B, N)``; NaN where no valid observation exists. Iterations
    start from the band-wise mean and run in float64 (see :func:`_weiszfeld`).
    """
    n_bands, t_len, n = stack.shape
    use_mask = invalid.shape[0] == t_len
    out = np.full((n_bands, n), np.nan, dtype=np.float32)
    tile = np.empty((_TILE, t_len, n_bands), dtype=np.float64)
    index = np.empty((_TILE, t_len), dtype=np.int64)
    counts = np.empty(_TILE, dtype=np.int64)
    x = np.empty(n_bands, dtype=np.float64)
    num = np.empty(n_bands, dtype=np.float64)
    resid = np.empty(n_bands, dtype=np.float64)
    for start in range(0, n, _TILE):
        width = min(_TILE, n - start)
        _gather(stack, invalid, use_mask, start, width, tile, counts, index)
        for j in range(width):
            m = counts[j]
            if m == 0:
                continue
            obs = tile[j]
            x[:] = 0.0
            for p in range(m):
                for b in range(n_bands):
                    x[b] += obs[p, b]
            for b in range(n_bands):
                x[b] /= m
            if m > 2:  # one point: itself; two: any point between them, the mean included
                _weiszfeld(obs, m, x, tol, max_iter, num, resid)
            for b in range(n_bands):
                out[b, start + j] = x[b]
    return out
