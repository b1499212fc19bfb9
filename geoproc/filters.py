"""Noise reduction: median, Gaussian, bilateral and Lee (SAR speckle) filters.

Each filter works on the spatial dims (``y``, ``x``) of a DataArray, one image per
index of its other dims (``band``, ``time``), or on every variable of a Dataset.

* **Chunking.** A chunk is filtered with a halo of ``radius`` pixels taken from its
  neighbours (``dask.array.map_overlap``, no halo at the image edges): a chunked
  result equals the unchunked one bit for bit.
* **Boundary.** ``scipy.ndimage`` mode ``'reflect'`` at the image edges
  (``d c b a | a b c d | d c b a``), the default of ``median_filter`` and
  ``gaussian_filter``.
* **NaN is nodata.** A NaN pixel stays NaN; NaN neighbours are left out of the
  window (the median of the valid values; weights renormalised over the valid
  ones; local statistics over the valid ones). Integer input is decoded first
  (``scale``, ``offset`` and ``nodata`` attributes, as ``geoproc.load(raw=True)``
  leaves them) to float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask, kernel_path, resolve
from .errors import InvalidArgumentError
from .kernels.filters import (
    LEE_ADDITIVE,
    LEE_MULTIPLICATIVE,
    bilateral_filter as _bilateral_kernel,
    gaussian_filter as _gaussian_kernel,
    lee_filter as _lee_kernel,
    median_filter as _median_kernel,
    sorting_network,
)

__all__ = [
    "median_filter",
    "gaussian_filter",
    "bilateral_filter",
    "lee_filter",
    "filter_array",
    "gaussian_weights",
]

#: Coefficient of variation of single-look amplitude speckle, ``sqrt(4 / pi - 1)``.
AMPLITUDE_CV = math.sqrt(4.0 / math.pi - 1.0)


# --------------------------------------------------------------------------- shared xarray plumbing
# (also used by geoproc.enhance and geoproc.pansharpen)


def spatial_dims(data: xr.DataArray, dims: tuple[str, str]) -> tuple[str, str]:
    """``dims`` if ``data`` has both, else a typed error that says how to name them."""
    missing = [d for d in dims if d not in data.dims]
    if missing:
        raise InvalidArgumentError(
            f"{data.name or 'data'} has no dimension {missing[0]!r} (dims: {tuple(data.dims)}); "
            "pass the names of its row and column dims with dims=('y', 'x')"
        )
    return dims


def float_values(data: xr.DataArray):
    """The values of ``data`` as floats (numpy or dask), NaN for nodata.

    Floats are kept as they are. Integers are decoded to float32 as the loader does:
    ``raw * scale + offset`` in float32, NaN where ``raw == nodata`` (the ``scale``,
    ``offset`` and ``nodata`` attributes; 1, 0 and none by default).
    """
    arr = data.data
    kind = np.dtype(arr.dtype).kind
    if kind == "f":
        return arr
    if kind not in "iub":
        raise InvalidArgumentError(
            f"{data.name or 'data'} has dtype {arr.dtype}, not numbers; convert it with .astype('float32')"
        )
    scale = np.float32(data.attrs.get("scale", 1.0))
    offset = np.float32(data.attrs.get("offset", 0.0))
    nodata = data.attrs.get("nodata")
    mod = da if is_dask(arr) else np
    values = arr.astype(np.float32) * scale + offset
    if nodata is not None and not np.isnan(float(nodata)):
        values = mod.where(arr == nodata, np.float32(np.nan), values)
    return values


def result_attrs(data: xr.DataArray, **extra) -> dict:
    """``data``'s attrs for a float result: decoding attributes dropped, ``nodata`` NaN, ``extra`` added."""
    dropped = ("scale", "offset", "scale_factor", "add_offset", "_FillValue")
    attrs = {k: v for k, v in data.attrs.items() if k not in dropped}
    attrs["nodata"] = np.nan
    attrs.update(extra)
    return attrs


def per_variable(
    func: Callable[..., xr.DataArray], data: xr.Dataset, dims: tuple[str, str], *args, **kwargs
) -> xr.Dataset:
    """``func`` applied to each variable of ``data`` that has both spatial ``dims``; the others are kept."""
    out = {
        name: func(var, *args, dims=dims, **kwargs) if all(d in var.dims for d in dims) else var
        for name, var in data.data_vars.items()
    }
    ds = xr.Dataset(out)
    ds.attrs = dict(data.attrs)
    return ds


def wrap(values, data: xr.DataArray, ordered: xr.DataArray, attrs: dict) -> xr.DataArray:
    """A DataArray of ``values`` laid out as ``ordered``, back in ``data``'s dim order, with ``attrs``."""
    out = xr.DataArray(values, dims=ordered.dims, coords=ordered.coords, name=data.name, attrs=attrs)
    return out.transpose(*data.dims)


# --------------------------------------------------------------------------- dask / numpy layer


def _filter_block(path: str, args: tuple, block: np.ndarray) -> np.ndarray:
    """One block ``(..., H, W)``: the planes through the kernel at ``path`` (module-level: pickled by reference)."""
    shape = block.shape
    planes = np.ascontiguousarray(block).reshape((-1, *shape[-2:]))
    out = np.empty(planes.shape, dtype=np.float32)  # numpy's allocator: huge pages (see geoproc.kernels.filters)
    if planes.shape[0] == 0 or 0 in shape[-2:]:
        return out.reshape(shape)
    return resolve(path)(planes, *args, out).reshape(shape)


def filter_array(kernel, values, radius: int | tuple[int, int], args: tuple = ()):
    """The dask/numpy layer: ``kernel(planes, *args, out)`` over the last two axes of ``values``.

    ``kernel`` is one of :mod:`geoproc.kernels.filters`; ``radius`` (``(ry, rx)`` or
    one int) is the halo each dask chunk gets from its neighbours, none at the image
    edges, so that chunked and unchunked results are identical. Returns float32, lazy
    for dask input.
    """
    if values.ndim < 2:
        raise InvalidArgumentError(f"filters need at least 2 dims (y, x), got shape {values.shape}")
    ry, rx = (radius, radius) if np.isscalar(radius) else radius
    func = partial(_filter_block, kernel_path(kernel), tuple(args))
    if not is_dask(values):
        return func(np.asarray(values))
    nd = values.ndim
    depth = {ax: 0 for ax in range(nd)}
    for ax, r in ((nd - 2, int(ry)), (nd - 1, int(rx))):
        if r >= values.shape[ax]:  # the halo would span the image: filter whole rows/columns instead
            values = values.rechunk({ax: -1})
        depth[ax] = r if values.numblocks[ax] > 1 else 0
    meta = np.empty((0,) * nd, np.float32)
    return da.map_overlap(func, values, depth=depth, boundary="none", dtype=np.float32, meta=meta)


@lru_cache(maxsize=32)
def _median_network(size: int) -> np.ndarray:
    k = size * size
    return sorting_network(k, keep=(k // 2 - 1, k // 2) if k > 1 else (0,))


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, weights summing to 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    if sigma == 0:
        return np.ones(1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


# --------------------------------------------------------------------------- checks


def _odd_size(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise InvalidArgumentError(f"{name} must be an odd positive integer (3, 5, 7...), got {size!r}")
    return int(size)


def positive_number(value, name: str, *, zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``zero``), or a typed error naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise InvalidArgumentError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _apply(data, dims, kernel, radius, args, attrs_extra, recurse):
    if isinstance(data, xr.Dataset):
        return per_variable(recurse, data, dims)
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(f"expected an xarray DataArray or Dataset, got {type(data).__name__}")
    ordered = data.transpose(..., *spatial_dims(data, dims))
    values = filter_array(kernel, float_values(ordered), radius, args)
    return wrap(values, data, ordered, result_attrs(data, **attrs_extra))


# --------------------------------------------------------------------------- public functions


def median_filter(
    data: xr.DataArray | xr.Dataset, size: int = 3, *, dims: tuple[str, str] = ("y", "x")
) -> xr.DataArray | xr.Dataset:
    """Median of the ``size x size`` window around each pixel, NaN ignored.

    Parameters
    ----------
    data
        A DataArray with the spatial ``dims`` (other dims such as ``band`` or
        ``time`` are filtered image by image), or a Dataset (each variable that has
        them; others are kept as they are).
    size
        Window side in pixels, odd.
    dims
        Names of the row and column dims.

    Returns
    -------
    Same type as ``data``: float32, same dims, coords, attrs and CRS; lazy if
    ``data`` is. Each pixel is the median of the valid (non-NaN) values of its
    window, the mean of the two middle ones when their count is even (as
    ``numpy.nanmedian``); NaN pixels stay NaN. Without NaN this equals
    ``scipy.ndimage.median_filter(img, size, mode='reflect')`` exactly.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[1, 1, 1], [1, 9, 1], [1, np.nan, 1]]), dims=("y", "x"))
    >>> median_filter(img, 3).values
    array([[ 1.,  1.,  1.],
           [ 1.,  1.,  1.],
           [ 1., nan,  1.]], dtype=float32)
    """
    size = _odd_size(size)
    recurse = partial(median_filter, size=size)
    args = (size, _median_network(size))
    return _apply(data, dims, _median_kernel, size // 2, args, {"filter": f"median size={size}"}, recurse)


def gaussian_filter(
    data: xr.DataArray | xr.Dataset,
    sigma: float | tuple[float, float] = 1.0,
    *,
    truncate: float = 4.0,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Gaussian smoothing, NaN-aware (normalised convolution).

    Parameters
    ----------
    data
        A DataArray with the spatial ``dims``, or a Dataset (see :func:`median_filter`).
    sigma
        Standard deviation in pixels, or ``(sigma_y, sigma_x)``.
    truncate
        The kernel reaches ``int(truncate * sigma + 0.5)`` pixels each side, as in
        ``scipy.ndimage.gaussian_filter``.
    dims
        Names of the row and column dims.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Same type as ``data``: float32, same dims, coords, attrs and CRS; lazy if
        ``data`` is. Each pixel is ``sum(w v) / sum(w)`` over the valid pixels of its
        window (scipy's separable kernel, sums in float64), so NaN neighbours are left
        out and the weights of the others renormalised; NaN pixels stay NaN. Without NaN
        this is ``scipy.ndimage.gaussian_filter(img, sigma, mode='reflect',
        truncate=truncate)`` up to float32 rounding.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[0, 0, 0], [0, 4, 0], [0, 0, np.nan]]), dims=("y", "x"))
    >>> gaussian_filter(img, 0.5).values.round(3)
    array([[0.046, 0.336, 0.046],
           [0.336, 2.503, 0.371],
           [0.046, 0.371,   nan]], dtype=float32)
    """
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)
    sy, sx = positive_number(sy, "sigma", zero=True), positive_number(sx, "sigma", zero=True)
    truncate = positive_number(truncate, "truncate")
    wy, wx = gaussian_weights(sy, truncate), gaussian_weights(sx, truncate)
    recurse = partial(gaussian_filter, sigma=(sy, sx), truncate=truncate)
    extra = {"filter": f"gaussian sigma=({sy:g}, {sx:g}) truncate={truncate:g}"}
    return _apply(data, dims, _gaussian_kernel, (len(wy) // 2, len(wx) // 2), (wy, wx), extra, recurse)


def bilateral_filter(
    data: xr.DataArray | xr.Dataset,
    *,
    sigma_color: float,
    sigma_spatial: float = 1.0,
    size: int | None = None,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Edge-preserving smoothing: the bilateral filter (Tomasi & Manduchi 1998), NaN-aware.

    Parameters
    ----------
    data
        A DataArray with the spatial ``dims``, or a Dataset (see :func:`median_filter`).
    sigma_color
        Standard deviation of the range (value) weights, in data units: neighbours
        that differ by much more than this barely count.
    sigma_spatial
        Standard deviation of the spatial weights, in pixels.
    size
        Window side, odd; default ``max(5, 2 * ceil(3 * sigma_spatial) + 1)`` as in
        ``skimage.restoration.denoise_bilateral``.
    dims
        Names of the row and column dims.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Same type as ``data``: float32, same dims, coords, attrs and CRS; lazy if
        ``data`` is. Each pixel ``v0`` becomes ``sum(w v) / sum(w)`` over the valid
        pixels ``v`` of its window with ``w = exp(-d**2 / (2 sigma_spatial**2)) *
        exp(-(v - v0)**2 / (2 sigma_color**2))`` (``d`` the distance in pixels),
        computed in float64; NaN pixels stay NaN. Unlike scikit-image, the range weight
        is computed, not read from a quantised table, and the border is mirrored
        (scipy ``reflect``) rather than padded with zeros.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[0, 0, 10, 10]] * 4), dims=("y", "x"))
    >>> bilateral_filter(img, sigma_color=1.0, size=3).values[0].round(3)  # the step is kept
    array([ 0.,  0., 10., 10.], dtype=float32)
    """
    sigma_color = positive_number(sigma_color, "sigma_color")
    sigma_spatial = positive_number(sigma_spatial, "sigma_spatial")
    size = max(5, 2 * math.ceil(3 * sigma_spatial) + 1) if size is None else _odd_size(size)
    recurse = partial(bilateral_filter, sigma_color=sigma_color, sigma_spatial=sigma_spatial, size=size)
    extra = {"filter": f"bilateral size={size} sigma_color={sigma_color:g} sigma_spatial={sigma_spatial:g}"}
    return _apply(data, dims, _bilateral_kernel, size // 2, (size // 2, sigma_spatial, sigma_color), extra, recurse)


def lee_filter(
    data: xr.DataArray | xr.Dataset,
    size: int = 7,
    *,
    looks: float = 1.0,
    amplitude: bool = False,
    noise_var: float | None = None,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Lee (1980) speckle filter from the local mean and variance, NaN-aware.

    Each pixel ``z`` becomes ``mean + k (z - mean)`` with ``k = var_x / (var_x +
    noise_var)``, where ``mean`` and ``var_z`` are the mean and (population)
    variance of the valid pixels of its ``size x size`` window:

    * multiplicative speckle (SAR, the default): ``z = x v`` with ``E[v] = 1`` and
      ``var(v) = cu**2``, ``cu**2 = 1 / looks`` for intensity and
      ``(4 / pi - 1) / looks`` for amplitude (``amplitude=True``); then
      ``noise_var = mean**2 cu**2`` and ``var_x = (var_z - noise_var) / (1 + cu**2)``
      (Lee 1980, eq. for multiplicative noise).
    * additive noise (``noise_var`` given): ``z = x + v``, ``var_x = var_z - noise_var``.

    ``var_x`` is clipped at 0, so homogeneous areas get the local mean (``k = 0``)
    and edges and point targets keep their value (``k`` near 1).

    Parameters
    ----------
    data
        A DataArray with the spatial ``dims``, or a Dataset (see :func:`median_filter`).
    size
        Window side, odd.
    looks
        Equivalent number of looks of the (multi-looked) SAR image.
    amplitude
        The data are amplitudes rather than intensities (power).
    noise_var
        Variance of additive noise; selects the additive model (``looks`` and
        ``amplitude`` are then unused).
    dims
        Names of the row and column dims.

    Returns
    -------
    Same type as ``data``: float32, same dims, coords, attrs and CRS; lazy if
    ``data`` is; NaN pixels stay NaN and are left out of the window statistics.

    Examples
    --------
    >>> step = xr.DataArray(np.float32([[1, 1, 1, 9, 9, 9]] * 3), dims=("y", "x"))
    >>> lee_filter(step, 3, looks=4).values[0].round(3)  # flat areas kept, the edge mostly kept
    array([1.   , 1.   , 1.744, 7.002, 9.   , 9.   ], dtype=float32)
    """
    size = _odd_size(size)
    if noise_var is not None:
        model, noise = LEE_ADDITIVE, positive_number(noise_var, "noise_var", zero=True)
        label = f"lee size={size} additive noise_var={noise:g}"
    else:
        looks = positive_number(looks, "looks")
        model, noise = LEE_MULTIPLICATIVE, (AMPLITUDE_CV**2 if amplitude else 1.0) / looks
        label = f"lee size={size} {'amplitude' if amplitude else 'intensity'} looks={looks:g}"
    recurse = partial(lee_filter, size=size, looks=looks, amplitude=amplitude, noise_var=noise_var)
    return _apply(data, dims, _lee_kernel, size // 2, (size, model, noise), {"filter": label}, recurse)
