"""STAC metadata parsing, on real items from public catalogs and on the synthetic archive."""

from __future__ import annotations

import json

import pystac
import pytest

from geoproc.errors import MetadataError, UnknownBandError
from geoproc.io.items import asset_spec, resolve_band


def _item(shared_data, name: str) -> pystac.Item:
    d = json.load(open(shared_data / "stac_items" / "pystac-client" / name))
    return pystac.Item.from_dict(d)


def test_earth_search_sentinel2_bands(shared_data):
    item = _item(shared_data, "earth-search__sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json")
    red = asset_spec(item, "red")
    assert red.key == "red" and red.crs == "EPSG:32613"
    assert red.resolution == 10 and red.shape == (10980, 10980)
    assert (red.scale, red.offset, red.nodata) == (0.0001, -0.1, 0)
    scl = asset_spec(item, "scl")
    assert scl.resolution == 20 and scl.scale == 1.0
    swir = asset_spec(item, "swir16")
    assert swir.resolution == 20
    # bounds from proj:transform/shape enclose the item's footprint centre
    assert red.bounds[0] < red.bounds[2] and red.bounds[1] < red.bounds[3]


def test_landsat_nir_alias_and_scale(shared_data):
    item = _item(shared_data, "earth-search__landsat-c2-l2__LC08_L2SP_033032_20231008_02_T1.json")
    nir = asset_spec(item, "nir")
    assert nir.key == "nir08"
    assert nir.scale == pytest.approx(2.75e-05) and nir.offset == pytest.approx(-0.2)
    assert nir.resolution == 30 and nir.crs.startswith("EPSG:326")


def test_planetary_computer_sentinel2_common_names(shared_data):
    item = _item(shared_data, "planetarycomputer__sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652.json")
    key, index = resolve_band(item, "nir")
    assert key == "B08" and index == 1
    spec = asset_spec(item, "red")
    assert spec.key == "B04" and spec.crs == "EPSG:32660"


def test_unknown_band_lists_what_exists(shared_data):
    item = _item(shared_data, "earth-search__sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json")
    with pytest.raises(UnknownBandError) as err:
        asset_spec(item, "purple")
    msg = str(err.value)
    assert "'purple'" in msg and "red" in msg and "nir" in msg


def test_synthetic_items_resolve_common_names(archive):
    item = next(pystac.Catalog.from_file(archive.catalog).get_items(recursive=True))
    assert asset_spec(item, "red").key == "B04"
    assert asset_spec(item, "nir").key == "B08"
    assert asset_spec(item, "swir22").key == "B12"
    spec = asset_spec(item, "scl")
    assert spec.key == "SCL" and spec.resolution == 20 and spec.data_type == "uint8"
