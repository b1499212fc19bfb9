"""Edges and gradients: Sobel magnitude and direction, and the Canny edge detector.

Both work on the last two dims (``y``, ``x``) of a DataArray, one 2-D image per
index of the other dims, and give the same result for any chunking:

* :func:`sobel` is a 3 x 3 neighbourhood operation run with a 1-pixel halo
  (``dask.array.overlap``), mirrored at the image border as scipy's
  ``reflect`` mode.
* :func:`canny` smooths, differentiates and thins every chunk with a halo of
  ``int(4 sigma + 0.5) + 2`` pixels, exactly as ``skimage.feature.canny``
  does, then links edges by hysteresis across the whole image: edge pixels
  are labelled chunk by chunk, the labels that touch across chunk borders are
  joined in one small task, and each chunk keeps the components that reach a
  strong pixel anywhere. Hysteresis is global, so every chunk's labels must
  exist before any output chunk is final (int32 labels, 4 bytes a pixel).

Numpy input is processed the same way, tile by tile (:data:`TILE`), in one
thread.
"""

from __future__ import annotations

from functools import partial

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ._blocks import is_dask
from .errors import InvalidArgumentError
from .filters import float_values
from .kernels.edges import canny_classes, label_classes, sobel_gradient, union_roots

__all__ = ["sobel", "canny", "sobel_array", "canny_array", "hysteresis_array"]


# --- shared with geoproc.texture: images on the last two axes ------------------------------------------


def image_layout(data: xr.DataArray, dims: tuple[str, str]) -> xr.DataArray:
    """``data`` with the spatial ``dims`` moved last (a typed error if it lacks them)."""
    if not isinstance(data, xr.DataArray):
        kind = type(data).__name__
        raise InvalidArgumentError(f"expected an xarray.DataArray, got {kind}; pick one variable: ds['red']")
    missing = [d for d in dims if d not in data.dims]
    if missing:
        raise InvalidArgumentError(
            f"data has no dimension {missing[0]!r} (dims: {data.dims}); name the spatial dims with dims=('y', 'x')"
        )
    return data.transpose(..., *dims)


def as_float(arr):
    """Floats as they are; integers as float32 up to 16 bits (exact), float64 beyond."""
    kind = np.dtype(arr.dtype).kind
    if kind == "f":
        return arr
    if kind not in "iub":
        raise InvalidArgumentError(f"expected numbers, got dtype {arr.dtype}; convert the data to float first")
    return arr.astype(np.float32 if np.dtype(arr.dtype).itemsize <= 2 else np.float64)


#: Numpy input is processed in tiles of this many pixels a side (the working set of a kernel then stays in
#: cache; a whole 4096 x 4096 image at once is up to twice slower), each with its halo, as dask chunks are.
TILE = 1024


def tiles(n: int, size: int | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` of the tiles of an axis of length ``n`` (``size`` default :data:`TILE`)."""
    size = size or TILE
    return [(i, min(i + size, n)) for i in range(0, n, size)] or [(0, 0)]


def neighbourhood(block_func, arr, halo: int, boundary, *, dtype, new_axes: tuple[int, ...] = (), args=()):
    """Apply ``block_func(padded_block, *args)`` to every chunk of ``arr`` with a ``halo`` on its last two axes.

    ``boundary`` is a fill value (NaN) or ``"reflect"`` (scipy's ``reflect``:
    the edge pixel repeated, ``d c b a | a b c d``). ``block_func`` maps a block
    ``(*lead, Y + 2 halo, X + 2 halo)`` to ``(*lead, *new_axes, Y, X)``. Dask
    input runs chunk by chunk, numpy input tile by tile (:data:`TILE`); either
    way a block sees exactly the pixels it would see in the whole array.
    """
    nd = arr.ndim
    if not is_dask(arr):
        pad = [(0, 0)] * (nd - 2) + [(halo, halo)] * 2
        if boundary == "reflect":
            padded = np.pad(arr, pad, mode="symmetric")
        else:
            padded = np.pad(arr, pad, mode="constant", constant_values=boundary)
        h, w = arr.shape[-2:]
        out = np.empty((*arr.shape[:-2], *new_axes, h, w), dtype=dtype)
        for y0, y1 in tiles(h):
            for x0, x1 in tiles(w):
                block = padded[..., y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                out[..., y0:y1, x0:x1] = block_func(block, *args)
        return out
    depth = {nd - 2: halo, nd - 1: halo}
    padded = da.overlap.overlap(arr, depth=depth, boundary={nd - 2: boundary, nd - 1: boundary})
    inner = [tuple(c - 2 * halo for c in padded.chunks[ax]) for ax in (nd - 2, nd - 1)]
    chunks = (*padded.chunks[: nd - 2], *((n,) for n in new_axes), *inner)
    new_axis = list(range(nd - 2, nd - 2 + len(new_axes))) or None
    meta = np.empty((0,) * (nd + len(new_axes)), dtype=dtype)
    return da.map_blocks(block_func, padded, *args, dtype=dtype, chunks=chunks, new_axis=new_axis, meta=meta)


# --- Sobel ---------------------------------------------------------------------------------------------


def _sobel_block(direction: bool, block: np.ndarray) -> np.ndarray:
    lead = block.shape[:-2]
    if not lead:
        return sobel_gradient(block, direction)
    out = np.empty((*lead, 1 + direction, block.shape[-2] - 2, block.shape[-1] - 2), dtype=np.float32)
    for idx in np.ndindex(*lead):
        out[idx] = sobel_gradient(block[idx], direction)
    return out


def sobel_array(arr, direction: bool = True):
    """The dask/numpy layer: float32 ``(*lead, 1 or 2, y, x)`` (magnitude, then direction) of ``(*lead, y, x)``."""
    block = partial(_sobel_block, bool(direction))
    return neighbourhood(block, as_float(arr), 1, "reflect", dtype=np.float32, new_axes=(1 + bool(direction),))


def sobel(data: xr.DataArray, *, direction: bool = True, dims: tuple[str, str] = ("y", "x")) -> xr.Dataset:
    """Gradient magnitude and direction by the Sobel operator.

    Parameters
    ----------
    data
        An image, or a stack of images (other dims, such as ``time``, are
        kept and each 2-D slice is processed on its own).
    direction
        Also compute the direction (an ``arctan2`` per pixel: most of the
        cost when the magnitude is all you need).
    dims
        The spatial dims (rows, columns).

    Returns
    -------
    xarray.Dataset
        float32 ``magnitude`` and ``direction``, with ``data``'s dims, coords
        and CRS; lazy if ``data`` is.

        * ``gx = scipy.ndimage.sobel(img, axis=-1)`` (increasing column, ``x``)
          and ``gy = scipy.ndimage.sobel(img, axis=-2)`` (increasing row: south
          on a north-up raster): unnormalised 3 x 3 kernels ``[1, 2, 1]`` x
          ``[-1, 0, 1]``, image borders mirrored (scipy's ``reflect``), computed
          in float64.
        * ``magnitude = sqrt(gx**2 + gy**2)``; ``skimage.filters.sobel`` is this
          divided by ``4 * sqrt(2)``.
        * ``direction = arctan2(gy, gx)`` in radians, in ``[-pi, pi]``; NaN where
          the magnitude is 0.

        Both are NaN where any pixel of the 3 x 3 neighbourhood is NaN, as
        with ``scipy.ndimage.sobel`` (``skimage.filters.sobel`` leaves out
        NaN at the kernel's zero weights, so it is finite at a few more).

    Examples
    --------
    >>> img = xr.DataArray(np.tile(np.float32([0, 0, 1, 1]), (3, 1)), dims=("y", "x"))
    >>> g = sobel(img)
    >>> g.magnitude.values[1]
    array([0., 4., 4., 0.], dtype=float32)
    >>> float(g.direction[1, 1])  # the gradient points along +x
    0.0
    """
    img = image_layout(data, dims)
    out = sobel_array(float_values(img), direction)
    lead = (slice(None),) * (img.ndim - 2)
    ds = xr.Dataset(coords=img.coords)
    ds["magnitude"] = xr.DataArray(out[(*lead, 0)], dims=img.dims, coords=img.coords)
    ds["magnitude"].attrs = {"long_name": "Sobel gradient magnitude", "nodata": np.nan}
    if direction:
        ds["direction"] = xr.DataArray(out[(*lead, 1)], dims=img.dims, coords=img.coords)
        ds["direction"].attrs = {
            "long_name": "Sobel gradient direction, arctan2(d/drow, d/dcol)",
            "units": "radian",
            "nodata": np.nan,
        }
    ds.attrs = {"source": str(data.name) if data.name is not None else "image", "boundary": "reflect"}
    return ds


# --- Canny ---------------------------------------------------------------------------------------------


def _gaussian_weights(sigma: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel (``truncate=4``), computed with the same numpy expression."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _canny_block(halo, shape, row_starts, col_starts, weights, consts, low, high, block, block_id=None):
    """Edge candidates (0 / 1 weak / 2 strong) of one chunk, from the chunk with its halo."""
    i, j = block_id if block_id is not None else (0, 0)
    r0, c0 = row_starts[i], col_starts[j]
    # rows and columns of the padded block that lie inside the image
    top, left = max(0, halo - r0), max(0, halo - c0)
    bottom = min(block.shape[0], shape[0] - r0 + halo)
    right = min(block.shape[1], shape[1] - c0 + halo)
    return canny_classes(np.ascontiguousarray(block), top, bottom, left, right, weights, consts, low, high)


def _label_block(classes: np.ndarray) -> np.ndarray:
    """Module-level wrapper, so that tasks pickle the kernel by reference (see geoproc._blocks)."""
    return label_classes(np.ascontiguousarray(classes))


def _borders(labels: np.ndarray) -> tuple:
    """Number of labels and the four edges of a chunk's labels (top, bottom, left, right)."""
    n = int(np.abs(labels).max()) if labels.size else 0
    return n, labels[0].copy(), labels[-1].copy(), labels[:, 0].copy(), labels[:, -1].copy()


def _line_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(a[k], b[k + s])``, s in -1, 0, 1, of two facing lines of pixels where both are edges."""
    out_a, out_b = [], []
    n = len(a)
    for s in (-1, 0, 1):
        aa = a[max(0, -s) : n - max(0, s)]
        bb = b[max(0, s) : n - max(0, -s)]
        keep = (aa != 0) & (bb != 0)
        out_a.append(aa[keep])
        out_b.append(bb[keep])
    return np.concatenate(out_a), np.concatenate(out_b)


def _resolve(summaries: list, numblocks: tuple[int, int]) -> list:
    """Per chunk, the weak labels on its border that are connected, through other chunks, to a strong pixel."""
    ny, nx = numblocks
    grid = [[summaries[i * nx + j] for j in range(nx)] for i in range(ny)]
    counts = np.array([s[0] for s in summaries], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])[:-1].reshape(ny, nx)
    total = int(counts.sum())

    def ids(i, j, labels):
        return offsets[i, j] + np.abs(labels).astype(np.int64) - 1

    pa, pb = [], []

    def join(ia, ja, a, ib, jb, b):
        la, lb = _line_pairs(a, b)
        pa.append(ids(ia, ja, la))
        pb.append(ids(ib, jb, lb))

    for i in range(ny):
        for j in range(nx):
            _, top, bottom, left, right = grid[i][j]
            if i + 1 < ny:  # the chunk below
                join(i, j, bottom, i + 1, j, grid[i + 1][j][1])
            if j + 1 < nx:  # the chunk to the right
                join(i, j, right, i, j + 1, grid[i][j + 1][3])
            if i + 1 < ny and j + 1 < nx:  # diagonal corners: \ and /
                join(i, j, bottom[-1:], i + 1, j + 1, grid[i + 1][j + 1][1][:1])
                join(i, j + 1, grid[i][j + 1][2][:1], i + 1, j, grid[i + 1][j][1][-1:])
    good: list = [[np.zeros(0, np.int32) for _ in range(nx)] for _ in range(ny)]
    if total == 0 or not pa:
        return good
    roots = union_roots(total, np.concatenate(pa), np.concatenate(pb))
    strong = np.zeros(total, dtype=bool)
    for i in range(ny):
        for j in range(nx):
            edge = np.concatenate(grid[i][j][1:])
            strong[roots[ids(i, j, edge[edge < 0])]] = True
    for i in range(ny):
        for j in range(nx):
            edge = np.unique(np.concatenate(grid[i][j][1:]))
            weak = edge[edge > 0]
            good[i][j] = weak[strong[roots[ids(i, j, weak)]]].astype(np.int32)
    return good


def _finish_block(labels: np.ndarray, good: list, block_id: tuple[int, int]) -> np.ndarray:
    keep = good[block_id[0]][block_id[1]]
    out = labels < 0
    if keep.size:
        lut = np.zeros(int(labels.max()) + 1, dtype=bool)
        lut[keep] = True
        out |= lut[np.maximum(labels, 0)]
    return out


def _canny_2d(img, sigma: float, low: float, high: float):
    dtype = np.dtype(img.dtype)
    weights = _gaussian_weights(sigma)
    halo = len(weights) // 2 + 2
    consts = np.array([np.finfo(dtype).eps], dtype=dtype)
    # as skimage compares them: low is a C float in its non-maximum suppression (0 becomes 1e-14), and
    # high a Python float compared with an array of the image's float type (numpy >= 2 casts it to that type)
    low_r = float(np.float32(low if low != 0 else 1e-14))
    high_r = float(dtype.type(high))
    h, w = img.shape
    if not is_dask(img):
        padded = np.pad(img, halo, mode="constant", constant_values=np.nan)
        classes = np.empty((h, w), dtype=np.uint8)
        row_tiles, col_tiles = tiles(h), tiles(w)
        starts = (tuple(t[0] for t in row_tiles), tuple(t[0] for t in col_tiles))
        for i, (y0, y1) in enumerate(row_tiles):
            for j, (x0, x1) in enumerate(col_tiles):
                block = padded[y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                classes[y0:y1, x0:x1] = _canny_block(
                    halo, (h, w), *starts, weights, consts, low_r, high_r, block, block_id=(i, j)
                )
        return hysteresis_array(classes)
    padded = da.overlap.overlap(img, depth={0: halo, 1: halo}, boundary={0: np.nan, 1: np.nan})
    chunks = tuple(tuple(c - 2 * halo for c in padded.chunks[ax]) for ax in (0, 1))
    starts = [tuple(int(s) for s in np.cumsum((0, *c[:-1]))) for c in chunks]
    block = partial(_canny_block, halo, (h, w), starts[0], starts[1], weights, consts, low_r, high_r)
    meta = np.empty((0, 0), np.uint8)
    return hysteresis_array(da.map_blocks(block, padded, dtype=np.uint8, chunks=chunks, meta=meta))


def hysteresis_array(classes):
    """Hysteresis on a 2-D uint8 array of 0 (none), 1 (weak), 2 (strong): True on the 8-connected components of
    non-zero pixels that hold a strong pixel. Dask input is labelled chunk by chunk and joined across chunks."""
    if not is_dask(classes):
        return label_classes(np.ascontiguousarray(classes)) < 0
    labels = classes.map_blocks(_label_block, dtype=np.int32, meta=np.empty((0, 0), np.int32))
    summaries = [dask.delayed(_borders)(b) for b in labels.to_delayed(optimize_graph=False).ravel()]
    good = dask.delayed(_resolve)(summaries, labels.numblocks)
    # the last step is a plain layer, not a blockwise one: blockwise fusion would otherwise inline the labelling
    # into it and run it a second time for the border summaries, which read the same labels
    name = "canny-edges-" + tokenize(labels.name, good.key)
    layer = {
        (name, i, j): (_finish_block, (labels.name, i, j), good.key, (i, j))
        for i in range(labels.numblocks[0])
        for j in range(labels.numblocks[1])
    }
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[labels, good])
    return da.Array(graph, name, chunks=labels.chunks, dtype=bool)


def canny_array(arr, sigma: float = 1.0, low_threshold: float = 0.1, high_threshold: float = 0.2):
    """The dask/numpy layer: boolean Canny edges of every 2-D image on the last two axes of ``arr``."""
    if np.dtype(arr.dtype).kind != "f":
        arr = as_float(arr).astype(np.float64)
    if arr.ndim == 2:
        return _canny_2d(arr, sigma, low_threshold, high_threshold)
    lead = arr.shape[:-2]
    slices = [_canny_2d(arr[idx], sigma, low_threshold, high_threshold) for idx in np.ndindex(*lead)]
    stack = da.stack if is_dask(arr) else np.stack
    return stack(slices).reshape(arr.shape)


def canny(
    data: xr.DataArray,
    *,
    sigma: float = 1.0,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    dims: tuple[str, str] = ("y", "x"),
) -> xr.DataArray:
    """Canny edges, as ``skimage.feature.canny`` finds them, on any chunking.

    Parameters
    ----------
    data
        An image, or a stack of images (each 2-D slice along ``dims`` is
        processed on its own). NaN pixels are left out, as pixels outside
        ``mask`` in ``skimage.feature.canny``.
    sigma
        Standard deviation of the Gaussian smoothing, in pixels.
    low_threshold, high_threshold
        Hysteresis thresholds on the gradient magnitude (Sobel of the
        smoothed image, unnormalised): a pixel is an edge where it is a local
        maximum >= ``low_threshold`` connected (8-connectivity, through such
        pixels) to one >= ``high_threshold``. Default 0.1 and 0.2, skimage's
        for float images.
    dims
        The spatial dims (rows, columns).

    Returns
    -------
    xarray.DataArray
        Boolean, True on edges; ``data``'s dims, coords and CRS; lazy if
        ``data`` is. False at NaN pixels and their 8 neighbours, and on the
        1-pixel frame of the image (as skimage).

    Notes
    -----
    On float32 and float64 images the output is identical to
    ``skimage.feature.canny(np.nan_to_num(img), sigma, low, high,
    mask=~np.isnan(img))`` (scikit-image 0.26, the version tested, with its
    default ``mode='constant'``): every step is replayed in skimage's order
    and precision. Integer images are
    converted to float64 as they are (skimage would first rescale them to
    [0, 1]). ``use_quantiles`` is not offered: it needs the whole image's
    magnitude first.

    A chunk is smoothed, differentiated and thinned with a halo of
    ``int(4 sigma + 0.5) + 2`` pixels; hysteresis connectivity is then
    resolved across chunks exactly (see the module docstring), so any
    chunking gives the same edges as the whole image.

    Examples
    --------
    >>> img = np.zeros((9, 9), np.float32)
    >>> img[2:7, 2:7] = 1  # a bright square
    >>> edges = canny(xr.DataArray(img, dims=("y", "x")), sigma=1.0)
    >>> edges.values.astype(int)
    array([[0, 0, 0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0, 0, 0],
           [0, 0, 1, 1, 1, 1, 1, 0, 0],
           [0, 0, 1, 0, 0, 0, 1, 0, 0],
           [0, 0, 1, 0, 0, 0, 1, 0, 0],
           [0, 0, 1, 0, 0, 0, 1, 0, 0],
           [0, 0, 1, 1, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0, 0, 0]])
    """
    if not sigma > 0:
        raise InvalidArgumentError(f"sigma must be > 0 (pixels), got {sigma}")
    low = 0.1 if low_threshold is None else float(low_threshold)
    high = 0.2 if high_threshold is None else float(high_threshold)
    if high < low:
        raise InvalidArgumentError(f"high_threshold ({high}) is below low_threshold ({low}); swap them")
    img = image_layout(data, dims)
    edges = canny_array(float_values(img), float(sigma), low, high)
    out = xr.DataArray(edges, dims=img.dims, coords=img.coords, name="edges")
    out.attrs = {"long_name": "Canny edges", "sigma": float(sigma), "low_threshold": low, "high_threshold": high}
    return out
