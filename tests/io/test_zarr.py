"""to_zarr / open_result: round trip with CRS, provenance, and refusals before any compute."""

from __future__ import annotations

import json
import os

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import geoproc
from geoproc.errors import OutputError


def _result():
    values = da.from_array(np.arange(60 * 80, dtype=np.float32).reshape(60, 80), chunks=(32, 40))
    values = da.where(values % 7 == 0, np.nan, values)
    arr = xr.DataArray(values, dims=("y", "x"), coords={"y": 5_000_000 - 10 * np.arange(60) - 5.0, "x": 700_000 + 10 * np.arange(80) + 5.0}, name="ndvi")
    arr.attrs = {"nodata": np.nan, "long_name": "test"}
    return arr.rio.write_crs(32633)


def test_round_trip_with_crs_transform_and_attrs(tmp_path):
    arr = _result()
    path = geoproc.to_zarr(arr, tmp_path / "out.zarr", attrs={"input_items": ["a", "b"]})
    ds = xr.open_zarr(path)  # plain xarray, no decode_coords="all"
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.ndvi.rio.crs.to_epsg() == 32633
    assert tuple(ds.rio.transform())[:6] == (10.0, 0.0, 700_000.0, 0.0, -10.0, 5_000_000.0)
    np.testing.assert_array_equal(ds.ndvi.values, arr.values)
    assert ds.ndvi.encoding["chunks"] == (32, 40)
    assert ds.attrs["input_items"] == ["a", "b"] and ds.attrs["geoproc_version"] == geoproc.__version__
    # metadata is strict JSON (NaN attrs are written as strings) and Zarr v3
    meta = json.load(open(os.path.join(path, "zarr.json")))
    assert meta["zarr_format"] == 3
    json.loads(open(os.path.join(path, "ndvi", "zarr.json")).read(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert geoproc.open_result(path).ndvi.attrs["nodata"] == "nan"


def test_existing_output_is_refused_then_replaced(tmp_path):
    path = geoproc.to_zarr(_result(), tmp_path / "out.zarr")
    with pytest.raises(OutputError, match="already exists.*mode='w'"):
        geoproc.to_zarr(_result(), path)
    smaller = _result()[:30]
    geoproc.to_zarr(smaller, path, mode="w")
    assert xr.open_zarr(path).sizes["y"] == 30


def test_unwritable_locations_fail_before_compute(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []

    def boom(block):
        if block.size:  # not dask's meta probe
            calls.append(1)
        return block

    arr = _result().copy(data=_result().data.map_blocks(boom, dtype=np.float32))
    with pytest.raises(OutputError, match="cannot write"):
        geoproc.to_zarr(arr, blocker / "out.zarr")
    with pytest.raises(OutputError, match="not supported"):
        geoproc.to_zarr(arr, "s3://bucket/out.zarr")
    assert calls == [], "nothing may be computed before the location is known to be writable"


def test_pending_write_appears_only_when_complete(tmp_path):
    target = tmp_path / "lazy.zarr"
    pending = geoproc.to_zarr(_result(), target, compute=False)
    assert not target.exists(), "nothing may appear at the target before all chunks are written"
    assert pending.compute() == str(target)
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, _result().values)
    assert [p.name for p in tmp_path.iterdir()] == ["lazy.zarr"], "the staging store must be gone"


def test_failed_write_keeps_the_previous_store(tmp_path):
    target = tmp_path / "out.zarr"
    geoproc.to_zarr(_result(), target)

    def fail(block):
        if block.size:
            raise RuntimeError("worker died")
        return block

    broken = _result().copy(data=_result().data.map_blocks(fail, dtype=np.float32))
    with pytest.raises(RuntimeError, match="worker died"):
        geoproc.to_zarr(broken, target, mode="w")
    np.testing.assert_array_equal(xr.open_zarr(target).ndvi.values, _result().values)
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"], "no half-written store may be left behind"


def test_overwrite_refuses_what_is_not_a_zarr_store(tmp_path):
    precious = tmp_path / "my-data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(OutputError, match="not a Zarr store"):
        geoproc.to_zarr(_result(), precious, mode="w")
    assert (precious / "thesis.tex").exists()


def test_open_result_missing(tmp_path):
    with pytest.raises(OutputError, match="no Zarr store"):
        geoproc.open_result(tmp_path / "nope.zarr")
