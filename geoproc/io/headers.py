"""What STAC metadata leaves out, read from file headers: few, in parallel, retried, cached.

Two things can be missing: the grid of an asset whose item has no ``proj:``
fields (one header per asset, read in parallel), and a band's data type when
``raster:bands`` has no ``data_type`` (one header per band and collection, kept
for the life of the process). Both go through the reader, so they get the same
GDAL settings, URL signing and retries as pixel reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import AssetReadError, MetadataError
from .items import AssetSpec
from .reader import Header
from .report import record_failure

__all__ = ["place_specs", "band_dtype", "HEADER_THREADS"]

#: Headers read at once: latency-bound HTTP range requests, not CPU.
HEADER_THREADS = 16

_DTYPES: OrderedDict[tuple, np.dtype] = OrderedDict()
_LOCK = threading.Lock()
_DTYPES_MAX = 1024


def _header_of(reader, spec: AssetSpec) -> Header:
    header = getattr(reader, "header", None)
    if header is None:
        raise MetadataError(
            f"item {spec.item_id!r} asset {spec.key!r} lacks metadata that only its file header has, and the "
            f"reader {type(reader).__name__} cannot read headers; add the metadata to the items"
        )
    return header(spec)


def place_specs(specs: Sequence[AssetSpec], reader, on_error: str = "raise",
                report_token: str | None = None) -> list[AssetSpec | None]:
    """``specs`` with the grid of every unplaced one read from its file (once per file and band, in parallel).

    With ``on_error="fill"`` a file that cannot be opened gives ``None`` (the item is left out of that
    band) and is recorded in the load's read report; otherwise the error is raised.

    Raises
    ------
    AssetReadError
        Naming the item, asset and href of a file that cannot be opened.
    """
    todo = {(s.href, s.band_index): s for s in specs if not s.placed}
    if not todo:
        return list(specs)

    def header(s: AssetSpec) -> Header | AssetReadError:
        try:
            return _header_of(reader, s)
        except AssetReadError as exc:
            return exc

    with ThreadPoolExecutor(min(HEADER_THREADS, len(todo))) as pool:
        headers = dict(zip(todo, pool.map(header, todo.values())))
    out: list[AssetSpec | None] = []
    for s in specs:
        if s.placed:
            out.append(s)
            continue
        h = headers[(s.href, s.band_index)]
        if isinstance(h, AssetReadError):
            if on_error != "fill":
                raise h
            record_failure(report_token or "", {"item_id": s.item_id, "asset": s.key, "href": s.href, "error": str(h)})
            out.append(None)
            continue
        crs = h.crs or s.crs
        if crs is None:
            raise AssetReadError(
                f"item {s.item_id!r} asset {s.key!r} at {s.href}: neither the file nor the item gives a CRS; "
                "add proj:code to the item"
            )
        out.append(s.with_grid(crs, h.transform, h.shape))
    return out


def _dtype_key(spec: AssetSpec) -> tuple:
    """What a remembered data type is kept under: the collection's band, or (without a collection id,
    when nothing says two items share a layout) the file itself."""
    if spec.collection:
        return ("collection", spec.collection, spec.key, spec.band_index)
    return ("file", spec.href, spec.band_index)


def band_dtype(specs: Sequence[AssetSpec], reader) -> np.dtype | None:
    """The data type of a band whose metadata does not give one: one header per band and collection.

    ``specs`` are the band's assets of one collection (or one file, for items without a collection
    id). Remembered in this process, so a second load of the same collection opens nothing. When a
    file cannot be opened the next is tried; ``None`` when none can.
    """
    present = [s for s in specs if s is not None]
    key = _dtype_key(present[0])
    with _LOCK:
        if key in _DTYPES:
            _DTYPES.move_to_end(key)
            return _DTYPES[key]
    for spec in present[:3]:
        try:
            dtype = np.dtype(_header_of(reader, spec).dtype)
        except AssetReadError:
            continue
        with _LOCK:
            _DTYPES[key] = dtype
            while len(_DTYPES) > _DTYPES_MAX:
                _DTYPES.popitem(last=False)
        return dtype
    return None


def known_dtype(specs: Sequence[AssetSpec]) -> np.dtype | None:
    """The data type remembered for this band's collection (or file), if a header was read before."""
    first = next(s for s in specs if s is not None)
    with _LOCK:
        return _DTYPES.get(_dtype_key(first))
