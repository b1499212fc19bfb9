"""The numerics of the CCDC kernel (:mod:`geoproc.kernels.ccdc`), each as lcmap-pyccd 2021.7.19 computes it.

scikit-learn's Lasso coordinate descent (``sklearn.linear_model.Lasso``, ``cd_fast``), pyccd's robust
regression for Tmask (``ccd/models/robust_fit.py``: bisquare IRLS, its MAD and its convergence test), its
adjusted variogram (``ccd/math_utils.py``), numpy's medians and numpy 1.23's introsort argsort (whose order of
ties decides which 24 residuals pyccd's ``find_closest_doy`` takes). numpy and numba only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_AVG_DAYS_YR = 365.2425
_W = 2.0 * math.pi / _AVG_DAYS_YR
_EPS = np.finfo(np.float64).eps
_LASSO_TOL = 1e-4
_LASSO_ITER = 1000


# --- small numerics ---------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _round_half_even(x):
    r = math.floor(x)
    d = x - r
    if d > 0.5 or (d == 0.5 and r % 2.0 != 0.0):
        r += 1.0
    return r


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _median(a):
    n = a.shape[0]
    if n == 0:
        return np.nan
    s = np.sort(a)
    h = n // 2
    if n % 2:
        return s[h]
    return (s[h - 1] + s[h]) / 2.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _argsort_np123(v):
    """numpy's introsort argsort (``kind='quicksort'``, numpy <= 1.24) exactly, ties in its order."""
    num = v.shape[0]
    tosort = np.arange(num)
    if num < 2:
        return tosort
    stack = np.empty(256, np.int64)
    depth = np.empty(128, np.int64)
    sp, dp, pl, pr = 0, 0, 0, num - 1
    msb, m = 0, num
    while m > 1:
        m >>= 1
        msb += 1
    cdepth = msb * 2
    while True:
        if cdepth < 0:  # numpy falls back to heapsort here (deeper than 2 log2 n): never for these sizes
            sub = tosort[pl : pr + 1].copy()
            tosort[pl : pr + 1] = sub[np.argsort(v[sub], kind="mergesort")]
        else:
            while pr - pl > 15:  # numpy's SMALL_QUICKSORT
                pm = pl + ((pr - pl) >> 1)
                if v[tosort[pm]] < v[tosort[pl]]:
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                if v[tosort[pr]] < v[tosort[pm]]:
                    tosort[pr], tosort[pm] = tosort[pm], tosort[pr]
                if v[tosort[pm]] < v[tosort[pl]]:
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                vp = v[tosort[pm]]
                pi, pj = pl, pr - 1
                tosort[pm], tosort[pj] = tosort[pj], tosort[pm]
                while True:
                    pi += 1
                    while v[tosort[pi]] < vp:
                        pi += 1
                    pj -= 1
                    while vp < v[tosort[pj]]:
                        pj -= 1
                    if pi >= pj:
                        break
                    tosort[pi], tosort[pj] = tosort[pj], tosort[pi]
                pk = pr - 1
                tosort[pi], tosort[pk] = tosort[pk], tosort[pi]
                if pi - pl < pr - pi:
                    stack[sp], stack[sp + 1] = pi + 1, pr
                    pr = pi - 1
                else:
                    stack[sp], stack[sp + 1] = pl, pi - 1
                    pl = pi + 1
                sp += 2
                cdepth -= 1
                depth[dp] = cdepth
                dp += 1
            for pi in range(pl + 1, pr + 1):
                vi = tosort[pi]
                vpv = v[vi]
                pj = pi
                while pj > pl and vpv < v[tosort[pj - 1]]:
                    tosort[pj] = tosort[pj - 1]
                    pj -= 1
                tosort[pj] = vi
        if sp == 0:
            break
        sp -= 2
        pl, pr = stack[sp], stack[sp + 1]
        dp -= 1
        cdepth = depth[dp]
    return tosort


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _closest24(d):
    """The first 24 of ``argsort(d)`` as a set (what pyccd sums over): a bounded selection, and numpy's full
    introsort only when the 24th and 25th smallest tie (then which of them is taken depends on its order)."""
    n = d.shape[0]
    if n <= 24:
        return _argsort_np123(d)[:24]
    k = 25
    val = np.empty(k)
    pos = np.empty(k, np.int64)
    m = 0
    for i in range(n):
        v = d[i]
        if m == k and v >= val[k - 1]:
            continue
        j = m if m < k else k - 1
        while j > 0 and val[j - 1] > v:
            if j < k:
                val[j] = val[j - 1]
                pos[j] = pos[j - 1]
            j -= 1
        val[j] = v
        pos[j] = i
        if m < k:
            m += 1
    if val[23] == val[24]:
        return _argsort_np123(d)[:24]
    return pos[:24].copy()


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _d_yr(d_rt):
    """pyccd's find_closest_doy distance: ``|round(d / 365.25) * 365.25 - d|``."""
    return abs(_round_half_even(d_rt / 365.25) * 365.25 - d_rt)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _closest_doy(pt, fs, fe, ref, phase, order):
    """pyccd's ``find_closest_doy(period, ref, fit_window, 24)`` as a set of window offsets.

    The 24 closest in day of year lie on an arc around ``ref``'s phase: ``phase``/``order`` hold the fit
    window's phases (day mod 365.25) sorted, so ~30 candidates are taken from the arc and their exact
    distances compared; when the choice is not clear-cut (a tie at the 24th, or a candidate too close to the
    arc's edge) every distance is computed and numpy's sort decides, as in pyccd.
    """
    m = fe - fs
    k = 30
    if m > k:
        pr = ref % 365.25
        lo = 0
        hi = m
        while lo < hi:
            mid = (lo + hi) // 2
            if phase[mid] < pr:
                lo = mid + 1
            else:
                hi = mid
        left = lo - 1
        right = lo
        cand = np.empty(k, np.int64)
        for c in range(k):
            dl = abs(phase[left % m] - pr)
            dl = min(dl, 365.25 - dl)
            dr = abs(phase[right % m] - pr)
            dr = min(dr, 365.25 - dr)
            if dl <= dr:
                cand[c] = order[left % m]
                left -= 1
            else:
                cand[c] = order[right % m]
                right += 1
        dl = abs(phase[left % m] - pr)
        dr = abs(phase[right % m] - pr)
        bound = min(min(dl, 365.25 - dl), min(dr, 365.25 - dr))
        dc = np.empty(k)
        for c in range(k):
            dc[c] = _d_yr(pt[fs + cand[c]] - ref)
        srt = np.argsort(dc)
        if dc[srt[23]] < dc[srt[24]] and dc[srt[23]] < bound - 1e-6:
            out = np.empty(24, np.int64)
            for c in range(24):
                out[c] = cand[srt[c]]
            return out
    d_yr = np.empty(m)
    for i in range(m):
        d_yr[i] = _d_yr(pt[fs + i] - ref)
    return _closest24(d_yr)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cholesky_solve(a, b, p):
    """Solve ``a x = b`` (``p x p`` symmetric positive definite) in place of a copy; False if not definite."""
    low = np.zeros((p, p))
    for i in range(p):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            if i == j:
                if s <= 1e-12 * max(abs(a[i, i]), 1e-300):
                    return b * np.nan, low, False
                low[i, i] = math.sqrt(s)
            else:
                low[i, j] = s / low[j, j]
    z = np.empty(p)
    for i in range(p):
        s = b[i]
        for k in range(i):
            s -= low[i, k] * z[k]
        z[i] = s / low[i, i]
    x = np.empty(p)
    for i in range(p - 1, -1, -1):
        s = z[i]
        for k in range(i + 1, p):
            s -= low[k, i] * x[k]
        x[i] = s / low[i, i]
    return x, low, True


# --- the regressions --------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _design7(t, n):
    """pyccd's ``coefficient_matrix`` with all 7 columns: t, cos/sin of 1, 2, 3 cycles per year."""
    x = np.empty((n, 7))
    for i in range(n):
        w12 = _W * t[i]
        w34 = 2.0 * w12
        w56 = 3.0 * w12
        x[i, 0] = t[i]
        x[i, 1] = math.cos(w12)
        x[i, 2] = math.sin(w12)
        x[i, 3] = math.cos(w34)
        x[i, 4] = math.sin(w34)
        x[i, 5] = math.cos(w56)
        x[i, 6] = math.sin(w56)
    return x


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lasso_fit(x7, ys, bsel, ncoef, alpha, coef, resid, rmse):
    """sklearn ``Lasso(alpha).fit`` (cyclic coordinate descent, duality-gap stop) on ``ncoef - 1`` columns, per band.

    The iterates are sklearn's (``cd_fast.enet_coordinate_descent``: same order, same updates, same stopping
    test), computed from the Gram matrix of the centred columns instead of an explicit residual vector (the
    same numbers up to rounding, in O(p^2) per sweep instead of O(n p)). Fits bands ``bsel`` of ``ys (B, n)``;
    writes their rows of ``coef (B, 8)`` (intercept first), ``resid (B, n)`` and ``rmse (B,)`` =
    ``sqrt(RSS / (n - ncoef))`` as pyccd's ``calc_rmse``.
    """
    n = x7.shape[0]
    nf = ncoef - 1
    xoff = np.zeros(nf)
    for i in range(n):
        for f in range(nf):
            xoff[f] += x7[i, f]
    for f in range(nf):
        xoff[f] /= n
    gram = np.zeros((nf, nf))
    for i in range(n):
        for f in range(nf):
            a = x7[i, f] - xoff[f]
            for k in range(f + 1):
                gram[f, k] += a * (x7[i, k] - xoff[k])
    for f in range(nf):
        for k in range(f):
            gram[k, f] = gram[f, k]
    l1 = alpha * n
    w = np.empty(nf)
    xty = np.empty(nf)
    for b in bsel:
        ymean = 0.0
        for i in range(n):
            ymean += ys[b, i]
        ymean /= n
        yy = 0.0
        xty[:] = 0.0
        for i in range(n):
            yc = ys[b, i] - ymean
            yy += yc * yc
            for f in range(nf):
                xty[f] += (x7[i, f] - xoff[f]) * yc
        tol = _LASSO_TOL * yy
        w[:] = 0.0
        for it in range(_LASSO_ITER):
            w_max = 0.0
            d_w_max = 0.0
            for f in range(nf):
                if gram[f, f] == 0.0:
                    continue
                w_old = w[f]
                tmp = xty[f] + gram[f, f] * w_old
                for k in range(nf):
                    tmp -= gram[f, k] * w[k]
                a = abs(tmp) - l1
                w[f] = (math.copysign(a, tmp) if a > 0.0 else 0.0) / gram[f, f]
                d = abs(w[f] - w_old)
                if d > d_w_max:
                    d_w_max = d
                if abs(w[f]) > w_max:
                    w_max = abs(w[f])
            if w_max == 0.0 or d_w_max / w_max < _LASSO_TOL or it == _LASSO_ITER - 1:
                dual = 0.0
                wxty = 0.0
                wgw = 0.0
                for f in range(nf):
                    s = xty[f]
                    gw = 0.0
                    for k in range(nf):
                        gw += gram[f, k] * w[k]
                    s -= gw
                    if abs(s) > dual:
                        dual = abs(s)
                    wxty += w[f] * xty[f]
                    wgw += w[f] * gw
                r2 = yy - 2.0 * wxty + wgw
                ry = yy - wxty
                if dual > l1:
                    const = l1 / dual
                    gap = 0.5 * (r2 + r2 * const * const)
                else:
                    const = 1.0
                    gap = r2
                l1w = 0.0
                for f in range(nf):
                    l1w += abs(w[f])
                gap += l1 * l1w - const * ry
                if gap < tol:
                    break
        icpt = ymean
        for f in range(nf):
            icpt -= xoff[f] * w[f]
        coef[b, :] = 0.0
        coef[b, 0] = icpt
        for f in range(nf):
            coef[b, 1 + f] = w[f]
        rss = 0.0
        for i in range(n):
            pred = icpt
            for f in range(nf):
                pred += x7[i, f] * w[f]
            e = ys[b, i] - pred
            resid[b, i] = e
            rss += e * e
        rmse[b] = math.sqrt(rss / (n - ncoef))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _predict(coef, row):
    """The model at one observation from its design row (t, cos, sin, ...)."""
    s = coef[0]
    for f in range(7):
        s += coef[1 + f] * row[f]
    return s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mad(x):
    """pyccd's robust_fit.mad: the median of the sorted absolute values after the smallest four, over 0.6745."""
    a = np.sort(np.abs(x))
    return _median(a[4:]) / 0.6745


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _wls(x, y, w, p):
    n = x.shape[0]
    a = np.zeros((p, p))
    rhs = np.zeros(p)
    for i in range(n):
        for j in range(p):
            xw = x[i, j] * w[i]
            rhs[j] += xw * y[i]
            for k in range(j + 1):
                a[j, k] += xw * x[i, k]
    for j in range(p):
        for k in range(j):
            a[k, j] = a[j, k]
    beta, low, ok = _cholesky_solve(a, rhs, p)
    return beta, low, ok


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _tmask(t, ys, vario, t_const):
    """pyccd's Tmask: per band, 5 iterations of bisquare IRLS (``robust_fit.RLM(maxiter=5)``); outliers of any band."""
    n = t.shape[0]
    ann = 2.0 * math.pi / _AVG_DAYS_YR
    obs_cycle = ann / math.ceil((t[n - 1] - t[0]) / _AVG_DAYS_YR)
    # columns 2-3 repeat 0-1 when the span is at most a year: the fitted values are those of the 3 distinct columns
    p = 5 if obs_cycle != ann else 3
    x = np.empty((n, p))
    for i in range(n):
        x[i, 0] = math.cos(ann * t[i])
        x[i, 1] = math.sin(ann * t[i])
        if p == 5:
            x[i, 2] = math.cos(obs_cycle * t[i])
            x[i, 3] = math.sin(obs_cycle * t[i])
        x[i, p - 1] = 1.0
    out = np.zeros(n, np.bool_)
    ones = np.ones(n)
    for b in range(ys.shape[0]):
        y = ys[b]
        coef, low, ok = _wls(x, y, ones, p)
        if not ok:
            continue
        resid = np.empty(n)
        for i in range(n):
            s = 0.0
            for j in range(p):
                s += x[i, j] * coef[j]
            resid[i] = y[i] - s
        scale = _mad(resid)
        if scale >= _EPS:
            # leverage h = x (X'X)^-1 x' from the Cholesky factor; adjusted residuals / sqrt(1 - h)
            adj = np.empty(n)
            z = np.empty(p)
            for i in range(n):
                h = 0.0
                for j in range(p):
                    s = x[i, j]
                    for k in range(j):
                        s -= low[j, k] * z[k]
                    z[j] = s / low[j, j]
                    h += z[j] * z[j]
                adj[i] = 1.0 / math.sqrt(1.0 - min(0.9999, h))
            ymean = 0.0
            for i in range(n):
                ymean += y[i]
            ymean /= n
            var = 0.0
            for i in range(n):
                var += (y[i] - ymean) ** 2
            std = math.sqrt(var / n)
            it = 1
            converged = False
            while not converged and it < 5:
                old = coef.copy()
                for i in range(n):
                    s = 0.0
                    for j in range(p):
                        s += x[i, j] * old[j]
                    resid[i] = (y[i] - s) * adj[i]
                scale = max(_EPS * std, _mad(resid))
                wts = np.empty(n)
                for i in range(n):
                    u = resid[i] / scale
                    wts[i] = (1.0 - (u / 4.685) ** 2) ** 2 if abs(u) < 4.685 else 0.0
                coef, low, ok = _wls(x, y, wts, p)
                if not ok:
                    coef = old
                    break
                it += 1
                # pyccd's _check_converge(new, old): not any(fabs(new - old > tol)), i.e. converged as soon as no
                # coefficient grew by more than tol (a decrease of any size passes)
                converged = True
                for j in range(p):
                    if coef[j] - old[j] > 1e-8:
                        converged = False
        for i in range(n):
            s = 0.0
            for j in range(p):
                s += x[i, j] * coef[j]
            if abs(s - y[i]) > vario[b] * t_const:
                out[i] = True
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _variogram(t, obs):
    """pyccd's ``adjusted_variogram``: median |difference| at the first lag whose most common gap exceeds 30 days."""
    nb, n = obs.shape
    vario = np.empty(nb)
    if n < 2:
        vario[:] = np.nan
        return vario
    for b in range(nb):
        vario[b] = _median(np.abs(obs[b, 1:] - obs[b, :-1]))
    for idx in range(n):
        m = n - idx - 1
        if m <= 0:
            break
        lag = t[1 + idx :] - t[: m]
        s = np.sort(lag)
        best, best_count, run = s[0], 1, 1
        for i in range(1, m):
            run = run + 1 if s[i] == s[i - 1] else 1
            if run > best_count:
                best, best_count = s[i], run
        if best > 30.0:
            keep = lag > 30.0
            for b in range(nb):
                d = np.abs(obs[b, 1 + idx :] - obs[b, : m])
                vario[b] = _median(d[keep])
            break
    return vario
