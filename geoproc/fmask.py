"""Fmask 4's cloud probability and object-matched shadows, for scenes without a usable quality band.

The steps, with their sources (the kernels in :mod:`geoproc.kernels.fmask`
cite each formula):

1. **Potential cloud pixels** (Zhu & Woodcock 2012): the basic test (SWIR-2.2
   > 0.03, NDSI < 0.8, NDVI < 0.8 and, with a thermal band, BT < 27 deg C),
   whiteness < 0.7, HOT > 0.08, NIR / SWIR-1.6 > 0.75; the cirrus test
   (cirrus > 0.01; Zhu, Wang & Woodcock 2015) on the cirrus band less its
   2nd percentile over the pixels clear by the other tests (Fmask 4 without
   a DEM; a global reduction like the statistics of step 2).
2. **Clear-sky statistics of the whole scene**, land and water apart (a
   global reduction over all chunks of each time step): with a thermal band,
   the 17.5th and 82.5th percentiles of clear-land BT and the 82.5th of
   clear-water BT (Zhu & Woodcock 2012); without one, the 17.5th and 82.5th
   percentiles of clear-land HOT, widened by 0.04 (Qiu et al. 2019). Clear
   land under 0.1 % of the scene: all clear pixels give the land
   statistics (Fmask 4). Then the land probability (variability with NDVI,
   NDSI, NDBI and whiteness, x temperature or x HOT brightness), the water
   probability (temperature x brightness, or brightness), each plus the
   cirrus probability weighted by 0.3 (Landsat 8) or 0.5 (Sentinel-2), and
   their dynamic thresholds: the 82.5th percentile of the clear pixels'
   probability plus ``cloud_probability``.
3. **Cloud** (applied chunk by chunk with those numbers): a potential cloud
   pixel over the threshold of its surface, or (thermal band) colder than the
   17.5th percentile of clear land minus 35 deg C. Filled by the 3 x 3 majority.
   With at most ``min_clear_pixels`` clear pixels (Fmask 4: 40,000) every
   potential cloud pixel is cloud and no shadows are matched.
4. **Erosion of potential false positives** (Qiu et al. 2019; per time step,
   on the whole scene): urban and built-up land (line-enhanced NDBI > 0 and >
   NDVI, not water; clouds taken out by their temperature with a thermal
   band, by CDI < -0.8 with Sentinel-2's B7, B8 and B8A) dilated by 250 m,
   plus potential snow, form a layer where clouds are eroded by
   ``erosion_radius``: objects that vanish are dropped, the others grow
   back; with the CDI, objects under 10,000 px without a pixel of CDI < -0.5
   are dropped (Frantz et al. 2018); objects under 3 px are dropped. See
   :mod:`geoproc.kernels.fmask_commission`.
5. **Shadow** (per time step, on the whole scene): each cloud object is
   projected away from the sun over ``cloud_height`` and matched with the
   potential shadow layer (pixels darker than their clear-sky background in
   NIR and SWIR-1.6, as :func:`geoproc.spectral_classes` finds them, or
   Fmask's flood fill); the projection at the best-matching height, dilated
   by 3 px, is its shadow where it is dark (Zhu & Woodcock 2012).

Fmask 4's parameters differ by sensor (``sensor``, inferred from the data
when not given): the cloud probability constant (0.1 Landsat 4-7, 0.175
Landsat 8, each with its thermal band; 0.2 Sentinel-2 and any scene without
a thermal band), the cirrus weight and the erosion radius (150 m Landsat 4-7,
90 m Landsat 8 and Sentinel-2).

Histograms of values on fixed grids carry the statistics, so every chunking
gives the same masks. Steps 1-3 run per chunk; steps 4 and 5 need each time
step's whole ``(y, x)`` extent in one block (5 bytes per pixel: about 600 MB
for a 10,980 px Sentinel-2 tile), as Fmask works on whole scenes.

**Four-band mode** (blue, green, red, nir: no SWIR): the SWIR, NDSI and
NIR/SWIR tests are left out, the variability is ``1 - max(|NDVI|,
whiteness)``, the water brightness uses NIR, shadows are dark in NIR alone
and there is no snow class. It confuses bright soil and built-up land with
cloud more often (see the README's science section for the measured F1).

Departures from Fmask 4, by choice: no DEM (no terrain normalisation of
temperature, no cirrus floor per elevation, no slope-aware shadows or
mountain snow); no global surface water layer; reflectance carries no saturation flags (Fmask sets
whiteness and the saturated bands' NDVI/NDSI aside there); the absolute
snow test (SCSI, for scenes with over 110,889 px of potential snow) is left
out; without a thermal band or the CDI the urban layer is left out of the
false positives (see :func:`geoproc.kernels.fmask.fmask_cloud_flags`);
erosion uses exact disks, not MATLAB's approximated ones; cloud heights are
not narrowed by the cloud-top temperature, the view angle's parallax is
neglected in the shadow projection, and the default potential shadow layer is the windowed darkness
test of :func:`geoproc.spectral_classes`; Fmask's flood fill of NIR and SWIR
is ``shadow_layer="flood"`` (lower shadow F1 on the data of
``benchmarks/eval_fmask.py``: 0.49 instead of 0.82 on the synthetic archive,
0.28 instead of 0.34 on Landsat 8).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from .errors import InvalidArgumentError, UnknownBandError
from .kernels import fmask as k
from .kernels.fmask_commission import enhance_line, histogram_otsu
from .kernels.spectral_mask import QUANT
from .morphology import overlap_slices, pixel_size
from .spectral_mask import SPECTRAL_CLASSES, _angles, _decoding

__all__ = ["fmask_classes", "FMASK_BANDS"]

#: Bands by common name: the first four are required; swir16 and swir22 together (else four-band mode);
#: cirrus, a thermal band (Kelvin) and rededge3 + nir08 (Sentinel-2 B7, B8A: the CDI) are used where present.
FMASK_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22", "cirrus", "thermal", "rededge3", "nir08")
_THERMAL = ("thermal", "lwir11", "lwir", "lwir12")
_BT_GRID, _HOT_GRID, _PROB_GRID = k.HIST_GRIDS["bt"], k.HIST_GRIDS["hot"], k.HIST_GRIDS["prob"]
# stage 0: BT clear land, BT clear water, HOT clear land, HOT clear water, BT urban, clear/valid counts
_H0 = (_BT_GRID[2], _BT_GRID[2], _HOT_GRID[2], _HOT_GRID[2], _BT_GRID[2], 2)
_H1 = (_PROB_GRID[2], _PROB_GRID[2])  # stage 1: land prob, water prob
_HC = (_HOT_GRID[2],)  # stage -1: cirrus of the pixels clear but for the cirrus test
_N_STATS = 8
_N_ROWS = len(k.BAND_ROWS)

#: Fmask 4's parameters per sensor (FmaskParameters.m; Qiu et al. 2019): the cloud probability constant, the
#: weight of the thin cloud (cirrus) probability and the erosion radius of potential false positives (metres).
SENSOR_PARAMETERS = {
    "landsat-4-7": {"cloud_probability": 0.10, "thin_weight": 0.0, "erosion_radius": 150.0},
    "landsat-8": {"cloud_probability": 0.175, "thin_weight": 0.3, "erosion_radius": 90.0},
    "sentinel-2": {"cloud_probability": 0.20, "thin_weight": 0.5, "erosion_radius": 90.0},
}
#: Fmask 4's constant for its cloud probability without a thermal band (HOT brightness; Sentinel-2's 20 %).
NO_THERMAL_PROBABILITY = 0.2
#: Q19: with at most this many clear pixels (0.1 % of a Landsat scene) every potential cloud pixel is cloud.
FMASK_MIN_CLEAR = 40_000
_PLATFORMS = {"sentinel-2": "sentinel-2", "landsat-8": "landsat-8", "landsat-9": "landsat-8",
              "landsat-4": "landsat-4-7", "landsat-5": "landsat-4-7", "landsat-7": "landsat-4-7"}


def _thresholds(thin_weight: float) -> np.ndarray:
    values = dict(k.THRESHOLDS)
    values["thin_weight"] = thin_weight
    return np.array(list(values.values()), dtype=np.float64)


def _sensor(sensor, data, items, has, res) -> str:
    """Fmask's sensor: given, else from a ``platform`` attribute or the items, else from the bands and pixel size."""
    if sensor is not None:
        if sensor not in SENSOR_PARAMETERS:
            raise InvalidArgumentError(f"sensor must be one of {', '.join(SENSOR_PARAMETERS)}, got {sensor!r}")
        return sensor
    platforms = [data.attrs.get("platform")]
    if items is not None:
        from .io.items import as_items

        platforms += [it.properties.get("platform") for it in as_items(items)]
    for p in platforms:
        p = str(p or "").lower().replace("_", "-")
        for key, value in _PLATFORMS.items():
            if p.startswith(key) or p == key.replace("-", ""):
                return value
    if has["rededge3"] and has["nir08"] or res < 25.0:  # B7 and B8A, or finer than Landsat's 30 m
        return "sentinel-2"
    return "landsat-8" if has["cirrus"] else "landsat-4-7"


def _stack(blocks, decode, present) -> np.ndarray:
    """Decoded bands of a block as the kernels' ``(10, n)`` float32 rows (thermal in deg C)."""
    n = blocks[0].size
    out = np.zeros((_N_ROWS, n), dtype=np.float32)
    for row, (blk, (scale, offset, nodata)) in enumerate(zip(blocks, decode)):
        if not present[row]:
            continue
        raw = np.asarray(blk).reshape(-1)
        v = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
        if not np.isnan(nodata):
            v[raw == nodata] = np.nan
        if row == 7:
            v -= np.float32(273.15)
        elif row < 7:
            v = np.where(np.isnan(v) | (v > 1e-5), v, np.float32(1e-5))
        out[row] = v
    return out


def _hist_block(stage, present, decode, thr, *blocks):
    """Histograms of one block per time index: ``(t, 1, 1, bins)``; the last block is the stats (``(t, 8)``)."""
    stats = blocks[-1]
    blocks = blocks[:-1]
    sizes = {-1: _HC, 0: _H0, 1: _H1}[stage]
    out = np.zeros((blocks[0].shape[0], 1, 1, sum(sizes)), dtype=np.int64)
    for t in range(blocks[0].shape[0]):
        bands = _stack([b[t] for b in blocks], decode, present)
        parts = np.split(out[t, 0, 0], np.cumsum(sizes)[:-1])
        parts = parts + [np.zeros(2, np.int64)] * (6 - len(parts))  # stage 1: no HOT, urban or counts
        k.fmask_histograms(bands, present, thr, stage, np.asarray(stats[t], np.float64), *parts)
    return out


def _cirrus_stats(hist, block_info=None):
    out = np.zeros((hist.shape[0], _N_STATS))
    for t, h in enumerate(hist):  # Q19 (NormalizaCirrusDEM without a DEM): 2nd percentile of the clear pixels
        low = k.histogram_percentile(h, 2.0, _HOT_GRID)
        out[t, 7] = low if np.isfinite(low) else 0.0
    return out


def _stage0_stats(hist, before, present, block_info=None):
    out = np.full((hist.shape[0], _N_STATS), np.nan)
    out[:, 7] = before[:, 7]
    margin = dict(k.THRESHOLDS)["hot_margin"]
    for t, h in enumerate(hist):
        bt_land, bt_water, hot_land, hot_water, bt_urban, counts = np.split(h, np.cumsum(_H0)[:-1])
        out[t, 5] = counts[0]
        # Q19 (DetectPotentialCloud's idused): the land statistics come from the clear land if it is at least
        # 0.1 % of the valid pixels, else from all clear pixels
        few = hot_land.sum() < 0.001 * counts[1]
        if present[7]:  # Zhu & Woodcock 2012: 17.5th / 82.5th percentiles of clear land, 82.5th of clear water
            used = bt_land + bt_water if few else bt_land
            out[t, 0] = k.histogram_percentile(used, 17.5, _BT_GRID)
            out[t, 1] = k.histogram_percentile(used, 82.5, _BT_GRID)
            out[t, 2] = k.histogram_percentile(bt_water, 82.5, _BT_GRID)
            out[t, 6] = histogram_otsu(bt_urban, _BT_GRID)  # Q19: urban pixels colder than the warm class: cloud
        # Qiu et al. 2019: HOT percentiles of clear land, widened by 0.04, for the brightness probability
        used = hot_land + hot_water if few else hot_land
        out[t, 3] = k.histogram_percentile(used, 17.5, _HOT_GRID) - margin
        out[t, 4] = k.histogram_percentile(used, 82.5, _HOT_GRID) + margin
    return out


def _stage1_limits(hist, constant, high, cold, min_clear, block_info=None):
    out = np.empty((hist.shape[0], 5))
    for t, h in enumerate(hist):
        land, water = np.split(h, [_H1[0]])
        # Zhu & Woodcock 2012 (land), Qiu et al. 2019 (water too): 82.5th percentile + a constant
        out[t] = (k.histogram_percentile(land, 82.5, _PROB_GRID) + constant,
                  k.histogram_percentile(water, 82.5, _PROB_GRID) + constant, high, cold, min_clear)
    return out


def _flags_block(present, decode, thr, *blocks):
    stats, limits = blocks[-2], blocks[-1]
    blocks = blocks[:-2]
    shape = blocks[0].shape
    out = np.empty(shape, dtype=np.uint8)
    for t in range(shape[0]):
        bands = _stack([b[t] for b in blocks], decode, present)
        out[t] = k.fmask_cloud_flags(bands, present, thr, np.asarray(stats[t], np.float64),
                                     np.asarray(limits[t], np.float64)).reshape(shape[1:])
    return out


def _quantised(decode, *blocks):
    """NIR and SWIR-1.6 (NIR again in the four-band mode) in :data:`QUANT` units, int16, stacked."""
    out = []
    for blk, (scale, offset, nodata) in zip(blocks, decode):
        v = np.asarray(blk).astype(np.float32) * np.float32(scale) + np.float32(offset)
        if not np.isnan(nodata):
            v[np.asarray(blk) == nodata] = 0
        v = np.nan_to_num(v, nan=0.0)
        out.append(np.clip(np.floor(v * np.float32(QUANT) + np.float32(0.5)), 0, 32767).astype(np.int16))
    return np.stack(out, axis=1)


def _slice_block(params, flags, quant, zones, stats, limits):
    out = np.empty(flags.shape, dtype=np.uint8)
    for t in range(flags.shape[0]):
        dy, dx, dmin, dmax = (float(v) for v in zones[t])
        # Q19 (MatchCloudShadow): no shadow matching with too few clear pixels
        shadow_on = dmax >= 0 and stats[t, 5] > limits[t, 4]
        out[t] = k.fmask_slice(flags[t], quant[t, 0], quant[t, 1], params[0], shadow_on, dy, dx, dmin, dmax,
                               *params[1:])
    return out


def _endbi(nir, s1, decode):
    """Q19: the line-enhanced NDBI of each time step (a halo of 1 px)."""
    def block(xn, xs, block_info=None):
        present = [True] + [False] * (_N_ROWS - 1)
        vn, vs = (_stack([x], [d], present)[0].reshape(x.shape) for x, d in zip((xn, xs), decode))
        out = np.empty(xn.shape, dtype=np.float32)
        for t in range(xn.shape[0]):
            out[t] = enhance_line((vs[t] - vn[t]) / (vs[t] + vn[t]))
        return out
    return overlap_slices(block, [nir, s1], (1, 1), np.float32)


def _cdi(b7, b8, b8a, decode, radius):
    def block(x7, x8, x8a, block_info=None):
        v = [_stack([x], [d], [True] + [False] * (_N_ROWS - 1))[0].reshape(x.shape)
             for x, d in zip((x7, x8, x8a), decode)]
        out = np.empty(x7.shape, dtype=np.float32)
        for t in range(x7.shape[0]):
            out[t] = k.cloud_displacement_index(v[0][t], v[1][t], v[2][t], radius)
        return out
    return overlap_slices(block, [b7, b8, b8a], (radius, radius), np.float32)


def fmask_classes(
    data: xr.Dataset,
    *,
    bands: Mapping[str, str] | None = None,
    sun_azimuth: float | Sequence[float] | None = None,
    sun_elevation: float | Sequence[float] | None = None,
    items=None,
    sensor: str | None = None,
    cloud_probability: float | None = None,
    min_clear_pixels: float | None = None,
    erosion_radius: float | None = None,
    cloud_height: tuple[float, float] = (200.0, 12000.0),
    shadows: bool = True,
    shadow_dark_only: bool = True,
    shadow_min_size: int = 3,
    shadow_layer: str = "window",
    background_radius: float = 500.0,
    cloud_fill: bool = True,
    cloud_buffer: float = 0.0,
    shadow_buffer: float = 0.0,
    use_cirrus: bool = True,
    use_thermal: bool = True,
    use_cdi: bool = True,
    cdi_window: float = 140.0,
    resolution: float | None = None,
) -> xr.DataArray:
    """Cloud, shadow, snow and water classes as Fmask 4 computes them, from reflectance.

    See the module documentation (:mod:`geoproc.fmask`) for the steps and sources.

    Parameters
    ----------
    data
        Dataset of bands by common name: blue, green, red, nir (required);
        swir16 and swir22 (without them: the four-band mode); cirrus; a thermal
        band in Kelvin (``thermal``, ``lwir11``, ``lwir`` or ``lwir12``);
        ``rededge3`` and ``nir08`` (Sentinel-2 B7 and B8A, for the CDI). TOA
        reflectance as the thresholds were published for; raw integers with
        ``scale``, ``offset``, ``nodata`` attrs are decoded. Dims ``(time, y, x)``
        or ``(y, x)`` on a projected grid in metres.
    bands
        Map from common names to variable names, e.g. ``{"nir": "B08"}``.
    sun_azimuth, sun_elevation, items
        Sun angles in degrees, or STAC items to read them from, as for
        :func:`geoproc.spectral_classes`. Without them no shadows are matched.
    sensor
        ``"landsat-4-7"``, ``"landsat-8"`` (Landsat 9 too) or
        ``"sentinel-2"``: Fmask 4's parameters of that sensor
        (:data:`SENSOR_PARAMETERS`) are the defaults of ``cloud_probability``,
        ``erosion_radius`` and the cirrus weight. Default: the ``platform``
        attribute of the data or of the items; else Sentinel-2 where the data
        has B7 and B8A (``rededge3``, ``nir08``) or pixels finer than 25 m,
        Landsat 8 where it has a cirrus band, Landsat 4-7 otherwise (a
        Landsat 8 scene without its cirrus band is taken for Landsat 4-7:
        give ``sensor``).
    cloud_probability
        Constant added to the 82.5th percentile of clear-sky probability for
        the dynamic thresholds. Fmask 4: 0.1 (Landsat 4-7) and 0.175
        (Landsat 8), each for its probability with the temperature term, and
        0.2 for Sentinel-2, whose probability has the HOT brightness term in
        its place. Default: the sensor's with a thermal band, 0.2 without one
        (whatever the sensor, the probability is then Sentinel-2's, and 0.2
        is the only constant Fmask 4 publishes for it).
    min_clear_pixels
        Number of clear pixels (valid, not potential cloud) at or below which
        a time step's statistics are not used, every potential cloud pixel is
        cloud and no shadows are matched. Default: Fmask 4's 40,000 pixels
        (:data:`FMASK_MIN_CLEAR`, "0.1 %" of a Landsat scene), a count at
        the data's own pixel size. Fmask applies the same count at the two
        pixel sizes it works at (30 m for Landsat, 20 m for Sentinel-2), so
        the rule asks for enough clear pixels to take percentiles from, a
        sample size, not a ground area (36 km2 at 30 m but 16 km2 at 20 m).
        On a crop of 512 x 512 px that is 15 % of the crop; on patches of
        fewer than 40,000 pixels the statistics are never used (0 uses them
        whenever there is a clear pixel).
    erosion_radius
        Metres: radius of the erosion of clouds where they may be bright
        surfaces (Qiu et al. 2019; Fmask 4: 150 m for Landsat 4-7, 90 m for
        Landsat 8 and Sentinel-2, the default by ``sensor``). Negative: no
        erosion.
    cloud_height
        Heights in metres over which each cloud's shadow is searched (Fmask: 200-12,000).
    shadows
        Match shadows at all.
    shadow_dark_only
        Keep a matched projection only where it is potential shadow (dark);
        False keeps the whole projection, as Fmask does.
    shadow_min_size
        Cloud objects of fewer pixels cast no shadow (Fmask: 3).
    shadow_layer
        The potential shadow layer: ``"flood"``, Fmask's (NIR and SWIR-1.6 both
        0.02 below their images with the holes filled from the scene's edge);
        ``"window"``, darker than the mean clear background within
        ``background_radius`` (as :func:`geoproc.spectral_classes`).
    background_radius
        Metres: half the side of the window of the clear-sky background of the darkness test.
    cloud_fill
        Apply the 3 x 3 majority fill to clouds.
    cloud_buffer, shadow_buffer
        Metres by which clouds and shadows are dilated (Fmask 4 uses 3 pixels each).
    use_cirrus, use_thermal, use_cdi
        Use those bands when the data has them.
    cdi_window
        Metres: side of the CDI's variance window (Frantz et al. 2018: 7 px at 20 m).
    resolution
        Pixel size in metres, if the data has no x/y coordinates.

    Returns
    -------
    xarray.DataArray
        uint8 classes of :data:`geoproc.spectral_mask.SPECTRAL_CLASSES`
        (0 clear, 1 water, 2 shadow, 3 snow, 4 cloud, 255 no data); same dims
        and coords as the bands; lazy (dask) if they are. Attributes hold the
        scene statistics per time step (``fmask_land_threshold``, ...).

    Examples
    --------
    A 40 x 40 px vegetated scene at 30 m with a bright white cloud:

    >>> rng = np.random.default_rng(0)
    >>> veg = {"blue": 0.05, "green": 0.07, "red": 0.05, "nir": 0.3, "swir16": 0.18, "swir22": 0.09}
    >>> ds = xr.Dataset({b: (("y", "x"), (v * rng.uniform(0.8, 1.2, (40, 40))).astype("f4"))
    ...                  for b, v in veg.items()},
    ...                 coords={"y": 1e6 - np.arange(40) * 30.0, "x": np.arange(40) * 30.0})
    >>> for b, v in {"blue": 0.45, "green": 0.45, "red": 0.44, "nir": 0.46, "swir16": 0.35, "swir22": 0.25}.items():
    ...     ds[b][10:20, 10:20] = v
    >>> classes = fmask_classes(ds, shadows=False)
    >>> {SPECTRAL_CLASSES[int(c)]: int(n) for c, n in zip(*np.unique(classes, return_counts=True))}
    {'clear': 1504, 'cloud': 96}
    """
    if not isinstance(data, xr.Dataset):
        raise InvalidArgumentError("fmask_classes needs a Dataset with one variable per band")
    mapping = dict(bands or {})
    name = {b: mapping.get(b, b) for b in FMASK_BANDS}
    if "thermal" not in mapping:
        name["thermal"] = next((t for t in _THERMAL if t in data.data_vars), "thermal")
    missing = [b for b in FMASK_BANDS[:4] if name[b] not in data.data_vars]
    if missing:
        raise UnknownBandError(
            f"Fmask needs bands {', '.join(missing)} but the dataset has {', '.join(map(str, data.data_vars))}; "
            "load them by common name, or map them with bands={'nir': 'B08'}"
        )
    has = {b: name[b] in data.data_vars for b in FMASK_BANDS}
    if has["swir16"] != has["swir22"]:
        raise UnknownBandError("give both swir16 and swir22, or neither (four-band mode)")
    has["cirrus"] &= use_cirrus and has["swir16"]
    has["thermal"] &= use_thermal
    cdi_on = use_cdi and has["rededge3"] and has["nir08"]
    first = data[name["blue"]]
    if "y" in first.dims and "x" in first.dims:
        first = first.transpose(..., "y", "x")
    dims = first.dims
    if len(dims) not in (2, 3):
        raise InvalidArgumentError(f"bands need dims (time, y, x) or (y, x), got {dims}")

    def arr(b):
        a = data[name[b]].transpose(*dims).data
        a = a if is_dask(a) else da.from_array(np.asarray(a), chunks=-1)
        return a[None] if len(dims) == 2 else a

    rows = FMASK_BANDS[:8]
    chunks_of = arr("blue").chunks
    arrays = [arr(b).rechunk(chunks_of) if has[b] else arr("blue") for b in rows]
    decode = [_decoding(data[name[b]]) if has[b] else (1.0, 0.0, np.nan) for b in rows] + [(1.0, 0.0, np.nan)] * 2
    res = float(resolution) if resolution is not None else pixel_size(first)
    present = np.array([True] * 4 + [has[b] for b in rows[4:]] + [cdi_on, has["swir16"]])
    if cdi_on:
        radius = max(1, int(round(cdi_window / res)) // 2)
        arrays.append(_cdi(*[arr(b).rechunk(chunks_of) for b in ("rededge3", "nir", "nir08")],
                           [_decoding(data[name[b]]) for b in ("rededge3", "nir", "nir08")], radius))
    else:
        arrays.append(arrays[0])
    if has["swir16"]:
        arrays.append(_endbi(arrays[3], arrays[4], [decode[3], decode[4]]))
    else:
        arrays.append(arrays[0])
    sensor = _sensor(sensor, data, items, has, res)
    fmask_defaults = SENSOR_PARAMETERS[sensor]
    if cloud_probability is None:  # the Landsat constants go with the temperature probability (see the docstring)
        cloud_probability = fmask_defaults["cloud_probability"] if has["thermal"] else NO_THERMAL_PROBABILITY
    if erosion_radius is None:
        erosion_radius = fmask_defaults["erosion_radius"]
    if min_clear_pixels is None:  # Q19: 40,000 pixels, a sample size (see the docstring)
        min_clear_pixels = FMASK_MIN_CLEAR
    thr = _thresholds(fmask_defaults["thin_weight"])
    n_time = arrays[0].shape[0]
    tchunks = chunks_of[0]

    def histograms(stage, stats):
        sizes = sum({-1: _HC, 0: _H0, 1: _H1}[stage])
        h = da.blockwise(partial(_hist_block, stage, present, decode, thr), "tyxk",
                         *[x for a in arrays for x in (a, "tyx")], stats, "ts",
                         new_axes={"k": sizes}, adjust_chunks={"y": 1, "x": 1}, concatenate=True, dtype=np.int64)
        return h.sum(axis=(1, 2)).rechunk((tchunks, sizes))

    stats = da.zeros((n_time, _N_STATS), chunks=(tchunks, _N_STATS))
    if has["cirrus"]:  # Q19: the cirrus band's floor first, as the cirrus test decides which pixels are clear
        stats = histograms(-1, stats).map_blocks(_cirrus_stats, chunks=(tchunks, _N_STATS), dtype=np.float64)
    stats = da.map_blocks(partial(_stage0_stats, present=present), histograms(0, stats), stats,
                          chunks=(tchunks, _N_STATS), dtype=np.float64)
    # Zhu & Woodcock 2012: cold clouds 35 deg C below t_low; Q19: with at most 40,000 clear pixels, all PCP are cloud
    limits = histograms(1, stats).map_blocks(
        partial(_stage1_limits, constant=float(cloud_probability), high=np.nan, cold=35.0,
                min_clear=float(min_clear_pixels)),
        chunks=(tchunks, 5), dtype=np.float64)
    flags = da.blockwise(partial(_flags_block, present, decode, thr), "tyx",
                         *[x for a in arrays for x in (a, "tyx")], stats, "ts", limits, "tl",
                         concatenate=True, dtype=np.uint8)

    # shadows: the projection per time step, in pixels per pixel of shift, away from the sun
    azimuth, elevation = _angles(data, items, sun_azimuth, sun_elevation, n_time)
    north_up = not ("y" in first.coords and first.sizes["y"] > 1 and float(first["y"][1] - first["y"][0]) > 0)
    east_right = not ("x" in first.coords and first.sizes["x"] > 1 and float(first["x"][1] - first["x"][0]) < 0)
    zones = []
    for t in range(n_time):
        az, el = azimuth[t], elevation[t]
        if not (shadows and np.isfinite(az) and np.isfinite(el) and el > 0):
            zones.append((0.0, 0.0, 0.0, -1.0))
            continue
        a = math.radians(float(az))
        dy = math.cos(a) if north_up else -math.cos(a)
        dx = -math.sin(a) if east_right else math.sin(a)
        tan_el = math.tan(math.radians(float(el)))
        zones.append((dy, dx, cloud_height[0] / tan_el / res, cloud_height[1] / tan_el / res))
    two_bands = ("nir", "swir16") if has["swir16"] else ("nir", "nir")
    quant = da.map_blocks(partial(_quantised, [_decoding(data[name[b]]) for b in two_bands]),
                          *[arr(b).rechunk(chunks_of) for b in two_bands], new_axis=1,
                          chunks=(tchunks, (2,), chunks_of[1], chunks_of[2]), dtype=np.int16)
    if shadow_layer not in ("flood", "window"):
        raise InvalidArgumentError(f"shadow_layer must be 'flood' or 'window', got {shadow_layer!r}")
    bg = 0 if shadow_layer == "flood" else max(1, int(round(background_radius / res)))
    params = (5 if cloud_fill else 0, int(shadow_min_size), 0.3, 0.98, 400, bg, 0.8,
              int(round(0.02 * QUANT)), 2, bool(shadow_dark_only), cloud_buffer / res, shadow_buffer / res,
              # Q19: urban pixels dilated by a square of 2 x 250 m (MATLAB's fix), erosion radius rounded
              int(250.0 / res), int(math.floor(erosion_radius / res + 0.5)) if erosion_radius >= 0 else -1,
              bool(cdi_on))
    zones = da.from_array(np.array(zones, dtype=np.float64), chunks=(tchunks, 4))
    classes = da.blockwise(partial(_slice_block, params), "tyx", flags.rechunk({1: -1, 2: -1}), "tyx",
                           quant.rechunk({2: -1, 3: -1}), "tbyx", zones, "tz", stats, "ts", limits, "tl",
                           concatenate=True, dtype=np.uint8).rechunk(chunks_of)
    if len(dims) == 2:
        classes = classes[0]
    if not is_dask(data[name["blue"]].data):
        classes = classes.compute(scheduler="sync")
    out = xr.DataArray(classes, dims=dims, coords=first.coords, name="fmask_classes")
    out.attrs = {
        "long_name": "Fmask 4 classes from reflectance",
        "flag_values": list(SPECTRAL_CLASSES),
        "flag_meanings": " ".join(SPECTRAL_CLASSES.values()),
        "bands": [name[b] for b in FMASK_BANDS if has.get(b) and (b not in ("rededge3", "nir08") or cdi_on)],
        "mode": "six-band" if has["swir16"] else "four-band",
        "sensor": sensor,
        "cloud_probability": float(cloud_probability),
        "erosion_radius": float(erosion_radius),
        "min_clear_pixels": float(min_clear_pixels),
    }
    return out
