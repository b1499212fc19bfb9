"""Neighbourhood filters on stacks of planes: median, Gaussian, bilateral and Lee.

Conventions shared by every kernel here:

* Input ``values`` has shape ``(n, H, W)``: ``n`` planes (bands, dates) filtered
  independently, into ``out``, float32 of the same shape, which the caller allocates
  (and the kernel returns): numpy's allocator asks the OS for huge pages for large
  arrays and numba's does not, and 4 KiB page faults on a fresh output cost more
  than a fast kernel itself.
* Boundary: ``scipy.ndimage`` mode ``'reflect'`` (``d c b a | a b c d | d c b a``),
  applied at the edges of the array the kernel is given. The dask layer hands each
  chunk a halo of ``radius`` pixels from its neighbours and none at the image edges,
  so a chunk sees exactly the neighbourhood the whole image would.
* NaN is nodata: a NaN pixel stays NaN, and NaN neighbours are left out of the
  window (median of the valid values; weights renormalised over the valid ones;
  local statistics over the valid ones).
* Every output pixel is computed from its own window, in a fixed order that does
  not depend on where the pixel sits in the array: chunked and unchunked results
  are identical bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "sorting_network",
    "median_filter",
    "gaussian_filter",
    "bilateral_filter",
    "lee_filter",
    "LEE_MULTIPLICATIVE",
    "LEE_ADDITIVE",
]

#: ``lee_filter`` noise models.
LEE_MULTIPLICATIVE, LEE_ADDITIVE = 0, 1


# --------------------------------------------------------------------------- helpers


@numba.njit(cache=True, nogil=True, inline="always")
def _reflect(i, n):
    """Index ``i`` folded into ``[0, n)`` like scipy.ndimage mode 'reflect' (period ``2n``)."""
    if n == 1:
        return 0
    period = 2 * n
    i = i % period
    if i >= n:
        i = period - 1 - i
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _pad_row(dst, src, r):
    """``dst[k] = src[reflect(k - r)]`` for ``k < len(src) + 2r``."""
    w = src.shape[0]
    for k in range(r):
        dst[k] = src[_reflect(k - r, w)]
    for k in range(w):
        dst[r + k] = src[k]
    for k in range(w + r, w + 2 * r):
        dst[k] = src[_reflect(k - r, w)]


@numba.njit(cache=True, nogil=True)
def _has_nan(plane):
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            if np.isnan(plane[y, x]):
                return True
    return False


# --------------------------------------------------------------------------- median


def sorting_network(n: int, keep: tuple[int, ...] | None = None) -> np.ndarray:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` inputs.

    Built for the next power of two and cut to ``n`` inputs (the cut inputs act as
    ``+inf`` and never move below ``n``). With ``keep``, comparators that cannot
    affect the outputs at those positions are dropped. Plain Python, run once per
    window size by the caller; returns int64 ``(m, 2)``.
    """
    p = 1
    while p < n:
        p *= 2
    pairs = []
    size = 1
    while size < p:
        k = size
        while k >= 1:
            j = k % size
            while j + k < p:
                for i in range(min(k, p - j - k)):
                    if (i + j) // (2 * size) == (i + j + k) // (2 * size):
                        pairs.append((i + j, i + j + k))
                j += 2 * k
            k //= 2
        size *= 2
    pairs = [(a, b) for a, b in pairs if b < n]
    if keep is not None:
        live = set(keep)
        kept = []
        for a, b in reversed(pairs):
            if a in live or b in live:
                kept.append((a, b))
                live.update((a, b))
        pairs = kept[::-1]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@numba.njit(cache=True, nogil=True)
def median_filter(values: np.ndarray, size: int, network: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Median over a ``size x size`` window (``size`` odd), NaN left out of the window.

    Parameters
    ----------
    values
        ``(n, H, W)`` float array.
    size
        Window side, odd.
    network
        ``sorting_network(size * size, keep=(h - 1, h))`` with ``h = size * size // 2``.
    out
        float32 ``(n, H, W)``, filled and returned.

    Returns
    -------
    ``out``: the median of the valid values of each window (the mean of
    the two middle ones for an even count, as ``np.nanmedian``); NaN where the pixel is
    NaN. Without NaN this is ``scipy.ndimage.median_filter(mode='reflect')``.

    Notes
    -----
    The window values of a run of pixels along x are gathered into ``size * size``
    short vectors and sorted together by the comparator network, so every comparator
    is a vectorised min/max. The ``c`` NaN of a window are replaced alternately by
    ``+inf`` and ``-inf`` (``ceil(c/2)`` of them ``+inf``): the middle of the sorted
    window is then the middle of its valid values.
    """
    n, h_len, w_len = values.shape
    r = size // 2
    k_len = size * size
    mid = k_len // 2
    tile = max(16, min(256, (8192 // k_len) // 16 * 16))
    buf = np.empty((k_len, tile), dtype=np.float32)
    cnt = np.zeros(tile, dtype=np.int32)
    pad = np.empty((size, w_len + 2 * r), dtype=np.float32)
    n_cmp = network.shape[0]
    for p in range(n):
        plane = values[p]
        nan_plane = _has_nan(plane)
        for y in range(h_len):
            for dy in range(size):
                _pad_row(pad[dy], plane[_reflect(y + dy - r, h_len)], r)
            for x0 in range(0, w_len, tile):
                t_len = min(tile, w_len - x0)
                e = 0
                if nan_plane:
                    cnt[:t_len] = 0
                    for dy in range(size):
                        for dx in range(size):
                            src = pad[dy, x0 + dx : x0 + dx + t_len]
                            for t in range(t_len):
                                v = src[t]
                                if v != v:
                                    cnt[t] += 1
                                    v = np.float32(np.inf) if cnt[t] % 2 == 1 else np.float32(-np.inf)
                                buf[e, t] = v
                            e += 1
                else:
                    for dy in range(size):
                        for dx in range(size):
                            src = pad[dy, x0 + dx : x0 + dx + t_len]
                            for t in range(t_len):
                                buf[e, t] = src[t]
                            e += 1
                for c in range(n_cmp):
                    bi = buf[network[c, 0]]
                    bj = buf[network[c, 1]]
                    for t in range(t_len):
                        a = bi[t]
                        b = bj[t]
                        bi[t] = a if a < b else b
                        bj[t] = b if a < b else a
                for t in range(t_len):
                    if np.isnan(plane[y, x0 + t]):
                        out[p, y, x0 + t] = np.nan
                    elif nan_plane and cnt[t] % 2 == 1:
                        out[p, y, x0 + t] = (buf[mid - 1, t] + buf[mid, t]) / np.float32(2)
                    else:
                        out[p, y, x0 + t] = buf[mid, t]
    return out


# --------------------------------------------------------------------------- separable sums


@numba.njit(cache=True, nogil=True)
def _row_sums(src, w, pad, ring, slot, nq):
    """Weighted sums along x of one source row, into ``ring[q, slot]`` for ``q < nq``.

    Quantities: 0 the values (NaN as 0), 1 the valid mask, 2 the squared values.
    The sum for pixel x runs over ``k = 0 .. len(w) - 1`` in that order.
    """
    r = w.shape[0] // 2
    width = src.shape[0]
    _pad_row(pad[0], src, r)
    total = width + 2 * r
    if nq > 1:
        for k in range(total):
            v = pad[0, k]
            ok = v == v
            pad[1, k] = 1.0 if ok else 0.0
            pad[0, k] = v if ok else 0.0
            if nq > 2:
                pad[2, k] = v * v if ok else 0.0
    for q in range(nq):
        acc = ring[q, slot]
        row = pad[q]
        acc[:] = 0.0
        for k in range(w.shape[0]):
            wk = w[k]
            seg = row[k : k + width]
            for x in range(width):
                acc[x] += wk * seg[x]


@numba.njit(cache=True, nogil=True)
def _window_sums(plane, wy, wx, y, ring, pad, acc, nq, state):
    """Separable weighted window sums of output row ``y`` into ``acc[q]`` (``q < nq``).

    Row sums are kept in ``ring`` (one slot per source row, ``len(wy)`` slots, or one
    per row for planes no taller than the window); ``state[0]`` is the next source
    row to sum. Call for ``y = 0, 1, 2, ...`` in order.
    """
    h_len = plane.shape[0]
    ky = wy.shape[0]
    ry = ky // 2
    small = h_len <= ky
    last = h_len - 1 if small else min(h_len - 1, y + ry)
    while state[0] <= last:
        row = state[0]
        _row_sums(plane[row], wx, pad, ring, row if small else row % ky, nq)
        state[0] += 1
    for q in range(nq):
        a = acc[q]
        a[:] = 0.0
        for k in range(ky):
            src = _reflect(y + k - ry, h_len)
            rr = ring[q, src if small else src % ky]
            wk = wy[k]
            for x in range(a.shape[0]):
                a[x] += wk * rr[x]


@numba.njit(cache=True, nogil=True)
def _full_window_weight(wy, wx):
    """The weight sum of a window without NaN, computed in the order the sums run."""
    s1 = 0.0
    for k in range(wx.shape[0]):
        s1 += wx[k] * 1.0
    s2 = 0.0
    for k in range(wy.shape[0]):
        s2 += wy[k] * s1
    return s2


@numba.njit(cache=True, nogil=True)
def gaussian_filter(values: np.ndarray, wy: np.ndarray, wx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Separable normalised convolution with 1-D weights ``wy`` (along y) and ``wx`` (along x).

    Parameters
    ----------
    values
        ``(n, H, W)`` float array.
    wy, wx
        float64 weights of odd length ``2r + 1`` (scipy's Gaussian kernel for
        ``gaussian_filter``; any weights work).
    out
        float32 ``(n, H, W)``, filled and returned.

    Returns
    -------
    ``out``: ``sum(w v) / sum(w)`` over the valid (non-NaN) pixels of
    each window, accumulated in float64; NaN where the pixel is NaN. Without NaN this
    is ``scipy.ndimage.gaussian_filter(mode='reflect')`` up to float rounding.
    """
    n, h_len, w_len = values.shape
    rx = wx.shape[0] // 2
    ky = wy.shape[0]
    slots = h_len if h_len <= ky else ky
    ring = np.empty((2, slots, w_len), dtype=np.float64)
    pad = np.empty((2, w_len + 2 * rx), dtype=np.float64)
    acc = np.empty((2, w_len), dtype=np.float64)
    state = np.zeros(1, dtype=np.int64)
    full = _full_window_weight(wy, wx)
    for p in range(n):
        plane = values[p]
        nq = 2 if _has_nan(plane) else 1
        state[0] = 0
        for y in range(h_len):
            _window_sums(plane, wy, wx, y, ring, pad, acc, nq, state)
            num = acc[0]
            if nq == 1:
                for x in range(w_len):
                    out[p, y, x] = num[x] / full
            else:
                den = acc[1]
                for x in range(w_len):
                    if np.isnan(plane[y, x]):
                        out[p, y, x] = np.nan
                    else:
                        out[p, y, x] = num[x] / den[x]
    return out


@numba.njit(cache=True, nogil=True)
def lee_filter(values: np.ndarray, size: int, model: int, noise: float, out: np.ndarray) -> np.ndarray:
    """Lee (1980) filter: ``mean + k (z - mean)``, ``k = var_x / (var_x + noise_var)``.

    Parameters
    ----------
    values
        ``(n, H, W)`` float array (SAR intensity or amplitude for the multiplicative model).
    size
        Window side, odd.
    model
        :data:`LEE_MULTIPLICATIVE`: speckle ``z = x v`` with ``E[v] = 1`` and
        ``var(v) = noise`` (``1 / looks`` for intensity): ``noise_var = mean**2 * noise``
        and ``var_x = (var_z - noise_var) / (1 + noise)``.
        :data:`LEE_ADDITIVE`: ``z = x + v`` with ``var(v) = noise``: ``noise_var = noise``
        and ``var_x = var_z - noise``.
    noise
        The noise variance as above.
    out
        float32 ``(n, H, W)``, filled and returned.

    Returns
    -------
    ``out``. ``mean`` and ``var_z`` (population variance) are taken over
    the valid pixels of the window in float64; ``var_x`` is clipped at 0 and ``k`` is 0
    where ``var_x + noise_var`` is 0. NaN where the pixel is NaN.
    """
    n, h_len, w_len = values.shape
    r = size // 2
    box = np.ones(size, dtype=np.float64)
    slots = h_len if h_len <= size else size
    ring = np.empty((3, slots, w_len), dtype=np.float64)
    pad = np.empty((3, w_len + 2 * r), dtype=np.float64)
    acc = np.empty((3, w_len), dtype=np.float64)
    state = np.zeros(1, dtype=np.int64)
    for p in range(n):
        plane = values[p]
        state[0] = 0
        for y in range(h_len):
            _window_sums(plane, box, box, y, ring, pad, acc, 3, state)
            for x in range(w_len):
                z = plane[y, x]
                if np.isnan(z):
                    out[p, y, x] = np.nan
                    continue
                m = acc[1, x]
                mean = acc[0, x] / m
                var_z = max(acc[2, x] / m - mean * mean, 0.0)
                if model == LEE_MULTIPLICATIVE:
                    noise_var = mean * mean * noise
                    var_x = max((var_z - noise_var) / (1.0 + noise), 0.0)
                else:
                    noise_var = noise
                    var_x = max(var_z - noise, 0.0)
                den = var_x + noise_var
                k = var_x / den if den > 0 else 0.0
                out[p, y, x] = mean + k * (z - mean)
    return out


# --------------------------------------------------------------------------- bilateral


@numba.njit(cache=True, nogil=True, inline="always")
def _exp_neg(u):
    """``exp(-u)`` for ``0 <= u < 64`` to a relative 2e-12, in arithmetic only (so loops vectorise).

    Taylor series of ``exp(-u / 256)`` (degree 11, error < 1e-16 on ``[0, 0.25]``),
    squared 8 times.
    """
    x = u * (1.0 / 256.0)
    e = 1.0 - x * (1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x * (1.0 / 24 - x * (1.0 / 120 - x * (
        1.0 / 720 - x * (1.0 / 5040 - x * (1.0 / 40320 - x * (1.0 / 362880 - x * (1.0 / 3628800))))))))))
    for _ in range(8):
        e = e * e
    return e


#: range weights ``exp(-u)`` below ``exp(-_U_MAX)`` (1.6e-28) are taken as 0
_U_MAX = 64.0


@numba.njit(cache=True, nogil=True)
def bilateral_filter(
    values: np.ndarray, radius: int, sigma_spatial: float, sigma_color: float, out: np.ndarray
) -> np.ndarray:
    """Bilateral filter over a ``(2 radius + 1)`` square window, NaN left out.

    ``out = sum(w v) / sum(w)`` with
    ``w = exp(-(dy**2 + dx**2) / (2 sigma_spatial**2)) * exp(-(v - v0)**2 / (2 sigma_color**2))``
    over the valid pixels ``v`` of the window of pixel ``v0``, in float64, into ``out``
    (float32 ``(n, H, W)``, returned); NaN where the pixel is NaN (Tomasi & Manduchi
    1998). The range weight is evaluated by
    :func:`_exp_neg` (relative error < 2e-12) and taken as 0 below ``exp(-64)``.
    """
    n, h_len, w_len = values.shape
    size = 2 * radius + 1
    spatial = np.empty((size, size), dtype=np.float64)
    for dy in range(size):
        for dx in range(size):
            d2 = (dy - radius) ** 2 + (dx - radius) ** 2
            spatial[dy, dx] = math.exp(-d2 / (2.0 * sigma_spatial * sigma_spatial))
    cr = 1.0 / (2.0 * sigma_color * sigma_color)
    pad = np.empty((size, w_len + 2 * radius), dtype=np.float64)
    center = np.empty(w_len, dtype=np.float64)
    accw = np.empty(w_len, dtype=np.float64)
    accv = np.empty(w_len, dtype=np.float64)
    for p in range(n):
        plane = values[p]
        for y in range(h_len):
            for dy in range(size):
                _pad_row(pad[dy], plane[_reflect(y + dy - radius, h_len)], radius)
            for x in range(w_len):
                center[x] = plane[y, x]
            accw[:] = 0.0
            accv[:] = 0.0
            for dy in range(size):
                for dx in range(size):
                    ws = spatial[dy, dx]
                    seg = pad[dy, dx : dx + w_len]
                    for x in range(w_len):
                        v = seg[x]
                        d = v - center[x]
                        u = d * d * cr
                        ok = u < _U_MAX  # False for a NaN neighbour
                        wgt = ws * _exp_neg(u) if ok else 0.0
                        accw[x] += wgt
                        accv[x] += wgt * v if ok else 0.0
            for x in range(w_len):
                if np.isnan(center[x]):
                    out[p, y, x] = np.nan
                else:
                    out[p, y, x] = accv[x] / accw[x]
    return out
