"""Pan-sharpening kernels on multispectral bands and a panchromatic band on one grid.

Inputs are flattened: ``ms`` is ``(B, N)`` (B bands), ``pan`` is ``(N,)``; the
fused bands go to ``out`` ``(B, N)``, allocated by the caller. The intensity is
``I = sum_i w_i ms_i`` with weights summing to 1. A pixel is NaN in the
output where the pan or any band is NaN.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["brovey", "component_substitution", "cs_moments", "N_MOMENTS"]


@numba.njit(cache=True, nogil=True)
def brovey(ms: np.ndarray, pan: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Brovey transform ``ms_i * pan / I`` into ``out`` (float32 ``(B, N)``); NaN where ``I`` is 0 or an input NaN."""
    nb, n = ms.shape
    for k in range(n):
        p = np.float64(pan[k])
        inten = 0.0
        for i in range(nb):
            inten += weights[i] * np.float64(ms[i, k])
        if p != p or inten != inten or inten == 0:
            for i in range(nb):
                out[i, k] = np.nan
            continue
        ratio = p / inten
        for i in range(nb):
            out[i, k] = np.float64(ms[i, k]) * ratio
    return out


@numba.njit(cache=True, nogil=True)
def component_substitution(
    ms: np.ndarray,
    pan: np.ndarray,
    weights: np.ndarray,
    gains: np.ndarray,
    pan_scale: float,
    pan_offset: float,
    out: np.ndarray,
) -> np.ndarray:
    """Component substitution ``ms_i + g_i (P - I)``, ``P = pan * pan_scale + pan_offset``, into ``out`` ``(B, N)``.

    With unit gains and ``P = pan`` this is the generalised IHS (fast IHS) fusion;
    with ``g_i = cov(ms_i, I) / var(I)`` and ``P`` the pan matched to the mean and
    standard deviation of ``I``, the Gram-Schmidt (GS mode 1 / GSA) fusion.
    """
    nb, n = ms.shape
    for k in range(n):
        p = np.float64(pan[k]) * pan_scale + pan_offset
        inten = 0.0
        for i in range(nb):
            inten += weights[i] * np.float64(ms[i, k])
        detail = p - inten
        if detail != detail:
            for i in range(nb):
                out[i, k] = np.nan
            continue
        for i in range(nb):
            out[i, k] = np.float64(ms[i, k]) + gains[i] * detail
    return out


#: Length of the :func:`cs_moments` vector for ``B`` bands: ``N_MOMENTS + 2 * B``.
N_MOMENTS = 5


@numba.njit(cache=True, nogil=True)
def cs_moments(ms: np.ndarray, pan: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sums over the pixels where every input is valid, float64.

    ``[count, sum I, sum I**2, sum pan, sum pan**2, sum ms_i (B values), sum ms_i I (B values)]``,
    from which the means, variances and covariances of the Gram-Schmidt fusion follow.
    """
    nb, n = ms.shape
    out = np.zeros(N_MOMENTS + 2 * nb, dtype=np.float64)
    for k in range(n):
        p = np.float64(pan[k])
        inten = 0.0
        for i in range(nb):
            inten += weights[i] * np.float64(ms[i, k])
        if p != p or inten != inten:
            continue
        out[0] += 1.0
        out[1] += inten
        out[2] += inten * inten
        out[3] += p
        out[4] += p * p
        for i in range(nb):
            m = np.float64(ms[i, k])
            out[N_MOMENTS + i] += m
            out[N_MOMENTS + nb + i] += m * inten
    return out
