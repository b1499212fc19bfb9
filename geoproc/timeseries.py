"""Per-pixel time-series models: harmonic regression (BFAST Monitor: :mod:`geoproc.bfast`; CCDC: :mod:`geoproc.ccdc`).

Every pixel's series is fitted on its own valid observations only (not NaN,
not nodata, not masked), so clouds and irregular revisits need no gap
filling. Time is in fractional years from the ``time`` coordinate (calendar
years: 2024-07-02 is about 2024.5), so harmonics are annual whatever the
revisit. The model is

``y(t) = c0 + c1 (t - t0) + sum_k [a_k cos(2 pi k t) + b_k sin(2 pi k t)]``,
``k = 1..harmonics``

with ``t0`` the fractional year of the first date used (attrs
``time_origin``); the trend term is optional.

Reason codes (variable ``reason``; pixels with a code other than 0 are nodata):

====  =====================================================================
code  meaning
====  =====================================================================
0     a result
1     too few valid observations in the history (fitting) period: fewer than
      the coefficients + 1, fewer than ``min_obs``, or (BFAST) a MOSUM window
      ``floor(h * n)`` of 1 or less
2     no valid observation in the monitoring period
3     the valid dates do not determine the model (collinear design) or the
      history fits exactly (zero residual variance)
====  =====================================================================

The time axis must be whole in each chunk (rechunked if it is not).
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask, kernel_path, resolve
from .errors import InvalidArgumentError
from .kernels import timeseries as _k
from .kernels.composite import decode

__all__ = [
    "harmonic_fit",
    "decimal_years",
    "design_matrix",
    "REASON_CODES",
]

#: Reason codes of the ``reason`` variable.
REASON_CODES = {
    _k.REASON_OK: "ok",
    _k.REASON_FEW_HISTORY: "too few valid observations in the history period",
    _k.REASON_NO_MONITORING: "no valid observation in the monitoring period",
    _k.REASON_SINGULAR: "model not determined by the valid dates (collinear) or zero residual variance",
}

_REASON_MEANINGS = " ".join(v.replace(" ", "_") for v in REASON_CODES.values())

def decimal_years(times) -> np.ndarray:
    """Fractional calendar years of datetimes: ``year + (t - Jan 1) / (length of that year)``, float64.

    Examples
    --------
    >>> decimal_years(np.array(["2024-01-01", "2024-07-02", "2025-01-01"], "datetime64[ns]"))
    array([2024. , 2024.5, 2025. ])
    """
    t = np.asarray(times).astype("datetime64[ns]")
    if np.isnat(t).any():
        raise InvalidArgumentError("the time coordinate has missing values (NaT); drop those dates first")
    year = t.astype("datetime64[Y]")
    start = year.astype("datetime64[ns]")
    length = (year + np.timedelta64(1, "Y")).astype("datetime64[ns]") - start
    return year.astype(np.int64) + 1970 + (t - start) / length


def design_matrix(years: np.ndarray, harmonics: int = 3, trend: bool = True, origin: float | None = None):
    """The regression design ``(T, p)`` at fractional years, and the coefficient names.

    Columns: ``intercept``, ``trend`` (years since ``origin``, default the first
    date; if ``trend``), then ``cos1``, ``sin1``, ... ``cos{harmonics}``, ``sin{harmonics}``
    (``cos(2 pi k t)`` and ``sin(2 pi k t)`` of the calendar year fraction).

    Examples
    --------
    >>> x, names = design_matrix(np.array([2024.0, 2024.25]), harmonics=1)
    >>> names, x.round(6).tolist()
    (['intercept', 'trend', 'cos1', 'sin1'], [[1.0, 0.0, 1.0, 0.0], [1.0, 0.25, 0.0, 1.0]])
    """
    if not 1 <= int(harmonics) <= 3 or int(harmonics) != harmonics:
        raise InvalidArgumentError(f"harmonics must be 1, 2 or 3 (annual harmonics), got {harmonics}")
    years = np.asarray(years, dtype=np.float64)
    origin = float(years[0]) if origin is None else float(origin)
    cols, names = [np.ones_like(years)], ["intercept"]
    if trend:
        cols.append(years - origin)
        names.append("trend")
    for k in range(1, int(harmonics) + 1):
        cols += [np.cos(2 * np.pi * k * years), np.sin(2 * np.pi * k * years)]
        names += [f"cos{k}", f"sin{k}"]
    return np.ascontiguousarray(np.stack(cols, axis=1)), names


def _ts_block(path: str, dec: tuple | None, args: tuple, v: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    """One block: run the kernel at ``path`` on ``(T, ...)`` -> ``(rows, ...)`` (module-level: pickled by reference)."""
    t_len, rest = v.shape[0], v.shape[1:]
    flat = np.ascontiguousarray(v).reshape(t_len, -1)
    if dec is not None:
        flat = decode(flat.reshape(-1), *dec).reshape(t_len, -1)
    mflat = np.ascontiguousarray(m).reshape(t_len, -1) if m is not None else np.zeros((0, 0), np.bool_)
    res = resolve(path)(flat, mflat, *args)
    return res.reshape((res.shape[0], *rest))


def timeseries_array(kernel, values, invalid, args: tuple, rows: int, decode: tuple | None = None, dtype=np.float32):
    """The dask/numpy layer: ``kernel(values, invalid, *args)`` per chunk of a time-first array -> ``(rows, ...)``.

    ``kernel`` is one of :mod:`geoproc.kernels.timeseries` (passed to the tasks
    by reference); ``decode`` is ``(scale, offset, nodata)`` for stored integers; ``dtype``
    the kernel's output type.

    Examples
    --------
    >>> from geoproc.kernels import timeseries as k
    >>> x, _ = design_matrix(np.array([2020.0, 2020.25, 2020.5, 2020.75]), harmonics=1, trend=False)
    >>> y = np.float32([[1.0], [2.0], [1.0], [0.0]])
    >>> timeseries_array(k.harmonic_fit, y, None, (x, 0, 4, 3), 6)[:3, 0].round(3)
    array([1., 0., 1.], dtype=float32)
    """
    if decode is None and np.dtype(values.dtype).kind != "f":
        decode = (1.0, 0.0, np.nan)
    if is_dask(values) and values.numblocks[0] > 1:
        values = values.rechunk({0: -1})
    inputs = [values]
    if invalid is not None:
        if invalid.shape != values.shape:
            raise InvalidArgumentError(f"mask shape {invalid.shape} differs from data shape {values.shape}")
        if is_dask(values):
            invalid = (invalid if is_dask(invalid) else da.from_array(invalid)).rechunk(values.chunks)
        inputs.append(invalid)
    func = partial(_ts_block, kernel_path(kernel), decode, tuple(args))
    if is_dask(values):
        return da.map_blocks(func, *inputs, dtype=dtype, chunks=((rows,), *values.chunks[1:]))
    return func(*inputs)


def _prepare(data: xr.DataArray, mask, dim: str):
    from .compositing import _invalid, _time_first, decoding

    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(
            f"time-series models take one band or index (a DataArray), got {type(data).__name__}; e.g. geoproc.ndvi(ds)"
        )
    ordered = _time_first(data, dim)
    if not np.issubdtype(ordered[dim].dtype, np.datetime64):
        raise InvalidArgumentError(f"the {dim!r} coordinate must hold datetimes, got {ordered[dim].dtype}")
    times = ordered[dim].values.astype("datetime64[ns]")
    if len(times) > 1 and not (np.diff(times) > np.timedelta64(0, "ns")).all():
        raise InvalidArgumentError(f"the {dim!r} coordinate must increase; sort first with data.sortby({dim!r})")
    return ordered, times, _invalid(mask, ordered), decoding(ordered)


def _index_of(times: np.ndarray, when, what: str) -> int:
    """Index of the first date ``>= when``; ``when`` is a date string, datetime or datetime64 (UTC if tz-aware)."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"{what}={when!r} is not a date; pass e.g. '2024-06-01'") from None
    if stamp is pd.NaT:
        raise InvalidArgumentError(f"{what} is missing (NaT); pass a date such as '2024-06-01'")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return int(np.searchsorted(times, stamp.to_datetime64().astype("datetime64[ns]"), side="left"))


def _spatial(ordered: xr.DataArray, dim: str) -> tuple[tuple, dict]:
    return ordered.dims[1:], {k: v for k, v in ordered.coords.items() if dim not in v.dims}


def harmonic_fit(
    data: xr.DataArray,
    *,
    harmonics: int = 3,
    trend: bool = True,
    mask: xr.DataArray | None = None,
    dim: str = "time",
    start=None,
    end=None,
    min_obs: int | None = None,
) -> xr.Dataset:
    """Fit a trend and annual harmonics to every pixel's valid observations (least squares).

    Parameters
    ----------
    data
        One band or index along ``dim`` (datetimes, increasing), e.g. NDVI;
        stored integers with scale/offset/nodata attrs are decoded.
    harmonics
        Number of annual harmonics, 1 to 3.
    trend
        Include a linear trend (per year).
    mask
        Boolean, True where an observation must be left out (clouds).
    dim
        The time dimension.
    start, end
        Fit only dates ``start <= t < end`` (default: all).
    min_obs
        Fewest valid observations to fit a pixel (default and minimum: the
        number of coefficients).

    Returns
    -------
    xarray.Dataset
        ``coefficients`` (float32, dim ``coef``: ``intercept``, ``trend``,
        ``cos1``, ``sin1``...; see :func:`design_matrix`), ``rmse``
        (``sqrt(RSS / (n - p))``), ``n_obs`` (int16) and ``reason`` (uint8,
        see the module docstring); NaN where ``reason != 0``. ``attrs``:
        ``time_origin`` (the fractional year ``t0`` of the trend), ``harmonics``, ``trend``.

    Examples
    --------
    >>> t = np.arange("2020-01-01", "2022-01-01", 16, dtype="datetime64[D]")
    >>> yrs = decimal_years(t)
    >>> y = 0.5 + 0.2 * np.cos(2 * np.pi * yrs) + 0.05 * (yrs - yrs[0])
    >>> fit = harmonic_fit(xr.DataArray(y[:, None], dims=("time", "x"), coords={"time": t}), harmonics=1)
    >>> fit.coefficients[:, 0].values.round(4)
    array([0.5 , 0.05, 0.2 , 0.  ], dtype=float32)
    """
    ordered, times, invalid, dec = _prepare(data, mask, dim)
    first = 0 if start is None else _index_of(times, start, "start")
    stop = len(times) if end is None else _index_of(times, end, "end")
    if stop <= first:
        raise InvalidArgumentError(f"no date between start={start} and end={end}; check the period")
    years = decimal_years(times)
    design, names = design_matrix(years, harmonics, trend, origin=years[first])
    p = len(names)
    min_obs = p if min_obs is None else max(int(min_obs), p)
    res = timeseries_array(_k.harmonic_fit, ordered.data, invalid, (design, first, stop, min_obs), p + 3, dec)
    dims, coords = _spatial(ordered, dim)
    out = xr.Dataset(
        {
            "coefficients": (("coef", *dims), res[:p]),
            "rmse": (dims, res[p]),
            "n_obs": (dims, res[p + 1].astype(np.int16)),
            "reason": (dims, res[p + 2].astype(np.uint8)),
        },
        coords={**coords, "coef": names},
    )
    out.attrs = {"time_origin": float(years[first]), "harmonics": int(harmonics), "trend": int(bool(trend))}
    return out
