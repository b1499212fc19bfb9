"""Labelling across chunks against scipy.ndimage.label, Felzenszwalb against scikit-image, vectorising against
rasterio.features.shapes on the whole array, object statistics against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from rasterio.features import shapes
from rasterio.transform import from_origin
from scipy import ndimage

import geoproc
from geoproc.errors import InvalidArgumentError

X0, Y1, RES = 300000.0, 6000000.0, 10.0


def _grid(a):
    h, w = a.shape
    out = xr.DataArray(a, dims=("y", "x"), coords={"y": Y1 - RES / 2 - RES * np.arange(h),
                                                   "x": X0 + RES / 2 + RES * np.arange(w)})
    return out.rio.write_crs("EPSG:32633")


def _blobs(h=120, w=140, seed=0, classes=1):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(h, w)), 3)
    mask = field > 0.02
    if classes == 1:
        return mask
    return np.where(mask, 1 + (ndimage.gaussian_filter(rng.normal(size=(h, w)), 4) > 0).astype(np.uint8), 0
                    ).astype(np.uint8)


def _same_partition(a, b):
    """Equal up to renumbering: a one-to-one map between the labels."""
    assert (a == 0).tolist() == (b == 0).tolist()
    pairs = np.unique(np.c_[a.ravel(), b.ravel()], axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_across_chunks_equals_scipy(connectivity):
    mask = _blobs()
    ref, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, connectivity))
    got = geoproc.label(_grid(mask).chunk({"y": 23, "x": 31}), connectivity=connectivity)
    assert got.chunks == ((23,) * 5 + (5,), (31,) * 4 + (16,))
    values = got.values
    _same_partition(values, ref)
    assert values.max() == n
    np.testing.assert_array_equal(values, ref)  # numbered alike too: raster order of each object's first pixel
    np.testing.assert_array_equal(geoproc.label(_grid(mask), connectivity=connectivity).values, values)


def test_label_of_classes_keeps_classes_apart():
    classes = _blobs(classes=2)
    got = geoproc.label(_grid(classes).chunk(25)).values
    ref = np.zeros(classes.shape, np.int64)
    for c in (1, 2):
        lab, _ = ndimage.label(classes == c)
        ref[lab > 0] = lab[lab > 0] + ref.max()
    _same_partition(got, ref)


def _whole_shapes(a, connectivity=4):
    t = from_origin(X0, Y1, RES, RES)
    return [(shapely.geometry.shape(g), v) for g, v in shapes(a, mask=a != 0, transform=t, connectivity=connectivity)]


def test_vectorize_across_chunks_equals_rasterio_shapes(tmp_path):
    import geopandas as gpd

    classes = _blobs(classes=2, seed=4)
    ref = _whole_shapes(classes)
    got = geoproc.vectorize(_grid(classes).chunk({"y": 30, "x": 37}), path=tmp_path / "objects.parquet")
    assert len(got) == len(ref)
    assert got.crs.to_epsg() == 32633
    back = gpd.read_parquet(tmp_path / "objects.parquet")
    assert len(back) == len(got) and back.crs == got.crs
    tree = shapely.STRtree(got.geometry.values)
    for g, v in ref:
        hits = [i for i in tree.query(g.representative_point()) if got.geometry.values[i].equals(g)]
        assert len(hits) == 1, f"no equal polygon for one of class {v}"
        assert got["class"].values[hits[0]] == v
        assert got["area"].values[hits[0]] == pytest.approx(g.area, rel=1e-12)
    # some polygons really did cross chunk edges
    assert (got.bounds.maxx - got.bounds.minx).max() > 37 * RES


def test_vectorize_with_statistics():
    mask = _blobs(60, 60, seed=2)
    values = _grid(np.random.default_rng(1).random((60, 60)))
    got = geoproc.vectorize(_grid(mask).chunk(20), data=values.chunk(20), stats=("mean", "count"))
    lab, _ = ndimage.label(mask)
    for row in got.itertuples():
        inside = shapely.contains_xy(row.geometry, *np.meshgrid(values.x.values, values.y.values))
        assert row.count == inside.sum() == row.area / RES**2
        assert row.mean == pytest.approx(values.values[inside].mean(), rel=1e-12)


def test_object_stats_against_numpy():
    mask = _blobs(50, 70, seed=5)
    lab = geoproc.label(_grid(mask).chunk(16))
    values = _grid(np.random.default_rng(2).random((50, 70)))
    got = geoproc.object_stats(lab, values.chunk(16), stats=("max",)).set_index("label")
    L = lab.values
    yy, xx = np.meshgrid(values.y.values, values.x.values, indexing="ij")
    for k in range(1, L.max() + 1):
        sel = L == k
        row = got.loc[k]
        assert row.pixels == sel.sum() and row.area == sel.sum() * RES**2
        assert row.x == pytest.approx(xx[sel].mean()) and row.y == pytest.approx(yy[sel].mean())
        assert row.xmin == xx[sel].min() - RES / 2 and row.ymax == yy[sel].max() + RES / 2
        assert row["max"] == values.values[sel].max()


def _image(h=64, w=72, seed=0):
    rng = np.random.default_rng(seed)
    base = np.kron(rng.random((4, 3, 4)), np.ones((1, 16, 18)))[:, :h, :w]
    return base + rng.normal(0, 0.01, base.shape)


@pytest.mark.filterwarnings("ignore:Got image with third dimension:RuntimeWarning")  # 4 bands are meant
@pytest.mark.parametrize("scale,min_size", [(1.0, 20), (50.0, 5)])
def test_felzenszwalb_one_chunk_equals_scikit_image(scale, min_size):
    from skimage.segmentation import felzenszwalb as sk_felz

    img = _image()
    ref = sk_felz(np.moveaxis(img, 0, -1), scale=scale, sigma=0, min_size=min_size, channel_axis=-1)
    got = geoproc.felzenszwalb(xr.DataArray(img, dims=("band", "y", "x")), scale=scale, min_size=min_size)
    _same_partition(got.values, ref + 1)
    lazy = geoproc.felzenszwalb(xr.DataArray(img, dims=("band", "y", "x")).chunk(-1), scale=scale, min_size=min_size)
    np.testing.assert_array_equal(lazy.values, got.values)


def test_felzenszwalb_seams_resolved():
    """Regions of 16 x 18 px cut by chunks of 20 x 25: chunked gives the whole image's segments, no seam cuts."""
    img = xr.DataArray(_image(), dims=("band", "y", "x"))
    whole = geoproc.felzenszwalb(img, scale=50.0, min_size=30).values
    chunked = geoproc.felzenszwalb(img.chunk({"y": 20, "x": 25}), scale=50.0, min_size=30, halo=12).values
    _same_partition(chunked, whole)


def test_bad_input():
    with pytest.raises(InvalidArgumentError, match="threshold"):
        geoproc.label(_grid(np.zeros((4, 4))))
    with pytest.raises(InvalidArgumentError, match="connectivity"):
        geoproc.vectorize(_grid(np.zeros((4, 4), bool)), connectivity=6)


def test_real_land_cover_vectorised_and_labelled(shared_data):
    """eo-learn's test patch land-cover raster (6 classes, 101 x 100 px) in chunks of 30 x 35 px: the polygons
    rasterio.features.shapes draws on the whole raster, and scipy's labels of each class."""
    patch = shared_data / "eolearn" / "TestEOPatch"
    if not patch.is_dir():
        from .helpers import missing_data

        missing_data(f"{patch} not found")
    lulc = np.load(patch / "mask_timeless" / "LULC.npy")[..., 0].astype(np.int32)
    raster = _grid(lulc).chunk({"y": 30, "x": 35})
    ref = _whole_shapes(lulc)
    got = geoproc.vectorize(raster)
    assert len(got) == len(ref) > 20
    by_area = sorted((round(g.area, 6), int(v)) for g, v in ref)
    assert sorted(zip(got["area"].round(6), got["class"].astype(int))) == by_area
    for g, v in ref:
        assert sum(got.geometry.values[i].equals(g) for i in shapely.STRtree(got.geometry.values).query(g)) == 1
    labels = geoproc.label(raster).values
    for c in np.unique(lulc[lulc > 0]):
        ref_lab, n = ndimage.label(lulc == c)
        assert len(np.unique(labels[lulc == c])) == n
        _same_partition(np.where(lulc == c, labels, 0), ref_lab)


def test_vectorize_8_connected_equals_rasterio_made_valid():
    """With 8-connectivity GDAL draws regions joined at a corner as one self-touching (invalid) ring; vectorize's
    polygons are the valid form of the same shapes (shapely.make_valid), with the same areas."""
    classes = _blobs(classes=2, seed=1)
    ref = _whole_shapes(classes, connectivity=8)
    got = geoproc.vectorize(_grid(classes).chunk({"y": 30, "x": 37}), connectivity=8)
    assert len(got) == len(ref) and got.geometry.is_valid.all()
    assert sum(not g.is_valid for g, _ in ref) > 0  # the case in question is there
    tree = shapely.STRtree(got.geometry.values)
    for g, v in ref:
        hits = [i for i in tree.query(g) if got.geometry.values[i].equals(shapely.make_valid(g))]
        assert len(hits) == 1 and got["class"].values[hits[0]] == v
        assert got["area"].values[hits[0]] == pytest.approx(g.area, rel=1e-12)
