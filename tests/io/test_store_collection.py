"""A time-series store gets a STAC Collection beside it at the finish (``<store>.stac-collection.json``): its temporal
extent spans the store's dates (after an append, all of them), it links the store's Item, and it validates offline
against STAC 1.1, projection 2.0 and processing 1.2. Stores without a time dimension get none."""

from __future__ import annotations

import json
import os

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr

import geoproc
from geoproc.run import write_tiled

from .test_output_stac import validate

DATES = np.array(["2024-05-01T10:20:30", "2024-05-11T10:20:31", "2024-06-02T10:21:00"], "datetime64[ns]")


def _series(dates=3) -> xr.DataArray:
    values = np.random.default_rng(0).random((dates, 32, 32)).astype("float32")
    arr = xr.DataArray(values, dims=("time", "y", "x"), name="ndvi",
                       coords={"time": DATES[:dates], "y": 5_000_000.0 - 10 * np.arange(32),
                               "x": 700_000.0 + 10 * np.arange(32)})
    return arr.rio.write_crs(32633).chunk({"time": 1, "y": 16, "x": 16})


def _collection(path) -> dict:
    return json.load(open(f"{path}.stac-collection.json"))


def test_time_series_store_gets_a_valid_collection_spanning_its_dates(tmp_path):
    path = geoproc.to_zarr(_series(2), tmp_path / "ts.zarr")
    coll = _collection(path)
    validate(coll)
    assert coll["type"] == "Collection" and coll["id"] == "ts.zarr"
    assert coll["extent"]["temporal"]["interval"] == [["2024-05-01T10:20:30Z", "2024-05-11T10:20:31Z"]]
    assert coll["summaries"]["geoproc:dates"] == ["2024-05-01T10:20:30Z", "2024-05-11T10:20:31Z"]
    bbox = coll["extent"]["spatial"]["bbox"][0]
    item = json.load(open(f"{path}.stac-item.json"))
    assert bbox == item["bbox"] and coll["assets"]["data"]["proj:code"] == "EPSG:32633"
    assert {"rel": "item", "href": "./ts.zarr.stac-item.json", "type": "application/geo+json"} in coll["links"]
    assert coll["assets"]["data"]["href"] == str(path)
    # an append widens it to every date of the store
    geoproc.to_zarr(_series(3).isel(time=[2]), path, mode="append")
    coll = _collection(path)
    validate(coll)
    assert coll["extent"]["temporal"]["interval"] == [["2024-05-01T10:20:30Z", "2024-06-02T10:21:00Z"]]
    assert len(coll["summaries"]["geoproc:dates"]) == 3


def test_collection_is_written_at_the_finish_of_tiled_and_v2_writes_only_for_time_series(tmp_path):
    run = write_tiled(_series(3), tmp_path / "tiles.zarr", tile=1, zarr_format=2, overviews=1)
    assert run.complete
    coll = _collection(tmp_path / "tiles.zarr")
    validate(coll)
    assert coll["assets"]["data"]["type"] == "application/vnd.zarr; version=2"
    assert coll["extent"]["temporal"]["interval"] == [["2024-05-01T10:20:30Z", "2024-06-02T10:21:00Z"]]
    # a reduction over time is no time series: an Item, no Collection; an overwrite removes the stale one
    path = geoproc.to_zarr(_series(3).median("time"), tmp_path / "tiles.zarr", mode="w")
    assert os.path.exists(f"{path}.stac-item.json") and not os.path.exists(f"{path}.stac-collection.json")
