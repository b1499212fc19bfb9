"""The georeferencing a Zarr store carries, in both conventions GIS tools read.

1. **CF** (what GDAL >= 3.9, rioxarray, odc-geo and netCDF tools read): every data
   variable on the grid names its grid mapping, ``grid_mapping: spatial_ref``, and
   the ``spatial_ref`` variable holds ``crs_wkt`` and ``GeoTransform``.
2. **Zarr conventions** (GeoZarr; what GDAL >= 3.13, rioxarray's Zarr convention
   reader and rio-tiler read): the ``proj:`` convention (``proj:code``, or
   ``proj:wkt2`` for a CRS without an authority code) and the ``spatial:``
   convention (``spatial:dimensions``, ``spatial:transform``, ``spatial:bbox``,
   ``spatial:shape``, ``spatial:registration``), registered in the
   ``zarr_conventions`` list. They are written on the root group (where the
   conventions recommend them; children inherit them) and repeated on each data
   variable on the grid, for readers that look at one array only.

Conventions: https://github.com/zarr-conventions/spatial (v1),
https://github.com/zarr-experimental/geo-proj (v1), and the GeoZarr spec
(https://github.com/zarr-developers/geozarr-spec), which builds on both.
"""

from __future__ import annotations

from typing import Any

import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS

__all__ = ["geozarr", "convention_attrs", "SPATIAL_CONVENTION", "PROJ_CONVENTION"]

#: the ``zarr_conventions`` entry of the ``spatial:`` convention (v1)
SPATIAL_CONVENTION = {
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial:",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "description": "Spatial coordinate information",
}
#: the ``zarr_conventions`` entry of the ``proj:`` convention (v1)
PROJ_CONVENTION = {
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj:",
    "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
    "description": "Coordinate reference system information for geospatial data",
}
_GRID_MAPPING = "spatial_ref"


def convention_attrs(ds: xr.Dataset | xr.DataArray) -> dict[str, Any]:
    """The ``proj:`` and ``spatial:`` attributes of ``ds``'s grid, with their ``zarr_conventions`` entries.

    Empty when ``ds`` has no CRS. The transform is the affine of the pixel
    corners in rasterio order ``[a, b, c, d, e, f]`` (``x = a*col + b*row + c``);
    the bbox ``[xmin, ymin, xmax, ymax]`` is in the CRS's units.

    Examples
    --------
    >>> da_ = xr.DataArray(np.zeros((2, 3), "float32"), dims=("y", "x"),
    ...                    coords={"y": [15.0, 5.0], "x": [5.0, 15.0, 25.0]}).rio.write_crs(32633)
    >>> attrs = convention_attrs(da_)
    >>> attrs["proj:code"], attrs["spatial:dimensions"], attrs["spatial:shape"]
    ('EPSG:32633', ['y', 'x'], [2, 3])
    >>> attrs["spatial:transform"], attrs["spatial:bbox"]
    ([10.0, 0.0, 0.0, 0.0, -10.0, 20.0], [0.0, 0.0, 30.0, 20.0])
    >>> [c["name"] for c in attrs["zarr_conventions"]]
    ['spatial:', 'proj:']
    """
    crs = ds.rio.crs
    if crs is None:
        return {}
    y, x = ds.rio.y_dim, ds.rio.x_dim
    transform = ds.rio.transform(recalc=True)
    out: dict[str, Any] = {"zarr_conventions": [dict(SPATIAL_CONVENTION), dict(PROJ_CONVENTION)]}
    authority = crs.to_authority()
    if authority and authority[1].isdigit():
        out["proj:code"] = f"{authority[0].upper()}:{authority[1]}"
    else:
        out["proj:wkt2"] = CRS.from_user_input(crs).to_wkt("WKT2_2019")  # rasterio's own to_wkt is WKT1
    out.update(
        {
            "spatial:dimensions": [y, x],
            "spatial:transform_type": "affine",
            "spatial:transform": [float(v) for v in list(transform)[:6]],
            "spatial:bbox": [float(v) for v in ds.rio.bounds(recalc=True)],
            "spatial:shape": [int(ds.sizes[y]), int(ds.sizes[x])],
            "spatial:registration": "pixel",
        }
    )
    return out


def geozarr(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (a shallow copy) with its georeferencing in both conventions; unchanged without a CRS.

    Every data variable with both spatial dimensions gets ``grid_mapping:
    spatial_ref`` and the convention attributes; the Dataset (the store's root
    group) gets the convention attributes; ``spatial_ref`` holds ``crs_wkt``
    and ``GeoTransform``.

    Examples
    --------
    >>> da_ = xr.DataArray(np.zeros((2, 2), "float32"), dims=("y", "x"), name="ndvi",
    ...                    coords={"y": [15.0, 5.0], "x": [5.0, 15.0]}).rio.write_crs(32633)
    >>> ds = geozarr(da_.to_dataset())
    >>> ds.ndvi.attrs["grid_mapping"], ds.attrs["proj:code"], ds.ndvi.attrs["spatial:shape"]
    ('spatial_ref', 'EPSG:32633', [2, 2])
    >>> ds.spatial_ref.attrs["GeoTransform"]
    '0.0 10.0 0.0 20.0 0.0 -10.0'
    """
    crs = ds.rio.crs
    if crs is None:
        return ds
    transform = ds.rio.transform(recalc=True)
    ds = ds.rio.write_crs(crs, grid_mapping_name=_GRID_MAPPING).rio.write_transform(
        transform, grid_mapping_name=_GRID_MAPPING
    )
    ds = ds.copy()
    attrs = convention_attrs(ds)
    y, x = attrs["spatial:dimensions"]
    for name, var in ds.data_vars.items():
        if y in var.dims and x in var.dims:
            var.encoding.pop("grid_mapping", None)  # an attribute now: xarray refuses it in both places
            var.attrs = {**var.attrs, "grid_mapping": _GRID_MAPPING, **attrs}
    ds.attrs = {**ds.attrs, **attrs}
    return ds
