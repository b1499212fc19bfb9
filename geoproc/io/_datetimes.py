"""STAC datetime arguments: single dates, partial dates and open-ended ranges, as inclusive UTC intervals."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence

from ..errors import InvalidArgumentError

__all__ = ["parse_datetime_range", "bound", "iso"]


def iso(when: dt.datetime | None) -> str | None:
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
        return bound(value, False), bound(value, True)
    if isinstance(value, str):
        if "/" in value:
            a, b = value.split("/", 1)
            return bound(a, False), bound(b, True)
        return bound(value, False), bound(value, True)
    if isinstance(value, Sequence) and len(value) == 2:
        return bound(value[0], False), bound(value[1], True)
    raise InvalidArgumentError(f"cannot read {value!r} as a datetime or range; use 'YYYY-MM-DD/YYYY-MM-DD'")


def bound(value, end: bool) -> dt.datetime | None:
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
