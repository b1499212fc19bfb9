"""Two-date change detection: difference, ratio, change vector analysis, dNBR and burn severity, Otsu thresholds.

Inputs are two co-registered images (one date each, e.g. two composites, or
``ds.isel(time=i)``): DataArrays of a band or index, or Datasets of bands.
Stored integers (attrs ``scale``, ``offset``, ``nodata``) are decoded to
float32 inside the kernels. Time-series methods (BFAST Monitor, CCDC) are in
:mod:`geoproc.timeseries`.

Burn severity classes of dNBR (``burn_severity``), after Key & Benson (2006),
"Landscape Assessment: Ground measure of severity, the Composite Burn Index;
and Remote sensing of severity, the Normalized Burn Ratio", USDA Forest
Service RMRS-GTR-164-CD (FIREMON), as tabulated by USGS and UN-SPIDER
(dNBR = NBR before - NBR after, unscaled; the source tables give x1000):

====  ================================  =====================
code  class                             dNBR range
====  ================================  =====================
0     nodata (dNBR is NaN)
1     enhanced regrowth, high           dNBR < -0.25
2     enhanced regrowth, low            -0.25 <= dNBR < -0.10
3     unburned                          -0.10 <= dNBR < 0.10
4     low severity                      0.10 <= dNBR < 0.27
5     moderate-low severity             0.27 <= dNBR < 0.44
6     moderate-high severity            0.44 <= dNBR < 0.66
7     high severity                     dNBR >= 0.66
====  ================================  =====================

Key & Benson give -0.5 and +1.3 as the approximate ends of the scale; values
beyond them (often clouds, water or misregistration) stay in the end classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import elementwise, is_dask, kernel_path, resolve
from .errors import InvalidArgumentError, UnknownBandError
from .kernels.change import change_vector, classify, histogram, two_date

__all__ = [
    "change",
    "burn_severity",
    "otsu_threshold",
    "change_mask",
    "BURN_SEVERITY_CLASSES",
    "BURN_SEVERITY_BOUNDS",
    "CHANGE_METHODS",
]

#: Methods of :func:`change`.
CHANGE_METHODS = ("difference", "ratio", "cva", "dnbr")

#: Burn severity class code -> name (Key & Benson 2006; see the module docstring).
BURN_SEVERITY_CLASSES = {
    0: "nodata",
    1: "enhanced regrowth, high",
    2: "enhanced regrowth, low",
    3: "unburned",
    4: "low severity",
    5: "moderate-low severity",
    6: "moderate-high severity",
    7: "high severity",
}
#: Lower dNBR bounds of classes 2..7.
BURN_SEVERITY_BOUNDS = (-0.25, -0.10, 0.10, 0.27, 0.44, 0.66)

_QUALITY_BANDS = ("scl", "SCL")


def _decode(var: xr.DataArray) -> tuple[float, float, float]:
    from .compositing import decoding

    return decoding(var) or (1.0, 0.0, np.nan)


def _one_date(var: xr.DataArray, which: str) -> xr.DataArray:
    if "time" in var.dims:
        if var.sizes["time"] != 1:
            raise InvalidArgumentError(
                f"{which} has {var.sizes['time']} dates; pick one (data.isel(time=i)) or composite them first"
            )
        var = var.isel(time=0)
    return var.drop_vars("time", errors="ignore")


def _pair(before: xr.DataArray, after: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    before, after = _one_date(before, "before"), _one_date(after, "after")
    if set(before.dims) != set(after.dims):
        raise InvalidArgumentError(f"before has dims {before.dims} but after {after.dims}; load both onto one grid")
    after = after.transpose(*before.dims)
    if before.shape != after.shape:
        raise InvalidArgumentError(
            f"before {before.shape} and after {after.shape} differ in shape; load them onto one grid"
        )
    for d in before.dims:
        if d in before.coords and d in after.coords and not np.array_equal(before[d].values, after[d].values):
            raise InvalidArgumentError(f"before and after differ along {d!r}; load them onto one grid (like=...)")
    return before, after


def _chunked_like(arr, like):
    if is_dask(like):
        return arr.rechunk(like.chunks) if is_dask(arr) else da.from_array(arr, chunks=like.chunks)
    return np.asarray(arr) if is_dask(arr) else arr


def two_date_array(before, after, ratio: bool, b_decode=(1.0, 0.0, np.nan), a_decode=(1.0, 0.0, np.nan)):
    """The dask/numpy layer: ``after - before`` (or ``after / before``) as float32.

    ``*_decode`` is ``(scale, offset, nodata)`` of each input.

    Examples
    --------
    >>> two_date_array(np.uint16([0, 100]), np.uint16([50, 150]), False, (0.01, 0.0, 0.0), (0.01, 0.0, 0.0))
    array([nan, 0.5], dtype=float32)
    """
    if is_dask(before) or is_dask(after):
        before = before if is_dask(before) else da.from_array(before)
        after = _chunked_like(after, before)
    return elementwise(two_date, before, after, dtype=np.float32, args=(*b_decode, *a_decode, bool(ratio)))


def _difference(before, after, ratio: bool, name: str, keep_attrs: dict) -> xr.DataArray:
    b, a = _pair(before, after)
    values = two_date_array(b.data, a.data, ratio, _decode(b), _decode(a))
    out = xr.DataArray(values, dims=b.dims, coords=b.coords, name=name)
    out.attrs = {**keep_attrs, "nodata": np.nan}
    return out


def _cva_block(path: str, *blocks: np.ndarray) -> np.ndarray:
    """One block: B before bands, then B after bands (decoded floats) -> ``(3, ...)``."""
    half = len(blocks) // 2
    shape = blocks[0].shape
    stack = [np.ascontiguousarray(b, dtype=np.float32).reshape(-1) for b in blocks]
    res = resolve(path)(np.stack(stack[:half]), np.stack(stack[half:]))
    return res.reshape((3, *shape))


def _cva(before: xr.Dataset, after: xr.Dataset, bands: Sequence[str] | None) -> xr.Dataset:
    if not isinstance(before, xr.Dataset) or not isinstance(after, xr.Dataset):
        raise InvalidArgumentError("cva needs two Datasets of bands (one variable per band); e.g. two composites")
    shared = [k for k in before.data_vars if k in after.data_vars and k not in _QUALITY_BANDS]
    names = list(bands) if bands is not None else shared
    for n in names:
        if n not in before.data_vars or n not in after.data_vars:
            raise UnknownBandError(f"band {n!r} is missing from before or after; pass bands=[...] that both hold")
    if not 1 <= len(names) <= 16:
        raise InvalidArgumentError(f"cva needs 1 to 16 bands, got {len(names)}; pass bands=[...]")
    pairs = [_pair(before[n], after[n]) for n in names]
    ref = pairs[0][0]
    arrays = []
    for half in (0, 1):
        for b, a in pairs:
            var = (b, a)[half]
            arrays.append(_decoded(var.data, _decode(var)))
    first = arrays[0]
    arrays = [first] + [_chunked_like(x, first) for x in arrays[1:]]
    path = kernel_path(change_vector)
    if is_dask(first):
        res = da.map_blocks(partial(_cva_block, path), *arrays, dtype=np.float32, new_axis=0, chunks=((3,), *first.chunks))
    else:
        res = _cva_block(path, *arrays)
    dims, coords = ref.dims, ref.coords
    sector = res[2]
    sector = (da.where(da.isnan(sector), 65535, sector) if is_dask(sector) else np.where(np.isnan(sector), 65535, sector))
    out = xr.Dataset(
        {
            "magnitude": (dims, res[0], {"long_name": "change vector magnitude", "nodata": np.nan}),
            "sector": (dims, sector.astype(np.uint16), {
                "long_name": "change direction: sum of 2**i over bands i that increased", "nodata": 65535,
                "bands": list(names),
            }),
        },
        coords=coords,
    )
    if len(names) == 2:
        out["angle"] = xr.DataArray(res[1], dims=dims, coords=coords, attrs={
            "long_name": f"change direction in degrees from {names[0]} towards {names[1]}",
            "units": "degree",
            "nodata": np.nan,
        })
    out.attrs = {"method": "cva", "bands": list(names)}
    return out


def _decoded(arr, dec):
    from .kernels.composite import decode

    scale, offset, nodata = dec
    if np.dtype(arr.dtype).kind == "f" and scale == 1.0 and offset == 0.0 and np.isnan(nodata):
        return arr
    return elementwise(decode, arr, dtype=np.float32, args=dec)


def _nbr(data, which: str) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        return data
    from .indices import index

    try:
        return index(data, "NBR")
    except UnknownBandError as exc:
        raise UnknownBandError(f"dNBR needs NIR and SWIR 2.2 um bands in {which} ({exc})") from None


def change(
    before: xr.DataArray | xr.Dataset,
    after: xr.DataArray | xr.Dataset,
    method: str = "difference",
    *,
    bands: Sequence[str] | None = None,
) -> xr.DataArray | xr.Dataset:
    """Change between two dates, pixel by pixel.

    Parameters
    ----------
    before, after
        The two dates on one grid: DataArrays of a band or index, or Datasets
        (``difference`` and ``ratio`` apply to every variable; ``cva`` and
        ``dnbr`` need Datasets of bands, or for ``dnbr`` NBR DataArrays). A
        ``time`` dimension of length 1 is dropped.
    method
        * ``difference``: ``after - before``;
        * ``ratio``: ``after / before`` (NaN where ``before`` is 0);
        * ``cva``: change vector analysis over ``bands``: ``magnitude``
          (Euclidean norm of the band differences), ``sector`` (direction code
          ``sum 2**i`` over the bands ``i`` that increased, as in n-band CVA)
          and, for two bands, ``angle`` (degrees from the first band's axis
          towards the second's);
        * ``dnbr``: ``NBR(before) - NBR(after)`` (positive where burnt), NBR
          from ``nir`` and ``swir22``; classify it with :func:`burn_severity`.
    bands
        ``cva``: the bands (default: all shared variables but SCL).

    Returns
    -------
    DataArray (or Dataset for Dataset input and ``cva``), float32 with NaN
    where either date is nodata; lazy for lazy input; coords and CRS of
    ``before``.

    Examples
    --------
    >>> a = xr.DataArray(np.float32([0.2, 0.4, np.nan]), dims="x")
    >>> b = xr.DataArray(np.float32([0.3, 0.2, 0.1]), dims="x")
    >>> change(a, b).values.round(3)
    array([ 0.1, -0.2,  nan], dtype=float32)
    >>> change(a, b, "ratio").values.round(3)
    array([1.5, 0.5, nan], dtype=float32)
    >>> pre = xr.Dataset({"red": a, "nir": a * 2})
    >>> post = xr.Dataset({"red": a + 0.3, "nir": a * 2 + 0.4})
    >>> c = change(pre, post, "cva")
    >>> c.magnitude.values.round(3), c.angle.values.round(2)
    (array([0.5, 0.5, nan], dtype=float32), array([53.13, 53.13,   nan], dtype=float32))
    >>> c.sector.values  # both bands increased: 1 + 2; 65535 is nodata
    array([    3,     3, 65535], dtype=uint16)
    """
    if method not in CHANGE_METHODS:
        raise InvalidArgumentError(f"unknown change method {method!r}; use one of {', '.join(CHANGE_METHODS)}")
    if method == "cva":
        return _cva(before, after, bands)
    if method == "dnbr":
        nbr_b, nbr_a = _nbr(before, "before"), _nbr(after, "after")
        out = _difference(nbr_a, nbr_b, False, "dNBR", {"long_name": "differenced Normalized Burn Ratio (before - after)"})
        return out
    ratio = method == "ratio"
    if isinstance(before, xr.Dataset) or isinstance(after, xr.Dataset):
        if not (isinstance(before, xr.Dataset) and isinstance(after, xr.Dataset)):
            raise InvalidArgumentError("before and after must both be Datasets or both DataArrays")
        names = list(bands) if bands is not None else [k for k in before.data_vars if k in after.data_vars]
        out = xr.Dataset({n: change(before[n], after[n], method) for n in names})
        out.attrs = {"method": method}
        return out
    name = f"{before.name or 'value'}_{method}"
    attrs = {"long_name": f"{method} after vs before", "method": method}
    return _difference(before, after, ratio, name, attrs)


def burn_severity(dnbr: xr.DataArray) -> xr.DataArray:
    """Burn severity classes of dNBR (Key & Benson 2006; table in the module docstring).

    Parameters
    ----------
    dnbr
        ``NBR(before) - NBR(after)``, unscaled (as ``change(..., "dnbr")``).

    Returns
    -------
    xarray.DataArray
        uint8 codes 1..7 (:data:`BURN_SEVERITY_CLASSES`), 0 where dNBR is NaN
        (attrs ``nodata = 0``, ``flag_values``, ``flag_meanings``).

    Examples
    --------
    >>> d = xr.DataArray(np.float32([-0.3, -0.25, 0.0, 0.1, 0.3, 0.5, 0.66, np.nan]), dims="x")
    >>> burn_severity(d).values
    array([1, 2, 3, 4, 5, 6, 7, 0], dtype=uint8)
    """
    if np.dtype(dnbr.dtype).kind != "f":
        raise InvalidArgumentError(f"dNBR must be floats (unscaled), got {dnbr.dtype}; compute it with change(..., 'dnbr')")
    # bounds in the data's precision: a float32 dNBR of -0.1 is the table's -0.100 (unburned)
    bounds = np.asarray(BURN_SEVERITY_BOUNDS, dtype=dnbr.dtype)
    codes = elementwise(classify, dnbr.data, dtype=np.uint8, args=(bounds,))
    out = xr.DataArray(codes, dims=dnbr.dims, coords=dnbr.coords, name="burn_severity")
    out.attrs = {
        "nodata": 0,
        "flag_values": list(BURN_SEVERITY_CLASSES),
        "flag_meanings": " ".join(
            v.replace(", ", "_").replace(" ", "_").replace("-", "_") for v in BURN_SEVERITY_CLASSES.values()
        ),
        "lower_bounds": list(BURN_SEVERITY_BOUNDS),
        "source": "Key & Benson (2006), USDA RMRS-GTR-164-CD",
    }
    return out


def _histogram_block(path: str, edges: np.ndarray, block: np.ndarray) -> np.ndarray:
    return resolve(path)(np.ascontiguousarray(block).reshape(-1), edges)


def otsu_threshold(data: xr.DataArray, bins: int = 256) -> float:
    """Otsu's threshold of ``data``, from ONE histogram over all of it (every chunk), not per chunk.

    Two passes over a lazy input: the global minimum and maximum, then one
    histogram per chunk (numba), summed; Otsu's criterion (maximal
    between-class variance) is evaluated on the sum, as
    ``skimage.filters.threshold_otsu`` does (``bins`` equal bins between the
    minimum and maximum, the threshold at a bin centre, in float64). NaN
    values are left out. Computes (returns a number, not a lazy object).

    Parameters
    ----------
    data
        Values, e.g. a change magnitude.
    bins
        Number of histogram bins.

    Returns
    -------
    float
        Pixels strictly above it are the upper class (``change_mask``).

    Examples
    --------
    >>> v = xr.DataArray(np.r_[np.zeros(50), np.ones(50), np.nan], dims="x")
    >>> float(otsu_threshold(v))
    0.001953125
    """
    if int(bins) < 2:
        raise InvalidArgumentError(f"bins must be >= 2, got {bins}")
    arr = data.data
    if np.dtype(arr.dtype).kind not in "fiu":
        raise InvalidArgumentError(f"otsu_threshold needs numbers, got {arr.dtype}")
    if is_dask(arr):
        lo, hi = dask.compute(da.nanmin(arr), da.nanmax(arr))
    else:
        with np.errstate(invalid="ignore"):
            lo, hi = (np.nanmin(arr), np.nanmax(arr)) if np.isfinite(arr).any() else (np.nan, np.nan)
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InvalidArgumentError("no finite value to threshold (all NaN or infinite); check the input")
    if lo == hi:
        return lo
    edges = np.linspace(lo, hi, int(bins) + 1)
    func = partial(_histogram_block, kernel_path(histogram), edges)
    if is_dask(arr):
        parts = [dask.delayed(func)(b) for b in arr.to_delayed().ravel()]
        counts = np.sum(dask.compute(*parts), axis=0)
    else:
        counts = func(arr)
    centers = (edges[:-1] + edges[1:]) / 2.0
    counts = counts.astype(np.float64)
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(counts * centers) / weight1
        mean2 = (np.cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]
    variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centers[int(np.nanargmax(variance12))])


def change_mask(data: xr.DataArray, threshold: float | str = "otsu", bins: int = 256) -> xr.DataArray:
    """True where ``data`` (e.g. a change magnitude) exceeds ``threshold``; False elsewhere and at NaN.

    Parameters
    ----------
    data
        Values to threshold.
    threshold
        A number, or ``"otsu"`` for :func:`otsu_threshold` over all of ``data``
        (computed now; the mask itself stays lazy for lazy input).
    bins
        Histogram bins for Otsu.

    Returns
    -------
    xarray.DataArray
        Boolean, attrs ``threshold``.

    Examples
    --------
    >>> v = xr.DataArray(np.float32([0.0, 0.0, 0.9, 1.0, np.nan]), dims="x")
    >>> change_mask(v).values
    array([False, False,  True,  True, False])
    """
    t = otsu_threshold(data, bins) if isinstance(threshold, str) and threshold == "otsu" else threshold
    if isinstance(t, str):
        raise InvalidArgumentError(f"threshold must be a number or 'otsu', got {threshold!r}")
    out = data > float(t)
    out.name = "change"
    out.attrs = {"threshold": float(t), "threshold_method": "otsu" if threshold == "otsu" else "given"}
    return out
