"""Typed errors. Every message names the problem and says what to do next.

All errors raised on purpose by geoproc derive from :class:`GeoprocError`, so a
caller (and the CLI) can tell a user mistake or a data problem from a bug.
"""

from __future__ import annotations

__all__ = [
    "GeoprocError",
    "CatalogError",
    "NoItemsFoundError",
    "NoOverlapError",
    "UnknownBandError",
    "BandNotFoundError",
    "MetadataError",
    "AssetReadError",
    "InvalidArgumentError",
    "OutputError",
    "GeoprocWarning",
    "listing",
    "shorten",
]


class GeoprocError(Exception):
    """Base class of every error geoproc raises on purpose."""


class CatalogError(GeoprocError):
    """A STAC catalog or API could not be opened or does not behave like one."""


class NoItemsFoundError(GeoprocError):
    """A search matched no item."""


class NoOverlapError(GeoprocError):
    """The requested area does not overlap any of the items."""


class UnknownBandError(GeoprocError):
    """A band name matches no asset key, ``eo:bands`` name or common name."""


class BandNotFoundError(UnknownBandError):
    """A band name matches nothing in one item (other items of a load may still have it)."""


class MetadataError(GeoprocError):
    """An item lacks metadata needed to place its pixels (CRS, transform, shape)."""


class AssetReadError(GeoprocError):
    """An asset could not be read; the message names the item, asset key and href."""


class InvalidArgumentError(GeoprocError, ValueError):
    """An argument has a value geoproc cannot use."""


class OutputError(GeoprocError):
    """The output location cannot be written, or holds something in the way."""


class GeoprocWarning(UserWarning):
    """Something a user should know about a result that is still correct (a band decoded, a band missing)."""


def listing(names, n: int = 3) -> str:
    """The first ``n`` of ``names`` joined for a message, and how many more there are.

    Examples
    --------
    >>> listing(["a", "b", "c", "d", "e"])
    'a, b, c and 2 more'
    """
    names = list(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def shorten(text: str, n: int) -> str:
    """``text`` on one line, cut to ``n`` characters, for quoting in a message."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."
