"""Zonal statistics against exactextract (exact coverage fractions) and rasterstats (pixel centres)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import shapely
import xarray as xr
from rasterio.transform import from_origin

import geoproc
from geoproc.errors import InvalidArgumentError

X0, Y1, RES = 500000.0, 5000000.0, 10.0


def _cube(t=3, h=97, w=83, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(0.5, 0.2, (t, h, w))
    v[rng.random(v.shape) < 0.03] = np.nan  # clouds: skipped
    da = xr.DataArray(v, dims=("time", "y", "x"), coords={
        "time": np.datetime64("2024-05-01") + np.arange(t).astype("timedelta64[D]"),
        "y": Y1 - RES / 2 - RES * np.arange(h), "x": X0 + RES / 2 + RES * np.arange(w)})
    return da.rio.write_crs("EPSG:32633")


def _fields(n=40, seed=1, h=97, w=83):
    """Random rotated quadrilaterals and a few with holes, some overlapping, some past the raster's edge."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cx, cy = X0 + rng.uniform(-20, w * RES + 20), Y1 - rng.uniform(-20, h * RES + 20)
        r = rng.uniform(15, 120)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 5))
        ring = np.c_[cx + r * np.cos(ang) * rng.uniform(0.6, 1, 5), cy + r * np.sin(ang) * rng.uniform(0.6, 1, 5)]
        g = shapely.Polygon(ring)
        if rng.random() < 0.2:
            g = g.difference(shapely.Point(cx, cy).buffer(r / 4))
        out.append(shapely.make_valid(g))
    return out


def _geojson(geoms, tmp_path):
    fc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32633"}}, "features": [
        {"type": "Feature", "properties": {"name": f"f{k}"}, "geometry": shapely.geometry.mapping(g)}
        for k, g in enumerate(geoms)]}
    path = tmp_path / "fields.geojson"
    path.write_text(json.dumps(fc))
    return path


def _tif(band, tmp_path, name="band.tif"):
    path = tmp_path / name
    h, w = band.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1, dtype="float64", crs="EPSG:32633",
                       transform=from_origin(X0, Y1, RES, RES), nodata=np.nan) as dst:
        dst.write(band, 1)
    return path


def test_fraction_coverage_equals_exactextract(tmp_path):
    from exactextract import exact_extract

    cube = _cube()
    geoms = _fields()
    path = _geojson(geoms, tmp_path)
    ours = geoproc.zonal_stats(cube.chunk({"time": 2, "y": 32, "x": 30}), str(path), zone_id="name",
                               stats=("count", "sum", "mean", "min", "max", "median", "p25", "std"),
                               coverage="fraction")
    assert len(ours) == len(geoms) * cube.sizes["time"]
    import geopandas as gpd

    gdf = gpd.GeoDataFrame({"name": [f"f{k}" for k in range(len(geoms))]}, geometry=geoms, crs="EPSG:32633")
    for t in range(cube.sizes["time"]):
        ref = exact_extract(str(_tif(cube.values[t], tmp_path, f"t{t}.tif")), gdf,
                            ["count", "sum", "mean", "min", "max", "median", "quantile(q=0.25)", "stdev"],
                            include_cols=["name"], output="pandas")
        got = ours[ours.time == cube.time.values[t]].set_index("zone").loc[ref["name"]]
        for mine, theirs in (("count", "count"), ("sum", "sum"), ("mean", "mean"), ("min", "min"), ("max", "max"),
                             ("median", "median"), ("p25", "quantile_25"), ("std", "stdev")):
            np.testing.assert_allclose(got[mine].values, ref[theirs].values, atol=1e-6, rtol=0, equal_nan=True,
                                       err_msg=f"{mine} at t={t}")


def test_centre_coverage_equals_rasterstats(tmp_path):
    from rasterstats import zonal_stats as rs_zonal

    cube = _cube(t=2)
    # rasterstats measures one polygon at a time; non-overlapping fields in another CRS (lon/lat GeoJSON)
    geoms = [g for g in _fields(60, seed=3) if g.area > 0]
    chosen = []
    for g in geoms:
        if all(not g.intersects(c) for c in chosen):
            chosen.append(g)
    from pyproj import Transformer

    to_ll = Transformer.from_crs("EPSG:32633", "OGC:CRS84", always_xy=True)
    ll = [shapely.transform(g, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))) for g in chosen]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": k, "properties": {}, "geometry": shapely.geometry.mapping(g)}
        for k, g in enumerate(ll)]}
    ours = geoproc.zonal_stats(cube.chunk({"y": 40, "x": 25}), fc, stats=("count", "mean", "median", "p90", "min"),
                               output="xarray")
    back = [shapely.transform(g, lambda xy: np.column_stack(
        Transformer.from_crs("OGC:CRS84", "EPSG:32633", always_xy=True).transform(xy[:, 0], xy[:, 1]))) for g in ll]
    for t in range(2):
        band = cube.values[t]
        ref = rs_zonal(back, band, affine=from_origin(X0, Y1, RES, RES), nodata=np.nan,
                       stats=["count", "mean", "median", "percentile_90", "min"])
        got = ours.isel(time=t)
        np.testing.assert_array_equal(got["count"].values, [r["count"] for r in ref])
        for mine, theirs in (("mean", "mean"), ("median", "median"), ("p90", "percentile_90"), ("min", "min")):
            np.testing.assert_allclose(got[mine].values, [np.nan if r[theirs] is None else r[theirs] for r in ref],
                                       rtol=1e-12, equal_nan=True, err_msg=mine)


def test_label_raster_numpy_equals_dask_and_numpy_reference():
    cube = _cube(t=2, h=50, w=60)
    rng = np.random.default_rng(5)
    labels = xr.DataArray(rng.integers(0, 7, (50, 60)) * 3, dims=("y", "x"))
    eager = geoproc.zonal_stats(cube, labels, stats=("count", "mean", "max", "median"), output="xarray")
    lazy = geoproc.zonal_stats(cube.chunk({"time": 1, "y": 17, "x": 13}), labels.chunk(20),
                               stats=("count", "mean", "max", "median"), output="xarray")
    xr.testing.assert_allclose(eager, lazy, rtol=1e-12)
    assert eager.zone.values.tolist() == [3, 6, 9, 12, 15, 18]
    for t in range(2):
        for z in eager.zone.values:
            v = cube.values[t][labels.values == z]
            v = v[~np.isnan(v)]
            assert eager["count"].sel(zone=z).values[t] == len(v)
            assert eager["mean"].sel(zone=z).values[t] == pytest.approx(v.mean(), rel=1e-12)
            assert eager["median"].sel(zone=z).values[t] == pytest.approx(np.median(v), rel=1e-12)
            assert eager["max"].sel(zone=z).values[t] == v.max()


def test_geoparquet_and_geodataframe_zones(tmp_path):
    import geopandas as gpd

    cube = _cube(t=1, h=40, w=40)
    gdf = gpd.GeoDataFrame({"field": ["a", "b"]}, geometry=[shapely.box(X0, Y1 - 200, X0 + 200, Y1),
                                                             shapely.box(X0 + 100, Y1 - 400, X0 + 400, Y1 - 100)],
                           crs="EPSG:32633").to_crs("EPSG:3857")
    gdf.to_parquet(tmp_path / "f.parquet")
    a = geoproc.zonal_stats(cube, str(tmp_path / "f.parquet"), zone_id="field", stats="count")
    b = cube.geoproc.zonal_stats(gdf.set_index("field"), stats="count")
    assert a["zone"].tolist() == ["a", "b"] and b["zone"].tolist() == ["a", "b"]
    assert a["count"].tolist() == b["count"].tolist()
    assert 0.9 * 400 < a["count"][0] <= 400  # a 20 x 20 px square, less the NaN pixels


def test_bad_input_says_what_to_do():
    cube = _cube(t=1, h=8, w=8)
    with pytest.raises(InvalidArgumentError, match="pNN"):
        geoproc.zonal_stats(cube, [shapely.box(0, 0, 1, 1)], stats=("mode",))
    with pytest.raises(InvalidArgumentError, match="coverage"):
        geoproc.zonal_stats(cube, [shapely.box(0, 0, 1, 1)], coverage="touched")
    with pytest.raises(InvalidArgumentError, match="buffer"):
        geoproc.zonal_stats(cube, [shapely.Point(0, 0)])
    with pytest.raises(InvalidArgumentError, match="dims"):
        geoproc.zonal_stats(cube.expand_dims(band=["red"]), [shapely.box(0, 0, 1, 1)])


def test_real_field_polygons_over_real_ndvi_equal_exactextract(shared_data, tmp_path):
    """eo-learn's test patch: 68 Sentinel-2 NDVI dates (cloudy pixels masked with its s2cloudless mask) and its 88
    real land-use polygons (GeoPackage, some reaching past the patch), exact fractions against exactextract."""
    import geopandas as gpd
    from exactextract import exact_extract

    patch = shared_data / "eolearn" / "TestEOPatch"
    if not patch.is_dir():
        from .helpers import missing_data

        missing_data(f"{patch} not found")
    ndvi = np.load(patch / "data" / "NDVI.npy")[:12, ..., 0].astype(np.float64)
    cloud = np.load(patch / "mask" / "CLM.npy")[:12, ..., 0] > 0
    ndvi[cloud] = np.nan
    bounds = shapely.geometry.shape(json.loads((patch / "bbox.geojson").read_text())).bounds
    t, h, w = ndvi.shape
    rx, ry = (bounds[2] - bounds[0]) / w, (bounds[3] - bounds[1]) / h
    cube = xr.DataArray(ndvi, dims=("time", "y", "x"), coords={
        "time": np.arange(t), "y": bounds[3] - ry / 2 - ry * np.arange(h), "x": bounds[0] + rx / 2 + rx * np.arange(w)})
    cube = cube.rio.write_crs("EPSG:32633")
    fields = gpd.read_file(patch / "vector_timeless" / "LULC.gpkg")
    ours = geoproc.zonal_stats(cube.chunk({"time": 6, "y": 40, "x": 40}), fields, stats=("count", "mean", "max"),
                               coverage="fraction", output="xarray")
    tif = tmp_path / "ndvi.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=h, width=w, count=t, dtype="float64", crs="EPSG:32633",
                       transform=rasterio.transform.from_bounds(*bounds, w, h), nodata=np.nan) as dst:
        dst.write(ndvi)
    ref = exact_extract(str(tif), fields.reset_index(names="row"), ["count", "mean", "max"], include_cols=["row"],
                        output="pandas").set_index("row").loc[np.arange(len(fields))]
    covered = ours["count"].sum("time").values > 0
    assert covered.sum() > 40  # most of the polygons lie on the patch
    for k in range(t):
        np.testing.assert_allclose(ours["count"].isel(time=k).values, ref[f"band_{k + 1}_count"].values, atol=1e-5)
        for s in ("mean", "max"):
            theirs = np.array(ref[f"band_{k + 1}_{s}"].values, dtype=np.float64)  # None: no pixel of the zone
            np.testing.assert_allclose(ours[s].isel(time=k).values, theirs, atol=1e-6,
                                       equal_nan=True, err_msg=f"{s} at date {k}")


@pytest.mark.parametrize("coverage", ["fraction", "centre"])
def test_south_up_grid_gives_the_same(coverage):
    """y increasing down the array (a south-up grid) covers the same pixels as the usual north-up one."""
    v = np.random.default_rng(0).random((20, 30))
    down = xr.DataArray(v, dims=("y", "x"), coords={"y": 195.0 - 10 * np.arange(20), "x": 5.0 + 10 * np.arange(30)})
    up = down.isel(y=slice(None, None, -1))
    g = [shapely.Polygon([(13, 17), (170, 40), (120, 160), (30, 120)])]
    a = geoproc.zonal_stats(down, g, stats=("count", "mean"), coverage=coverage)
    b = geoproc.zonal_stats(up.chunk(7), g, stats=("count", "mean"), coverage=coverage)
    np.testing.assert_allclose(a[["count", "mean"]].values, b[["count", "mean"]].values, rtol=1e-12)
    assert a["count"][0] == pytest.approx(g[0].area / 100 if coverage == "fraction" else 143)
