"""Objects in rasters: connected components with labels unique across chunks, their statistics, and Felzenszwalb's
region segmentation per chunk with a halo.

* :func:`label` labels each chunk (:func:`geoproc.kernels.segment.label_equal`), shifts every chunk's labels past
  those of the chunks before it, and joins the labels that touch across chunk edges and corners with union-find
  (:mod:`geoproc._chunklabels`); the result equals ``scipy.ndimage.label`` on the whole array up to the numbering.
* :func:`felzenszwalb` segments each chunk padded by a halo, keeps the chunk's core, and joins two segments across
  a seam when the padded segmentations on both sides put the two pixels facing each other in one segment. On an
  array of one chunk it is scikit-image's ``felzenszwalb`` (with ``sigma=0``: smooth first if you want smoothing).
* :func:`object_stats` gives each label's size, area, centroid and bounds (and statistics of other data) from the
  partial aggregates of :func:`geoproc.zonal_stats`.
"""

from __future__ import annotations

from functools import partial

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ._chunklabels import merge_block_labels
from .errors import InvalidArgumentError
from .kernels.segment import felzenszwalb_edges, felzenszwalb_merge, label_equal
from .zonal import zonal_stats

__all__ = ["label", "object_stats", "felzenszwalb"]


def _check_2d(obj, what: str) -> None:
    if not isinstance(obj, xr.DataArray) or obj.dims[-2:] != ("y", "x"):
        raise InvalidArgumentError(f"{what} must be a DataArray whose last dims are (y, x); got "
                                   f"{getattr(obj, 'dims', type(obj).__name__)}")


def _side_keys(a: np.ndarray) -> dict:
    return {"top": a[0], "bottom": a[-1], "left": a[:, 0], "right": a[:, -1]}


def _label_block(values: np.ndarray, connectivity: int):
    v = np.ascontiguousarray(values, dtype=np.int64)
    return label_equal(v, connectivity), _side_keys(v)


def _equal_pairs(connectivity: int, ka, kb, la, lb):
    i = np.flatnonzero((ka == kb) & (ka != 0))
    ia, ib = [i], [i]
    if connectivity == 2:
        j = np.flatnonzero((ka[:-1] == kb[1:]) & (ka[:-1] != 0))
        k = np.flatnonzero((ka[1:] == kb[:-1]) & (ka[1:] != 0))
        ia += [j, k + 1]
        ib += [j + 1, k]
    return np.concatenate(ia), np.concatenate(ib)


def _equal_corner(ka, kb) -> bool:
    return ka == kb and ka != 0


def label(mask: xr.DataArray, connectivity: int = 1) -> xr.DataArray:
    """Connected components of a mask (or of equal values of a class raster), numbered across all chunks.

    Parameters
    ----------
    mask
        ``(y, x)`` boolean or integer DataArray, numpy- or dask-backed. With integers, each connected region of
        one non-zero value is an object; 0 is background.
    connectivity
        1: pixels touching by an edge are connected (4 neighbours); 2: by an edge or a corner (8 neighbours).

    Returns
    -------
    xarray.DataArray
        int64 labels ``1..n`` (0: background), on the same grid and chunks; lazy for dask input. Equal to
        ``scipy.ndimage.label`` of the whole array up to the numbering.

    Examples
    --------
    >>> m = xr.DataArray(np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 1, 1]], bool), dims=("y", "x"))
    >>> label(m.chunk(2)).values
    array([[1, 1, 0, 2],
           [0, 0, 0, 2],
           [3, 0, 2, 2]])
    """
    _check_2d(mask, "mask")
    if mask.ndim != 2:
        raise InvalidArgumentError(f"label works on one (y, x) slice; select one from dims {mask.dims} first")
    if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise InvalidArgumentError(f"label needs a boolean or integer raster, not {mask.dtype}; threshold it first "
                                   "(ndvi > 0.5)")
    if connectivity not in (1, 2):
        raise InvalidArgumentError(f"connectivity must be 1 (edges) or 2 (edges and corners), not {connectivity}")
    if not isinstance(mask.data, da.Array):
        out = _label_block(np.asarray(mask.values), connectivity)[0]
    else:
        blocks = mask.data.to_delayed()
        results = np.empty(blocks.shape, dtype=object)
        for idx in np.ndindex(blocks.shape):
            results[idx] = dask.delayed(_label_block)(blocks[idx], connectivity)
        out = merge_block_labels(results, mask.data.chunks, partial(_equal_pairs, connectivity),
                                 _equal_corner if connectivity == 2 else None)
    res = xr.DataArray(out, dims=mask.dims, coords=mask.coords, name="label", attrs=dict(mask.attrs))
    res.attrs.pop("_FillValue", None)
    return res


def _felz_block(block: np.ndarray, halo: tuple, scale: float, min_size: int):
    """Felzenszwalb on a padded block; its core's labels and, per side, whether each edge pixel shares a segment
    with the pixel across the seam (which the halo holds)."""
    img = np.ascontiguousarray(np.moveaxis(np.asarray(block, dtype=np.float64), 0, -1))
    h, w = img.shape[:2]
    edges, costs = felzenszwalb_edges(img)
    roots = felzenszwalb_merge(h * w, edges, costs, scale / 255.0, min_size).reshape(h, w)
    t, b, lft, r = halo
    core = roots[t:h - b, lft:w - r]
    _, lab = np.unique(core, return_inverse=True)
    lab = lab.reshape(core.shape).astype(np.int64) + 1
    ch, cw = core.shape
    false_row, false_col = np.zeros(cw, bool), np.zeros(ch, bool)
    keys = {"top": roots[t, lft:w - r] == roots[t - 1, lft:w - r] if t else false_row,
            "bottom": roots[h - b - 1, lft:w - r] == roots[h - b, lft:w - r] if b else false_row,
            "left": roots[t:h - b, lft] == roots[t:h - b, lft - 1] if lft else false_col,
            "right": roots[t:h - b, w - r - 1] == roots[t:h - b, w - r] if r else false_col}
    return lab, keys


def _agree_pairs(ka, kb, la, lb):
    i = np.flatnonzero(ka & kb)
    return i, i


def felzenszwalb(image: xr.DataArray, scale: float = 1.0, min_size: int = 20, *, halo: int = 32) -> xr.DataArray:
    """Felzenszwalb-Huttenlocher graph segmentation of a single- or multiband image, chunk by chunk.

    Parameters
    ----------
    image
        ``(y, x)`` or ``(band, y, x)`` DataArray (any leading dim is the bands); NaN is not allowed (fill it).
        It is not smoothed (scikit-image's ``sigma=0``): run :func:`geoproc.gaussian_filter` first for that.
    scale
        Higher: larger segments (scikit-image's ``scale``; compared with ``scale / 255``, as there).
    min_size
        Segments smaller than this many pixels are merged into a neighbour.
    halo
        Pixels of context read around each chunk. Segments crossing a chunk edge are joined where the
        segmentations of both chunks, each seeing the other's edge in its halo, put the two sides in one segment.

    Returns
    -------
    xarray.DataArray
        int64 segment labels ``1..n`` on the image's grid, unique across chunks; lazy for dask input. On an image
        of one chunk: scikit-image's ``felzenszwalb(image, scale, sigma=0, min_size)`` up to the numbering.

    Examples
    --------
    >>> img = xr.DataArray(np.kron([[0.0, 1.0], [1.0, 0.0]], np.ones((4, 4))), dims=("y", "x"))
    >>> felzenszwalb(img, scale=1, min_size=2).values[::4, ::4]  # diagonal quadrants touch: 8-connected
    array([[1, 2],
           [2, 1]])
    """
    _check_2d(image, "image")
    if image.ndim not in (2, 3):
        raise InvalidArgumentError(f"felzenszwalb takes (y, x) or (band, y, x), not {image.dims}")
    if min_size < 1 or halo < 0:
        raise InvalidArgumentError("min_size must be >= 1 and halo >= 0")
    arr = image.data if image.ndim == 3 else image.data[None]
    lazy = isinstance(arr, da.Array)
    if not lazy:
        out = _felz_block(np.asarray(arr), (0, 0, 0, 0), scale, min_size)[0]
    else:
        arr = arr.rechunk({0: -1})
        chunks = arr.chunks[1:]
        ny, nx = len(chunks[0]), len(chunks[1])
        depth = {0: 0, 1: min(halo, *(c - 1 for c in chunks[0]), max(chunks[0]) - 1) if ny > 1 else 0,
                 2: min(halo, *(c - 1 for c in chunks[1]), max(chunks[1]) - 1) if nx > 1 else 0}
        depth = {k: max(v, 0) for k, v in depth.items()}
        padded = da.overlap.overlap(arr, depth=depth, boundary="none").to_delayed()[0]
        results = np.empty((ny, nx), dtype=object)
        for iy in range(ny):
            for ix in range(nx):
                pad = (depth[1] if iy > 0 else 0, depth[1] if iy < ny - 1 else 0,
                       depth[2] if ix > 0 else 0, depth[2] if ix < nx - 1 else 0)
                results[iy, ix] = dask.delayed(_felz_block)(padded[iy, ix], pad, scale, min_size)
        out = merge_block_labels(results, chunks, _agree_pairs)
    dims = image.dims[-2:]
    return xr.DataArray(out, dims=dims, coords={d: image.coords[d] for d in dims if d in image.coords},
                        name="segment")


def object_stats(labels: xr.DataArray, data: xr.DataArray | None = None, stats=("mean",)) -> pd.DataFrame:
    """Each object's size, area, centroid and bounds, and statistics of ``data`` inside it.

    Parameters
    ----------
    labels
        ``(y, x)`` integer labels (0: background), such as :func:`label` or :func:`felzenszwalb` give.
    data
        Optional ``(y, x)`` or ``(time, y, x)`` values to summarise per object (:func:`geoproc.zonal_stats`).
    stats
        Statistics of ``data`` (those of :func:`geoproc.zonal_stats`).

    Returns
    -------
    pandas.DataFrame
        One row per label (per label and time with a time dim): ``label``, ``pixels``, ``area`` (CRS units
        squared), ``x``/``y`` (centroid of the pixel centres), ``xmin``/``ymin``/``xmax``/``ymax`` (pixel edges),
        then the statistics of ``data``.

    Examples
    --------
    >>> m = xr.DataArray(np.array([[1, 1, 0], [0, 0, 2]]), dims=("y", "x"), coords={"y": [15.0, 5.0],
    ...                  "x": [5.0, 15.0, 25.0]})
    >>> object_stats(m)[["label", "pixels", "area", "x", "y", "xmin", "ymax"]]
       label  pixels   area     x     y  xmin  ymax
    0      1       2  200.0  10.0  15.0   0.0  20.0
    1      2       1  100.0  25.0   5.0  20.0  10.0
    """
    _check_2d(labels, "labels")
    xs, ys = np.asarray(labels["x"].values, float), np.asarray(labels["y"].values, float)
    dx, dy = abs(xs[1] - xs[0]), abs(ys[1] - ys[0])
    chunks = labels.data.chunks if isinstance(labels.data, da.Array) else None
    shape = labels.shape
    if chunks:
        gx = da.broadcast_to(da.from_array(xs, chunks=chunks[1])[None], shape, chunks=chunks)
        gy = da.broadcast_to(da.from_array(ys, chunks=chunks[0])[:, None], shape, chunks=chunks)
        coords = da.stack([gx, gy])
    else:
        coords = np.stack([np.broadcast_to(xs[None], shape), np.broadcast_to(ys[:, None], shape)])
    grid = xr.DataArray(coords, dims=("time", "y", "x"), coords={"time": [0, 1], "y": ys, "x": xs})
    geo = zonal_stats(grid, labels, stats=("count", "mean", "min", "max"), output="xarray")
    out = pd.DataFrame({"label": geo.zone.values, "pixels": geo["count"].isel(time=0).values.astype(np.int64)})
    out["area"] = out["pixels"] * dx * dy
    out["x"], out["y"] = geo["mean"].isel(time=0).values, geo["mean"].isel(time=1).values
    out["xmin"], out["xmax"] = geo["min"].isel(time=0).values - dx / 2, geo["max"].isel(time=0).values + dx / 2
    out["ymin"], out["ymax"] = geo["min"].isel(time=1).values - dy / 2, geo["max"].isel(time=1).values + dy / 2
    if data is None:
        return out
    values = zonal_stats(data, labels, stats=stats).rename(columns={"zone": "label"})
    return out.merge(values, on="label", how="left")
