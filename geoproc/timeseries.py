"""Per-pixel time-series models: harmonic regression, BFAST Monitor, and a CCDC-style change rule.

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
    "bfast_monitor",
    "ccdc_breaks",
    "decimal_years",
    "design_matrix",
    "mosum_critical_value",
    "MOSUM_CRITICAL_VALUES",
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

#: Critical values lambda of the OLS-MOSUM monitoring boundary ``lambda * sqrt(2 log+(t/n))``, from R's
#: strucchange (``monitorMECritvalTable``, functional "max", file ``R/critvals-monitoring.R``, CRAN version 1.5-x;
#: the table bfastmonitor and strucchange's ``mefp`` use for ``type = "OLS-MOSUM"``), for alpha -> h -> period.
#: strucchange tabulates 1 - alpha = 0.950, 0.951, ..., 0.999; the levels kept here are its rows 0.95, 0.975,
#: 0.99, 0.995 and 0.999, copied digit for digit (other levels: pass ``critical_value``).
MOSUM_CRITICAL_VALUES: dict[float, dict[float, dict[int, float]]] = {
    alpha: {
        h: dict(zip((2, 4, 6, 8, 10), row[i::3]))
        for i, h in enumerate((0.25, 0.5, 1.0))
    }
    for alpha, row in {
        0.05: (1.22762665817831, 1.68732328328598, 2.22408818231127, 1.33623105388957, 1.88633090100410,
               2.70443676308234, 1.34108685187662, 1.89958445059510, 2.73714807589866, 1.34165681503561,
               1.90129850983572, 2.74287924359951, 1.34182451007628, 1.90200317899371, 2.74592761324742),
        0.025: (1.32335166269351, 1.84186416555787, 2.48305431089417, 1.42022026752427, 2.03402198587187,
                2.95537968710744, 1.42362459481656, 2.04266224216936, 2.97653791054636, 1.42380433491698,
                2.04423035024309, 2.97934036146678, 1.42381861952310, 2.04438785665452, 2.98001396428591),
        0.01: (1.43326294742430, 2.03146339358619, 2.79961591720564, 1.51983679278537, 2.20116995886405,
               3.2528296362616, 1.52159988186384, 2.20853516508261, 3.27400632880909, 1.52162850629023,
               2.20875377365514, 3.27485973776243, 1.52164497279622, 2.20907282819197, 3.27693245691716),
        0.005: (1.50729964467061, 2.15191486007068, 3.02945819897377, 1.59695604364839, 2.32051977467861,
                3.46025134389695, 1.59797111384019, 2.32525489078505, 3.47339264373285, 1.59797111384019,
                2.32552183073452, 3.47422654487876, 1.59797111384019, 2.32552183073452, 3.47422654487876),
        0.001: (1.67397676536158, 2.43457585062277, 3.45472681303725, 1.74550948894458, 2.56886151964252,
                3.93535696186154, 1.74550948894458, 2.57025529149703, 3.94102916093653, 1.74550948894458,
                2.57025529149703, 3.94102916093653, 1.74550948894458, 2.57025529149703, 3.94102916093653),
    }.items()
}


def mosum_critical_value(h: float = 0.25, alpha: float = 0.05, period: int = 10) -> float:
    """strucchange's critical value of OLS-MOSUM monitoring for window ``h``, level ``alpha`` and ``period``.

    Parameters
    ----------
    h
        MOSUM window as a fraction of the history length: 0.25, 0.5 or 1.
    alpha
        Significance level: 0.05, 0.025, 0.01, 0.005 or 0.001.
    period
        Monitoring horizon as a multiple of the history length the
        boundary is calibrated for (bfastmonitor's ``end``): 2, 4, 6, 8 or 10.

    Returns
    -------
    float
        lambda of the boundary ``lambda * sqrt(2 * log+(t / n))``; see
        :data:`MOSUM_CRITICAL_VALUES` for the source.

    Examples
    --------
    >>> mosum_critical_value(0.25, 0.05, 10)  # bfastmonitor's defaults
    1.34182451007628
    """
    table = MOSUM_CRITICAL_VALUES.get(float(alpha))
    if table is None:
        raise InvalidArgumentError(
            f"alpha={alpha} is not tabulated here; use one of {sorted(MOSUM_CRITICAL_VALUES)} or pass critical_value=..."
        )
    if float(h) not in table:
        raise InvalidArgumentError(
            f"h={h} is not tabulated (strucchange has 0.25, 0.5, 1); pick one or pass critical_value=..."
        )
    if period not in table[float(h)]:
        raise InvalidArgumentError(f"period={period} is not tabulated (strucchange has 2, 4, 6, 8, 10); pick one")
    return table[float(h)][period]


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


def timeseries_array(kernel, values, invalid, args: tuple, rows: int, decode: tuple | None = None):
    """The dask/numpy layer: ``kernel(values, invalid, *args)`` per chunk of a time-first array -> ``(rows, ...)``.

    ``kernel`` is one of :mod:`geoproc.kernels.timeseries` (passed to the tasks
    by reference); ``decode`` is ``(scale, offset, nodata)`` for stored integers.

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
        return da.map_blocks(func, *inputs, dtype=np.float32, chunks=((rows,), *values.chunks[1:]))
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


def _dates(index_block: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Date index (float32, -1 for none) -> datetime64[ns] (NaT for none)."""
    idx = index_block.astype(np.int64)
    out = np.full(idx.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    hit = idx >= 0
    out[hit] = times[idx[hit]]
    return out


def _break_dataset(res, ordered, times, dim, last: str) -> xr.Dataset:
    """The common outputs of :func:`bfast_monitor` and :func:`ccdc_breaks` from the kernel's rows."""
    index, reason = res[0], res[2].astype(np.uint8)
    if is_dask(res):
        dates = index.map_blocks(partial(_dates, times=times), dtype="datetime64[ns]")
        detected = da.where(reason == 0, (index >= 0).astype(np.uint8), np.uint8(255))
    else:
        dates = _dates(index, times)
        detected = np.where(reason == 0, (index >= 0).astype(np.uint8), np.uint8(255))
    dims, coords = _spatial(ordered, dim)
    out = xr.Dataset(
        {
            "detected": (
                dims, detected.astype(np.uint8), {"nodata": 255, "flag_values": [0, 1], "flag_meanings": "no_break break"}
            ),
            "break_date": (dims, dates),
            "magnitude": (dims, res[1], {"nodata": np.nan}),
            "reason": (dims, reason, {"flag_values": list(REASON_CODES), "flag_meanings": _REASON_MEANINGS}),
            "n_history": (dims, res[3].astype(np.int16)),
            last: (dims, res[4], {"nodata": np.nan}),
        },
        coords=coords,
    )
    return out


def _periods(times, monitor_start, history_start) -> tuple[int, int]:
    mon = _index_of(times, monitor_start, "monitor_start")
    hist = 0 if history_start is None else _index_of(times, history_start, "history_start")
    if mon >= len(times):
        raise InvalidArgumentError(f"monitor_start={monitor_start} is after the last date {times[-1]}; nothing to monitor")
    if mon <= hist:
        raise InvalidArgumentError(f"no history before monitor_start={monitor_start}; give an earlier monitor_start")
    return hist, mon


def bfast_monitor(
    data: xr.DataArray,
    monitor_start,
    *,
    history_start=None,
    harmonics: int = 3,
    trend: bool = True,
    h: float = 0.25,
    alpha: float = 0.05,
    period: int = 10,
    critical_value: float | None = None,
    mask: xr.DataArray | None = None,
    dim: str = "time",
    min_obs: int | None = None,
    process: bool = False,
) -> xr.Dataset:
    """Break monitoring per pixel in the manner of BFAST Monitor (Verbesselt et al. 2012; R ``bfastmonitor``).

    A season-trend model (:func:`harmonic_fit`'s) is fitted on the stable
    history ``history_start <= t < monitor_start``; the OLS-MOSUM process of
    the residuals is then compared, at each valid observation of the
    monitoring period, with the boundary of R's strucchange
    (``mefp(type = "OLS-MOSUM")`` + ``monitor``): with n history observations,
    ``sigma = sqrt(RSS / (n - p))`` and ``K = floor(h n)``, the process at the
    i-th valid observation is the sum of the last K residuals over
    ``sigma sqrt(n)``, the boundary ``lambda sqrt(2 log+(i / n))`` with
    ``log+(x) = max(1, log x)``. The break is the first crossing. Masked and
    missing observations are dropped (as bfastmonitor drops NA), so windows
    count valid observations.

    Parameters
    ----------
    data
        One band or index along ``dim`` (datetimes, increasing).
    monitor_start
        First date of the monitoring period (e.g. ``"2024-06-01"``).
    history_start
        First date of the stable history (default: the first date).
    harmonics, trend
        The model (bfastmonitor's default: 3 harmonics and a trend).
    h
        MOSUM window as a fraction of the history length (0.25, 0.5, 1).
    alpha, period
        Significance level and horizon (bfastmonitor's ``level``, ``end``)
        selecting lambda in strucchange's table (:func:`mosum_critical_value`).
    critical_value
        lambda itself, overriding ``alpha`` and ``period``.
    mask
        Boolean, True where an observation must be left out (clouds).
    dim
        The time dimension.
    min_obs
        Fewest valid history observations (default: the coefficients + 1).
    process
        Also return the MOSUM process and the boundary at each monitoring
        date (``mosum``, ``boundary``; NaN elsewhere).

    Returns
    -------
    xarray.Dataset
        ``detected`` (uint8: 1 break, 0 none, 255 nodata), ``break_date``
        (datetime64, NaT without a break), ``magnitude`` (median of the
        monitoring-period residuals, as bfastmonitor; float32), ``reason``
        (uint8, see the module docstring), ``n_history`` (int16), ``sigma``.

    Examples
    --------
    >>> t = np.arange("2020-01-01", "2023-01-01", 8, dtype="datetime64[D]")
    >>> y = 0.7 + 0.1 * np.cos(2 * np.pi * decimal_years(t)) + np.random.default_rng(0).normal(0, 0.01, t.size)
    >>> y[t >= np.datetime64("2022-03-01")] -= 0.4  # a clearing
    >>> series = xr.DataArray(y[:, None], dims=("time", "x"), coords={"time": t})
    >>> out = bfast_monitor(series, "2022-01-01", harmonics=1)
    >>> int(out.detected[0]), str(out.break_date[0].values)[:10], round(float(out.magnitude[0]), 1)
    (1, '2022-03-03', -0.4)
    """
    ordered, times, invalid, dec = _prepare(data, mask, dim)
    hist, mon = _periods(times, monitor_start, history_start)
    crit = float(critical_value) if critical_value is not None else mosum_critical_value(h, alpha, period)
    if not 0 < h <= 1:
        raise InvalidArgumentError(f"h must be in (0, 1], got {h}")
    years = decimal_years(times)
    design, names = design_matrix(years, harmonics, trend, origin=years[hist])
    p = len(names)
    min_obs = p + 1 if min_obs is None else max(int(min_obs), p + 1)
    rows = 5 + (2 * len(times) if process else 0)
    args = (design, hist, mon, float(h), crit, min_obs, bool(process))
    res = timeseries_array(_k.bfast_monitor, ordered.data, invalid, args, rows, dec)
    out = _break_dataset(res, ordered, times, dim, "sigma")
    if process:
        dims, coords = _spatial(ordered, dim)
        full = (dim, *dims)
        tcoords = {**coords, dim: ordered[dim]}
        out["mosum"] = xr.DataArray(res[5 : 5 + len(times)], dims=full, coords=tcoords)
        out["boundary"] = xr.DataArray(res[5 + len(times) :], dims=full, coords=tcoords)
    out.attrs = {
        "method": "BFAST Monitor (OLS-MOSUM)", "history_start": str(times[hist]), "monitor_start": str(times[mon]),
        "h": float(h), "alpha": float(alpha), "period": int(period), "critical_value": crit,
        "harmonics": int(harmonics), "trend": int(bool(trend)), "time_origin": float(years[hist]),
    }
    return out


def ccdc_breaks(
    data: xr.DataArray,
    monitor_start,
    *,
    history_start=None,
    harmonics: int = 3,
    trend: bool = True,
    consecutive: int = 6,
    threshold: float = 3.0,
    mask: xr.DataArray | None = None,
    dim: str = "time",
    min_obs: int | None = None,
) -> xr.Dataset:
    """A CCDC-style change rule (Zhu & Woodcock 2014), on one band or index, per pixel.

    The model of :func:`harmonic_fit` is fitted on the history
    ``history_start <= t < monitor_start``; a change is flagged at the first
    of ``consecutive`` valid monitoring observations in a row whose absolute
    residual exceeds ``threshold`` times the history RMSE
    (``sqrt(RSS / (n - p))``). Unlike CCDC proper there is one band, one fit
    (no refitting as the series grows) and no change probability.

    Parameters
    ----------
    data, monitor_start, history_start, harmonics, trend, mask, dim
        As in :func:`bfast_monitor`.
    consecutive
        Observations in a row that confirm a change (CCDC: 6).
    threshold
        Multiple of the RMSE a residual must exceed.
    min_obs
        Fewest valid history observations (default: the coefficients + 1).

    Returns
    -------
    xarray.Dataset
        ``detected`` (uint8: 1, 0, 255 nodata), ``break_date`` (the first
        observation of the run; NaT without a change), ``magnitude`` (median
        residual of the run; NaN without a change), ``reason``,
        ``n_history``, ``rmse``.

    Examples
    --------
    >>> t = np.arange("2020-01-01", "2023-01-01", 8, dtype="datetime64[D]")
    >>> y = 0.7 + 0.1 * np.sin(2 * np.pi * decimal_years(t)) + np.random.default_rng(0).normal(0, 0.01, t.size)
    >>> y[t >= np.datetime64("2022-03-01")] -= 0.4
    >>> out = ccdc_breaks(xr.DataArray(y[:, None], dims=("time", "x"), coords={"time": t}), "2022-01-01", harmonics=1)
    >>> int(out.detected[0]), str(out.break_date[0].values)[:10]
    (1, '2022-03-03')
    """
    ordered, times, invalid, dec = _prepare(data, mask, dim)
    hist, mon = _periods(times, monitor_start, history_start)
    if int(consecutive) < 1 or not threshold > 0:
        raise InvalidArgumentError(f"need consecutive >= 1 and threshold > 0, got {consecutive} and {threshold}")
    years = decimal_years(times)
    design, names = design_matrix(years, harmonics, trend, origin=years[hist])
    p = len(names)
    min_obs = p + 1 if min_obs is None else max(int(min_obs), p + 1)
    args = (design, hist, mon, int(consecutive), float(threshold), min_obs)
    res = timeseries_array(_k.ccdc_breaks, ordered.data, invalid, args, 5, dec)
    out = _break_dataset(res, ordered, times, dim, "rmse")
    out.attrs = {
        "method": "CCDC-style consecutive anomalies", "history_start": str(times[hist]), "monitor_start": str(times[mon]),
        "consecutive": int(consecutive), "threshold": float(threshold), "harmonics": int(harmonics),
        "trend": int(bool(trend)), "time_origin": float(years[hist]),
    }
    return out
