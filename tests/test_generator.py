"""The synthetic archive: valid COGs, valid STAC, truth that lines up with the pixels, determinism."""

from __future__ import annotations

import json
import os

import numpy as np
import pystac
import pytest
import rasterio
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.local_validator import LocalValidator

from geoproc.testing import BANDS, generate_archive

from .helpers import item_file, read, reflectance, tiff_tags


def _items(archive) -> list[pystac.Item]:
    cat = pystac.Catalog.from_file(archive.catalog)
    return list(cat.get_items(recursive=True))


def test_layout_and_catalog(archive):
    assert os.path.exists(os.path.join(archive.root, "catalog.json"))
    assert os.path.exists(os.path.join(archive.root, "sentinel-2-l2a-synthetic", "collection.json"))
    items = _items(archive)
    assert sorted(i.id for i in items) == sorted(archive.item_ids)
    assert len(items) == 3 * 5
    epsgs = {ProjectionExtension.ext(i).epsg for i in items}
    assert epsgs == {32633, 32634}, "one tile must lie in the neighbouring UTM zone"


def test_cogs_are_valid_cogs(archive):
    item_id = archive.item_ids[0]
    for name in ("B04.tif", "B11.tif", "SCL.tif", "truth.tif"):
        path = item_file(archive, item_id, name)
        assert {322, 323} <= tiff_tags(path), f"{name} is not tiled (no TileWidth/TileLength tags)"
        with rasterio.open(path) as src:
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert src.compression.name.lower() == "deflate"
            assert src.block_shapes[0] == (256, 256)
            assert len(src.overviews(1)) >= 1, f"{name} has no overviews"
            if name != "truth.tif":
                assert src.nodata == 0


@pytest.mark.filterwarnings("ignore:``LocalValidator`` is deprecated:DeprecationWarning")
def test_items_validate_and_carry_extensions(archive):
    validator = LocalValidator().item_validator("1.1.0")
    for item in _items(archive):
        with open(item.get_self_href()) as fh:
            d = json.load(fh)  # as written, before pystac migrates extension versions
        validator.validate(d)  # raises jsonschema.ValidationError
        assert d["properties"]["proj:epsg"] in (32633, 32634)
        assert 0 <= item.properties["eo:cloud_cover"] <= 100
        red = item.assets["B04"]
        assert EOExtension.ext(red).bands[0].common_name == "red"
        rb = RasterExtension.ext(red).bands[0]
        assert (rb.scale, rb.offset, rb.nodata, str(rb.data_type)) == (0.0001, -0.1, 0, "uint16")
        assert ProjectionExtension.ext(red).shape == [256, 256]
        assert ProjectionExtension.ext(item.assets["SCL"]).shape == [128, 128]
        # the STAC geometry places the tile where its GeoTIFF says it is
        with rasterio.open(red.get_absolute_href()) as src:
            assert list(src.transform)[:6] == ProjectionExtension.ext(red).transform
            assert src.crs.to_epsg() == ProjectionExtension.ext(item).epsg


def _near_boundary(labels: np.ndarray, radius: int) -> np.ndarray:
    """True where a different label occurs within ``radius`` pixels (Chebyshev)."""
    out = np.zeros(labels.shape, bool)
    padded = np.pad(labels, radius, mode="edge")
    h, w = labels.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w] != labels
    return out


def test_truth_lines_up_with_scl(archive):
    """SCL, upsampled by pixel repetition, codes the truth's cloud states and land cover.

    Exactly on zone-33 tiles (their grid is the world's). The zone-34 tile samples
    the world at its 20 m pixel centres for SCL and at 10 m centres for the truth,
    so they may differ, but only within 2 pixels of a truth boundary.
    """
    state_to_scl = {1: (8, 9), 2: (3,), 3: (10,)}
    for item_id in archive.item_ids:
        scl = np.repeat(np.repeat(read(item_file(archive, item_id, "SCL.tif")), 2, 0), 2, 1)
        land = read(item_file(archive, item_id, "truth.tif"), 1)
        state = read(item_file(archive, item_id, "truth.tif"), 2)
        expected = np.where(state == 0, land, 0)
        ok = (state == 255) == (scl == 0)
        for s, codes in state_to_scl.items():
            ok &= (state == s) == np.isin(scl, codes)
        ok &= (state != 0) | (scl == expected)
        if "_33T" in item_id:
            assert ok.all(), item_id
        else:
            labels = state.astype(np.int32) * 16 + land
            assert ok.mean() > 0.9, item_id
            assert not (~ok & ~_near_boundary(labels, 2)).any(), f"{item_id}: SCL disagrees away from edges"


def test_spectra_and_clouds_are_plausible(archive):
    item_id = archive.item_ids[len(archive.item_ids) // 2]
    red = reflectance(read(item_file(archive, item_id, "B04.tif")))
    nir = reflectance(read(item_file(archive, item_id, "B08.tif")))
    land = read(item_file(archive, item_id, "truth.tif"), 1)
    state = read(item_file(archive, item_id, "truth.tif"), 2)
    ndvi = (nir - red) / (nir + red)
    clear = state == 0
    assert np.nanmedian(ndvi[clear & (land == 4)]) > 0.6
    assert abs(np.nanmedian(ndvi[clear & (land == 5)])) < 0.3
    assert np.nanmedian(ndvi[clear & (land == 6)]) < 0
    if (state == 1).any():
        assert np.nanmean(red[state == 1]) > 0.3  # clouds are bright
    if (state == 2).any():
        assert np.nanmean(nir[(state == 2) & (land == 4)]) < np.nanmean(nir[clear & (land == 4)])


def test_overlapping_tiles_share_identical_pixels(archive):
    (_, _, ga), (_, _, gb) = archive.tiles[0], archive.tiles[1]
    shift = int((gb.transform.c - ga.transform.c) / 10)
    item_a, item_b = archive.item_ids[0], archive.item_ids[1]
    a = read(item_file(archive, item_a, "B08.tif"))
    b = read(item_file(archive, item_b, "B08.tif"))
    overlap = ga.width - shift
    assert overlap > 0
    np.testing.assert_array_equal(a[:, shift:], b[:, :overlap])


def test_change_event_in_truth(archive):
    meta = json.load(open(os.path.join(archive.root, "truth.json")))
    change = meta["change"]
    assert change == archive.change and change["from"] == "vegetation" and change["to"] == "bare"
    minx, miny, maxx, maxy = change["bounds"]
    name, _, grid = archive.tiles[0]
    t = grid.transform
    c0, c1 = int((minx - t.c) / 10), int((maxx - t.c) / 10)
    r0, r1 = int((t.f - maxy) / 10), int((t.f - miny) / 10)
    assert 0 <= c0 < c1 <= grid.width and 0 <= r0 < r1 <= grid.height, "the patch must lie in the first tile"
    for d, item_id in enumerate(i for i in archive.item_ids if f"_{name}_" in i):
        land = read(item_file(archive, item_id, "truth.tif"), 1)[r0:r1, c0:c1]
        assert (land == (5 if d >= change["date_index"] else 4)).all()


def test_deterministic_for_a_seed(tmp_path):
    a = generate_archive(tmp_path / "a", size=64, dates=2, tiles=2, seed=7)
    b = generate_archive(tmp_path / "b", size=64, dates=2, tiles=2, seed=7)
    c = generate_archive(tmp_path / "c", size=64, dates=2, tiles=2, seed=8)
    assert a.item_ids == b.item_ids
    for item_id in a.item_ids:
        for key in [*BANDS, "SCL"]:
            x = read(item_file(a, item_id, f"{key}.tif"))
            np.testing.assert_array_equal(x, read(item_file(b, item_id, f"{key}.tif")))
    assert any(
        not np.array_equal(read(item_file(a, i, "B04.tif")), read(item_file(c, i, "B04.tif"))) for i in a.item_ids
    )


def test_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate_archive(tmp_path, size=63)


def test_archive_in_a_folder_whose_name_has_a_dot(tmp_path):
    """pystac takes a root like ``archive.partial-x1`` for a file name and wrote the catalog one folder up."""
    import geoproc

    arc = generate_archive(tmp_path / "archive.partial-x1", size=64, dates=1, tiles=1)
    assert arc.catalog == str(tmp_path / "archive.partial-x1" / "catalog.json")
    assert os.path.exists(arc.catalog) and not os.path.exists(tmp_path / "catalog.json")
    assert len(geoproc.search(arc.catalog)) == 1
