"""STAC that finds the outputs: the Item of a written result (footprint, grid ``proj:``, lineage
``processing:``, acquisition span) and the Collection over several (tiles of a COG mosaic, dates of a
time series), with its spatial and temporal extent."""

from __future__ import annotations

import datetime as dt

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

__all__ = ["output_item", "collection", "store_collection", "ZARR_MEDIA_TYPE"]

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROCESSING_EXT = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
ZARR_MEDIA_TYPE = "application/vnd.zarr; version=3"


def _iso(value: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(value, "s"), unit="s") + "Z"


def _footprint(ds: xr.Dataset) -> tuple[dict | None, list[float] | None]:
    crs = ds.rio.crs
    if crs is None:
        return None, None
    minx, miny, maxx, maxy = ds.rio.bounds(recalc=True)
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    # densified edges, so the footprint follows the projection's curvature
    t = np.linspace(0.0, 1.0, 21)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full_like(t, maxx), maxx - (maxx - minx) * t, np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy), maxy - (maxy - miny) * t])
    lon, lat = to_lonlat.transform(xs, ys)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    ring.append(ring[0])
    bbox = [round(float(v), 7) for v in (min(lon), min(lat), max(lon), max(lat))]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _lineage(ds: xr.Dataset, inputs: list, version: str) -> str:
    """One sentence: what was computed, from how many inputs acquired when."""
    span = ""
    if ds.attrs.get("input_start") and ds.attrs.get("input_end"):
        span = f" acquired {ds.attrs['input_start']} to {ds.attrs['input_end']}"
    return f"geoproc {version}: {', '.join(map(str, ds.data_vars))} computed from {len(inputs)} input item(s){span}"


def output_item(
    ds: xr.Dataset,
    href: str,
    item_id: str,
    *,
    media_type: str = ZARR_MEDIA_TYPE,
    title: str = "Zarr v3 store (consolidated metadata)",
) -> dict:
    """A STAC 1.1 Item dict for the store at ``href`` holding ``ds``.

    ``datetime`` is the time span of the ``time`` coordinate when there is one
    (``start_datetime``/``end_datetime``), else the span of the input items
    recorded in ``ds.attrs`` (``input_start``/``input_end``), else the time
    of writing. The ``proj:`` fields describe the grid, the ``processing:``
    fields the software and the inputs (``processing:lineage`` names them,
    ``geoproc:input_items`` lists their ids). Credentials are never part of it:
    the href is the URL as given. ``media_type`` and ``title`` describe the data
    asset (a Zarr store by default; :func:`geoproc.to_cog` passes the COG's).

    Examples
    --------
    >>> da_ = xr.DataArray(np.zeros((2, 2), "float32"), dims=("y", "x"), coords={"y": [15.0, 5.0], "x": [5.0, 15.0]})
    >>> ds = da_.rio.write_crs(32633).to_dataset(name="ndvi")
    >>> item = output_item(ds, "out/ndvi.zarr", "ndvi.zarr")
    >>> item["properties"]["proj:code"], item["properties"]["proj:shape"]
    ('EPSG:32633', [2, 2])
    """
    from .. import __version__

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    geometry, bbox = _footprint(ds)
    props: dict = {}
    if "time" in ds.coords and ds["time"].size:
        times = np.sort(np.atleast_1d(ds["time"].values))
        # a date's scenes may span seconds to days (time_end, MODIS periods): the inputs' span reaches further
        start = min(_iso(times[0]), str(ds.attrs.get("input_start") or _iso(times[0])))
        end = max(_iso(times[-1]), str(ds.attrs.get("input_end") or _iso(times[-1])))
        props.update(datetime=None, start_datetime=start, end_datetime=end)
    elif ds.attrs.get("input_start") and ds.attrs.get("input_end"):
        props.update(datetime=None, start_datetime=ds.attrs["input_start"], end_datetime=ds.attrs["input_end"])
    else:
        props["datetime"] = now
    crs = ds.rio.crs
    if crs is not None:
        epsg = crs.to_epsg()
        if epsg:
            props["proj:code"] = f"EPSG:{epsg}"
        else:
            props["proj:code"] = None  # projection v2: null when the CRS has no code
            props["proj:wkt2"] = CRS.from_user_input(crs).to_wkt("WKT2_2019")
        props["proj:shape"] = [int(ds.sizes["y"]), int(ds.sizes["x"])]
        props["proj:transform"] = [float(v) for v in list(ds.rio.transform(recalc=True))[:6]]
        props["proj:bbox"] = [float(v) for v in ds.rio.bounds(recalc=True)]
    inputs = ds.attrs.get("input_items") or []
    props.update(
        {
            "processing:software": {"geoproc": __version__},
            "processing:datetime": now,
            "processing:level": "L3",
            "processing:lineage": _lineage(ds, inputs, __version__),
            "created": now,
        }
    )
    if inputs:
        props["geoproc:input_items"] = list(map(str, inputs))
    asset = {
        "href": href,
        "type": media_type,
        "title": title,
        "roles": ["data"],
        "geoproc:variables": {
            name: {"dims": list(var.dims), "dtype": str(var.dtype), **{k: var.attrs[k] for k in ("long_name", "units", "nodata") if k in var.attrs}}
            for name, var in ds.data_vars.items()
        },
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [PROJ_EXT, PROCESSING_EXT] if crs is not None else [PROCESSING_EXT],
        "id": item_id,
        "geometry": geometry,
        **({"bbox": bbox} if bbox else {}),
        "properties": props,
        "links": [],
        "assets": {"data": asset},
    }


def _extent(items: list[dict]) -> dict:
    bboxes = [it["bbox"] for it in items if it.get("bbox")]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)] \
        if bboxes else [-180.0, -90.0, 180.0, 90.0]
    starts = [it["properties"].get("start_datetime") or it["properties"].get("datetime") for it in items]
    ends = [it["properties"].get("end_datetime") or it["properties"].get("datetime") for it in items]
    starts, ends = [s for s in starts if s], [e for e in ends if e]
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[min(starts) if starts else None, max(ends) if ends else None]]}}


def collection(items: list[dict], collection_id: str, *, description: str, title: str | None = None) -> dict:
    """A STAC 1.1 Collection dict over ``items`` (Item dicts): the union of their bboxes, the span of their
    dates, geoproc as the processor. Links (``item``, ``root``) are the caller's to add.

    Examples
    --------
    >>> a = {"bbox": [10.0, 45.0, 11.0, 46.0], "properties": {"datetime": None,
    ...      "start_datetime": "2024-05-01T00:00:00Z", "end_datetime": "2024-05-10T00:00:00Z"}}
    >>> b = {"bbox": [11.0, 45.5, 12.0, 46.5], "properties": {"datetime": "2024-06-01T00:00:00Z"}}
    >>> coll = collection([a, b], "ndvi-tiles", description="two tiles")
    >>> coll["extent"]["spatial"]["bbox"], coll["extent"]["temporal"]["interval"]
    ([[10.0, 45.0, 12.0, 46.5]], [['2024-05-01T00:00:00Z', '2024-06-01T00:00:00Z']])
    """
    from .. import __version__

    first = items[0]["properties"] if items else {}
    provider = {"name": "geoproc", "roles": ["processor"], "processing:software": {"geoproc": __version__}}
    if first.get("processing:lineage"):
        provider["processing:lineage"] = first["processing:lineage"]
    out = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [PROCESSING_EXT],
        "id": collection_id,
        "description": description,
        "license": "other",
        "extent": _extent(items),
        "providers": [provider],
        "links": [],
    }
    if title:
        out["title"] = title
    inputs = sorted({i for it in items for i in it["properties"].get("geoproc:input_items", [])})
    if inputs:
        out["summaries"] = {"geoproc:input_items": inputs}
    return out


def store_collection(ds: xr.Dataset, href: str, collection_id: str, *, item_href: str | None = None) -> dict:
    """A STAC Collection for a time-series store: its temporal extent is the span of the ``time``
    coordinate (the end from ``time_end`` or ``input_end`` where later), the store is its data asset (with
    the grid's ``proj:`` fields), and ``item_href`` (the store's Item) is linked as an item.

    Examples
    --------
    >>> da_ = xr.DataArray(np.zeros((2, 2, 2), "float32"), dims=("time", "y", "x"), coords={
    ...     "time": np.array(["2024-05-01", "2024-05-21"], "datetime64[ns]"), "y": [15.0, 5.0], "x": [5.0, 15.0]})
    >>> coll = store_collection(da_.rio.write_crs(32633).to_dataset(name="ndvi"), "out/ts.zarr", "ts")
    >>> coll["extent"]["temporal"]["interval"], coll["assets"]["data"]["proj:code"]
    ([['2024-05-01T00:00:00Z', '2024-05-21T00:00:00Z']], 'EPSG:32633')
    """
    item = output_item(ds, href, collection_id)
    coll = collection([item], collection_id, description=f"time series of {', '.join(map(str, ds.data_vars))}")
    asset = dict(item["assets"]["data"])
    asset.update({k: v for k, v in item["properties"].items() if k.startswith("proj:")})
    coll["assets"] = {"data": asset}
    if any(k.startswith("proj:") for k in asset):
        coll["stac_extensions"] = [PROJ_EXT, PROCESSING_EXT]
    if "time" in ds.coords and ds["time"].size:
        dates = [_iso(t) for t in np.sort(np.atleast_1d(ds["time"].values))]
        coll.setdefault("summaries", {})["geoproc:dates"] = dates
    if item_href:
        coll["links"].append({"rel": "item", "href": item_href, "type": "application/geo+json"})
    return coll
