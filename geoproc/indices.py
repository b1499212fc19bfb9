"""Spectral indices on loaded bands.

An index is computed in one fused numba pass per chunk, straight from the
stored values: raw integers are decoded (scale, offset, nodata from the
variable's attrs, as ``load(..., raw=True)`` leaves them) inside the kernel, so
no float copy of the bands is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ._blocks import elementwise
from .errors import InvalidArgumentError, UnknownBandError
from .kernels.indices import normalized_difference

__all__ = ["INDICES", "NormalizedDifference", "index", "ndvi", "normalized_difference_array"]


@dataclass(frozen=True)
class NormalizedDifference:
    """An index of the form ``(a - b) / (a + b)``.

    Attributes
    ----------
    a, b
        Common band names.
    long_name
        Human-readable name.
    """

    a: str
    b: str
    long_name: str

    @property
    def formula(self) -> str:
        return f"({self.a} - {self.b}) / ({self.a} + {self.b})"


#: Built-in indices, by upper-case name.
INDICES: dict[str, NormalizedDifference] = {
    "NDVI": NormalizedDifference("nir", "red", "Normalized Difference Vegetation Index"),
    "NDWI": NormalizedDifference("green", "nir", "Normalized Difference Water Index (McFeeters)"),
    "MNDWI": NormalizedDifference("green", "swir16", "Modified Normalized Difference Water Index"),
    "NBR": NormalizedDifference("nir", "swir22", "Normalized Burn Ratio"),
    "NDBI": NormalizedDifference("swir16", "nir", "Normalized Difference Built-up Index"),
    "NDMI": NormalizedDifference("nir", "swir16", "Normalized Difference Moisture Index"),
    "NDSI": NormalizedDifference("green", "swir16", "Normalized Difference Snow Index"),
}


def _decoding(var: xr.DataArray) -> tuple[float, float, float]:
    attrs = var.attrs
    nodata = attrs.get("nodata")
    nodata = np.nan if nodata is None else float(nodata)
    return float(attrs.get("scale", 1.0)), float(attrs.get("offset", 0.0)), nodata


def normalized_difference_array(a, b, a_decode=(1.0, 0.0, np.nan), b_decode=(1.0, 0.0, np.nan)):
    """The dask/numpy layer: ``(a - b) / (a + b)`` as float32; ``*_decode`` is ``(scale, offset, nodata)``."""
    if a.shape != b.shape:
        raise InvalidArgumentError(f"bands differ in shape: {a.shape} vs {b.shape}; load them onto one grid")
    if hasattr(a, "chunks") and hasattr(b, "chunks") and a.chunks != b.chunks:
        b = b.rechunk(a.chunks)
    return elementwise(normalized_difference, a, b, dtype=np.float32, args=(*a_decode, *b_decode))


def index(data: xr.Dataset, name: str, *, bands: Mapping[str, str] | None = None) -> xr.DataArray:
    """Compute a spectral index from the bands of a Dataset.

    Parameters
    ----------
    data
        Dataset with one variable per band (as :func:`geoproc.load` returns).
    name
        Index name, case-insensitive: one of :data:`INDICES`.
    bands
        Map from the common names the formula uses to variable names in
        ``data``, for variables not named by common name (``{"nir": "B08"}``).

    Returns
    -------
    xarray.DataArray
        float32, NaN where an input is nodata/NaN or the denominator is 0; same
        dims and coords as the bands; lazy if they are.

    Examples
    --------
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.1, 0.2])), "nir": ("x", np.float32([0.5, 0.2]))})
    >>> index(ds, "NDVI").values.round(4)
    array([0.6667, 0.    ], dtype=float32)
    """
    spec = INDICES.get(name.upper())
    if spec is None:
        raise InvalidArgumentError(f"unknown index {name!r}; available: {', '.join(sorted(INDICES))}")
    mapping = dict(bands or {})
    inputs = []
    for common in (spec.a, spec.b):
        var = mapping.get(common, common)
        if var not in data.data_vars:
            raise UnknownBandError(
                f"{name.upper()} needs band {common!r} but the dataset has {', '.join(map(str, data.data_vars))}; "
                f"load it, or map it with bands={{{common!r}: 'variable'}}"
            )
        inputs.append(data[var])
    a, b = inputs
    b = b.transpose(*a.dims)
    values = normalized_difference_array(a.data, b.data, _decoding(a), _decoding(b))
    out = xr.DataArray(values, dims=a.dims, coords=a.coords, name=name.upper())
    out.attrs = {"long_name": spec.long_name, "formula": spec.formula, "nodata": np.nan}
    return out


def ndvi(data: xr.Dataset, *, bands: Mapping[str, str] | None = None) -> xr.DataArray:
    """Normalized Difference Vegetation Index, ``(nir - red) / (nir + red)``.

    Same as ``index(data, "NDVI")``; see :func:`index`.

    Examples
    --------
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.05])), "nir": ("x", np.float32([0.45]))})
    >>> round(float(ndvi(ds)[0]), 4)
    0.8
    """
    return index(data, "NDVI", bands=bands)
