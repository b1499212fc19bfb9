"""The STAC Item that describes a written result: footprint, grid (``proj:``) and lineage (``processing:``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import xarray as xr
from pyproj import CRS, Transformer

__all__ = ["output_item"]

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROCESSING_EXT = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"


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


def output_item(ds: xr.Dataset, href: str, item_id: str) -> dict:
    """A STAC 1.1 Item dict for the store at ``href`` holding ``ds``.

    ``datetime`` is the time span of the ``time`` coordinate when there is one
    (``start_datetime``/``end_datetime``), else the span of the input items
    recorded in ``ds.attrs`` (``input_start``/``input_end``), else the time
    of writing. The ``proj:`` fields describe the grid, the ``processing:``
    fields the software and the inputs. Credentials are never part of it: the
    href is the URL as given.

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
        props.update(datetime=None, start_datetime=_iso(times[0]), end_datetime=_iso(times[-1]))
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
            props["proj:wkt2"] = crs.to_wkt()
        props["proj:shape"] = [int(ds.sizes["y"]), int(ds.sizes["x"])]
        props["proj:transform"] = [float(v) for v in list(ds.rio.transform(recalc=True))[:6]]
        props["proj:bbox"] = [float(v) for v in ds.rio.bounds(recalc=True)]
    inputs = ds.attrs.get("input_items") or []
    props.update(
        {
            "processing:software": {"geoproc": __version__},
            "processing:datetime": now,
            "processing:level": "L3",
            "processing:lineage": (
                f"geoproc {__version__}: {', '.join(map(str, ds.data_vars))} computed from {len(inputs)} input item(s)"
            ),
            "created": now,
        }
    )
    if inputs:
        props["geoproc:input_items"] = list(map(str, inputs))
    asset = {
        "href": href,
        "type": "application/vnd.zarr; version=3",
        "title": "Zarr v3 store (consolidated metadata)",
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
