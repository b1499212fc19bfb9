"""Stores written by to_zarr carry their grid in both conventions: CF ``grid_mapping`` (GDAL, rioxarray) and the
``proj:``/``spatial:`` Zarr conventions (GeoZarr), validated with geozarr-toolkit and read back by GDAL."""

from __future__ import annotations

import json
import os

import dask.array as da
import geozarr_toolkit  # scripts/install.sh test installs it
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
import zarr
from pyproj import CRS

import geoproc

X0, Y0, RES = 700_000.0, 5_000_000.0, 10.0


def _cube(crs=32633, dates=2):
    values = da.random.default_rng(0).random((dates, 48, 64), chunks=(1, 24, 32)).astype("float32")
    arr = xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={
            "time": np.array(["2024-05-01", "2024-05-11"][:dates], dtype="datetime64[ns]"),
            "y": Y0 - RES * np.arange(48) - RES / 2,
            "x": X0 + RES * np.arange(64) + RES / 2,
        },
        name="ndvi",
    )
    return arr.rio.write_crs(crs)


def _attrs(path, node=""):
    return json.load(open(os.path.join(path, node, "zarr.json")))["attributes"]


def test_store_validates_against_the_zarr_conventions(tmp_path):
    path = geoproc.to_zarr(_cube(), tmp_path / "cube.zarr")
    root = zarr.open_group(path, mode="r")
    results = geozarr_toolkit.validate_group(root)
    assert set(results) == {"spatial", "proj", "zarr_conventions"}, results
    assert all(errors == [] for errors in results.values()), results
    # each data variable on the grid carries them too, for readers that look at one array
    array_results = geozarr_toolkit.validate_attrs(dict(root["ndvi"].attrs))
    assert set(array_results) == {"spatial", "proj", "zarr_conventions"}
    assert all(errors == [] for errors in array_results.values()), array_results
    # the values, against the grid built above (pixel corners, rasterio order)
    attrs = _attrs(path)
    assert attrs["proj:code"] == "EPSG:32633"
    assert attrs["spatial:dimensions"] == ["y", "x"] == list(root["ndvi"].metadata.dimension_names[1:])
    assert attrs["spatial:transform"] == [RES, 0.0, X0, 0.0, -RES, Y0]
    assert attrs["spatial:shape"] == [48, 64]
    assert attrs["spatial:bbox"] == [X0, Y0 - 48 * RES, X0 + 64 * RES, Y0]
    uuids = {c["uuid"] for c in attrs["zarr_conventions"]}
    assert uuids == {geozarr_toolkit.conventions.SPATIAL_UUID, geozarr_toolkit.conventions.PROJ_UUID}
    # coordinates and spatial_ref are not data on the grid: no grid_mapping there
    assert "grid_mapping" not in _attrs(path, "x") and "grid_mapping" not in _attrs(path, "spatial_ref")


def test_cf_grid_mapping_names_spatial_ref_with_wkt_and_geotransform(tmp_path):
    path = geoproc.to_zarr(_cube(), tmp_path / "cube.zarr")
    assert _attrs(path, "ndvi")["grid_mapping"] == "spatial_ref"
    ref = _attrs(path, "spatial_ref")
    assert CRS.from_wkt(ref["crs_wkt"]).to_epsg() == 32633
    # GDAL's order: x0, xres, xrot, y0, yrot, yres
    assert [float(v) for v in ref["GeoTransform"].split()] == [X0, RES, 0.0, Y0, 0.0, -RES]
    # CF-aware readers that follow grid_mapping (not the coordinates fallback) find the CRS
    ds = xr.open_zarr(path, decode_coords="all")
    assert ds.ndvi.rio.crs.to_epsg() == 32633
    assert ds.ndvi.encoding["grid_mapping"] == "spatial_ref"


def test_crs_without_an_epsg_code_is_written_as_wkt2(tmp_path):
    laea = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
    path = geoproc.to_zarr(_cube(crs=laea, dates=1), tmp_path / "laea.zarr")
    attrs = _attrs(path)
    assert "proj:code" not in attrs
    assert CRS.from_wkt(attrs["proj:wkt2"]).equals(CRS.from_proj4(laea))
    assert attrs["proj:wkt2"].startswith(("PROJCRS", "BOUNDCRS"))  # WKT2, not WKT1's PROJCS
    assert all(e == [] for e in geozarr_toolkit.validate_group(zarr.open_group(path, mode="r")).values())


def test_append_keeps_the_conventions(tmp_path):
    cube = _cube()
    path = geoproc.to_zarr(cube.isel(time=[0]), tmp_path / "ts.zarr")
    geoproc.to_zarr(cube.isel(time=[1]), path, mode="append")
    attrs = _attrs(path)
    assert attrs["spatial:shape"] == [48, 64] and attrs["proj:code"] == "EPSG:32633"
    assert _attrs(path, "ndvi")["grid_mapping"] == "spatial_ref"


def test_gdal_reads_crs_and_transform_of_the_stored_attributes(tmp_path):
    """rasterio's bundled GDAL reads the CRS through grid_mapping once the store's metadata is Zarr v2.

    The store itself is Zarr v3, which the GDAL in rasterio's wheels (3.10) refuses ("Unsupported codec:
    bytes"); here the same arrays and attributes are rewritten as v2 by xarray, as a user with that GDAL would.
    """
    path = geoproc.to_zarr(_cube(dates=1).isel(time=0, drop=True), tmp_path / "v3.zarr")
    ds = xr.open_zarr(path)
    for var in ds.variables.values():
        var.encoding = {}
    ds.to_zarr(tmp_path / "v2.zarr", zarr_format=2, consolidated=True)
    with rasterio.open(f'ZARR:"{tmp_path / "v2.zarr"}":/ndvi') as src:
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
        np.testing.assert_array_equal(src.read(1), ds.ndvi.values)


def test_gdal_on_the_zarr_v3_store(tmp_path):
    """What rasterio's GDAL makes of the v3 store: GDAL >= 3.11 reads it with its CRS; older ones refuse it."""
    path = geoproc.to_zarr(_cube(dates=1).isel(time=0, drop=True), tmp_path / "v3.zarr")
    gdal = tuple(int(v) for v in rasterio.__gdal_version__.split(".")[:2])
    if gdal >= (3, 11):
        with rasterio.open(f'ZARR:"{path}":/ndvi') as src:
            assert src.crs.to_epsg() == 32633
            assert tuple(src.transform)[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
    else:
        with pytest.raises(rasterio.errors.RasterioIOError, match="codec"):
            rasterio.open(f'ZARR:"{path}":/ndvi')
