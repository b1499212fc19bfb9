"""Each documented argument of geoproc.load has its documented effect, compared with an independent reference.

on_error="fill" pixel by pixel (a load without the broken item), resampling="bilinear" (scipy's linear
interpolation of the stored values), a {band: method} mapping, dtype="float64".
"""

from __future__ import annotations

import os
import shutil

import dask
import numpy as np
import pystac
import pytest
import rasterio
from scipy import ndimage

import geoproc


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture()
def items(archive):
    return geoproc.search(archive.catalog)


def test_fill_equals_a_load_without_the_broken_asset_pixel_by_pixel(archive, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(archive.root, root)
    victim = archive.item_ids[0]
    os.remove(root / "sentinel-2-l2a-synthetic" / victim / "B04.tif")
    items = geoproc.search(root / "catalog.json")
    filled = geoproc.load(items, ["red"], resolution=20, on_error="fill")
    others = [it for it in items if it.id != victim]
    reference = geoproc.load(others, ["red"], like=filled)
    # the same slices (a slice is stamped with its first acquisition: without the victim, 5 s later)
    assert reference.sizes == filled.sizes
    assert np.all(np.abs(reference.time.values - filled.time.values) < np.timedelta64(1, "m"))
    np.testing.assert_array_equal(filled.red.values, reference.red.values)
    assert [f["item_id"] for f in geoproc.read_report(filled).failures()] == [victim]


def _one_item(items):
    return [items[0]]


def _bilinear_reference(href: str, grid_transform, shape) -> np.ndarray:
    """scipy linear interpolation of the stored values at the output pixel centres (same CRS)."""
    with rasterio.open(href) as src:
        values, t = src.read(1).astype(np.float64), src.transform
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    xs, ys = grid_transform @ (cols, rows)
    fc, fr = ~t @ (xs, ys)
    return ndimage.map_coordinates(values, [fr - 0.5, fc - 0.5], order=1, mode="nearest")


def test_bilinear_resampling_interpolates_the_stored_values(items):
    item = items[0]
    href = item.assets["B04"].get_absolute_href()
    ds = geoproc.load([item], ["red"], resolution=4, raw=True, resampling="bilinear")
    nearest = geoproc.load([item], ["red"], resolution=4, raw=True)
    got = ds.red.values[0].astype(np.float64)
    ref = _bilinear_reference(href, ds.rio.transform(), got.shape)
    inner = (slice(3, -3), slice(3, -3))  # GDAL and scipy differ only at the file's outer half pixel
    assert np.abs(got[inner] - ref[inner]).max() <= 1.0  # GDAL rounds to the stored integer type
    # and it is not nearest neighbour: the two differ wherever neighbours differ
    assert np.mean(ds.red.values[0][inner] != nearest.red.values[0][inner]) > 0.5


def test_a_resampling_mapping_applies_per_band(items):
    item = items[0]
    mixed = geoproc.load([item], ["red", "nir"], resolution=4, raw=True, resampling={"red": "bilinear"})
    bilinear = geoproc.load([item], ["red"], resolution=4, raw=True, resampling="bilinear")
    nearest = geoproc.load([item], ["nir"], resolution=4, raw=True)
    np.testing.assert_array_equal(mixed.red.values, bilinear.red.values)
    np.testing.assert_array_equal(mixed.nir.values, nearest.nir.values)
    assert mixed.red.attrs["resampling"] == "bilinear" and mixed.nir.attrs["resampling"] == "nearest"


def test_float64_output_holds_the_float32_decoding(items):
    f32 = geoproc.load(items[:3], ["red"], resolution=20)
    f64 = geoproc.load(items[:3], ["red"], resolution=20, dtype="float64")
    assert f32.red.dtype == np.float32 and f64.red.dtype == np.float64
    # decoding is float32 arithmetic (raster:bands), stored in the requested dtype
    np.testing.assert_array_equal(f64.red.values, f32.red.values.astype(np.float64))
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="float dtype"):
        geoproc.load(items[:3], ["red"], resolution=20, dtype="int16")


def test_groupby_time_gives_one_slice_per_acquisition(items):
    solar = geoproc.load(items, ["red"], resolution=40)
    per_time = geoproc.load(items, ["red"], resolution=40, groupby="time")
    acquisitions = sorted({it.datetime for it in items})
    assert per_time.sizes["time"] == len(acquisitions) > solar.sizes["time"]
    assert list(per_time.time.values) == [np.datetime64(t.replace(tzinfo=None), "ns") for t in acquisitions]


def test_use_overviews_false_reads_full_resolution(items):
    item = items[0]
    coarse = geoproc.load([item], ["red"], resolution=80, raw=True, use_overviews=False)
    with rasterio.open(item.assets["B04"].get_absolute_href()) as src:
        full = src.read(1)
        t = src.transform
    g = coarse.rio.transform()
    # nearest from the full-resolution file: the pixel under each output centre
    rows, cols = np.mgrid[0 : coarse.sizes["y"], 0 : coarse.sizes["x"]] + 0.5
    fc, fr = ~t @ (g @ (cols, rows))
    inside = (fr >= 0) & (fr < full.shape[0]) & (fc >= 0) & (fc < full.shape[1])
    ref = full[np.clip(fr.astype(int), 0, full.shape[0] - 1), np.clip(fc.astype(int), 0, full.shape[1] - 1)]
    np.testing.assert_array_equal(coarse.red.values[0][inside], ref[inside])


def test_accepts_item_dicts_and_an_item_collection(items):
    as_dicts = [it.to_dict(include_self_link=False) for it in items[:3]]
    for d in as_dicts:
        for a in d["assets"].values():
            a["href"] = os.path.abspath(a["href"]) if not os.path.isabs(a["href"]) else a["href"]
    a = geoproc.load(items[:3], ["red"], resolution=40)
    b = geoproc.load(as_dicts, ["red"], resolution=40)
    c = geoproc.load(pystac.ItemCollection(items[:3]), ["red"], resolution=40)
    assert a.attrs["input_items"] == b.attrs["input_items"] == c.attrs["input_items"]
    np.testing.assert_array_equal(a.red.values, c.red.values)


def test_a_grid_of_too_many_chunks_is_refused_before_the_graph_is_built(items):
    """A 10,000 km square at 10 m in 256 px chunks is 15 million chunks per band: refused at once, not a hang."""
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="chunks per band"):
        geoproc.plan(items, ["red"], bounds=(0, 0, 10_000_000, 10_000_000), resolution=10, chunks=256, crs=32633)
