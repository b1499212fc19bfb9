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


# ---------------------------------------------------------------- geometry, CQL2 filters, arguments


def _corner_outside_footprints(archive):
    """A point inside the first item's bbox but outside every item's geometry."""
    import pystac
    from shapely import union_all
    from shapely.geometry import Point, shape

    items = {it.id: shape(it.geometry) for it in pystac.Catalog.from_file(archive.catalog).get_items(recursive=True)}
    foot = union_all(list(items.values()))
    w, s, e, n = items[archive.item_ids[0]].bounds
    for fx, fy in ((0.002, 0.002), (0.998, 0.002), (0.002, 0.998), (0.998, 0.998)):
        p = Point(w + fx * (e - w), s + fy * (n - s))
        if not foot.intersects(p):
            return p
    pytest.fail("no bbox corner of the first item lies outside all footprints")


def test_spatial_filters_use_the_item_geometry(archive):
    pytest.importorskip("shapely")
    corner = _corner_outside_footprints(archive)
    with pytest.raises(NoItemsFoundError, match="intersects="):
        geoproc.search(archive.catalog, intersects=corner)
    with pytest.raises(NoItemsFoundError):
        geoproc.search(archive.catalog, bbox=corner.buffer(1e-4).bounds)
    w, s, e, n = archive.bbox
    # west > east: the bbox crosses the antimeridian and covers everything east of w
    assert len(geoproc.search(archive.catalog, bbox=(w, s, -179.0, n))) == len(archive.item_ids)
    with pytest.raises(NoItemsFoundError):
        geoproc.search(archive.catalog, bbox=(e + 1, s, w - 1, n))  # all but the archive


def test_collection_json_and_file_url_are_accepted(archive):
    import os

    coll = os.path.join(archive.root, "sentinel-2-l2a-synthetic", "collection.json")
    assert len(geoproc.search(coll)) == len(archive.item_ids)
    assert len(geoproc.search(f"file://{archive.catalog}", max_items=2)) == 2


def test_filter_text_and_json_match_query(archive):
    by_query = [i.id for i in geoproc.search(archive.catalog, query={"eo:cloud_cover": {"gte": 20, "lt": 60}})]
    text = [i.id for i in geoproc.search(archive.catalog, filter="eo:cloud_cover >= 20 AND eo:cloud_cover < 60")]
    cql_json = {"op": "and", "args": [{"op": ">=", "args": [{"property": "eo:cloud_cover"}, 20]},
                                      {"op": "<", "args": [{"property": "properties.eo:cloud_cover"}, 60]}]}
    assert by_query == text == [i.id for i in geoproc.search(archive.catalog, filter=cql_json)]
    assert by_query


def test_filter_and_geometry_argument_errors(archive):
    with pytest.raises(InvalidArgumentError, match="cannot read the filter as cql2-text"):
        geoproc.search(archive.catalog, filter="eo:cloud_cover <<< 3")
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        geoproc.search(archive.catalog, filter="eo:cloud_cover < 3", filter_lang="cql2-json")
    with pytest.raises(InvalidArgumentError, match="filter_lang"):
        geoproc.search(archive.catalog, filter="eo:cloud_cover < 3", filter_lang="sql")
    with pytest.raises(InvalidArgumentError, match="t_meets"):
        geoproc.search(archive.catalog, filter="T_MEETS(datetime, INTERVAL('2024-01-01', '2024-12-31'))")
    with pytest.raises(InvalidArgumentError, match="either bbox or intersects"):
        geoproc.search(archive.catalog, bbox=archive.bbox, intersects={"type": "Point", "coordinates": [18, 45]})
    with pytest.raises(InvalidArgumentError, match="west, south, east, north"):
        geoproc.search(archive.catalog, bbox=(1, 2, 3))
    with pytest.raises(InvalidArgumentError, match="south <= north"):
        geoproc.search(archive.catalog, bbox=(17, 46, 18, 45))
    with pytest.raises(InvalidArgumentError, match="GeoJSON geometry"):
        geoproc.search(archive.catalog, intersects="POINT (18 45)")
    with pytest.raises(InvalidArgumentError, match="GeoJSON geometry"):
        geoproc.search(archive.catalog, intersects={"type": "FeatureCollection", "features": []})
    with pytest.raises(InvalidArgumentError, match="limit"):
        geoproc.search(archive.catalog, limit=0)


def test_cql2_evaluation_is_three_valued():
    from geoproc.io.stac import _cql2_eval, _parse_filter

    item = {
        "id": "S2X_33TA_20240503_L2A", "collection": "s2",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "properties": {"datetime": "2024-05-03T09:50:00Z", "eo:cloud_cover": 12.5, "platform": "Sentinel-2A",
                       "instruments": ["msi"], "title": "Côte 50%", "nothing": None},
    }

    def ev(text):
        return _cql2_eval(_parse_filter(text, None), item)

    assert ev("eo:cloud_cover < 20") is True and ev("eo:cloud_cover >= 20") is False
    # a missing or null property makes a comparison unknown, and unknown never matches
    assert ev("missing < 3") is None and ev("NOT (missing < 3)") is None and ev("nothing = 'x'") is None
    assert ev("missing < 3 OR eo:cloud_cover < 20") is True and ev("missing < 3 AND eo:cloud_cover > 20") is False
    assert ev("missing IS NULL") is True and ev("nothing IS NULL") is True and ev("platform IS NULL") is False
    assert ev("eo:cloud_cover BETWEEN 12.5 AND 13") is True and ev("eo:cloud_cover BETWEEN 13 AND 20") is False
    assert ev("platform IN ('Sentinel-2A', 'x')") is True and ev("eo:cloud_cover IN (1, 2)") is False
    assert ev("id LIKE 'S2X\\_33T_\\_%'") is True and ev("id LIKE 's2x%'") is False
    assert ev("title LIKE '%50\\%'") is True and ev("ACCENTI(title) = 'Cote 50%'") is True
    assert ev("CASEI(platform) = CASEI('SENTINEL-2a')") is True
    assert ev("S_INTERSECTS(geometry, POINT(0.5 0.5))") is True and ev("S_INTERSECTS(geometry, POINT(2 2))") is False
    assert ev("S_WITHIN(geometry, BBOX(-1, -1, 2, 2))") is True
    assert ev("datetime > TIMESTAMP('2024-05-03T09:00:00Z')") is True and ev("datetime < DATE('2024-05-03')") is False
    assert ev("T_INTERSECTS(datetime, INTERVAL('2024-05-01', '2024-05-03'))") is True  # a date end covers its day
    assert ev("T_BEFORE(datetime, INTERVAL('2024-05-04', '..'))") is True
    assert ev("A_CONTAINS(instruments, ('msi'))") is True and ev("A_OVERLAPS(instruments, ('oli', 'tirs'))") is False
    assert ev("eo:cloud_cover + 10 > 20") is True
    assert ev("platform < 3") is None  # text against a number: not comparable, no match
