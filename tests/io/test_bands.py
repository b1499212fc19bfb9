"""Band names on real items from public catalogs: the rules of geoproc.io.bands, one test each."""

from __future__ import annotations

import json
import warnings

import pystac
import pytest

from geoproc.errors import BandNotFoundError, UnknownBandError
from geoproc.io.bands import resolve_band
from geoproc.io.items import asset_spec

ES_V0 = "pystac-client/earth-search__sentinel-s2-l2a-cogs__S2B_20EPT_20250731_0_L2A.json"
ES_V1 = "pystac-client/earth-search__sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json"
ES_C1 = "pystac-client/earth-search__sentinel-2-c1-l2a__S2B_T24MWV_20250731T130245_L2A.json"
PC_S2 = "pystac-client/planetarycomputer__sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652.json"
ES_LS = "pystac-client/earth-search__landsat-c2-l2__LC08_L2SP_033032_20231008_02_T1.json"
USGS_BETA2 = "odc-stac/LC08_L2SR_081119_20200101_20200823_02_T2.json"


def _raw(shared_data, name: str) -> dict:
    d = json.load(open(shared_data / "stac_items" / name))
    if d.get("type") == "FeatureCollection":
        d = d["features"][0]
    d["links"] = []  # offline: no root or collection to resolve
    return d


def _item(shared_data, name: str, d: dict | None = None) -> pystac.Item:
    d = d or _raw(shared_data, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystac's storage-extension migration notes
        return pystac.Item.from_dict(d)


def test_previews_never_match_a_common_name(shared_data):
    """Earth Search v0: `overview` (320 m, roles [overview]) and `visual` list red/green/blue first."""
    item = _item(shared_data, ES_V0)
    assert list(item.assets).index("overview") < list(item.assets).index("B04")  # the trap is real
    assert [resolve_band(item, b) for b in ("red", "green", "blue")] == [("B04", 1), ("B03", 1), ("B02", 1)]
    spec = asset_spec(item, "red")
    assert spec.resolution == 10 and spec.shape == (10980, 10980)
    # by its asset key a preview is still reachable
    assert resolve_band(item, "overview") == ("overview", 1)


def test_single_band_assets_win_over_the_same_name_in_a_multi_band_one(shared_data):
    """Planetary Computer's `visual` has roles [data] and lists red/green/blue too."""
    item = _item(shared_data, PC_S2)
    assert item.assets["visual"].roles == ["data"]
    assert resolve_band(item, "red") == ("B04", 1)
    assert resolve_band(item, "blue") == ("B02", 1)


def test_an_alias_never_crosses_to_another_centre_wavelength(shared_data):
    """PC labels B8A (865 nm) `rededge` and B08 (842 nm) `nir`: nir08 must be B8A, found by wavelength."""
    item = _item(shared_data, PC_S2)
    assert item.assets["B8A"].extra_fields["eo:bands"][0]["common_name"] == "rededge"
    assert resolve_band(item, "nir08") == ("B8A", 1)
    assert resolve_band(item, "nir") == ("B08", 1)
    # Landsat: nir is the narrow B5 through the alias nir -> nir08, as before
    assert resolve_band(_item(shared_data, ES_LS), "nir") == ("nir08", 1)


def test_a_name_for_several_different_bands_is_an_error_listing_them(shared_data):
    item = _item(shared_data, ES_C1)
    with pytest.raises(UnknownBandError) as err:
        resolve_band(item, "rededge")
    msg = str(err.value)
    assert not isinstance(err.value, BandNotFoundError)
    for key, nm in (("rededge1", "704 nm"), ("rededge2", "740 nm"), ("rededge3", "783 nm")):
        assert key in msg and nm in msg
    assert resolve_band(item, "rededge2") == ("rededge2", 1)


def test_the_same_band_stored_twice_resolves_to_the_geotiff(shared_data):
    """Earth Search v1 has `red` (COG) and `red-jp2` (JPEG2000) with the same eo:bands entry."""
    item = _item(shared_data, ES_V1)
    jp2 = item.assets["nir08-jp2"]
    assert jp2.extra_fields["eo:bands"] == item.assets["nir08"].extra_fields["eo:bands"]
    # asked by band name, not a key, with the JPEG2000 copy first: the GeoTIFF wins
    d = _raw(shared_data, ES_V1)
    d["assets"] = {"nir08-jp2": d["assets"]["nir08-jp2"], "nir08-cog": d["assets"]["nir08"]}
    assert resolve_band(_item(shared_data, ES_V1, d), "nir08") == ("nir08-cog", 1)


def test_asset_dot_n_names_a_band_of_a_multi_band_asset(shared_data):
    item = _item(shared_data, ES_C1)
    assert resolve_band(item, "visual.2") == ("visual", 2)
    assert resolve_band(item, "visual.3") == ("visual", 3)
    with pytest.raises(UnknownBandError, match="has 3 bands"):
        resolve_band(item, "visual.4")


def test_old_items_with_eo_bands_as_indices_resolve(shared_data):
    """STAC 1.0.0-beta.2 (USGS): assets list `eo:bands: [3]`, indices into properties.eo:bands."""
    item = _item(shared_data, USGS_BETA2)
    assert item.assets["SR_B4.TIF"].extra_fields["eo:bands"] == [3]
    assert resolve_band(item, "red") == ("SR_B4.TIF", 1)
    assert resolve_band(item, "nir08") == ("SR_B5.TIF", 1)
    assert resolve_band(item, "swir22") == ("SR_B7.TIF", 1)


def test_unknown_band_lists_what_exists_without_previews_names(shared_data):
    item = _item(shared_data, ES_V0)
    with pytest.raises(BandNotFoundError) as err:
        resolve_band(item, "purple")
    msg = str(err.value)
    assert "'purple'" in msg and "B04" in msg and "overview" in msg
