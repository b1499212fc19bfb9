"""Which asset (and band within it) a requested band name means in a STAC Item. Pure metadata.

The rules, in order (each a test in ``tests/io/test_bands.py`` on real items):

1. **Asset key.** A name equal to an asset key (exactly, then ignoring case)
   is that asset's first band. ``key.N`` (``visual.2``, ``FireMask.2``) is band
   N of asset ``key``, as odc-stac reads it.
2. **Band name or common name** (``eo:bands`` / STAC 1.1 ``bands``: ``name``,
   ``common_name``), looked up in data assets only: assets whose roles mark
   them as previews (``overview``, ``thumbnail``, ``visual``) never match a
   name. A band found in a single-band asset wins over the same name inside a
   multi-band one (Planetary Computer's ``visual`` also lists ``red``). Several
   assets holding the *same* band (Earth Search's ``red`` COG and ``red-jp2``)
   resolve to the GeoTIFF; several *different* bands under one name (Earth
   Search c1 ``rededge`` = B05, B06, B07) are an error listing the candidates
   with their wavelengths.
3. **Aliases** (:data:`BAND_ALIASES`: ``nir`` -> ``nir08`` on Landsat), then a
   search by **centre wavelength** in the name's window
   (:data:`WAVELENGTH_WINDOWS`). An alias never crosses to a band of another
   centre wavelength: ``nir08`` (865 nm) is not Sentinel-2 B08 (842 nm), and on
   the Planetary Computer, where B8A is labelled ``rededge``, ``nir08`` finds B8A
   by its wavelength.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pystac

from ..errors import BandNotFoundError, MetadataError, UnknownBandError, shorten

__all__ = ["BAND_ALIASES", "WAVELENGTH_WINDOWS", "PREVIEW_ROLES", "CATEGORICAL_NAMES", "resolve_band",
           "available_bands", "band_entries", "is_categorical"]

#: Names tried, in order, when a requested band is not found under its own name.
#: ``nir`` is ``nir08`` on Landsat 8/9; the short SWIR names are used by some catalogs.
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "nir": ("nir08", "nir08_1"),
    "nir08": ("nir",),
    "swir16": ("swir1",),
    "swir22": ("swir2",),
    "swir1": ("swir16",),
    "swir2": ("swir22",),
    "scl": ("SCL",),
    "qa_pixel": ("QA_PIXEL", "qa"),
}

#: Centre wavelengths (micrometres) a band found through an alias or by wavelength must have.
#: From the STAC eo extension's common-name table, narrowed where instruments separate two bands
#: under neighbouring names: ``nir08`` is the narrow 865 nm band (Landsat 8/9 OLI B5 0.851-0.879,
#: Sentinel-2 B8A 0.855-0.875), not Sentinel-2's broad B08 (centre 0.842).
WAVELENGTH_WINDOWS: dict[str, tuple[float, float]] = {
    "coastal": (0.40, 0.45),
    "blue": (0.45, 0.53),
    "green": (0.51, 0.60),
    "red": (0.62, 0.69),
    "rededge": (0.69, 0.79),
    "nir": (0.75, 1.00),
    "nir08": (0.845, 0.885),
    "nir09": (0.885, 1.05),
    "cirrus": (1.35, 1.40),
    "swir16": (1.55, 1.75),
    "swir1": (1.55, 1.75),
    "swir22": (2.08, 2.35),
    "swir2": (2.08, 2.35),
    "lwir11": (10.5, 11.5),
    "lwir12": (11.5, 12.5),
}

#: Asset roles of renderings and previews: never matched by a band name (only by their asset key).
PREVIEW_ROLES = frozenset({"overview", "thumbnail", "visual"})

#: Bands that hold classes or bit flags: always resampled with nearest neighbour
#: unless a resampling is given for the band by name, and never scaled.
CATEGORICAL_NAMES = frozenset({"scl", "qa", "qa_pixel", "qa_radsat", "fmask", "mask", "cloud", "classification"})


def band_entries(asset: pystac.Asset, item: pystac.Item, key: str | None = None) -> list[dict]:
    """Per-band metadata of an asset: ``eo:bands`` / STAC 1.1 ``bands``, merged with ``raster:bands``.

    STAC 0.9 and 1.0.0-beta items list bands once on the item (``properties["eo:bands"]``) and
    refer to them from assets by index (``"eo:bands": [3]``); those indices are resolved here.

    Raises
    ------
    MetadataError
        When the lists are not lists of objects (or of valid indices).
    """
    d = asset.extra_fields
    eo = d.get("eo:bands") or d.get("bands") or []
    raster = d.get("raster:bands") or []
    key = key if key is not None else _key_of(asset, item)
    if not isinstance(eo, list) or not isinstance(raster, list):
        raise MetadataError(f"item {item.id!r} asset {key!r}: eo:bands/raster:bands must be lists, "
                            f"got {type(eo).__name__}/{type(raster).__name__}; fix the item's metadata")
    eo = [_indexed_band(entry, item, key) for entry in eo]
    merged = []
    for i in range(max(len(eo), len(raster), 1)):
        entry: dict = {}
        if i < len(raster):
            if not isinstance(raster[i], Mapping):
                raise MetadataError(f"item {item.id!r} asset {key!r}: raster:bands[{i}] is {raster[i]!r}, not an object")
            entry.update(raster[i])
        if i < len(eo):
            entry.update(eo[i])
        merged.append(entry)
    return merged


def _indexed_band(entry, item: pystac.Item, key: str) -> Mapping:
    if isinstance(entry, Mapping):
        return entry
    if isinstance(entry, int) and not isinstance(entry, bool):
        table = item.properties.get("eo:bands")
        if isinstance(table, list) and 0 <= entry < len(table) and isinstance(table[entry], Mapping):
            return table[entry]
        raise MetadataError(
            f"item {item.id!r} asset {key!r}: eo:bands refers to band index {entry}, but the item's "
            f"properties.eo:bands has {len(table) if isinstance(table, list) else 'no'} entries; fix the item's metadata"
        )
    raise MetadataError(f"item {item.id!r} asset {key!r}: an eo:bands entry is {entry!r}, neither an object nor an index")


def _key_of(asset: pystac.Asset, item: pystac.Item) -> str:
    for k, a in item.assets.items():
        if a is asset:
            return k
    return "?"


def _names(entry: Mapping) -> set[str]:
    """The names a band answers to; a name that is not a string is no name (it cannot be asked for)."""
    names = (entry.get("name"), entry.get("common_name"), entry.get("eo:common_name"))
    return {n.lower() for n in names if isinstance(n, str) and n}


def _name(entry: Mapping) -> str | None:
    name = entry.get("name")
    return name if isinstance(name, str) and name else None


def _wavelength(entry: Mapping) -> float | None:
    """The centre wavelength in micrometres; ``None`` when absent or not a finite number."""
    w = entry.get("center_wavelength", entry.get("eo:center_wavelength"))
    if isinstance(w, bool) or not isinstance(w, (int, float, str)):
        return None
    try:
        w = float(w)
    except (ValueError, OverflowError):
        return None
    return w if math.isfinite(w) else None


def _media_type(asset: pystac.Asset, item: pystac.Item | None = None) -> str:
    """The asset's ``type`` in lower case ("" when absent); a non-string is a :class:`MetadataError`."""
    media = asset.media_type
    if media is None:
        return ""
    if not isinstance(media, str):
        raise MetadataError(_asset_field_error(asset, item, "type", media, "a media type string such as "
                                                "'image/tiff; application=geotiff'"))
    return media.lower()


def _roles(asset: pystac.Asset, item: pystac.Item | None = None) -> set[str]:
    """The asset's ``roles`` in lower case; anything but a list of strings is a :class:`MetadataError`."""
    roles = asset.roles
    if roles is None:
        return set()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise MetadataError(_asset_field_error(asset, item, "roles", roles, "a list of strings such as ['data']"))
    return {r.lower() for r in roles}


def _asset_field_error(asset: pystac.Asset, item: pystac.Item | None, field: str, value, expected: str) -> str:
    item = item if item is not None else asset.owner
    item_id = getattr(item, "id", "?")
    key = _key_of(asset, item) if isinstance(item, pystac.Item) else "?"
    return (f"item {item_id!r} asset {key!r}: field {field} is {shorten(repr(value), 60)}, not {expected}; fix the "
            "item's metadata (or ask for the band by its asset key, which does not look at other assets)")


def _is_raster(asset: pystac.Asset, item: pystac.Item | None = None) -> bool:
    media = _media_type(asset, item)
    return not media or "image" in media or "tiff" in media or "jp2" in media or "netcdf" in media


def _is_preview(asset: pystac.Asset, item: pystac.Item | None = None) -> bool:
    return bool(PREVIEW_ROLES & _roles(asset, item))


Band = tuple[str, int, dict, int, frozenset]  # (asset key, 1-based band index, merged entry, bands in asset, names)


def _data_bands(item: pystac.Item) -> list[Band]:
    """Every band of the item's data assets (not previews, not metadata), in the item's order."""
    found = []
    for key, asset in item.assets.items():
        if _is_preview(asset, item) or not _is_raster(asset, item):
            continue
        entries = band_entries(asset, item, key)
        found += [(key, i + 1, entry, len(entries), frozenset(_names(entry))) for i, entry in enumerate(entries)]
    return found


def _named(bands: list[Band], name: str) -> list[Band]:
    lower = name.lower()
    return [b for b in bands if lower in b[4]]


def _in_range(bands: list[Band], window: tuple[float, float]) -> list[Band]:
    lo, hi = window
    return [b for b in bands if (w := _wavelength(b[2])) is not None and lo <= w <= hi]


def _in_window(entry: Mapping, name: str) -> bool:
    window = WAVELENGTH_WINDOWS.get(name.lower())
    w = _wavelength(entry)
    return window is None or w is None or window[0] <= w <= window[1]


def _pick(item: pystac.Item, requested: str, found: list[Band]) -> tuple[str, int] | None:
    """One band out of the candidates, or an error when they are different bands."""
    if not found:
        return None
    single = [c for c in found if c[3] == 1]
    found = single or found
    names = {_name(c[2]) or c[0] for c in found}
    wavelengths = {_wavelength(c[2]) for c in found}
    # one band stored twice carries one name (Earth Search's red and red-jp2: B04), or, named
    # differently, one known centre wavelength; anything else is several bands under one name
    if len(names) > 1 and (None in wavelengths or len(wavelengths) != 1):
        listed = ", ".join(f"{k}" + (f".{i}" if n > 1 else "") + f" ({_describe(e)})" for k, i, e, n, _ in found)
        raise UnknownBandError(
            f"band {requested!r} is ambiguous in item {item.id!r}: it names {len(found)} different bands: {listed}. "
            "Ask for one of them by asset key"
        )
    # one band, stored several times (a COG and a JPEG2000 copy): take the GeoTIFF
    tiff = [c for c in found if "tiff" in _media_type(item.assets[c[0]], item)]
    key, index = (tiff or found)[0][:2]
    return key, index


def _describe(entry: Mapping) -> str:
    w = _wavelength(entry)
    name = _name(entry) or next(iter(sorted(_names(entry))), "?")
    return f"{name}, {w * 1000:.0f} nm" if w is not None else str(name)


def _by_key(item: pystac.Item, name: str) -> tuple[str, int] | None:
    assets = item.assets
    if name in assets:
        return name, 1
    lower = name.lower()
    for key in assets:
        if key.lower() == lower:
            return key, 1
    stem, dot, number = name.rpartition(".")
    if dot and number.isdigit() and int(number) >= 1:
        found = _by_key(item, stem)
        if found:
            key = found[0]
            count = len(band_entries(assets[key], item, key))
            if count > 1 and int(number) > count:
                raise UnknownBandError(
                    f"band {name!r}: asset {key!r} of item {item.id!r} has {count} bands, so there is no band {number}"
                )
            return key, int(number)
    return None


def resolve_band(item: pystac.Item, name: str, memo: dict | None = None) -> tuple[str, int]:
    """Find the asset key and 1-based band index holding band ``name`` in ``item``.

    See the module documentation for the rules. ``memo``: a dict a caller
    resolving several bands of the same items passes each time, so that each
    item's bands are listed once.

    Raises
    ------
    UnknownBandError
        Naming the band and listing what the item offers, or, when a name is
        ambiguous, the candidates with their centre wavelengths.

    Examples
    --------
    >>> import datetime as dt
    >>> item = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> item.add_asset("B04", pystac.Asset("b04.tif", extra_fields={"eo:bands": [{"name": "B04", "common_name": "red"}]}))
    >>> item.add_asset("visual", pystac.Asset("tci.tif", roles=["visual"],
    ...     extra_fields={"eo:bands": [{"common_name": c} for c in ("red", "green", "blue")]}))
    >>> resolve_band(item, "red")
    ('B04', 1)
    >>> resolve_band(item, "visual.2")
    ('visual', 2)
    """
    if not isinstance(name, str) or not name:
        raise UnknownBandError(f"band names are strings such as 'red' or 'B04', got {name!r}")
    found = _by_key(item, name)
    if found:
        return found
    if memo is None:
        bands = _data_bands(item)
    else:
        bands = memo.get(id(item))
        if bands is None or bands[0] is not item:
            bands = memo[id(item)] = (item, _data_bands(item))
        bands = bands[1]
    found = _pick(item, name, _named(bands, name))
    if found:
        return found
    for alias in BAND_ALIASES.get(name.lower(), ()):
        found = _by_key(item, alias) or _pick(item, name, [b for b in _named(bands, alias) if _in_window(b[2], name)])
        if found:
            return found
    window = WAVELENGTH_WINDOWS.get(name.lower())
    if window is not None:
        found = _pick(item, name, _in_range(bands, window))
        if found:
            return found
    raise BandNotFoundError(
        f"band {name!r} not found in item {item.id!r}; available: {', '.join(sorted(available_bands(item)))}. "
        "Use an asset key or an eo:bands common name from that list"
    )


def available_bands(item: pystac.Item) -> set[str]:
    """Every name under which a band of ``item`` can be requested."""
    names = set()
    for key, asset in item.assets.items():
        try:
            if not _is_raster(asset, item):
                continue
            names.add(key)
            if _is_preview(asset, item):
                continue
        except MetadataError:
            continue
        try:
            entries = band_entries(asset, item, key)
        except MetadataError:
            continue
        for entry in entries:
            names |= {n for n in (entry.get("name"), entry.get("common_name")) if isinstance(n, str) and n}
    return names


def is_categorical(name: str, key: str | None = None) -> bool:
    """True for quality/classification bands (nearest resampling, no scaling)."""
    return name.lower() in CATEGORICAL_NAMES or (key is not None and key.lower() in CATEGORICAL_NAMES)
