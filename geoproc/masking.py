"""Cloud and shadow masks from quality bands (Sentinel-2 SCL, Landsat QA_PIXEL) or from reflectance.

:func:`cloud_mask` returns True where a pixel must be left out (cloud, shadow,
cirrus, no data, ...), so ``data.where(~mask)`` keeps the clear pixels and
``composite(data, mask=mask)`` skips the others. It reads the quality band the
data carries, and, where there is none (or with ``method="spectral"`` /
``"both"``), detects clouds and shadows from the reflectance with the
Fmask-like tests of :mod:`geoproc.spectral_mask`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import elementwise, is_dask
from .errors import InvalidArgumentError, UnknownBandError
from .kernels.masking import NO_BITS, bit_mask, class_lut, class_mask

__all__ = [
    "cloud_mask",
    "SCL_CLASSES",
    "SCL_DEFAULT_MASK",
    "QA_PIXEL_FLAGS",
    "QA_PIXEL_CONFIDENCE",
    "QA_PIXEL_DEFAULT_MASK",
    "CONFIDENCE_LEVELS",
    "scl_mask_array",
    "qa_pixel_mask_array",
    "sensor_of",
]

#: Sentinel-2 L2A Scene Classification values.
SCL_CLASSES = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}

#: SCL classes masked by default: no data, saturated/defective, cloud shadow,
#: cloud medium and high probability, thin cirrus.
SCL_DEFAULT_MASK = (0, 1, 3, 8, 9, 10)

#: Landsat Collection 2 QA_PIXEL single-bit flags that can be masked, by bit
#: (USGS, "Landsat 8-9 Collection 2 Level 2 Science Product Guide", table 6-3).
#: Bit 2 (cirrus) is set on Landsat 8/9 only. Bit 6 (clear) is deliberately not
#: offered: USGS sets it on some shadow pixels too, so "not clear" is not a safe mask.
QA_PIXEL_FLAGS = {"fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "shadow": 4, "snow": 5, "water": 7}

#: QA_PIXEL 2-bit confidences, by the position of their low bit.
QA_PIXEL_CONFIDENCE = {"cloud": 8, "shadow": 10, "snow": 12, "cirrus": 14}

#: Confidence levels of QA_PIXEL (shadow, snow and cirrus use only low and high).
CONFIDENCE_LEVELS = {"low": 1, "medium": 2, "high": 3}

#: QA_PIXEL flags masked by default.
QA_PIXEL_DEFAULT_MASK = ("fill", "dilated_cloud", "cirrus", "cloud", "shadow")

_NAMES = {"scl": ("scl", "SCL"), "qa_pixel": ("qa_pixel", "QA_PIXEL", "qa", "QA")}
KINDS = tuple(_NAMES)
METHODS = ("auto", "quality", "spectral", "fmask", "both")


def scl_mask_array(scl, classes: Iterable[int] = SCL_DEFAULT_MASK):
    """The dask/numpy layer: True where ``scl`` is one of ``classes``.

    Float input (SCL loaded as float, NaN for nodata) is accepted; NaN counts as
    class 0 (no data).

    Examples
    --------
    >>> scl_mask_array(np.array([0, 4, 9, 11], np.uint8))
    array([ True, False,  True, False])
    """
    try:
        lut = class_lut(classes)
    except ValueError as exc:
        raise InvalidArgumentError(f"{exc}; SCL classes are 0..11") from None
    if np.dtype(scl.dtype).kind == "f":
        scl = _float_codes(scl, 0)
    elif np.dtype(scl.dtype).kind not in "iu":
        raise InvalidArgumentError(f"SCL must hold integer class codes, got dtype {scl.dtype}")
    return elementwise(class_mask, scl, dtype=bool, args=(lut,))


def qa_pixel_mask_array(
    qa,
    flags: Iterable[str] = QA_PIXEL_DEFAULT_MASK,
    confidence: Mapping[str, str | int] | None = None,
    nodata: float | None = None,
):
    """The dask/numpy layer: True where ``qa`` (Landsat C2 QA_PIXEL) has one of ``flags`` set,
    or a confidence at least the level given in ``confidence``.

    Float input (NaN for nodata) is accepted; NaN counts as fill. Pixels equal
    to ``nodata`` count as fill as well (a loader fills missing pixels with it).

    Examples
    --------
    >>> codes = np.array([21824, 22280, 23888, 1], np.uint16)  # clear, cloud, clear + shadow, fill
    >>> qa_pixel_mask_array(codes)
    array([False,  True,  True,  True])
    >>> qa_pixel_mask_array(codes, flags=["cloud"], confidence={"shadow": "high"})
    array([False,  True,  True, False])
    """
    any_bits, all_bits = _qa_spec(flags, confidence)
    if np.dtype(qa.dtype).kind == "f":
        qa = _float_codes(qa, 1)
    elif np.dtype(qa.dtype).kind not in "iu":
        raise InvalidArgumentError(f"QA_PIXEL must hold integer bit flags, got dtype {qa.dtype}")
    out = elementwise(bit_mask, qa, dtype=bool, args=(any_bits, all_bits))
    if nodata is not None and not np.isnan(nodata) and any_bits & 1:
        out = out | (qa == nodata)
    return out


def _qa_spec(flags, confidence) -> tuple[int, np.ndarray]:
    """``any_bits`` and the 4 ``all_bits`` masks of :func:`geoproc.kernels.masking.bit_mask`.

    A 2-bit confidence at bits ``s, s + 1`` is at least low (01) when either
    bit is set, at least medium (10) when the high bit is, and high (11) when
    both are: the first two are "any" bits, the last an "all bits" mask.
    """
    bits = 0
    for name in flags:
        if name not in QA_PIXEL_FLAGS:
            hint = " ('clear' is also set on some shadow pixels, so it is not offered)" if name == "clear" else ""
            raise InvalidArgumentError(
                f"unknown QA_PIXEL flag {name!r}{hint}; use some of {', '.join(QA_PIXEL_FLAGS)}"
            )
        bits |= 1 << QA_PIXEL_FLAGS[name]
    all_bits = [NO_BITS] * 4
    for k, (name, level) in enumerate((confidence or {}).items()):
        if name not in QA_PIXEL_CONFIDENCE:
            raise InvalidArgumentError(
                f"no QA_PIXEL confidence for {name!r}; confidences exist for {', '.join(QA_PIXEL_CONFIDENCE)}"
            )
        value = CONFIDENCE_LEVELS.get(level) if isinstance(level, str) else level
        if value not in (1, 2, 3):
            raise InvalidArgumentError(
                f"confidence level {level!r} for {name!r} is not one of {', '.join(CONFIDENCE_LEVELS)} (or 1..3)"
            )
        shift = QA_PIXEL_CONFIDENCE[name]
        if value == 1:
            bits |= 3 << shift
        elif value == 2:
            bits |= 2 << shift
        else:
            all_bits[k] = 3 << shift
    return bits, np.array(all_bits, dtype=np.int64)


def _float_codes(codes, nan_code: int):
    if is_dask(codes):
        return da.where(da.isnan(codes), nan_code, codes).astype(np.int32)
    return np.where(np.isnan(codes), nan_code, codes).astype(np.int32)


def sensor_of(data: xr.Dataset | xr.DataArray) -> str | None:
    """``"landsat"`` or ``"sentinel-2"`` from the item ids in ``attrs["input_items"]``, else ``None``.

    Examples
    --------
    >>> ds = xr.Dataset(attrs={"input_items": ["LC08_L2SP_008059_20191201_20200825_02_T1"]})
    >>> sensor_of(ds)
    'landsat'
    """
    ids = [str(i).upper() for i in data.attrs.get("input_items", [])]
    if ids and all(i[:4] in ("LC08", "LC09", "LO08", "LO09", "LE07", "LT05", "LT04") for i in ids):
        return "landsat"
    if ids and all(i.startswith(("S2A", "S2B", "S2C", "S2_", "S2X")) for i in ids):
        return "sentinel-2"
    return None


def cloud_mask(
    data: xr.Dataset | xr.DataArray,
    *,
    band: str | None = None,
    classes: Iterable[int | str] | None = None,
    kind: str | None = None,
    confidence: Mapping[str, str | int] | None = None,
    method: str = "auto",
    spectral: Mapping | None = None,
) -> xr.DataArray:
    """Mask of pixels to leave out, from a quality band (SCL or QA_PIXEL) or from reflectance.

    Parameters
    ----------
    data
        A Dataset holding a quality variable (``scl``/``SCL`` or
        ``qa_pixel``/``QA_PIXEL``, or the one named by ``band``), or the
        quality DataArray itself; for ``method="spectral"``, a Dataset with
        the reflectance bands of :func:`geoproc.spectral_mask.spectral_classes`.
    band
        Name of the quality variable in ``data``.
    classes
        What to mask. SCL: class values 0..11 or names of :data:`SCL_CLASSES`
        (default :data:`SCL_DEFAULT_MASK`). QA_PIXEL: flag names of
        :data:`QA_PIXEL_FLAGS` (default :data:`QA_PIXEL_DEFAULT_MASK`; add
        ``"snow"`` or ``"water"`` to mask those too). Spectral: class names of
        :data:`geoproc.spectral_mask.SPECTRAL_CLASSES` (default
        ``("no_data", "cloud", "shadow")``).
    kind
        ``"scl"`` or ``"qa_pixel"``. Default: from the variable's name, else
        from the sensor of ``attrs["input_items"]`` (Landsat ids: QA_PIXEL),
        else SCL.
    confidence
        QA_PIXEL only: also mask pixels whose confidence reaches a level, e.g.
        ``{"cloud": "medium", "cirrus": "high"}`` (levels: low, medium, high).
    method
        ``"quality"``: the quality band. ``"spectral"``: reflectance tests.
        ``"fmask"``: Fmask 4 with its scene-wide cloud probability and
        object-matched shadows (:func:`geoproc.fmask_classes`; ``spectral``
        then holds its keyword arguments). ``"both"``: the union of the two (e.g. SCL plus Fmask-like shadows).
        ``"auto"`` (default): the quality band if the data has one, else the
        reflectance tests if it has the bands for them.
    spectral
        Keyword arguments of :func:`geoproc.spectral_mask.spectral_classes`
        (``sun_azimuth``, ``items``, ``cloud_buffer``...) plus ``classes``, the
        spectral classes to mask when ``method="both"``.

    Returns
    -------
    xarray.DataArray
        Boolean, True where the pixel is to be left out; same dims and coords as
        the input bands; lazy if they are.

    Examples
    --------
    >>> scl = xr.DataArray(np.array([[4, 8], [3, 6]], dtype="uint8"), dims=("y", "x"))
    >>> cloud_mask(scl).values
    array([[False,  True],
           [ True, False]])
    >>> qa = xr.DataArray(np.array([[21824, 22280], [23888, 1]], dtype="uint16"), dims=("y", "x"), name="qa_pixel")
    >>> cloud_mask(qa).values  # clear, high-confidence cloud; clear + shadow bit; fill
    array([[False,  True],
           [ True,  True]])
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    spectral = dict(spectral or {})
    spectral_to_mask = spectral.pop("classes", None)
    if method in ("spectral", "fmask"):
        return _spectral_mask(data, classes if classes is not None else spectral_to_mask, spectral, method)
    qa = _quality_band(data, band, required=method != "auto")
    if qa is None:  # auto, and no quality band
        from .spectral_mask import has_spectral_bands

        if isinstance(data, xr.Dataset) and has_spectral_bands(data, spectral.get("bands")):
            return _spectral_mask(data, classes if classes is not None else spectral_to_mask, spectral)
        _quality_band(data, band, required=True)  # raises, naming both ways out
    out = _quality_mask(data, qa, classes, kind, confidence)
    if method == "both":
        attrs = {**out.attrs, "kind": f"{out.attrs['kind']} + spectral"}
        extra = _spectral_mask(data, spectral_to_mask, spectral)
        out = (out | extra.transpose(*out.dims)).rename("cloud_mask")
        out.attrs = attrs
    return out


def _quality_mask(data, qa: xr.DataArray, classes, kind, confidence) -> xr.DataArray:
    kind = kind or _kind_of(data, qa)
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "scl":
        if confidence:
            raise InvalidArgumentError("confidence levels exist for Landsat QA_PIXEL only; for SCL choose classes")
        codes = SCL_DEFAULT_MASK if classes is None else tuple(_scl_code(c) for c in classes)
        mask = scl_mask_array(qa.data, codes)
        attrs = {"masked_classes": list(codes)}
    else:
        flags = QA_PIXEL_DEFAULT_MASK if classes is None else tuple(str(c) for c in classes)
        nodata = qa.attrs.get("nodata")
        mask = qa_pixel_mask_array(qa.data, flags, confidence, None if nodata is None else float(nodata))
        attrs = {"masked_flags": list(flags)}
        if confidence:
            attrs["masked_confidence"] = {k: str(v) for k, v in confidence.items()}
    out = xr.DataArray(mask, dims=qa.dims, coords=qa.coords, name="cloud_mask")
    out.attrs = {"long_name": "pixels left out (True)", "source": qa.name or kind, "kind": kind, **attrs}
    return out


def _scl_code(c) -> int:
    if isinstance(c, str):
        by_name = {v: k for k, v in SCL_CLASSES.items()}
        if c not in by_name:
            raise InvalidArgumentError(f"unknown SCL class {c!r}; use values 0..11 or names: {', '.join(by_name)}")
        return by_name[c]
    return int(c)


def _kind_of(data, qa: xr.DataArray) -> str:
    name = str(qa.name or "")
    for kind, names in _NAMES.items():
        if name in names:
            return kind
    return "qa_pixel" if sensor_of(data) == "landsat" else "scl"


def _spectral_mask(data, classes, spectral: dict, method: str = "spectral") -> xr.DataArray:
    from .fmask import fmask_classes
    from .spectral_mask import SPECTRAL_DEFAULT_MASK, spectral_classes, spectral_codes

    if not isinstance(data, xr.Dataset):
        raise InvalidArgumentError("spectral cloud detection needs a Dataset of reflectance bands, got a DataArray")
    codes = spectral_codes(SPECTRAL_DEFAULT_MASK if classes is None else classes)
    cls = (fmask_classes if method == "fmask" else spectral_classes)(data, **spectral)
    lut = class_lut(codes)
    mask = elementwise(class_mask, cls.data, dtype=bool, args=(lut,))
    out = xr.DataArray(mask, dims=cls.dims, coords=cls.coords, name="cloud_mask")
    out.attrs = {"long_name": "pixels left out (True)", "source": f"{method} tests", "kind": method,
                 "masked_classes": list(codes)}
    return out


def _quality_band(data, band, required: bool = True):
    if isinstance(data, xr.DataArray):
        return data
    if band:
        names = [band] if band in data.data_vars else []
    else:
        names = [n for ns in _NAMES.values() for n in ns if n in data.data_vars]
    if not names:
        if not required:
            return None
        raise UnknownBandError(
            f"no quality band {band or 'scl/qa_pixel'!r} in the dataset (variables: "
            f"{', '.join(map(str, data.data_vars))}); load it with geoproc.load(items, [..., 'scl' or 'qa_pixel']), "
            "name it with band=..., or detect clouds from reflectance with method='spectral' "
            "(bands blue, green, red, nir, swir16, swir22)"
        )
    return data[names[0]]
