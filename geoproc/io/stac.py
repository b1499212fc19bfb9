"""Find items in a STAC API or a static STAC catalog with one set of arguments.

A STAC API is searched server-side through pystac-client's ``/search``. A
static catalog (a ``catalog.json`` or ``collection.json`` on disk or at a URL)
is opened with pystac-client too, walked, and filtered here with the same
semantics: bbox intersection, datetime interval (inclusive), ``query``
property filters, collections, a cap on the number of items, and sorting by
datetime.
"""

from __future__ import annotations

import calendar
import datetime as dt
import operator
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pystac
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.warnings import FallbackToPystac, NoConformsTo

from ..errors import CatalogError, InvalidArgumentError, NoItemsFoundError
from .items import item_datetime

__all__ = ["search", "parse_datetime_range"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, options: value in options,
}


def search(
    catalog: str | os.PathLike,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | dt.datetime | Sequence | None = None,
    query: Mapping[str, Mapping[str, Any]] | None = None,
    max_items: int | None = None,
    sortby: str = "datetime",
) -> pystac.ItemCollection:
    """Search a STAC API or a static catalog.

    Parameters
    ----------
    catalog
        URL of a STAC API, or path/URL of a static ``catalog.json`` /
        ``collection.json``.
    collections
        Collection id(s) to search in.
    bbox
        ``(west, south, east, north)`` in degrees; items whose bbox intersects it.
    datetime
        A single date or time (``"2024-06-01"``, ``"2024-06"``, ``"2024"``), or a
        range ``"start/end"`` where either end may be open (``".."``), or a
        ``(start, end)`` pair of strings/datetimes/``None``. Partial dates cover
        their whole period; naive times are UTC.
    query
        Property filters in the STAC API ``query`` form, e.g.
        ``{"eo:cloud_cover": {"lt": 20}}``. Operators: eq, neq, lt, lte, gt, gte, in.
    max_items
        Return at most this many items (after sorting).
    sortby
        ``"datetime"`` (ascending) or ``"-datetime"`` (descending).

    Returns
    -------
    pystac.ItemCollection

    Raises
    ------
    CatalogError
        The catalog or API cannot be opened.
    NoItemsFoundError
        Nothing matched; the message repeats the filters.

    Examples
    --------
    >>> items = geoproc.search(  # doctest: +SKIP
    ...     "geoproc-demo/archive/catalog.json",
    ...     bbox=(17.9, 45.9, 18.1, 46.0), datetime="2024-05/2024-07",
    ...     query={"eo:cloud_cover": {"lt": 60}},
    ... )
    """
    if sortby not in ("datetime", "-datetime"):
        raise InvalidArgumentError(f"sortby must be 'datetime' or '-datetime', got {sortby!r}")
    if max_items is not None and max_items <= 0:
        raise InvalidArgumentError(f"max_items must be positive, got {max_items}")
    colls = [collections] if isinstance(collections, str) else list(collections or [])
    interval = parse_datetime_range(datetime)
    for name, filt in (query or {}).items():
        unknown = set(filt) - set(_OPS)
        if unknown:
            raise InvalidArgumentError(
                f"unknown operator(s) {sorted(unknown)} for {name!r}; use {', '.join(_OPS)}"
            )

    client = _open(catalog)
    if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        items = _search_api(client, colls, bbox, interval, query, max_items, sortby)
    else:
        items = _search_static(client, colls, bbox, interval, query)
    items.sort(key=lambda it: (item_datetime(it), it.id), reverse=sortby.startswith("-"))
    if max_items is not None:
        items = items[:max_items]
    if not items:
        raise NoItemsFoundError(
            f"no items in {catalog} match collections={colls or 'any'}, bbox={bbox}, datetime={datetime}, "
            f"query={dict(query or {})}; widen the area or date range, or relax the filters"
        )
    return pystac.ItemCollection(items)


def _open(catalog: str | os.PathLike) -> Client:
    href = os.fspath(catalog)
    if "://" not in href:
        if os.path.isdir(href):
            href = os.path.join(href, "catalog.json")
        if not os.path.exists(href):
            raise CatalogError(f"no STAC catalog at {href}; pass the path of a catalog.json or the URL of a STAC API")
        href = os.path.abspath(href)
    try:
        with warnings.catch_warnings():
            # a static catalog advertises no conformance classes: expected here, we filter client-side
            warnings.simplefilter("ignore", NoConformsTo)
            return Client.open(href)
    except Exception as exc:  # pystac-client raises APIError, requests or JSON errors, or STACTypeError
        raise CatalogError(
            f"cannot open a STAC catalog or API at {href}: {type(exc).__name__}: {exc}. "
            "Check the URL/path and that it serves STAC JSON"
        ) from None


def _search_api(client, colls, bbox, interval, query, max_items, sortby) -> list[pystac.Item]:
    start, end = interval
    dt_arg = None if start is None and end is None else f"{_iso(start) or '..'}/{_iso(end) or '..'}"
    try:
        search = client.search(
            collections=colls or None,
            bbox=bbox,
            datetime=dt_arg,
            query=dict(query) if query else None,
            max_items=max_items,
            sortby=[{"field": "properties.datetime", "direction": "desc" if sortby.startswith("-") else "asc"}],
        )
        return list(search.items())
    except Exception as exc:
        raise CatalogError(f"the STAC API at {client.self_href} failed the search: {type(exc).__name__}: {exc}") from None


def _search_static(client, colls, bbox, interval, query) -> list[pystac.Item]:
    keep = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackToPystac)
        walked = list(client.get_items(recursive=True))
    for item in walked:
        if colls and item.collection_id not in colls:
            continue
        if bbox is not None and not _bbox_hit(item.bbox, bbox):
            continue
        if not _in_interval(item, interval):
            continue
        if query and not _query_hit(item.properties, query):
            continue
        keep.append(item)
    return keep


def _bbox_hit(item_bbox: Sequence[float] | None, bbox: Sequence[float]) -> bool:
    if item_bbox is None:
        return False
    w, s, e, n = item_bbox[0], item_bbox[1], item_bbox[-2], item_bbox[-1]
    return w <= bbox[2] and bbox[0] <= e and s <= bbox[3] and bbox[1] <= n


def _in_interval(item: pystac.Item, interval) -> bool:
    start, end = interval
    if start is None and end is None:
        return True
    props = item.properties
    first = props.get("start_datetime")
    last = props.get("end_datetime")
    lo = dt.datetime.fromisoformat(first.replace("Z", "+00:00")) if first else item_datetime(item)
    hi = dt.datetime.fromisoformat(last.replace("Z", "+00:00")) if last else item_datetime(item)
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


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime_range(value) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Parse a STAC datetime argument into an inclusive ``(start, end)`` in UTC.

    Examples
    --------
    >>> start, end = parse_datetime_range("2024-02")
    >>> start.isoformat(), end.isoformat()
    ('2024-02-01T00:00:00+00:00', '2024-02-29T23:59:59.999999+00:00')
    >>> parse_datetime_range("../2024-01-01")[0] is None
    True
    """
    if value is None:
        return None, None
    if isinstance(value, (dt.datetime, dt.date)):
        return _bound(value, False), _bound(value, True)
    if isinstance(value, str):
        if "/" in value:
            a, b = value.split("/", 1)
            return _bound(a, False), _bound(b, True)
        return _bound(value, False), _bound(value, True)
    if isinstance(value, Sequence) and len(value) == 2:
        return _bound(value[0], False), _bound(value[1], True)
    raise InvalidArgumentError(f"cannot read {value!r} as a datetime or range; use 'YYYY-MM-DD/YYYY-MM-DD'")


def _bound(value, end: bool) -> dt.datetime | None:
    if value is None or value in ("..", ""):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        value = value.isoformat()
    text = str(value).strip()
    try:
        if len(text) == 4:  # YYYY
            y = int(text)
            return _utc(y, 12, 31, end=True) if end else _utc(y, 1, 1)
        if len(text) == 7:  # YYYY-MM
            y, m = int(text[:4]), int(text[5:7])
            return _utc(y, m, calendar.monthrange(y, m)[1], end=True) if end else _utc(y, m, 1)
        if len(text) == 10:  # YYYY-MM-DD
            y, m, d = int(text[:4]), int(text[5:7]), int(text[8:10])
            return _utc(y, m, d, end=end)
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise InvalidArgumentError(
            f"cannot read {value!r} as a date or time; use ISO 8601 such as 2024-06-01 or 2024-06-01T10:00:00Z"
        ) from None


def _utc(y: int, m: int, d: int, end: bool = False) -> dt.datetime:
    if end:
        return dt.datetime(y, m, d, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    return dt.datetime(y, m, d, tzinfo=dt.timezone.utc)
