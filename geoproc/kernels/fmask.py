"""Fmask 4's scene-wide cloud probability and object-matched cloud shadows (kernels).

Sources, cited in the code by short name:

* **Z12**: Zhu & Woodcock (2012), "Object-based cloud and cloud shadow
  detection in Landsat imagery", RSE 118, 83-94: the potential cloud pixel
  tests, the clear-sky water and land probabilities, the dynamic land
  threshold (82.5th percentile of clear-land probability plus a constant),
  the cold-cloud and high-probability rules, and the shadow object matching
  (similarity of the projected cloud with the potential shadow layer).
* **Z15**: Zhu, Wang & Woodcock (2015), "Improvement and expansion of the
  Fmask algorithm", RSE 159, 269-277: the cirrus probability (cirrus / 0.04)
  added to both probabilities.
* **Q19**: Qiu, Zhu & He (2019), "Fmask 4.0: Improved cloud and cloud shadow
  detection in Landsats 4-8 and Sentinel-2 imagery", RSE 231, 111205: the
  HOT brightness probability that replaces the temperature probability where
  there is no thermal band (its percentiles widened by 0.04), NDBI in the
  variability, the dynamic water threshold, the weighted thin cloud
  probability, the 40,000 clear pixels the statistics need, the urban layer
  (line-enhanced NDBI) and the erosion of potential false positives
  (:mod:`geoproc.kernels.fmask_commission`), where the cloud displacement
  index serves Sentinel-2; the code cited is Fmask 4.x's MATLAB
  (``DetectPotentialCloud.m`` and the files it calls).
* **F18**: Frantz, Hass, Uhl, Stoffels & Hill (2018), "Improvement of the
  Fmask algorithm for Sentinel-2 images: separating clouds from bright
  surfaces based on parallax effects", RSE 215, 471-481: the CDI.

Kernels take decoded float32 reflectance (NaN = missing) as rows of a
``(10, n)`` array in :data:`BAND_ROWS` order; a band that is absent is flagged
in ``present`` and never read. Statistics are integer histograms of values
quantised on fixed grids (:data:`HIST_GRIDS`): their sums over chunks do not
depend on the chunking, so neither do the percentiles read from them.
"""

from __future__ import annotations

import heapq

import numba
import numpy as np

from .fmask_commission import erode_commissions, false_positive_layer, label_objects
from .morphology import dilate_disk, majority
from .spectral_mask import dark_pixels

__all__ = [
    "BAND_ROWS", "HIST_GRIDS", "THRESHOLDS", "PCP", "WATER", "SNOW", "NODATA", "CLOUD", "CONFIDENT", "FALSE_POSITIVE",
    "fmask_histograms", "fmask_cloud_flags", "histogram_percentile", "cloud_displacement_index",
    "fill_depressions", "flood_dark", "label_objects", "match_shadows", "fmask_slice",
]

#: Rows of the band array the kernels take (``endbi``: :func:`~geoproc.kernels.fmask_commission.enhance_line` of NDBI).
BAND_ROWS = ("blue", "green", "red", "nir", "swir16", "swir22", "cirrus", "thermal", "cdi", "endbi")
# flags of fmask_cloud_flags (uint8)
PCP, WATER, SNOW, NODATA, CLOUD, CONFIDENT, FALSE_POSITIVE = 1, 2, 4, 8, 16, 32, 64
# flags of _pixel only
CLEAR_LAND, CLEAR_WATER, URBAN = 256, 512, 1024
#: ``(low, step, bins)`` of the histogram grids: brightness temperature (deg C), HOT (reflectance), probability.
HIST_GRIDS = {"bt": (-100.0, 0.01, 30001), "hot": (-1.0, 1e-4, 20001), "prob": (-2.0, 1e-4, 50001)}
#: The thresholds :func:`fmask_cloud_flags` takes in ``thr``, in order, with their sources.
THRESHOLDS = (
    ("swir22_min", 0.03),  # Z12 basic test
    ("ndsi_max", 0.8),  # Z12 basic test
    ("ndvi_max", 0.8),  # Z12 basic test
    ("whiteness_max", 0.7),  # Z12 whiteness test
    ("hot_offset", 0.08),  # Z12 haze test
    ("nir_swir16_min", 0.75),  # Z12 NIR / SWIR-1.6 test
    ("bt_max", 27.0),  # Z12 basic test, deg C
    ("snow_bt_max", 10.0),  # Q19 (Fmask 4's DetectSnow), deg C
    ("cirrus_norm", 0.04),  # Z15 thin cloud probability: cirrus / 0.04
    ("thin_weight", 0.5),  # Q19: weight of the thin cloud probability (0.3 Landsat 8, 0.5 Sentinel-2)
    ("hot_margin", 0.04),  # Q19 brightness probability: HOT percentiles widened by 0.04
    ("water_bright", 0.11),  # Z12 water brightness probability: SWIR-1.6 / 0.11
    ("cdi_urban", -0.8),  # Q19: urban pixels with CDI below -0.8 are cloud
    ("cdi_confident", -0.5),  # Q19 / F18: a pixel with CDI below -0.5 is confidently cloud
)
_BT = HIST_GRIDS["bt"]
_HOT = HIST_GRIDS["hot"]
_PROB = HIST_GRIDS["prob"]


@numba.njit(cache=True, nogil=True, inline="always")
def _bin(v, low, step, bins):
    i = int(np.floor((v - low) / step + 0.5))
    return min(max(i, 0), bins - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _q(v, low, step, bins):
    """``v`` on the grid: the value the histogram holds for it."""
    return low + _bin(v, low, step, bins) * step


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pixel(bands, i, present, thr, cirrus_low):
    """Potential-cloud tests and probability inputs of pixel ``i``.

    Returns ``(flags, variability, hot, water_brightness, thin_prob, bt)``
    with ``flags`` of PCP, WATER, SNOW, NODATA, CLEAR_LAND, CLEAR_WATER,
    URBAN. ``thr``: the values of :data:`THRESHOLDS`. ``cirrus_low``: the
    cirrus band's 2nd percentile over clear pixels, taken off it (Q19).
    """
    b, g, r, n8 = float(bands[0, i]), float(bands[1, i]), float(bands[2, i]), float(bands[3, i])
    has_swir = present[4]
    s1 = float(bands[4, i]) if has_swir else 0.0
    s2 = float(bands[5, i]) if has_swir else 0.0
    ci = float(bands[6, i]) if present[6] else 0.0
    bt = float(bands[7, i]) if present[7] else 0.0
    if np.isnan(b + g + r + n8 + s1 + s2 + ci + bt):
        return np.int64(NODATA), 0.0, 0.0, 0.0, 0.0, 0.0
    ci = max(ci - cirrus_low, 0.0)  # Q19 (NormalizaCirrusDEM without a DEM): cirrus over its clear-sky floor
    ndvi = (n8 - r) / (n8 + r)
    mean_vis = (b + g + r) / 3.0
    whiteness = (abs(b - mean_vis) + abs(g - mean_vis) + abs(r - mean_vis)) / mean_vis
    hot = b - 0.5 * r
    # Z12 basic test (SWIR-2.2, NDSI, NDVI, BT), whiteness, HOT; without SWIR (four-band mode) the
    # SWIR, NDSI and NIR/SWIR tests are left out
    pcp = ndvi < thr[2] and whiteness < thr[3] and hot - thr[4] > 0.0
    variability = 1.0 - max(abs(ndvi), whiteness)  # Z12 variability probability
    ndsi = 0.0
    if has_swir:
        ndsi = (g - s1) / (g + s1)
        ndbi = (s1 - n8) / (s1 + n8)
        pcp = pcp and s2 > thr[0] and ndsi < thr[1] and n8 / s1 > thr[5]
        # Q19 (Fmask 4's problSpectralVaribility): NDBI joins NDVI, NDSI and whiteness
        variability = 1.0 - max(max(max(abs(ndvi), abs(ndsi)), abs(ndbi)), whiteness)
    if present[7]:
        pcp = pcp and bt < thr[6]  # Z12 basic test: BT < 27 deg C
    thin = 0.0
    if present[6]:
        thin = max(ci / thr[8], 0.0)  # Z15: thin cloud probability
        pcp = pcp or ci > 0.01  # Z15 cirrus test
    water = (ndvi < 0.01 and n8 < 0.11) or (ndvi > 0.0 and ndvi < 0.1 and n8 < 0.05)  # Z12 water test
    snow = has_swir and ndsi > 0.15 and n8 > 0.11 and g > 0.1 and (not present[7] or bt < thr[7])
    f = np.int64((PCP if pcp else 0) | (WATER if water else 0) | (SNOW if snow else 0))
    if not pcp:
        # Q19 (Fmask 4's DetectPotentialCloud): clear water is every clear water pixel (Z12's SWIR-2.2 < 0.03 dropped)
        f |= CLEAR_WATER if water else CLEAR_LAND
    if present[9] and not water:
        endbi = float(bands[9, i])
        if endbi > 0.0 and endbi > ndvi:  # Q19: urban / built-up, from the line-enhanced NDBI
            f |= URBAN
    # Z12 / Q19 water brightness probability: SWIR-1.6 / 0.11 at most 1 (NIR in the four-band mode)
    wb = min(s1 if has_swir else n8, thr[11]) / thr[11]
    return f, variability, hot, wb, thin, bt


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _probabilities(variability, hot, wb, thin, bt, has_thermal, stats, thin_weight):
    """Land and water cloud probabilities of one pixel.

    ``stats``: t_low, t_high, t_water (deg C, 17.5th / 82.5th percentiles of
    clear land, 82.5th of clear water; Z12) or hot_low, hot_high (17.5th
    percentile of clear-land HOT less 0.04, 82.5th plus 0.04; Q19).
    """
    if has_thermal:
        t_low, t_high, t_water = stats[0], stats[1], stats[2]
        temp = (t_high + 4.0 - bt) / (t_high + 4.0 - (t_low - 4.0))  # Z12 temperature probability
        land = max(temp, 0.0) * variability
        water = max((t_water - bt) / 4.0, 0.0) * wb  # Z12 water temperature x brightness probability
    else:
        span = stats[4] - stats[3]
        bright = (hot - stats[3]) / span if span > 0 else 1.0  # Q19 HOT brightness probability, in [0, 1]
        land = min(max(bright, 0.0), 1.0) * variability
        water = wb
    return land + thin_weight * thin, water + thin_weight * thin  # Z15 / Q19: weighted thin cloud probability


@numba.njit(cache=True, nogil=True, error_model="numpy")
def fmask_histograms(bands, present, thr, stage, stats, hist_a, hist_b, hist_c, hist_d, hist_e, counts):
    """Add one chunk's clear-sky values to the scene histograms (``int64``, on :data:`HIST_GRIDS`).

    ``stage`` -1: cirrus of the pixels that pass no potential cloud test but
    the cirrus test (``hist_a``, on the HOT grid; Q19's clear pixels for the
    cirrus floor). ``stage`` 0: brightness temperature of clear land (``hist_a``), clear
    water (``hist_b``) and urban pixels (``hist_e``); HOT of clear land
    (``hist_c``) and clear water (``hist_d``); in ``counts`` the clear (not
    potential cloud) and the valid pixels. ``stage`` 1, with the percentiles
    of stage 0 in ``stats``: land cloud probability of clear land
    (``hist_a``) and water cloud probability of clear water (``hist_b``).
    """
    n = bands.shape[1]
    if stage == -1:
        no_cirrus = present.copy()
        no_cirrus[6] = False
        for i in range(n):
            f, vari, hot, wb, thin, bt = _pixel(bands, i, no_cirrus, thr, 0.0)
            ci = float(bands[6, i])
            if not f & (NODATA | PCP) and not np.isnan(ci):
                hist_a[_bin(ci, _HOT[0], _HOT[1], _HOT[2])] += 1
        return
    for i in range(n):
        f, vari, hot, wb, thin, bt = _pixel(bands, i, present, thr, stats[7])
        if f & NODATA:
            continue
        land = (f & CLEAR_LAND) != 0
        water = (f & CLEAR_WATER) != 0
        if stage == 0:
            counts[1] += 1
            if not f & PCP:
                counts[0] += 1
            if present[7]:
                if land:
                    hist_a[_bin(bt, _BT[0], _BT[1], _BT[2])] += 1
                elif water:
                    hist_b[_bin(bt, _BT[0], _BT[1], _BT[2])] += 1
                if f & URBAN:
                    hist_e[_bin(bt, _BT[0], _BT[1], _BT[2])] += 1
            if land:
                hist_c[_bin(hot, _HOT[0], _HOT[1], _HOT[2])] += 1
            elif water:
                hist_d[_bin(hot, _HOT[0], _HOT[1], _HOT[2])] += 1
        elif land or water:
            lp, wp = _probabilities(vari, hot, wb, thin, bt, present[7], stats, thr[9])
            if land:
                hist_a[_bin(lp, _PROB[0], _PROB[1], _PROB[2])] += 1
            else:
                hist_b[_bin(wp, _PROB[0], _PROB[1], _PROB[2])] += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def fmask_cloud_flags(bands, present, thr, stats, limits):
    """Flags of each pixel with :data:`CLOUD` set as Fmask's potential cloud layer decides.

    ``stats``: as :func:`fmask_histograms` takes them, then the number of
    clear pixels, the urban cold limit (deg C: urban pixels colder are
    cloud; NaN: none) and the cirrus floor (Q19: 2nd percentile of the clear
    pixels' cirrus, taken off the cirrus band). ``limits``: land threshold, water threshold (each the
    82.5th percentile of the clear pixels' probability plus the cloud
    probability constant; NaN: no clear pixels of that surface, every
    potential cloud pixel there is cloud), high-probability limit (Z12: 0.99;
    NaN: off), the cold-cloud margin (Z12: 35 deg C below t_low; NaN: off) and
    the least number of clear pixels (Q19: 40,000; with fewer every potential
    cloud pixel is cloud). Cloud (Z12, Q19) = PCP and over the threshold of its
    surface, or land with probability over the high limit, or BT below
    ``t_low - margin``. Also set: :data:`FALSE_POSITIVE`, the urban pixels
    not taken for cloud by their temperature (thermal) or CDI (< -0.8), and
    :data:`CONFIDENT`, CDI < -0.5 (Q19). Without a thermal band or the CDI
    no pixel is FALSE_POSITIVE: Fmask 4 always has one of them to take the
    clouds out of its urban layer, and without both the layer holds every
    cloud's edge over vegetation (a cloud's NDBI, about -0.1, is a bright
    line beside vegetation's -0.3 and above the cloud's NDVI of about 0).
    """
    n = bands.shape[1]
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        f, vari, hot, wb, thin, bt = _pixel(bands, i, present, thr, stats[7])
        if f & NODATA:
            out[i] = NODATA
            continue
        lp, wp = _probabilities(vari, hot, wb, thin, bt, present[7], stats, thr[9])
        lp = _q(lp, _PROB[0], _PROB[1], _PROB[2])
        wp = _q(wp, _PROB[0], _PROB[1], _PROB[2])
        water = (f & WATER) != 0
        pcp = (f & PCP) != 0
        if not stats[5] > limits[4]:
            cloud = pcp
        elif water:
            cloud = pcp and not (wp <= limits[1])
        else:
            cloud = (pcp and not (lp <= limits[0])) or lp > limits[2]
        if present[7] and bt < stats[0] - limits[3]:
            cloud = True
        g = f & (PCP | WATER | SNOW)
        if cloud:
            g |= CLOUD
        urban = (f & URBAN) != 0
        if present[7]:
            urban = urban and not (bt < stats[6])  # Q19: colder than the warm urban class: cloud
        elif present[8]:
            urban = urban and not (float(bands[8, i]) < thr[12])
        else:  # nothing tells clouds from built-up land: the line detector lights up every cloud edge over land
            urban = False
        if urban:
            g |= FALSE_POSITIVE
        if present[8] and float(bands[8, i]) < thr[13]:
            g |= CONFIDENT
        out[i] = g
    return out


def histogram_percentile(hist: np.ndarray, q: float, grid: tuple[float, float, int]) -> float:
    """``numpy.percentile(values, q)`` (linear method) of the values a histogram on ``grid`` counts.

    NaN for an empty histogram.
    """
    total = int(hist.sum())
    if total == 0:
        return float("nan")
    low, step, _ = grid
    pos = q / 100.0 * (total - 1)
    k = int(np.floor(pos))
    frac = pos - k
    cum = np.cumsum(hist)
    lo = int(np.searchsorted(cum, k + 1))
    hi = int(np.searchsorted(cum, min(k + 2, total)))
    v_lo, v_hi = low + lo * step, low + hi * step
    return float(v_lo + frac * (v_hi - v_lo))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cloud_displacement_index(b7, b8, b8a, radius):
    """F18's cloud displacement index of a 2-D block: ``(V7 - V8) / (V7 + V8)``.

    ``V7``, ``V8``: variances of ``B7 / B8A`` and ``B8 / B8A`` over the
    ``(2 radius + 1)`` square around each pixel (cut at the block's edges;
    NaN pixels left out). Clouds, displaced between B8 and B8A by the
    parallax of the detectors, come near -1; bright ground near 0 or above.
    NaN where the window has fewer than 2 valid pixels.
    """
    h, w = b7.shape
    out = np.empty((h, w), dtype=np.float32)
    r7 = b7 / b8a
    r8 = b8 / b8a
    for y in range(h):
        for x in range(w):
            n = 0
            s7 = 0.0
            q7 = 0.0
            s8 = 0.0
            q8 = 0.0
            for yy in range(max(0, y - radius), min(h, y + radius + 1)):
                for xx in range(max(0, x - radius), min(w, x + radius + 1)):
                    a = r7[yy, xx]
                    c = r8[yy, xx]
                    if np.isnan(a) or np.isnan(c):
                        continue
                    n += 1
                    s7 += a
                    q7 += a * a
                    s8 += c
                    q8 += c * c
            if n < 2:
                out[y, x] = np.nan
                continue
            v7 = max(q7 / n - (s7 / n) ** 2, 0.0)
            v8 = max(q8 / n - (s8 / n) ** 2, 0.0)
            out[y, x] = (v7 - v8) / (v7 + v8) if v7 + v8 > 0 else 0.0
    return out


@numba.njit(cache=True, nogil=True)
def fill_depressions(image, valid, background):
    """Grayscale fill of the holes of ``image`` (MATLAB's ``imfill(image)``, as Fmask fills NIR and SWIR).

    Each pixel rises to the lowest level at which water poured on it could
    run off the scene's edge: ``max(image, min over paths to the edge of the
    path's highest pixel)``, by priority flood from the edge pixels. Invalid
    pixels take ``background`` first (Fmask: the 17.5th percentile of clear land).
    """
    h, w = image.shape
    level = np.empty((h, w), dtype=np.float64)
    for y in range(h):
        for x in range(w):
            level[y, x] = image[y, x] if valid[y, x] else background
    done = np.zeros((h, w), dtype=np.bool_)
    heap = [(0.0, np.int64(0))]
    heap.pop()
    for y in range(h):
        for x in range(w):
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                done[y, x] = True
                heapq.heappush(heap, (level[y, x], np.int64(y * w + x)))
    out = level.copy()
    while len(heap) > 0:
        v, p = heapq.heappop(heap)
        y, x = p // w, p % w
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                yy, xx = y + dy, x + dx
                if (dy == 0 and dx == 0) or yy < 0 or xx < 0 or yy >= h or xx >= w or done[yy, xx]:
                    continue
                done[yy, xx] = True
                nv = max(level[yy, xx], v)
                out[yy, xx] = nv
                heapq.heappush(heap, (nv, np.int64(yy * w + xx)))
    return out


@numba.njit(cache=True, nogil=True)
def flood_dark(nir_q, s1_q, valid, clear_land, min_difference_q):
    """Fmask's potential shadow layer: NIR and SWIR-1.6 both at least ``min_difference_q`` below their filled images.

    Invalid pixels take the 17.5th percentile of the clear land's values
    (Z12, Q19) before :func:`fill_depressions`.
    """
    h, w = nir_q.shape
    n_clear = 0
    for y in range(h):
        for x in range(w):
            n_clear += clear_land[y, x]
    nir_bg, s1_bg = 0.0, 0.0
    if n_clear > 0:
        a = np.empty(n_clear)
        b = np.empty(n_clear)
        i = 0
        for y in range(h):
            for x in range(w):
                if clear_land[y, x]:
                    a[i] = nir_q[y, x]
                    b[i] = s1_q[y, x]
                    i += 1
        nir_bg, s1_bg = np.percentile(a, 17.5), np.percentile(b, 17.5)
    fn = fill_depressions(nir_q.astype(np.float64), valid, nir_bg)
    fs = fill_depressions(s1_q.astype(np.float64), valid, s1_bg)
    dark = np.zeros((h, w), dtype=np.bool_)
    for y in range(h):
        for x in range(w):
            dark[y, x] = valid[y, x] and min(fn[y, x] - nir_q[y, x], fs[y, x] - s1_q[y, x]) > min_difference_q
    return dark


@numba.njit(cache=True, nogil=True)
def match_shadows(cloud, potential, valid, dy, dx, dmin, dmax, min_size, similarity_min, decline, max_steps):
    """Fmask's shadow object matching (Z12): each cloud object's shadow, projected and matched.

    Each 8-connected cloud object of at least ``min_size`` pixels is shifted
    away from the sun by ``d`` pixels, ``(dy, dx)`` per pixel of shift, for
    ``d`` from ``dmin`` to ``dmax`` (steps of 1 px, or wider so that there are
    at most ``max_steps``). At each shift its similarity is the share of its
    projected pixels (those not falling back on the object itself) that land
    on ``potential`` shadow, on another cloud, or outside the valid scene
    (Z12 counts those as matched). The search stops once the similarity falls
    below ``decline`` times the best so far after that best has passed
    ``similarity_min`` (Z12: 0.98 and 0.3); an object whose best similarity stays
    under ``similarity_min`` casts no shadow. The shadow is the projection at
    the best shift.
    """
    h, w = cloud.shape
    labels, count = label_objects(cloud)
    # pixels grouped by object (counting sort)
    sizes = np.zeros(count + 2, dtype=np.int64)
    for y in range(h):
        for x in range(w):
            sizes[labels[y, x] + 1] += 1
    starts = np.cumsum(sizes)
    order = np.empty(h * w, dtype=np.int64)
    fill = starts.copy()
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            order[fill[lab]] = y * w + x
            fill[lab] += 1
    shadow = np.zeros((h, w), dtype=np.bool_)
    n_steps = int(np.floor(dmax - dmin)) + 1
    step = 1.0
    if n_steps > max_steps:
        step = (dmax - dmin) / (max_steps - 1)
        n_steps = max_steps
    for lab in range(1, count + 1):
        a, b = starts[lab], starts[lab + 1]
        if b - a < min_size:
            continue
        best, best_d = -1.0, -1.0
        for s in range(n_steps):
            d = dmin + s * step
            oy = int(np.floor(d * dy + 0.5))
            ox = int(np.floor(d * dx + 0.5))
            total = 0
            hit = 0
            for k in range(a, b):
                p = order[k]
                yy, xx = p // w + oy, p % w + ox
                if 0 <= yy < h and 0 <= xx < w:
                    if labels[yy, xx] == lab:
                        continue
                    total += 1
                    if potential[yy, xx] or cloud[yy, xx] or not valid[yy, xx]:
                        hit += 1
                else:
                    total += 1
                    hit += 1
            sim = hit / total if total > 0 else 0.0
            if sim > best:
                best, best_d = sim, d
            elif best >= similarity_min and sim < decline * best:
                break
        if best < similarity_min:
            continue
        oy = int(np.floor(best_d * dy + 0.5))
        ox = int(np.floor(best_d * dx + 0.5))
        for k in range(a, b):
            p = order[k]
            yy, xx = p // w + oy, p % w + ox
            if 0 <= yy < h and 0 <= xx < w:
                shadow[yy, xx] = True
    return shadow


@numba.njit(cache=True, nogil=True)
def fmask_slice(flags, nir_q, s1_q, fill_min, shadow_on, dy, dx, dmin, dmax, min_size, similarity_min, decline,
                max_steps, bg_radius, dark_ratio, dark_difference_q, dark_iterations, only_dark,
                cloud_buffer, shadow_buffer, urban_radius, erosion_radius, use_confident):
    """Classes of one whole 2-D scene from :func:`fmask_cloud_flags`' flags (Fmask 4 codes).

    Clouds: the CLOUD flags, filled by the 3 x 3 majority (``fill_min`` of 9; 0
    skips it), then eroded where they may be false positives (Q19:
    :func:`~geoproc.kernels.fmask_commission.false_positive_layer` of the
    FALSE_POSITIVE flags dilated by ``urban_radius`` px and the SNOW flags;
    :func:`~geoproc.kernels.fmask_commission.erode_commissions` by
    ``erosion_radius`` px, with the CONFIDENT flags when ``use_confident``;
    ``erosion_radius`` < 0 skips the step). Potential shadow: pixels darker than their clear-sky
    background in NIR and SWIR-1.6 (:func:`~geoproc.kernels.spectral_mask.dark_pixels`
    within ``bg_radius``; with ``bg_radius`` 0, :func:`flood_dark`).
    Shadows (``shadow_on``): :func:`match_shadows`; with ``only_dark`` the
    matched projections, dilated by 3 px (Fmask's shadow dilation), are kept
    only where they are potential shadow.
    Buffers in pixels. Classes: 255 no data > 4 cloud > 2 shadow > 3 snow > 1 water > 0 clear.
    """
    h, w = flags.shape
    valid = (flags & NODATA) == 0
    cloud = (flags & CLOUD) != 0
    water = (flags & WATER) != 0
    bg_ok = valid & ((flags & PCP) == 0)
    if fill_min > 0:
        cloud = majority(cloud, fill_min) & valid
    if erosion_radius >= 0:
        urban = (flags & FALSE_POSITIVE) != 0
        snow = (flags & SNOW) != 0
        confident = (flags & CONFIDENT) != 0
        pfpl = false_positive_layer(urban, snow, valid, urban_radius)
        # Q19: objects under 10,000 px need a confident (CDI) pixel; objects under 3 px go
        cloud = erode_commissions(cloud, pfpl, water, erosion_radius, confident, use_confident, 10000, 3)
    shadow = np.zeros((h, w), dtype=np.bool_)
    n_valid = 0
    n_cloud = 0
    for y in range(h):
        for x in range(w):
            n_valid += valid[y, x]
            n_cloud += cloud[y, x]
    if shadow_on and n_cloud < 0.9 * n_valid:  # Z12: no matching when clouds cover 90 % of the scene
        if bg_radius > 0:
            dark = dark_pixels(nir_q, s1_q, bg_ok, water, bg_radius, dark_ratio, dark_difference_q, dark_iterations)
        else:
            dark = flood_dark(nir_q, s1_q, valid, bg_ok & ~water, dark_difference_q)
        for y in range(h):
            for x in range(w):
                dark[y, x] = dark[y, x] and valid[y, x] and not cloud[y, x]
        shadow = match_shadows(cloud, dark, valid, dy, dx, dmin, dmax, min_size, similarity_min, decline, max_steps)
        if only_dark:  # Fmask's 3 px dilation of the matched shadow, kept where it is dark
            shadow = dilate_disk(shadow, 3.0)
        for y in range(h):
            for x in range(w):
                shadow[y, x] = shadow[y, x] and valid[y, x] and not cloud[y, x] and (dark[y, x] or not only_dark)
    if shadow_buffer > 0:
        shadow = dilate_disk(shadow, shadow_buffer)
    if cloud_buffer > 0:
        cloud = dilate_disk(cloud, cloud_buffer)
    out = np.empty((h, w), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            f = flags[y, x]
            if not valid[y, x]:
                out[y, x] = 255
            elif cloud[y, x]:
                out[y, x] = 4
            elif shadow[y, x]:
                out[y, x] = 2
            elif f & SNOW:
                out[y, x] = 3
            elif f & WATER:
                out[y, x] = 1
            else:
                out[y, x] = 0
    return out
