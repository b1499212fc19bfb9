"""Read faults: transient HTTP errors retried, broken assets raised or filled and reported, URL signing at read time."""

from __future__ import annotations

import os
import shutil

import dask
import numpy as np
import pystac
import pytest
from distributed import Client, LocalCluster

import geoproc
from geoproc.errors import AssetReadError

from .faulty_http import serve

NO_GDAL_RETRY = {"GDAL_HTTP_MAX_RETRY": 0}  # so that what is tested is geoproc's own retry


def _items_at(archive, base_url: str) -> list[pystac.Item]:
    """The archive's items with asset hrefs pointing at ``base_url`` instead of the local folder."""
    items = []
    for item in geoproc.search(archive.catalog):
        item = item.clone()
        for asset in item.assets.values():
            rel = os.path.relpath(asset.get_absolute_href(), archive.root)
            asset.href = f"{base_url}/{rel}"
        items.append(item)
    return items


@pytest.fixture(scope="module")
def reference(archive):
    items = geoproc.search(archive.catalog)
    with dask.config.set(scheduler="synchronous"):
        return geoproc.load(items, ["red"], resolution=20, chunks=256).red.values


def test_transient_http_errors_are_retried(archive, reference):
    with serve(archive.root, fail_first=2, status=503) as (url, requests):
        ds = geoproc.load(_items_at(archive, url), ["red"], resolution=20, chunks=256, gdal_env=NO_GDAL_RETRY, retries=3)
        ds.attrs.pop("input_items")
        with dask.config.set(scheduler="synchronous"):
            np.testing.assert_array_equal(ds.red.values, reference)
        assert all(n >= 3 for n in requests.values()), "each file must have been asked for again after failures"


def test_retry_budget_exhausted_names_item_asset_href(archive):
    with serve(archive.root, fail_first=10, status=502) as (url, _):
        ds = geoproc.load(_items_at(archive, url), ["red"], resolution=20, gdal_env=NO_GDAL_RETRY, retries=1)
        with dask.config.set(scheduler="synchronous"), pytest.raises(AssetReadError) as err:
            ds.red.values
    msg = str(err.value)
    assert "S2X_" in msg and "'B04'" in msg and url in msg and "after 2 attempts" in msg and "502" in msg


def test_permanent_errors_are_not_retried(archive):
    with serve(archive.root) as (url, requests):
        items = _items_at(archive, url + "/missing")
        ds = geoproc.load(items, ["red"], resolution=20, gdal_env=NO_GDAL_RETRY, retries=5)
        with dask.config.set(scheduler="synchronous"), pytest.raises(AssetReadError, match="404"):
            ds.red.values
        assert max(requests.values()) == 1, "a 404 must not be retried"


@pytest.fixture()
def broken_archive(archive, tmp_path):
    """A copy of the archive with one band file of one item deleted."""
    root = tmp_path / "broken"
    shutil.copytree(archive.root, root)
    victim = archive.item_ids[0]  # first tile, first date
    os.remove(root / "sentinel-2-l2a-synthetic" / victim / "B04.tif")
    return root, victim


def test_broken_asset_raises_with_its_name(broken_archive):
    root, victim = broken_archive
    ds = geoproc.load(geoproc.search(root / "catalog.json"), ["red"], resolution=20)
    with dask.config.set(scheduler="synchronous"), pytest.raises(AssetReadError) as err:
        ds.red.values
    assert victim in str(err.value) and "'B04'" in str(err.value) and "B04.tif" in str(err.value)


def _check_fill(ds, victim, archive):
    values = ds.red.values
    report = geoproc.read_report(ds)
    failures = report.failures()
    assert [(f["item_id"], f["asset"]) for f in failures] == [(victim, "B04")]
    assert failures[0]["chunks"] >= 1 and failures[0]["href"].endswith("B04.tif")
    assert victim in str(report)
    # the first date is filled from the overlapping tile where it has data, NaN elsewhere in tile 0
    first = values[0]
    assert np.isnan(first).mean() > 0.2 and np.isfinite(first).mean() > 0.3
    assert np.isfinite(values[1:]).mean() > 0.9


def test_fill_mode_reports_broken_assets_locally(broken_archive, archive):
    root, victim = broken_archive
    ds = geoproc.load(geoproc.search(root / "catalog.json"), ["red"], resolution=20, on_error="fill")
    with dask.config.set(scheduler="synchronous"):
        _check_fill(ds, victim, archive)


def test_fill_mode_reports_broken_assets_from_cluster_workers(broken_archive, archive):
    root, victim = broken_archive
    ds = geoproc.load(geoproc.search(root / "catalog.json"), ["red"], resolution=20, on_error="fill")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster):
        _check_fill(ds, victim, archive)


def test_report_needs_fill_mode(archive):
    ds = geoproc.load(geoproc.search(archive.catalog), ["red"], resolution=40)
    with pytest.raises(geoproc.errors.InvalidArgumentError, match="on_error='fill'"):
        geoproc.read_report(ds)


SIGNED: list[str] = []


def sign(href: str) -> str:
    """Stands in for a URL signer: records when it runs and rewrites the href to the real location."""
    SIGNED.append(href)
    return href.replace("signed://", "")


def test_patch_url_runs_at_read_time(archive, reference):
    items = geoproc.search(archive.catalog)
    for item in items:
        for asset in item.assets.values():
            asset.href = "signed://" + asset.get_absolute_href()
    SIGNED.clear()
    ds = geoproc.load(items, ["red"], resolution=20, chunks=256, patch_url=sign)
    assert SIGNED == [], "signing must wait until the read, so tokens are fresh"
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(ds.red.values, reference)
    assert SIGNED and all(h.startswith("signed://") for h in SIGNED)
