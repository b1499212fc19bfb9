"""Pure parsing of STAC Item metadata into what a reader needs. No file IO.

An :class:`AssetSpec` says where one band of one item lives (href, band index),
how its pixels are placed (CRS, transform, shape), and how to decode them
(nodata, scale, offset, data type). Fields are read from the asset first, then
from the item, so both layouts found in public catalogs work: ``proj:epsg`` on
the item with ``proj:shape``/``proj:transform`` per asset (Earth Search,
Planetary Computer Sentinel-2) and everything on the item (Landsat).

Items without the projection extension give specs with ``crs``,
``transform`` and ``shape`` of ``None`` (:attr:`AssetSpec.placed` is false):
the loader then places them from the output grid and the item's bbox, or reads
the file headers (see :mod:`geoproc.io.headers`). Malformed fields raise one
:class:`MetadataError` naming the item, the asset and the field.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pystac
import pystac.utils
from affine import Affine

from ..errors import GeoprocError, InvalidArgumentError, MetadataError, shorten
from ..grid import normalize_crs
from .bands import BAND_ALIASES, CATEGORICAL_NAMES, band_entries, is_categorical, resolve_band

__all__ = ["AssetSpec", "BAND_ALIASES", "CATEGORICAL_NAMES", "as_items", "check_item_dict", "checked", "resolve_band",
           "asset_spec", "item_datetime", "is_categorical", "numpy_dtype", "parse_transform"]


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
        The file's pixel grid; ``None`` when the item has no ``proj:`` fields for it.
    nodata
        Value marking missing pixels, or ``None`` when the file has none.
    scale, offset
        ``value = raw * scale + offset``.
    data_type
        Raw data type (numpy name), or ``None`` when the metadata does not say.
    lonlat_bbox
        The item's ``bbox`` (west, south, east, north; ``west > east`` across 180 degrees).
    collection
        The item's collection id (``None`` when it has none).
    """

    item_id: str
    key: str
    band: str
    href: str
    band_index: int
    crs: str | None
    transform: Affine | None
    shape: tuple[int, int] | None
    nodata: float | None
    scale: float
    offset: float
    data_type: str | None
    lonlat_bbox: tuple[float, float, float, float] | None = None
    collection: str | None = None

    @property
    def placed(self) -> bool:
        """True when the metadata gives the file's grid (CRS, transform, shape)."""
        return self.crs is not None and self.transform is not None and self.shape is not None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the file in its own CRS."""
        t, (h, w) = self.transform, self.shape
        xs = (t.c, t.c + t.a * w, t.c + t.b * h, t.c + t.a * w + t.b * h)
        ys = (t.f, t.f + t.d * w, t.f + t.e * h, t.f + t.d * w + t.e * h)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def resolution(self) -> float:
        """Pixel size (the smaller of x and y) in CRS units."""
        t = self.transform
        return float(min(math.hypot(t.a, t.d), math.hypot(t.b, t.e)))

    @property
    def is_scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    def with_grid(self, crs: str, transform: Affine, shape: tuple[int, int]) -> AssetSpec:
        """This spec placed on the grid a file header gave."""
        return replace(self, crs=crs, transform=transform, shape=shape)


def _copy_json(value):
    """A copy of a JSON-like structure (dicts, lists, scalars), a few times faster than ``copy.deepcopy``."""
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_json(v) for v in value]
    return value


def as_items(items: Iterable[pystac.Item | Mapping]) -> list[pystac.Item]:
    """Accept pystac Items, an ItemCollection, or STAC Item dicts.

    Raises
    ------
    MetadataError
        For a dict that pystac cannot read as an Item (naming its id).
    """
    if isinstance(items, (str, bytes, Mapping)):
        raise InvalidArgumentError(
            f"items must be a list of STAC Items (or an ItemCollection), got {type(items).__name__}; "
            "pass the result of geoproc.search(...)"
        )
    out = []
    for it in items:
        if isinstance(it, pystac.Item):
            out.append(checked(it))
            continue
        if not isinstance(it, Mapping):
            raise InvalidArgumentError(f"items must be STAC Items or Item dicts, got a {type(it).__name__}")
        check_item_dict(it)
        try:
            # a copy of our own (pystac's deep copy costs more than reading the item)
            item = pystac.Item.from_dict(_copy_json(it), preserve_dict=False)
        except GeoprocError:
            raise
        except Exception as exc:  # pystac raises KeyError, TypeError, STACTypeError ...
            raise MetadataError(
                f"item {it.get('id', '?')!r} is not a valid STAC Item ({type(exc).__name__}: {shorten(str(exc), 120)}); "
                "check its id, geometry, properties.datetime and assets"
            ) from None
        out.append(checked(item))
    return out


def _malformed(item_id, field: str, value, expected: str, asset: str | None = None) -> MetadataError:
    """The error for one malformed field: item, asset, field, what it holds and what it should."""
    who = f"item {item_id!r}" if isinstance(item_id, str) and item_id else "an item"
    who += f" asset {asset!r}" if asset is not None else ""
    return MetadataError(f"{who}: field {field} is {shorten(repr(value), 60)}, not {expected}; fix the item's "
                         "metadata or leave the item out")


def check_item_dict(d: Mapping) -> None:
    """The fields pystac needs to build an Item, checked first so that the error names the field
    (pystac fails on them with ``KeyError``, ``AttributeError`` or ``TypeError`` from its insides)."""
    item_id = d.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise _malformed(None, "id", item_id, "a non-empty string (every STAC Item has one)")
    if d.get("type") != "Feature":
        raise _malformed(item_id, "type", d.get("type"), "'Feature' (is this a STAC Item?)")
    for key in ("stac_version", "collection"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise _malformed(item_id, key, d[key], "a string")
    extensions = d.get("stac_extensions")
    if extensions is not None and not (isinstance(extensions, list) and all(isinstance(e, str) for e in extensions)):
        raise _malformed(item_id, "stac_extensions", extensions, "a list of schema URLs")
    if not isinstance(d.get("properties"), Mapping):
        raise _malformed(item_id, "properties", d.get("properties"), "an object")
    _check_times(item_id, d["properties"], parse_datetime=True)
    assets = d.get("assets")
    if not isinstance(assets, Mapping):  # required, though pystac reads an item without it
        raise _malformed(item_id, "assets", assets, "an object of assets by key")
    for key, asset in assets.items():
        if not isinstance(asset, Mapping):
            raise _malformed(item_id, "(the asset itself)", asset, "an object with an href", asset=str(key))
        if not isinstance(asset.get("href"), str):
            raise _malformed(item_id, "href", asset.get("href"), "a path or URL string", asset=str(key))


def _check_times(item_id: str, properties: Mapping, parse_datetime: bool) -> None:
    names = ("datetime", "start_datetime", "end_datetime") if parse_datetime else ("start_datetime", "end_datetime")
    for key in names:
        value = properties.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise TypeError
            pystac.utils.str_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            raise _malformed(item_id, f"properties.{key}", value,
                             "an ISO 8601 time such as '2024-06-01T10:20:30Z'") from None
    if parse_datetime and properties.get("datetime") is None and (
        properties.get("start_datetime") is None or properties.get("end_datetime") is None
    ):
        raise MetadataError(
            f"item {item_id!r}: field properties.datetime is null or missing, and start_datetime and end_datetime "
            "are not both given; a STAC Item needs one or the other, so fix the item's metadata or leave the item out"
        )


def checked(item: pystac.Item, footprint: bool = False) -> pystac.Item:
    """``item``, once the fields every later step relies on have the right type (pystac does not check):
    id, properties, assets, start/end times, and with ``footprint`` (a search reads them) geometry and bbox."""
    if not isinstance(item.id, str) or not item.id:
        raise _malformed(None, "id", item.id, "a non-empty string (every STAC Item has one)")
    if not isinstance(item.properties, Mapping):
        raise _malformed(item.id, "properties", item.properties, "an object")
    if not isinstance(item.assets, Mapping):
        raise _malformed(item.id, "assets", item.assets, "an object of assets by key")
    _check_times(item.id, item.properties, parse_datetime=False)
    if footprint:
        _check_footprint(item)
    return item


def _check_footprint(item: pystac.Item) -> None:
    import shapely
    import shapely.geometry

    geometry = item.geometry
    if geometry is not None:
        try:
            if not isinstance(geometry, Mapping):
                raise TypeError(f"a {type(geometry).__name__}")
            if not np.all(np.isfinite(shapely.get_coordinates(shapely.geometry.shape(geometry)))):
                raise ValueError("coordinates that are not finite")
        except Exception as exc:  # shapely raises GeometryTypeError, TypeError, ValueError, KeyError ...
            raise _malformed(item.id, "geometry", geometry, f"a GeoJSON geometry ({shorten(str(exc), 80)})") from None
    box = item.bbox
    if box is not None:
        try:
            if isinstance(box, (str, bytes, Mapping)) or not isinstance(box, Sequence) or len(box) not in (4, 6):
                raise ValueError
            [_finite(v) for v in box]
        except ValueError:
            raise _malformed(item.id, "bbox", box, "4 (or 6) finite numbers (west, south, east, north)") from None


def item_datetime(item: pystac.Item) -> dt.datetime:
    """The item's datetime (or ``start_datetime``) as an aware UTC datetime."""
    start = item.properties.get("start_datetime")
    try:
        when = item.datetime or (utc_time(start) if start else None)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MetadataError(f"item {item.id!r}: field properties.start_datetime is not an ISO 8601 time ({exc}); "
                            "fix the item's metadata or leave the item out") from None
    if when is None:
        raise MetadataError(f"item {item.id!r} has neither datetime nor start_datetime; it cannot be placed in time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _parse_dt(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{shorten(repr(value), 40)} is not a string")
    return pystac.utils.str_to_datetime(value)  # what pystac parses datetime with


def utc_time(value: str) -> dt.datetime:
    """An ISO 8601 time of STAC metadata (parsed as pystac parses ``datetime``) as an aware UTC datetime;
    naive times are UTC."""
    when = _parse_dt(value)
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def item_end_datetime(item: pystac.Item, start: dt.datetime) -> dt.datetime:
    """The end of an item's acquisition: ``end_datetime`` (composites, MODIS periods), else ``start``.

    Raises
    ------
    MetadataError
        When ``end_datetime`` is not an ISO 8601 time.
    """
    value = item.properties.get("end_datetime")
    if not value:
        return start
    try:
        end = utc_time(value)
    except (TypeError, ValueError, OverflowError):
        raise MetadataError(f"item {item.id!r}: field properties.end_datetime {value!r} is not an ISO 8601 time; "
                            "fix the item's metadata or leave the item out") from None
    return max(start, end)


def _field(asset: pystac.Asset, item: pystac.Item, key: str):
    value = asset.extra_fields.get(key)
    return item.properties.get(key) if value is None else value


def _where(asset: pystac.Asset, item: pystac.Item, key: str) -> str:
    """``key``, or ``properties.key`` when the asset takes it from the item (where a user has to fix it)."""
    return key if asset.extra_fields.get(key) is not None else f"properties.{key}"


def _crs_of(asset: pystac.Asset, item: pystac.Item, note=lambda field: None) -> str | None:
    """The asset's CRS from ``proj:epsg``, ``proj:code``, ``proj:wkt2`` or ``proj:projjson``; ``note`` is told
    which field is being read (for the error message)."""
    note(_where(asset, item, "proj:epsg"))
    epsg = _field(asset, item, "proj:epsg")
    if epsg is not None:
        code = _finite(epsg)
        if code != int(code) or not 0 < code < 2**31:
            raise ValueError(f"{shorten(repr(epsg), 40)} is not an EPSG code (a positive integer such as 32633)")
        return normalize_crs(int(code))
    for key, kind in (("proj:code", str), ("proj:wkt2", str), ("proj:projjson", Mapping)):
        note(_where(asset, item, key))
        value = _field(asset, item, key)
        if value is None:
            continue
        if key == "proj:code" and isinstance(value, str) and value.upper().startswith("EPSG:"):
            # pystac moves proj:epsg (projection extension 1.x) to proj:code when it reads an item
            note(_where(asset, item, key) + " (or proj:epsg, which pystac reads into proj:code)")
        if not isinstance(value, kind):
            raise ValueError(f"a {type(value).__name__} ({shorten(repr(value), 40)}), not "
                             + ("a string" if kind is str else "a PROJJSON object"))
        if value:
            return normalize_crs(dict(value) if kind is Mapping else value)
    return None


def parse_transform(values: Sequence) -> Affine:
    """An :class:`~affine.Affine` from ``proj:transform``, in STAC order or, as old items wrote it, GDAL's.

    STAC orders the coefficients ``[a, b, c, d, e, f]`` (pixel width first);
    GDAL's geotransform is ``[c, a, b, f, d, e]`` (origin first). A north-up
    grid tells them apart: ``b = d = 0`` sit at positions 1 and 3 in STAC order
    and at 2 and 4 in GDAL's.

    Examples
    --------
    >>> tuple(parse_transform([30, 0, 399585, 0, -30, 4700415]))[:6]
    (30.0, 0.0, 399585.0, 0.0, -30.0, 4700415.0)
    >>> tuple(parse_transform([399585, 30, 0, 4700415, 0, -30]))[:6]
    (30.0, 0.0, 399585.0, 0.0, -30.0, 4700415.0)
    """
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable) or len(values) not in (6, 9):
        raise ValueError(f"expected 6 or 9 numbers, got {shorten(repr(values), 80)}")
    t = [_finite(v) for v in values[:6]] if isinstance(values, list) else [_finite(v) for v in list(values)[:6]]
    if t[1] == 0 and t[3] == 0 and t[0] != 0 and t[4] != 0:
        return Affine(*t)
    if t[2] == 0 and t[4] == 0 and t[1] != 0 and t[5] != 0:  # GDAL order
        return Affine(t[1], t[2], t[0], t[4], t[5], t[3])
    a = Affine(*t)
    if a.determinant == 0:
        raise ValueError(f"degenerate (zero pixel size): {values!r}")
    return a


#: Rows and columns a raster file can have (GDAL counts them in signed 32-bit integers).
MAX_RASTER_SIDE = 2**31 - 1


def _shape(values) -> tuple[int, int]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable) or len(values) != 2:
        raise ValueError(f"expected [rows, columns], got {shorten(repr(values), 80)}")
    sides = [_finite(v) for v in values]
    if not all(1 <= v <= MAX_RASTER_SIDE and v == int(v) for v in sides):
        raise ValueError(f"expected two integers from 1 to {MAX_RASTER_SIDE} (a raster's rows and columns), "
                         f"got {shorten(repr(values), 80)}")
    return int(sides[0]), int(sides[1])


def _finite(value) -> float:
    """A finite float from a number (or a string holding one); ``ValueError`` for anything else."""
    kind = type(value)
    if kind is float and math.isfinite(value):  # the common cases, without the ABC checks below
        return value
    if kind is int and -(2**53) < value < 2**53:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{shorten(repr(value), 40)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{shorten(repr(value), 40)} is not a finite number") from None
    if not math.isfinite(number):
        raise ValueError(f"{shorten(repr(value), 40)} is not finite")
    return number


def _number(value, what: str) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise ValueError(f"{shorten(repr(value), 40)} is not a number")
    if isinstance(value, str):  # STAC allows "nan", "inf", "-inf" for nodata
        value = value.strip()
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{shorten(repr(value), 40)} is too large") from None
    if what != "nodata" and not math.isfinite(number):
        raise ValueError(f"not finite: {value!r}")
    return number


def asset_spec(item: pystac.Item, band: str, memo: dict | None = None) -> AssetSpec:
    """Build the :class:`AssetSpec` for ``band`` of ``item``.

    Raises
    ------
    UnknownBandError
        When the item has no such band.
    MetadataError
        When a field needed to place or decode the band is malformed, naming
        the item, the asset and the field.

    Examples
    --------
    >>> import datetime as dt
    >>> item = pystac.Item("a", None, [10, 45, 11, 46], dt.datetime(2024, 1, 1), {"proj:epsg": 32632})
    >>> item.add_asset("B04", pystac.Asset("https://x/b04.tif", extra_fields={
    ...     "proj:transform": [10, 0, 600000, 0, -10, 5100000], "proj:shape": [10980, 10980],
    ...     "eo:bands": [{"name": "B04", "common_name": "red"}],
    ...     "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": 0.0001, "offset": -0.1}]}))
    >>> spec = asset_spec(item, "red")
    >>> spec.key, spec.crs, spec.resolution, spec.scale, spec.offset
    ('B04', 'EPSG:32632', 10.0, 0.0001, -0.1)
    """
    key, index = resolve_band(item, band, memo)
    asset = item.assets[key]
    current = "proj:epsg"

    def note(field: str) -> None:
        nonlocal current
        current = field

    def bad(exc: Exception) -> MetadataError:
        return MetadataError(
            f"item {item.id!r} asset {key!r}: field {current} is malformed ({shorten(str(exc), 160)}); fix the "
            "item's metadata (e.g. rebuild it with rio-stac or stactools) or leave the item out"
        )

    try:
        crs = _crs_of(asset, item, note)
        note(_where(asset, item, "proj:transform"))
        raw_transform = _field(asset, item, "proj:transform")
        transform = None if raw_transform is None else parse_transform(raw_transform)
        note(_where(asset, item, "proj:shape"))
        raw_shape = _field(asset, item, "proj:shape")
        shape = None if raw_shape is None else _shape(raw_shape)
        if transform is not None and shape is not None:
            note("proj:transform/proj:shape")
            t, (h, w) = transform, shape
            corners = [(t.c + t.a * col + t.b * row, t.f + t.d * col + t.e * row) for col in (0, w) for row in (0, h)]
            if not all(math.isfinite(v) for xy in corners for v in xy):
                raise ValueError(f"together they put the file's corners at {corners}")
        note("eo:bands/raster:bands")
        entries = band_entries(asset, item, key)
        entry = entries[index - 1] if index - 1 < len(entries) else {}
        note(f"raster:bands[{index - 1}].nodata" if "nodata" in entry else _where(asset, item, "nodata"))
        nodata = entry.get("nodata", _field(asset, item, "nodata"))
        nodata = None if nodata is None else _number(nodata, "nodata")
        note(f"raster:bands[{index - 1}].scale")
        scale = _number(entry.get("scale", 1.0), "scale")
        note(f"raster:bands[{index - 1}].offset")
        offset = _number(entry.get("offset", 0.0), "offset")
        note(f"raster:bands[{index - 1}].data_type")
        data_type = entry.get("data_type")
        if data_type is not None:
            if not isinstance(data_type, str):
                raise ValueError(f"{shorten(repr(data_type), 40)} is not a data type name such as 'uint16'")
            numpy_dtype(data_type)
        note("bbox")
        bbox = _bbox(item)
        note("href")
        href = asset.href if _is_absolute(asset.href) else (asset.get_absolute_href() or asset.href)
        if not isinstance(href, str) or not href.strip():
            raise ValueError(f"{shorten(repr(href), 40)} is not a path or URL")
    except MetadataError:
        raise
    except (InvalidArgumentError, TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise bad(exc) from None
    placed = [v is not None for v in (crs, transform, shape)]
    if any(placed) and not all(placed):
        # a partial projection is as good as none: the loader reads the header or uses the bbox
        crs = transform = shape = None
    return AssetSpec(
        item_id=item.id,
        key=key,
        band=band,
        href=href,
        band_index=index,
        crs=crs,
        transform=transform,
        shape=shape,
        nodata=nodata,
        scale=scale,
        offset=offset,
        data_type=data_type,
        lonlat_bbox=bbox,
        collection=item.collection_id,
    )


def _bbox(item: pystac.Item) -> tuple[float, float, float, float] | None:
    b = item.bbox
    if b is None or (isinstance(b, Sequence) and not isinstance(b, str) and len(b) == 0):
        return None
    if isinstance(b, (str, bytes, Mapping)) or not isinstance(b, Sequence):
        raise ValueError(f"expected 4 (or 6) finite numbers, got {shorten(repr(b), 80)}")
    b = [_finite(v) for v in b]
    if len(b) == 6:
        b = [b[0], b[1], b[3], b[4]]
    if len(b) != 4 or not all(math.isfinite(v) for v in b):
        raise ValueError(f"expected 4 (or 6) finite numbers, got {item.bbox!r}")
    return (b[0], b[1], b[2], b[3])


def _is_absolute(href: str) -> bool:
    return isinstance(href, str) and (href.startswith("/") or "://" in href)


def numpy_dtype(data_type: str | None) -> np.dtype | None:
    """The numpy dtype of a ``raster:bands`` ``data_type``, or ``None`` if unknown."""
    if not data_type or not isinstance(data_type, str) or data_type.startswith("c") or data_type == "other":
        return None
    return np.dtype(data_type)
