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


def place_specs(specs: Sequence[AssetSpec], reader) -> list[AssetSpec]:
    """``specs`` with the grid of every unplaced one read from its file (once per file and band, in parallel).

    Raises
    ------
    AssetReadError
        Naming the item, asset and href of a file that cannot be opened.
    """
    todo = {(s.href, s.band_index): s for s in specs if not s.placed}
    if not todo:
        return list(specs)
    with ThreadPoolExecutor(min(HEADER_THREADS, len(todo))) as pool:
        headers = dict(zip(todo, pool.map(lambda s: _header_of(reader, s), todo.values())))
    out = []
    for s in specs:
        if s.placed:
            out.append(s)
            continue
        h = headers[(s.href, s.band_index)]
        crs = h.crs or s.crs
        if crs is None:
            raise AssetReadError(
                f"item {s.item_id!r} asset {s.key!r} at {s.href}: neither the file nor the item gives a CRS; "
                "add proj:code to the item"
            )
        out.append(s.with_grid(crs, h.transform, h.shape))
    return out


def band_dtype(specs: Sequence[AssetSpec], reader) -> np.dtype:
    """The data type of a band whose metadata does not give one: one header per band and collection.

    Remembered per ``(collection, asset key, band index)`` in this process, so a
    second load of the same collection opens nothing.
    """
    first = next(s for s in specs if s is not None)
    key = (first.collection, first.key, first.band_index)
    with _LOCK:
        if key in _DTYPES:
            _DTYPES.move_to_end(key)
            return _DTYPES[key]
    dtype = np.dtype(_header_of(reader, first).dtype)
    with _LOCK:
        _DTYPES[key] = dtype
        while len(_DTYPES) > _DTYPES_MAX:
            _DTYPES.popitem(last=False)
    return dtype


def known_dtype(specs: Sequence[AssetSpec]) -> np.dtype | None:
    """The data type remembered for this band's collection, if a header was read before."""
    first = next(s for s in specs if s is not None)
    with _LOCK:
        return _DTYPES.get((first.collection, first.key, first.band_index))
