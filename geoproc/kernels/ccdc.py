"""CCDC (Zhu & Woodcock 2014) per pixel, step for step as lcmap-pyccd 2021.7.19 computes it.

One pixel's series is cut into segments, each a harmonic model fitted by
Lasso (scikit-learn's coordinate descent, ``alpha`` 1 on pyccd's integer
units), with a break where ``peek`` consecutive observations all exceed the
chi-square threshold on the joint, RMSE-normalised residuals of the detection
bands. The steps, names and quirks are pyccd's (``ccd/procedures.py``):

* **filter**: clear (not masked, not fill, not snow) observations whose
  optical bands lie in (0, 10000) and thermal in (-93.2, 70.7) C; one per day.
* **procedure**: fewer than ``clear_pct`` clear of the non-fill observations
  -> one 4-coefficient model over all of them (snow procedure, curve QA 54,
  if snow is at least ``snow_pct`` of clear + snow; else curve QA 44).
* **statistics**: the variogram (median absolute difference of observations
  more than 30 days apart) and the peek size ``max(6, round(6 * 16 / median
  gap))``, the change threshold adjusted to it, from the observations up to
  ``stat_end`` (pyccd: 2018-01-01).
* **initialise**: a window of ``meow`` observations spanning a year, Tmask
  (a robust 5-term regression on green and swir1 removing observations
  further than ``4.89 x`` variogram), then the stability test on a
  4-coefficient fit (slope over the window plus first and last residual,
  normalised, squared and summed, below the change threshold); unstable ->
  shift the window one observation.
* **lookback** over the observations skipped since the last break, **catch**
  a 4-coefficient model on a gap longer than ``peek`` at the start, then
  **lookforward**: grow the window one observation at a time, refit (4, 6 or
  8 coefficients for < 18, < 24, >= 24 observations) while under 24
  observations or when the span grew by a third, compare the next ``peek``
  observations (RMSE from the 24 fitted residuals closest in day of year
  once past 24), break when all exceed the threshold, drop the first as an
  outlier when it alone exceeds the outlier threshold.
* a last **catch** after the final break.

Inputs are time-first: ``values (T, B, N)`` in the stored units with
per-band ``scale``/``offset`` to pyccd's units (reflectance x 10000, thermal
in degrees Celsius x 100), ``flags (T, N)`` (0 usable, 1 masked, 2 snow),
``days (T,)`` proleptic Gregorian ordinals, increasing. The output is one
float32 column per pixel; see :func:`ccdc` for its rows.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["ccdc", "segment_rows", "N_COEF", "SEG_HEAD", "PROC_NONE", "PROC_STANDARD", "PROC_INSUFFICIENT_CLEAR",
           "PROC_SNOW", "CURVE_START", "CURVE_END", "CURVE_INSUFFICIENT_CLEAR", "CURVE_SNOW"]

#: Coefficients per band: intercept, slope (per day), cos/sin of 1, 2 and 3 cycles per year.
N_COEF = 8
#: Leading rows of a segment: start, end, break (ordinal days), observations, change probability, curve QA.
SEG_HEAD = 6
#: Procedure codes (row 1).
PROC_NONE, PROC_STANDARD, PROC_INSUFFICIENT_CLEAR, PROC_SNOW = 0, 1, 2, 3
#: pyccd's curve QA of catch-all models (other segments carry their number of coefficients, 4, 6 or 8).
CURVE_START, CURVE_END, CURVE_INSUFFICIENT_CLEAR, CURVE_SNOW = 14, 24, 44, 54

_AVG_DAYS_YR = 365.2425
_W = 2.0 * math.pi / _AVG_DAYS_YR
_EPS = np.finfo(np.float64).eps
_LASSO_TOL = 1e-4
_LASSO_ITER = 1000


def segment_rows(n_bands: int) -> int:
    """Rows of one segment: the head and, per band, 8 coefficients, RMSE and magnitude."""
    return SEG_HEAD + n_bands * (N_COEF + 2)


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


# --- the procedure ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _remove(pt, ps, ph, n, k):
    """Drop observation ``k`` of the ``n`` kept (pyccd's update_processing_mask)."""
    for i in range(k, n - 1):
        pt[i] = pt[i + 1]
        ps[:, i] = ps[:, i + 1]
        ph[i] = ph[i + 1]
    return n - 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fit(ph, ps, s, e, ncoef, alpha, bsel, coef, resid, rmse):
    _lasso_fit(ph[s:e], ps[:, s:e], bsel, ncoef, alpha, coef, resid, rmse)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _magnitudes(ph, ps, idx, coef, vario, comp_rmse, detect, absres):
    """Joint change magnitude of observations ``idx``: sum over detection bands of (|residual| / max(vario, rmse))^2."""
    m = idx.shape[0]
    mag = np.zeros(m)
    for b in detect:
        for i in range(m):
            absres[b, i] = abs(ps[b, idx[i]] - _predict(coef[b], ph[idx[i]]))
    for d in range(detect.shape[0]):
        b = detect[d]
        den = max(vario[b], comp_rmse[d])
        for i in range(m):
            q = absres[b, i] / den
            mag[i] += q * q
    return mag


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _store(out, seg, nb, start, end, brk, nobs, prob, qa, coef, rmse, mags, scale, offset):
    """Write one segment in the stored units (coefficients, RMSE and magnitudes divided back by ``scale``)."""
    out[0] = start
    out[1] = end
    out[2] = brk
    out[3] = nobs
    out[4] = prob
    out[5] = qa
    for b in range(nb):
        base = SEG_HEAD + b * (N_COEF + 2)
        out[base] = (coef[b, 0] - offset[b]) / scale[b]
        for c in range(1, N_COEF):
            out[base + c] = coef[b, c] / scale[b]
        out[base + N_COEF] = rmse[b] / scale[b]
        out[base + N_COEF + 1] = mags[b] / scale[b]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pixel(days, obs, flags, thermal, detect, tmask_bands, chg_table, outlier_thresh, stat_end, meow, defpeek,
           day_delta, t_const, alpha, clear_pct, snow_pct, scale, offset, segs):
    """One pixel: ``obs (B, T)`` in pyccd units -> segments written to ``segs (S, rows)``; (count, procedure)."""
    nb, t_len = obs.shape
    max_seg = segs.shape[0]
    # quality: 0 fill, 1 clear, 2 masked, 3 snow; and pyccd's standard filter
    keep = np.zeros(t_len, np.bool_)
    n_clear = 0
    n_snow = 0
    n_total = 0
    snow_keep = np.zeros(t_len, np.bool_)
    last_day = -1.0
    last_snow_day = -1.0
    for i in range(t_len):
        fill = False
        ok = True
        for b in range(nb):
            v = obs[b, i]
            if np.isnan(v):
                fill = True
            elif b == thermal:
                if not (-9320.0 < v < 7070.0):
                    ok = False
            elif not (0.0 < v < 10000.0):
                ok = False
        q = 2 if flags[i] == 1 else (0 if fill else (3 if flags[i] == 2 else 1))
        in_stat = days[i] <= stat_end
        if in_stat and q != 0:
            n_total += 1
            if q == 1:
                n_clear += 1
            elif q == 3:
                n_snow += 1
        if q == 1 and ok and days[i] != last_day:
            keep[i] = True
            last_day = days[i]
        if ((q == 1 and ok) or q == 3) and days[i] != last_snow_day:
            snow_keep[i] = True
            last_snow_day = days[i]
    zero_mag = np.zeros(nb)
    coef = np.zeros((nb, N_COEF))
    rmse = np.zeros(nb)
    enough_clear = n_total > 0 and n_clear / n_total >= clear_pct
    if not enough_clear:
        snowy = n_snow / (n_clear + n_snow + 0.01) >= snow_pct
        sel = snow_keep if snowy else keep
        n = 0
        for i in range(t_len):
            if sel[i]:
                n += 1
        if n < meow:
            return 0, PROC_SNOW if snowy else PROC_INSUFFICIENT_CLEAR
        pt = np.empty(n)
        ps = np.empty((nb, n))
        k = 0
        for i in range(t_len):
            if sel[i]:
                pt[k] = days[i]
                ps[:, k] = obs[:, i]
                k += 1
        resid = np.empty((nb, n))
        ph = _design7(pt, n)
        _fit(ph, ps, 0, n, 4, alpha, np.arange(nb), coef, resid, rmse)
        _store(segs[0], 0, nb, days[0], days[t_len - 1], days[t_len - 1], n, 0.0,
               CURVE_SNOW if snowy else CURVE_INSUFFICIENT_CLEAR, coef, rmse, zero_mag, scale, offset)
        return 1, PROC_SNOW if snowy else PROC_INSUFFICIENT_CLEAR

    n = 0
    for i in range(t_len):
        if keep[i]:
            n += 1
    pt = np.empty(n)
    ps = np.empty((nb, n))
    k = 0
    n_stat = 0
    for i in range(t_len):
        if keep[i]:
            pt[k] = days[i]
            ps[:, k] = obs[:, i]
            if days[i] <= stat_end:
                n_stat += 1
            k += 1
    if n <= meow:
        return 0, PROC_STANDARD
    ph = _design7(pt, n)
    # statistics over the kept observations up to stat_end (they come first: the days increase)
    peek = defpeek
    if n_stat >= 2:
        delta = _median(pt[1:n_stat] - pt[: n_stat - 1]) + 0.001
        adj = int(_round_half_even(defpeek * 16.0 / delta))
        if adj > defpeek:
            peek = adj
    change_thresh = chg_table[min(peek, chg_table.shape[0] - 1)]
    vario = _variogram(pt[:n_stat], ps[:, :n_stat])
    for b in range(nb):
        if np.isnan(vario[b]):
            return 0, PROC_STANDARD
    nd = detect.shape[0]
    allb = np.arange(nb)
    is_det = np.zeros(nb, np.bool_)
    for d in range(nd):
        is_det[detect[d]] = True
    others = np.empty(nb - nd, np.int64)
    k = 0
    for b in range(nb):
        if not is_det[b]:
            others[k] = b
            k += 1
    win_ps = np.empty((nb, peek))
    win_ph = np.empty((peek, 7))
    ncoef_fit = 4
    resid = np.empty((nb, n))
    comp_rmse = np.empty(nd)
    absres = np.empty((nb, max(peek, n)))
    count = 0
    ms, me = 0, meow  # model window [ms, me)
    prev_end = 0
    start = True
    while me <= n - meow:
        if count > 0:
            start = False
        # --- initialise
        stable_found = False
        while me + meow < n:
            if pt[me - 1] - pt[ms] < day_delta:
                me += 1
                continue
            sub = np.empty((tmask_bands.shape[0], me - ms))
            for j in range(tmask_bands.shape[0]):
                sub[j] = ps[tmask_bands[j], ms:me]
            tv = np.empty(tmask_bands.shape[0])
            for j in range(tmask_bands.shape[0]):
                tv[j] = vario[tmask_bands[j]]
            outl = _tmask(pt[ms:me], sub, tv, t_const)
            n_out = 0
            for i in range(me - ms):
                if outl[i]:
                    n_out += 1
            if n_out == me - ms:
                me += 1
                continue
            first_kept = -1.0
            last_kept = -1.0
            for i in range(me - ms):
                if not outl[i]:
                    if first_kept < 0:
                        first_kept = pt[ms + i]
                    last_kept = pt[ms + i]
            if last_kept - first_kept < day_delta or me - ms - n_out < meow:
                me += 1
                continue
            if n_out > 0:
                for i in range(me - ms - 1, -1, -1):
                    if outl[i]:
                        n = _remove(pt, ps, ph, n, ms + i)
                me -= n_out
            _fit(ph, ps, ms, me, 4, alpha, detect, coef, resid, rmse)
            norm = 0.0
            for d in range(nd):
                b = detect[d]
                den = max(vario[b], rmse[b])
                slope = coef[b, 1] * (pt[me - 1] - pt[ms])
                cv = (abs(slope) + abs(resid[b, 0]) + abs(resid[b, me - ms - 1])) / den
                norm += cv * cv
            if norm < change_thresh:
                stable_found = True
                break
            ms += 1
            me += 1
        if not stable_found:
            break
        # --- lookback
        if ms > prev_end:
            for d in range(nd):
                comp_rmse[d] = rmse[detect[d]]
            while ms > prev_end:
                if ms - prev_end > peek:
                    lo = ms - peek + 1  # pyccd's slice(start - 1, start - peek, -1): peek - 1 observations
                elif ms - peek <= 0:
                    lo = 0
                else:
                    lo = prev_end
                m = ms - lo
                idx = np.empty(m, np.int64)
                for i in range(m):
                    idx[i] = ms - 1 - i
                mag = _magnitudes(ph, ps, idx, coef, vario, comp_rmse, detect, absres)
                if mag.min() > change_thresh:
                    break
                if mag[0] > outlier_thresh:
                    n = _remove(pt, ps, ph, n, ms - 1)
                    ms -= 1
                    me -= 1
                    continue
                ms -= 1
        # --- catch at the start
        if ms - prev_end > peek and start:
            if count < max_seg:
                _fit(ph, ps, prev_end, ms, 4, alpha, allb, coef, resid, rmse)
                brk = pt[ms] if ms < n else pt[n - 1]
                _store(segs[count], count, nb, pt[prev_end], pt[ms - 1], brk, ms - prev_end, 0.0, CURVE_START, coef,
                       rmse, zero_mag, scale, offset)
            count += 1
            start = False
        if me + peek > n:
            break
        # --- lookforward
        fs, fe = ms, me
        fitted = False
        phase = np.empty(0)
        order = np.empty(0, np.int64)
        change = 0.0
        ncoef = 4
        pstart = me
        mags = np.zeros(nb)
        while me + peek <= n:
            length = me - ms
            ncoef = 4 if length / 3.0 < 6 else (6 if length / 3.0 < 8 else 8)
            pstart = me
            model_span = pt[me - 1] - pt[ms]
            if not fitted or length < 24 or model_span >= 1.33 * (pt[fe - 1] - pt[fs]):
                fs, fe = ms, me
                ncoef_fit = ncoef
                _fit(ph, ps, fs, fe, ncoef, alpha, detect, coef, resid, rmse)
                fitted = True
                phase = np.empty(fe - fs)
                for i in range(fe - fs):
                    phase[i] = pt[fs + i] % 365.25
                order = np.argsort(phase)
                phase = phase[order]
            if length <= 24:
                for d in range(nd):
                    comp_rmse[d] = rmse[detect[d]]
            else:
                closest = _closest_doy(pt, fs, fe, pt[me + peek - 1], phase, order)
                for d in range(nd):
                    b = detect[d]
                    s = 0.0
                    for c in closest:
                        s += resid[b, c] ** 2
                    comp_rmse[d] = math.sqrt(s) / 4.0
            idx = np.arange(me, me + peek)
            mag = _magnitudes(ph, ps, idx, coef, vario, comp_rmse, detect, absres)
            win_ps[:, :] = ps[:, me : me + peek]  # this window's observations, for the other bands' magnitudes
            win_ph[:, :] = ph[me : me + peek]
            if mag.min() > change_thresh:
                change = 1.0
                break
            if mag[0] > outlier_thresh:
                n = _remove(pt, ps, ph, n, me)
                continue
            if me + peek > n:
                break
            me += 1
        # the bands outside the change test enter only the reported model: fitted once, on the last fit window
        if others.shape[0] > 0:
            _fit(ph, ps, fs, fe, ncoef_fit, alpha, others, coef, resid, rmse)
            for b in others:
                for i in range(peek):
                    absres[b, i] = abs(win_ps[b, i] - _predict(coef[b], win_ph[i]))
        for b in range(nb):  # pyccd's magnitudes: median |residual| of the last peek window compared
            mags[b] = _median(absres[b, :peek].copy())
        if count < max_seg:
            _store(segs[count], count, nb, pt[ms], pt[me - 1], pt[pstart], me - ms, change, ncoef, coef, rmse, mags,
                   scale, offset)
        count += 1
        prev_end = me
        ms, me = me, me + meow
    # --- catch at the end
    if prev_end + peek < n:
        if count < max_seg:
            _fit(ph, ps, prev_end, n, 4, alpha, allb, coef, resid, rmse)
            _store(segs[count], count, nb, pt[prev_end], pt[n - 1], pt[n - 1], n - prev_end, 0.0, CURVE_END, coef, rmse,
                   zero_mag, scale, offset)
        count += 1
    return count, PROC_STANDARD


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ccdc(values, flags, days, scale, offset, thermal, detect, tmask_bands, chg_table, outlier_thresh, stat_end,
         meow, peek, day_delta, t_const, alpha, clear_pct, snow_pct, max_segments):
    """CCDC segments of every pixel of ``values (T, B, N)``: float32 ``(2 + S * segment_rows(B), N)``.

    Rows: the number of segments found (may exceed ``S``; only the first ``S`` are kept), the procedure code,
    then per segment ``start, end, break`` (ordinal days), observations, change probability (pyccd: 1 for a
    confirmed break, 0 otherwise), curve QA, and per band the 8 coefficients, RMSE and change magnitude, in the
    stored units (``stored = (pyccd - offset) / scale``; NaN for absent segments). ``flags (T, N)`` is 0 for a
    usable observation, 1 masked, 2 snow; ``thermal`` the band index of thermal (-1 without);
    ``chg_table[peek]`` the change threshold for each peek size.
    """
    t_len, nb, npix = values.shape
    rows = SEG_HEAD + nb * (N_COEF + 2)
    out = np.full((2 + max_segments * rows, npix), np.nan, np.float32)
    obs = np.empty((nb, t_len))
    segs = np.empty((max_segments, rows))
    use_flags = flags.shape[0] == t_len
    fl = np.zeros(t_len, np.uint8)
    for j in range(npix):
        for i in range(t_len):
            for b in range(nb):
                obs[b, i] = values[i, b, j] * scale[b] + offset[b]
            if use_flags:
                fl[i] = flags[i, j]
        segs[:] = np.nan
        count, proc = _pixel(days, obs, fl, thermal, detect, tmask_bands, chg_table, outlier_thresh, stat_end, meow,
                             peek, day_delta, t_const, alpha, clear_pct, snow_pct, scale, offset, segs)
        out[0, j] = count
        out[1, j] = proc
        for s in range(min(count, max_segments)):
            for r in range(rows):
                out[2 + s * rows + r, j] = segs[s, r]
    return out
