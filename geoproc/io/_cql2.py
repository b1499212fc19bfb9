"""CQL2 (cql2-json) evaluated on STAC items of static catalogs, with pgstac's semantics.

SQL's three-valued logic: ``None`` is NULL/unknown, a comparison with a missing
property is unknown, and an item matches only where the filter is ``True``.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
import unicodedata
from collections.abc import Callable, Mapping

import pystac
import shapely.geometry

from ..errors import InvalidArgumentError, shorten
from ._datetimes import bound

__all__ = ["evaluate", "item_view", "bbox_shape"]


_TEMPORAL = frozenset({"datetime", "start_datetime", "end_datetime", "created", "updated"})
_COMPARE = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_SPATIAL = {f"s_{p}": p for p in ("intersects", "equals", "disjoint", "touches", "within", "overlaps", "crosses", "contains")}
_NEG_INF = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_POS_INF = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
_TIME_OPS: dict[str, Callable[[dt.datetime, dt.datetime, dt.datetime, dt.datetime], bool]] = {
    "t_intersects": lambda s1, e1, s2, e2: s1 <= e2 and s2 <= e1,
    "t_disjoint": lambda s1, e1, s2, e2: e1 < s2 or e2 < s1,
    "t_before": lambda s1, e1, s2, e2: e1 < s2,
    "t_after": lambda s1, e1, s2, e2: s1 > e2,
    "t_equals": lambda s1, e1, s2, e2: s1 == s2 and e1 == e2,
}
_ARRAY_OPS: dict[str, Callable[[list, list], bool]] = {
    "a_equals": lambda a, b: sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)),
    "a_contains": lambda a, b: all(v in a for v in b),
    "a_containedby": lambda a, b: all(v in b for v in a),
    "a_overlaps": lambda a, b: any(v in b for v in a),
}


def item_view(item: pystac.Item, coll_id: str | None) -> dict:
    return {"id": item.id, "collection": coll_id, "geometry": item.geometry, "properties": item.properties}


def evaluate(node, item: Mapping):
    """Value of cql2-json ``node`` for ``item``; ``None`` is SQL's NULL/unknown."""
    if isinstance(node, list):
        return [evaluate(v, item) for v in node]
    if not isinstance(node, Mapping):
        return node
    if "op" in node:
        return _cql2_op(str(node["op"]).lower(), node.get("args", []), item)
    if "property" in node:
        return _cql2_property(item, node["property"])
    if "timestamp" in node or "date" in node:
        return bound(node.get("timestamp") or node.get("date"), False)
    if "interval" in node:
        start, end = (evaluate(v, item) for v in node["interval"])
        # a date as an end covers its whole day
        return tuple(None if v in (None, "..") else v if isinstance(v, dt.datetime) else bound(v, i == 1)
                     for i, v in enumerate((start, end)))
    if "bbox" in node:
        return bbox_shape(node["bbox"])
    if "type" in node:
        return shapely.geometry.shape(node)
    raise InvalidArgumentError(f"cannot evaluate the CQL2 expression {shorten(json.dumps(node), 100)}")


def _cql2_property(item: Mapping, name: str):
    name = name[len("properties."):] if name.startswith("properties.") else name
    if name in ("id", "collection"):
        return item[name]
    if name == "geometry":
        return None if item["geometry"] is None else shapely.geometry.shape(item["geometry"])
    value = item["properties"].get(name)
    return _as_time(value) if name in _TEMPORAL and isinstance(value, str) else value


def _as_time(value):
    return value if isinstance(value, dt.datetime) or value is None else bound(value, False)


def _cql2_op(op: str, args: list, item: Mapping):
    if op in ("and", "or"):  # three-valued: false (and) / true (or) wins over unknown
        decisive = op == "or"
        result: bool | None = not decisive
        for arg in args:
            value = evaluate(arg, item)
            if value is decisive:
                return decisive
            if value is None:
                result = None
        return result
    values = [evaluate(arg, item) for arg in args]
    if op == "not":
        return None if values[0] is None else not values[0]
    if op == "isnull":
        return values[0] is None
    if op in ("casei", "accenti"):
        v = values[0]
        if v is None:
            return None
        return str(v).upper() if op == "casei" else "".join(
            c for c in unicodedata.normalize("NFD", str(v)) if not unicodedata.combining(c))
    if not values or values[0] is None or (op != "in" and any(v is None for v in values[1:])):
        return None
    try:
        if op in _COMPARE:
            a, b = _comparable(*values)
            return _COMPARE[op](a, b)
        if op == "between":
            v, lo = _comparable(values[0], values[1])
            v, hi = _comparable(v, values[2])
            return lo <= v <= hi
        if op == "in":
            return any(a == b for a, b in (_comparable(values[0], option) for option in values[1]))
        if op == "like":
            return re.fullmatch(_like_regex(str(values[1])), str(values[0]), re.S) is not None
        if op in _ARITH:
            return _ARITH[op](values[0], values[1])
        if op in _SPATIAL:
            return bool(getattr(values[0], _SPATIAL[op])(values[1]))
        if op in _TIME_OPS:
            (s1, e1), (s2, e2) = _span(values[0]), _span(values[1])
            return _TIME_OPS[op](s1, e1, s2, e2)
        if op in _ARRAY_OPS:
            return _ARRAY_OPS[op](list(values[0]), list(values[1]))
    except (TypeError, ValueError, AttributeError, ZeroDivisionError):
        return None  # the database would not compare these either: unknown, so no match
    raise InvalidArgumentError(
        f"the CQL2 operator {op!r} cannot be applied to a static catalog; use comparisons, and/or/not, between, in, "
        "like, isNull, casei/accenti, s_* (e.g. s_intersects), t_intersects/t_before/t_after/t_equals/t_disjoint "
        "or a_* operators"
    )


def _comparable(a, b):
    """Make a datetime comparable with a date or time given as text."""
    if isinstance(a, dt.datetime) and isinstance(b, str):
        return a, bound(b, False)
    if isinstance(b, dt.datetime) and isinstance(a, str):
        return bound(a, False), b
    return a, b


def _span(value) -> tuple[dt.datetime, dt.datetime]:
    if isinstance(value, tuple):
        return value[0] or _NEG_INF, value[1] or _POS_INF
    when = _as_time(value)
    return when, when


def _like_regex(pattern: str) -> str:
    out, chars = [], iter(pattern)
    for c in chars:
        if c == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
    return "".join(out)


def bbox_shape(box):
    """A lon/lat bbox (4 or 6 numbers) as a shapely geometry, split where it crosses the antimeridian."""
    w, s, e, n = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
    if w > e:  # crosses the antimeridian
        return shapely.geometry.MultiPolygon([shapely.geometry.box(w, s, 180.0, n), shapely.geometry.box(-180.0, s, e, n)])
    return shapely.geometry.box(w, s, e, n)
