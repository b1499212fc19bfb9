"""Polygons from a mask or class raster, chunk by chunk, merged across chunk edges.

The raster is labelled first (:func:`geoproc.label`: each connected region of one non-zero value gets one label
across all chunks). Each chunk's labels are polygonised by GDAL (``rasterio.features.shapes``) in pixel
coordinates, whose integers are exact, so the pieces of a region cut by chunk edges fit together without slivers;
the pieces of each label are unioned and placed on the map with the grid's transform. The result is what
``rasterio.features.shapes`` gives for the whole array: the same polygons with the same areas.
"""

from __future__ import annotations

import os
import warnings

import dask
import dask.array as da
import numpy as np
import shapely
import xarray as xr
from affine import Affine

from .errors import InvalidArgumentError
from .segment import label
from .zonal import zonal_stats

__all__ = ["vectorize"]


def _pieces(labels: np.ndarray, values: np.ndarray, row0: int, col0: int, connectivity: int):
    """Polygons (pixel coordinates of the whole array) of each label in one block, and each label's class."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import shapes

    lab = np.asarray(labels)
    if lab.max(initial=0) > np.iinfo(np.int32).max:
        raise InvalidArgumentError("more than 2**31 objects: vectorise a smaller area at a time")
    lab32 = lab.astype(np.int32)
    with warnings.catch_warnings():  # the block at (0, 0) has an identity transform, which rasterio warns about
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        got = [(shapely.geometry.shape(g), int(v)) for g, v in shapes(
            lab32, mask=lab32 != 0, connectivity=connectivity, transform=Affine.translation(col0, row0))]
    geoms = np.array([g for g, _ in got], dtype=object)
    ids = np.array([v for _, v in got], dtype=np.int64)
    flat = lab.ravel()
    first = np.unique(flat, return_index=True)
    cls = dict(zip(first[0].tolist(), np.asarray(values).ravel()[first[1]].tolist()))
    return shapely.to_wkb(geoms), ids, np.array([cls[i] for i in ids.tolist()], dtype=np.asarray(values).dtype)


def vectorize(mask_or_labels: xr.DataArray, *, connectivity: int = 4, data: xr.DataArray | None = None,
              stats=("mean",), path: str | os.PathLike | None = None):
    """Polygons of the connected regions of a mask or class raster, with class, area and optional statistics.

    Parameters
    ----------
    mask_or_labels
        ``(y, x)`` boolean or integer DataArray, numpy- or dask-backed; each connected region of one non-zero
        value becomes a polygon (0 and False: background).
    connectivity
        4 (pixels touching by an edge) or 8 (also by a corner), as ``rasterio.features.shapes``. With 8, parts
        joined only at a corner come out valid (what ``shapely.make_valid`` makes of GDAL's self-touching ring).
    data
        Optional ``(y, x)`` or ``(time, y, x)`` values: their statistics per polygon are added as columns
        (:func:`geoproc.zonal_stats` over the region's pixels; one row per polygon and time with a time dim).
    stats
        Which statistics of ``data``.
    path
        When given, the result is also written there as GeoParquet.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``id``, ``class``, ``area`` (CRS units squared) and ``geometry``, in the raster's CRS. Needs
        geopandas (``pip install 'geoproc[vector]'``).

    Examples
    --------
    >>> m = xr.DataArray(np.array([[1, 1, 0], [0, 2, 2]], np.uint8), dims=("y", "x"),
    ...                  coords={"y": [15.0, 5.0], "x": [5.0, 15.0, 25.0]})
    >>> vectorize(m.chunk(1))[["id", "class", "area"]]
       id  class   area
    0   1      1  200.0
    1   2      2  200.0
    """
    try:
        import geopandas as gpd
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise InvalidArgumentError("vectorize returns a GeoDataFrame: pip install 'geoproc[vector]'") from err
    if connectivity not in (4, 8):
        raise InvalidArgumentError(f"connectivity must be 4 or 8, not {connectivity}")
    labels = label(mask_or_labels, connectivity=1 if connectivity == 4 else 2)
    values = mask_or_labels.data
    lab = labels.data
    if isinstance(lab, da.Array):
        values = values if isinstance(values, da.Array) else da.from_array(np.asarray(values), chunks=lab.chunks)
        lb, vb = lab.to_delayed(), values.rechunk(lab.chunks).to_delayed()
        yoff, xoff = np.r_[0, np.cumsum(lab.chunks[0])], np.r_[0, np.cumsum(lab.chunks[1])]
        parts = dask.compute(*[dask.delayed(_pieces)(lb[iy, ix], vb[iy, ix], int(yoff[iy]), int(xoff[ix]),
                                                     connectivity) for iy, ix in np.ndindex(lb.shape)])
    else:
        parts = [_pieces(np.asarray(lab), np.asarray(values), 0, 0, connectivity)]
    wkb = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, object)
    ids = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    classes = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    geoms = shapely.from_wkb(wkb)
    order = np.argsort(ids, kind="stable")
    ids, geoms, classes = ids[order], geoms[order], classes[order]
    uid, start, count = np.unique(ids, return_index=True, return_counts=True)
    merged = np.array([geoms[s] if c == 1 else shapely.union_all(geoms[s:s + c]) for s, c in zip(start, count)],
                      dtype=object)
    xs, ys = np.asarray(mask_or_labels["x"].values, float), np.asarray(mask_or_labels["y"].values, float)
    if len(xs) < 2 or len(ys) < 2:
        raise InvalidArgumentError("vectorize needs x and y coordinates with at least 2 pixels each")
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    a, c, e, f = dx, xs[0] - dx / 2, dy, ys[0] - dy / 2  # the grid's transform (north-up or not, no rotation)
    if connectivity == 8:  # GDAL draws parts joined at a corner as one self-touching ring: its valid form
        merged = shapely.make_valid(merged)
    placed = shapely.transform(merged, lambda p: np.column_stack([a * p[:, 0] + c, e * p[:, 1] + f]))
    crs = mask_or_labels.rio.crs if hasattr(mask_or_labels, "rio") else None
    out = gpd.GeoDataFrame({"id": uid, "class": classes[start]}, geometry=placed, crs=crs)
    out["area"] = shapely.area(placed)
    out = out[["id", "class", "area", "geometry"]]
    if data is not None:
        table = zonal_stats(data, labels, stats=stats).rename(columns={"zone": "id"})
        out = out.merge(table, on="id", how="left")
    if path is not None:
        out.to_parquet(path)
    return out
