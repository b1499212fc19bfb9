"""Search of a static catalog: every filter, sorting, limits, and the errors."""

from __future__ import annotations

import datetime as dt

import pytest

import geoproc
from geoproc.errors import CatalogError, InvalidArgumentError, NoItemsFoundError
from geoproc.io.stac import parse_datetime_range


def test_all_items_sorted_by_datetime(archive):
    items = geoproc.search(archive.catalog)
    assert sorted(i.id for i in items) == sorted(archive.item_ids)
    times = [i.datetime for i in items]
    assert times == sorted(times)
    assert [i.datetime for i in geoproc.search(archive.catalog, sortby="-datetime")] == times[::-1]


def test_folder_is_accepted_as_catalog(archive):
    assert len(geoproc.search(archive.root)) == len(archive.item_ids)


def test_bbox_selects_tiles(archive):
    # a small box inside the zone-34 tile only (east of every zone-33 tile)
    from geoproc.grid import transform_bounds

    b33 = transform_bounds(archive.tiles[1][2].bounds, "EPSG:32633", "EPSG:4326")
    b34 = transform_bounds(archive.tiles[2][2].bounds, "EPSG:32634", "EPSG:4326")
    box = (b33[2] + 0.002, (b34[1] + b34[3]) / 2, b33[2] + 0.004, (b34[1] + b34[3]) / 2 + 0.001)
    items = geoproc.search(archive.catalog, bbox=box)
    assert items and all("_34T" in i.id for i in items)
    assert len(items) == len(archive.dates)


def test_datetime_range_and_open_ends(archive):
    d1, d2 = archive.dates[1], archive.dates[2]
    items = geoproc.search(archive.catalog, datetime=f"{d1:%Y-%m-%d}/{d2:%Y-%m-%d}")
    assert {i.datetime.date() for i in items} == {d1.date(), d2.date()}
    later = geoproc.search(archive.catalog, datetime=f"{archive.dates[-1]:%Y-%m-%d}/..")
    assert {i.datetime.date() for i in later} == {archive.dates[-1].date()}
    # a datetime end is an exact, inclusive instant: tiles of one date are acquired 5 s apart
    upto = geoproc.search(archive.catalog, datetime=(None, d1))
    assert [i.datetime for i in upto][-1] == d1
    assert len(upto) == 3 + 1


def test_cloud_cover_query_and_max_items(archive):
    limit = 30
    items = geoproc.search(archive.catalog, query={"eo:cloud_cover": {"lt": limit}})
    expected = {k for k, v in archive.cloud_cover.items() if v < limit}
    assert {i.id for i in items} == expected and 0 < len(expected) < len(archive.item_ids)
    assert len(geoproc.search(archive.catalog, max_items=4)) == 4
    assert len(geoproc.search(archive.catalog, collections=["sentinel-2-l2a-synthetic"])) == len(archive.item_ids)


def test_empty_result_names_the_filters(archive):
    with pytest.raises(NoItemsFoundError, match="datetime=2031"):
        geoproc.search(archive.catalog, datetime="2031")
    with pytest.raises(NoItemsFoundError):
        geoproc.search(archive.catalog, collections="landsat")


def test_bad_catalog_and_arguments(tmp_path, archive):
    with pytest.raises(CatalogError, match="no STAC catalog"):
        geoproc.search(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match="cannot open"):
        geoproc.search(tmp_path / "bad.json")
    with pytest.raises(InvalidArgumentError, match="operator"):
        geoproc.search(archive.catalog, query={"eo:cloud_cover": {"below": 3}})
    with pytest.raises(InvalidArgumentError, match="date"):
        geoproc.search(archive.catalog, datetime="yesterday")


@pytest.mark.parametrize(
    "value, start, end",
    [
        ("2024", "2024-01-01T00:00:00+00:00", "2024-12-31T23:59:59.999999+00:00"),
        ("2024-02", "2024-02-01T00:00:00+00:00", "2024-02-29T23:59:59.999999+00:00"),
        ("2024-05-03", "2024-05-03T00:00:00+00:00", "2024-05-03T23:59:59.999999+00:00"),
        ("2024-05-03T10:00:00Z/..", "2024-05-03T10:00:00+00:00", None),
        ("../2024-05-03", None, "2024-05-03T23:59:59.999999+00:00"),
        ((dt.datetime(2024, 1, 1), None), "2024-01-01T00:00:00+00:00", None),
    ],
)
def test_parse_datetime_range(value, start, end):
    s, e = parse_datetime_range(value)
    assert (s.isoformat() if s else None, e.isoformat() if e else None) == (start, end)
