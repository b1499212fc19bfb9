"""The output grid a load chooses: CRS, resolution, anchor and extent. Pure metadata, no file IO.

The defaults follow what a user of the items expects (each rule has a test in
``tests/test_extent.py``):

* **CRS**: the most common CRS among the requested assets; a tie goes to the
  CRS whose items lie nearest the centre of the area (near Fiji, UTM 60 for an
  area west of 180 degrees, UTM 1 east of it).
* **Resolution**: the finest native resolution in that CRS (its x and y
  sizes, which differ for some DEMs in degrees). When the output CRS
  is none of the items' but has the same linear unit (one UTM zone for another),
  the native pixel size itself (10 m stays 10 m); otherwise one native pixel
  measured at the centre of its file in the output CRS.
* **Anchor**: when the output CRS and resolution match the items' native grid
  (or an integer multiple of it), pixel edges fall on that grid's edges, so the
  output pixel j is file pixel j (Landsat's edges sit at 15 m offsets of 30 m,
  Sentinel-2's 60 m bands at 20 m offsets). Otherwise edges fall on multiples
  of the resolution from the CRS origin.
* **Extent**: ``bbox`` (degrees; ``west > east`` crosses 180 degrees), ``bounds``
  (output CRS) or ``geometry`` (a MultiPolygon split at 180 degrees is joined
  again), else the union of the items' footprints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import shapely
import shapely.geometry

from .errors import InvalidArgumentError, MetadataError, listing
from .grid import ALIGN_TOLERANCE, GridSpec, _crs, _transformer, normalize_crs
from .io.items import AssetSpec
from .io.stac import geojson_geometry

__all__ = ["output_grid", "lonlat_area", "lonlat_to", "native_anchor", "centre_lon", "check_bbox"]

Bounds = tuple[float, float, float, float]


def check_bbox(bbox: Sequence[float]) -> None:
    """Validate ``(west, south, east, north)`` in degrees; ``west > east`` means across 180 degrees."""
    if isinstance(bbox, (str, bytes)) or len(bbox) != 4:
        raise InvalidArgumentError(f"bbox must have 4 numbers (west, south, east, north), got {bbox!r}")
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"bbox must hold numbers (west, south, east, north), got {bbox!r}") from None
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90 and w != e):
        raise InvalidArgumentError(
            f"bbox {tuple(bbox)} is not (west, south, east, north) in degrees with south < north "
            "(west > east is an area across the antimeridian)"
        )


def lonlat_area(bbox: Sequence[float] | None = None, geometry: object = None) -> Bounds:
    """``(west, south, east, north)`` of a bbox or GeoJSON geometry, with ``east > 180`` across the antimeridian.

    Examples
    --------
    >>> lonlat_area(bbox=(178.0, -18.0, -179.0, -16.0))
    (178.0, -18.0, 181.0, -16.0)
    >>> split = {"type": "MultiPolygon", "coordinates": [
    ...     [[[178, -18], [180, -18], [180, -16], [178, -16], [178, -18]]],
    ...     [[[-180, -18], [-179, -18], [-179, -16], [-180, -16], [-180, -18]]]]}
    >>> lonlat_area(geometry=split)
    (178.0, -18.0, 181.0, -16.0)
    """
    if bbox is not None:
        check_bbox(bbox)
        w, s, e, n = (float(v) for v in bbox)
        return (w, s, e + 360.0 if e < w else e, n)
    geom = shapely.geometry.shape(geojson_geometry(geometry, "geometry"))
    w, s, e, n = geom.bounds
    if e - w > 180.0:
        # parts on both sides of 180 degrees (a geometry split at the antimeridian): join them east of it
        shifted = shapely.transform(geom, lambda xy: np.where(xy[:, :1] < 0, xy + [360.0, 0.0], xy))
        sw, ss, se, sn = shifted.bounds
        if se - sw < e - w:
            return (float(sw), float(ss), float(se), float(sn))
    return (float(w), float(s), float(e), float(n))


def lonlat_to(area: Bounds, crs: str, densify: int = 21) -> Bounds:
    """Bounds in ``crs`` of a lon/lat rectangle (``east`` may exceed 180), edges densified."""
    w, s, e, n = area
    if _crs(crs).is_geographic:
        return (w, s, e, n)
    t = np.linspace(0.0, 1.0, densify)
    xs = np.concatenate([w + (e - w) * t, np.full(densify, e), e - (e - w) * t, np.full(densify, w)])
    ys = np.concatenate([np.full(densify, n), n - (n - s) * t, np.full(densify, s), s + (n - s) * t])
    xs = np.where(xs > 180.0, xs - 360.0, xs)
    tx, ty = _transformer("EPSG:4326", crs).transform(xs, ys)
    if not (np.all(np.isfinite(tx)) and np.all(np.isfinite(ty))):
        raise InvalidArgumentError(f"the area {area} (degrees) cannot be expressed in {crs}; choose another crs")
    return (float(tx.min()), float(ty.min()), float(tx.max()), float(ty.max()))


def centre_lon(grid: GridSpec) -> float:
    """Longitude of the grid's centre."""
    lon = _centre_lon(grid)
    if not math.isfinite(lon):
        raise InvalidArgumentError(
            f"the grid {tuple(round(v, 3) for v in grid.bounds)} in {grid.crs} is not on the Earth in that CRS "
            "(its centre has no longitude); give an area inside the CRS's area of use"
        )
    return lon


def _centre_lon(grid: GridSpec) -> float:
    """Longitude of the grid's centre (NaN or infinite where the CRS has none for it)."""
    b = grid.bounds
    x, y = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    if _crs(grid.crs).is_geographic:
        return ((x + 180.0) % 360.0) - 180.0
    lon, _ = _transformer(grid.crs, "EPSG:4326").transform(x, y)
    return float(lon)


def native_anchor(placed: Sequence[AssetSpec], crs: str, resolution: tuple[float, float]) -> tuple[float, float] | None:
    """The anchor putting output pixel edges on the items' own pixel edges, if the grids are compatible.

    Compatible: same CRS, north-up, and the output pixel an integer multiple of the
    native one. Among items whose edges differ, the most common phase wins.

    Examples
    --------
    >>> from affine import Affine
    >>> spec = AssetSpec("LC08", "red", "red", "r.tif", 1, "EPSG:32613", Affine(30, 0, 399585, 0, -30, 4700415),
    ...                  (7911, 7791), 0, 1.0, 0.0, "uint16")
    >>> native_anchor([spec], "EPSG:32613", (30.0, 30.0))
    (15.0, 15.0)
    >>> native_anchor([spec], "EPSG:32613", (25.0, 25.0)) is None
    True
    """
    xres, yres = resolution
    # the finest compatible native grid decides (its edges are also edges of the coarser ones); phases
    # are taken modulo the native pixel, so the grid depends on the lattice alone, not on how each
    # scene happens to be framed (Landsat origins are 15 m mod 30 but 15 or 45 m mod 60)
    by_k: dict[tuple[int, int], Counter] = {}
    exact: dict[tuple, tuple[float, float]] = {}
    for s in placed:
        t = s.transform
        if s.crs != crs or t.b != 0 or t.d != 0:
            continue
        kx, ky = xres / abs(t.a), yres / abs(t.e)
        if round(kx) < 1 or round(ky) < 1 or abs(kx - round(kx)) > 1e-9 * kx or abs(ky - round(ky)) > 1e-9 * ky:
            continue
        k = (round(kx), round(ky))
        (qx, px), (qy, py) = _phase(t.c, abs(t.a)), _phase(t.f, abs(t.e))
        by_k.setdefault(k, Counter())[(qx, qy)] += 1
        exact.setdefault((k, qx, qy), (px, py))
    if not by_k:
        return None
    k = min(by_k, key=lambda kk: kk[0] * kk[1])
    best, _ = max(by_k[k].items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    return exact[(k, *best)]


def _phase(edge: float, res: float) -> tuple[int, float]:
    """``edge`` modulo ``res`` in [0, res): a key quantised to a millionth of a pixel (so float noise
    gives one group), and the exact value."""
    p = math.fmod(edge, res)
    if p < 0:
        p += res
    steps = round(p / res * 1e6) % 1_000_000
    return steps, p


def output_grid(
    specs: Mapping[str, Sequence[AssetSpec | None]],
    footprints_in: Callable[[str], Mapping[str, np.ndarray]],
    *,
    crs,
    resolution,
    bbox,
    bounds,
    geometry,
    anchor,
) -> GridSpec:
    """Decide the output grid of a load (see the module documentation for the defaults)."""
    placed = [s for ss in specs.values() for s in ss if s is not None and s.placed]
    given = [name for name, v in (("bbox", bbox), ("bounds", bounds), ("geometry", geometry)) if v is not None]
    if len(given) > 1:
        raise InvalidArgumentError(f"give one of bbox (degrees), bounds (output CRS) or geometry, not {' and '.join(given)}")
    area_ll = lonlat_area(bbox, geometry) if bbox is not None or geometry is not None else None
    if crs is not None:
        out_crs = normalize_crs(crs)
    elif placed:
        out_crs = _default_crs(placed, specs, area_ll)
    else:
        raise MetadataError(
            f"none of the items gives its CRS (no proj:epsg/proj:code: {_unplaced(specs)}) and the files were not "
            "read; pass crs=..., resolution=... and bbox=..., or let the loader read the headers"
        )
    try:
        res = _resolution(resolution, placed, out_crs)
    except MetadataError as exc:
        raise MetadataError(f"{exc} ({_unplaced(specs)})") from None
    if anchor is None:
        anchor = native_anchor(placed, out_crs, res) or (0.0, 0.0)
    tolerance = None
    if bounds is not None:
        try:
            area = tuple(float(v) for v in bounds)
        except (TypeError, ValueError):
            area = ()
        if len(area) != 4:
            raise InvalidArgumentError(f"bounds must have 4 numbers (minx, miny, maxx, maxy), got {bounds!r}")
    elif area_ll is not None:
        if area_ll[2] > 180.0 and _crs(out_crs).is_geographic:
            raise InvalidArgumentError(
                f"the area {area_ll[:2] + (area_ll[2] - 360.0, area_ll[3])} crosses 180 degrees, which a grid in "
                f"{out_crs} (longitude/latitude) cannot: its items would fall on both ends. Load it in a projected "
                "CRS, e.g. the items' UTM zone (crs=32760 or 32601 near Fiji), or as two loads, west and east of 180"
            )
        area = lonlat_to(area_ll, out_crs)
    else:
        fps = np.vstack(list(footprints_in(out_crs).values()))
        fps = fps[np.all(np.isfinite(fps), axis=1)]
        if not len(fps):
            raise MetadataError(
                f"no item's footprint can be expressed in {out_crs} ({_assets(placed)}): their proj:transform and "
                "proj:shape put them outside that CRS's area; check those fields, or pass crs=... and bbox=..."
            )
        area = (fps[:, 0].min(), fps[:, 1].min(), fps[:, 2].max(), fps[:, 3].max())
        tolerance = ALIGN_TOLERANCE  # the items' own edges: rounded metadata must not add a row
    kwargs = {"tolerance": tolerance} if tolerance else {}
    if not all(math.isfinite(v) for v in area):
        raise InvalidArgumentError(f"bounds {area} in {out_crs} are not finite numbers; give (minx, miny, maxx, maxy)")
    _check_size(area, res, out_crs, resolution is None, footprints_in, specs)
    grid = GridSpec.from_bounds(area, res, out_crs, anchor=anchor, **kwargs)
    if not math.isfinite(_centre_lon(grid)):
        _not_on_earth(grid, placed)
    return grid


def _assets(specs: Sequence[AssetSpec]) -> str:
    """``item 'a' asset 'B04', ... and N more``, each asset once, for messages."""
    return listing(dict.fromkeys(f"item {s.item_id!r} asset {s.key!r}" for s in specs))


def _unplaced(specs: Mapping[str, Sequence[AssetSpec | None]]) -> str:
    """The assets without a pixel grid, for messages."""
    return _assets([s for ss in specs.values() for s in ss if s is not None and not s.placed]) or "no asset has one"


def _not_on_earth(grid: GridSpec, placed: Sequence[AssetSpec]):
    """Raise the error for a grid whose centre has no longitude, naming an asset placed off the Earth if one is."""
    for s in placed:
        b = s.bounds
        x, y = _transformer(s.crs, "EPSG:4326").transform((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        if not (math.isfinite(x) and math.isfinite(y)):
            t = tuple(round(v, 6) for v in tuple(s.transform)[:6])
            raise MetadataError(
                f"item {s.item_id!r} asset {s.key!r}: its proj:transform {t} and proj:shape {list(s.shape)} put the "
                f"file around ({(b[0] + b[2]) / 2:.6g}, {(b[1] + b[3]) / 2:.6g}) in {s.crs}, which is not on the "
                "Earth in that CRS (it has no longitude and latitude); fix the item's metadata or leave the item out"
            )
    raise InvalidArgumentError(
        f"the output grid {tuple(round(v, 3) for v in grid.bounds)} in {grid.crs} is not on the Earth in that CRS "
        "(its centre has no longitude and latitude); give bbox=... in degrees, or bounds=... inside the CRS's area of use"
    )


#: Most rows or columns of an output grid: one load is one dask graph, whose coordinates and chunks
#: grow with the grid (2**24 is a 1 m grid 16,777 km wide; a 10 m grid across Eurasia is 1.2 million).
MAX_GRID_SIDE = 2**24
#: Most pixels of an output grid (2**40 is a 10 m grid 10,000 km square: 262,144 chunks of 2048 x 2048).
MAX_GRID_PIXELS = 2**40


def _check_size(area: Bounds, res: tuple[float, float], out_crs: str, native: bool,
                footprints_in: Callable[[str], Mapping[str, np.ndarray]],
                specs: Mapping[str, Sequence[AssetSpec | None]]) -> None:
    """Refuse a grid too large to be one load, naming the item that made it so when one asset alone does.

    ``native``: whether the resolution is the items' own (not given by the user).
    """
    def too_big(width: float, height: float) -> bool:
        return not (max(width, height) <= MAX_GRID_SIDE and width * height <= MAX_GRID_PIXELS)

    if not all(r > 0 and math.isfinite(r) for r in res):
        return  # GridSpec.from_bounds says what is wrong with the resolution
    width, height = (area[2] - area[0]) / res[0], (area[3] - area[1]) / res[1]
    if not too_big(width, height):
        return
    size = f"{height:.4g} x {width:.4g} pixels (at most {MAX_GRID_SIDE} per side and {MAX_GRID_PIXELS:.4g} in all)"
    for band, fps in footprints_in(out_crs).items():  # one asset that alone spans too many output pixels
        for spec, fp in zip(specs[band], fps):
            if spec is None or not spec.placed:
                continue
            w, h = (fp[2] - fp[0]) / res[0], (fp[3] - fp[1]) / res[1]
            if not (math.isfinite(w) and math.isfinite(h)) or too_big(w, h):
                t = tuple(round(v, 6) for v in tuple(spec.transform)[:6])
                raise MetadataError(
                    f"the output grid would be {size}: item {spec.item_id!r} asset {spec.key!r} alone spans "
                    f"{h:.4g} x {w:.4g} of them, so its proj:transform {t} or proj:shape {list(spec.shape)} is "
                    "likely wrong; fix or leave out that item, or pass bbox=... (or bounds=...) and resolution=..."
                )
    origin = "the items' finest native resolution" if native else "resolution"
    raise InvalidArgumentError(
        f"the output grid would be {size} at {origin} {res} over {tuple(round(v, 3) for v in area)} in "
        f"{out_crs}; give a smaller area (bbox=... or bounds=...) or a coarser resolution=..., or load the area in tiles"
    )


def _resolution(resolution, placed: Sequence[AssetSpec], out_crs: str) -> tuple[float, float]:
    if resolution is not None:
        try:
            xres, yres = (resolution, resolution) if np.isscalar(resolution) else resolution
            return float(xres), float(yres)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"resolution must be a number or (x, y), got {resolution!r}") from None
    if not placed:
        raise MetadataError(
            "no item gives its pixel grid (proj:transform/proj:shape), so there is no native resolution; "
            "pass resolution=... or let the loader read the headers"
        )
    native = [s for s in placed if s.crs == out_crs]
    if native:
        north_up = [s.transform for s in native if s.transform.b == 0 and s.transform.d == 0]
        if north_up:  # the finest x and y sizes, each on its own (DEM pixels in degrees are not square)
            return min(abs(t.a) for t in north_up), min(abs(t.e) for t in north_up)
        r = min(s.resolution for s in native)
        return r, r
    finest = min(placed, key=lambda s: s.resolution)
    src, dst = _crs(finest.crs), _crs(out_crs)
    if _unit(src) is not None and _unit(src) == _unit(dst):
        r = finest.resolution  # one metre is one metre in every UTM zone
        return r, r
    # one native pixel at the centre of its file, measured in the output CRS
    b = finest.bounds
    cx, cy, r = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, finest.resolution
    tx, ty = _transformer(finest.crs, out_crs).transform([cx, cx + r, cx], [cy, cy, cy + r])
    size = math.sqrt(abs((tx[1] - tx[0]) * (ty[2] - ty[0]) - (ty[1] - ty[0]) * (tx[2] - tx[0])))
    if not (size > 0 and math.isfinite(size)):
        raise InvalidArgumentError(f"cannot measure the native pixel size in {out_crs}; pass resolution=...")
    return size, size


def _unit(crs) -> float | None:
    """Metres per unit of a projected CRS's axes (None for geographic CRSs)."""
    if not crs.is_projected or not crs.axis_info:
        return None
    return crs.axis_info[0].unit_conversion_factor


def _default_crs(placed: Sequence[AssetSpec], specs, area_ll: Bounds | None) -> str:
    counts = Counter(s.crs for s in placed)
    top = max(counts.values())
    tied = sorted(c for c, n in counts.items() if n == top)
    if len(tied) == 1:
        return tied[0]
    boxes = {c: [s.lonlat_bbox for s in placed if s.crs == c and s.lonlat_bbox] for c in tied}
    every = [b for bs in boxes.values() for b in bs]
    if not every:
        return tied[0]
    centre = _centre(area_ll) if area_ll is not None else _centre(_union(every))

    def distance(c: str) -> float:
        if not boxes[c]:
            return math.inf
        lon, lat = _centre(_union(boxes[c]))
        dlon = (lon - centre[0] + 180.0) % 360.0 - 180.0
        return math.hypot(dlon * math.cos(math.radians(centre[1])), lat - centre[1])

    return min(tied, key=lambda c: (distance(c), c))


def _centre(b: Bounds) -> tuple[float, float]:
    lon = (b[0] + b[2]) / 2
    return ((lon + 180.0) % 360.0) - 180.0, (b[1] + b[3]) / 2


def _union(boxes: Sequence[Bounds]) -> Bounds:
    """Lon/lat union of bboxes, unwrapped across 180 degrees when that makes it narrower."""
    arr = np.array([(w, s, e + 360.0 if e < w else e, n) for w, s, e, n in boxes], float)
    plain = (arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max())
    shifted = arr.copy()
    west = shifted[:, 2] <= 0  # boxes wholly west of 0: move them past 180
    shifted[west, 0] += 360.0
    shifted[west, 2] += 360.0
    alt = (shifted[:, 0].min(), shifted[:, 1].min(), shifted[:, 2].max(), shifted[:, 3].max())
    return alt if alt[2] - alt[0] < plain[2] - plain[0] else plain
