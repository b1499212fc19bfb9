"""Texture: grey-level co-occurrence (GLCM, Haralick) features in a moving window.

Every pixel gets the features of the GLCM of the ``window`` x ``window`` patch
centred on it, as ``skimage.feature.graycomatrix`` + ``graycoprops`` compute
them on that patch once quantised:

* **Quantisation.** Values become ``levels`` grey levels,
  ``floor((v - lo) / (hi - lo) * levels)`` clipped to ``[0, levels - 1]``,
  with ``(lo, hi)`` the GLOBAL min and max of the image (all slices of a
  stack together, each variable of a Dataset on its own; a lazy reduction,
  one extra pass over the input) or the
  ``value_range`` you give (values outside it are clipped). A fixed range,
  e.g. ``(0, 1)`` for reflectance, makes features comparable across images
  and avoids that extra pass.
* **Pairs.** For a distance ``d`` and angle ``a`` the pair of ``(r, c)`` is
  ``(r + round(sin(a) d), c + round(cos(a) d))`` (rounded half away from
  zero, as skimage; angle ``pi/2`` pairs a pixel with the one BELOW it), and
  a pair counts when both pixels are in the window.
* **NaN.** Pairs that involve a NaN pixel, or a pixel past the image border,
  are left out; the window near the border is therefore the part of it inside
  the image. A pixel is NaN where it is NaN itself or where its GLCM holds no
  pair at all.
* **Chunks.** Run with a halo of ``window // 2`` pixels (both pixels of a pair
  are inside the window, so the window radius is all a chunk needs), and
  computed from exact integer sums, so any chunking gives the same bits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from .edges import as_float, image_layout, neighbourhood
from .filters import float_values
from .errors import InvalidArgumentError
from .kernels.texture import FEATURES, MAX_LEVELS, MAX_WINDOW, glcm_features, quantize

__all__ = ["glcm", "glcm_array", "GLCM_FEATURES", "DEFAULT_GLCM_FEATURES", "DEFAULT_ANGLES"]

#: Every feature :func:`glcm` computes (names as ``skimage.feature.graycoprops``).
GLCM_FEATURES = FEATURES

#: Computed when ``features`` is not given.
DEFAULT_GLCM_FEATURES = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation", "entropy")

#: 0, 45, 90 and 135 degrees, in radians.
DEFAULT_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)


def _round_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _offsets(distances: Sequence[int], angles: Sequence[float]) -> np.ndarray:
    """``(row, col)`` offsets, distance-major, as skimage's ``graycomatrix`` rounds them."""
    return np.array(
        [[_round_away(math.sin(a) * d), _round_away(math.cos(a) * d)] for d in distances for a in angles], np.int64
    )


def _feature_codes(features: str | Sequence[str] | None) -> tuple[str, ...]:
    if features is None:
        names = DEFAULT_GLCM_FEATURES
    else:
        names = (features,) if isinstance(features, str) else tuple(features)
    lookup = {f.lower(): f for f in FEATURES}
    out = []
    for name in names:
        canonical = lookup.get(str(name).lower())
        if canonical is None:
            raise InvalidArgumentError(f"unknown GLCM feature {name!r}; use some of {', '.join(FEATURES)}")
        out.append(canonical)
    if not out:
        raise InvalidArgumentError("features is empty; name at least one of " + ", ".join(FEATURES))
    return tuple(out)


def _glcm_block(radius, offsets, n_dist, levels, symmetric, codes, average, block, lo, hi) -> np.ndarray:
    """GLCM features of one chunk (with its halo) for every 2-D slice along the leading axes."""
    lo, hi = float(lo), float(hi)
    lead = block.shape[:-2]
    n_ang = len(offsets) // n_dist
    shape = (len(codes), n_dist, 1 if average else n_ang, block.shape[-2] - 2 * radius, block.shape[-1] - 2 * radius)
    out = np.empty((*lead, *shape), dtype=np.float32)
    for idx in np.ndindex(*lead):
        b = np.ascontiguousarray(block[idx])
        q = quantize(b.reshape(-1), lo, hi, levels).reshape(b.shape)
        out[idx] = glcm_features(q, radius, offsets, n_dist, levels, symmetric, codes, average)
    if average:
        out = out[..., 0, :, :]
    return out


def glcm_array(
    arr,
    *,
    window: int = 7,
    levels: int = 32,
    distances: Sequence[int] = (1,),
    angles: Sequence[float] = DEFAULT_ANGLES,
    features: str | Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    symmetric: bool = True,
    average_angles: bool = True,
):
    """The dask/numpy layer of :func:`glcm`.

    ``(*lead, y, x)`` to float32 ``(*lead, feature, distance, [angle], y, x)``.
    """
    window, levels = int(window), int(levels)
    if window < 3 or window % 2 == 0 or window > MAX_WINDOW:
        raise InvalidArgumentError(f"window must be an odd number of pixels from 3 to {MAX_WINDOW}, got {window}")
    if not 2 <= levels <= MAX_LEVELS:
        raise InvalidArgumentError(f"levels must be from 2 to {MAX_LEVELS}, got {levels}")
    distances = [int(d) for d in np.atleast_1d(distances)]
    if not distances or min(distances) < 1 or max(distances) >= window:
        raise InvalidArgumentError(
            f"distances must be whole pixels from 1 to window - 1 = {window - 1}, got {distances}; "
            "widen the window or shorten the distances"
        )
    angles = [float(a) for a in np.atleast_1d(angles)]
    if not angles:
        raise InvalidArgumentError("angles is empty; pass e.g. angles=(0, np.pi / 2)")
    names = _feature_codes(features)
    codes = np.array([FEATURES.index(n) for n in names], dtype=np.int64)
    arr = as_float(arr)
    if value_range is None:
        if is_dask(arr):
            lo, hi = da.nanmin(arr), da.nanmax(arr)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN input: every pixel NaN
                lo, hi = np.nanmin(arr), np.nanmax(arr)
    else:
        lo, hi = (float(v) for v in value_range)
        if not hi >= lo:
            raise InvalidArgumentError(f"value_range must be (low, high) with high >= low, got {value_range}")
    radius = window // 2
    offsets = _offsets(distances, angles)
    block = partial(_glcm_block, radius, offsets, len(distances), levels, bool(symmetric), codes, bool(average_angles))
    new_axes = (len(codes), len(distances)) if average_angles else (len(codes), len(distances), len(angles))
    return neighbourhood(block, arr, radius, np.nan, dtype=np.float32, new_axes=new_axes, args=(lo, hi))


def glcm(
    data: xr.DataArray | xr.Dataset,
    *,
    window: int = 7,
    levels: int = 32,
    distances: Sequence[int] = (1,),
    angles: Sequence[float] = DEFAULT_ANGLES,
    features: str | Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    symmetric: bool = True,
    average_angles: bool = True,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """GLCM texture features of every pixel, in a moving window.

    See the module docstring for the quantisation, the pairs, NaN and chunks.

    Parameters
    ----------
    data
        An image or a stack of images (other dims are kept, and each 2-D
        slice is processed on its own), or a Dataset (each variable).
    window
        Window size in pixels (odd, 3 to 255).
    levels
        Number of grey levels (2 to 256).
    distances
        Pair distances in pixels (1 to ``window - 1``).
    angles
        Pair angles in radians.
    features
        Names from :data:`GLCM_FEATURES` (``contrast``, ``dissimilarity``,
        ``homogeneity``, ``ASM``, ``energy``, ``correlation``, ``entropy``,
        ``mean``, ``variance``, ``std``); default
        :data:`DEFAULT_GLCM_FEATURES`. ``entropy`` is ``-sum(p ln p)``, the
        others are ``graycoprops``'s.
    value_range
        ``(low, high)`` mapped onto the grey levels; default the image's
        global NaN-skipping min and max.
    symmetric
        Count each pair in both orders (``graycomatrix(symmetric=True)``, the
        usual choice for texture; skimage's default is False). The features
        are those of the normalised matrix, as ``graycoprops`` normalises
        whatever it is given, so ``graycomatrix``'s ``normed`` has no effect on
        them and is not a parameter here.
    average_angles
        Average each feature over the angles (the usual rotation-invariant
        texture); if False the result has an ``angle`` dim.
    dims
        The spatial dims (rows, columns).

    Returns
    -------
    xarray.DataArray or Dataset
        float32 with dims ``(*other, "feature", "distance", ["angle"], y, x)``
        and coords for the feature names, distances and angles (radians);
        ``data``'s coords and CRS kept; lazy if ``data`` is.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]), dims=("y", "x"))
    >>> tex = glcm(img, window=3, levels=4, angles=[0], features=["contrast", "homogeneity"])
    >>> tex.dims
    ('feature', 'distance', 'y', 'x')
    >>> tex.sel(feature="contrast", distance=1).values
    array([[0. , 0.5, 0.5, 0. ],
           [0. , 0.5, 0.5, 0. ],
           [0. , 0.5, 0.5, 0. ],
           [0. , 0.5, 0.5, 0. ]], dtype=float32)
    """
    if isinstance(data, xr.Dataset):
        kwargs = dict(window=window, levels=levels, distances=distances, angles=angles, features=features)
        kwargs.update(value_range=value_range, symmetric=symmetric, average_angles=average_angles, dims=dims)
        out = xr.Dataset({k: glcm(v, **kwargs) for k, v in data.data_vars.items()})
        out.attrs = dict(data.attrs)
        return out
    img = image_layout(data, dims)
    img = img.copy(data=float_values(img))  # stored integers decoded (scale, offset, nodata) as the loader does
    names = _feature_codes(features)
    values = glcm_array(
        img.data,
        window=window,
        levels=levels,
        distances=distances,
        angles=angles,
        features=names,
        value_range=value_range,
        symmetric=symmetric,
        average_angles=average_angles,
    )
    lead = img.dims[:-2]
    new_dims = ("feature", "distance") if average_angles else ("feature", "distance", "angle")
    coords = dict(img.coords)
    coords.update(feature=list(names), distance=[int(d) for d in np.atleast_1d(distances)])
    if not average_angles:
        coords["angle"] = [float(a) for a in np.atleast_1d(angles)]
    out = xr.DataArray(values, dims=(*lead, *new_dims, *img.dims[-2:]), coords=coords, name=data.name)
    out.attrs = {
        "long_name": "GLCM texture features",
        "window": int(window),
        "levels": int(levels),
        "value_range": "global min, max" if value_range is None else [float(v) for v in value_range],
        "symmetric": int(bool(symmetric)),
        "angles": [float(a) for a in np.atleast_1d(angles)],
        "angles_averaged": int(bool(average_angles)),
        "nodata": np.nan,
    }
    return out
