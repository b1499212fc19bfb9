"""Contrast enhancement for display: percentile stretch, gamma, histogram equalisation, CLAHE, RGB(A) composites.

Statistics are **global**: a band's percentiles, range and histogram are taken over
the whole array (every chunk, every date), never chunk by chunk, so that the tiles of
a mosaic are stretched alike. Each is a dask reduction that stays lazy:

1. the band's range ``[min, max]``: one small task per chunk, combined;
2. a histogram of ``bins`` equal bins over that range: one per chunk, summed (the
   counts are integers, so the sum does not depend on the chunking);
3. percentiles read off the cumulative histogram, each order statistic placed
   uniformly within its bin: the error is at most one bin width,
   ``(max - min) / bins`` (with the default 65536 bins, 1.5e-5 of the range), and
   q = 0 and 100 are exact.

A band is a variable of a Dataset, or one index of a ``band`` dim; the statistics
pool all its other dims (``time`` included). NaN is nodata: left out of the
statistics, and NaN (transparent in :func:`rgb`) in the results. Lazy input reads
its source once for the range and once for the histogram before the results are
computed; ``persist()`` an expensive input first.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask, map_blocks
from .errors import InvalidArgumentError, UnknownBandError
from .filters import float_values, per_variable, positive_number, result_attrs, spatial_dims, wrap
from .kernels import enhance as _k
from .kernels.enhance import clahe_apply, clahe_luts, equalize, histogram, rgba, value_range

__all__ = [
    "percentiles",
    "stretch",
    "adjust_gamma",
    "equalize_hist",
    "clahe",
    "rgb",
    "value_range_array",
    "histogram_array",
    "percentiles_array",
    "stretch_array",
    "gamma_array",
    "equalize_hist_array",
    "clahe_array",
    "rgba_array",
]

# --------------------------------------------------------------------------- dask / numpy layer


def lazy_call(func, length: int, dtype, *args):
    """``func(*args)`` -> 1-D array of ``length``: now for numpy arguments, one dask task if any is dask.

    Dask arguments reach ``func`` whole and flattened (they are small: ranges,
    histograms, statistics). Small dask arrays are always handed to tasks as
    positional arguments, never as keyword arguments: dask embeds a keyword
    collection as a separately named copy of its graph, which would compute the
    statistics (and read their input) twice.
    """
    if not any(is_dask(a) for a in args):
        return func(*args)
    args = [a.rechunk(-1).reshape(-1) if is_dask(a) else a for a in args]
    return da.map_blocks(func, *args, chunks=((length,),), dtype=dtype, meta=np.empty((0,), dtype))


def _rows(block: np.ndarray) -> np.ndarray:
    """``block`` as a C-contiguous 2-D ``(rows, last axis)`` array.

    A strided view (a chunk sliced out of a numpy array) is copied first: numba's code
    for non-contiguous 2-D arrays runs about 50 times slower than the copy costs.
    """
    block = np.ascontiguousarray(block)
    return block.reshape(-1, block.shape[-1]) if block.ndim else block.reshape(1, 1)


def _per_block(block_func, values, width: int, dtype, *small):
    """``block_func(block, *small)`` per chunk, each giving ``width`` numbers in place of its last axis.

    Returns shape ``(*numblocks[:-1], numblocks[-1] * width)``: flattened, the
    numbers of each chunk follow one another.
    """
    chunks = tuple((1,) * n for n in values.numblocks[:-1]) + ((width,) * values.numblocks[-1],)
    meta = np.empty((0,) * values.ndim, dtype)
    return da.map_blocks(block_func, values, *small, chunks=chunks, dtype=dtype, meta=meta)


def _range_block(block: np.ndarray) -> np.ndarray:
    return value_range(_rows(block)).reshape((1,) * (block.ndim - 1) + (2,))


def _combine_ranges(parts: np.ndarray) -> np.ndarray:
    p = parts.reshape(-1, 2)
    return np.array([np.fmin.reduce(p[:, 0]), np.fmax.reduce(p[:, 1])])


def value_range_array(values):
    """``[min, max]`` of the non-NaN values (float64, NaN if none); lazy for dask input."""
    if not is_dask(values):
        return value_range(_rows(np.asarray(values)))
    return lazy_call(_combine_ranges, 2, np.float64, _per_block(_range_block, values, 2, np.float64))


def _hist_block(block: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return histogram(_rows(block), edges).reshape((1,) * (block.ndim - 1) + (-1,))


def _sum_histograms(parts: np.ndarray, nbins: int) -> np.ndarray:
    return parts.reshape(-1, nbins).sum(axis=0)


def histogram_array(values, edges):
    """Counts (int64) of ``values`` in the equal-width bins ``edges``, as ``np.histogram``; lazy for dask input."""
    if not is_dask(values) and not is_dask(edges):
        return histogram(_rows(np.asarray(values)), np.asarray(edges, dtype=np.float64))
    nbins = edges.shape[0] - 1
    parts = _per_block(_hist_block, da.asarray(values), nbins, np.int64, edges)
    # integer counts: the per-chunk histograms add up exactly whatever the chunking
    return lazy_call(_sum_histograms, nbins, np.int64, parts.sum(axis=tuple(range(values.ndim - 1))), nbins)


def _edges(rng: np.ndarray, bins: int) -> np.ndarray:
    return np.linspace(rng[0], rng[1], bins + 1)


def _order_stats(counts: np.ndarray, edges: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Estimates of the order statistics ``ranks`` (0-based): uniform placement inside their bin."""
    cum = np.cumsum(counts)
    b = np.searchsorted(cum, ranks, side="right")
    before = np.where(b > 0, cum[np.maximum(b - 1, 0)], 0)
    within = (ranks - before + 0.5) / counts[b]
    est = edges[b] + within * (edges[b + 1] - edges[b])
    est = np.where(ranks == 0, edges[0], est)  # the extremes are known exactly
    return np.where(ranks == cum[-1] - 1, edges[-1], est)


def _percentiles_from_hist(counts: np.ndarray, edges: np.ndarray, q: np.ndarray) -> np.ndarray:
    n = int(counts.sum())
    if n == 0:
        return np.full(len(q), np.nan)
    h = (n - 1) * np.asarray(q, dtype=np.float64) / 100.0  # numpy's 'linear' method
    k0 = np.floor(h).astype(np.int64)
    k1 = np.minimum(k0 + 1, n - 1)
    v0, v1 = _order_stats(counts, edges, k0), _order_stats(counts, edges, k1)
    return v0 + (h - k0) * (v1 - v0)


def percentiles_array(values, q: Sequence[float], bins: int = 65536):
    """Global percentiles ``q`` (0..100) of the non-NaN values, from a ``bins``-bin histogram.

    Float64 ``(len(q),)``, within ``(max - min) / bins`` of ``np.nanpercentile``;
    NaN if there is no valid value. Lazy for dask input.
    """
    rng = value_range_array(values)
    edges = lazy_call(_edges, bins + 1, np.float64, rng, bins)
    counts = histogram_array(values, edges)
    return lazy_call(_percentiles_from_hist, len(q), np.float64, counts, edges, np.asarray(q, dtype=np.float64))


def _stretch_block(block: np.ndarray, limits: np.ndarray) -> np.ndarray:
    rows = _rows(block)
    out = np.empty(rows.shape, dtype=np.float32)  # numpy's allocator: huge pages (see geoproc.kernels.enhance)
    return _k.stretch(rows, float(limits[0]), float(limits[1]), out).reshape(block.shape)


def stretch_array(values, limits):
    """``(v - lo) / (hi - lo)`` clipped to ``[0, 1]``, float32; ``limits = [lo, hi]`` may be lazy."""
    if is_dask(values) or is_dask(limits):
        meta = np.empty((0,) * values.ndim, np.float32)
        return da.map_blocks(_stretch_block, da.asarray(values), limits, dtype=np.float32, meta=meta)
    return _stretch_block(np.asarray(values), np.asarray(limits, dtype=np.float64))


def _gamma_block(g: float, gain: float, block: np.ndarray) -> np.ndarray:
    return _k.gamma(block, g, gain)


def gamma_array(values, g: float, gain: float = 1.0):
    """``gain * v ** g`` as float32, NaN for negative values; lazy for dask input."""
    return map_blocks(partial(_gamma_block, float(g), float(gain)), values, dtype=np.float32)


def _cdf_table(counts: np.ndarray, rng: np.ndarray) -> np.ndarray:
    """``[lo, hi, cdf...]``: the range and the cumulative distribution of its bins; NaN without counts."""
    total = counts.sum()
    cdf = np.cumsum(counts) / total if total else np.full(len(counts), np.nan)
    return np.concatenate([rng, cdf])


def _equalize_block(block: np.ndarray, table: np.ndarray) -> np.ndarray:
    rows = _rows(block)
    out = np.empty(rows.shape, dtype=np.float32)
    return equalize(rows, float(table[0]), float(table[1]), table[2:], out).reshape(block.shape)


def equalize_hist_array(values, nbins: int = 256):
    """Global histogram equalisation: ``np.interp(v, bin_centres, cdf)``, float32; lazy for dask input."""
    rng = value_range_array(values)
    edges = lazy_call(_edges, nbins + 1, np.float64, rng, nbins)
    table = lazy_call(_cdf_table, nbins + 2, np.float64, histogram_array(values, edges), rng)
    if is_dask(values):
        meta = np.empty((0,) * values.ndim, np.float32)
        return da.map_blocks(_equalize_block, values, table, dtype=np.float32, meta=meta)
    return _equalize_block(np.asarray(values), table)


def _aligned_chunks(chunks: tuple[int, ...], tile: int, total: int) -> tuple[int, ...]:
    """Chunk sizes near the current ones whose boundaries fall on multiples of ``tile``."""
    size = max(tile, int(round(max(chunks) / tile)) * tile)
    if size >= total:
        return (total,)
    return (size,) * (total // size) + ((total % size,) if total % size else ())


def _planes(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block).reshape((-1, *block.shape[-2:]))


def _clahe_lut_block(tile_y, tile_x, nbins, clip_limit, block, rng):
    luts = clahe_luts(_planes(block), float(rng[0]), float(rng[1]), tile_y, tile_x, nbins, clip_limit)
    return luts.reshape((*block.shape[:-2], luts.shape[1], luts.shape[2] * nbins))


def _clahe_apply_block(tile_y, tile_x, nbins, n_ty, n_tx, starts_y, starts_x, block, luts, rng, block_id=None):
    i, j = (block_id[-2], block_id[-1]) if block_id is not None else (0, 0)
    y0, x0 = starts_y[i], starts_x[j]
    ty0 = y0 // tile_y - (1 if i > 0 else 0)  # the LUT block carries one tile of halo inside the image
    tx0 = x0 // tile_x - (1 if j > 0 else 0)
    planes = _planes(block)
    tables = np.ascontiguousarray(luts).reshape((planes.shape[0], luts.shape[-2], -1, nbins))
    out = np.empty(planes.shape, dtype=np.float32)
    clahe_apply(planes, float(rng[0]), float(rng[1]), tables, y0, x0, ty0, tx0, n_ty, n_tx, tile_y, tile_x, out)
    return out.reshape(block.shape)


def clahe_array(values, kernel_size: tuple[int, int], clip_limit: float = 0.01, nbins: int = 256):
    """Contrast-limited adaptive histogram equalisation over the last two axes; float32 in ``[0, 1]``.

    The tile grid starts at the image origin (``kernel_size`` tiles), grey levels are
    ``nbins`` equal bins of the global ``[min, max]``. Dask input runs in two lazy
    stages: the tile mappings (chunks rechunked to tile boundaries), then each chunk
    blended from the mappings of its tiles and their neighbours (one tile of halo).
    """
    ty, tx = kernel_size
    h_len, w_len = values.shape[-2:]
    n_ty, n_tx = -(-h_len // ty), -(-w_len // tx)
    rng = value_range_array(values)
    if not is_dask(values):
        planes = _planes(values)
        luts = clahe_luts(planes, float(rng[0]), float(rng[1]), ty, tx, nbins, clip_limit)
        out = np.empty(planes.shape, dtype=np.float32)
        clahe_apply(planes, float(rng[0]), float(rng[1]), luts, 0, 0, 0, 0, n_ty, n_tx, ty, tx, out)
        return out.reshape(values.shape)
    nd = values.ndim
    aligned = values.rechunk(
        {nd - 2: _aligned_chunks(values.chunks[-2], ty, h_len), nd - 1: _aligned_chunks(values.chunks[-1], tx, w_len)}
    )
    lut_chunks = (
        *aligned.chunks[:-2],
        tuple(-(-c // ty) for c in aligned.chunks[-2]),
        tuple(-(-c // tx) * nbins for c in aligned.chunks[-1]),
    )
    meta = np.empty((0,) * nd, np.float32)
    lut_block = partial(_clahe_lut_block, ty, tx, nbins, clip_limit)
    luts = da.map_blocks(lut_block, aligned, rng, chunks=lut_chunks, dtype=np.float32, meta=meta)
    luts = da.overlap.overlap(luts, depth={ax: 0 for ax in range(nd - 2)} | {nd - 2: 1, nd - 1: nbins}, boundary="none")
    starts_y = tuple(int(s) for s in np.cumsum((0, *aligned.chunks[-2][:-1])))
    starts_x = tuple(int(s) for s in np.cumsum((0, *aligned.chunks[-1][:-1])))
    apply = partial(_clahe_apply_block, ty, tx, nbins, n_ty, n_tx, starts_y, starts_x)
    out = da.map_blocks(apply, aligned, luts, rng, chunks=aligned.chunks, dtype=np.float32, meta=meta)
    return out.rechunk(values.chunks) if out.chunks != values.chunks else out


def _stack(*rows: np.ndarray) -> np.ndarray:
    return np.concatenate(rows)


def _rgba_block(g_exp: float, alpha: bool, r, g, b, limits) -> np.ndarray:
    shape = r.shape
    lims = np.asarray(limits, dtype=np.float64).reshape(3, 2)
    rr = _rows(r)
    out = np.empty((4 if alpha else 3, *rr.shape), dtype=np.uint8)
    rgba(rr, _rows(g), _rows(b), lims, g_exp, out)
    return np.ascontiguousarray(np.moveaxis(out.reshape((out.shape[0], *shape)), 0, -3))


def rgba_array(r, g, b, limits, g_exp: float = 1.0, alpha: bool = True):
    """Three bands ``(..., y, x)`` to uint8 ``(..., 4, y, x)`` (``3`` without ``alpha``).

    ``limits`` (6 values, may be lazy) are the ``(lo, hi)`` of each band, stretched
    to ``[0, 255]``; a pixel with a NaN band is ``(0, 0, 0, 0)``.
    """
    channels = 4 if alpha else 3
    func = partial(_rgba_block, float(g_exp), bool(alpha))
    if not any(is_dask(a) for a in (r, g, b, limits)):
        return func(np.asarray(r), np.asarray(g), np.asarray(b), limits)
    r = da.asarray(r)
    g, b = (da.asarray(a).rechunk(r.chunks) for a in (g, b))
    nd = r.ndim
    chunks = (*r.chunks[:-2], (channels,), *r.chunks[-2:])
    meta = np.empty((0,) * (nd + 1), np.uint8)
    return da.map_blocks(func, r, g, b, limits, new_axis=[nd - 2], chunks=chunks, dtype=np.uint8, meta=meta)


# --------------------------------------------------------------------------- xarray layer


def _per_band(func, var: xr.DataArray, dims: tuple[str, str]) -> xr.DataArray:
    """``func`` on each index of a ``band`` dim separately (statistics per band), or on ``var`` whole."""
    if "band" not in var.dims or "band" in dims:
        return func(var)
    parts = [func(var.isel(band=i)) for i in range(var.sizes["band"])]
    arrays = [p.transpose(*(d for d in var.dims if d != "band")).data for p in parts]
    stack = da.stack if any(is_dask(a) for a in arrays) else np.stack
    data = stack(arrays, axis=var.get_axis_num("band"))
    return xr.DataArray(data, dims=var.dims, coords=var.coords, name=var.name, attrs=parts[0].attrs)


def _dispatch(data, dims, one, recurse):
    if isinstance(data, xr.Dataset):
        return per_variable(recurse, data, dims)
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(f"expected an xarray DataArray or Dataset, got {type(data).__name__}")
    spatial_dims(data, dims)
    return _per_band(one, data, dims)


def _check_q(q) -> tuple[float, ...]:
    try:
        qs = tuple(float(v) for v in np.atleast_1d(q))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"percentiles must be numbers in [0, 100], got {q!r}") from None
    if not qs or any(not 0 <= v <= 100 for v in qs):
        raise InvalidArgumentError(f"percentiles must be numbers in [0, 100], got {q!r}")
    return qs


def _check_bins(bins, name: str = "bins", low: int = 1) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < low:
        raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {bins!r}")
    return int(bins)


def _limits(var: xr.DataArray, values, pct, limits, bins):
    """``[lo, hi]``: explicit ``limits``, or the global percentiles ``pct`` of ``values``."""
    if limits is not None:
        lo, hi = (float(v) for v in limits)
        if not lo < hi:
            raise InvalidArgumentError(f"limits must be (low, high) with low < high, got {limits!r}")
        return np.array([lo, hi])
    lo_q, hi_q = _check_q(pct) if len(np.atleast_1d(pct)) == 2 else (None, None)
    if lo_q is None or not lo_q < hi_q:
        raise InvalidArgumentError(
            f"stretch percentiles must be (low, high) with low < high, e.g. (2, 98); got {pct!r}"
        )
    return percentiles_array(values, (lo_q, hi_q), bins)


def _how(pct, limits) -> str:
    return f"limits {limits[0]:g}..{limits[1]:g}" if limits is not None else f"percentiles {pct[0]:g}..{pct[1]:g}"


def percentiles(
    data: xr.DataArray | xr.Dataset,
    q: float | Sequence[float] = (2, 98),
    *,
    bins: int = 65536,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Global percentiles of each band, from a histogram reduced over all chunks.

    Parameters
    ----------
    data
        A DataArray (one band, or several along a ``band`` dim) or a Dataset (one
        band per variable). The statistics pool every dim but ``band``.
    q
        Percentiles in ``[0, 100]``.
    bins
        Histogram bins over the band's ``[min, max]``; the result is within
        ``(max - min) / bins`` of ``numpy.nanpercentile`` (``linear`` method).
    dims
        The spatial dims (used to tell images from other variables of a Dataset).

    Returns
    -------
    float64 with a ``percentile`` dim (and ``band`` if ``data`` has one); a Dataset
    of them for a Dataset; lazy if ``data`` is. NaN for a band without valid values.

    Examples
    --------
    >>> img = xr.DataArray(np.arange(101, dtype="float32").reshape(1, 101), dims=("y", "x"))
    >>> percentiles(img, (0, 2, 50, 100)).values.round(2)  # within 100 / 65536 of numpy's
    array([  0.,   2.,  50., 100.])
    """
    qs = _check_q(q)
    bins = _check_bins(bins)

    def one(var):
        values = percentiles_array(float_values(var), qs, bins)
        coords = {k: c for k, c in var.coords.items() if c.ndim == 0}
        return xr.DataArray(values, dims=("percentile",), coords={**coords, "percentile": list(qs)}, name=var.name)

    if isinstance(data, xr.Dataset):
        return xr.Dataset({k: one(v) for k, v in data.data_vars.items() if all(d in v.dims for d in dims)})
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(f"expected an xarray DataArray or Dataset, got {type(data).__name__}")
    if "band" in data.dims:
        return xr.concat([one(data.isel(band=i)) for i in range(data.sizes["band"])], dim="band")
    return one(data)


def stretch(
    data: xr.DataArray | xr.Dataset,
    percentiles: Sequence[float] = (2, 98),
    *,
    limits: tuple[float, float] | None = None,
    bins: int = 65536,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Linear contrast stretch of each band to ``[0, 1]`` between global percentiles.

    Parameters
    ----------
    data
        A DataArray (one band, or several along a ``band`` dim) or a Dataset.
    percentiles
        ``(low, high)``: the band's global percentiles (see :func:`percentiles`) that
        map to 0 and 1.
    limits
        ``(low, high)`` values to use instead of percentiles, for every band.
    bins
        Histogram bins for the percentiles.
    dims
        The spatial dims.

    Returns
    -------
    Same type as ``data``: float32 in ``[0, 1]`` (values beyond the limits clipped),
    NaN where ``data`` is NaN, 0 for a constant band; same dims, coords and CRS;
    lazy if ``data`` is.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[0, 5, 10], [np.nan, 20, 100]]), dims=("y", "x"))
    >>> stretch(img, limits=(0, 20)).values
    array([[0.  , 0.25, 0.5 ],
           [ nan, 1.  , 1.  ]], dtype=float32)
    """
    bins = _check_bins(bins)

    def one(var):
        ordered = var.transpose(..., *dims)
        values = float_values(ordered)
        out = stretch_array(values, _limits(var, values, percentiles, limits, bins))
        return wrap(out, var, ordered, result_attrs(var, stretch=_how(percentiles, limits)))

    if limits is not None and isinstance(data, xr.DataArray):  # no statistics: one pass over every band at once
        spatial_dims(data, dims)
        return one(data)
    return _dispatch(data, dims, one, partial(stretch, percentiles=percentiles, limits=limits, bins=bins))


def adjust_gamma(
    data: xr.DataArray | xr.Dataset, gamma: float = 1.0, gain: float = 1.0, *, dims: tuple[str, str] = ("y", "x")
) -> xr.DataArray | xr.Dataset:
    """Gamma correction ``gain * v ** gamma``, as ``skimage.exposure.adjust_gamma``, for values in ``[0, 1]``.

    ``gamma < 1`` brightens dark tones, ``gamma > 1`` darkens them; apply it after
    :func:`stretch`. Float32; NaN where ``v`` is NaN or negative (undefined);
    same dims, coords and CRS; lazy if ``data`` is.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([0.0, 0.25, 1.0, -1.0]), dims=("x",)).expand_dims(y=1)
    >>> adjust_gamma(img, 0.5).values
    array([[0. , 0.5, 1. , nan]], dtype=float32)
    """
    g, k = positive_number(gamma, "gamma"), positive_number(gain, "gain", zero=True)
    if isinstance(data, xr.Dataset):
        return per_variable(partial(adjust_gamma, gamma=g, gain=k), data, dims)
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(f"expected an xarray DataArray or Dataset, got {type(data).__name__}")
    out = gamma_array(float_values(data), g, k)
    return wrap(out, data, data, result_attrs(data, gamma=g))


def equalize_hist(
    data: xr.DataArray | xr.Dataset, nbins: int = 256, *, dims: tuple[str, str] = ("y", "x")
) -> xr.DataArray | xr.Dataset:
    """Global histogram equalisation of each band, as ``skimage.exposure.equalize_hist``.

    A band's histogram of ``nbins`` bins over its global ``[min, max]`` (all chunks
    and dates) gives the cumulative distribution; each value becomes
    ``np.interp(v, bin_centres, cdf)``, in ``(0, 1]``. Float32, NaN where ``data``
    is NaN; same dims, coords and CRS; lazy if ``data`` is.

    Examples
    --------
    >>> img = xr.DataArray(np.float32([[1, 2, 2, 100]]), dims=("y", "x"))
    >>> equalize_hist(img, nbins=4).values
    array([[0.75, 0.75, 0.75, 1.  ]], dtype=float32)
    """
    nbins = _check_bins(nbins, "nbins", 2)

    def one(var):
        ordered = var.transpose(..., *dims)
        out = equalize_hist_array(float_values(ordered), nbins)
        return wrap(out, var, ordered, result_attrs(var, equalize=f"histogram nbins={nbins}"))

    return _dispatch(data, dims, one, partial(equalize_hist, nbins=nbins))


def clahe(
    data: xr.DataArray | xr.Dataset,
    kernel_size: int | tuple[int, int] | None = None,
    clip_limit: float = 0.01,
    nbins: int = 256,
    *,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray | xr.Dataset:
    """Contrast-limited adaptive histogram equalisation (CLAHE), tile by tile over the whole image.

    The algorithm and parameters of ``skimage.exposure.equalize_adapthist``
    (Zuiderveld 1994): the image is cut into ``kernel_size`` tiles from its origin;
    each tile's histogram of ``nbins`` grey levels is clipped at ``clip_limit`` times
    its pixel count, the excess redistributed (skimage's integer scheme), and
    cumulated into a mapping; each pixel blends the mappings of its four nearest
    tiles bilinearly (skimage's tile centres and weights). A chunk uses the tiles
    that reach into it and their neighbours, so chunked equals unchunked bit for bit.

    Differences from scikit-image, measured in ``tests/test_enhance.py``: grey levels
    are ``nbins`` equal bins of the band's global float ``[min, max]`` (skimage
    rounds to 14-bit integers and bins those by ``1 + 16384 // nbins``, 253 levels
    for 256); the mappings stay float (skimage truncates them to integers); NaN and
    pixels beyond the image edge are not counted (skimage pads by reflection); and
    the result is the blended cdf in ``[0, 1]`` (skimage rescales its output to span
    ``[0, 1]``). On a real Landsat band (160 x 160 px, 32 px tiles, both rescaled to
    ``[0, 1]``) they differ by 0.002 on average, 0.01 at the 99th percentile and 0.045
    at most; fed skimage's own grey levels, the kernels agree with it to 2.5e-4.

    Parameters
    ----------
    data
        A DataArray (one band, or several along a ``band`` dim) or a Dataset.
    kernel_size
        Tile size in pixels, ``(rows, columns)`` or one int; default 1/8 of the
        image's height and width, as skimage. At least 2.
    clip_limit
        In ``(0, 1)``: the share of a tile's pixels one grey level may hold (higher
        gives more contrast); 0 or >= 1 for plain adaptive equalisation.
    nbins
        Grey levels.
    dims
        The spatial dims.

    Returns
    -------
    Same type as ``data``: float32 in ``[0, 1]``, NaN where ``data`` is NaN; same
    dims, coords and CRS; lazy if ``data`` is. Dask input is processed with chunks
    rounded to whole tiles and returned with the input's chunks.

    Examples
    --------
    >>> img = xr.DataArray(np.arange(64, dtype="float32").reshape(8, 8), dims=("y", "x"))
    >>> clahe(img, kernel_size=4, clip_limit=0.5, nbins=16).values[0, :4]  # tile (0, 0), blended towards (0, 1)
    array([0.25  , 0.25  , 0.25  , 0.1875], dtype=float32)
    """
    nbins = _check_bins(nbins, "nbins", 2)
    clip = positive_number(clip_limit, "clip_limit", zero=True)

    def one(var):
        ordered = var.transpose(..., *dims)
        h_len, w_len = ordered.shape[-2:]
        ks = (max(h_len // 8, 2), max(w_len // 8, 2)) if kernel_size is None else kernel_size
        ks = (ks, ks) if np.isscalar(ks) else tuple(ks)
        if len(ks) != 2 or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2 for k in ks):
            raise InvalidArgumentError(
                f"kernel_size must be an int >= 2 or (rows, columns) of them, got {kernel_size!r}"
            )
        out = clahe_array(float_values(ordered), (int(ks[0]), int(ks[1])), clip, nbins)
        label = f"clahe kernel_size=({ks[0]}, {ks[1]}) clip_limit={clip:g} nbins={nbins}"
        return wrap(out, var, ordered, result_attrs(var, equalize=label))

    return _dispatch(data, dims, one, partial(clahe, kernel_size=kernel_size, clip_limit=clip, nbins=nbins))


def rgb(
    data: xr.Dataset | xr.DataArray,
    bands: Sequence[str] = ("red", "green", "blue"),
    *,
    stretch: Sequence[float] = (2, 98),
    limits: tuple[float, float] | None = None,
    gamma: float = 1.0,
    alpha: bool = True,
    bins: int = 65536,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray:
    """A true- or false-colour composite as uint8 RGBA, nodata transparent.

    Parameters
    ----------
    data
        A Dataset with the three bands as variables, or a DataArray with a ``band``
        dim holding them.
    bands
        The bands shown as red, green and blue: ``("red", "green", "blue")`` for true
        colour, ``("nir", "red", "green")`` for the classic false colour.
    stretch
        ``(low, high)`` global percentiles of each band mapped to 0 and 255 (see
        :func:`stretch`): each band is stretched on its own.
    limits
        ``(low, high)`` values for all three bands instead (keeps their balance, e.g.
        ``(0, 0.3)`` for reflectance).
    gamma
        Applied to the stretched ``[0, 1]`` values before scaling (see :func:`adjust_gamma`).
    alpha
        Add an alpha channel: 255, or 0 where any band is NaN (nodata).
    bins
        Histogram bins for the percentiles.
    dims
        The spatial dims.

    Returns
    -------
    xarray.DataArray
        uint8 with a ``band`` dim ``["R", "G", "B", "A"]`` (no ``"A"`` without alpha)
        before the spatial dims, the other dims (``time``...) first; a pixel with a
        NaN band is ``0`` in every channel. Coords and CRS kept, so
        ``out.rio.to_raster("rgb.tif")`` writes a georeferenced image; lazy if
        ``data`` is.

    Examples
    --------
    >>> ds = xr.Dataset({b: (("y", "x"), np.float32([[0.0, 0.1], [0.2, np.nan]])) for b in ("red", "green", "blue")})
    >>> rgb(ds, limits=(0, 0.2)).values[:, 0, :].tolist()  # pixels (0, 0) and (0, 1)
    [[0, 128], [0, 128], [0, 128], [255, 255]]
    >>> int(rgb(ds, limits=(0, 0.2))[3, 1, 1])  # NaN: transparent
    0
    """
    if isinstance(bands, str) or len(bands) != 3:
        raise InvalidArgumentError(f"bands must name three bands (red, green, blue channels), got {bands!r}")
    bins, g = _check_bins(bins), positive_number(gamma, "gamma")
    layers = [_band(data, name) for name in bands]
    first = layers[0].transpose(..., *spatial_dims(layers[0], dims))
    ordered = [first] + [v.transpose(*first.dims) for v in layers[1:]]
    values = [float_values(v) for v in ordered]
    lims = [_limits(v, x, stretch, limits, bins) for v, x in zip(ordered, values)]
    stacked = lazy_call(_stack, 6, np.float64, *lims)
    out = rgba_array(*values, stacked, g, alpha)
    channels = ["R", "G", "B", "A"][: 4 if alpha else 3]
    out_dims = (*first.dims[:-2], "band", *first.dims[-2:])
    coords = {k: c for k, c in first.coords.items() if k != "band"}
    attrs = {"source_bands": ",".join(map(str, bands)), "stretch": _how(stretch, limits), "gamma": g}
    name = "rgba" if alpha else "rgb"
    return xr.DataArray(out, dims=out_dims, coords={**coords, "band": channels}, name=name, attrs=attrs)


def _band(data, name: str) -> xr.DataArray:
    if isinstance(data, xr.Dataset):
        if name not in data.data_vars:
            raise UnknownBandError(
                f"no band {name!r} in the dataset (variables: {', '.join(map(str, data.data_vars))}); "
                "load it, or name the bands to show with bands=(...)"
            )
        return data[name]
    if isinstance(data, xr.DataArray) and "band" in data.dims:
        if name not in data.coords["band"].values.tolist():
            present = ", ".join(map(str, data.band.values))
            raise UnknownBandError(f"no band {name!r} along dim 'band' ({present}); name them with bands=(...)")
        return data.sel(band=name)
    raise InvalidArgumentError("rgb needs a Dataset of bands or a DataArray with a 'band' dim")
