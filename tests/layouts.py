"""Real STAC item layouts pointed at small local GeoTIFFs, for loader tests that must run offline.

A test takes a real item (asset keys, roles, ``eo:bands``, ``raster:bands``, ``proj:`` fields as the
catalog publishes them), writes a small GeoTIFF per asset it needs on the *same* grid lattice (the
real origin, fewer pixels), and points the item's hrefs at them. Everything the loader reads from the
metadata stays real; only the files are ours, so their pixels are known.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine
from pyproj import Transformer

ITEMS = Path(__file__).resolve().parent / "data" / "stac_items"


def raw_item(shared_data: Path | None, name: str) -> dict:
    """A real item as a dict: from ``../shared/data/stac_items/<name>`` or ``tests/data/stac_items/<name>``."""
    path = (shared_data / "stac_items" / name) if shared_data is not None and "/" in name else ITEMS / name
    d = json.load(open(path))
    if d.get("type") == "FeatureCollection":
        d = d["features"][0]
    d = copy.deepcopy(d)
    d["links"] = []  # offline: nothing to resolve
    return d


def as_item(d: dict) -> pystac.Item:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystac's extension-migration notes on old items
        return pystac.Item.from_dict(copy.deepcopy(d))


def proj_of(d: dict, key: str) -> tuple[str, Affine]:
    """The CRS and transform the item gives asset ``key`` (asset first, then item)."""
    a, p = d["assets"][key], d["properties"]
    epsg = a.get("proj:epsg", p.get("proj:epsg"))
    crs = f"EPSG:{epsg}" if epsg else a.get("proj:code", p.get("proj:code"))
    t = a.get("proj:transform", p.get("proj:transform"))
    return crs, Affine(*t[:6])


def write_tif(path: Path, values: np.ndarray, crs: str, transform: Affine, nodata=None) -> str:
    values = values if values.ndim == 3 else values[None]
    profile = dict(driver="GTiff", height=values.shape[1], width=values.shape[2], count=values.shape[0],
                   dtype=values.dtype, crs=crs, transform=transform, tiled=True, blockxsize=64, blockysize=64)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return str(path)


def localize(d: dict, key: str, href: str, shape: tuple[int, int], transform: Affine | None = None) -> None:
    """Point asset ``key`` at ``href`` and give it the small file's shape (and transform, if moved).

    ``proj:shape``/``proj:transform`` are written where the item keeps them (on the asset, or on the
    item for Landsat-style layouts, then for every asset alike).
    """
    a, p = d["assets"][key], d["properties"]
    a["href"] = href
    where = a if ("proj:shape" in a or "proj:transform" in a or "proj:shape" not in p) else p
    where["proj:shape"] = [int(shape[0]), int(shape[1])]
    if transform is not None:
        where["proj:transform"] = list(transform)[:6]
    for k in ("proj:bbox",):
        a.pop(k, None)
        p.pop(k, None)


def set_footprint(d: dict, crs: str, bounds: tuple[float, float, float, float]) -> None:
    """The item's geometry and bbox from ``bounds`` in ``crs`` (what a catalog derives from the file)."""
    x0, y0, x1, y1 = bounds
    t = np.linspace(0, 1, 11)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    ring = [[float(a), float(b)] for a, b in zip(lon, lat)]
    d["geometry"] = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
    d["bbox"] = [min(lon), min(lat), max(lon), max(lat)]


def set_time(d: dict, when: dt.datetime) -> None:
    d["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")


def index_values(shape: tuple[int, int], dtype="uint16", start: int = 1) -> np.ndarray:
    """Every pixel stores its own row-major index (plus ``start``, so none equals nodata 0), wrapped
    to the range of ``dtype`` (uint8: 1..250)."""
    values = np.arange(shape[0] * shape[1]).reshape(shape)
    top = np.iinfo(dtype).max - 5 if np.dtype(dtype).kind in "iu" else None
    if top is not None and values.max() + start > top:
        values = values % (top - start)
    return (values + start).astype(dtype)
