"""STAC that finds the outputs: every Item and Collection geoproc writes validates offline against STAC 1.1,
projection 2.0 and processing 1.2 (tests/data/schemas), and carries the acquisition span and input items."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from referencing import Registry, Resource

import geoproc
from geoproc.io.output_item import store_collection

SCHEMAS = Path(__file__).parents[1] / "data" / "schemas"
STAC = "https://schemas.stacspec.org/v1.1.0"
EXTENSIONS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": SCHEMAS / "projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json": SCHEMAS / "processing/v1.2.0/schema.json",
}


def _registry() -> Registry:
    """Every shipped schema under the URL it is published at, so that no $ref goes to the network."""
    resources = []
    for path in sorted((SCHEMAS / "stac-spec/v1.1.0").glob("*.json")):
        spec = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}.get(path.name, "item-spec")
        resources.append((f"{STAC}/{spec}/json-schema/{path.name}", path))
    resources += [(f"https://geojson.org/schema/{p.name}", p) for p in (SCHEMAS / "geojson").glob("*.json")]
    resources += list(EXTENSIONS.items())
    return Registry().with_resources(
        (url, Resource.from_contents(json.loads(path.read_text()))) for url, path in resources
    )


REGISTRY = _registry()


def validate(doc: dict) -> None:
    """Raise jsonschema.ValidationError unless ``doc`` is valid STAC 1.1 with each extension it declares."""
    core = f"{STAC}/item-spec/json-schema/item.json" if doc["type"] == "Feature" else \
        f"{STAC}/collection-spec/json-schema/collection.json"
    urls = [core]
    for ext in doc.get("stac_extensions", []):
        assert ext in EXTENSIONS, f"no schema shipped for {ext}: add it under tests/data/schemas"
        urls.append(ext)
    for url in urls:
        schema = REGISTRY.contents(url)
        jsonschema.Draft7Validator(schema, registry=REGISTRY, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
                                   ).validate(doc)


@pytest.fixture(scope="module")
def loaded(archive):
    items = geoproc.search(archive.catalog)
    ds = geoproc.load(items, ["red", "nir"], resolution=40, chunks=64)
    # the reference span: the items' own acquisition times (not the loader's per-day time coordinate)
    ds.attrs["_span"] = [min(i.datetime for i in items).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         max(i.datetime for i in items).strftime("%Y-%m-%dT%H:%M:%SZ")]
    ds.attrs["_ids"] = sorted(i.id for i in items)
    return ds


def test_the_schemas_reject_what_they_should():
    """The offline validation has teeth: broken items fail it."""
    good = {
        "type": "Feature", "stac_version": "1.1.0", "id": "x", "geometry": None, "links": [], "assets": {},
        "stac_extensions": list(EXTENSIONS),
        "properties": {"datetime": "2024-05-01T00:00:00Z", "proj:code": "EPSG:32633", "processing:level": "L3"},
    }
    validate(good)
    for bad in (
        {"properties": {**good["properties"], "datetime": None}},  # null datetime needs start/end
        {"properties": {**good["properties"], "proj:code": 32633}},  # projection 2.0: a string
        {"properties": {**good["properties"], "proj:epsg": 32633}},  # removed in projection 2.0
        {"properties": {**good["properties"], "processing:software": "geoproc"}},  # an object
        {"stac_version": None},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate({**good, **bad})


def test_composite_item_spans_its_inputs_with_null_datetime(tmp_path, loaded):
    ndvi = geoproc.composite(geoproc.ndvi(loaded), "median")
    path = geoproc.to_zarr(ndvi, tmp_path / "ndvi.zarr")
    item = json.load(open(f"{path}.stac-item.json"))
    validate(item)
    props = item["properties"]
    iso = loaded.attrs["_span"]
    assert props["datetime"] is None and [props["start_datetime"], props["end_datetime"]] == iso
    assert sorted(props["geoproc:input_items"]) == loaded.attrs["_ids"]
    assert f"from {len(loaded.attrs['input_items'])} input item(s) acquired {iso[0]} to {iso[1]}" in props["processing:lineage"]
    assert props["processing:software"] == {"geoproc": geoproc.__version__}


def test_cog_items_and_tile_collection_validate(tmp_path, loaded):
    ndvi = geoproc.composite(geoproc.ndvi(loaded), "median")
    single = geoproc.to_cog(ndvi, tmp_path / "ndvi.tif", blocksize=64)
    item = json.load(open(f"{single}.stac-item.json"))
    validate(item)
    assert item["properties"]["start_datetime"] == ndvi.attrs["input_start"]
    geoproc.to_cog(ndvi, tmp_path / "tiles", tile_size=128, blocksize=64)
    coll = json.load(open(tmp_path / "tiles" / "collection.json"))
    validate(coll)
    assert coll["extent"]["temporal"]["interval"] == [[ndvi.attrs["input_start"], ndvi.attrs["input_end"]]]
    assert coll["summaries"]["geoproc:input_items"] == sorted(ndvi.attrs["input_items"])
    for link in (lk for lk in coll["links"] if lk["rel"] == "item"):
        tile = json.load(open(tmp_path / "tiles" / link["href"]))
        validate(tile)
        assert tile["properties"]["geoproc:input_items"] == list(ndvi.attrs["input_items"])


def test_time_series_store_gets_a_collection_with_its_temporal_extent(tmp_path, loaded):
    series = geoproc.ndvi(loaded)
    path = geoproc.to_zarr(series, tmp_path / "series.zarr")
    item = json.load(open(f"{path}.stac-item.json"))
    validate(item)
    assert [item["properties"]["start_datetime"], item["properties"]["end_datetime"]] == loaded.attrs["_span"]
    coll = store_collection(geoproc.open_result(path), str(path), "series", item_href="./series.zarr.stac-item.json")
    validate(coll)
    # from the first date to the last acquisition of the last date (its scenes span ten seconds)
    assert coll["extent"]["temporal"]["interval"] == [loaded.attrs["_span"]]
    assert coll["summaries"]["geoproc:dates"] == [np.datetime_as_string(t, unit="s") + "Z" for t in loaded.time.values]
    assert coll["assets"]["data"]["proj:code"] == "EPSG:32633"
    assert coll["summaries"]["geoproc:input_items"] == loaded.attrs["_ids"]


def test_appended_store_item_covers_every_write(tmp_path, loaded):
    series = geoproc.ndvi(loaded)
    path = geoproc.to_zarr(series.isel(time=slice(0, 2)), tmp_path / "ts.zarr")
    geoproc.to_zarr(series.isel(time=slice(2, None)), path, mode="append")
    item = json.load(open(f"{path}.stac-item.json"))
    validate(item)
    assert item["properties"]["start_datetime"] == loaded.attrs["_span"][0]
    assert item["properties"]["end_datetime"] == loaded.attrs["_span"][1]
    assert sorted(item["properties"]["geoproc:input_items"]) == loaded.attrs["_ids"]


def test_crs_without_code_is_wkt2_with_null_code(tmp_path):
    import xarray as xr

    laea = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
    arr = xr.DataArray(np.zeros((4, 4), "float32"), dims=("y", "x"), name="v",
                       coords={"y": 3_210_000 - 10.0 * np.arange(4), "x": 4_321_000 + 10.0 * np.arange(4)})
    path = geoproc.to_zarr(arr.rio.write_crs(laea), tmp_path / "laea.zarr")
    item = json.load(open(f"{path}.stac-item.json"))
    validate(item)
    assert item["properties"]["proj:code"] is None and item["properties"]["proj:wkt2"].startswith("PROJCRS")
