"""How a product is shown, for the quick-look PNG and the interactive map alike (no IO, no plotting library).

A product is one of four kinds, each with its colour map:

* ``index`` (a spectral index: the ``formula`` attribute, or a name of the index catalog): a diverging
  red-yellow-green ramp over the index's range (-0.2..0.9 for vegetation indices, -1..1 otherwise);
* ``class`` (booleans, small integers, or ``classes``/``flag_values`` attributes: masks, labels, SCL):
  one fixed colour per value, so a class keeps its colour from one picture to the next;
* ``rgb`` (three bands named red, green, blue): true colour, the three bands stretched together between
  their 2nd and 98th percentile (the colour balance is kept);
* ``continuous`` (anything else): viridis between the 2nd and 98th percentile.

Missing pixels (NaN, or the ``nodata`` value) are transparent in every kind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

__all__ = ["Style", "style_of", "rgba", "sample", "title_of", "CLASS_COLOURS"]

_CLASS_HINTS = ("class", "label", "mask", "scl", "qa", "flag", "cluster", "change_mask")
_VEGETATION = ("vegetation",)
#: 20 distinct colours (matplotlib's tab20, reordered so that neighbouring values differ most)
CLASS_COLOURS = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
    [219, 219, 141], [158, 218, 229]], dtype=np.uint8)
#: red-yellow-green (ColorBrewer RdYlGn, 9 classes): low index red, high green
_RDYLGN = np.array([[215, 48, 39], [244, 109, 67], [253, 174, 97], [254, 224, 139], [255, 255, 191],
                    [217, 239, 139], [166, 217, 106], [102, 189, 99], [26, 152, 80]], dtype=np.float64)
#: viridis at 9 stops
_VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                     [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


#: Sentinel-2 L2A scene classification (SCL) values and their names
SCL_CLASSES = {0: "no data", 1: "saturated or defective", 2: "dark area pixels", 3: "cloud shadows", 4: "vegetation",
               5: "not vegetated", 6: "water", 7: "unclassified", 8: "cloud, medium probability",
               9: "cloud, high probability", 10: "thin cirrus", 11: "snow or ice"}
#: the colours ESA's viewers give the SCL classes
SCL_COLOURS = {0: (0, 0, 0), 1: (255, 0, 0), 2: (47, 47, 47), 3: (100, 50, 0), 4: (0, 160, 0), 5: (255, 230, 90),
               6: (0, 0, 255), 7: (128, 128, 128), 8: (192, 192, 192), 9: (255, 255, 255), 10: (100, 200, 255),
               11: (255, 150, 255)}


@dataclass(frozen=True)
class Style:
    """How one product is drawn."""

    #: ``index``, ``class``, ``rgb`` or ``continuous``
    kind: str
    #: what the product is (its ``long_name``, else its name)
    label: str
    #: its units, for the colour bar (``"1"`` for indices)
    units: str | None
    #: matplotlib's name of the colour map (``None`` for ``rgb`` and ``class``)
    cmap: str | None = None
    #: the value range the colours span (per band for ``rgb``)
    vmin: float | tuple = 0.0
    vmax: float | tuple = 1.0
    #: ``class``: value -> (name, RGB colour)
    classes: dict = field(default_factory=dict)
    #: the value of missing pixels besides NaN
    nodata: float | None = None

    def ramp(self) -> np.ndarray:
        """The RGB stops of the colour map (``index`` and ``continuous``)."""
        return _RDYLGN if self.cmap == "RdYlGn" else _VIRIDIS


def _nodata(arr: xr.DataArray) -> float | None:
    for value in (arr.attrs.get("nodata"), arr.attrs.get("_FillValue"), getattr(arr.rio, "nodata", None)
                  if hasattr(arr, "rio") else None):
        try:
            if value is not None and not np.isnan(float(value)):
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def _is_rgb(arr: xr.DataArray) -> bool:
    band = next((d for d in arr.dims if d not in ("y", "x")), None)
    if band is None or arr.sizes[band] != 3 or arr.ndim != 3:
        return False
    names = [str(v).lower() for v in arr[band].values] if band in arr.coords else []
    return names == ["red", "green", "blue"] or arr.attrs.get("kind") == "rgb"


def _index_info(arr: xr.DataArray):
    from .indices import INDICES

    name = str(arr.name or "").split("_")[0].upper()
    spec = INDICES.get(name)
    if spec is None and arr.attrs.get("long_name"):
        spec = next((s for s in INDICES.values() if s.long_name == arr.attrs["long_name"]), None)
    return spec


def style_of(arr: xr.DataArray, values: np.ndarray | None = None, kind: str | None = None) -> Style:
    """The :class:`Style` of ``arr`` (a DataArray; ``values``: a sample of its pixels, for percentiles).

    Examples
    --------
    >>> ndvi = xr.DataArray(np.zeros((2, 2), "float32"), dims=("y", "x"), name="ndvi_median")
    >>> s = style_of(ndvi)
    >>> s.kind, s.cmap, (s.vmin, s.vmax), s.label
    ('index', 'RdYlGn', (-0.2, 0.9), 'Normalized Difference Vegetation Index')
    >>> style_of(xr.DataArray(np.array([[0, 1]], "uint8"), dims=("y", "x"), name="mask")).kind
    'class'
    """
    label = str(arr.attrs.get("long_name") or arr.name or "value")
    units = arr.attrs.get("units")
    nodata = _nodata(arr)
    if kind is None:
        name = str(arr.name or "").lower()
        if _is_rgb(arr):
            kind = "rgb"
        elif arr.dtype.kind == "b" or "classes" in arr.attrs or "flag_values" in arr.attrs or (
                arr.dtype.kind in "iu" and (arr.dtype.itemsize == 1 or any(h in name for h in _CLASS_HINTS))):
            kind = "class"
        elif arr.dtype.kind == "f" and ("formula" in arr.attrs or _index_info(arr) is not None):
            kind = "index"
        else:
            kind = "continuous"
    if kind == "index":
        spec = _index_info(arr)
        if spec is not None and label == str(arr.name or "value"):
            label = spec.long_name
        vegetation = spec is not None and spec.application_domain in _VEGETATION
        lo, hi = (-0.2, 0.9) if vegetation else (-1.0, 1.0)
        return Style("index", label, units or "1", "RdYlGn", lo, hi, nodata=nodata)
    if kind == "class":
        names = arr.attrs.get("classes") or (SCL_CLASSES if name == "scl" else {})
        if isinstance(names, dict):
            names = {int(k): str(v) for k, v in names.items()}
        else:
            names = {}
        found = np.unique(values[np.isfinite(values)]).astype(int) if values is not None and values.size else \
            np.array(sorted(names), dtype=int)
        if arr.dtype.kind == "b":
            found, names = np.array([0, 1]), {0: "no", 1: "yes", **names}
        found = [int(v) for v in found if nodata is None or v != nodata][:256]
        palette = SCL_COLOURS if name == "scl" else {}
        classes = {v: (names.get(v, str(v)), palette.get(v) or tuple(int(c) for c in CLASS_COLOURS[v % len(CLASS_COLOURS)]))
                   for v in found}
        if name == "scl" and label == "scl":
            label = "scene classification (SCL)"
        return Style("class", label, units, None, classes=classes, nodata=nodata)
    if kind == "rgb":
        # one stretch for the three bands: the colour balance of the scene is kept
        finite = values[np.isfinite(values)] if values is not None else np.array([])
        if nodata is not None:
            finite = finite[finite != nodata]
        p2, p98 = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        lo, hi = float(p2), float(p98) if p98 > p2 else float(p2) + 1.0
        return Style("rgb", label if label != "value" else "true colour", units, None, (lo,) * 3, (hi,) * 3,
                     nodata=nodata)
    finite = values[np.isfinite(values)] if values is not None else np.array([])
    if nodata is not None:
        finite = finite[finite != nodata]
    lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    return Style("continuous", label, units, "viridis", float(lo), float(hi) if hi > lo else float(lo) + 1.0,
                 nodata=nodata)


def sample(arr: xr.DataArray, max_size: int) -> tuple[xr.DataArray, int]:
    """``arr`` strided to at most ``max_size`` pixels a side (only those pixels are read), and the stride."""
    y, x = arr.dims[-2], arr.dims[-1]
    step = max(1, -(-max(arr.sizes[y], arr.sizes[x]) // max_size))
    small = arr.isel({y: slice(None, None, step), x: slice(None, None, step)})
    return small.load() if hasattr(small, "load") else small, step


def _ramp(t: np.ndarray, stops: np.ndarray) -> np.ndarray:
    pos = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(t, pos, stops[:, c]) for c in range(3)])


def rgba(values: np.ndarray, style: Style) -> np.ndarray:
    """``values`` (2-D, or 3 x H x W for ``rgb``) as RGBA uint8 ``(4, H, W)``; missing pixels transparent.

    Examples
    --------
    >>> s = Style("index", "NDVI", "1", "RdYlGn", -0.2, 0.9)
    >>> rgba(np.array([[np.nan, 0.9, -0.2]]), s)[:, 0, :].T.tolist()
    [[0, 0, 0, 0], [26, 152, 80, 255], [215, 48, 39, 255]]
    """
    v = np.asarray(values, dtype=np.float64)
    if style.kind == "rgb":
        missing = ~np.isfinite(v).all(axis=0)
        if style.nodata is not None:
            missing |= (v == style.nodata).all(axis=0)
        lo, hi = np.asarray(style.vmin)[:, None, None], np.asarray(style.vmax)[:, None, None]
        rgb = np.clip((np.nan_to_num(v) - lo) / (hi - lo), 0.0, 1.0) * 255.0
        shape = v.shape[1:]
    else:
        missing = ~np.isfinite(v)
        if style.nodata is not None:
            missing |= v == style.nodata
        shape = v.shape
        if style.kind == "class":
            rgb = np.zeros((3, *shape))
            codes = np.where(missing, -1, np.nan_to_num(v)).astype(np.int64)
            for value, (_, colour) in style.classes.items():
                rgb[:, codes == value] = np.asarray(colour, dtype=np.float64)[:, None]
        else:
            t = np.clip((np.nan_to_num(v) - style.vmin) / (style.vmax - style.vmin), 0.0, 1.0)
            rgb = _ramp(t, style.ramp())
    out = np.zeros((4, *shape), dtype=np.uint8)
    out[:3] = np.round(rgb).astype(np.uint8)
    out[3] = np.where(missing, 0, 255)
    out[:3, missing] = 0
    return out


def _day(value) -> str:
    text = str(value)
    return text[:10] if len(text) >= 10 else text


def title_of(arr: xr.DataArray | xr.Dataset, style: Style) -> str:
    """``"<product>\\n<dates> · <area>"``: what, when (the inputs' acquisition span or the time
    coordinate) and where (the centre in degrees, the size in km)."""
    parts = [style.label]
    start, end = arr.attrs.get("input_start"), arr.attrs.get("input_end")
    if not start and "time" in arr.coords and arr["time"].size and arr["time"].dtype.kind == "M":
        times = np.atleast_1d(arr["time"].values)
        start, end = np.datetime_as_string(times.min(), "D"), np.datetime_as_string(times.max(), "D")
    if start:
        parts.append(_day(start) if _day(start) == _day(end or start) else f"{_day(start)} to {_day(end)}")
    crs = arr.rio.crs if hasattr(arr, "rio") else None
    if crs is not None:
        from pyproj import CRS, Transformer

        minx, miny, maxx, maxy = arr.rio.bounds(recalc=True)
        lon, lat = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True).transform(
            (minx + maxx) / 2, (miny + maxy) / 2)
        units = CRS.from_user_input(crs).axis_info[0].unit_name if CRS.from_user_input(crs).axis_info else ""
        size = ""
        if units in ("metre", "meter"):
            size = f", {(maxx - minx) / 1000:.3g} x {(maxy - miny) / 1000:.3g} km"
        parts.append(f"{abs(lat):.3f}°{'N' if lat >= 0 else 'S'} {abs(lon):.3f}°{'E' if lon >= 0 else 'W'}{size}")
    return parts[0] + ("\n" + " · ".join(parts[1:]) if len(parts) > 1 else "")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
