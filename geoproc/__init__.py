"""geoproc: satellite imagery at scale.

Find scenes in a STAC catalog, load them lazily onto one grid, process every
chunk with numba kernels, and write Zarr, on a Dask cluster.

>>> import geoproc
>>> items = geoproc.search("geoproc-demo/archive/catalog.json", datetime="2024-05")
>>> ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10)
>>> ndvi = geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds))
>>> geoproc.to_zarr(ndvi, "ndvi.zarr")
'ndvi.zarr'
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geoproc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from . import accessor as _accessor  # noqa: F401,E402  (registers .geoproc)
from .change import burn_severity, change, change_mask, otsu_threshold  # noqa: E402
from .classify import classify  # noqa: E402
from .predict import predict  # noqa: E402
from .compositing import composite  # noqa: E402
from .edges import canny, sobel  # noqa: E402
from .enhance import adjust_gamma, clahe, equalize_hist, percentiles, rgb, stretch  # noqa: E402
from .errors import GeoprocError  # noqa: E402
from .filters import bilateral_filter, gaussian_filter, lee_filter, median_filter  # noqa: E402
from .grid import GridSpec  # noqa: E402
from .indices import index, ndvi, register_index, spectral_indices  # noqa: E402
from .io.stac import search  # noqa: E402
from .io.cog import to_cog  # noqa: E402
from .explore import explore  # noqa: E402
from .io.zarr import open_result, to_zarr  # noqa: E402
from .loader import load, read_report  # noqa: E402
from .masking import cloud_mask  # noqa: E402
from .morphology import dilate, remove_small_objects  # noqa: E402
from .pansharpen import pansharpen  # noqa: E402
from .planning import plan  # noqa: E402
from .spectral_mask import spectral_classes  # noqa: E402
from .fmask import fmask_classes  # noqa: E402
from .texture import glcm  # noqa: E402
from .bfast import bfast_monitor  # noqa: E402
from .ccdc import ccdc_segments  # noqa: E402
from .timeseries import harmonic_fit  # noqa: E402
from .zonal import zonal_stats  # noqa: E402
from .segment import felzenszwalb, label, object_stats  # noqa: E402
from .vectorize import vectorize  # noqa: E402

__all__ = [
    "search",
    "load",
    "plan",
    "read_report",
    "cloud_mask",
    "spectral_classes",
    "fmask_classes",
    "dilate",
    "remove_small_objects",
    "ndvi",
    "index",
    "spectral_indices",
    "register_index",
    "median_filter",
    "gaussian_filter",
    "bilateral_filter",
    "lee_filter",
    "percentiles",
    "stretch",
    "adjust_gamma",
    "equalize_hist",
    "clahe",
    "rgb",
    "pansharpen",
    "glcm",
    "sobel",
    "canny",
    "classify",
    "predict",
    "composite",
    "change",
    "change_mask",
    "otsu_threshold",
    "burn_severity",
    "harmonic_fit",
    "bfast_monitor",
    "ccdc_segments",
    "zonal_stats",
    "label",
    "object_stats",
    "felzenszwalb",
    "vectorize",
    "to_zarr",
    "to_cog",
    "explore",
    "open_result",
    "GridSpec",
    "GeoprocError",
    "__version__",
]
