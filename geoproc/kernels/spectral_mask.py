"""Fmask-like cloud, shadow, snow and water tests on reflectance (kernels).

Pixel tests follow Zhu & Woodcock (2012), "Object-based cloud and cloud shadow
detection in Landsat imagery", RSE 118, 83-94 (equations cited as "Eq. n"),
and Zhu, Wang & Woodcock (2015), "Improvement and expansion of the Fmask
algorithm", RSE 159, 269-277 (the cirrus test). The neighbourhood steps
(cloud fill, shadow darkness and projection) work on 2-D slices and see
nothing beyond their radius, so a halo makes them exact on chunks.
"""

from __future__ import annotations

import numba
import numpy as np

from .morphology import dilate_disk, majority, remove_small

__all__ = [
    "PCP", "WATER", "SNOW", "NODATA", "CIRRUS", "THRESHOLD_NAMES", "QUANT",
    "CLEAR", "CLASS_WATER", "SHADOW", "CLASS_SNOW", "CLOUD", "NO_DATA",
    "fmask_tests", "dark_pixels", "dilate_line", "classify_slice",
]

# bit flags of fmask_tests
PCP, WATER, SNOW, NODATA, CIRRUS = 1, 2, 4, 8, 16
# output classes (Fmask 4 codes)
CLEAR, CLASS_WATER, SHADOW, CLASS_SNOW, CLOUD, NO_DATA = 0, 1, 2, 3, 4, 255
#: reflectance units of the quantised NIR/SWIR (int16) of the shadow step (integer sums: exact on any chunking)
QUANT = 10000.0

#: Order of the thresholds array passed to :func:`fmask_tests`.
THRESHOLD_NAMES = (
    "swir22_min", "ndsi_max", "ndvi_max", "whiteness_max", "hot_offset", "nir_swir16_min", "cirrus_min",
    "water_ndvi_max", "water_nir_max", "water_ndvi_max_low", "water_nir_max_low",
    "snow_ndsi_min", "snow_nir_min", "snow_green_min",
)


_TINY = np.float32(1e-5)
# The pixel tests compile with error_model="numpy": a float division by zero gives inf/NaN (which the
# comparisons then reject) instead of the Python ZeroDivisionError check, whose branch keeps LLVM
# from vectorising the loop (4-8x slower).


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _decode(raw, scale, offset, nodata):
    """``float32(raw) * scale + offset`` in float32 (as the loader decodes), clamped to >= 1e-5; NaN if missing.

    Branch-free (selects, not jumps), so that the loops calling it vectorise.
    """
    v = np.float32(raw) * scale + offset
    v = v if (v > _TINY) | np.isnan(v) else _TINY
    return np.float32(np.nan) if raw == nodata else v


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _u(cond):
    """A comparison as uint8 1/0: combining these with & and | vectorises, combining numba bools does not."""
    return np.uint8(1) if cond else np.uint8(0)


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tests(b, g, r, n8, s1, s2, ci, use_cirrus, t):
    """Flags of one pixel from its float32 reflectance (see :func:`fmask_tests`); branch-free."""
    missing = np.isnan(b + g + r + n8 + s1 + s2 + ci)
    ndvi = (n8 - r) / (n8 + r)
    ndsi = (g - s1) / (g + s1)
    mean_vis = (b + g + r) / np.float32(3.0)
    whiteness = (abs(b - mean_vis) + abs(g - mean_vis) + abs(r - mean_vis)) / mean_vis
    pcp = (
        _u(s2 > t[0]) & _u(ndsi < t[1]) & _u(ndvi < t[2])  # Eq. 1 (no thermal test)
        & _u(whiteness < t[3])  # Eq. 2
        & _u(b - np.float32(0.5) * r - t[4] > np.float32(0.0))  # Eq. 3, haze optimised transform
        & _u(n8 / s1 > t[5])  # Eq. 4
    )
    cirrus_hit = _u(use_cirrus) & _u(ci > t[6])  # Zhu et al. 2015, section 2.2.1
    water = (_u(ndvi < t[7]) & _u(n8 < t[8])) | (  # Eq. 5
        _u(ndvi > np.float32(0.0)) & _u(ndvi < t[9]) & _u(n8 < t[10])
    )
    snow = _u(ndsi > t[11]) & _u(n8 > t[12]) & _u(g > t[13])  # Eq. 20 (no thermal test)
    f = (pcp | cirrus_hit) * np.uint8(PCP) | water * np.uint8(WATER) | snow * np.uint8(SNOW)
    f |= cirrus_hit * np.uint8(CIRRUS)
    return np.uint8(NODATA) if missing else np.uint8(f), missing


def fmask_tests(blue, green, red, nir, swir16, swir22, cirrus, decode, thr, use_cirrus):
    """Per-pixel Fmask tests on 1-D band arrays (any numeric dtype; raw integers are decoded).

    Parameters
    ----------
    blue, green, red, nir, swir16, swir22, cirrus
        Equally long 1-D arrays; ``cirrus`` is ignored unless ``use_cirrus``.
    decode
        float64 ``(7, 3)``: per band (same order) ``scale, offset, nodata``
        (NaN: no nodata value). Values are decoded as the loader does
        (``float32(raw) * scale + offset``) and clamped to at least 1e-5, as
        python-fmask does before taking ratios; the tests run in float32.
    thr
        Thresholds in :data:`THRESHOLD_NAMES` order (compared as float32).
    use_cirrus
        Apply the cirrus test.

    Returns
    -------
    flags : uint8
        Bit flags: :data:`PCP` potential cloud pixel (Eq. 1-4 AND-ed, OR the
        cirrus test of Zhu et al. 2015, section 2.2.1), :data:`WATER` (Eq. 5),
        :data:`SNOW` (Eq. 20 without the thermal test), :data:`CIRRUS` (the
        cirrus test alone), :data:`NODATA` (any band missing).
    nir_q, swir16_q : int16
        NIR and SWIR-1.6 reflectance times :data:`QUANT`, rounded and clipped to
        0..32767 (reflectance up to 3.2767; 0 where missing).
    """
    n = blue.shape[0]
    # allocated by numpy, not in the kernel: numpy asks for huge pages for large arrays, numba's allocator gets
    # 4 KiB pages that each fault on first write, which cost more than the tests on a 4096 x 4096 px scene
    flags = np.empty(n, dtype=np.uint8)
    nir_q = np.empty(n, dtype=np.int16)
    s1_q = np.empty(n, dtype=np.int16)
    _fmask_tests_into(blue, green, red, nir, swir16, swir22, cirrus, decode, thr, use_cirrus, flags, nir_q, s1_q)
    return flags, nir_q, s1_q


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fmask_tests_into(blue, green, red, nir, swir16, swir22, cirrus, decode, thr, use_cirrus, flags, nir_q, s1_q):
    """:func:`fmask_tests` writing into ``flags``, ``nir_q`` and ``s1_q`` (1-D, as long as the bands)."""
    n = blue.shape[0]
    # parameters as scalars (tuples), not arrays: loads from an array that might alias the outputs
    # would be repeated every iteration and keep the loop from vectorising
    f32 = np.float32
    s0, s1_, s2_, s3 = f32(decode[0, 0]), f32(decode[1, 0]), f32(decode[2, 0]), f32(decode[3, 0])
    s4, s5, s6 = f32(decode[4, 0]), f32(decode[5, 0]), f32(decode[6, 0])
    o0, o1, o2, o3 = f32(decode[0, 1]), f32(decode[1, 1]), f32(decode[2, 1]), f32(decode[3, 1])
    o4, o5, o6 = f32(decode[4, 1]), f32(decode[5, 1]), f32(decode[6, 1])
    d0, d1, d2, d3 = decode[0, 2], decode[1, 2], decode[2, 2], decode[3, 2]
    d4, d5, d6 = decode[4, 2], decode[5, 2], decode[6, 2]
    t = (
        f32(thr[0]), f32(thr[1]), f32(thr[2]), f32(thr[3]), f32(thr[4]), f32(thr[5]), f32(thr[6]),
        f32(thr[7]), f32(thr[8]), f32(thr[9]), f32(thr[10]), f32(thr[11]), f32(thr[12]), f32(thr[13]),
    )
    quant = f32(QUANT)
    half = f32(0.5)
    zero = f32(0.0)
    top = f32(32767.0)
    if use_cirrus:
        for i in range(n):
            n8 = _decode(nir[i], s3, o3, d3)
            s1 = _decode(swir16[i], s4, o4, d4)
            f, missing = _tests(
                _decode(blue[i], s0, o0, d0), _decode(green[i], s1_, o1, d1), _decode(red[i], s2_, o2, d2),
                n8, s1, _decode(swir22[i], s5, o5, d5), _decode(cirrus[i], s6, o6, d6), True, t,
            )
            flags[i] = f
            nir_q[i] = np.int16(min(np.floor((zero if missing else n8) * quant + half), top))
            s1_q[i] = np.int16(min(np.floor((zero if missing else s1) * quant + half), top))
    else:
        for i in range(n):
            n8 = _decode(nir[i], s3, o3, d3)
            s1 = _decode(swir16[i], s4, o4, d4)
            f, missing = _tests(
                _decode(blue[i], s0, o0, d0), _decode(green[i], s1_, o1, d1), _decode(red[i], s2_, o2, d2),
                n8, s1, _decode(swir22[i], s5, o5, d5), zero, False, t,
            )
            flags[i] = f
            nir_q[i] = np.int16(min(np.floor((zero if missing else n8) * quant + half), top))
            s1_q[i] = np.int16(min(np.floor((zero if missing else s1) * quant + half), top))


@numba.njit(cache=True, nogil=True, inline="always")
def _running3(sa, sb, sc, oa, ob, oc, w: int, radius: int):
    """``o*[x] = sum of s*[x - radius .. x + radius]`` (cut at the ends) for three rows; three branch-free ranges.

    The three running sums share one loop: three independent dependency chains, which the CPU overlaps (one
    loop per row waits on each addition in turn: the dark-pixel step took 1.3x as long).
    """
    za = sa[0] * 0
    a, b, c = za, za, za
    for x in range(min(radius, w)):
        a += sa[x]
        b += sb[x]
        c += sc[x]
    lo = min(radius + 1, w)  # x < lo: nothing drops out yet
    hi = max(w - radius, lo)  # x >= hi: nothing comes in any more
    for x in range(min(lo, hi)):
        inside = x + radius < w
        a += sa[x + radius] if inside else za
        b += sb[x + radius] if inside else za
        c += sc[x + radius] if inside else za
        oa[x], ob[x], oc[x] = a, b, c
    for x in range(lo, hi):
        a += sa[x + radius] - sa[x - radius - 1]
        b += sb[x + radius] - sb[x - radius - 1]
        c += sc[x + radius] - sc[x - radius - 1]
        oa[x], ob[x], oc[x] = a, b, c
    for x in range(max(hi, lo), w):
        a -= sa[x - radius - 1]
        b -= sb[x - radius - 1]
        c -= sc[x - radius - 1]
        oa[x], ob[x], oc[x] = a, b, c


@numba.njit(cache=True, nogil=True, inline="always")
def _column_step(a, b, ok, acc_a, acc_b, acc_c, y: int, radius: int, h: int, w: int) -> None:
    """Move the column sums to output row ``y``: add row ``y + radius``, drop ``y - radius - 1`` (``ok`` pixels only)."""
    add = y + radius
    if add < h:
        ra, rb, ro = a[add], b[add], ok[add]
        for x in range(w):
            m = np.int64(1) if ro[x] else np.int64(0)
            acc_a[x] += m * ra[x]
            acc_b[x] += m * rb[x]
            acc_c[x] += m
    drop = y - radius - 1
    if drop >= 0:
        ra, rb, ro = a[drop], b[drop], ok[drop]
        for x in range(w):
            m = np.int64(1) if ro[x] else np.int64(0)
            acc_a[x] -= m * ra[x]
            acc_b[x] -= m * rb[x]
            acc_c[x] -= m


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _dark_against(nir_q, s1_q, ok, subset, radius, ratio, min_difference_q, iterations, dark):
    """Set ``dark`` on the ``subset`` pixels darker than the mean of the ``ok & subset`` pixels around them.

    The background sums over the ``(2 radius + 1)`` square (cut at the
    array's edges) are integer, so exact on any chunking, and O(N): running
    sums down the columns, then along each row, made and used a row at a
    time (as ``(h, w)`` int64 arrays they would be 384 MiB of fresh memory per
    pass on a 4096 x 4096 px slice). Within a pass the sums read ``bg_ok``
    only, never ``dark``, so updating ``dark`` row by row gives the same result.
    """
    h, w = nir_q.shape
    bg_ok = ok & subset
    acc_n = np.empty(w, dtype=np.int64)
    acc_s = np.empty(w, dtype=np.int64)
    acc_c = np.empty(w, dtype=np.int64)
    row_n = np.empty(w, dtype=np.int64)
    row_s = np.empty(w, dtype=np.int64)
    row_c = np.empty(w, dtype=np.int64)
    for _ in range(iterations):
        acc_n[:] = 0
        acc_s[:] = 0
        acc_c[:] = 0
        for y in range(-radius, h):
            _column_step(nir_q, s1_q, bg_ok, acc_n, acc_s, acc_c, y, radius, h, w)
            if y < 0:
                continue
            _running3(acc_n, acc_s, acc_c, row_n, row_s, row_c, w, radius)
            vn, vs, sub, d = nir_q[y], s1_q[y], subset[y], dark[y]
            for x in range(w):
                c = row_c[x]
                bn = row_n[x] / c  # NaN where c == 0: every comparison below is then False
                v = vn[x]
                hit = (v < ratio * bn) & (bn - v >= min_difference_q) & (vs[x] < ratio * (row_s[x] / c))
                d[x] = hit if sub[x] else d[x]
        bg_ok = ok & subset & ~dark


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dark_pixels(
    nir_q, s1_q, ok, water, radius: int, ratio: float, min_difference_q: int, iterations: int
) -> np.ndarray:
    """Pixels darker in NIR and SWIR-1.6 than their local clear-sky background.

    A land pixel's background is the mean NIR (SWIR) of the ``ok`` land pixels
    in the ``(2 radius + 1)`` square around it; a water pixel's, that of the
    ``ok`` water pixels. Dark: NIR and SWIR below ``ratio`` times their
    backgrounds, and, on land, NIR at least ``min_difference_q`` below its
    background (Eq. 19's 0.02 in :data:`QUANT` units; water is darker than
    that to start with). Each further iteration recomputes the backgrounds
    without the dark pixels found. A pixel without any background pixel
    around is not dark.
    """
    h, w = nir_q.shape
    dark = np.zeros((h, w), dtype=np.bool_)
    land = np.empty((h, w), dtype=np.bool_)
    any_water = False
    for y in range(h):
        for x in range(w):
            land[y, x] = not water[y, x]
            any_water = any_water or water[y, x]
    _dark_against(nir_q, s1_q, ok, land, radius, ratio, min_difference_q, iterations, dark)
    if any_water:
        _dark_against(nir_q, s1_q, ok, water, radius, ratio, 0, iterations, dark)
    return dark


@numba.njit(cache=True, nogil=True)
def _line_offset(k, p, q):
    """``floor(k * p / q + 1/2)`` in integers."""
    return (2 * k * p + q) // (2 * q)


@numba.njit(cache=True, nogil=True)
def dilate_line(mask: np.ndarray, p: int, q: int, sign: int, kmin: int, kmax: int, transpose: bool) -> np.ndarray:
    """True where ``mask`` holds a True pixel at one of the offsets of a digital line segment.

    ``out[y, x] = OR over k in [kmin, kmax] of mask[y + oy(k), x + ox(k)]``
    (False beyond the array), with ``ox(k) = sign * k`` and
    ``oy(k) = floor(k p / q + 1/2)`` (slope ``p / q``, ``|p| <= q``), or, when
    ``transpose``, ``oy(k) = sign * k`` and ``ox(k) = floor(k p / q + 1/2)``.

    The offsets repeat with period ``q`` (``o(k + q) = o(k) + (p, sign q)``), so
    the segment is ``q`` short shifts of a periodic line, and the periodic line
    is a running distance along its chains: O(N q) instead of O(N (kmax - kmin)).
    """
    src = np.ascontiguousarray(mask.T) if transpose else mask
    h, w = src.shape
    big = np.int32(2**30)
    # steps along the chain (y, x) -> (y + p, x + sign q) to the first True pixel (big: none in the array),
    # filled in rows of memory order such that the next pixel of a chain is always done first
    steps = np.empty((h, w), dtype=np.int32)
    sq = sign * q
    for yi in range(h):
        y = h - 1 - yi if p >= 0 else yi
        y2 = y + p
        row_ok = 0 <= y2 < h
        for xi in range(w):
            x = w - 1 - xi if sign > 0 else xi
            if src[y, x]:
                steps[y, x] = 0
                continue
            x2 = x + sq
            if row_ok and 0 <= x2 < w and steps[y2, x2] < big:
                steps[y, x] = steps[y2, x2] + 1
            else:
                steps[y, x] = big
    out = np.zeros((h, w), dtype=np.bool_)
    for t in range(min(q, kmax - kmin + 1)):
        k = kmin + t
        reach = (kmax - k) // q  # further periods after offset k that stay within kmax
        oy = _line_offset(k, p, q)
        ox = sign * k
        for y in range(max(0, -oy), min(h, h - oy)):
            srow = steps[y + oy]
            orow = out[y]
            for x in range(max(0, -ox), min(w, w - ox)):
                orow[x] = orow[x] | (srow[x + ox] <= reach)
    return np.ascontiguousarray(out.T) if transpose else out


@numba.njit(cache=True, nogil=True)
def classify_slice(
    flags: np.ndarray,
    nir_q: np.ndarray,
    s1_q: np.ndarray,
    open_edges: np.ndarray,
    fill_min: int,
    min_cloud_size: int,
    cloud_buffer: float,
    zone_mode: int,
    zone_radius: float,
    line: np.ndarray,
    bg_radius: int,
    dark_ratio: float,
    dark_difference_q: int,
    dark_iterations: int,
    shadow_buffer: float,
) -> np.ndarray:
    """Fmask classes of one 2-D slice from the :func:`fmask_tests` outputs.

    Steps: cloud = potential cloud pixels, filled by a 3 x 3 majority
    (``fill_min`` of 9; 0 skips it), components under ``min_cloud_size`` pixels
    removed, dilated by ``cloud_buffer`` px. Shadow = not cloud, dark
    (:func:`dark_pixels`: against the non-cloud land, or water, pixels
    within ``bg_radius``), and in the zone where a shadow of the
    (undilated) cloud can fall: ``zone_mode`` 1, within ``zone_radius`` px of
    a cloud; 2, along the sun direction (``line`` = ``p, q, sign, kmin, kmax,
    transpose`` for :func:`dilate_line`); 0, anywhere; -1: no shadow. Then dilated by
    ``shadow_buffer`` px. Classes: :data:`NO_DATA` > :data:`CLOUD` >
    :data:`SHADOW` > :data:`CLASS_SNOW` > :data:`CLASS_WATER` > :data:`CLEAR`.
    """
    h, w = flags.shape
    valid = (flags & NODATA) == 0
    cloud = (flags & PCP) != 0
    water = (flags & WATER) != 0
    if fill_min > 0:
        cloud = majority(cloud, fill_min) & valid
    if min_cloud_size > 1:
        cloud = remove_small(cloud, min_cloud_size, 8, open_edges)

    shadow = np.zeros((h, w), dtype=np.bool_)
    if zone_mode >= 0:
        bg_ok = np.empty((h, w), dtype=np.bool_)
        for y in range(h):
            for x in range(w):
                bg_ok[y, x] = valid[y, x] and (flags[y, x] & PCP) == 0
        dark = dark_pixels(nir_q, s1_q, bg_ok, water, bg_radius, dark_ratio, dark_difference_q, dark_iterations)
        if zone_mode == 1:
            zone = dilate_disk(cloud, zone_radius)
        elif zone_mode == 2:
            zone = dilate_line(cloud, line[0], line[1], line[2], line[3], line[4], line[5] != 0)
        else:
            zone = np.ones((h, w), dtype=np.bool_)
        for y in range(h):
            for x in range(w):
                shadow[y, x] = dark[y, x] and zone[y, x] and valid[y, x] and not cloud[y, x]
    if shadow_buffer > 0:
        shadow = dilate_disk(shadow, shadow_buffer)
    if cloud_buffer > 0:
        cloud = dilate_disk(cloud, cloud_buffer)

    out = np.empty((h, w), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            if not valid[y, x]:
                out[y, x] = NO_DATA
            elif cloud[y, x]:
                out[y, x] = CLOUD
            elif shadow[y, x]:
                out[y, x] = SHADOW
            elif flags[y, x] & SNOW:
                out[y, x] = CLASS_SNOW
            elif water[y, x]:
                out[y, x] = CLASS_WATER
            else:
                out[y, x] = CLEAR
    return out
