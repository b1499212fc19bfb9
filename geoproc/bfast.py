"""BFAST Monitor as R's ``bfastmonitor`` computes it (Verbesselt, Zeileis & Herold 2012), per pixel, lazily.

The steps of ``bfastmonitor(data, start, formula = response ~ trend + harmon,
order = 3, history = "ROC", type = "OLS-MOSUM", h = 0.25, end = 10,
level = 0.05)``, each pixel on its own valid observations:

1. the time axis in decimal years, as R's ``time(ts)``: a numeric time
   coordinate is used as it is; dates are converted as bfast's ``bfastts``
   does for ``frequency`` 365 (``type = "irregular"``), 23 (``"16-day"``) or
   36 (``"10-day"``), or to calendar-year fractions by default;
2. the season-trend design ``1, trend, cos(2 pi k t), sin(2 pi k t)``,
   ``k = 1..order`` (``order = min(frequency, harmonics)``; the last sine
   dropped when ``2 order == frequency``, as bfastpp);
3. the stable history: ``"ROC"`` (default) the reverse-ordered CUSUM test
   (:mod:`geoproc.kernels.bfast`), ``"all"``, or a fixed start;
4. OLS-MOSUM monitoring from strucchange's ``mefp`` + ``monitor``: the
   process, the boundary ``lambda sqrt(2 log+(i / n))`` and the first
   crossing, the break; the magnitude is the median monitoring residual.

Reason codes are those of :mod:`geoproc.timeseries` (``REASON_CODES``). The
kernels are in :mod:`geoproc.kernels.bfast`; this module checks the inputs,
builds the time axis and design, and runs the kernel per chunk (numpy or dask).
"""

from __future__ import annotations

from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from .errors import InvalidArgumentError
from .kernels import bfast as _k
from .timeseries import REASON_CODES, _REASON_MEANINGS, decimal_years, timeseries_array

__all__ = [
    "bfast_monitor",
    "ts_time",
    "mosum_critical_value",
    "rec_cusum_boundary",
    "MOSUM_CRITICAL_VALUES",
    "REC_CUSUM_BOUNDARIES",
]

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

#: The Rec-CUSUM boundary constant b of the ROC test for a level, as R computes it: strucchange's
#: ``boundary.efp`` solves ``pvalue.efp(b) = level`` with ``uniroot`` on (0, 20) at its default tolerance
#: (``.Machine$double.eps^0.25``), so b is R's root, not the exact one (they differ by up to ~1e-4); printed
#: by R 4.2 / strucchange 1.5-3 with ``sprintf("%.17g")``. Other levels are solved here to 1e-12.
REC_CUSUM_BOUNDARIES: dict[float, float] = {
    0.1: 0.8499250310173927,
    0.05: 0.94789810173212397,
    0.025: 1.0365074051405685,
    0.01: 1.1429744316838992,
    0.005: 1.2172179105099346,
    0.001: 1.3739243077188463,
}

#: bfastts' conversions of dates to R's decimal years, by frequency (see :func:`ts_time`).
_BFASTTS_TYPES = {365: "irregular", 23: "16-day", 36: "10-day"}
_CUMDAYS = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])


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


def rec_cusum_boundary(level: float = 0.05) -> float:
    """The constant b of the Rec-CUSUM boundary ``b (1 + 2 t)`` at significance ``level`` (the ROC test's).

    Examples
    --------
    >>> round(rec_cusum_boundary(0.05), 4)  # the classic 0.948 of Brown, Durbin & Evans
    0.9479
    """
    if not 0 < level < 1:
        raise InvalidArgumentError(f"the ROC level must be in (0, 1), got {level}")
    if float(level) in REC_CUSUM_BOUNDARIES:
        return REC_CUSUM_BOUNDARIES[float(level)]
    lo, hi = 0.0, 20.0  # p-value decreases with b
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _k.rec_cusum_pvalue(mid) > level:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def ts_time(times, frequency: int | None = None) -> np.ndarray:
    """Decimal years of a time coordinate in R's convention (float64).

    Numbers (already R's ``time(ts)``, e.g. ``2010 + (i - 1) / 23``) are
    returned as they are. Dates are converted as bfast's ``bfastts`` does:
    ``frequency=365`` (``type = "irregular"``): ``year + (yday365 - 1) / 365``
    with 29 February counted as 1 March; ``23`` (``"16-day"``):
    ``year + (doy - 1) / 16 / 23``; ``36`` (``"10-day"``):
    ``year + round((yday - 1) / 10) / 36`` with R's 0-based ``yday``;
    ``None``: calendar-year fractions (:func:`geoproc.timeseries.decimal_years`).

    Examples
    --------
    >>> t = np.array(["2012-01-01", "2012-03-01", "2012-12-31"], "datetime64[D]")
    >>> ts_time(t, 365).round(6).tolist()
    [2012.0, 2012.161644, 2012.99726]
    >>> ts_time(np.array(["2010-01-01", "2010-01-17"], "datetime64[D]"), 23).tolist() == [2010.0, 2010 + 1 / 23]
    True
    """
    values = np.asarray(times)
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind != "M":
        raise InvalidArgumentError(f"the time coordinate must hold dates or decimal years, got {values.dtype}")
    if frequency is None:
        return decimal_years(values)
    if frequency not in _BFASTTS_TYPES:
        raise InvalidArgumentError(
            f"frequency={frequency} with dates: bfastts converts dates for 365 (irregular), 23 (16-day) or 36 "
            "(10-day); pick one, or give the time coordinate in decimal years"
        )
    t = values.astype("datetime64[D]")
    if np.isnat(t).any():
        raise InvalidArgumentError("the time coordinate has missing values (NaT); drop those dates first")
    year = t.astype("datetime64[Y]")
    doy0 = (t - year.astype("datetime64[D]")).astype(np.int64)  # R's POSIXlt yday, 0-based
    y = year.astype(np.int64) + 1970
    if frequency == 365:
        month = (t.astype("datetime64[M]") - year.astype("datetime64[M]")).astype(np.int64)
        mday = (t - t.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        return y + (_CUMDAYS[month] + mday - 1) / 365
    if frequency == 23:
        return y + doy0 / 16 / 23
    return y + np.round((doy0 - 1) / 10) / 36


def _when(when, times: np.ndarray, years: np.ndarray, frequency, what: str) -> int:
    """Index of the first time ``>= when``: a date, a decimal year or R's ``c(year, period)``."""
    if isinstance(when, (tuple, list)):
        if len(when) != 2 or frequency is None:
            raise InvalidArgumentError(
                f"{what}={when!r}: a (year, period) start needs two numbers and frequency=...; "
                "or pass a decimal year or a date"
            )
        value = float(when[0]) + (float(when[1]) - 1) / float(frequency)
    elif isinstance(when, (int, float, np.integer, np.floating)) and not isinstance(when, bool):
        value = float(when)
    else:
        if times.dtype.kind != "M":
            raise InvalidArgumentError(
                f"{what}={when!r}: the time coordinate holds decimal years; pass a decimal year or (year, period)"
            )
        import pandas as pd

        try:
            stamp = pd.Timestamp(when)
        except (ValueError, TypeError):
            raise InvalidArgumentError(f"{what}={when!r} is not a date; pass e.g. '2024-06-01' or 2024.5") from None
        if stamp is pd.NaT:
            raise InvalidArgumentError(f"{what} is missing (NaT); pass a date such as '2024-06-01'")
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        value = float(ts_time(np.array([stamp.to_datetime64()], "datetime64[ns]"), frequency)[0])
    return int(np.searchsorted(years, value, side="left"))


def _prepare(data, mask, dim):
    from .compositing import _invalid, _time_first, decoding

    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(
            f"bfast_monitor takes one band or index (a DataArray), got {type(data).__name__}; e.g. geoproc.ndvi(ds)"
        )
    ordered = _time_first(data, dim)
    times = ordered[dim].values
    if times.dtype.kind == "M":
        times = times.astype("datetime64[ns]")
    return ordered, times, _invalid(mask, ordered), decoding(ordered)


def _design(years: np.ndarray, harmonics: int, trend: bool, frequency, origin: float):
    """bfastpp's design: intercept, trend, cos1..cosK, sin1..sinK (its column order, which decides aliasing).

    With a ``frequency`` the trend is R's ``1:N`` over the whole series (time
    steps since the first time + 1), else years since ``origin``.
    """
    order = harmonics if frequency is None else min(int(frequency), harmonics)
    if not 1 <= order <= 3 or int(harmonics) != harmonics:
        raise InvalidArgumentError(f"harmonics must be 1, 2 or 3 (annual harmonics), got {harmonics}")
    cols, names = [np.ones_like(years)], ["intercept"]
    if trend:
        cols.append((years - years[0]) * float(frequency) + 1 if frequency is not None else years - origin)
        names.append("trend")
    cols += [np.cos(2 * np.pi * k * years) for k in range(1, order + 1)]
    cols += [np.sin(2 * np.pi * k * years) for k in range(1, order + 1)]
    names += [f"cos{k}" for k in range(1, order + 1)] + [f"sin{k}" for k in range(1, order + 1)]
    if frequency is not None and 2 * order == int(frequency):  # bfastpp: sin(pi t f) is 0 at every time step
        cols, names = cols[:-1], names[:-1]
    return np.ascontiguousarray(np.stack(cols, axis=1)), names


def _at(index_block: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Date index (float32, -1 for none) -> the axis' value there (NaT / NaN for none)."""
    idx = index_block.astype(np.int64)
    out = np.full(idx.shape, np.datetime64("NaT") if axis.dtype.kind == "M" else np.nan, dtype=axis.dtype)
    hit = idx >= 0
    out[hit] = axis[idx[hit]]
    return out


def _lookup(index, axis):
    if is_dask(index):
        return index.map_blocks(partial(_at, axis=axis), dtype=axis.dtype)
    return _at(index, axis)


def bfast_monitor(
    data: xr.DataArray,
    monitor_start,
    *,
    history="ROC",
    frequency: int | None = None,
    harmonics: int = 3,
    trend: bool = True,
    h: float = 0.25,
    alpha: float = 0.05,
    period: int = 10,
    roc_alpha: float | None = None,
    critical_value: float | None = None,
    mask: xr.DataArray | None = None,
    dim: str = "time",
    min_obs: int | None = None,
    process: bool = False,
) -> xr.Dataset:
    """Break monitoring per pixel as R's ``bfastmonitor`` (Verbesselt et al. 2012), with its defaults.

    The history (valid observations before ``monitor_start``) is cut to its
    stable part (``history``), a season-trend model is fitted there, and the
    OLS-MOSUM process of the residuals is compared at each valid monitoring
    observation with strucchange's boundary: with n stable-history
    observations, ``sigma = sqrt(RSS / (n - p))`` and ``K = floor(h n)``, the
    process at the i-th valid observation from the history start is the sum
    of the last K residuals over ``sigma sqrt(n)``, the boundary
    ``lambda sqrt(2 log+(i / n))``. The break is the first crossing. Masked and
    missing observations are dropped, as bfastmonitor drops NA.

    Parameters
    ----------
    data
        One band or index along ``dim``, increasing: dates, or decimal years
        as R's ``time(ts)`` (e.g. ``2000 + (i - 1) / 23``).
    monitor_start
        Start of the monitoring period: a date (``"2024-06-01"``), a decimal
        year (``2010.5``) or R's ``(year, period)`` (needs ``frequency``).
    history
        The stable history: ``"ROC"`` (reverse-ordered CUSUM, bfastmonitor's
        default), ``"all"``, or its start (as ``monitor_start``).
    frequency
        Observations per year of R's ``ts``: how dates become decimal years
        (365, 23 or 36 as bfastts; None: calendar-year fractions, see
        :func:`ts_time`), the (year, period) starts, and bfastpp's
        ``order = min(frequency, harmonics)``.
    harmonics, trend
        The model (bfastmonitor's default: ``order = 3`` and a trend).
    h
        MOSUM window as a fraction of the stable history (0.25, 0.5, 1).
    alpha, period
        Significance level and horizon (bfastmonitor's ``level``, ``end``)
        selecting lambda in strucchange's table (:func:`mosum_critical_value`).
    roc_alpha
        Level of the ROC test (default ``alpha``, as bfastmonitor's ``level``);
        as in bfast, the history then starts after the crossing of the 5 %
        boundary (``boundary(efp)`` at its default level) whatever this level.
    critical_value
        lambda itself, overriding ``alpha`` and ``period``.
    mask
        Boolean, True where an observation must be left out (clouds).
    dim
        The time dimension.
    min_obs
        Fewest valid stable-history observations (default: the coefficients + 1).
    process
        Also return the MOSUM process and the boundary at each monitoring
        time (``mosum``, ``boundary``; NaN elsewhere).

    Returns
    -------
    xarray.Dataset
        ``detected`` (uint8: 1 break, 0 none, 255 nodata), ``break_date`` (a
        date, or decimal year for a numeric axis; NaT/NaN without a break),
        ``break_time`` (decimal years as :func:`ts_time`: R's ``breakpoint``),
        ``magnitude`` (median monitoring-period residual, float32),
        ``history_start`` (where the stable history starts, as ``break_date``),
        ``reason`` (uint8, :data:`geoproc.timeseries.REASON_CODES`),
        ``n_history`` (int16), ``sigma``.

    Examples
    --------
    >>> t = np.arange("2018-01-01", "2023-01-01", 16, dtype="datetime64[D]")
    >>> yrs = ts_time(t, 365)
    >>> y = 0.7 + 0.1 * np.cos(2 * np.pi * yrs) + np.random.default_rng(0).normal(0, 0.01, t.size)
    >>> y[t < np.datetime64("2019-06-01")] -= 0.3  # a disturbance before the stable history
    >>> y[t >= np.datetime64("2022-03-01")] -= 0.4  # the clearing to find
    >>> series = xr.DataArray(y[:, None], dims=("time", "x"), coords={"time": t})
    >>> out = bfast_monitor(series, "2022-01-01", frequency=365, harmonics=1)  # history="ROC"
    >>> str(out.history_start[0].values)[:10], str(out.break_date[0].values)[:10], round(float(out.magnitude[0]), 2)
    ('2019-02-21', '2022-03-17', -0.48)
    >>> int(bfast_monitor(series, "2022-01-01", frequency=365, harmonics=1, history="all").n_history[0])
    92
    """
    if frequency is not None and (isinstance(frequency, bool) or int(frequency) != frequency or frequency < 1):
        raise InvalidArgumentError(f"frequency must be a whole number of observations per year (e.g. 23), got {frequency!r}")
    ordered, times, invalid, dec = _prepare(data, mask, dim)
    years = ts_time(times, frequency)
    if len(years) > 1 and not (np.diff(years) > 0).all():
        raise InvalidArgumentError(
            f"the {dim!r} coordinate must increase (two dates may share one time step of frequency {frequency}); "
            f"sort first with data.sortby({dim!r}) or keep one observation per step"
        )
    if not 0 < h <= 1:
        raise InvalidArgumentError(f"h must be in (0, 1], got {h}")
    mon = _when(monitor_start, times, years, frequency, "monitor_start")
    if mon >= len(years):
        raise InvalidArgumentError(f"monitor_start={monitor_start} is after the last date {times[-1]}; nothing to monitor")
    mode = history.upper() if isinstance(history, str) and history.upper() in ("ROC", "ALL", "BP") else None
    roc = mode == "ROC"
    if mode in ("ROC", "ALL"):
        hist = 0
    elif mode == "BP":
        raise InvalidArgumentError('history="BP" (Bai-Perron) is not implemented; use "ROC", "all" or a start')
    else:
        hist = _when(history, times, years, frequency, "history")
    if mon <= hist:
        raise InvalidArgumentError(f"no history before monitor_start={monitor_start}; give an earlier monitor_start")
    crit = float(critical_value) if critical_value is not None else mosum_critical_value(h, alpha, period)
    roc_alpha = float(alpha if roc_alpha is None else roc_alpha)
    design, names = _design(years, int(harmonics), trend, frequency, origin=years[hist])
    p = len(names)
    min_obs = p + 1 if min_obs is None else max(int(min_obs), p + 1)
    rows = _k.ROWS + (2 * len(years) if process else 0)
    # as bfast's history_roc: the test at roc_alpha, the crossing against strucchange's default 5 % boundary
    args = (design, hist, mon, float(h), crit, min_obs, bool(process), roc, roc_alpha, rec_cusum_boundary(0.05))
    res = timeseries_array(_k.bfast_monitor, ordered.data, invalid, args, rows, dec, dtype=np.float64)
    out = _dataset(res, ordered, times, years, dim)
    if process:
        dims = ordered.dims[1:]
        tcoords = {**{k: v for k, v in ordered.coords.items() if dim not in v.dims}, dim: ordered[dim]}
        out["mosum"] = xr.DataArray(res[_k.ROWS : _k.ROWS + len(years)], dims=(dim, *dims), coords=tcoords)
        out["boundary"] = xr.DataArray(res[_k.ROWS + len(years) :], dims=(dim, *dims), coords=tcoords)
    out.attrs = {
        "method": "BFAST Monitor (R bfastmonitor: OLS-MOSUM)", "history": {"ROC": "ROC", "ALL": "all"}.get(mode, str(times[hist])),
        "monitor_start": str(times[mon]), "frequency": "calendar" if frequency is None else int(frequency),
        "h": float(h), "alpha": float(alpha), "period": int(period), "critical_value": crit, "roc_alpha": roc_alpha,
        "harmonics": int(harmonics), "trend": int(bool(trend)), "coefficients": names, "time_origin": float(years[hist]),
    }
    return out


def _dataset(res, ordered, times, years, dim) -> xr.Dataset:
    index, reason = res[0], res[2].astype(np.uint8)
    where = da.where if is_dask(res) else np.where
    detected = where(reason == 0, (index >= 0).astype(np.uint8), np.uint8(255)).astype(np.uint8)
    dims = ordered.dims[1:]
    coords = {k: v for k, v in ordered.coords.items() if dim not in v.dims}
    return xr.Dataset(
        {
            "detected": (dims, detected, {"nodata": 255, "flag_values": [0, 1], "flag_meanings": "no_break break"}),
            "break_date": (dims, _lookup(index, times)),
            "break_time": (dims, _lookup(index, years), {"units": "decimal years", "nodata": np.nan}),
            "magnitude": (dims, res[1].astype(np.float32), {"nodata": np.nan}),
            "history_start": (dims, _lookup(res[5], times)),
            "reason": (dims, reason, {"flag_values": list(REASON_CODES), "flag_meanings": _REASON_MEANINGS}),
            "n_history": (dims, res[3].astype(np.int16)),
            "sigma": (dims, res[4].astype(np.float32), {"nodata": np.nan}),
        },
        coords=coords,
    )
