"""Property-based tests of geoproc.grid.GridSpec: arbitrary bounds, resolutions, anchors and CRSs.

CRSs: UTM zones north and south, Web Mercator (EPSG:3857), geographic WGS 84 in degrees
(EPSG:4326), and two equal-area CRSs (ETRS89 LAEA Europe EPSG:3035, EASE-Grid 2.0 EPSG:6933).
Requests are drawn around a lon/lat centre inside each CRS's area of use, carried into the CRS
with pyproj, so every grid lies where the projection is valid and invertible.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio.crs
from affine import Affine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from geoproc.grid import SNAP_TOLERANCE, GridSpec

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: (EPSG code, lon range, lat range, resolutions to draw from or None for "metres", degrees?)
_GLOBAL = ((-170.0, 170.0), (-80.0, 80.0))  # grids stay clear of the antimeridian
_EUROPE = ((-10.0, 40.0), (35.0, 70.0))
METRE_RESOLUTIONS = [0.5, 1.0, 3.0, 10.0, 15.0, 20.0, 30.0, 60.0, 100.0, 250.0, 463.3127165279167, 1000.0]
DEGREE_RESOLUTIONS = [1 / 3600, 1e-4, 2.5e-4, 1e-3, 0.01]


def _tolerance(grid: GridSpec, *values: float) -> float:
    """Absolute tolerance for coordinate comparisons: 1e-9 pixel plus a few units in the last place of
    the largest coordinate involved."""
    big = max([abs(v) for v in (*grid.bounds, *values)] + [1.0])
    return 1e-9 * max(grid.resolution) + 8 * float(np.spacing(big))


@st.composite
def crs_and_centre(draw):
    kind = draw(st.sampled_from(["utm-north", "utm-south", "3857", "4326", "3035", "6933"]))
    if kind.startswith("utm"):
        zone = draw(st.integers(1, 60))
        cm = -183.0 + 6 * zone
        lon = draw(st.floats(cm - 3.0, cm + 3.0))
        if kind == "utm-north":
            epsg, lat = 32600 + zone, draw(st.floats(0.0, 80.0))
        else:
            epsg, lat = 32700 + zone, draw(st.floats(-78.0, 0.0))
        lon = max(-179.0, min(179.0, lon))
    else:
        epsg = int(kind)
        (lo0, lo1), (la0, la1) = _EUROPE if epsg == 3035 else _GLOBAL
        lon, lat = draw(st.floats(lo0, lo1)), draw(st.floats(la0, la1))
    return f"EPSG:{epsg}", lon, lat


@st.composite
def requests(draw, max_pixels: int = 1000):
    """``(bounds, resolution, crs, anchor)`` for GridSpec.from_bounds."""
    crs, lon, lat = draw(crs_and_centre())
    degrees = crs == "EPSG:4326"
    choices = DEGREE_RESOLUTIONS if degrees else METRE_RESOLUTIONS
    lo, hi = (1e-5, 0.01) if degrees else (0.5, 1000.0)
    xres = draw(st.one_of(st.sampled_from(choices), st.floats(lo, hi)))
    yres = xres * draw(st.sampled_from([1.0, 1.0, 0.5, 2.0, 1.0234]))
    resolution = xres if xres == yres and draw(st.booleans()) else (xres, yres)
    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    # extents in pixels, not aligned to anything, at most ~300 km / 3 degrees from the centre so that the
    # grid stays inside the CRS's domain (EPSG:6933 ends at the poles)
    cap = 3.0 if degrees else 3e5
    w_px = draw(st.floats(0.01, max(0.02, min(max_pixels, cap / xres))))
    h_px = draw(st.floats(0.01, max(0.02, min(max_pixels, cap / yres))))
    fx, fy = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    minx, miny = cx - fx * w_px * xres, cy - fy * h_px * yres
    bounds = (minx, miny, minx + w_px * xres, miny + h_px * yres)
    anchor = draw(
        st.one_of(
            st.just((0.0, 0.0)),
            st.tuples(st.floats(-100 * xres, 100 * xres), st.floats(-100 * yres, 100 * yres)),
        )
    )
    return bounds, resolution, crs, anchor


def _res(resolution) -> tuple[float, float]:
    return (resolution, resolution) if np.isscalar(resolution) else tuple(resolution)


@FAST
@given(requests())
def test_pixel_centres_are_where_the_transform_puts_them(req):
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    t = g.transform
    xres, yres = _res(resolution)
    assert (t.a, t.b, t.d, t.e) == (xres, 0.0, 0.0, -yres) and g.resolution == (xres, yres)
    xs, ys = g.xs(), g.ys()
    assert xs.shape == (g.width,) and ys.shape == (g.height,)
    cols, rows = np.arange(g.width) + 0.5, np.arange(g.height) + 0.5
    # (col + 0.5, row + 0.5) through the affine transform is the pixel centre, along both axes
    tx, _ = t @ (cols, np.full_like(cols, 0.5))
    _, ty = t @ (np.full_like(rows, 0.5), rows)
    tol = _tolerance(g)
    np.testing.assert_allclose(xs, tx, rtol=0, atol=tol)
    np.testing.assert_allclose(ys, ty, rtol=0, atol=tol)
    # and back: the inverse transform gives the pixel index + 0.5
    ci, _ = ~t @ (xs, np.full_like(xs, ys[0]))
    _, ri = ~t @ (np.full_like(ys, xs[0]), ys)
    np.testing.assert_allclose(ci, cols, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ri, rows, rtol=0, atol=1e-6)
    # the outer edges are the bounds
    b = g.bounds
    assert math.isclose(b[0], xs[0] - xres / 2, abs_tol=tol) and math.isclose(b[2], xs[-1] + xres / 2, abs_tol=tol)
    assert math.isclose(b[3], ys[0] + yres / 2, abs_tol=tol) and math.isclose(b[1], ys[-1] - yres / 2, abs_tol=tol)


@FAST
@given(requests())
# a bound 1.2e-7 pixel past a grid line: on the line, within the snapping tolerance
@example(req=((-5.96046448e-08, 0.0, 0.4999999403953552, 0.5), (0.5, 0.5), "EPSG:3857", (0.0, 0.0)))
def test_grid_covers_the_bounds_snapped_to_the_anchor(req):
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    xres, yres = _res(resolution)
    minx, miny, maxx, maxy = bounds
    gx0, gy0, gx1, gy1 = g.bounds
    # covers the request: bounds within SNAP_TOLERANCE pixels of a grid line count as on it
    tol = _tolerance(g, *bounds, *anchor) + SNAP_TOLERANCE * max(xres, yres)
    assert gx0 <= minx + tol and gy0 <= miny + tol and gx1 >= maxx - tol and gy1 >= maxy - tol
    # ... and is the smallest such grid: less than one pixel of margin on every side
    assert minx - gx0 < xres + tol and maxx - gx1 > -xres - tol
    assert miny - gy0 < yres + tol and maxy - gy1 > -yres - tol
    # pixel edges on anchor + k * resolution
    for edge, a, r in ((gx0, anchor[0], xres), (gx1, anchor[0], xres), (gy0, anchor[1], yres), (gy1, anchor[1], yres)):
        k = (edge - a) / r
        assert abs(k - round(k)) <= 1e-6, (edge, a, r, k)
    assert g.width == round((gx1 - gx0) / xres) and g.height == round((gy1 - gy0) / yres)


@FAST
@given(requests(), st.data())
def test_identical_requests_give_identical_grids(req, data):
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    again = GridSpec.from_bounds(tuple(bounds), resolution, crs, anchor=anchor)
    assert again == g and hash(again) == hash(g) and again.to_dict() == g.to_dict()
    # the same CRS however it is spelled
    epsg = int(crs.split(":")[1])
    spelled = data.draw(
        st.sampled_from(
            [epsg, crs.lower(), CRS.from_epsg(epsg), rasterio.crs.CRS.from_epsg(epsg), CRS.from_epsg(epsg).to_wkt()]
        )
    )
    assert GridSpec.from_bounds(bounds, resolution, spelled, anchor=anchor) == g
    # two requests at one resolution and anchor line up pixel for pixel
    xres, yres = _res(resolution)
    dx = data.draw(st.floats(-1000, 1000)) * xres
    dy = data.draw(st.floats(-1000, 1000)) * yres
    grow = data.draw(st.floats(0, 500))
    moved = (bounds[0] + dx, bounds[1] + dy, bounds[2] + dx + grow * xres, bounds[3] + dy + grow * yres)
    h = GridSpec.from_bounds(moved, resolution, crs, anchor=anchor)
    kx = (h.transform.c - g.transform.c) / xres
    ky = (h.transform.f - g.transform.f) / yres
    assert abs(kx - round(kx)) < 1e-6 and abs(ky - round(ky)) < 1e-6


@FAST
@given(requests(max_pixels=600), st.data())
def test_chunks_tile_the_grid_exactly(req, data):
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    # at most ~20 chunks per axis keeps the pixel-by-pixel checks fast
    cy = data.draw(st.integers(max(1, -(-g.height // 20)), g.height + 3))
    cx = data.draw(st.integers(max(1, -(-g.width // 20)), g.width + 3))
    ys_, xs_ = g.chunk_sizes((cy, cx))
    assert sum(ys_) == g.height and sum(xs_) == g.width
    assert all(s == cy for s in ys_[:-1]) and 0 < ys_[-1] <= cy
    assert all(s == cx for s in xs_[:-1]) and 0 < xs_[-1] <= cx
    chunks = list(g.chunks((cy, cx)))
    assert [(iy, ix) for iy, ix, _ in chunks] == [(iy, ix) for iy in range(len(ys_)) for ix in range(len(xs_))]
    tol = _tolerance(g)
    xs, ys = g.xs(), g.ys()
    row_starts = np.concatenate([[0], np.cumsum(ys_)])
    col_starts = np.concatenate([[0], np.cumsum(xs_)])
    for iy, ix, sub in chunks:
        assert sub.crs == g.crs and sub.resolution == g.resolution
        assert sub.shape == (ys_[iy], xs_[ix])
        # the chunk's position in the grid, read back from its transform, is a whole pixel offset
        col = (sub.transform.c - g.transform.c) / g.transform.a
        row = (sub.transform.f - g.transform.f) / g.transform.e
        assert abs(col - col_starts[ix]) < 1e-6 and abs(row - row_starts[iy]) < 1e-6
        r0, c0 = row_starts[iy], col_starts[ix]
        np.testing.assert_allclose(sub.xs(), xs[c0 : c0 + sub.width], rtol=0, atol=tol)
        np.testing.assert_allclose(sub.ys(), ys[r0 : r0 + sub.height], rtol=0, atol=tol)
    # neighbours share their edges: no gap, no overlap
    by_index = {(iy, ix): sub for iy, ix, sub in chunks}
    for (iy, ix), sub in by_index.items():
        if (iy, ix + 1) in by_index:
            assert math.isclose(sub.bounds[2], by_index[(iy, ix + 1)].bounds[0], abs_tol=tol)
        if (iy + 1, ix) in by_index:
            assert math.isclose(sub.bounds[1], by_index[(iy + 1, ix)].bounds[3], abs_tol=tol)
    # together they are the grid
    first, last = by_index[(0, 0)], by_index[(len(ys_) - 1, len(xs_) - 1)]
    union = (first.bounds[0], last.bounds[1], last.bounds[2], first.bounds[3])
    np.testing.assert_allclose(union, g.bounds, rtol=0, atol=tol)


@FAST
@given(requests(), st.randoms(use_true_random=False))
def test_pixel_centre_to_lonlat_and_back_lands_in_the_same_pixel(req, rnd):
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    h, w = g.shape
    # the four corners, the middle and some random pixels
    rows = np.array([0, 0, h - 1, h - 1, h // 2] + [rnd.randrange(h) for _ in range(60)])
    cols = np.array([0, w - 1, 0, w - 1, w // 2] + [rnd.randrange(w) for _ in range(60)])
    x, y = g.xs()[cols], g.ys()[rows]
    lon, lat = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(x, y)
    assert np.isfinite(lon).all() and np.isfinite(lat).all()
    assert (np.abs(lat) <= 90).all()
    bx, by = Transformer.from_crs("EPSG:4326", g.crs, always_xy=True).transform(lon, lat)
    fc, fr = ~g.transform @ (np.asarray(bx), np.asarray(by))
    np.testing.assert_array_equal(np.floor(fc).astype(int), cols)
    np.testing.assert_array_equal(np.floor(fr).astype(int), rows)
    # far from the pixel edges: PROJ's round trip is good to about a millimetre (its ellipsoidal LAEA
    # inverse, EPSG:3035, uses a series for the authalic latitude), 0.002 px at 0.5 m pixels
    assert np.abs(fc - (cols + 0.5)).max() < 0.01 and np.abs(fr - (rows + 0.5)).max() < 0.01


@FAST
@given(requests())
def test_a_grids_own_bounds_give_it_back(req):
    """``bounds=grid.bounds`` reproduces the grid (the tolerance keeps on-grid bounds from growing a pixel).

    The tolerance is in pixels, so this holds far from the origin too (see the fine-pixel test below).
    """
    bounds, resolution, crs, anchor = req
    g = GridSpec.from_bounds(bounds, resolution, crs, anchor=anchor)
    assert GridSpec.from_bounds(g.bounds, resolution, crs, anchor=anchor) == g


@settings(max_examples=40, deadline=None)
@example(bounds=(254781.2, 4493474.6, 254927.9, 4493593.5), resolution=0.1, crs="EPSG:32633")
@example(
    bounds=(273315.3333333333, 9020306.333333332, 273550.6666666666, 9020725.333333332), resolution=1 / 3, crs="EPSG:32733"
)
@given(
    bounds=st.tuples(st.floats(166000, 800000), st.floats(1e6, 9e6), st.floats(1, 200), st.floats(1, 200)).map(
        lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
    ),
    resolution=st.sampled_from([0.1, 0.3, 1 / 3, 0.6]),
    crs=st.sampled_from(["EPSG:32633", "EPSG:32733"]),
)
def test_own_bounds_give_back_fine_grids(bounds, resolution, crs):
    """Sub-metre pixels at UTM northings: pixel indices near 5e7, where float rounding exceeds 1e-9 px."""
    g = GridSpec.from_bounds(bounds, resolution, crs)
    again = GridSpec.from_bounds(g.bounds, resolution, crs)
    assert again.shape == g.shape and again.transform.almost_equals(g.transform, precision=1e-9 * resolution)


def test_window_of_a_window_composes():
    """A worked example the properties above rely on: sub-grid transforms compose exactly for round numbers."""
    g = GridSpec("EPSG:32633", Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0), (100, 200))
    w = g.window(10, 20, 30, 40).window(5, 6, 7, 8)
    assert w == g.window(15, 26, 7, 8)
    assert w.bounds == (600260.0, 4999780.0, 600340.0, 4999850.0)
