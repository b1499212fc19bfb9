"""Pure parsing of STAC Item metadata into what a reader needs. No file IO.

An :class:`AssetSpec` says where one band of one item lives (href, band index),
how its pixels are placed (CRS, transform, shape), and how to decode them
(nodata, scale, offset, data type). Fields are read from the asset first, then
from the item, so both layouts found in public catalogs work: ``proj:epsg`` on
the item with ``proj:shape``/``proj:transform`` per asset (Earth Search,
Planetary Computer Sentinel-2) and everything on the item (Landsat).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pystac
from affine import Affine

from ..errors import MetadataError, UnknownBandError
from ..grid import normalize_crs

__all__ = ["AssetSpec", "BAND_ALIASES", "CATEGORICAL_NAMES", "as_items", "resolve_band", "asset_spec", "item_datetime"]

#: Names tried, in order, when a requested band is not found under its own name.
#: ``nir`` is ``nir08`` on Landsat 8/9; the short SWIR names are used by some catalogs.
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "nir": ("nir08", "nir08_1"),
    "nir08": ("nir",),
    "swir16": ("swir1", "swir16"),
    "swir22": ("swir2", "swir22"),
    "swir1": ("swir16",),
    "swir2": ("swir22",),
    "scl": ("SCL",),
    "qa_pixel": ("QA_PIXEL", "qa"),
}

#: Bands that hold classes or bit flags: always resampled with nearest neighbour
#: unless a resampling is given for the band by name, and never scaled.
CATEGORICAL_NAMES = frozenset({"scl", "qa", "qa_pixel", "qa_radsat", "fmask", "mask", "cloud", "classification"})


@dataclass(frozen=True)
class AssetSpec:
    """One band of one item, as the reader needs it.

    Attributes
    ----------
    item_id, key
        The item id and asset key (for error messages and reports).
    band
        The name the user asked for.
    href
        Absolute path or URL of the file.
    band_index
        1-based band number inside the file.
    crs, transform, shape
        The file's pixel grid.
    nodata
        Value marking missing pixels, or ``None`` when the file has none.
    scale, offset
        ``value = raw * scale + offset``.
    data_type
        Raw data type (numpy name), or ``None`` when the metadata does not say.
    datetime
        Acquisition time, UTC.
    lon
        Longitude of the item's centre, for grouping by local solar day.
    """

    item_id: str
    key: str
    band: str
    href: str
    band_index: int
    crs: str
    transform: Affine
    shape: tuple[int, int]
    nodata: float | None
    scale: float
    offset: float
    data_type: str | None
    datetime: dt.datetime
    lon: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the file in its own CRS."""
        t, (h, w) = self.transform, self.shape
        xs = (t.c, t.c + t.a * w + t.b * h)
        ys = (t.f, t.f + t.d * w + t.e * h)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def resolution(self) -> float:
        """Pixel size (the smaller of x and y) in CRS units."""
        return float(min(abs(self.transform.a), abs(self.transform.e)))

    @property
    def is_scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0


def as_items(items: Iterable[pystac.Item | Mapping]) -> list[pystac.Item]:
    """Accept pystac Items, an ItemCollection, or STAC Item dicts."""
    out = []
    for it in items:
        out.append(it if isinstance(it, pystac.Item) else pystac.Item.from_dict(dict(it)))
    return out


def item_datetime(item: pystac.Item) -> dt.datetime:
    """The item's datetime (or ``start_datetime``) as an aware UTC datetime."""
    when = item.datetime or _parse_dt(item.properties.get("start_datetime"))
    if when is None:
        raise MetadataError(f"item {item.id!r} has neither datetime nor start_datetime; it cannot be placed in time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _parse_dt(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _band_entries(asset: pystac.Asset, item: pystac.Item) -> list[dict]:
    """Per-band metadata of an asset: ``eo:bands`` / STAC 1.1 ``bands``, merged with ``raster:bands``."""
    d = asset.extra_fields
    eo = d.get("eo:bands") or d.get("bands") or []
    raster = d.get("raster:bands") or []
    n = max(len(eo), len(raster), 1)
    merged = []
    for i in range(n):
        entry: dict = {}
        if i < len(raster):
            entry.update(raster[i])
        if i < len(eo):
            entry.update(eo[i])
        merged.append(entry)
    return merged


def _names(entry: Mapping) -> set[str]:
    names = {entry.get("name"), entry.get("common_name"), entry.get("eo:common_name")}
    return {n for n in names if n}


def resolve_band(item: pystac.Item, name: str) -> tuple[str, int]:
    """Find the asset key and 1-based band index holding band ``name`` in ``item``.

    Looks for, in order: an asset key equal to ``name``, then case-insensitively;
    an ``eo:bands`` ``name`` or ``common_name`` equal to ``name``; then the same
    for each alias in :data:`BAND_ALIASES`.

    Raises
    ------
    UnknownBandError
        Naming the band and listing what the item offers.

    Examples
    --------
    >>> item = pystac.Item("a", None, None, dt.datetime(2024, 1, 1), {})
    >>> item.add_asset("B04", pystac.Asset("b04.tif", extra_fields={"eo:bands": [{"name": "B04", "common_name": "red"}]}))
    >>> resolve_band(item, "red")
    ('B04', 1)
    """
    for candidate in (name, *BAND_ALIASES.get(name.lower(), ())):
        found = _find(item, candidate)
        if found:
            return found
    raise UnknownBandError(
        f"band {name!r} not found in item {item.id!r}; available: {', '.join(sorted(available_bands(item)))}. "
        "Use an asset key or an eo:bands common name from that list"
    )


def _find(item: pystac.Item, name: str) -> tuple[str, int] | None:
    assets = item.assets
    if name in assets:
        return name, 1
    lower = name.lower()
    for key in assets:
        if key.lower() == lower:
            return key, 1
    for key, asset in assets.items():
        for i, entry in enumerate(_band_entries(asset, item)):
            if lower in {n.lower() for n in _names(entry)}:
                return key, i + 1
    return None


def available_bands(item: pystac.Item) -> set[str]:
    """Every name under which a band of ``item`` can be requested."""
    names = set()
    for key, asset in item.assets.items():
        if asset.media_type and "image" not in asset.media_type and "tiff" not in asset.media_type:
            continue
        names.add(key)
        for entry in _band_entries(asset, item):
            names |= _names(entry)
    return names


def is_categorical(name: str, spec: AssetSpec | None = None) -> bool:
    """True for quality/classification bands (nearest resampling, no scaling)."""
    return name.lower() in CATEGORICAL_NAMES or (spec is not None and spec.key.lower() in CATEGORICAL_NAMES)


def _field(asset: pystac.Asset, item: pystac.Item, key: str):
    value = asset.extra_fields.get(key)
    return item.properties.get(key) if value is None else value


def _crs_of(asset: pystac.Asset, item: pystac.Item) -> str | None:
    epsg = _field(asset, item, "proj:epsg")
    if epsg is not None:
        return normalize_crs(int(epsg))
    for key in ("proj:code", "proj:wkt2", "proj:projjson"):
        value = _field(asset, item, key)
        if value:
            return normalize_crs(value)
    return None


def asset_spec(item: pystac.Item, band: str) -> AssetSpec:
    """Build the :class:`AssetSpec` for ``band`` of ``item``.

    Raises
    ------
    UnknownBandError, MetadataError
    """
    key, index = resolve_band(item, band)
    asset = item.assets[key]
    crs = _crs_of(asset, item)
    transform = _field(asset, item, "proj:transform")
    shape = _field(asset, item, "proj:shape")
    missing = [n for n, v in (("proj:epsg/proj:code", crs), ("proj:transform", transform), ("proj:shape", shape)) if v is None]
    if missing:
        raise MetadataError(
            f"item {item.id!r} asset {key!r} lacks {', '.join(missing)}; geoproc places pixels from the STAC "
            "projection extension. Add it to the items (e.g. with rio-stac or stactools) before loading"
        )
    entries = _band_entries(asset, item)
    entry = entries[index - 1] if index - 1 < len(entries) else {}
    nodata = entry.get("nodata", _field(asset, item, "nodata"))
    if isinstance(nodata, str):  # STAC allows "nan", "inf", "-inf"
        nodata = float(nodata)
    bbox = item.bbox or [0.0, 0.0, 0.0, 0.0]
    return AssetSpec(
        item_id=item.id,
        key=key,
        band=band,
        href=asset.href if _is_absolute(asset.href) else (asset.get_absolute_href() or asset.href),
        band_index=index,
        crs=crs,  # type: ignore[arg-type]
        transform=Affine(*[float(v) for v in transform[:6]]),
        shape=(int(shape[0]), int(shape[1])),
        nodata=None if nodata is None else float(nodata),
        scale=float(entry.get("scale", 1.0)),
        offset=float(entry.get("offset", 0.0)),
        data_type=entry.get("data_type"),
        datetime=item_datetime(item),
        lon=float(_centre_lon(bbox)),
    )


def _is_absolute(href: str) -> bool:
    return href.startswith("/") or "://" in href


def _centre_lon(bbox: Sequence[float]) -> float:
    west, east = bbox[0], bbox[2] if len(bbox) == 4 else bbox[3]
    if east < west:  # crosses the antimeridian
        east += 360.0
    lon = (west + east) / 2.0
    return lon - 360.0 if lon > 180.0 else lon


def numpy_dtype(data_type: str | None) -> np.dtype | None:
    """The numpy dtype of a ``raster:bands`` ``data_type``, or ``None`` if unknown."""
    if not data_type or data_type.startswith("c") or data_type == "other":
        return None
    return np.dtype(data_type)
