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

from ._ccdc_numerics import (  # noqa: F401 (the tests reach the numerics through this module)
    _round_half_even,
    _median,
    _argsort_np123,
    _closest24,
    _d_yr,
    _closest_doy,
    _cholesky_solve,
    _design7,
    _lasso_fit,
    _predict,
    _mad,
    _wls,
    _tmask,
    _variogram,
)

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

def segment_rows(n_bands: int) -> int:
    """Rows of one segment: the head and, per band, 8 coefficients, RMSE and magnitude."""
    return SEG_HEAD + n_bands * (N_COEF + 2)


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
