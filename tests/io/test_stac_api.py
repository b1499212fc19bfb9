"""Search over a real STAC API (stac-fastapi-pgstac) gives what the same search gives over the static catalog.

The ``stac_api`` fixture (tests/conftest.py) serves the session's synthetic archive from a private
PostgreSQL + PostGIS on 127.0.0.1. The same archive is also searched as a static catalog on disk,
over HTTP, and on an fsspec file system (``memory://``, the code path of ``s3://``). Every search case
must return the same item ids in the same order from all of them. Error cases use servers on 127.0.0.1
that are not STAC APIs, or are broken ones; nothing else is ever contacted.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import os
import urllib.request
import uuid

import pytest

import geoproc
from geoproc.errors import CatalogError, GeoprocError, InvalidArgumentError, NoItemsFoundError
from geoproc.grid import transform_bounds

from ..helpers import http_server
from ..services.pgstac import free_port, static_catalog_records

shapely = pytest.importorskip("shapely")
from shapely.geometry import Point, box, shape  # noqa: E402

COLLECTION = "sentinel-2-l2a-synthetic"


# ---------------------------------------------------------------- servers on 127.0.0.1


class _Handler(http.server.SimpleHTTPRequestHandler):
    """``/static/...``: the archive's files. ``/html``, ``/json``, ``/error500``: not STAC.

    ``/fake/<mode>/``: a landing page that advertises item search (and nothing else), whose
    ``/fake/<mode>/search`` answers: ``ok`` every item as one unsorted page (recording the request
    body), ``500``/``400`` an error, ``html`` a web page.
    """

    items: list[dict] = []
    bodies: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: str | dict, ctype: str = "application/json"):
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith("/static/"):
            self.path = self.path[len("/static"):]
            return super().do_GET()
        if path == "/html":
            return self._send(200, "<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")
        if path == "/json":
            return self._send(200, {"service": "weather", "status": "ok"})
        if path == "/error500":
            return self._send(500, "Internal Server Error", "text/plain")
        if path.startswith("/fake/") and path.count("/") == 3 and path.endswith("/"):
            root = f"http://{self.headers['Host']}{path}"
            return self._send(200, {
                "type": "Catalog", "stac_version": "1.0.0", "id": "fake", "description": "fake API",
                "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
                "links": [{"rel": "self", "href": root, "type": "application/json"},
                          {"rel": "root", "href": root, "type": "application/json"},
                          {"rel": "search", "href": root + "search", "type": "application/geo+json", "method": "POST"}],
            })
        return self._send(404, {"code": "NotFound", "description": f"no {path}"})

    def do_POST(self):
        mode = self.path.split("/")[2] if self.path.startswith("/fake/") else ""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        type(self).bodies.append(body)
        if mode == "ok":
            return self._send(200, {"type": "FeatureCollection", "features": self.items[::-1], "links": []})
        if mode == "500":
            return self._send(500, {"code": "InternalError", "description": "database connection lost"})
        if mode == "400":
            return self._send(400, {"code": "BadRequest", "description": "unknown queryable 'cloudy'"})
        if mode == "html":
            return self._send(200, "<html><body>Search is down for maintenance</body></html>", "text/html")
        return self._send(404, {"code": "NotFound", "description": self.path})


@pytest.fixture(scope="module")
def web(archive):
    """Base URL of a local HTTP server (see :class:`_Handler`)."""
    _, items = static_catalog_records(archive.catalog)
    handler = type("Handler", (_Handler,), {"items": items, "bodies": []})
    with http_server(functools.partial(handler, directory=archive.root)) as url:
        yield url, handler


@pytest.fixture(scope="module")
def memory_catalog(archive):
    """The archive's STAC JSON files copied to an fsspec ``memory://`` file system."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    base = f"memory://geoproc-{uuid.uuid4().hex}"
    for folder, _, files in os.walk(archive.root):
        for name in files:
            if name.endswith(".json"):
                path = os.path.join(folder, name)
                fs.pipe(f"{base}/{os.path.relpath(path, archive.root)}", open(path, "rb").read())
    yield f"{base}/catalog.json"
    fs.rm(base, recursive=True)


# ---------------------------------------------------------------- the same searches everywhere


def _footprints(archive) -> dict:
    import pystac

    return {it.id: shape(it.geometry) for it in pystac.Catalog.from_file(archive.catalog).get_items(recursive=True)}


def _zone34_box(archive):
    b33 = transform_bounds(archive.tiles[1][2].bounds, "EPSG:32633", "EPSG:4326")
    b34 = transform_bounds(archive.tiles[2][2].bounds, "EPSG:32634", "EPSG:4326")
    return (b33[2] + 0.002, (b34[1] + b34[3]) / 2, b33[2] + 0.004, (b34[1] + b34[3]) / 2 + 0.001)


def _corner_point(archive):
    """A point inside the first tile's bbox but outside every item's geometry (UTM squares lean in lon/lat)."""
    foot = _footprints(archive)
    union = shapely.union_all(list(foot.values()))
    first = foot[archive.item_ids[0]]
    w, s, e, n = first.bounds
    for fx, fy in ((0.002, 0.002), (0.998, 0.002), (0.002, 0.998), (0.998, 0.998)):
        p = Point(w + fx * (e - w), s + fy * (n - s))
        if not union.intersects(p):
            return p
    pytest.fail("no bbox corner of the first tile lies outside all footprints")


def _centre(archive):
    w, s, e, n = archive.bbox
    return Point((w + e) / 2, (s + n) / 2)


CASES = {
    "all": lambda a: {},
    "bbox_zone34": lambda a: {"bbox": _zone34_box(a)},
    "bbox_touching_some_footprints": lambda a: {"bbox": _centre(a).buffer(0.004).bounds},
    "intersects_point": lambda a: {"intersects": _centre(a).__geo_interface__},
    "intersects_shapely_polygon": lambda a: {"intersects": box(*_zone34_box(a))},
    "intersects_feature": lambda a: {"intersects": {"type": "Feature", "properties": {},
                                                    "geometry": _centre(a).buffer(0.01).__geo_interface__}},
    "datetime_range": lambda a: {"datetime": f"{a.dates[1]:%Y-%m-%d}/{a.dates[2]:%Y-%m-%d}"},
    "datetime_open_end": lambda a: {"datetime": f"{a.dates[3]:%Y-%m-%d}/.."},
    "datetime_open_start": lambda a: {"datetime": f"../{a.dates[1]:%Y-%m-%d}"},
    "datetime_exact_instant_end": lambda a: {"datetime": (None, a.dates[1])},
    "datetime_single_day": lambda a: {"datetime": f"{a.dates[2]:%Y-%m-%d}"},
    "query_cloud_cover": lambda a: {"query": {"eo:cloud_cover": {"lt": 30}}},
    "query_in_tiles": lambda a: {"query": {"s2:mgrs_tile": {"in": [a.tiles[0][0], a.tiles[2][0]]},
                                           "eo:cloud_cover": {"gte": 5}}},
    "filter_text": lambda a: {"filter": "eo:cloud_cover < 30 AND platform = 'sentinel-2a'"},
    "filter_json": lambda a: {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]}},
    "filter_json_string": lambda a: {"filter": '{"op": ">=", "args": [{"property": "eo:cloud_cover"}, 30]}',
                                     "filter_lang": "cql2-json"},
    "filter_not_or": lambda a: {"filter": f"NOT (eo:cloud_cover < 20 OR \"s2:mgrs_tile\" = '{a.tiles[1][0]}')"},
    "filter_between_in": lambda a: {"filter": f"eo:cloud_cover BETWEEN 10 AND 60 AND s2:mgrs_tile IN "
                                              f"('{a.tiles[0][0]}', '{a.tiles[2][0]}')"},
    "filter_like_isnull": lambda a: {"filter": f"id LIKE '%{a.tiles[1][0]}%' AND no_such_property IS NULL"},
    "filter_missing_property_or": lambda a: {"filter": "no_such_property > 3 OR eo:cloud_cover < 10"},
    "filter_casei": lambda a: {"filter": "CASEI(platform) = CASEI('Sentinel-2A') AND eo:cloud_cover > 40"},
    "filter_timestamp": lambda a: {"filter": f"datetime >= TIMESTAMP('{a.dates[2]:%Y-%m-%dT%H:%M:%SZ}')"},
    "filter_t_intersects": lambda a: {"filter": f"T_INTERSECTS(datetime, INTERVAL('{a.dates[1]:%Y-%m-%d}', "
                                                f"'{a.dates[2]:%Y-%m-%d}'))"},
    "filter_s_intersects": lambda a: {"filter": {"op": "s_intersects", "args": [
        {"property": "geometry"}, _centre(a).buffer(0.005).__geo_interface__]}},
    "filter_collection": lambda a: {"filter": f"collection = '{COLLECTION}' AND eo:cloud_cover < 25"},
    "collections": lambda a: {"collections": [COLLECTION, "landsat-c2-l2"]},
    "max_items": lambda a: {"max_items": 4},
    "max_items_descending": lambda a: {"max_items": 5, "sortby": "-datetime"},
    "everything": lambda a: {"collections": COLLECTION, "bbox": a.bbox, "datetime": f"{a.dates[1]:%Y-%m-%d}/..",
                             "query": {"eo:cloud_cover": {"lte": 80}}, "filter": "eo:cloud_cover >= 1",
                             "max_items": 5, "sortby": "-datetime"},
}


def _ids(items) -> list[str]:
    return [it.id for it in items]


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_and_static_catalogs_agree(case, archive, stac_api, web, memory_catalog):
    kwargs = CASES[case](archive)
    local = _ids(geoproc.search(archive.catalog, **kwargs))
    assert local, f"case {case} should match something"
    assert _ids(geoproc.search(stac_api.url, **kwargs)) == local
    assert _ids(geoproc.search(f"{web[0]}/static/catalog.json", **kwargs)) == local
    assert _ids(geoproc.search(memory_catalog, **kwargs)) == local


def test_results_are_right_not_only_equal(archive, stac_api):
    """Spot checks against the archive's own records, through the API."""
    foot = _footprints(archive)
    everything = geoproc.search(stac_api.url)
    assert sorted(_ids(everything)) == sorted(archive.item_ids)
    times = [it.datetime for it in everything]
    assert times == sorted(times)
    assert [it.datetime for it in geoproc.search(stac_api.url, sortby="-datetime")] == times[::-1]
    # the API serves absolute asset hrefs that point at the archive's files
    href = everything[0].assets["B04"].href
    assert os.path.isabs(href) and os.path.exists(href)

    cloudy = {k for k, v in archive.cloud_cover.items() if v >= 30}
    assert set(_ids(geoproc.search(stac_api.url, filter="eo:cloud_cover >= 30"))) == cloudy
    assert 0 < len(cloudy) < len(archive.item_ids)

    # intersects uses the real geometry: the bbox corner point hits no item, its bbox-based test would
    corner = _corner_point(archive)
    assert not any(g.intersects(corner) for g in foot.values())
    with pytest.raises(NoItemsFoundError):
        geoproc.search(stac_api.url, intersects=corner)
    with pytest.raises(NoItemsFoundError):
        geoproc.search(archive.catalog, intersects=corner)
    for catalog in (stac_api.url, archive.catalog):
        with pytest.raises(NoItemsFoundError):
            geoproc.search(catalog, bbox=corner.buffer(1e-4).bounds)
    centre = _centre(archive)
    assert set(_ids(geoproc.search(stac_api.url, intersects=centre))) == {k for k, g in foot.items() if g.intersects(centre)}


def test_pagination_is_followed(archive, stac_api):
    # the API really pages: 5 items and a next link on the first page
    with urllib.request.urlopen(f"{stac_api.url}/search?limit=5") as resp:
        page = json.load(resp)
    assert len(page["features"]) == 5 and any(link["rel"] == "next" for link in page["links"])
    assert page.get("numberMatched", page.get("context", {}).get("matched")) == len(archive.item_ids)
    # and search follows every page, whatever the page size
    for limit in (1, 5, 7):
        items = geoproc.search(stac_api.url, limit=limit)
        assert sorted(_ids(items)) == sorted(archive.item_ids)
    assert _ids(geoproc.search(stac_api.url, limit=2, max_items=5)) == _ids(geoproc.search(archive.catalog, max_items=5))


def test_empty_results_name_the_filters(stac_api):
    with pytest.raises(NoItemsFoundError, match=r"datetime=2031.*widen the area or date range"):
        geoproc.search(stac_api.url, datetime="2031")
    with pytest.raises(NoItemsFoundError, match=r"collections=\['landsat-c2-l2'\]"):
        geoproc.search(stac_api.url, collections="landsat-c2-l2")
    with pytest.raises(NoItemsFoundError, match=r"filter='eo:cloud_cover < 0'"):
        geoproc.search(stac_api.url, filter="eo:cloud_cover < 0")


def test_api_without_sort_filter_or_query(archive, web):
    """An API that advertises item search only: no sortby, query or filter is sent; they are applied here."""
    url, handler = web
    handler.bodies.clear()
    kwargs = {"filter": "eo:cloud_cover < 50", "query": {"eo:cloud_cover": {"gte": 5}}, "max_items": 3,
              "sortby": "-datetime", "limit": 4}
    assert _ids(geoproc.search(f"{url}/fake/ok/", **kwargs)) == _ids(geoproc.search(archive.catalog, **kwargs))
    (body,) = handler.bodies
    assert not {"sortby", "filter", "filter-lang", "query"} & set(body)
    assert body["limit"] == 4


# ---------------------------------------------------------------- errors


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    assert exc.value.__suppress_context__  # no chained requests/pystac-client traceback
    return message


def test_unreachable_api():
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(CatalogError) as exc:
        geoproc.search(url)
    message = _one_line(exc)
    assert url in message and "Connection refused" in message and "check the URL" in message


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/html", r"not JSON \(it starts with '<!DOCTYPE html>"),
        ("/json", r"not a STAC catalog, collection or API landing page"),
        ("/error500", r"answered HTTP 500 \(Internal Server Error\)"),
        ("/no/such/page", r"answered HTTP 404 \(no /no/such/page\)"),
    ],
)
def test_server_that_is_not_stac(web, path, expected):
    with pytest.raises(CatalogError, match=expected) as exc:
        geoproc.search(web[0] + path)
    assert "root of a STAC API" in _one_line(exc)


@pytest.mark.parametrize(
    "mode, error, expected",
    [
        ("500", CatalogError, r"failed the search \(HTTP 500: database connection lost\); the server has a problem"),
        ("400", InvalidArgumentError, r"rejected the search \(HTTP 400: unknown queryable 'cloudy'\); fix the arguments"),
        ("html", CatalogError, r"not a STAC ItemCollection"),
    ],
)
def test_api_that_fails_the_search(web, mode, error, expected):
    with pytest.raises(error, match=expected) as exc:
        geoproc.search(f"{web[0]}/fake/{mode}/", datetime="2024")
    _one_line(exc)


def test_every_error_is_a_geoproc_error(web):
    for url in (f"http://127.0.0.1:{free_port()}", f"{web[0]}/html", f"{web[0]}/fake/500/"):
        with pytest.raises(GeoprocError):
            geoproc.search(url)


def test_static_collection_over_http(archive, web):
    items = geoproc.search(f"{web[0]}/static/{COLLECTION}/collection.json", datetime=archive.dates[0].date())
    assert _ids(items) == archive.item_ids[: len(archive.tiles)]
    assert items[0].assets["B04"].get_absolute_href().startswith(web[0])


def test_fsspec_scheme_without_its_implementation_says_what_to_install():
    """URLs other than http(s) and s3 (which obstore reads) go through fsspec: a missing implementation is named."""
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed: this test would contact Google Cloud Storage")
    with pytest.raises(CatalogError, match=r"gcsfs") as exc:
        geoproc.search("gs://geoproc-no-such-bucket/catalog.json")
    _one_line(exc)


def test_datetime_is_sent_as_an_inclusive_utc_range(web):
    url, handler = web
    handler.bodies.clear()
    geoproc.search(f"{url}/fake/ok/", datetime=("2024-05-08", dt.datetime(2024, 5, 13, 12, tzinfo=dt.timezone.utc)))
    assert handler.bodies[0]["datetime"] == "2024-05-08T00:00:00.000000Z/2024-05-13T12:00:00.000000Z"
