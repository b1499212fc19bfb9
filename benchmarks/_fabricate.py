"""Fabricated Sentinel-2-like STAC items over a continental area, for graph-scale benchmarks (nothing behind the hrefs).

The area is a square of ``side_px`` 10 m pixels in EPSG:3035 (LAEA Europe) centred on ``centre`` (lon, lat).
Tiles are 109.8 km squares 100 km apart (as MGRS tiles), each in the UTM zone of its centre, so items come in
several CRSs and overlap their neighbours; each tile is seen on ``n_dates`` dates, 5 days apart.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from pyproj import Transformer

OUT_CRS = "EPSG:3035"
TILE_M = 109_800
STEP_M = 100_000
SCALE, OFFSET = 0.0001, -0.1


def area_bounds(side_px: int, centre=(10.0, 50.0), resolution: float = 10.0) -> tuple[float, float, float, float]:
    """The output area in EPSG:3035: ``side_px`` pixels of ``resolution`` m a side around ``centre``."""
    cx, cy = Transformer.from_crs(4326, 3035, always_xy=True).transform(*centre)
    half = side_px * resolution / 2
    x0, y0 = math.floor((cx - half) / 1000) * 1000, math.floor((cy - half) / 1000) * 1000
    return (x0, y0, x0 + side_px * resolution, y0 + side_px * resolution)


def make_items(side_px: int, n_items: int, centre=(10.0, 50.0)) -> list[dict]:
    """About ``n_items`` item dicts (whole tiles x dates) covering the area of :func:`area_bounds`."""
    x0, y0, x1, y1 = area_bounds(side_px, centre)
    nx = max(1, math.ceil((x1 - x0) / STEP_M))
    ny = max(1, math.ceil((y1 - y0) / STEP_M))
    n_dates = max(1, round(n_items / (nx * ny)))
    to_ll = Transformer.from_crs(3035, 4326, always_xy=True)
    tiles = []
    for j in range(ny):
        for i in range(nx):
            cx, cy = x0 + (i + 0.5) * STEP_M, y0 + (j + 0.5) * STEP_M
            lon, lat = to_ll.transform(cx, cy)
            epsg = 32600 + int((lon + 180) // 6) + 1
            ux, uy = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
            left, top = round(ux - TILE_M / 2, -2), round(uy + TILE_M / 2, -2)
            back = Transformer.from_crs(epsg, 4326, always_xy=True)
            xs = np.array([left, left + TILE_M, left + TILE_M, left])
            ys = np.array([top, top, top - TILE_M, top - TILE_M])
            lons, lats = back.transform(xs, ys)
            ring = [[float(a), float(b)] for a, b in zip(lons, lats)]
            tiles.append((f"T{j:03d}{i:03d}", epsg, left, top, ring))
    start = dt.datetime(2021, 1, 1, 10, 30, tzinfo=dt.timezone.utc)
    refl = {"nodata": 0, "data_type": "uint16", "scale": SCALE, "offset": OFFSET, "spatial_resolution": 10}
    items = []
    for d in range(n_dates):
        for k, (name, epsg, left, top, ring) in enumerate(tiles):
            when = start + dt.timedelta(days=5 * d, seconds=k % 600)
            item_id = f"S2X_{name}_{when:%Y%m%d}"
            lons, lats = [p[0] for p in ring], [p[1] for p in ring]
            assets = {}
            for key, common, res in (("B04", "red", 10), ("B08", "nir", 10), ("SCL", None, 20)):
                px = TILE_M // res
                asset = {
                    "href": f"synthetic://{item_id}/{key}.tif",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "proj:shape": [px, px],
                    "proj:transform": [res, 0, left, 0, -res, top],
                    "raster:bands": [refl if common else {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
                }
                if common:
                    asset["eo:bands"] = [{"name": key, "common_name": common}]
                assets[key] = asset
            items.append({
                "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": "s2-fabricated",
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "bbox": [min(lons), min(lats), max(lons), max(lats)],
                "properties": {"datetime": when.isoformat().replace("+00:00", "Z"), "proj:epsg": epsg},
                "assets": assets, "links": [],
                "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                                    "https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
            })
    return items
