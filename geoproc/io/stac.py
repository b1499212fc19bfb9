"""Find items in a STAC API or a static STAC catalog with one set of arguments.

A STAC API (an ``http(s)://`` landing page that advertises item search) is
searched server-side through pystac-client's ``/search``, following every
``next`` page. A static catalog (a ``catalog.json`` or ``collection.json`` on
disk, at an ``http(s)://`` URL, on S3 (``s3://``, read with obstore and the
same AWS settings as outputs), or on any other fsspec file system)
is walked and filtered here with the same semantics as the API: the item
*geometry* intersects ``bbox`` / ``intersects``, the datetime interval is
inclusive, ``query`` property filters, a CQL2 ``filter``, collections, a cap on
the number of items, and sorting by datetime. A filter or ``query`` that an API
does not advertise is applied client-side in the same way.

CQL2 filters are read (text or JSON) with the ``cql2`` package and evaluated on
static items by :func:`_cql2_eval`, with SQL's three-valued logic as pgstac
applies it: a comparison with a missing property is unknown, and an item
matches only if the whole filter is true. Spatial operators use shapely.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import pystac
from pystac.stac_io import DefaultStacIO
from pystac_client import Client
from pystac_client.errors import ClientTypeError
from pystac_client.exceptions import APIError
from pystac_client.warnings import PystacClientWarning

import cql2
import shapely.errors
import shapely.geometry

from ..errors import CatalogError, GeoprocError, InvalidArgumentError, MetadataError, NoItemsFoundError, shorten
from ._cql2 import bbox_shape as _bbox_shape
from ._cql2 import evaluate as _cql2_eval
from ._cql2 import item_view as _item_view
from ._datetimes import iso as _iso
from ._datetimes import parse_datetime_range
from .items import check_item_dict, checked, item_datetime, utc_time

__all__ = ["search", "parse_datetime_range"]

#: ``(connect, read)`` timeout in seconds of each HTTP request made while searching.
HTTP_TIMEOUT = (15.0, 120.0)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, options: value in options,
}
# STAC API conformance classes of any 1.x version (pystac-client 0.9 only recognises 1.0.x)
_CONFORMANCE = {
    name: re.compile(rf"^https?://api\.stacspec\.org/v1\.[^/]+/{re.escape(suffix)}$")
    for name, suffix in (("ITEM_SEARCH", "item-search"), ("SORT", "item-search#sort"),
                         ("QUERY", "item-search#query"), ("FILTER", "item-search#filter"))
}


def search(
    catalog: str | os.PathLike,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    intersects: Mapping[str, Any] | Any | None = None,
    datetime: str | dt.datetime | Sequence | None = None,
    query: Mapping[str, Mapping[str, Any]] | None = None,
    filter: str | Mapping[str, Any] | None = None,  # noqa: A002 - the STAC API name
    filter_lang: str | None = None,
    max_items: int | None = None,
    sortby: str = "datetime",
    limit: int | None = None,
) -> pystac.ItemCollection:
    """Search a STAC API or a static catalog.

    Parameters
    ----------
    catalog
        URL of a STAC API, or path/URL of a static ``catalog.json`` /
        ``collection.json`` (a folder holding ``catalog.json`` too). URLs other
        than ``http(s)://``: ``s3://`` is read with the standard AWS environment
        variables or profile (see :mod:`geoproc.io.storage`); others (``gs://``...)
        through fsspec, which needs the implementation for that scheme (``gcsfs``...).
    collections
        Collection id(s) to search in.
    bbox
        ``(west, south, east, north)`` in degrees (or the 6-number 3D form);
        items whose geometry intersects it. ``west > east`` crosses the antimeridian.
    intersects
        A GeoJSON geometry (a dict, or a Feature whose geometry is used), or an
        object with ``__geo_interface__`` such as a shapely geometry, in
        degrees; items whose geometry intersects it. Not together with ``bbox``.
    datetime
        A single date or time (``"2024-06-01"``, ``"2024-06"``, ``"2024"``), or a
        range ``"start/end"`` where either end may be open (``".."``), or a
        ``(start, end)`` pair of strings/datetimes/``None``. Partial dates cover
        their whole period; naive times are UTC; both ends are inclusive.
    query
        Property filters in the STAC API ``query`` form, e.g.
        ``{"eo:cloud_cover": {"lt": 20}}``. Operators: eq, neq, lt, lte, gt, gte, in.
    filter
        A CQL2 filter: cql2-text (``"eo:cloud_cover < 20 AND platform = 'sentinel-2a'"``)
        or cql2-json (a dict). Text is parsed with the ``cql2`` package.
        Comparisons, ``and``/``or``/``not``, ``between``, ``in``, ``like``,
        ``isNull``, ``casei``/``accenti``, spatial ``s_*`` (e.g. ``s_intersects``),
        temporal ``t_intersects``/``t_before``/``t_after``/``t_equals``/``t_disjoint``
        and array ``a_*`` operators are evaluated for static catalogs; an API
        evaluates the filter itself.
    filter_lang
        ``"cql2-text"`` or ``"cql2-json"``; by default text for a string and JSON
        for a dict (a string holding JSON needs ``"cql2-json"``).
    max_items
        Return at most this many items (the first ones after sorting).
    sortby
        ``"datetime"`` (ascending) or ``"-datetime"`` (descending); ties are
        ordered by item id.
    limit
        Items per page requested from a STAC API (the API's default when
        ``None``). Every page is fetched, whatever the page size.

    Returns
    -------
    pystac.ItemCollection

    Raises
    ------
    InvalidArgumentError
        An argument cannot be used, or the API rejected the search as invalid.
    CatalogError
        The catalog or API cannot be reached or opened, does not serve STAC, or
        failed while searching.
    NoItemsFoundError
        Nothing matched; the message repeats the filters.

    Notes
    -----
    An API is asked to sort only when it advertises the sort extension;
    results are sorted here in any case. An API that advertises the filter
    extension gets ``query`` as part of one CQL2 filter (pgstac accepts no
    ``query`` beside a ``filter``, and no ``in`` in ``query``). When the API
    cannot sort, or a ``query``/``filter`` has to be applied here because the
    API does not advertise it, every matching page is fetched before
    ``max_items`` is applied.

    Examples
    --------
    >>> items = geoproc.search(
    ...     "geoproc-demo/archive/catalog.json",
    ...     bbox=(17.9, 45.0, 18.5, 46.0), datetime="2024-05-01/2024-05-20",
    ...     query={"eo:cloud_cover": {"lt": 60}}, sortby="-datetime",
    ... )
    >>> len(items), items[0].datetime >= items[-1].datetime
    (12, True)

    The same arguments for a STAC API (network needed)::

        items = geoproc.search(
            "https://earth-search.aws.element84.com/v1",
            collections="sentinel-2-l2a",
            intersects={"type": "Point", "coordinates": [18.0, 45.5]},
            datetime="2024-06/..",
            filter="eo:cloud_cover < 20 AND s2:nodata_pixel_percentage < 5",
            max_items=10, sortby="-datetime",
        )
    """
    if sortby not in ("datetime", "-datetime"):
        raise InvalidArgumentError(f"sortby must be 'datetime' or '-datetime', got {sortby!r}")
    if max_items is not None and (not isinstance(max_items, int) or max_items <= 0):
        raise InvalidArgumentError(f"max_items must be a positive integer, got {max_items!r}")
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 10000):
        raise InvalidArgumentError(f"limit (items per page) must be an integer from 1 to 10000, got {limit!r}")
    colls = [collections] if isinstance(collections, str) else list(collections or [])
    if bbox is not None and intersects is not None:
        raise InvalidArgumentError("pass either bbox or intersects, not both; a bbox is the polygon of its corners")
    box = _check_bbox(bbox)
    geometry = geojson_geometry(intersects)
    interval = parse_datetime_range(datetime)
    for name, filt in (query or {}).items():
        unknown = set(filt) - set(_OPS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown operator(s) {sorted(unknown)} for {name!r}; use {', '.join(_OPS)}"
            )
    cql = _parse_filter(filter, filter_lang)

    source = _open(catalog)
    if isinstance(source, Client) and _api_capabilities(source)["ITEM_SEARCH"]:
        items = _search_api(source, colls, box, geometry, interval, query, cql, max_items, sortby, limit)
    else:
        items = _search_static(source, colls, box, geometry, interval, query, cql)
    items.sort(key=lambda it: (item_datetime(it), it.id), reverse=sortby.startswith("-"))
    if max_items is not None:
        items = items[:max_items]
    if not items:
        extra = "" if geometry is None else f", intersects={shorten(json.dumps(geometry), 80)}"
        extra += "" if cql is None else f", filter={_cql2_text(cql)!r}"
        raise NoItemsFoundError(
            f"no items in {catalog} match collections={colls or 'any'}, bbox={bbox}, datetime={datetime}, "
            f"query={dict(query or {})}{extra}; widen the area or date range, or relax the filters"
        )
    return pystac.ItemCollection(items)


# ---------------------------------------------------------------- arguments


def _check_bbox(bbox) -> tuple[float, ...] | None:
    if bbox is None:
        return None
    try:
        box = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        box = ()
    if len(box) not in (4, 6):
        raise InvalidArgumentError(f"bbox must be (west, south, east, north) in degrees, got {bbox!r}")
    south, north = (box[1], box[3]) if len(box) == 4 else (box[1], box[4])
    if not -90 <= south <= north <= 90:
        raise InvalidArgumentError(f"bbox {bbox!r} needs -90 <= south <= north <= 90; the order is (west, south, east, north)")
    return box


def geojson_geometry(value, argument: str = "intersects") -> dict | None:
    """A GeoJSON geometry as plain JSON values, from a geometry dict, a Feature or ``__geo_interface__``.

    Validated with shapely; ``argument`` names the parameter in error messages.
    """
    if value is None:
        return None
    geom = getattr(value, "__geo_interface__", value)
    if isinstance(geom, Mapping) and geom.get("type") == "Feature":
        geom = geom.get("geometry")
    if not isinstance(geom, Mapping) or "type" not in geom or geom["type"] in ("Feature", "FeatureCollection"):
        raise InvalidArgumentError(
            f"{argument} must be a GeoJSON geometry (or a Feature, or an object with __geo_interface__), "
            f"got {shorten(repr(value), 80)}; e.g. {{'type': 'Point', 'coordinates': [18.0, 45.5]}}"
        )
    try:  # plain lists, numbers and dicts, as the API gets it (numpy arrays and scalars too)
        geom = json.loads(json.dumps(dict(geom), default=lambda v: v.tolist() if hasattr(v, "tolist") else float(v)))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{argument} holds values that are not numbers: {shorten(repr(value), 80)}") from None
    try:
        shapely.geometry.shape(geom)
    except Exception as exc:
        raise InvalidArgumentError(f"{argument} is not a valid GeoJSON geometry ({shorten(str(exc), 120)})") from None
    return geom


def _parse_filter(value, lang: str | None) -> dict | None:
    """Read a CQL2 filter (text or JSON) into cql2-json."""
    if value is None:
        return None
    lang = lang or ("cql2-text" if isinstance(value, str) else "cql2-json")
    if lang not in ("cql2-text", "cql2-json"):
        raise InvalidArgumentError(f"filter_lang must be 'cql2-text' or 'cql2-json', got {lang!r}")
    if lang == "cql2-json" and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidArgumentError("filter_lang='cql2-json' but the filter is not JSON; pass a dict, or cql2-text") from None
    if lang == "cql2-text" and not isinstance(value, str):
        raise InvalidArgumentError("filter_lang='cql2-text' needs the filter as a string")
    if not isinstance(value, (str, Mapping)):
        raise InvalidArgumentError(f"filter must be cql2-text (a string) or cql2-json (a dict), got {type(value).__name__}")
    try:
        expr = cql2.parse_text(value) if isinstance(value, str) else cql2.parse_json(json.dumps(dict(value)))
        expr.validate()
        return expr.to_json()
    except Exception as exc:
        where = re.search(r"--> \d+:(\d+).*?= (.+)$", str(exc), re.S)  # the parser's "--> line:col ... = expected"
        reason = f"at character {where.group(1)}: {where.group(2)}" if where else str(exc)
        raise InvalidArgumentError(
            f"cannot read the filter as {lang} ({shorten(reason, 200)}); "
            "write it like \"eo:cloud_cover < 20 AND platform = 'sentinel-2a'\" (see the OGC CQL2 standard)"
        ) from None


def _cql2_text(cql: Mapping) -> str:
    try:
        import cql2

        return cql2.Expr(dict(cql)).to_text()
    except Exception:
        return json.dumps(cql)


# ---------------------------------------------------------------- opening


class _StaticIO(DefaultStacIO):
    """Reads local files, ``http(s)://`` (requests, with a timeout), ``s3://`` (obstore) and any other fsspec URL."""

    def read_text_from_href(self, href: str) -> str:
        scheme = urlparse(href).scheme
        if scheme in ("http", "https"):
            import requests

            resp = requests.get(href, timeout=HTTP_TIMEOUT)
            if not resp.ok:
                raise APIError.from_response(resp)
            return resp.text
        if scheme == "s3":  # same connection settings as outputs: AWS environment variables or profile
            from .storage import read_bytes

            return read_bytes(href).decode("utf-8")
        if len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive
            import fsspec

            with fsspec.open(href, "r", encoding="utf-8") as fh:
                return fh.read()
        return super().read_text_from_href(href)


def _open(catalog: str | os.PathLike) -> pystac.Catalog:
    """A pystac-client ``Client`` for an ``http(s)`` URL, else the static catalog or collection."""
    href = os.fspath(catalog)
    scheme = urlparse(href).scheme if "://" in href else ""
    if scheme in ("http", "https"):
        try:
            with warnings.catch_warnings():
                # a static catalog advertises no conformance classes: expected here, we filter client-side
                warnings.simplefilter("ignore", PystacClientWarning)
                return Client.open(href, timeout=HTTP_TIMEOUT)
        except ClientTypeError:
            pass  # not a catalog: maybe a static collection.json; read below for a precise error otherwise
        except Exception as exc:
            raise _open_error(href, exc) from None
    elif scheme in ("", "file"):
        href = href[len("file://"):] if scheme else href
        if os.path.isdir(href):
            href = os.path.join(href, "catalog.json")
        if not os.path.exists(href):
            raise CatalogError(f"no STAC catalog at {href}; pass the path of a catalog.json or the URL of a STAC API")
        href = os.path.abspath(href)
    try:
        root = pystac.read_file(href, stac_io=_StaticIO())
    except Exception as exc:
        raise _open_error(href, exc) from None
    if not isinstance(root, pystac.Catalog):  # a Collection is a Catalog
        raise CatalogError(
            f"{href} holds a STAC {type(root).__name__}, not a catalog or collection; "
            "pass the catalog.json or collection.json that links to the items"
        )
    return root


def _open_error(href: str, exc: Exception) -> GeoprocError:
    """One clear line for whatever opening ``href`` raised."""
    import requests

    what = "check the URL/path and that it is the root of a STAC API or a static catalog.json"
    code = getattr(exc, "status_code", None) if isinstance(exc, APIError) else None
    if isinstance(exc, requests.RequestException) or (isinstance(exc, APIError) and code is None):
        return CatalogError(
            f"cannot reach {href} ({_network_reason(str(exc))}); check the URL and that the server is running "
            "and reachable from here"
        )
    if isinstance(exc, APIError):
        return CatalogError(f"cannot open {href}: the server answered HTTP {code} ({_detail(str(exc))}); {what}")
    if isinstance(exc, json.JSONDecodeError):
        start = shorten(exc.doc.strip(), 40)
        return CatalogError(f"cannot open {href}: the answer is not JSON (it starts with {start!r}); {what}")
    if isinstance(exc, (pystac.STACTypeError, ClientTypeError, KeyError)):
        return CatalogError(f"cannot open {href}: the JSON there is not a STAC catalog, collection or API landing page; {what}")
    if isinstance(exc, FileNotFoundError):
        return CatalogError(f"no STAC catalog at {href}; pass the path of a catalog.json or the URL of a STAC API")
    if isinstance(exc, ImportError):
        return CatalogError(
            f"cannot open {href}: {shorten(str(exc), 120)}; install the fsspec file system for "
            f"{urlparse(href).scheme}:// URLs (gcsfs for gs://, adlfs for az://)"
        )
    return CatalogError(f"cannot open a STAC catalog or API at {href}: {type(exc).__name__}: {shorten(str(exc), 200)}. {what}")


def _network_reason(text: str) -> str:
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(Read timed out|Connection refused|Connection reset by peer|timed out)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()
    return shorten(text, 120)


def _detail(text: str) -> str:
    """The useful part of an error response body: a JSON error message, or the text without markup."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        for key in ("description", "detail", "message", "title", "error", "code"):
            if body.get(key):
                return shorten(body[key] if isinstance(body[key], str) else json.dumps(body[key]), 200)
    return shorten(re.sub(r"<[^>]+>", " ", text), 200) or "empty body"


# ---------------------------------------------------------------- STAC API


def _api_capabilities(client: Client) -> dict[str, bool]:
    """Which STAC API classes the landing page advertises, in any 1.x version."""
    uris = client.get_conforms_to()
    found = {name: any(p.match(u) for u in uris) for name, p in _CONFORMANCE.items()}
    for name, yes in found.items():
        if yes and not client.conforms_to(name):
            client.add_conforms_to(name)  # so pystac-client does not refuse or warn
    return found


def _search_api(client: Client, colls, box, geometry, interval, query, cql, max_items, sortby, limit) -> list[pystac.Item]:
    can = _api_capabilities(client)
    server_query = server_filter = local_query = local_filter = None
    if can["FILTER"] and (query or cql is not None):
        # one CQL2 filter: pgstac refuses query and filter together, and its query lacks "in"
        parts = [p for p in (_query_to_cql2(query) if query else None, cql) if p is not None]
        server_filter = parts[0] if len(parts) == 1 else {"op": "and", "args": parts}
    else:
        server_query, local_query = (dict(query), None) if query and can["QUERY"] else (None, query or None)
        local_filter = cql
    direction = "desc" if sortby.startswith("-") else "asc"
    start, end = interval
    methods = {(link.extra_fields.get("method") or "GET").upper() for link in client.get_links("search")}
    method = "POST" if not methods or "POST" in methods else "GET"
    kwargs = dict(
        method=method,
        collections=colls or None,
        bbox=list(box) if box is not None else None,
        intersects=geometry,
        datetime=None if start is None and end is None else f"{_iso(start) or '..'}/{_iso(end) or '..'}",
        query=server_query,
        filter=server_filter,
        # JSON in a POST body as is; for GET, pystac-client writes cql2-text (with the cql2 package)
        filter_lang="cql2-json" if server_filter is not None and method == "POST" else None,
        sortby=[{"field": "properties.datetime", "direction": direction}, {"field": "id", "direction": direction}]
        if can["SORT"] else None,
        # the first max_items are only the right ones when the API sorts and filters everything itself
        max_items=max_items if can["SORT"] and local_query is None and local_filter is None else None,
        limit=limit,
    )
    url = client.get_self_href() or "the API"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)
            found = list(client.search(**kwargs).items())
    except APIError as exc:
        raise _search_error(url, exc) from None
    except Exception as exc:
        raise CatalogError(
            f"the STAC API at {url} answered the search with something that is not a STAC ItemCollection "
            f"({type(exc).__name__}: {shorten(str(exc), 150)}); check that the URL is the root of a STAC API"
        ) from None
    if local_query:
        found = [it for it in found if _query_hit(it.properties, local_query)]
    if local_filter is not None:
        found = [it for it in found if _cql2_eval(local_filter, _item_view(it, it.collection_id)) is True]
    return found


def _query_to_cql2(query: Mapping[str, Mapping[str, Any]]) -> dict:
    """The ``query`` filters as one cql2-json expression with the same meaning."""
    symbols = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
    parts = [
        {"op": "in", "args": [{"property": name}, list(arg)]} if op == "in"
        else {"op": symbols[op], "args": [{"property": name}, arg]}
        for name, filt in query.items() for op, arg in filt.items()
    ]
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


def _search_error(url: str, exc: APIError) -> GeoprocError:
    code = getattr(exc, "status_code", None)
    if code is None:
        return CatalogError(
            f"lost the STAC API at {url} during the search ({_network_reason(str(exc))}); check that the server "
            "is running and reachable, then retry"
        )
    if code in (400, 422):
        return InvalidArgumentError(
            f"the STAC API at {url} rejected the search (HTTP {code}: {_detail(str(exc))}); fix the arguments "
            "(collections, bbox, intersects, datetime, query, filter) to what this API supports"
        )
    return CatalogError(
        f"the STAC API at {url} failed the search (HTTP {code}: {_detail(str(exc))}); the server has a problem: "
        "retry later or tell its operator"
    )


# ---------------------------------------------------------------- static catalogs


def _walk(node: pystac.Catalog, coll_id: str | None, colls: list[str]) -> Iterator[tuple[pystac.Item, str | None]]:
    """Every item under ``node`` with its collection id, skipping collections not in ``colls``."""
    coll_id = node.id if isinstance(node, pystac.Collection) else coll_id
    for item in _items_of(node):
        yield _valid(item), item.collection_id or coll_id
    for child in node.get_children():
        if colls and isinstance(child, pystac.Collection) and child.id not in colls:
            continue
        yield from _walk(child, coll_id, colls)


def _search_static(root: pystac.Catalog, colls, box, geometry, interval, query, cql) -> list[pystac.Item]:
    region = _region(box, geometry)
    keep = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PystacClientWarning)
            for item, coll_id in _walk(root, None, colls):
                if colls and coll_id not in colls:
                    continue
                if not _in_interval(item, interval):
                    continue
                if query and not _query_hit(item.properties, query):
                    continue
                if region is not None and not _geometry_hit(item, region):
                    continue
                if box is not None and region is None and not _bbox_hit(item.bbox, box):
                    continue
                if cql is not None and _cql2_eval(cql, _item_view(item, coll_id)) is not True:
                    continue
                keep.append(item)
    except GeoprocError:
        raise
    except Exception as exc:
        raise CatalogError(
            f"cannot read all of the static catalog {root.get_self_href()}: {type(exc).__name__}: "
            f"{shorten(str(exc), 200)}; check that every link in it points to a readable STAC file"
        ) from None
    return keep


def _items_of(node: pystac.Catalog) -> list[pystac.Item]:
    """The items ``node`` links to; an item file pystac cannot read is a :class:`MetadataError` naming the
    file and, where the JSON shows it, the item and the field."""
    try:
        return list(node.get_items(recursive=False))  # pystac-client's Client defaults to recursive
    except Exception as exc:
        cause = exc
    for link in node.get_links(pystac.RelType.ITEM):
        href = link.get_absolute_href() or link.href
        if link.is_resolved():
            continue
        try:
            text = _StaticIO().read_text(href)
        except Exception:
            continue  # a link to nothing: the error below says so
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise MetadataError(f"the item file {href} is not JSON ({shorten(str(exc), 80)}); fix or remove it, or "
                                f"remove its link from {node.get_self_href()}") from None
        if not isinstance(doc, Mapping):
            raise MetadataError(f"the item file {href} holds a JSON {type(doc).__name__}, not a STAC Item object; "
                                f"fix it, or remove its link from {node.get_self_href()}")
        try:
            check_item_dict(doc)
        except MetadataError as exc:
            raise MetadataError(f"{href}: {exc}") from None
        try:
            pystac.Item.from_dict(doc)
        except Exception as exc:
            raise MetadataError(
                f"the item file {href} is not a STAC Item pystac can read ({type(exc).__name__}: "
                f"{shorten(str(exc), 120)}); check its type, stac_version, properties and assets"
            ) from None
    raise CatalogError(
        f"cannot read the items of {node.get_self_href()}: {type(cause).__name__}: {shorten(str(cause), 200)}; "
        "check that every item link in it points to a readable STAC Item file"
    )


def _valid(item: pystac.Item) -> pystac.Item:
    """``item`` once the fields a search reads are of the right type (else a :class:`MetadataError` naming them)."""
    try:
        return checked(item, footprint=True)
    except MetadataError as exc:
        raise MetadataError(f"{item.get_self_href() or 'a static catalog'}: {exc}") from None


def _region(box, geometry):
    """The search area as a shapely geometry, or ``None`` (no spatial filter)."""
    if box is None and geometry is None:
        return None
    if geometry is not None:
        return shapely.geometry.shape(geometry)
    return _bbox_shape(box)


def _geometry_hit(item: pystac.Item, region) -> bool:
    try:
        if item.geometry is not None:
            return bool(region.intersects(shapely.geometry.shape(item.geometry)))
        return item.bbox is not None and bool(region.intersects(_bbox_shape(item.bbox)))
    except (shapely.errors.ShapelyError, ValueError) as exc:  # a self-intersecting polygon, say
        field = "geometry" if item.geometry is not None else "bbox"
        raise MetadataError(
            f"item {item.id!r}: field {field} cannot be intersected with the search area ({shorten(str(exc), 120)}); "
            "fix the item's metadata (a valid GeoJSON polygon) or remove the item from the catalog"
        ) from None


def _bbox_hit(item_bbox: Sequence[float] | None, bbox: Sequence[float]) -> bool:
    if item_bbox is None:
        return False
    w, s, e, n = item_bbox[0], item_bbox[1], item_bbox[-3 if len(item_bbox) == 6 else 2], item_bbox[-1]
    qw, qs, qe, qn = (bbox[0], bbox[1], bbox[2], bbox[3]) if len(bbox) == 4 else (bbox[0], bbox[1], bbox[3], bbox[4])
    return w <= qe and qw <= e and s <= qn and qs <= n


def _in_interval(item: pystac.Item, interval) -> bool:
    start, end = interval
    if start is None and end is None:
        return True
    props = item.properties
    first = props.get("start_datetime")
    last = props.get("end_datetime")
    lo = utc_time(first) if first else item_datetime(item)
    hi = utc_time(last) if last else item_datetime(item)
    return (start is None or hi >= start) and (end is None or lo <= end)


def _query_hit(props: Mapping[str, Any], query: Mapping[str, Mapping[str, Any]]) -> bool:
    for name, filt in query.items():
        if name not in props:
            return False
        for op, arg in filt.items():
            try:
                if not _OPS[op](props[name], arg):
                    return False
            except TypeError:
                return False
    return True
