"""to_zarr(..., zarr_format=2) for readers whose GDAL predates Zarr v3: the GDAL bundled in rasterio's wheels opens
the store (and its overview levels) with CRS and geotransform; template, regions, markers, consolidation, resume,
append, open_result and output_status work as for v3."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr

import geoproc
from geoproc.errors import InvalidArgumentError, OutputError
from geoproc.io.zarr import begin_write, output_status

X0, Y0, RES = 700_000.0, 5_000_000.0, 10.0


def _series(dates=2) -> xr.Dataset:
    rng = np.random.default_rng(1)
    ndvi = rng.uniform(-1, 1, (dates, 40, 56)).astype("float32")
    ndvi[:, :3, :5] = np.nan
    ds = xr.Dataset(
        {"ndvi": (("time", "y", "x"), ndvi),
         "scl": (("time", "y", "x"), rng.integers(0, 12, (dates, 40, 56)).astype("uint8"), {"nodata": 0})},
        coords={"time": np.array(["2024-05-01", "2024-05-11", "2024-05-21"][:dates], "datetime64[ns]"),
                "y": Y0 - RES * np.arange(40) - RES / 2, "x": X0 + RES * np.arange(56) + RES / 2},
    ).rio.write_crs(32633)
    return ds.chunk({"time": 1, "y": 16, "x": 16})


def test_rasterio_gdal_opens_a_v2_store_with_crs_and_geotransform(tmp_path):
    ds = _series()
    path = geoproc.to_zarr(ds, tmp_path / "v2.zarr", zarr_format=2)
    # Zarr v2 on disk: .zgroup/.zarray/.zattrs, zstd, consolidated .zmetadata, no zarr.json
    names = set(os.listdir(path))
    assert {".zgroup", ".zattrs", ".zmetadata"} <= names and "zarr.json" not in names
    zarray = json.load(open(os.path.join(path, "ndvi", ".zarray")))
    assert zarray["zarr_format"] == 2 and zarray["compressor"]["id"] == "zstd" and zarray["chunks"] == [1, 16, 16]
    assert json.load(open(os.path.join(path, "ndvi", ".zattrs")))["grid_mapping"] == "spatial_ref"
    with rasterio.open(f'ZARR:"{path}":/ndvi') as src:  # GDAL 3.10 in rasterio's wheels: v2 only
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
        assert src.count == 2  # one band per date
        np.testing.assert_array_equal(src.read(2), ds.ndvi.values[1])
    with rasterio.open(f'ZARR:"{path}":/scl') as src:
        np.testing.assert_array_equal(src.read(1), ds.scl.values[0])
    # xarray + rioxarray, plain and through open_result
    plain = xr.open_zarr(path)
    assert plain.ndvi.rio.crs.to_epsg() == 32633 and plain.rio.transform() == ds.rio.transform()
    result = geoproc.open_result(path)
    xr.testing.assert_equal(result.ndvi.reset_coords(drop=True), ds.ndvi.reset_coords(drop=True))
    status = output_status(path)
    assert status["status"] == "complete" and status["zarr_format"] == 2
    assert status["regions_done"] == status["regions_total"] == 2 * 2 * 3 * 4
    item = json.load(open(f"{path}.stac-item.json"))
    assert item["assets"]["data"]["type"] == "application/vnd.zarr; version=2"


def test_v2_resume_and_append_keep_the_format(tmp_path):
    ds = _series(dates=3)
    w = begin_write(ds.isel(time=[0, 1]), tmp_path / "ts.zarr", zarr_format=2)
    some = w.pending()[::3]
    dask.threaded.get(w.graph(some), [w.key(b) for b in some])
    with pytest.raises(OutputError, match="unfinished"):
        geoproc.open_result(tmp_path / "ts.zarr")
    with pytest.raises(OutputError, match="Zarr v2 store, this write asks for v3"):
        geoproc.to_zarr(ds.isel(time=[0, 1]), tmp_path / "ts.zarr", mode="resume", zarr_format=3)
    path = geoproc.to_zarr(ds.isel(time=[0, 1]), tmp_path / "ts.zarr", mode="resume")  # the store's format kept
    geoproc.to_zarr(ds.isel(time=[2]), path, mode="append")
    assert not os.path.exists(os.path.join(path, "zarr.json"))
    xr.testing.assert_equal(geoproc.open_result(path).load().drop_vars("spatial_ref"), ds.load().drop_vars("spatial_ref"))
    with rasterio.open(f'ZARR:"{path}":/ndvi') as src:
        assert src.count == 3
        np.testing.assert_array_equal(src.read(3), ds.ndvi.values[2])
    with pytest.raises(InvalidArgumentError, match="shard_inner_chunk needs Zarr v3"):
        geoproc.to_zarr(ds, tmp_path / "sharded.zarr", zarr_format=2, shard_inner_chunk=8)
    with pytest.raises(InvalidArgumentError, match="zarr_format must be 3 or 2"):
        geoproc.to_zarr(ds, tmp_path / "v4.zarr", zarr_format=4)


def test_v2_overview_levels_open_in_gdal(tmp_path):
    ds = _series(dates=1).isel(time=0, drop=True)
    path = geoproc.to_zarr(ds, tmp_path / "ov.zarr", zarr_format=2, overviews=2)
    for level in (0, 1, 2):
        f = 2**level
        with rasterio.open(f'ZARR:"{path}":/{level}/ndvi') as src:
            assert src.crs.to_epsg() == 32633
            assert tuple(src.transform)[:6] == (RES * f, 0.0, X0, 0.0, -RES * f, Y0)
            assert src.shape == (40 // f, 56 // f)
            np.testing.assert_array_equal(src.read(1), geoproc.open_result(path, level=level).ndvi.values)


def test_v2_with_overviews_on_s3_resumes_and_finishes(s3_server):
    """On an object store: a v2 store is found again by resume (its root is .zgroup, not zarr.json), its overview
    levels are written region by region, and the time series gets its Collection beside it."""
    import uuid

    opts = s3_server.storage_options()
    url = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:8]}/ts.zarr"
    ds = _series()
    w = begin_write(ds, url, storage_options=opts, zarr_format=2, overviews=1)
    some = w.pending()[:5]
    dask.threaded.get(w.graph(some), [w.key(b) for b in some])
    geoproc.to_zarr(ds, url, storage_options=opts, mode="resume", overviews=1)
    status = output_status(url, storage_options=opts)
    assert status["status"] == "complete" and status["zarr_format"] == 2
    level = geoproc.open_result(url, storage_options=opts, level=1).load()
    with np.errstate(all="ignore"):
        reference = ds.ndvi.load().astype("float64").coarsen(y=2, x=2, boundary="pad").mean()
    np.testing.assert_allclose(level.ndvi.values, reference.values, rtol=1e-6)
    import obstore
    from obstore.store import S3Store

    bucket = S3Store(s3_server.bucket, endpoint=s3_server.endpoint, access_key_id=s3_server.access_key,
                     secret_access_key=s3_server.secret_key, region="us-east-1", client_options={"allow_http": True})
    prefix = url.split("/", 3)[3]
    assert bytes(obstore.get(bucket, f"{prefix}/.zgroup").bytes())
    coll = json.loads(bytes(obstore.get(bucket, f"{prefix}.stac-collection.json").bytes()))
    assert coll["extent"]["temporal"]["interval"] == [["2024-05-01T00:00:00Z", "2024-05-11T00:00:00Z"]]
