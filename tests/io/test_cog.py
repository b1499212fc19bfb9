"""to_cog: valid COGs (rio-cogeo's validator) from Dask chunks, local and on S3 (SeaweedFS), tiles with a VRT."""

from __future__ import annotations

import json
import os
import tracemalloc
import uuid

import dask.array as da
import numpy as np
import obstore
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from obstore.store import S3Store
from rio_cogeo.cogeo import cog_validate

import geoproc
from geoproc.errors import InvalidArgumentError, OutputError

X0, Y0, RES = 700_000.0, 5_000_000.0, 10.0


def _grid(values, name="ndvi", dims=("y", "x")):
    h, w = values.shape[-2:]
    coords = {"y": Y0 - RES * np.arange(h) - RES / 2, "x": X0 + RES * np.arange(w) + RES / 2}
    return xr.DataArray(values, dims=dims, coords=coords, name=name).rio.write_crs(32633)


def _ndvi(h=1200, w=1500, chunks=(512, 512)):
    v = da.random.default_rng(1).random((h, w), chunks=chunks).astype("float32") * 1.2 - 0.2
    v = da.where(v < -0.15, np.nan, v)  # holes: nodata
    arr = _grid(v)
    arr.attrs = {"long_name": "NDVI", "units": "1", "input_items": ["s2-a", "s2-b"],
                 "input_start": "2024-05-02T10:00:00Z", "input_end": "2024-05-30T10:00:00Z"}
    return arr


def test_cog_is_valid_tiled_compressed_with_overviews_and_nodata(tmp_path):
    arr = _ndvi()
    path = geoproc.to_cog(arr, tmp_path / "ndvi.tif")
    valid, errors, warnings = cog_validate(path)
    assert valid and errors == [] and warnings == []
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
        assert src.block_shapes == [(512, 512)]
        assert src.compression.name == "deflate"
        assert src.overviews(1) == [2, 4]  # down to one 512-pixel block
        assert np.isnan(src.nodata)
        np.testing.assert_array_equal(src.read(1), arr.values)
        assert src.tags()["units"] == "1" and src.descriptions == ("ndvi",)
        # the overview is the mean of each 2x2 block, skipping nodata
        ov = src.read(1, out_shape=(600, 750))
    ref = arr.values.reshape(600, 2, 750, 2)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        mean = np.nanmean(ref, axis=(1, 3))
    np.testing.assert_allclose(ov, mean, rtol=1e-5, atol=1e-6)
    item = json.load(open(f"{path}.stac-item.json"))
    assert item["assets"]["data"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert item["assets"]["data"]["href"] == "./ndvi.tif"
    assert item["properties"]["start_datetime"] == "2024-05-02T10:00:00Z" and item["properties"]["datetime"] is None
    assert item["properties"]["geoproc:input_items"] == ["s2-a", "s2-b"]


def test_classes_keep_their_values_in_overviews_and_the_given_nodata(tmp_path):
    classes = np.random.default_rng(2).choice(np.array([1, 4, 8, 9], dtype="uint8"), size=(700, 900))
    classes[:40] = 255
    arr = _grid(da.from_array(classes, chunks=(256, 300)), name="scl")
    path = geoproc.to_cog(arr, tmp_path / "scl.tif", nodata=255, blocksize=256)
    assert cog_validate(path)[0]
    with rasterio.open(path) as src:
        assert src.nodata == 255 and src.dtypes == ("uint8",)
        np.testing.assert_array_equal(src.read(1), classes)
        for level in range(1, len(src.overviews(1)) + 1):
            ov = src.read(1, out_shape=(700 // 2**level, 900 // 2**level))
            assert set(np.unique(ov)) <= {1, 4, 8, 9, 255}  # nearest: no class averaged into another


def test_dataset_variables_become_named_bands(tmp_path):
    base = _ndvi(300, 400, (128, 128)).fillna(0)
    ds = xr.Dataset({"red": base, "green": base * 2, "blue": base * 3})
    path = geoproc.to_cog(ds, tmp_path / "rgb.tif", compress="zstd")
    with rasterio.open(path) as src:
        assert src.count == 3 and src.descriptions == ("red", "green", "blue")
        assert src.compression.name == "zstd"
        np.testing.assert_allclose(src.read(3), (base * 3).values)


def test_write_holds_a_few_chunks_not_the_array(tmp_path):
    """Chunks are computed a batch at a time: the Python heap peaks far below the array's size."""
    arr = _grid(da.random.default_rng(3).random((3072, 3072), chunks=(256, 256)).astype("float32"))
    size = arr.nbytes  # 36 MiB
    geoproc.to_cog(arr[:256, :256], tmp_path / "warm.tif", stac_item=False)  # imports and caches, not counted
    tracemalloc.start()
    try:
        geoproc.to_cog(arr, tmp_path / "big.tif", stac_item=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 4, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB array"
    assert cog_validate(tmp_path / "big.tif")[0]


def test_tiles_with_vrt_and_stac_collection(tmp_path):
    arr = _ndvi(1100, 1300, (512, 512))
    vrt = geoproc.to_cog(arr, tmp_path / "mosaic", tile_size=512)
    assert vrt == str(tmp_path / "mosaic" / "mosaic.vrt")
    files = sorted(os.listdir(tmp_path / "mosaic"))
    tifs = [f for f in files if f.endswith(".tif")]
    assert len(tifs) == 3 * 3 and "collection.json" in files
    for tif in tifs:
        assert cog_validate(tmp_path / "mosaic" / tif)[0], tif
    with rasterio.open(vrt) as src:  # GDAL sees one raster: the whole result
        assert src.shape == (1100, 1300) and src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
        np.testing.assert_array_equal(src.read(1), arr.values)
    import pystac

    coll = pystac.Collection.from_file(str(tmp_path / "mosaic" / "collection.json"))
    items = list(coll.get_items())
    assert len(items) == 9
    corner = next(i for i in items if i.id == "tile-r002-c002")
    assert corner.properties["proj:shape"] == [1100 - 1024, 1300 - 1024]
    assert corner.properties["proj:transform"] == [RES, 0.0, X0 + 1024 * RES, 0.0, -RES, Y0 - 1024 * RES]
    assert corner.assets["data"].get_absolute_href() == str(tmp_path / "mosaic" / "tile-r002-c002.tif")
    assert coll.extent.temporal.intervals[0][0].isoformat().startswith("2024-05-02T10:00:00")
    west, south, east, north = coll.extent.spatial.bboxes[0]
    assert all(west <= i.bbox[0] and i.bbox[2] <= east and south <= i.bbox[1] and i.bbox[3] <= north for i in items)
    # rewritten with larger tiles: no tile of the first write is left behind
    with pytest.raises(OutputError, match="already holds tiles"):
        geoproc.to_cog(arr, tmp_path / "mosaic", tile_size=512)
    geoproc.to_cog(arr, tmp_path / "mosaic", tile_size=1024, overwrite=True)
    assert sorted(f for f in os.listdir(tmp_path / "mosaic") if f.endswith(".tif")) == [
        "tile-r000-c000.tif", "tile-r000-c001.tif", "tile-r001-c000.tif", "tile-r001-c001.tif"]
    with rasterio.open(vrt) as src:
        np.testing.assert_array_equal(src.read(1), arr.values)


def test_s3(s3_server, monkeypatch):
    opts = s3_server.storage_options()
    prefix = uuid.uuid4().hex[:8]
    url = f"s3://{s3_server.bucket}/{prefix}/ndvi.tif"
    arr = _ndvi(600, 700, (256, 256))
    assert geoproc.to_cog(arr, url, storage_options=opts) == url
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        geoproc.to_cog(arr, url, storage_options=opts)
    store = S3Store(s3_server.bucket, endpoint=s3_server.endpoint, access_key_id=s3_server.access_key,
                    secret_access_key=s3_server.secret_key, region="us-east-1", client_options={"allow_http": True})
    keys = sorted(e["path"] for page in obstore.list(store, prefix) for e in page)
    assert keys == [f"{prefix}/ndvi.tif", f"{prefix}/ndvi.tif.stac-item.json"]  # no probe or staging left behind
    # GDAL reads it in place, over HTTP range requests (credentials from the environment, as a user's)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    with rasterio.Env():
        valid, errors, _ = cog_validate(f"/vsis3/{s3_server.bucket}/{prefix}/ndvi.tif")
        assert valid, errors
        with rasterio.open(f"/vsis3/{s3_server.bucket}/{prefix}/ndvi.tif") as src:
            np.testing.assert_array_equal(src.read(1), arr.values)
    with pytest.raises(OutputError, match="bucket 'nope' .* does not exist"):
        geoproc.to_cog(arr, "s3://nope/x.tif", storage_options=opts)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (xr.DataArray(np.zeros((4, 4), "float32"), dims=("y", "x")), {}, "no CRS; set it with data.rio.write_crs"),
        ("dates", {}, "has 2 dates: pick one"),
        ("ndvi", {"compress": "gzip"}, "compress must be one of"),
        ("ndvi", {"blocksize": 100}, "multiple of 16"),
        ("ndvi", {"tile_size": 300}, "tile_size must be a positive multiple of blocksize"),
    ],
)
def test_refusals_are_one_line(tmp_path, data, kwargs, message):
    if isinstance(data, str) and data == "ndvi":
        data = _ndvi(64, 64, (32, 32))
    elif isinstance(data, str):
        data = _ndvi(64, 64, (32, 32)).expand_dims(time=np.array(["2024-05-01", "2024-05-11"], "datetime64[ns]"))
    with pytest.raises(InvalidArgumentError, match=message) as err:
        geoproc.to_cog(data, tmp_path / "x.tif", **kwargs)
    assert "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "x.tif")


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    arr = _ndvi(64, 64, (32, 32))
    path = geoproc.to_cog(arr, tmp_path / "x.tif")
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        geoproc.to_cog(arr * 2, path)
    geoproc.to_cog(arr * 2, path, overwrite=True)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), (arr * 2).values)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".geoproc")] == []  # staging removed
