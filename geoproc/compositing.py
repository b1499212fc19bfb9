"""Per-pixel composites over time.

The time axis must be whole inside each chunk (``geoproc.load`` does this; a
split time axis is rechunked); each chunk is then reduced by one numba pass,
fused by dask with the load, mask and index steps before it.

Two families of methods:

* per band (``median``, ``mean``, ``min``, ``max``, ``pNN`` percentiles,
  ``count``): every variable is reduced on its own;
* multi-band (``medoid``, ``geomedian``, ``quality``): every band of a pixel
  comes from the same reasoning over whole spectra (one observation, or one
  point of the spectral space), so the output spectra stay consistent.

Stored integers (``load(..., raw=True)``: attrs ``scale``, ``offset``,
``nodata``) are decoded to float32 inside the chunk task, as the loader would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from ._provenance import time_span
from .errors import GeoprocError, InvalidArgumentError, UnknownBandError
from .kernels.composite import METHODS, count_valid, decode, percentile_time, quality_select, reduce_time
from .kernels.geomedian import geomedian, medoid

__all__ = ["composite", "composite_array", "multiband_array", "COMPOSITE_METHODS", "MULTIBAND_METHODS"]

#: Multi-band methods: a Dataset of bands in, every band of a pixel from one reasoning.
MULTIBAND_METHODS = ("medoid", "geomedian", "quality")
#: Every method name; ``"pNN"`` stands for any percentile (``"p10"``, ``"p90"``, ``"p2.5"``).
COMPOSITE_METHODS = (*METHODS, "count", "pNN", *MULTIBAND_METHODS)

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d*)?)$")
_NO_DECODE = None
_QUALITY_BANDS = ("scl", "SCL")  # categorical: never a band of a multi-band composite by default


def _percentile_of(method: str) -> float | None:
    """``90.0`` for ``"p90"``; None for a method that is not a percentile."""
    match = _PERCENTILE.match(method)
    if match is None:
        return None
    q = float(match.group(1))
    if not 0.0 <= q <= 100.0:
        raise InvalidArgumentError(f"percentile {method!r} is outside 0..100; use e.g. 'p10' or 'p90'")
    return q


def _check_method(method: str) -> None:
    if method in METHODS or method == "count" or method in MULTIBAND_METHODS or _percentile_of(method) is not None:
        return
    raise InvalidArgumentError(
        f"unknown composite method {method!r}; use one of {', '.join(COMPOSITE_METHODS)} (pNN: a percentile, e.g. 'p90')"
    )


def decoding(var: xr.DataArray) -> tuple[float, float, float] | None:
    """``(scale, offset, nodata)`` to decode ``var`` to float32, or None when it holds floats to use as they are.

    Integers are always decoded (scale 1, offset 0 and no nodata value when
    the attrs say nothing). Floats are decoded only when their attrs carry a
    scale or offset other than 1 and 0, or a nodata value other than NaN.

    Examples
    --------
    >>> raw = xr.DataArray(np.uint16([0, 1200]), dims="x", attrs={"scale": 1e-4, "offset": -0.1, "nodata": 0})
    >>> decoding(raw), decoding(raw.astype("float32").assign_attrs(scale=1.0, offset=0.0, nodata=np.nan))
    ((0.0001, -0.1, 0.0), None)
    """
    attrs = var.attrs
    scale, offset = float(attrs.get("scale", 1.0)), float(attrs.get("offset", 0.0))
    nodata = attrs.get("nodata")
    nodata = np.nan if nodata is None else float(nodata)
    if np.dtype(var.dtype).kind in "iu" or scale != 1.0 or offset != 0.0 or not np.isnan(nodata):
        return scale, offset, nodata
    return _NO_DECODE


def _as_float(block: np.ndarray, dec: tuple[float, float, float] | None) -> np.ndarray:
    """A block as float32 (decoded) or as the floats it holds; same shape."""
    if dec is not None:
        return decode(np.ascontiguousarray(block).reshape(-1), *dec).reshape(block.shape)
    return block


def _reduce_block(
    method: str, q: float, dec: tuple | None, keepdims: bool, v: np.ndarray, m: np.ndarray | None = None
) -> np.ndarray:
    """One block: reduce axis 0 (module-level, so tasks pickle it by reference; see geoproc._blocks)."""
    t_len = v.shape[0]
    rest = v.shape[1:]
    flat = np.ascontiguousarray(_as_float(v, dec)).reshape(t_len, -1)
    mflat = np.ascontiguousarray(m).reshape(t_len, -1) if m is not None else np.zeros((0, 0), np.bool_)
    if method == "count":
        res = count_valid(flat, mflat)
    elif method == "percentile":
        res = percentile_time(flat.astype(np.float32, copy=False), mflat, q)
    else:
        res = reduce_time(flat, mflat, METHODS[method])
    return res.reshape((1, *rest) if keepdims else rest)


def _time_whole(values, invalid):
    """Rechunk so that axis 0 is one chunk and the mask has the data's chunks."""
    if is_dask(values) and values.numblocks[0] > 1:
        values = values.rechunk({0: -1})
    if invalid is not None:
        if invalid.shape != values.shape:
            raise InvalidArgumentError(f"mask shape {invalid.shape} differs from data shape {values.shape}")
        if is_dask(values):
            invalid = (invalid if is_dask(invalid) else da.from_array(invalid)).rechunk(values.chunks)
    return values, invalid


def composite_array(values, invalid=None, method: str = "median", decode: tuple[float, float, float] | None = None):
    """The dask/numpy layer: reduce axis 0 of ``values`` (time first), skipping NaN and ``invalid``.

    ``method`` is a per-band method (``median``, ``mean``, ``min``, ``max``,
    ``count`` or ``pNN``). ``decode`` is ``(scale, offset, nodata)`` for stored
    integers (applied in the chunk task); without it, integers are cast to
    float32. Returns float32 (``count``: int16) with axis 0 dropped.

    Examples
    --------
    >>> values = da.from_array(np.float32([[1, 4], [3, np.nan], [2, 8]]), chunks=(3, 1))
    >>> composite_array(values, method="p50").compute()
    array([2., 6.], dtype=float32)
    """
    _check_method(method)
    if method in MULTIBAND_METHODS:
        raise InvalidArgumentError(f"{method!r} composites several bands at once; use multiband_array (or composite)")
    q = _percentile_of(method)
    kind = "percentile" if q is not None else method
    if np.dtype(values.dtype).kind == "b":
        values = values.astype(np.float32)
    if decode is None and np.dtype(values.dtype).kind != "f":
        decode = (1.0, 0.0, np.nan)
    values, invalid = _time_whole(values, invalid)
    inputs = [values] if invalid is None else [values, invalid]
    out_dtype = np.int16 if method == "count" else np.float32
    if not is_dask(values):
        return _reduce_block(kind, q or 0.0, decode, False, *inputs)
    # Blocks keep a length-1 time axis that is indexed away afterwards: with two inputs (values and
    # mask), dask does not fuse producers into a map_blocks that drops an axis, and the load, mask
    # and index steps would then run as separate tasks, their chunks moved between workers.
    out = da.map_blocks(
        partial(_reduce_block, kind, q or 0.0, decode, True), *inputs, dtype=out_dtype, chunks=((1,), *values.chunks[1:])
    )
    return out[0]


def _multiband_block(
    method: str, decodes: tuple, has_mask: bool, tol: float, max_iter: int, *blocks: np.ndarray
) -> np.ndarray:
    """One block: bands (each ``(T, ...)``), then the mask if any, then the score (quality) -> ``(B, ...)``."""
    n_bands = len(decodes)
    t_len, rest = blocks[0].shape[0], blocks[0].shape[1:]
    n = int(np.prod(rest))
    stack = np.empty((n_bands, t_len, n), np.float32)
    for b in range(n_bands):
        stack[b] = np.asarray(_as_float(blocks[b], decodes[b]), dtype=np.float32).reshape(t_len, n)
    extra = blocks[n_bands:]
    mask = np.ascontiguousarray(extra[0]).reshape(t_len, n) if has_mask else np.zeros((0, 0), np.bool_)
    if method == "quality":
        score = np.ascontiguousarray(extra[-1], dtype=np.float64).reshape(t_len, n)
        res = quality_select(stack, score, mask)
    elif method == "medoid":
        res = medoid(stack, mask)
    else:
        res = geomedian(stack, mask, tol, max_iter)
    return res.reshape((n_bands, *rest))


def multiband_array(
    bands: Sequence,
    invalid=None,
    method: str = "geomedian",
    *,
    decodes: Sequence[tuple | None] | None = None,
    score=None,
    tol: float = 1e-6,
    max_iter: int = 1000,
):
    """The dask/numpy layer of the multi-band methods.

    ``bands`` are equally shaped time-first arrays (numpy or dask), ``invalid``
    a boolean array of that shape, ``decodes`` one ``(scale, offset, nodata)``
    or None per band, ``score`` (quality) a float array of that shape. Returns
    float32 ``(B, ...)``: axis 0 is the band.

    Examples
    --------
    >>> red, nir = np.float32([[0.1], [0.3], [0.2]]), np.float32([[0.5], [0.2], [0.4]])
    >>> multiband_array([red, nir], method="quality", score=(nir - red) / (nir + red))
    array([[0.1],
           [0.5]], dtype=float32)
    """
    if method not in MULTIBAND_METHODS:
        raise InvalidArgumentError(f"{method!r} is not a multi-band method; use one of {', '.join(MULTIBAND_METHODS)}")
    if not bands:
        raise InvalidArgumentError(f"{method} needs at least one band")
    decodes = tuple(decodes) if decodes is not None else (None,) * len(bands)
    decodes = tuple(
        d if d is not None or np.dtype(b.dtype).kind == "f" else (1.0, 0.0, np.nan) for b, d in zip(bands, decodes)
    )
    if method == "quality" and score is None:
        raise InvalidArgumentError("the quality mosaic needs a score (e.g. score='NDVI'); pass score=...")
    first, invalid = _time_whole(bands[0], invalid)
    inputs = [first]
    for b in bands[1:]:
        if b.shape != first.shape:
            raise InvalidArgumentError(f"bands differ in shape: {b.shape} vs {first.shape}; load them onto one grid")
        inputs.append(b.rechunk(first.chunks) if is_dask(first) else np.asarray(b))
    if invalid is not None:
        inputs.append(invalid)
    if method == "quality":
        if score.shape != first.shape:
            raise InvalidArgumentError(f"score shape {score.shape} differs from the bands' {first.shape}")
        inputs.append(score.rechunk(first.chunks) if is_dask(first) and is_dask(score) else score)
    if is_dask(first):
        inputs = [x if is_dask(x) else da.from_array(x, chunks=first.chunks) for x in inputs]
        func = partial(_multiband_block, method, decodes, invalid is not None, float(tol), int(max_iter))
        return da.map_blocks(func, *inputs, dtype=np.float32, chunks=((len(bands),), *first.chunks[1:]))
    return _multiband_block(method, decodes, invalid is not None, float(tol), int(max_iter), *map(np.asarray, inputs))


def composite(
    data: xr.DataArray | xr.Dataset,
    method: str = "median",
    *,
    mask: xr.DataArray | None = None,
    dim: str = "time",
    score: str | xr.DataArray | None = None,
    bands: Sequence[str] | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> xr.DataArray | xr.Dataset:
    """Composite a stack of observations over ``dim``, pixel by pixel.

    Parameters
    ----------
    data
        A DataArray, or a Dataset of bands (one variable per band, as
        :func:`geoproc.load` returns). Stored integers with ``scale``,
        ``offset`` and ``nodata`` attrs (``load(..., raw=True)``) are decoded
        to float32 first; NaN is nodata.
    method
        Per band (a Dataset: every variable on its own):

        * ``median`` (as ``numpy.nanmedian``), ``mean``, ``min``, ``max``;
        * ``pNN``: the NN-th percentile, e.g. ``"p90"``, ``"p2.5"``
          (``numpy.nanpercentile``'s default linear interpolation);
        * ``count``: the number of valid observations (int16).

        Multi-band (a Dataset; output bands all from the same reasoning):

        * ``medoid``: the observation whose spectrum has the least summed
          Euclidean distance to the pixel's other valid spectra;
        * ``geomedian``: the geometric median of the valid spectra (Weiszfeld
          iteration with the Vardi-Zhang fix, in float64; ``tol``,
          ``max_iter``). Not necessarily an observed spectrum;
        * ``quality``: the observation with the highest ``score`` (a quality
          mosaic, e.g. greenest pixel), all bands carried along.

        An observation takes part in a multi-band method only when all of its
        bands are valid (finite, not nodata) and it is not masked.
    mask
        Boolean, True where an observation must be left out (as
        :func:`geoproc.cloud_mask` returns); must share ``data``'s dims along
        ``dim`` and space.
    dim
        The dimension to reduce.
    score
        ``quality`` only: a DataArray along ``dim`` and space, the name of a
        variable of ``data``, or the name of a spectral index (``"NDVI"``)
        that :func:`geoproc.index` computes from ``data``.
    bands
        Multi-band methods: the variables to use (default: every variable
        along ``dim`` except an SCL band).
    tol, max_iter
        ``geomedian`` only: stop when an iteration moves the estimate by less
        than ``tol`` (Euclidean distance in the data's units) or after
        ``max_iter`` iterations.

    Returns
    -------
    Same type as ``data`` without ``dim`` (multi-band methods: a Dataset of
    ``bands``); float32 with NaN where no valid observation exists, never 0
    (``count``: int16). Lazy for lazy input; coords other than ``dim``'s and
    the CRS are kept.

    Examples
    --------
    >>> v = xr.DataArray(np.float32([[1, 9], [3, np.nan], [2, 5]]), dims=("time", "x"))
    >>> composite(v, "median").values
    array([2., 7.], dtype=float32)
    >>> m = xr.DataArray(np.array([[False, True], [False, False], [True, False]]), dims=("time", "x"))
    >>> composite(v, "median", mask=m).values
    array([2., 5.], dtype=float32)
    >>> composite(v, "p25").values
    array([1.5, 6. ], dtype=float32)

    A multi-band composite keeps each pixel's spectrum whole:

    >>> ds = xr.Dataset({"red": v, "nir": v * 2})
    >>> composite(ds, "medoid").red.values
    array([2., 9.], dtype=float32)
    >>> composite(ds, "quality", score=-ds.red).nir.values
    array([ 2., 10.], dtype=float32)
    """
    _check_method(method)
    if method in MULTIBAND_METHODS:
        return _composite_multiband(data, method, mask, dim, score, bands, tol, max_iter)
    if isinstance(data, xr.Dataset):
        out = xr.Dataset({k: composite(v, method, mask=mask, dim=dim) for k, v in data.data_vars.items()})
        out.attrs = {**data.attrs, **time_span(data, dim)}
        return out
    ordered = _time_first(data, dim)
    invalid = _invalid(mask, ordered)
    values = composite_array(ordered.data, invalid, method, decoding(ordered))
    out = xr.DataArray(values, dims=ordered.dims[1:], coords=_coords_without(ordered, dim), name=data.name)
    out.attrs = {k: v for k, v in data.attrs.items() if k not in ("scale", "offset", "nodata")}
    out.attrs.update(time_span(ordered, dim))  # the dates composited, not the time of writing
    out.attrs["composite"] = method
    if method != "count":
        out.attrs["nodata"] = np.nan
    return out


def _time_first(data: xr.DataArray, dim: str) -> xr.DataArray:
    if dim not in data.dims:
        raise InvalidArgumentError(f"data has no dimension {dim!r} (dims: {data.dims}); pass dim=...")
    return data.transpose(dim, ...)


def _invalid(mask: xr.DataArray | None, ordered: xr.DataArray):
    if mask is None:
        return None
    missing = set(mask.dims) - set(ordered.dims)
    if missing:
        raise InvalidArgumentError(f"mask has dims {sorted(missing)} that the data lacks; build it from the same load")
    if mask.dtype != bool:
        raise InvalidArgumentError(f"mask must be boolean (True: leave out), got {mask.dtype}; use e.g. geoproc.cloud_mask")
    return mask.broadcast_like(ordered).transpose(*ordered.dims).data


def _coords_without(ordered: xr.DataArray, dim: str) -> dict:
    return {k: v for k, v in ordered.coords.items() if dim not in v.dims}


def _composite_multiband(data, method, mask, dim, score, bands, tol, max_iter) -> xr.Dataset:
    if not isinstance(data, xr.Dataset):
        raise InvalidArgumentError(
            f"{method!r} needs a Dataset of bands (one variable per band, as geoproc.load returns); "
            "for a DataArray with a band dimension use data.to_dataset(dim='band')"
        )
    if method == "geomedian" and (not tol > 0 or int(max_iter) < 1):
        raise InvalidArgumentError(f"geomedian needs tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    names = list(bands) if bands is not None else [
        k for k, v in data.data_vars.items() if dim in v.dims and k not in _QUALITY_BANDS
    ]
    unknown = [n for n in names if n not in data.data_vars]
    if unknown:
        raise UnknownBandError(
            f"no band {unknown[0]!r} in the dataset (variables: {', '.join(map(str, data.data_vars))}); fix bands=..."
        )
    if not names:
        raise InvalidArgumentError(f"no band along {dim!r} to composite; pass bands=[...]")
    ordered = [_time_first(data[n], dim) for n in names]
    ref = ordered[0]
    for n, var in zip(names, ordered):
        if var.dims != ref.dims:
            raise InvalidArgumentError(
                f"band {n!r} has dims {var.dims}, unlike {names[0]!r} {ref.dims}; load them together"
            )
    score_data = _score(data, score, ref, dim) if method == "quality" else None
    values = multiband_array(
        [v.data for v in ordered], _invalid(mask, ref), method,
        decodes=[decoding(v) for v in ordered], score=score_data, tol=tol, max_iter=max_iter,
    )
    coords = _coords_without(ref, dim)
    out = xr.Dataset()
    for i, (n, var) in enumerate(zip(names, ordered)):
        attrs = {k: v for k, v in var.attrs.items() if k not in ("scale", "offset", "nodata")}
        out[n] = xr.DataArray(values[i], dims=ref.dims[1:], coords=coords,
                              attrs={**attrs, **time_span(ref, dim), "nodata": np.nan})
    out.attrs = {**data.attrs, **time_span(ref, dim), "composite": method}
    if method == "geomedian":
        out.attrs.update(tol=float(tol), max_iter=int(max_iter))
    if method == "quality":
        out.attrs["score"] = score if isinstance(score, str) else str(getattr(score, "name", None) or "score")
    return out


def _score(data: xr.Dataset, score, ref: xr.DataArray, dim: str):
    if score is None:
        raise InvalidArgumentError("the quality mosaic needs a score: score='NDVI', a variable name, or a DataArray")
    if isinstance(score, str):
        if score in data.data_vars:
            score = data[score]
        else:
            from .indices import index  # an index computed from the bands (fused by dask with the composite)

            try:
                score = index(data, score)
            except GeoprocError as exc:
                raise UnknownBandError(
                    f"score {score!r} is not a variable ({', '.join(map(str, data.data_vars))}) and not an index "
                    f"geoproc can compute here ({exc}); pass a variable name, an index name or a DataArray"
                ) from None
    if not isinstance(score, xr.DataArray):
        raise InvalidArgumentError(f"score must be a DataArray or a name, got {type(score).__name__}")
    missing = set(score.dims) - set(ref.dims)
    if missing:
        raise InvalidArgumentError(f"score has dims {sorted(missing)} that the bands lack; compute it from the same data")
    score = score.broadcast_like(ref).transpose(*ref.dims)
    dec = decoding(score)
    if dec is not None:
        return _decoded(score.data, dec)
    return score.data


def _decoded(arr, dec):
    """``arr`` decoded to float32 (lazy for dask)."""
    if is_dask(arr):
        return arr.map_blocks(_as_float, dec, dtype=np.float32)
    return _as_float(arr, dec)
