"""Every band of every real item we hold plans offline, on the grid odc-stac chooses where odc-stac can choose.

Items: ``../shared/data/stac_items`` (Earth Search v0/v1/c1, Planetary Computer, USGS, CMR, DEA) and
``tests/data/stac_items`` (24 more real items of 23 collections; sources in its README). No file is
opened and nothing is fetched: ``plan`` must work from the metadata alone. odc-stac 0.5 (lazily,
``chunks={}``) is the reference for the grid (CRS, shape, bounds) of each single-item, single-band
load. Where odc-stac refuses (integer ``eo:bands`` of STAC 1.0.0-beta.2, relative hrefs, previews asked
by key) geoproc must still plan; the pixel tests in ``test_real_layouts.py`` check those against the
files.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

import geoproc
from geoproc.io.bands import PREVIEW_ROLES

from .layouts import ITEMS, as_item

odc_stac = pytest.importorskip("odc.stac")

RASTER_TYPES = ("image/tiff", "image/vnd.stac.geotiff", "application/x-hdf", "image/jp2")


def _real_items(shared_data: Path) -> list[tuple[str, str, dict]]:
    """``(provider, file name, item dict)`` of every real item (first feature of an ItemCollection)."""
    files = sorted((shared_data / "stac_items").glob("*/*.json")) + sorted((shared_data / "stac_items").glob("*/*.geojson"))
    files += sorted(ITEMS.glob("*.json"))
    out = []
    for f in files:
        d = json.load(open(f))
        if d.get("type") == "FeatureCollection":
            d = d["features"][0]
        if d.get("type") != "Feature" or "assets" not in d:
            continue  # a collection document
        d["links"] = []
        provider = f.name.split("__")[0] if "__" in f.name else f.parent.name
        out.append((provider, f.name, d))
    return out


def _bands(d: dict) -> list[str]:
    """Asset keys of the raster data a user would load (not previews, thumbnails or metadata)."""
    keys = []
    for key, a in d["assets"].items():
        roles = {str(r).lower() for r in a.get("roles") or []}
        media = (a.get("type") or "").lower()
        if roles & (PREVIEW_ROLES | {"metadata"}) or "png" in media or "jpeg" in media or "xml" in media or "json" in media:
            continue
        if media.startswith(RASTER_TYPES) or (not media and str(a.get("href", "")).lower().endswith((".tif", ".tiff"))):
            keys.append(key)
    return keys


def _has_proj(d: dict, key: str) -> bool:
    a, p = d["assets"][key], d["properties"]
    return any(k.startswith("proj:transform") for k in (*a, *p))


def _args_without_proj(d: dict) -> dict:
    """What a user gives for items without ``proj:``: a UTM CRS, a resolution and the item's bbox."""
    w, s, e, n = d["bbox"][:4] if len(d["bbox"]) == 4 else (d["bbox"][0], d["bbox"][1], d["bbox"][3], d["bbox"][4])
    lon, lat = (w + e) / 2, (s + n) / 2
    zone = int((lon + 180) // 6) + 1
    return {"crs": (32600 if lat >= 0 else 32700) + zone, "resolution": 30, "bbox": (w, s, e, n)}


@pytest.fixture(scope="module")
def pairs(shared_data):
    out = []
    for provider, name, d in _real_items(shared_data):
        for key in _bands(d):
            out.append((provider, name, d, key))
    return out


def test_the_suite_covers_the_collections_users_load(pairs):
    collections = {(p, d.get("collection") or n.split("__")[1] if "__" in n else d.get("collection")) for p, n, d, _ in pairs}
    providers = Counter(p for p, _ in collections)
    assert len(collections) >= 20 and len(providers) >= 4, (sorted(collections), providers)
    names = " ".join(str(c) for _, c in collections).lower()
    for kind in ("sentinel-2", "landsat", "sentinel-1", "dem", "naip", "modis"):
        assert kind in names, kind
    assert len(pairs) >= 300


def test_every_band_plans_offline(pairs, monkeypatch):
    """No file is opened: rasterio.open is made to fail, so a header read would show."""
    import rasterio

    def no_files(*args, **kwargs):
        raise AssertionError(f"plan opened a file: {args[:1]}")

    monkeypatch.setattr(rasterio, "open", no_files)
    failures = []
    for provider, name, d, key in pairs:
        item = as_item(d)
        args = {} if _has_proj(d, key) else _args_without_proj(d)
        try:
            p = geoproc.plan([item], [key], **args)
        except Exception as exc:  # noqa: BLE001 - collected, then reported together
            failures.append(f"{name} {key}: {type(exc).__name__}: {exc}")
            continue
        assert p.shape[1] > 0 and p.shape[2] > 0 and p.tasks >= 1
    assert not failures, "\n".join(failures)


def test_grids_agree_with_odc_stac_wherever_odc_stac_chooses_one(pairs):
    compared, differ = 0, []
    for provider, name, d, key in pairs:
        if not _has_proj(d, key):
            continue
        item = as_item(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                geobox = odc_stac.load([item], bands=[key], chunks={}).odc.geobox
            except Exception:  # noqa: BLE001 - odc-stac refuses this layout; geoproc's plan is checked above
                continue
        p = geoproc.plan([item], [key])
        compared += 1
        res = min(p.resolution)
        bounds_close = np.allclose(p.bounds, tuple(geobox.extent.boundingbox), rtol=0, atol=1e-3 * res)
        if not (CRS.from_user_input(p.crs) == geobox.crs._crs and p.shape[1:] == geobox.shape.yx and bounds_close):
            differ.append(f"{name} {key}: geoproc {p.crs[:20]} {p.shape[1:]} {p.bounds} odc-stac {geobox.shape.yx} "
                          f"{tuple(geobox.extent.boundingbox)}")
    assert compared >= 250
    assert not differ, "\n".join(differ)


def test_items_without_proj_are_placed_by_their_bbox_offline(pairs):
    """CMR HLS, sat-api Landsat, USGS ST beta.2, PC Sentinel-1 GRD: crs/resolution/bbox given, nothing read."""
    seen = set()
    for provider, name, d, key in pairs:
        if _has_proj(d, key) or name in seen:
            continue
        seen.add(name)
        args = _args_without_proj(d)
        p = geoproc.plan([as_item(d)], [key], **args)
        w, s, e, n = args["bbox"]
        x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{args['crs']}", always_xy=True).transform((w + e) / 2, (s + n) / 2)
        b = p.bounds
        assert b[0] <= x <= b[2] and b[1] <= y <= b[3] and p.items_used == 1
    assert len(seen) >= 4
