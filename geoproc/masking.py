"""Cloud and shadow masks from quality bands.

:func:`cloud_mask` returns True where a pixel must be left out (cloud, shadow,
cirrus, no data, ...), so ``data.where(~mask)`` keeps the clear pixels and
``composite(data, mask=mask)`` skips the others.
"""

from __future__ import annotations

from collections.abc import Iterable

import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import elementwise, is_dask
from .errors import InvalidArgumentError, UnknownBandError
from .kernels.masking import class_lut, class_mask

__all__ = ["cloud_mask", "SCL_CLASSES", "SCL_DEFAULT_MASK", "scl_mask_array"]

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

_SCL_NAMES = ("scl", "SCL")


def scl_mask_array(scl, classes: Iterable[int] = SCL_DEFAULT_MASK):
    """The dask/numpy layer: True where ``scl`` is one of ``classes``.

    Float input (SCL loaded as float, NaN for nodata) is accepted; NaN counts as
    class 0 (no data).
    """
    try:
        lut = class_lut(classes)
    except ValueError as exc:
        raise InvalidArgumentError(f"{exc}; SCL classes are 0..11") from None
    if np.dtype(scl.dtype).kind == "f":
        scl = _float_codes(scl)
    elif np.dtype(scl.dtype).kind not in "iu":
        raise InvalidArgumentError(f"SCL must hold integer class codes, got dtype {scl.dtype}")
    return elementwise(class_mask, scl, dtype=bool, args=(lut,))


def _float_codes(scl):
    if is_dask(scl):
        return da.where(da.isnan(scl), 0, scl).astype(np.int16)
    return np.where(np.isnan(scl), 0, scl).astype(np.int16)


def cloud_mask(
    data: xr.Dataset | xr.DataArray,
    *,
    band: str | None = None,
    classes: Iterable[int] | None = None,
) -> xr.DataArray:
    """Mask of pixels to leave out, from a Sentinel-2 SCL band.

    Parameters
    ----------
    data
        A Dataset holding an SCL variable (``scl`` or ``SCL``, or the one named
        by ``band``), or the SCL DataArray itself.
    band
        Name of the quality variable in ``data``.
    classes
        SCL values to mask; default :data:`SCL_DEFAULT_MASK`.

    Returns
    -------
    xarray.DataArray
        Boolean, True where the pixel is cloud, shadow, cirrus, saturated or no
        data; same dims and coords as the quality band; lazy if the input is.

    Examples
    --------
    >>> scl = xr.DataArray(np.array([[4, 8], [3, 6]], dtype="uint8"), dims=("y", "x"))
    >>> cloud_mask(scl).values
    array([[False,  True],
           [ True, False]])
    """
    qa = _quality_band(data, band)
    codes = SCL_DEFAULT_MASK if classes is None else tuple(int(c) for c in classes)
    mask = scl_mask_array(qa.data, codes)
    out = xr.DataArray(mask, dims=qa.dims, coords=qa.coords, name="cloud_mask")
    out.attrs = {"long_name": "pixels left out (True)", "source": qa.name or "scl", "masked_classes": list(codes)}
    return out


def _quality_band(data, band):
    if isinstance(data, xr.DataArray):
        return data
    names = [band] if band else [n for n in _SCL_NAMES if n in data.data_vars]
    if not names or names[0] not in data.data_vars:
        raise UnknownBandError(
            f"no quality band {band or 'scl'!r} in the dataset (variables: {', '.join(map(str, data.data_vars))}); "
            "load it with geoproc.load(items, [..., 'scl']) or name it with band=..."
        )
    return data[names[0]]
