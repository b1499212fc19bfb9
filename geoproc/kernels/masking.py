"""Masks from quality bands: class codes (Sentinel-2 SCL) and bit flags (Landsat QA_PIXEL)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["class_lut", "class_mask", "bit_mask", "NO_BITS"]


def class_lut(classes, size: int = 256) -> np.ndarray:
    """A boolean lookup table, True at each class value in ``classes``."""
    lut = np.zeros(size, dtype=np.bool_)
    for c in classes:
        if not 0 <= int(c) < size:
            raise ValueError(f"class value {c} is outside 0..{size - 1}")
        lut[int(c)] = True
    return lut


def _new_mask(n: int) -> np.ndarray:
    """A boolean output allocated by numpy: numpy asks for huge pages for large arrays, while numba's allocator
    hands out 4 KiB pages that each fault on first write (32 MiB: 13 ms against 2 ms; in a Dask worker, whose
    MALLOC_TRIM_THRESHOLD_ makes every large allocation fresh memory, 4 MiB: 1.5 ms against 0.8 ms)."""
    return np.empty(n, dtype=np.bool_)


def class_mask(codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[codes]`` for a 1-D integer array; codes outside the table are False.

    Equivalent to ``np.isin(codes, np.flatnonzero(lut))``, in one pass and
    without temporaries. When every class is below 64 (SCL: 0..11), the table
    is one 64-bit word and each code a shift into it, which vectorises (a
    table lookup does not).
    """
    out = _new_mask(codes.shape[0])
    _class_mask_into(codes, lut, out.view(np.uint8))
    return out


@numba.njit(cache=True, nogil=True)
def _class_mask_into(codes: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """:func:`class_mask` writing 1/0 into ``out`` (uint8, as long as ``codes``)."""
    n = codes.shape[0]
    size = lut.shape[0]
    small = True
    for k in range(64, size):
        small = small and not lut[k]
    if small:
        bits = np.uint64(0)
        for k in range(min(64, size)):
            if lut[k]:
                bits |= np.uint64(1) << np.uint64(k)
        for i in range(n):
            c = np.int64(codes[i])
            inside = (c >= 0) & (c < 64)
            hit = (bits >> np.uint64(c if inside else 0)) & np.uint64(1)
            out[i] = np.uint8(hit) if inside else np.uint8(0)
    else:
        for i in range(n):
            c = codes[i]
            out[i] = np.uint8(lut[c]) if 0 <= c < size else np.uint8(0)


#: A bit no quality code has: an unused "all bits" mask of :func:`bit_mask` never matches.
NO_BITS = 1 << 40


def bit_mask(codes: np.ndarray, any_bits: int, all_bits: np.ndarray) -> np.ndarray:
    """True where a bit-packed quality code has any of ``any_bits`` set, or all the bits of one ``all_bits`` mask.

    For a 1-D integer array: ``(codes & any_bits) != 0`` OR, for each ``m`` of
    ``all_bits`` (4 int64 masks; :data:`NO_BITS` for unused ones),
    ``(codes & m) == m``. A 2-bit confidence ``>= level`` is either of these
    (see :func:`geoproc.masking.qa_pixel_mask_array`). One branch-free pass in
    the codes' own integer width, which the compiler vectorises. Negative
    codes are False.
    """
    out = _new_mask(codes.shape[0])
    _bit_mask_into(codes, any_bits, all_bits, out.view(np.uint8))
    return out


@numba.njit(cache=True, nogil=True)
def _bit_mask_into(codes: np.ndarray, any_bits: int, all_bits: np.ndarray, out: np.ndarray) -> None:
    """:func:`bit_mask` writing 1/0 into ``out`` (uint8, as long as ``codes``)."""
    n = codes.shape[0]
    # the masks in the codes' dtype (bits beyond it can never be set, and a mask that needs them never matches)
    m = np.zeros(5, dtype=codes.dtype)
    m[0] = any_bits
    used = 0
    for k in range(4):
        mk = all_bits[k]
        m[1 + used] = mk
        if mk != NO_BITS and np.int64(m[1 + used]) == mk:
            used += 1
    a = m[0]
    zero = a - a
    one, none = np.uint8(1), np.uint8(0)
    if used == 0:
        for i in range(n):
            c = codes[i]
            h = one if (c & a) != zero else none
            out[i] = h if c >= zero else none
    else:
        m0, m1, m2, m3 = m[1], m[2], m[3], m[4]
        u1 = one if used > 1 else none
        u2 = one if used > 2 else none
        u3 = one if used > 3 else none
        for i in range(n):
            c = codes[i]
            h = one if (c & a) != zero else none
            h |= one if (c & m0) == m0 else none
            h |= u1 & (one if (c & m1) == m1 else none)
            h |= u2 & (one if (c & m2) == m2 else none)
            h |= u3 & (one if (c & m3) == m3 else none)
            out[i] = h if c >= zero else none
