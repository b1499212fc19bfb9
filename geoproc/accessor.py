"""The ``.geoproc`` accessor on xarray objects: aliases of the public functions, no logic.

>>> ds = xr.Dataset({"red": ("x", np.float32([0.1, 0.2])), "nir": ("x", np.float32([0.5, 0.3]))})
>>> ds.geoproc.ndvi().equals(geoproc.ndvi(ds))  # the same function
True
"""

from __future__ import annotations

import types

import xarray as xr

from .change import burn_severity, change, change_mask, otsu_threshold
from .classify import classify
from .predict import predict
from .compositing import composite
from .edges import canny, sobel
from .enhance import adjust_gamma, clahe, equalize_hist, percentiles, rgb, stretch
from .filters import bilateral_filter, gaussian_filter, lee_filter, median_filter
from .indices import index, ndvi, spectral_indices
from .explore import explore
from .io.cog import to_cog
from .io.zarr import to_zarr
from .loader import read_report
from .masking import cloud_mask
from .morphology import dilate, remove_small_objects
from .pansharpen import pansharpen
from .spectral_mask import spectral_classes
from .fmask import fmask_classes
from .texture import glcm
from .bfast import bfast_monitor
from .ccdc import ccdc_segments
from .timeseries import harmonic_fit
from .zonal import zonal_stats
from .segment import felzenszwalb, label, object_stats
from .vectorize import vectorize

#: accessor method name -> public function; kept in step with ``geoproc.__all__`` by a test
ALIASES = {
    "cloud_mask": cloud_mask,
    "spectral_classes": spectral_classes,
    "fmask_classes": fmask_classes,
    "dilate": dilate,
    "remove_small_objects": remove_small_objects,
    "ndvi": ndvi,
    "index": index,
    "spectral_indices": spectral_indices,
    "median_filter": median_filter,
    "gaussian_filter": gaussian_filter,
    "bilateral_filter": bilateral_filter,
    "lee_filter": lee_filter,
    "percentiles": percentiles,
    "stretch": stretch,
    "adjust_gamma": adjust_gamma,
    "equalize_hist": equalize_hist,
    "clahe": clahe,
    "rgb": rgb,
    "pansharpen": pansharpen,
    "glcm": glcm,
    "sobel": sobel,
    "canny": canny,
    "classify": classify,
    "predict": predict,
    "composite": composite,
    "change": change,
    "change_mask": change_mask,
    "otsu_threshold": otsu_threshold,
    "burn_severity": burn_severity,
    "harmonic_fit": harmonic_fit,
    "bfast_monitor": bfast_monitor,
    "ccdc_segments": ccdc_segments,
    "zonal_stats": zonal_stats,
    "label": label,
    "object_stats": object_stats,
    "felzenszwalb": felzenszwalb,
    "vectorize": vectorize,
    "to_zarr": to_zarr,
    "to_cog": to_cog,
    "explore": explore,
    "read_report": read_report,
}


class _GeoprocAccessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset):
        self._obj = obj


def _alias(func):
    def method(self, *args, **kwargs):
        return func(self._obj, *args, **kwargs)

    # Built on the function's own globals, so doctest counts the alias as part of the function's module,
    # where its examples already run with that module's names, and does not run them again here.
    alias = types.FunctionType(method.__code__, func.__globals__, func.__name__, None, method.__closure__)
    alias.__doc__ = func.__doc__
    return alias


for _name, _func in ALIASES.items():
    setattr(_GeoprocAccessor, _name, _alias(_func))

xr.register_dataarray_accessor("geoproc")(_GeoprocAccessor)
xr.register_dataset_accessor("geoproc")(_GeoprocAccessor)
