"""Quick-look PNG images of single-band results (NDVI, composites)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import rasterio

from .errors import OutputError

__all__ = ["quicklook", "colorize"]

# brown -> yellow -> green, the usual NDVI ramp
_RAMP = np.array(
    [[0.0, 140, 81, 10], [0.25, 216, 179, 101], [0.5, 246, 232, 195], [0.75, 127, 188, 65], [1.0, 0, 104, 55]]
)


def colorize(values: np.ndarray, vmin: float = -0.2, vmax: float = 0.9) -> np.ndarray:
    """Map a 2-D float array to RGBA uint8 ``(4, H, W)``; NaN becomes transparent.

    Examples
    --------
    >>> colorize(np.array([[np.nan, 0.9]]))[:, 0, :].T.tolist()
    [[0, 0, 0, 0], [0, 104, 55, 255]]
    """
    v = np.asarray(values, dtype=np.float64)
    t = np.nan_to_num(np.clip((v - vmin) / (vmax - vmin), 0.0, 1.0))
    rgba = np.zeros((4, *v.shape), dtype=np.uint8)
    for c in range(3):
        rgba[c] = np.round(np.interp(t, _RAMP[:, 0], _RAMP[:, c + 1])).astype(np.uint8)
    finite = np.isfinite(v)
    rgba[3] = np.where(finite, 255, 0)
    rgba[:3, ~finite] = 0
    return rgba


def quicklook(values, path: str | os.PathLike, *, vmin: float = -0.2, vmax: float = 0.9, max_size: int = 1024) -> str:
    """Write a colour PNG of a 2-D array, shrunk to at most ``max_size`` pixels per side.

    ``values`` may be lazy (xarray/dask): only the strided pixels are read.

    Examples
    --------
    >>> ndvi_composite = np.linspace(-0.2, 0.9, 64 * 96, dtype="float32").reshape(64, 96)
    >>> quicklook(ndvi_composite, "ndvi.png")
    'ndvi.png'
    """
    if len(values.shape) != 2:
        raise ValueError(f"quicklook takes a 2-D array, got shape {values.shape}")
    step = max(1, -(-max(values.shape) // max_size))
    rgba = colorize(np.asarray(values[::step, ::step]), vmin, vmax)
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path, "w", driver="PNG", width=rgba.shape[2], height=rgba.shape[1], count=4, dtype="uint8") as dst:
                dst.write(rgba)
    except rasterio.errors.RasterioError as exc:
        raise OutputError(f"cannot write quick-look {path}: {exc}; choose a writable location") from None
    aux = path + ".aux.xml"
    if os.path.exists(aux):
        os.remove(aux)
    return path
