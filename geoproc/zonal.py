"""Zonal statistics: per zone and time step, from per-chunk partial aggregates combined in a tree.

How it runs, chunk by chunk:

1. Per spatial chunk, once: which pixels each zone covers and with what weight (:func:`geoproc._zones.block_weights`:
   centre rule or exact coverage fraction; or the label raster's pixels). Only the zones whose bounds touch the chunk
   are sent to its task.
2. Per chunk and time block: for every zone in the chunk, the weighted count, sum, sum of squares, minimum and
   maximum of its valid (non-NaN) pixels. A partial holds only the zones present in its chunk.
3. Partials are combined eight at a time (a tree reduction) by zone, so memory depends on the number of zones and
   the chunk size, not on the area.

Medians and percentiles are exact: they cannot be combined from partial sums, so their partials carry the zone's
pixel values and weights, and the quantile is taken on all of them at the end (:mod:`geoproc.kernels.zonal`:
linear interpolation, numpy's default with the centre rule; exactextract's weighted quantile with fractions).
Their memory is the number of covered pixels in one time block, not the whole cube.
"""

from __future__ import annotations

import re

import dask
import dask.array as da
import numpy as np
import shapely
import xarray as xr
from affine import Affine

from ._zones import COVERAGES, block_weights, read_polygons
from .errors import InvalidArgumentError
from .kernels.zonal import zone_quantiles

__all__ = ["zonal_stats"]

MOMENTS = ("count", "sum", "mean", "std", "min", "max")
FANIN = 8


def _quantile_of(stat: str) -> float | None:
    if stat == "median":
        return 0.5
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)", stat)
    if m and 0 <= float(m.group(1)) <= 100:
        return float(m.group(1)) / 100
    return None


def _check_stats(stats) -> tuple[str, ...]:
    stats = (stats,) if isinstance(stats, str) else tuple(stats)
    bad = [s for s in stats if s not in MOMENTS and _quantile_of(s) is None]
    if bad or not stats:
        raise InvalidArgumentError(f"unknown statistic(s) {bad}; choose from {', '.join(MOMENTS)}, median, "
                                   "or pNN for the NN-th percentile (p10, p90, p2.5)")
    return stats


def _label_weights(labels: np.ndarray):
    flat = np.asarray(labels).ravel()
    p = np.flatnonzero(flat)
    z = flat[p].astype(np.int64)
    order = np.argsort(z, kind="stable")
    return z[order], p[order], np.ones(len(p))


def _starts(keys: np.ndarray) -> np.ndarray:
    return np.r_[0, np.flatnonzero(np.diff(keys)) + 1]


def _partial(block: np.ndarray, weights, want_q: bool) -> dict:
    """Moments of every zone in one chunk: ``keys (k,)`` and ``(t, k)`` arrays."""
    z, p, w = weights
    t = block.shape[0]
    vals = np.asarray(block, dtype=np.float64).reshape(t, -1)[:, p]
    out = {"keys": np.unique(z), "q": (z, vals, w) if want_q else None}
    if not len(z):
        for name in ("count", "sum", "sumsq", "min", "max"):
            out[name] = np.zeros((t, 0))
        return out
    starts = _starts(z)
    valid = ~np.isnan(vals)
    filled = np.where(valid, vals, 0.0)
    wv = np.where(valid, w, 0.0)
    out["count"] = np.add.reduceat(wv, starts, axis=1)
    out["sum"] = np.add.reduceat(wv * filled, starts, axis=1)
    out["sumsq"] = np.add.reduceat(wv * filled * filled, starts, axis=1)
    out["min"] = np.minimum.reduceat(np.where(valid, vals, np.inf), starts, axis=1)
    out["max"] = np.maximum.reduceat(np.where(valid, vals, -np.inf), starts, axis=1)
    return out


def _combine(parts: list[dict]) -> dict:
    """Partials of several chunks as one, zone by zone."""
    keys = np.concatenate([p["keys"] for p in parts])
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    out = {"keys": np.unique(keys)}
    if len(keys):
        starts = _starts(keys)
        for name, ufunc in (("count", np.add), ("sum", np.add), ("sumsq", np.add), ("min", np.minimum),
                            ("max", np.maximum)):
            out[name] = ufunc.reduceat(np.concatenate([p[name] for p in parts], axis=1)[:, order], starts, axis=1)
    else:
        for name in ("count", "sum", "sumsq", "min", "max"):
            out[name] = parts[0][name]
    if parts[0]["q"] is not None:
        out["q"] = tuple(np.concatenate([p["q"][i] for p in parts], axis=-1) for i in range(3))
    else:
        out["q"] = None
    return out


def _finish(part: dict, all_keys: np.ndarray, stats: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Statistics ``(t, len(all_keys))`` from the combined partial of one time block."""
    t = part["count"].shape[0]
    pos = np.searchsorted(all_keys, part["keys"])
    full = {}
    for name, fill in (("count", 0.0), ("sum", 0.0), ("sumsq", 0.0), ("min", np.inf), ("max", -np.inf)):
        a = np.full((t, len(all_keys)), fill)
        a[:, pos] = part[name]
        full[name] = a
    cnt = full["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, full["sum"] / cnt, np.nan)
        var = np.where(cnt > 0, full["sumsq"] / cnt - mean * mean, np.nan)
    res = {"count": cnt, "sum": full["sum"], "mean": mean, "std": np.sqrt(np.maximum(var, 0.0)),
           "min": np.where(np.isinf(full["min"]), np.nan, full["min"]),
           "max": np.where(np.isinf(full["max"]), np.nan, full["max"])}
    qstats = [s for s in stats if _quantile_of(s) is not None]
    if qstats:
        z, vals, w = part["q"]
        order = np.argsort(z, kind="stable")
        z = z[order]
        keys = np.unique(z)
        starts = np.r_[_starts(z), len(z)] if len(z) else np.zeros(1, np.int64)
        qs = np.array([_quantile_of(s) for s in qstats])
        got = zone_quantiles(np.ascontiguousarray(vals[:, order]), w[order], starts.astype(np.int64), qs)
        for i, s in enumerate(qstats):
            a = np.full((t, len(all_keys)), np.nan)
            a[:, np.searchsorted(all_keys, keys)] = got[:, :, i]
            res[s] = a
    return {s: res[s] for s in stats}


def _tree(parts: list) -> object:
    while len(parts) > 1:
        parts = [dask.delayed(_combine)(parts[i:i + FANIN]) for i in range(0, len(parts), FANIN)]
    return parts[0]


def zonal_stats(data: xr.DataArray, zones, stats=("mean", "count"), *, coverage: str = "centre",
                zone_id: str | None = None, output: str = "table"):
    """Statistics of ``data`` in every zone, per time step.

    Parameters
    ----------
    data
        ``(y, x)`` or ``(time, y, x)`` DataArray, numpy- or dask-backed; NaN pixels are skipped.
    zones
        Polygons (a GeoJSON dict or ``.geojson`` file, a GeoParquet file, a GeoDataFrame, or shapely geometries)
        in any CRS (shapely geometries: the data's), or a label raster: an integer ``(y, x)`` DataArray on the
        data's grid whose non-zero values are the zones.
    stats
        Any of ``count``, ``sum``, ``mean``, ``std`` (population), ``min``, ``max``, ``median``, ``pNN`` (the NN-th
        percentile, ``p10``, ``p2.5``).
    coverage
        ``"centre"``: the pixels whose centre is inside a polygon (rasterstats' rule); ``"fraction"``: every pixel a
        polygon touches, weighted by the fraction of it inside (exactextract's rule; ``count`` is then the sum of
        the fractions). Polygons may overlap: each is measured on its own.
    zone_id
        The GeoJSON property or GeoDataFrame column naming the zones; default: feature ids (or 0..n-1), or the
        GeoDataFrame's index.
    output
        ``"table"``: a pandas DataFrame with columns ``zone``, ``time`` (when the data has time) and one per
        statistic; ``"xarray"``: a Dataset with one ``(zone, time)`` variable per statistic.

    Returns
    -------
    pandas.DataFrame or xarray.Dataset

    Examples
    --------
    >>> import shapely
    >>> data = xr.DataArray(np.arange(16.0).reshape(4, 4), dims=("y", "x"),
    ...                     coords={"y": [35.0, 25.0, 15.0, 5.0], "x": [5.0, 15.0, 25.0, 35.0]})
    >>> fields = [shapely.box(0, 20, 20, 40), shapely.box(12, 0, 40, 20)]
    >>> zonal_stats(data, fields, stats=("count", "mean", "max"))
       zone  count  mean   max
    0     0    4.0   2.5   5.0
    1     1    6.0  12.0  15.0
    >>> round(float(zonal_stats(data, fields, stats="count", coverage="fraction").loc[1, "count"]), 6)
    5.6
    """
    stats = _check_stats(stats)
    if coverage not in COVERAGES:
        raise InvalidArgumentError(f"coverage must be one of {COVERAGES}, not {coverage!r}")
    if output not in ("table", "xarray"):
        raise InvalidArgumentError(f"output must be 'table' or 'xarray', not {output!r}")
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError("data must be a DataArray; pick one variable of a Dataset (ds['ndvi'])")
    if data.dims[-2:] != ("y", "x") or data.ndim not in (2, 3) or (data.ndim == 3 and data.dims[0] != "time"):
        raise InvalidArgumentError(f"data must have dims (y, x) or (time, y, x), not {data.dims}; "
                                   "select or reduce the others first (data.sel(band=...))")
    has_time = data.ndim == 3
    arr = data.data if isinstance(data.data, da.Array) else da.from_array(np.asarray(data.data), chunks=-1)
    if not has_time:
        arr = arr[None]
    xs, ys = np.asarray(data["x"].values, float), np.asarray(data["y"].values, float)
    if len(xs) < 2 or len(ys) < 2:
        raise InvalidArgumentError("data needs at least 2 pixels along x and y to place zones on its grid")
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    origin = Affine(dx, 0, xs[0] - dx / 2, 0, dy, ys[0] - dy / 2)
    ychunks, xchunks = arr.chunks[1], arr.chunks[2]
    yoff, xoff = np.r_[0, np.cumsum(ychunks)], np.r_[0, np.cumsum(xchunks)]

    labels = isinstance(zones, xr.DataArray)
    if labels:
        if zones.dims != ("y", "x") or zones.shape != data.shape[-2:] or not np.issubdtype(zones.dtype, np.integer):
            raise InvalidArgumentError("a label raster must be an integer (y, x) DataArray on the data's grid "
                                       f"(shape {data.shape[-2:]}); got {zones.dtype} {zones.dims} {zones.shape}")
        lab = zones.data if isinstance(zones.data, da.Array) else da.from_array(np.asarray(zones.data))
        lab_blocks = lab.rechunk((ychunks, xchunks)).to_delayed()
    else:
        crs = getattr(data.rio, "crs", None) if hasattr(data, "rio") else None
        polys = read_polygons(zones, crs, zone_id)
        tree = shapely.STRtree(polys.geoms)

    weights = {}
    for iy in range(len(ychunks)):
        for ix in range(len(xchunks)):
            if labels:
                weights[iy, ix] = dask.delayed(_label_weights)(lab_blocks[iy, ix])
                continue
            tr = origin @ Affine.translation(xoff[ix], yoff[iy])
            x0, y0 = tr @ (0, 0)
            x1, y1 = tr @ (xchunks[ix], ychunks[iy])
            idx = np.sort(tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))))
            if len(idx):
                weights[iy, ix] = dask.delayed(block_weights)(polys.geoms[idx], idx, polys.layers[idx], tr,
                                                              (ychunks[iy], xchunks[ix]), coverage)
    want_q = any(_quantile_of(s) is not None for s in stats)
    blocks = arr.to_delayed()
    finals = []
    for it in range(len(arr.chunks[0])):
        parts = [dask.delayed(_partial)(blocks[it, iy, ix], w, want_q) for (iy, ix), w in weights.items()]
        if not parts:
            empty = {"keys": np.zeros(0, np.int64), "q": (np.zeros(0, np.int64), np.zeros((arr.chunks[0][it], 0)),
                                                         np.zeros(0)) if want_q else None}
            empty.update({k: np.zeros((arr.chunks[0][it], 0)) for k in ("count", "sum", "sumsq", "min", "max")})
            parts = [empty]
        finals.append(_tree(parts))
    combined = dask.compute(*finals)
    all_keys = (np.unique(np.concatenate([c["keys"] for c in combined])) if labels
                else np.arange(len(polys.geoms)))
    per_time = [_finish(c, all_keys, stats) for c in combined]
    values = {s: np.concatenate([p[s] for p in per_time], axis=0) for s in stats}
    zone_names = all_keys if labels else polys.ids
    coords = {"zone": zone_names}
    if has_time:
        coords["time"] = data["time"].values
        ds = xr.Dataset({s: (("zone", "time"), values[s].T) for s in stats}, coords=coords)
    else:
        ds = xr.Dataset({s: ("zone", values[s][0]) for s in stats}, coords=coords)
    ds.attrs["coverage"] = coverage
    if output == "xarray":
        return ds
    table = ds.to_dataframe().reset_index()
    return table[["zone", "time", *stats] if has_time else ["zone", *stats]]
