"""CCDC (Continuous Change Detection and Classification, Zhu & Woodcock 2014) as lcmap-pyccd computes it.

:func:`ccdc_segments` cuts every pixel's multi-band series into segments,
each a harmonic model per band, with a break where the joint, RMSE-normalised
residuals of the detection bands exceed the chi-square threshold ``peek``
times in a row; the steps are pyccd's, kept step for step in
:mod:`geoproc.kernels.ccdc` (Tmask screening, initialisation with its
stability test, lookback, 4/6/8 coefficients by the number of observations,
refitting as a segment grows, outliers, several segments per pixel).

Units: reflectance bands as 0-1 floats (or stored integers with
``scale``/``offset``/``nodata`` attrs, as :func:`geoproc.load` gives them),
thermal in kelvin. Inside, values are in pyccd's units (reflectance x 10000,
thermal in degrees Celsius x 100), which its thresholds (saturation
0..10000, the Lasso penalty) assume; outputs are back in the input units.

The model of a segment, per band, at ordinal day ``t`` (``date.toordinal()``)::

    c0 + c1 t + c2 cos(w t) + c3 sin(w t) + c4 cos(2 w t) + c5 sin(2 w t) + c6 cos(3 w t) + c7 sin(3 w t)

with ``w = 2 pi / 365.2425`` (pyccd's convention: the intercept is at day 0).
"""

from __future__ import annotations

import math
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask, kernel_path, resolve
from .errors import InvalidArgumentError, UnknownBandError
from .kernels import ccdc as _k

__all__ = ["ccdc_segments", "chi2_ppf", "COEFFICIENTS", "PROCEDURES", "DETECTION_BANDS", "PYCCD_STAT_END"]

#: Names of the 8 coefficients per band (pyccd's order, intercept first).
COEFFICIENTS = ("intercept", "slope", "cos1", "sin1", "cos2", "sin2", "cos3", "sin3")
#: Procedure codes of the ``procedure`` variable.
PROCEDURES = {
    _k.PROC_NONE: "none",
    _k.PROC_STANDARD: "standard",
    _k.PROC_INSUFFICIENT_CLEAR: "insufficient_clear",
    _k.PROC_SNOW: "permanent_snow",
}
#: pyccd's detection bands (its DETECTION_BANDS 1-5), by common name.
DETECTION_BANDS = ("green", "red", "nir", "swir16", "swir22")
#: pyccd computes the variogram and the peek size from observations up to this date (its STAT_ORD, 736694).
PYCCD_STAT_END = "2018-01-01"

_THERMAL = ("thermal", "lwir11", "lwir", "lwir12")
_ORDER = ("blue", "green", "red", "nir", "swir16", "swir22")
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_NODATA_DAY = np.iinfo(np.int32).min
_MAX_PEEK = 97  # peek = round(96 / median gap) with gaps of at least a day


def _chi2_cdf(x: float, df: int) -> float:
    """The chi-square CDF for integer ``df`` in closed form (the regularised gamma of half-integers)."""
    if x <= 0:
        return 0.0
    h = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return 1.0 - math.exp(-h) * total
    # odd: P(1/2, h) = erf(sqrt(h)); P(a + 1, h) = P(a, h) - h^a e^-h / Gamma(a + 1)
    p = math.erf(math.sqrt(h))
    a = 0.5
    term = math.exp(-h) * math.sqrt(h) / math.gamma(1.5)
    for _ in range((df - 1) // 2):
        p -= term
        a += 1.0
        term *= h / a
    return p


def chi2_ppf(q: float, df: int) -> float:
    """The ``q`` quantile of the chi-square distribution with integer ``df`` (bisection to machine precision).

    Examples
    --------
    >>> round(chi2_ppf(0.99, 5), 9)  # pyccd's CHANGE_THRESHOLD
    15.086272469
    """
    if not 0 < q < 1 or int(df) != df or df < 1:
        raise InvalidArgumentError(f"chi2_ppf needs 0 < q < 1 and a whole df >= 1, got q={q}, df={df}")
    lo, hi = 0.0, max(1.0, float(df))
    while _chi2_cdf(hi, int(df)) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _chi2_cdf(mid, int(df)) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def _change_table(change_prob: float, peek: int, df: int) -> np.ndarray:
    """pyccd's adjustchgthresh for every peek size: ``chi2.ppf(1 - (1 - p) ** (peek / adjusted), df)``."""
    base = chi2_ppf(change_prob, df)
    return np.array(
        [base if p <= peek else chi2_ppf(1 - (1 - change_prob) ** (peek / p), df) for p in range(_MAX_PEEK + 1)]
    )


def _ordinal_days(times: np.ndarray) -> np.ndarray:
    days = times.astype("datetime64[D]").astype(np.int64) + _EPOCH_ORDINAL
    return days.astype(np.float64)


def _ccdc_block(path: str, args: tuple, values: np.ndarray, flags: np.ndarray | None = None) -> np.ndarray:
    """One block ``(T, B, ...)`` (+ flags ``(T, ...)``) -> ``(rows, ...)`` (module-level: pickled by reference)."""
    t_len, nb, rest = values.shape[0], values.shape[1], values.shape[2:]
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(t_len, nb, -1)
    fl = np.ascontiguousarray(flags, dtype=np.uint8).reshape(t_len, -1) if flags is not None else np.zeros((0, 0), np.uint8)
    res = resolve(path)(flat, fl, *args)
    return res.reshape((res.shape[0], *rest))


def _decoded(var: xr.DataArray) -> xr.DataArray:
    from .compositing import decoding

    dec = decoding(var)
    if dec is None:
        return var.astype(np.float32)
    scale, offset, nodata = dec
    out = var.astype(np.float32)
    if not np.isnan(nodata):
        out = out.where(var != nodata)
    return out * np.float32(scale) + np.float32(offset)


def _select_bands(data: xr.Dataset, bands, thermal) -> tuple[list[str], str | None]:
    if bands is None:
        bands = [b for b in _ORDER if b in data.data_vars]
    bands = list(bands)
    if thermal is None:
        thermal = next((t for t in _THERMAL if t in data.data_vars), None)
    elif thermal is False:
        thermal = None
    missing = [b for b in [*bands, *([thermal] if thermal else [])] if b not in data.data_vars]
    if missing:
        raise UnknownBandError(
            f"bands {missing} are not in the data (variables: {sorted(data.data_vars)}); load them or pass bands=..."
        )
    return bands, thermal


def ccdc_segments(
    data: xr.Dataset,
    *,
    bands=None,
    thermal=None,
    detection_bands=DETECTION_BANDS,
    tmask_bands=("green", "swir16"),
    mask: xr.DataArray | None = None,
    snow: xr.DataArray | None = None,
    max_segments: int = 8,
    dim: str = "time",
    stat_end=None,
    change_prob: float = 0.99,
    outlier_prob: float = 0.999999,
    peek: int = 6,
    min_obs: int = 12,
    day_delta: int = 365,
    t_const: float = 4.89,
    lasso_alpha: float = 1.0,
    clear_pct: float = 0.25,
    snow_pct: float = 0.75,
    reflectance_scale: float = 10000.0,
) -> xr.Dataset:
    """CCDC segments per pixel (Zhu & Woodcock 2014), as lcmap-pyccd computes them; lazy, chunk by chunk.

    Parameters
    ----------
    data
        A Dataset of bands along ``dim`` (as :func:`geoproc.load` returns):
        reflectance in 0-1 (or stored integers with scale/offset attrs) and
        optionally thermal in kelvin.
    bands
        Reflectance bands fitted (default: those of blue, green, red, nir,
        swir16, swir22 present). Every band gets a model per segment.
    thermal
        The thermal band's name (default: the first of ``thermal``,
        ``lwir11``, ``lwir``, ``lwir12`` present); False for none. Fitted,
        screened to -93.2..70.7 C, and used for detection only if named in
        ``detection_bands``.
    detection_bands
        Bands of the joint change test; the chi-square degrees of freedom are
        their number (pyccd: green, red, nir, swir16, swir22; 5).
    tmask_bands
        Bands of Tmask screening (pyccd: green and swir16).
    mask
        Boolean, True where an observation is cloud, shadow or fill (left out).
    snow
        Boolean, True where the observation is snow (counts for pyccd's
        permanent-snow procedure).
    max_segments
        Segments kept per pixel (``n_segments`` says how many were found).
    dim
        The time dimension (datetimes, increasing).
    stat_end
        Last date of the observations that set the variogram and the peek
        size (default: all; pyccd uses :data:`PYCCD_STAT_END`).
    change_prob, outlier_prob
        Chi-square levels of a change (0.99) and of an outlier (0.999999).
    peek
        Consecutive observations that confirm a change (6), raised as pyccd
        does for dense series: ``max(peek, round(peek * 16 / median gap))``.
    min_obs
        Observations of an initial model (pyccd's MEOW_SIZE, 12).
    day_delta
        Days an initial model must span (365).
    t_const
        Tmask threshold as a multiple of the variogram (4.89).
    lasso_alpha
        Lasso penalty in pyccd's units (1.0).
    clear_pct, snow_pct
        Below ``clear_pct`` clear observations (of those not fill) a pixel gets
        one model over all (snow procedure when snow is ``snow_pct`` of clear
        and snow).
    reflectance_scale
        Factor from the reflectance given to pyccd's units: 10000 for 0-1
        reflectance; 1 for integers already on pyccd's 0-10000 scale that
        carry no ``scale`` attribute (otherwise every observation would read
        as saturated and none would be used).

    Returns
    -------
    xarray.Dataset
        Per pixel: ``n_segments`` (int16, segments found) and ``procedure``
        (uint8, :data:`PROCEDURES`); per ``segment``: ``start_day``,
        ``end_day``, ``break_day`` (int32, days since 1970-01-01, nodata
        -2**31), ``n_obs`` (int16, 0 for none), ``change_prob`` (1 for a
        confirmed break, 0 otherwise, as pyccd), ``curve_qa`` (uint8: 4, 6, 8
        coefficients, 14 start, 24 end, 44 insufficient clear, 54 snow);
        per ``segment`` and ``band``: ``coefs`` (with ``coef`` =
        :data:`COEFFICIENTS`), ``rmse``, ``magnitude`` (median absolute
        residual of the ``peek`` observations at the break), in the input
        units. Absent segments are NaN / nodata.

    Examples
    --------
    >>> t = np.arange("2000-01-01", "2010-01-01", 16, dtype="datetime64[D]")
    >>> doy = 2 * np.pi * (t - np.datetime64("2000-01-01")).astype(float) / 365.2425
    >>> rng = np.random.default_rng(0)
    >>> def band(level, amp, jump):
    ...     y = level + amp * np.cos(doy) + rng.normal(0, 0.004, t.size) + jump * (t >= np.datetime64("2005-06-01"))
    ...     return (("time", "x"), y[:, None].astype("float32"))
    >>> ds = xr.Dataset({"green": band(0.08, 0.02, 0.04), "red": band(0.07, 0.03, 0.05), "nir": band(0.3, 0.08, -0.15),
    ...                  "swir16": band(0.2, 0.03, 0.08), "swir22": band(0.1, 0.02, 0.06)}, coords={"time": t})
    >>> seg = ccdc_segments(ds)
    >>> int(seg.n_segments[0]), str(np.datetime64(int(seg.break_day[0, 0]), "D"))
    (2, '2005-06-07')
    """
    if not isinstance(data, xr.Dataset):
        raise InvalidArgumentError(
            f"ccdc_segments needs a Dataset of bands (as geoproc.load returns), got {type(data).__name__}; "
            "for a DataArray with a band dimension use data.to_dataset(dim='band')"
        )
    if dim not in data.dims:
        raise InvalidArgumentError(f"data has no dimension {dim!r} (dims: {tuple(data.dims)}); pass dim=...")
    bands, thermal = _select_bands(data, bands, thermal)
    names = [*bands, *([thermal] if thermal else [])]
    if len(names) != len(set(names)):
        raise InvalidArgumentError(f"a band is named twice in {names}; name each band once")
    for what, group in (("detection_bands", detection_bands), ("tmask_bands", tmask_bands)):
        unknown = [b for b in group if b not in names]
        if unknown or not group:
            raise InvalidArgumentError(
                f"{what} {list(group)} must be among the fitted bands {names}; pass bands=... or {what}=..."
            )
    if int(max_segments) < 1 or int(peek) < 1 or int(min_obs) < 4:
        raise InvalidArgumentError(
            f"need max_segments >= 1, peek >= 1 and min_obs >= 4, got {max_segments}, {peek}, {min_obs}"
        )
    for what, p in (("change_prob", change_prob), ("outlier_prob", outlier_prob), ("clear_pct", clear_pct),
                    ("snow_pct", snow_pct)):
        if not 0 < p < 1:
            raise InvalidArgumentError(f"{what} must be in (0, 1), got {p}")
    if not np.issubdtype(data[dim].dtype, np.datetime64):
        raise InvalidArgumentError(f"the {dim!r} coordinate must hold datetimes, got {data[dim].dtype}")
    times = data[dim].values.astype("datetime64[ns]")
    if len(times) > 1 and not (np.diff(times) > np.timedelta64(0, "ns")).all():
        raise InvalidArgumentError(f"the {dim!r} coordinate must increase; sort first with data.sortby({dim!r})")
    days = _ordinal_days(times)
    if stat_end is None:
        stat_day = np.inf
    else:
        import pandas as pd

        try:
            stat_day = float(_ordinal_days(np.array([pd.Timestamp(stat_end).to_datetime64()]))[0])
        except (ValueError, TypeError):
            raise InvalidArgumentError(f"stat_end={stat_end!r} is not a date; pass e.g. '2018-01-01'") from None

    stack = xr.concat([_decoded(data[n]) for n in names], dim="_band").transpose(dim, "_band", ...)
    spatial = [d for d in stack.dims if d not in (dim, "_band")]
    values = stack.data
    flags = None
    if mask is not None or snow is not None:
        ref = stack.isel(_band=0, drop=True)
        flags_da = xr.zeros_like(ref, dtype=np.uint8)
        for arr, code, what in ((snow, 2, "snow"), (mask, 1, "mask")):
            if arr is None:
                continue
            if arr.dtype != bool:
                raise InvalidArgumentError(f"{what} must be boolean (True where it applies), got {arr.dtype}")
            extra = set(arr.dims) - set(ref.dims)
            if extra:
                raise InvalidArgumentError(f"{what} has dims {sorted(extra)} that the data lacks; build it from the same load")
            flags_da = xr.where(arr.broadcast_like(ref), np.uint8(code), flags_da).astype(np.uint8)
        flags = flags_da.transpose(*ref.dims).data
    scale = np.array([reflectance_scale] * len(bands) + ([100.0] if thermal else []), np.float64)
    offset = np.array([0.0] * len(bands) + ([-27315.0] if thermal else []), np.float64)
    detect = np.array([names.index(b) for b in detection_bands], np.int64)
    tmask = np.array([names.index(b) for b in tmask_bands], np.int64)
    args = (
        days, scale, offset, names.index(thermal) if thermal else -1, detect, tmask,
        _change_table(change_prob, int(peek), len(detect)), chi2_ppf(outlier_prob, len(detect)), stat_day,
        int(min_obs), int(peek), float(day_delta), float(t_const), float(lasso_alpha), float(clear_pct),
        float(snow_pct), int(max_segments),
    )
    rows = 2 + int(max_segments) * _k.segment_rows(len(names))
    func = partial(_ccdc_block, kernel_path(_k.ccdc), args)
    if is_dask(values) or (flags is not None and is_dask(flags)):
        values = values if is_dask(values) else da.from_array(values, chunks=-1)
        values = values.rechunk({0: -1, 1: -1})
        if flags is not None:
            fl = flags if is_dask(flags) else da.from_array(flags)
            fl = fl.rechunk((values.chunks[0], *values.chunks[2:]))[:, None]  # (T, 1, ...): blocks align with values'
            res = da.map_blocks(_block_with_flags, func, values, fl, dtype=np.float32, drop_axis=1,
                                chunks=((rows,), *values.chunks[2:]))
        else:
            res = da.map_blocks(func, values, dtype=np.float32, drop_axis=1, chunks=((rows,), *values.chunks[2:]))
    else:
        res = func(np.asarray(values), None if flags is None else np.asarray(flags))
    return _table(res, names, int(max_segments), stack, spatial, args)


def _block_with_flags(func, values, flags):
    return func(values, flags[:, 0])


def _days_since_epoch(block: np.ndarray) -> np.ndarray:
    out = np.full(block.shape, _NODATA_DAY, np.int32)
    ok = np.isfinite(block)
    out[ok] = (block[ok] - _EPOCH_ORDINAL).astype(np.int32)
    return out


def _as_int(block: np.ndarray, dtype) -> np.ndarray:
    return np.where(np.isfinite(block), block, 0).astype(dtype)


def _table(res, names: list[str], nseg: int, stack: xr.DataArray, spatial: list[str], args: tuple) -> xr.Dataset:
    nb = len(names)
    per = _k.segment_rows(nb)
    lazy = is_dask(res)
    shape_rest = res.shape[1:]
    body = res[2:].reshape((nseg, per, *shape_rest))

    def apply(f, x, dtype):
        return x.map_blocks(f, dtype=dtype) if lazy else f(x)

    head = body[:, : _k.SEG_HEAD]
    band_part = body[:, _k.SEG_HEAD :].reshape((nseg, nb, _k.N_COEF + 2, *shape_rest))
    sdims = ("segment", *spatial)
    bdims = ("segment", "band", *spatial)
    day_attrs = {"units": "days since 1970-01-01", "nodata": int(_NODATA_DAY)}
    coords = {k: v for k, v in stack.coords.items() if set(v.dims) <= set(spatial)}
    coords.update({"segment": np.arange(nseg), "band": names, "coef": list(COEFFICIENTS)})
    out = xr.Dataset(
        {
            "n_segments": (tuple(spatial), apply(partial(_as_int, dtype=np.int16), res[0], np.int16)),
            "procedure": (tuple(spatial), apply(partial(_as_int, dtype=np.uint8), res[1], np.uint8),
                          {"flag_values": list(PROCEDURES), "flag_meanings": " ".join(PROCEDURES.values())}),
            "start_day": (sdims, apply(_days_since_epoch, head[:, 0], np.int32), day_attrs),
            "end_day": (sdims, apply(_days_since_epoch, head[:, 1], np.int32), day_attrs),
            "break_day": (sdims, apply(_days_since_epoch, head[:, 2], np.int32), day_attrs),
            "n_obs": (sdims, apply(partial(_as_int, dtype=np.int16), head[:, 3], np.int16)),
            "change_prob": (sdims, head[:, 4], {"nodata": np.nan}),
            "curve_qa": (sdims, apply(partial(_as_int, dtype=np.uint8), head[:, 5], np.uint8)),
            "coefs": (("segment", "band", "coef", *spatial), band_part[:, :, : _k.N_COEF], {"nodata": np.nan}),
            "rmse": (bdims, band_part[:, :, _k.N_COEF], {"nodata": np.nan}),
            "magnitude": (bdims, band_part[:, :, _k.N_COEF + 1], {"nodata": np.nan}),
        },
        coords=coords,
    )
    out.attrs = {
        "method": "CCDC (Zhu & Woodcock 2014) as lcmap-pyccd 2021.7.19",
        "model": "c0 + c1 t + sum_k c cos(k w t) + s sin(k w t), t ordinal day, w = 2 pi / 365.2425",
        "detection_bands": [names[i] for i in args[4]],
        "change_threshold": float(args[6][args[10]]),
        "outlier_threshold": float(args[7]),
        "peek": int(args[10]),
        "min_obs": int(args[9]),
    }
    return out
