"""Cloud, cloud-shadow, snow and water detection from reflectance, in the manner of Fmask.

For scenes without a usable quality band (or to refine one, see
``cloud_mask(method="both")``). Two steps, both fused into one task per chunk:

1. **Pixel tests** (Zhu & Woodcock 2012, RSE 118:83-94, "Eq. n" below; Zhu,
   Wang & Woodcock 2015, RSE 159:269-277): potential cloud pixels pass the
   basic test (Eq. 1: SWIR-2.2 > 0.03, NDSI < 0.8, NDVI < 0.8; the thermal test
   is left out, as Fmask does for Sentinel-2), whiteness (Eq. 2, < 0.7), the
   haze-optimised transform (Eq. 3, blue - 0.5 red - 0.08 > 0) and the NIR/SWIR
   ratio (Eq. 4, > 0.75), or the cirrus test where there is a cirrus band
   (2015, section 2.2.1: cirrus TOA reflectance > 0.01). Water: Eq. 5. Snow:
   Eq. 20 without the thermal test. The scene-wide cloud probability of Fmask's
   second pass (Eq. 8-18) is not applied: it needs a percentile over the whole
   scene before any chunk can finish.
2. **Neighbourhood** (per ``(y, x)`` slice, through ``map_overlap``): clouds are
   filled by Fmask's 3 x 3 majority (a pixel is cloud when 5 of its 9 are;
   Zhu & Woodcock 2012, section 3.1.2), optionally cleared of small objects and
   buffered. Shadows are pixels darker than their local clear-sky background in
   both NIR and SWIR-1.6 (NIR below 0.8 x the background and at least 0.02
   below it, the 0.02 of Eq. 19; Fmask 4 also uses both bands) that lie where
   a cloud's shadow can fall: along the sun azimuth at the distances that
   cloud heights of ``cloud_height`` give at the sun elevation, when the sun
   angles are known (parameters, or ``view:sun_azimuth``/``view:sun_elevation``
   of the STAC items), else within ``shadow_distance`` of a cloud. The
   background is the mean of the clear, non-water pixels within
   ``background_radius`` (computed twice, the second time without the dark
   pixels found). Fmask fills the NIR image from the scene border instead
   (morphological reconstruction), which no finite halo reproduces exactly;
   the windowed background is exact on chunks and misses only the inside of
   shadows wider than about twice ``background_radius``.

The halo of ``map_overlap`` covers everything a pixel's class depends on: the
fill (1 px), small-object removal (``min_cloud_size`` px), the shadow zone
(the longest projection, or ``shadow_distance``), the two background passes
(2 x ``background_radius``) and the buffers; so chunked and whole arrays give
identical classes. Thresholds were published for top-of-atmosphere
reflectance; on surface reflectance (L2A, Collection 2 L2) they still work but
thin clouds are found less often.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from functools import partial

import numpy as np
import xarray as xr

from .errors import InvalidArgumentError, UnknownBandError
from .kernels.spectral_mask import QUANT, THRESHOLD_NAMES, classify_slice, fmask_tests
from .morphology import _open_edges, overlap_slices, pixel_size

__all__ = [
    "spectral_classes",
    "spectral_classes_array",
    "spectral_codes",
    "sun_angles",
    "has_spectral_bands",
    "FmaskThresholds",
    "SPECTRAL_CLASSES",
    "SPECTRAL_DEFAULT_MASK",
    "SPECTRAL_BANDS",
]

#: Output classes (the codes of Fmask 4's output).
SPECTRAL_CLASSES = {0: "clear", 1: "water", 2: "shadow", 3: "snow", 4: "cloud", 255: "no_data"}
#: Classes :func:`geoproc.cloud_mask` masks by default with ``method="spectral"``.
SPECTRAL_DEFAULT_MASK = ("no_data", "cloud", "shadow")
#: Bands used, by common name; ``cirrus`` is optional.
SPECTRAL_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22", "cirrus")
_REQUIRED = SPECTRAL_BANDS[:6]
_DARK_ITERATIONS = 2
_MAX_Q = 16  # denominators of the rational sun-direction slope: <= 0.11 deg off


@dataclass(frozen=True)
class FmaskThresholds:
    """Thresholds of the pixel tests, on reflectance (0-1). Defaults: the published values.

    Attributes
    ----------
    swir22_min
        Basic test, SWIR-2.2 must exceed it (Zhu & Woodcock 2012, Eq. 1).
    ndsi_max
        Basic test, NDSI must stay below it (Eq. 1).
    ndvi_max
        Basic test, NDVI must stay below it (Eq. 1).
    whiteness_max
        Whiteness ``sum |band - mean| / mean`` over blue, green, red must stay below it (Eq. 2).
    hot_offset
        Haze-optimised transform: ``blue - 0.5 red - hot_offset > 0`` (Eq. 3).
    nir_swir16_min
        NIR / SWIR-1.6 must exceed it (Eq. 4).
    cirrus_min
        Cirrus-band reflectance above which a pixel is cloud (Zhu, Wang & Woodcock 2015, section 2.2.1).
    water_ndvi_max, water_nir_max
        Water: NDVI below ``water_ndvi_max`` and NIR below ``water_nir_max`` (Eq. 5, first part) ...
    water_ndvi_max_low, water_nir_max_low
        ... or 0 < NDVI < ``water_ndvi_max_low`` and NIR below ``water_nir_max_low`` (Eq. 5, second part).
    snow_ndsi_min, snow_nir_min, snow_green_min
        Snow: NDSI, NIR and green above these (Eq. 20, without its thermal test).
    shadow_nir_difference
        A shadow pixel's NIR is at least this far below its background (the 0.02 of Eq. 19, where it
        applies to the flood-filled NIR).
    shadow_ratio
        ... and its NIR and SWIR-1.6 are below this fraction of their backgrounds (geoproc's choice: a
        shadow that dims both bands by 20% or more; keeps brighter-SWIR bare soil beside vegetation out).
    """

    swir22_min: float = 0.03
    ndsi_max: float = 0.8
    ndvi_max: float = 0.8
    whiteness_max: float = 0.7
    hot_offset: float = 0.08
    nir_swir16_min: float = 0.75
    cirrus_min: float = 0.01
    water_ndvi_max: float = 0.01
    water_nir_max: float = 0.11
    water_ndvi_max_low: float = 0.1
    water_nir_max_low: float = 0.05
    snow_ndsi_min: float = 0.15
    snow_nir_min: float = 0.11
    snow_green_min: float = 0.1
    shadow_nir_difference: float = 0.02
    shadow_ratio: float = 0.8

    def pixel_tests(self) -> np.ndarray:
        """The pixel-test thresholds as the kernel takes them (:data:`THRESHOLD_NAMES` order)."""
        return np.array([getattr(self, n) for n in THRESHOLD_NAMES], dtype=np.float64)


def spectral_codes(classes: Iterable[int | str]) -> tuple[int, ...]:
    """Class codes of :data:`SPECTRAL_CLASSES` from names or codes.

    Examples
    --------
    >>> spectral_codes(["cloud", "shadow"])
    (4, 2)
    """
    by_name = {v: k for k, v in SPECTRAL_CLASSES.items()}
    out = []
    for c in classes:
        code = by_name.get(c) if isinstance(c, str) else int(c)
        if code not in SPECTRAL_CLASSES:
            raise InvalidArgumentError(f"unknown spectral class {c!r}; use names or codes of {SPECTRAL_CLASSES}")
        out.append(code)
    return tuple(out)


def has_spectral_bands(data: xr.Dataset, bands: Mapping[str, str] | None = None) -> bool:
    """Whether ``data`` has the six bands the pixel tests need (``cirrus`` is optional).

    Examples
    --------
    >>> has_spectral_bands(xr.Dataset({b: ("x", [0.1]) for b in ("blue", "green", "red", "nir", "swir16", "swir22")}))
    True
    >>> has_spectral_bands(xr.Dataset({"red": ("x", [0.1])}))
    False
    """
    mapping = dict(bands or {})
    return all(mapping.get(b, b) in data.data_vars for b in _REQUIRED)


def _decoding(var: xr.DataArray) -> tuple[float, float, float]:
    attrs = var.attrs
    nodata = attrs.get("nodata")
    return float(attrs.get("scale", 1.0)), float(attrs.get("offset", 0.0)), np.nan if nodata is None else float(nodata)


def _rational(slope: float) -> tuple[int, int]:
    """``(p, q)`` with ``q <= 16`` and ``p / q`` closest to ``slope`` (in [-1, 1]); smallest ``q`` on ties."""
    best = (round(slope), 1)
    err = abs(slope - best[0])
    for q in range(2, _MAX_Q + 1):
        p = round(slope * q)
        e = abs(slope - p / q)
        if e < err - 1e-12:
            best, err = (int(p), q), e
    return int(best[0]), int(best[1])


def _line(azimuth: float, elevation: float, heights: tuple[float, float], res: float, north_up: bool, east_right: bool):
    """Line parameters ``(p, q, sign, kmin, kmax, transpose)`` and the ``(y, x)`` reach in pixels.

    From a shadow pixel, its cloud lies toward the sun: ``azimuth`` degrees
    clockwise from north, at ``height / tan(elevation)`` metres for each
    height in ``heights`` (parallax of the view angle is neglected).
    """
    az, el = math.radians(azimuth), math.radians(elevation)
    d_row = -math.cos(az) if north_up else math.cos(az)
    d_col = math.sin(az) if east_right else -math.sin(az)
    dmin = heights[0] / math.tan(el) / res
    dmax = heights[1] / math.tan(el) / res
    transpose = abs(d_row) > abs(d_col)
    major, minor = (d_row, d_col) if transpose else (d_col, d_row)
    sign = 1 if major >= 0 else -1
    p, q = _rational(minor / abs(major))
    step = math.hypot(1.0, p / q)
    kmin = max(1, math.ceil(dmin / step - 1e-9))
    kmax = max(kmin, math.floor(dmax / step + 1e-9))
    reach_major = kmax
    reach_minor = abs((2 * kmax * p + q) // (2 * q))
    reach = (reach_major, reach_minor) if transpose else (reach_minor, reach_major)
    return (p, q, sign, kmin, kmax, int(transpose)), reach


def sun_angles(data: xr.Dataset | xr.DataArray, items) -> tuple[np.ndarray, np.ndarray]:
    """Sun azimuth and elevation per time step of ``data``, from STAC items (``view:`` extension).

    Each item listed in ``data.attrs["input_items"]`` (all items, if the
    attribute is absent) is matched to the nearest time step within 12 hours;
    the angles of a step are the mean over its items (circular for azimuth).
    NaN where no item of a step gives them.

    Examples
    --------
    >>> import pystac, datetime as dt
    >>> angles = {"view:sun_azimuth": 150.0, "view:sun_elevation": 55.0}
    >>> it = pystac.Item("a", None, None, dt.datetime(2024, 5, 3, 10), angles)
    >>> ds = xr.Dataset(coords={"time": [np.datetime64("2024-05-03T10:00")]})
    >>> sun_angles(ds, [it])
    (array([150.]), array([55.]))
    """
    from .io.items import as_items, item_datetime

    if "time" not in data.coords:
        raise InvalidArgumentError(
            "the data has no time coordinate to match items to; pass sun_azimuth=, sun_elevation="
        )
    times = np.atleast_1d(data["time"].values).astype("datetime64[ns]")
    wanted = set(map(str, data.attrs.get("input_items", [])))
    sx, sy, el, n = (np.zeros(times.size) for _ in range(4))
    for item in as_items(items):
        if wanted and item.id not in wanted:
            continue
        az_i, el_i = item.properties.get("view:sun_azimuth"), item.properties.get("view:sun_elevation")
        if az_i is None or el_i is None:
            continue
        when = np.datetime64(item_datetime(item).replace(tzinfo=None), "ns")
        gap = np.abs((times - when).astype(np.int64))
        j = int(np.argmin(gap))
        if gap[j] > 12 * 3600 * 10**9:
            continue
        sx[j] += math.sin(math.radians(float(az_i)))
        sy[j] += math.cos(math.radians(float(az_i)))
        el[j] += float(el_i)
        n[j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        azimuth = np.degrees(np.arctan2(sx, sy)) % 360.0
        azimuth = np.where(n > 0, np.where(azimuth >= 360.0 - 1e-9, 0.0, azimuth), np.nan)
        elevation = np.where(n > 0, el / n, np.nan)
    return azimuth, elevation


def _classes_block(decode, thr, use_cirrus, common, zones, *blocks, block_info=None) -> np.ndarray:
    """One block: pixel tests on the padded block, then the neighbourhood steps per 2-D slice.

    Module-level, so that dask pickles it (and the kernels it calls) by reference.
    """
    shape = blocks[0].shape
    flat = [np.ascontiguousarray(b).reshape(-1) for b in blocks]
    cirrus = flat[6] if use_cirrus else np.zeros(0, dtype=np.float32)
    flags, nir_q, s1_q = fmask_tests(*flat[:6], cirrus, decode, thr, use_cirrus)
    flags, nir_q, s1_q = flags.reshape(shape), nir_q.reshape(shape), s1_q.reshape(shape)
    edges = _open_edges(block_info)
    t0 = block_info[0]["array-location"][0][0] if block_info and len(shape) > 2 else 0
    fill_min, min_size, cloud_buf, bg_r, ratio, diff_q, shadow_buf = common
    out = np.empty(shape, dtype=np.uint8)
    for idx in np.ndindex(shape[:-2]):
        t = t0 + idx[0] if idx else 0
        mode, radius, line = zones[t if len(zones) > 1 else 0]
        out[idx] = classify_slice(
            flags[idx], nir_q[idx], s1_q[idx], edges, fill_min, min_size, cloud_buf, mode, radius,
            np.asarray(line, dtype=np.int64), bg_r, ratio, diff_q, _DARK_ITERATIONS, shadow_buf,
        )
    return out


def spectral_classes_array(
    bands: Sequence,
    decode: Sequence[tuple[float, float, float]],
    *,
    thresholds: FmaskThresholds | None = None,
    zones: Sequence[tuple[int, float, tuple[int, ...]]] = ((1, 0.0, (0, 1, 1, 1, 1, 0)),),
    reach: tuple[int, int] = (0, 0),
    cloud_fill: bool = True,
    min_cloud_size: int = 0,
    cloud_buffer: float = 0.0,
    background_radius: int = 50,
    shadow_buffer: float = 0.0,
):
    """The dask/numpy layer of :func:`spectral_classes`; distances in pixels.

    ``bands``: blue, green, red, nir, swir16, swir22 and optionally cirrus,
    equally shaped ``(..., y, x)`` arrays; ``decode``: ``(scale, offset,
    nodata)`` per band. ``zones``: per leading (time) index, or one for all,
    ``(mode, radius, line)`` as :func:`geoproc.kernels.spectral_mask.classify_slice`
    takes them; ``reach``: the ``(y, x)`` pixels the zones reach.

    Examples
    --------
    >>> veg = [0.04, 0.06, 0.04, 0.35, 0.18, 0.09]
    >>> bands = [np.full((8, 8), v, np.float32) for v in veg]
    >>> for b, v in zip(bands, [0.5, 0.5, 0.5, 0.5, 0.4, 0.3]):
    ...     b[2:6, 2:6] = v
    >>> classes = spectral_classes_array(bands, [(1.0, 0.0, np.nan)] * 6, background_radius=3)
    >>> int((classes == 4).sum())  # a 4 x 4 cloud less its corners (Fmask's 3 x 3 fill)
    12
    """
    if len(bands) not in (6, 7) or len(decode) != len(bands):
        raise InvalidArgumentError(
            "give 6 bands (blue, green, red, nir, swir16, swir22) or 7 with cirrus, and a decode per band"
        )
    shape = bands[0].shape
    if any(b.shape != shape for b in bands):
        raise InvalidArgumentError(f"bands differ in shape: {[b.shape for b in bands]}; load them onto one grid")
    if len(shape) < 2:
        raise InvalidArgumentError(f"bands need 2 spatial dimensions (y, x), got shape {shape}")
    thr = thresholds or FmaskThresholds()
    dec = np.full((7, 3), (1.0, 0.0, np.nan))
    dec[: len(decode)] = np.asarray(decode, dtype=np.float64)
    use_cirrus = len(bands) == 7
    fill = 1 if cloud_fill else 0
    min_size = int(min_cloud_size) if min_cloud_size > 1 else 0
    common = (5 * fill, min_size, float(cloud_buffer), int(background_radius), float(thr.shadow_ratio),
              int(round(thr.shadow_nir_difference * QUANT)), float(shadow_buffer))
    zones = tuple((int(m), float(r), tuple(int(v) for v in line)) for m, r, line in zones)
    # halo: everything a pixel's class depends on (see the module documentation)
    cloud_reach = fill + min_size
    any_shadow = any(m >= 0 for m, _, _ in zones)
    dark = _DARK_ITERATIONS * int(background_radius) if any_shadow else 0
    depth = []
    for axis in (0, 1):
        zone = (cloud_reach + reach[axis]) if any_shadow else 0
        depth.append(max(cloud_reach + math.floor(cloud_buffer), max(zone, dark) + math.floor(shadow_buffer)))
    func = partial(_classes_block, dec, thr.pixel_tests(), use_cirrus, common, zones)
    return overlap_slices(func, list(bands), (depth[0], depth[1]), np.uint8)


def spectral_classes(
    data: xr.Dataset,
    *,
    bands: Mapping[str, str] | None = None,
    sun_azimuth: float | Sequence[float] | None = None,
    sun_elevation: float | Sequence[float] | None = None,
    items=None,
    cloud_height: tuple[float, float] = (200.0, 6000.0),
    shadow_distance: float | None = 2000.0,
    shadows: bool = True,
    background_radius: float = 500.0,
    cloud_fill: bool = True,
    min_cloud_size: int = 0,
    cloud_buffer: float = 0.0,
    shadow_buffer: float = 0.0,
    use_cirrus: bool = True,
    thresholds: FmaskThresholds | None = None,
    resolution: float | None = None,
) -> xr.DataArray:
    """Classify pixels as clear, water, cloud shadow, snow or cloud from reflectance (Fmask-like).

    See the module documentation for the tests and their sources.

    Parameters
    ----------
    data
        Dataset of reflectance bands named by common name: blue, green, red,
        nir, swir16, swir22 and, where the sensor has one, cirrus (S2 B10,
        Landsat 8/9 B9). Float reflectance, or raw integers with ``scale``,
        ``offset``, ``nodata`` attrs (``geoproc.load(..., raw=True)``).
        Dims ``(time, y, x)`` or ``(y, x)``, on a projected grid in metres.
    bands
        Map from common names to variable names, e.g. ``{"nir": "B08"}``.
    sun_azimuth, sun_elevation
        Sun angles in degrees (azimuth clockwise from north), one value or one
        per time step (NaN: unknown for that step). Default: from ``items``.
    items
        STAC items of the load, to read ``view:sun_azimuth`` and
        ``view:sun_elevation`` from (see :func:`sun_angles`).
    cloud_height
        Range of cloud heights in metres over which shadows are projected
        when the sun angles are known. Fmask uses 200-12,000 m; the default
        stops at 6,000 m (low and middle clouds, whose shadows are dark)
        because the halo, and so the memory per chunk, grows with the
        longest projection.
    shadow_distance
        Without sun angles: metres from a cloud within which dark pixels are
        shadow (``None``: anywhere in the scene).
    shadows
        Detect cloud shadows at all.
    background_radius
        Metres: half the side of the window over which a pixel's clear-sky
        background is averaged (at least 1 pixel).
    cloud_fill
        Apply Fmask's 3 x 3 majority fill to the clouds.
    min_cloud_size
        Remove cloud objects of fewer pixels (0: keep all).
    cloud_buffer, shadow_buffer
        Metres by which clouds and shadows are dilated (disk).
    use_cirrus
        Use the cirrus band when the data has one.
    thresholds
        :class:`FmaskThresholds`; default the published values.
    resolution
        Pixel size in metres, if the data has no x/y coordinates.

    Returns
    -------
    xarray.DataArray
        uint8 classes of :data:`SPECTRAL_CLASSES` (Fmask 4 codes: 0 clear,
        1 water, 2 shadow, 3 snow, 4 cloud, 255 no data); same dims and coords
        as the bands; lazy if they are. Chunked and whole input give identical
        classes.

    Examples
    --------
    A 20 x 20 px vegetated scene at 10 m with a 5 x 5 px cloud and, 30 to 50 m
    south of it, a patch at 40% of the NIR and SWIR: with the sun in the north
    and clouds 30-100 m high, the part of the patch in line with the cloud is
    its shadow (Fmask's 3 x 3 fill trims the cloud's corners).

    >>> veg = {"blue": 0.04, "green": 0.06, "red": 0.04, "nir": 0.35, "swir16": 0.18, "swir22": 0.09}
    >>> ds = xr.Dataset({k: (("y", "x"), np.full((20, 20), v, np.float32)) for k, v in veg.items()},
    ...                 coords={"y": np.arange(20)[::-1] * 10.0, "x": np.arange(20) * 10.0})
    >>> for k, v in {"blue": 0.5, "green": 0.5, "red": 0.5, "nir": 0.5, "swir16": 0.4, "swir22": 0.3}.items():
    ...     ds[k][5:10, 5:10] = v
    >>> for k in ("nir", "swir16"):
    ...     ds[k][12:15, 8:12] *= 0.4
    >>> classes = spectral_classes(ds, sun_azimuth=0.0, sun_elevation=45.0, cloud_height=(30.0, 100.0))
    >>> {SPECTRAL_CLASSES[int(k)]: int(n) for k, n in zip(*np.unique(classes, return_counts=True))}
    {'clear': 373, 'shadow': 6, 'cloud': 21}
    """
    if not isinstance(data, xr.Dataset):
        raise InvalidArgumentError("spectral_classes needs a Dataset with one variable per band")
    mapping = dict(bands or {})
    missing = [b for b in _REQUIRED if mapping.get(b, b) not in data.data_vars]
    if missing:
        raise UnknownBandError(
            f"spectral cloud detection needs bands {', '.join(missing)} but the dataset has "
            f"{', '.join(map(str, data.data_vars))}; load them by common name, or map them with bands={{'nir': 'B08'}}"
        )
    names = [mapping.get(b, b) for b in SPECTRAL_BANDS]
    if not (use_cirrus and names[6] in data.data_vars):
        names = names[:6]
    first = data[names[0]]
    if "y" in first.dims and "x" in first.dims:
        first = first.transpose(..., "y", "x")
    dims = first.dims
    arrays = [data[n].transpose(*dims).data for n in names]
    decode = [_decoding(data[n]) for n in names]
    res = float(resolution) if resolution is not None else pixel_size(first)
    north_up = not ("y" in first.coords and first.sizes["y"] > 1 and float(first["y"][1] - first["y"][0]) > 0)
    east_right = not ("x" in first.coords and first.sizes["x"] > 1 and float(first["x"][1] - first["x"][0]) < 0)
    n_time = first.sizes[dims[0]] if len(dims) > 2 else 1
    if cloud_height[0] < 0 or cloud_height[1] < cloud_height[0]:
        raise InvalidArgumentError(f"cloud_height must be (low, high) metres with 0 <= low <= high, got {cloud_height}")
    azimuth, elevation = _angles(data, items, sun_azimuth, sun_elevation, n_time)

    zones, reach = [], [0, 0]
    for t in range(n_time):
        if not shadows:
            zones.append((-1, 0.0, (0, 1, 1, 1, 1, 0)))
        elif np.isfinite(azimuth[t]) and np.isfinite(elevation[t]) and elevation[t] > 0:
            line, (ry, rx) = _line(float(azimuth[t]), float(elevation[t]), cloud_height, res, north_up, east_right)
            zones.append((2, 0.0, line))
            reach = [max(reach[0], ry), max(reach[1], rx)]
        elif shadow_distance is not None:
            d = float(shadow_distance) / res
            zones.append((1, d, (0, 1, 1, 1, 1, 0)))
            reach = [max(reach[0], math.floor(d)), max(reach[1], math.floor(d))]
        else:
            zones.append((0, 0.0, (0, 1, 1, 1, 1, 0)))
    bg = max(1, int(round(background_radius / res)))
    values = spectral_classes_array(
        arrays, decode, thresholds=thresholds, zones=zones, reach=(reach[0], reach[1]), cloud_fill=cloud_fill,
        min_cloud_size=min_cloud_size, cloud_buffer=cloud_buffer / res, background_radius=bg,
        shadow_buffer=shadow_buffer / res,
    )
    out = xr.DataArray(values, dims=dims, coords=first.coords, name="spectral_classes")
    thr = thresholds or FmaskThresholds()
    out.attrs = {
        "long_name": "Fmask-like classes from reflectance",
        "flag_values": list(SPECTRAL_CLASSES),
        "flag_meanings": " ".join(SPECTRAL_CLASSES.values()),
        "bands": names,
        "thresholds": {f.name: v for f, v in zip(fields(thr), astuple(thr))},
        "shadow_search": ["off" if m < 0 else ("projected" if m == 2 else "nearby" if m == 1 else "anywhere")
                          for m, _, _ in zones],
    }
    return out


def _angles(data, items, sun_azimuth, sun_elevation, n_time) -> tuple[np.ndarray, np.ndarray]:
    if (sun_azimuth is None) != (sun_elevation is None):
        raise InvalidArgumentError("give both sun_azimuth and sun_elevation, or neither")
    if sun_azimuth is None:
        if items is None:
            return np.full(n_time, np.nan), np.full(n_time, np.nan)
        az, el = sun_angles(data, items)
        if az.size != n_time:
            raise InvalidArgumentError(f"the items gave angles for {az.size} time steps, the data has {n_time}")
        return az, el
    az = np.broadcast_to(np.asarray(sun_azimuth, dtype=np.float64).reshape(-1), (n_time,)) \
        if np.size(sun_azimuth) in (1, n_time) else None
    el = np.broadcast_to(np.asarray(sun_elevation, dtype=np.float64).reshape(-1), (n_time,)) \
        if np.size(sun_elevation) in (1, n_time) else None
    if az is None or el is None:
        raise InvalidArgumentError(f"give one sun angle, or one per time step ({n_time}), not {np.size(sun_azimuth)}")
    return az, el
