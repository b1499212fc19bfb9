"""Masks from quality bands."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["class_lut", "class_mask"]


def class_lut(classes, size: int = 256) -> np.ndarray:
    """A boolean lookup table, True at each class value in ``classes``."""
    lut = np.zeros(size, dtype=np.bool_)
    for c in classes:
        if not 0 <= int(c) < size:
            raise ValueError(f"class value {c} is outside 0..{size - 1}")
        lut[int(c)] = True
    return lut


@numba.njit(cache=True, nogil=True)
def class_mask(codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[codes]`` for a 1-D integer array; codes outside the table are False.

    Equivalent to ``np.isin(codes, np.flatnonzero(lut))``, in one pass and
    without temporaries.
    """
    out = np.empty(codes.shape[0], dtype=np.bool_)
    n = lut.shape[0]
    for i in range(codes.shape[0]):
        c = codes[i]
        out[i] = lut[c] if 0 <= c < n else False
    return out
