"""Zones for zonal statistics: polygons read from what a user has, in the data's CRS, and the pixels they cover.

Polygons come as a GeoJSON dict or file, a GeoParquet file, a GeoDataFrame, or a sequence of shapely geometries.
GeoParquet and GeoDataFrames need geopandas and pyarrow (the ``vector`` extra), imported only when used; GeoJSON
and shapely need nothing beyond the core.

Two coverage rules give each pixel a weight per polygon:

* ``"centre"``: weight 1 where the pixel's centre lies inside the polygon (GDAL's rasterisation rule, as
  rasterio.features.rasterize and rasterstats use it).
* ``"fraction"``: the exact fraction of the pixel's area inside the polygon (as exactextract computes it): every
  ring of the polygon clipped to the pixel (:func:`geoproc.kernels.zonal.rect_coverage`), 1 for a pixel inside.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import shapely

from .errors import InvalidArgumentError
from .kernels.zonal import rect_coverage

__all__ = ["Polygons", "read_polygons", "block_weights"]

COVERAGES = ("centre", "fraction")


@dataclass(frozen=True)
class Polygons:
    """Polygons in the data's CRS, with the ids of the zones they are."""

    #: shapely (multi)polygons, one per zone
    geoms: np.ndarray
    #: the zone id of each polygon (a column or property the user named, the features' ids, or 0..n-1)
    ids: np.ndarray
    #: non-negative layer per polygon: polygons of one layer share no interior, so one rasterisation serves them
    layers: np.ndarray


def _from_geojson(obj: dict, zone_id: str | None):
    feats = obj["features"] if obj.get("type") == "FeatureCollection" else [obj]
    geoms, ids = [], []
    for k, f in enumerate(feats):
        if f.get("type") == "Feature":
            geoms.append(shapely.geometry.shape(f["geometry"]))
            if zone_id is not None:
                if zone_id not in (f.get("properties") or {}):
                    raise InvalidArgumentError(f"feature {k} has no property {zone_id!r}; name a property every "
                                               "feature has with zone_id=..., or leave zone_id out")
                ids.append(f["properties"][zone_id])
            else:
                ids.append(f.get("id", k))
        else:
            geoms.append(shapely.geometry.shape(f))
            ids.append(k)
    if zone_id is None and len(set(map(str, ids))) != len(ids):
        ids = list(range(len(geoms)))
    crs = (obj.get("crs") or {}).get("properties", {}).get("name", "OGC:CRS84")
    return np.array(geoms, dtype=object), np.array(ids), crs


def _from_frame(gdf, zone_id: str | None):
    if zone_id is not None and zone_id not in gdf.columns:
        columns = ", ".join(map(str, gdf.columns))
        raise InvalidArgumentError(f"the zones have no column {zone_id!r} (columns: {columns}); "
                                   "name one with zone_id=...")
    ids = np.asarray(gdf[zone_id] if zone_id is not None else gdf.index)
    return np.asarray(gdf.geometry.values, dtype=object), ids, gdf.crs


def _geopandas():
    try:
        import geopandas
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise InvalidArgumentError("reading GeoParquet or GeoDataFrame zones needs geopandas and pyarrow: "
                                   "pip install 'geoproc[vector]'") from err
    return geopandas


def read_polygons(zones, crs, zone_id: str | None = None) -> Polygons:
    """Polygons from ``zones`` (GeoJSON dict or path, GeoParquet path, GeoDataFrame, shapely sequence), in ``crs``.

    Shapely geometries carry no CRS and are taken to be in ``crs`` already; GeoJSON without a ``crs`` member is
    longitude/latitude (RFC 7946).

    Examples
    --------
    >>> square = {"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]]}
    >>> p = read_polygons([shapely.geometry.shape(square)], "EPSG:32633")
    >>> p.ids.tolist(), p.layers.tolist()
    ([0], [0])
    """
    src_crs = None
    if isinstance(zones, (str, os.PathLike)):
        path = os.fspath(zones)
        if not os.path.exists(path):
            raise InvalidArgumentError(f"zones file {path!r} does not exist; give a GeoJSON or GeoParquet path")
        if path.endswith((".parquet", ".geoparquet", ".pq")):
            geoms, ids, src_crs = _from_frame(_geopandas().read_parquet(path), zone_id)
        else:
            with open(path) as f:
                geoms, ids, src_crs = _from_geojson(json.load(f), zone_id)
    elif isinstance(zones, dict):
        geoms, ids, src_crs = _from_geojson(zones, zone_id)
    elif hasattr(zones, "geometry") and hasattr(zones, "crs"):
        geoms, ids, src_crs = _from_frame(zones, zone_id)
    else:
        geoms = np.asarray(list(zones), dtype=object)
        if not all(isinstance(g, shapely.Geometry) for g in geoms):
            raise InvalidArgumentError("zones must be polygons (GeoJSON dict or file, GeoParquet file, GeoDataFrame, "
                                       "shapely geometries) or a label raster (integer DataArray on the data's grid)")
        ids = np.arange(len(geoms))
    kinds = set(shapely.get_type_id(geoms).tolist()) if len(geoms) else set()
    if not kinds <= {3, 6}:
        raise InvalidArgumentError("zones must be Polygons or MultiPolygons; "
                                   "buffer points and lines into polygons first")
    if src_crs is not None and crs is not None:
        from pyproj import CRS, Transformer

        if not CRS.from_user_input(src_crs).equals(CRS.from_user_input(crs)):
            tr = Transformer.from_crs(src_crs, crs, always_xy=True)
            geoms = shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    elif src_crs is not None and crs is None:
        raise InvalidArgumentError("the data has no CRS, so zones in another CRS cannot be placed on it; "
                                   "set one with data.rio.write_crs(...)")
    geoms = shapely.make_valid(geoms)
    return Polygons(geoms, ids, _layers(geoms))


def _layers(geoms: np.ndarray) -> np.ndarray:
    """Greedy layers such that no two polygons in one layer share interior (most field sets: one layer)."""
    n = len(geoms)
    layers = np.zeros(n, dtype=np.int64)
    if n < 2:
        return layers
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    if len(a):
        inner = shapely.relate_pattern(geoms[a], geoms[b], "T********")
        a, b = a[inner], b[inner]
    if not len(a):
        return layers
    neighbours: dict[int, list[int]] = {}
    for i, j in zip(a.tolist(), b.tolist()):
        neighbours.setdefault(j, []).append(i)
    for j in range(n):
        taken = {layers[i] for i in neighbours.get(j, ())}
        k = 0
        while k in taken:
            k += 1
        layers[j] = k
    return layers


def _rings(g):
    """All rings of a (multi)polygon, exteriors counter-clockwise and holes clockwise: ``(coords, ring starts)``."""
    rings = shapely.get_rings(shapely.get_parts(shapely.orient_polygons(g)))
    coords, which = shapely.get_coordinates(rings, return_index=True)
    starts = np.r_[0, np.flatnonzero(np.diff(which)) + 1, len(which)].astype(np.int64)
    return np.ascontiguousarray(coords), starts


def block_weights(geoms, index, layers, transform, shape, coverage: str):
    """Pixels of one block that polygons cover: ``(zone index, flat pixel index, weight)``, sorted by zone.

    ``geoms``/``index``/``layers``: the polygons touching the block, their positions among all zones, and layers;
    ``transform``: the block's affine transform (rasterio ``Affine``); ``shape``: ``(height, width)``.
    """
    h, w = shape
    zs, px, ws = [], [], []
    if coverage == "centre":
        from rasterio.features import rasterize

        for layer in np.unique(layers):
            sel = np.flatnonzero(layers == layer)
            burnt = rasterize(((geoms[k], k + 1) for k in sel), out_shape=(h, w), transform=transform, fill=0,
                              all_touched=False, dtype="int32")
            flat = burnt.ravel()
            hit = np.flatnonzero(flat)
            zs.append(index[flat[hit] - 1])
            px.append(hit)
            ws.append(np.ones(len(hit)))
    else:
        a, _, c, _, e, f = transform[:6]
        pixel_area = abs(a * e)
        for k, g in enumerate(geoms):
            x0, y0, x1, y1 = g.bounds
            ca, cb = sorted(((x0 - c) / a, (x1 - c) / a))  # either axis may run either way (north-up: y down)
            ra, rb = sorted(((y1 - f) / e, (y0 - f) / e))
            c0, c1 = max(int(np.floor(ca)), 0), min(int(np.ceil(cb)), w)
            r0, r1 = max(int(np.floor(ra)), 0), min(int(np.ceil(rb)), h)
            if c1 <= c0 or r1 <= r0:
                continue
            cols, rows = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
            cols, rows = cols.ravel(), rows.ravel()
            # the area of the polygon inside each pixel of its window: each ring clipped to the pixel (numba)
            px0, px1 = c + cols * a, c + (cols + 1) * a
            py0, py1 = f + (rows + 1) * e, f + rows * e
            coords, starts = _rings(g)
            frac = rect_coverage(coords, starts, np.minimum(px0, px1), np.minimum(py0, py1), np.maximum(px0, px1),
                                 np.maximum(py0, py1)) / pixel_area
            hit = np.flatnonzero(frac > 1e-12)  # not the rounding noise of an edge laid along a pixel's side
            zs.append(np.full(len(hit), index[k]))
            px.append(rows[hit] * w + cols[hit])
            ws.append(np.minimum(frac[hit], 1.0))
    if not zs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    z, p, wt = np.concatenate(zs).astype(np.int64), np.concatenate(px).astype(np.int64), np.concatenate(ws)
    order = np.argsort(z, kind="stable")
    return z[order], p[order], wt[order]
