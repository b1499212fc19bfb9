"""The output pixel grid: CRS, transform and shape, and its tiling into chunks.

Pure geometry: no file IO, no dask. A :class:`GridSpec` is small, frozen and
picklable, so chunk tasks carry the exact sub-grid they fill.

The convention is a north-up grid (no rotation): ``transform.a > 0`` is the
pixel width, ``transform.e < 0`` the negative pixel height, and
``(transform.c, transform.f)`` the top-left corner of the top-left pixel.
Coordinates of a pixel are those of its centre.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from .errors import InvalidArgumentError
from .kernels.chunk_index import rows_from_ranges

__all__ = ["GridSpec", "normalize_crs", "transform_bounds", "bounds_intersect", "SNAP_TOLERANCE", "ALIGN_TOLERANCE"]

#: Bounds within this many pixels of a grid line count as on it when a grid is snapped. In pixels, not
#: CRS units: far from the origin (0.1 m pixels at UTM northings are indices near 5e7) float rounding
#: alone exceeds 1e-9 pixel, and a grid's own bounds must give back that grid.
SNAP_TOLERANCE = 1e-6

#: Two grids whose pixel edges are within this many pixels of each other are the same grid, and a
#: file's edges this close to an output grid's are on it. Catalogs round transforms (to 0.1 mm, or to
#: 12 significant digits as Planet's NICFI mosaics do: 2e-6 px); a thousandth of a pixel moves no
#: pixel centre across an edge, so a nearest-neighbour read gives the same pixels either way.
ALIGN_TOLERANCE = 1e-3

Bounds = tuple[float, float, float, float]


@lru_cache(maxsize=256)
def _crs(crs: str) -> CRS:
    return CRS.from_user_input(crs)


def normalize_crs(crs: object) -> str:
    """Return a canonical string for ``crs``: ``"EPSG:n"`` where possible, else WKT.

    Parameters
    ----------
    crs
        An EPSG code (``32633``), an ``"EPSG:32633"`` string, WKT, a PROJ string,
        or a ``pyproj``/``rasterio`` CRS object.

    Examples
    --------
    >>> normalize_crs(32633)
    'EPSG:32633'
    >>> normalize_crs("epsg:4326")
    'EPSG:4326'
    """
    if isinstance(crs, (int, np.integer)):
        crs = f"EPSG:{int(crs)}"
    if isinstance(crs, str):
        return _normalize_text(crs)
    return _normalize(crs)


@lru_cache(maxsize=1024)
def _normalize_text(crs: str) -> str:
    return _normalize(crs)


def _normalize(crs: object) -> str:
    try:
        parsed = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    except Exception as exc:  # pyproj raises CRSError with a PROJ message
        raise InvalidArgumentError(
            f"cannot interpret {crs!r} as a coordinate reference system; "
            "pass an EPSG code such as 32633, 'EPSG:32633', or WKT"
        ) from exc
    epsg = parsed.to_epsg()  # pyproj's default confidence (70) recognises WKT1 exports of EPSG codes
    return f"EPSG:{epsg}" if epsg else parsed.to_wkt()


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(_crs(src), _crs(dst), always_xy=True)


def transform_bounds(bounds: Bounds, src_crs: str, dst_crs: str, densify: int = 21) -> Bounds:
    """Transform ``(minx, miny, maxx, maxy)`` between CRSs, densifying the edges.

    The result encloses the transformed rectangle, which is curved in ``dst_crs``.

    Examples
    --------
    >>> b = transform_bounds((500000, 5000000, 510000, 5010000), "EPSG:32633", "EPSG:4326")
    >>> 14.9 < b[0] < b[2] < 15.2
    True
    """
    if src_crs == dst_crs:
        return tuple(float(v) for v in bounds)  # type: ignore[return-value]
    minx, miny, maxx, maxy = bounds
    return tuple(  # type: ignore[return-value]
        float(v) for v in _transformer(src_crs, dst_crs).transform_bounds(minx, miny, maxx, maxy, densify_pts=densify)
    )


def bounds_intersect(a: Bounds, b: Bounds) -> bool:
    """True when two ``(minx, miny, maxx, maxy)`` rectangles share an area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass(frozen=True)
class GridSpec:
    """A north-up pixel grid.

    Attributes
    ----------
    crs
        Canonical CRS string (see :func:`normalize_crs`).
    transform
        Affine transform from (col, row) to the top-left corner of that pixel.
    shape
        ``(height, width)`` in pixels.

    Examples
    --------
    >>> g = GridSpec.from_bounds((0, 0, 100, 50), resolution=10, crs="EPSG:32633")
    >>> g.shape
    (5, 10)
    >>> g.bounds
    (0.0, 0.0, 100.0, 50.0)
    """

    crs: str
    transform: Affine
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        t = self.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise InvalidArgumentError(
                f"only north-up grids are supported, got transform {tuple(t)[:6]}; "
                "give a positive x resolution and a negative y step without rotation"
            )
        if self.shape[0] <= 0 or self.shape[1] <= 0:
            raise InvalidArgumentError(f"grid shape must be positive, got {self.shape}")

    @classmethod
    def from_bounds(
        cls,
        bounds: Bounds,
        resolution: float | tuple[float, float],
        crs: object,
        anchor: tuple[float, float] = (0.0, 0.0),
        tolerance: float = SNAP_TOLERANCE,
    ) -> GridSpec:
        """The smallest grid covering ``bounds`` whose pixel edges fall on ``anchor + k * resolution``.

        Snapping makes identical requests give identical pixel grids, and grids of
        different requests at one resolution line up pixel for pixel.

        Parameters
        ----------
        bounds
            ``(minx, miny, maxx, maxy)`` in ``crs``.
        resolution
            Pixel size in CRS units, or ``(xres, yres)``, both positive.
        crs
            Anything :func:`normalize_crs` accepts.
        anchor
            A point pixel edges pass through, in CRS units.
        tolerance
            Bounds within this many pixels of a grid line count as on it.

        Examples
        --------
        >>> GridSpec.from_bounds((3, 4, 27, 18), 10, 32633).bounds
        (0.0, 0.0, 30.0, 20.0)
        """
        xres, yres = (resolution, resolution) if np.isscalar(resolution) else resolution  # type: ignore[misc]
        xres, yres = float(xres), float(yres)
        if not (xres > 0 and yres > 0 and math.isfinite(xres) and math.isfinite(yres)):
            raise InvalidArgumentError(f"resolution must be positive and finite, got {resolution!r}")
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        if not (minx < maxx and miny < maxy):
            raise InvalidArgumentError(
                f"bounds {bounds!r} are empty; give (minx, miny, maxx, maxy) with min < max"
            )
        ax, ay = anchor
        x0 = ax + _snap((minx - ax) / xres, math.floor, tolerance) * xres
        x1 = ax + _snap((maxx - ax) / xres, math.ceil, tolerance) * xres
        y0 = ay + _snap((miny - ay) / yres, math.floor, tolerance) * yres
        y1 = ay + _snap((maxy - ay) / yres, math.ceil, tolerance) * yres
        width = max(1, round((x1 - x0) / xres))
        height = max(1, round((y1 - y0) / yres))
        return cls(normalize_crs(crs), Affine(xres, 0.0, x0, 0.0, -yres, y1), (height, width))

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        """``(xres, yres)``, both positive."""
        return (self.transform.a, -self.transform.e)

    @property
    def bounds(self) -> Bounds:
        """``(minx, miny, maxx, maxy)`` of the outer pixel edges."""
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    def xs(self) -> np.ndarray:
        """x coordinates of pixel centres, float64, left to right."""
        t = self.transform
        return t.c + t.a * (np.arange(self.width) + 0.5)

    def ys(self) -> np.ndarray:
        """y coordinates of pixel centres, float64, top to bottom."""
        t = self.transform
        return t.f + t.e * (np.arange(self.height) + 0.5)

    def window(self, row: int, col: int, height: int, width: int) -> GridSpec:
        """The sub-grid starting at pixel ``(row, col)`` of the given size."""
        t = self.transform
        # the translation as Affine's product computes it (a*col + b*row + c), without its generic 3 x 3 path;
        # a window of a north-up grid is north-up, so the checks of __init__ are skipped (every read task
        # makes one)
        sub = object.__new__(GridSpec)
        object.__setattr__(sub, "crs", self.crs)
        object.__setattr__(sub, "transform", Affine(t.a, t.b, t.a * col + t.b * row + t.c,
                                                    t.d, t.e, t.d * col + t.e * row + t.f))
        object.__setattr__(sub, "shape", (int(height), int(width)))
        if height <= 0 or width <= 0:
            raise InvalidArgumentError(f"grid shape must be positive, got {(height, width)}")
        return sub

    def chunk_sizes(self, chunk: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask-style chunk sizes along y and x for a ``(cy, cx)`` chunk shape."""
        return _split(self.height, chunk[0]), _split(self.width, chunk[1])

    def chunks(self, chunk: tuple[int, int]) -> Iterator[tuple[int, int, GridSpec]]:
        """Yield ``(iy, ix, sub_grid)`` for every chunk, row-major."""
        ys, xs = self.chunk_sizes(chunk)
        row = 0
        for iy, h in enumerate(ys):
            col = 0
            for ix, w in enumerate(xs):
                yield iy, ix, self.window(row, col, h, w)
                col += w
            row += h

    def __reduce__(self):
        # six floats instead of an Affine (whose pickling goes through attrs): every read task carries a grid
        return (_grid, (self.crs, tuple(self.transform)[:6], self.shape))

    def to_dict(self) -> dict:
        """A JSON-friendly description (used in provenance metadata)."""
        return {"crs": self.crs, "transform": list(self.transform)[:6], "shape": list(self.shape)}


def _grid(crs: str, transform: tuple[float, ...], shape: tuple[int, int]) -> GridSpec:
    return GridSpec(crs, Affine(*transform), shape)


def _snap(index: float, direction, tolerance: float = SNAP_TOLERANCE) -> int:
    """Round a fractional pixel index outward, but keep an index within ``tolerance`` of an edge on it."""
    nearest = round(index)
    return nearest if abs(index - nearest) < tolerance else direction(index)


def _split(n: int, size: int) -> tuple[int, ...]:
    size = max(1, int(size))
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


@dataclass(frozen=True)
class ChunkIndex:
    """Which boxes (assets) each chunk of a grid intersects, in compressed sparse rows.

    Chunk ``k`` (row-major: ``k = iy * n_x + ix``) intersects the boxes
    ``hit[ptr[k]:ptr[k + 1]]``, in their given order.
    """

    ptr: np.ndarray  # int64, n_chunks + 1
    hit: np.ndarray  # int32
    n_x: int

    def of(self, iy: int, ix: int) -> np.ndarray:
        """Positions of the boxes that chunk ``(iy, ix)`` intersects."""
        k = iy * self.n_x + ix
        return self.hit[self.ptr[k] : self.ptr[k + 1]]

    @property
    def pairs(self) -> int:
        """(chunk, box) intersections in all."""
        return int(self.ptr[-1])


def chunk_edges(grid: GridSpec, chunk: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(left, right, top, bottom)`` of every chunk column and row, as :meth:`GridSpec.window` computes them."""
    t = grid.transform
    ys, xs = grid.chunk_sizes(chunk)
    col0 = np.concatenate([[0], np.cumsum(xs)[:-1]]).astype(np.float64)
    row0 = np.concatenate([[0], np.cumsum(ys)[:-1]]).astype(np.float64)
    left = t.a * col0 + t.c  # b == 0 on north-up grids (GridSpec refuses rotation)
    top = t.e * row0 + t.f
    right = left + t.a * np.asarray(xs, dtype=np.float64)
    bottom = top + t.e * np.asarray(ys, dtype=np.float64)
    return left, right, top, bottom


def chunk_index(boxes: np.ndarray, grid: GridSpec, chunk: tuple[int, int]) -> ChunkIndex:
    """For every chunk of ``grid``, the boxes (``(n, 4)`` minx, miny, maxx, maxy in the grid's CRS; NaN rows
    never intersect) whose interior overlaps it, in the boxes' order.

    The work is a binary search per box and two passes over the (box, chunk) pairs (a numba kernel): it
    grows with the intersections, not with chunks x boxes.

    Examples
    --------
    >>> g = GridSpec.from_bounds((0, 0, 40, 20), 10, 32633)
    >>> idx = chunk_index(np.array([[0, 0, 15, 20], [25, 5, 40, 10]]), g, (2, 2))
    >>> idx.of(0, 0).tolist(), idx.of(0, 1).tolist()
    ([0], [1])
    """
    left, right, top, bottom = chunk_edges(grid, chunk)
    n_x, n_y = len(left), len(top)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ok = np.isfinite(boxes).all(axis=1)
    # strict overlap, as in `box[0] < right and left < box[2]` (y likewise, rows run north to south)
    c0 = np.searchsorted(right, boxes[:, 0], side="right")
    c1 = np.searchsorted(left, boxes[:, 2], side="left")
    r0 = np.searchsorted(-bottom, -boxes[:, 3], side="right")
    r1 = np.searchsorted(-top, -boxes[:, 1], side="left")
    c0, c1, r0, r1 = (np.where(ok, v, 0).astype(np.int64) for v in (c0, c1, r0, r1))
    ptr, hit = rows_from_ranges(r0, r1, c0, c1, n_y, n_x)
    return ChunkIndex(ptr, hit, n_x)
