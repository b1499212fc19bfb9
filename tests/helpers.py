"""Independent reference computations for the tests: from the generated files, and scikit-image shims."""

from __future__ import annotations

from contextlib import contextmanager

import os

import numpy as np
import rasterio

from geoproc.testing import OFFSET, SCALE


def data_required() -> bool:
    """Whether missing real data must fail the tests rather than skip them: under CI (``CI=true``, where
    ``../shared/data`` is always there) or with ``GEOPROC_REQUIRE_DATA=1`` (``GEOPROC_REQUIRE_DATA=0`` lets CI skip)."""
    return os.environ.get("GEOPROC_REQUIRE_DATA", os.environ.get("CI", "")).strip().lower() not in ("", "0", "false", "no")


def missing_data(reason: str):
    """Skip the test for want of real data, or fail it where the data is required (:func:`data_required`).

    Every test that needs a file from ``../shared/data`` goes through this (or the ``shared_data`` fixture,
    which does), so that no test can pass in CI by skipping.
    """
    import pytest

    if data_required():
        pytest.fail(f"{reason}; the real data is required here (CI=true or GEOPROC_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(reason)


def read(path: str, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band)


def item_file(archive, item_id: str, name: str) -> str:
    return os.path.join(archive.item_dir(item_id), name)


def reflectance(dn: np.ndarray) -> np.ndarray:
    """Decode uint16 DN to float32 reflectance, NaN at nodata 0."""
    out = dn.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET)
    out[dn == 0] = np.nan
    return out


def offset_in(out_x0: float, out_y1: float, tile_transform) -> tuple[int, int]:
    """(row, col) of a zone-33 tile's top-left pixel in an aligned 10 m output grid."""
    col = (tile_transform.c - out_x0) / 10.0
    row = (out_y1 - tile_transform.f) / 10.0
    assert col == round(col) and row == round(row), "grids are not aligned"
    return int(round(row)), int(round(col))


def tiff_tags(path: str) -> set[int]:
    """Tag numbers of the first IFD of a (Big)TIFF file, read from the bytes themselves."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(16)
        order = {b"II": "<", b"MM": ">"}[head[:2]]
        version = struct.unpack(order + "H", head[2:4])[0]
        if version == 42:
            fh.seek(struct.unpack(order + "I", head[4:8])[0])
            (count,) = struct.unpack(order + "H", fh.read(2))
            return {struct.unpack(order + "H", fh.read(12)[:2])[0] for _ in range(count)}
        fh.seek(struct.unpack(order + "Q", head[8:16])[0])  # BigTIFF
        (count,) = struct.unpack(order + "Q", fh.read(8))
        return {struct.unpack(order + "H", fh.read(20)[:2])[0] for _ in range(count)}


# --- exact nearest-neighbour sampling (no GDAL warper): tests/test_loader_vs_odc.py, tests/test_real_loading.py ---


def exact_nearest(path: str, grid, band: int = 1, overview_level: int | None = None, src_crs: str | None = None):
    """Sample a file at the pixel centres of ``grid`` (a ``geoproc.grid.GridSpec``) by nearest neighbour.

    Each output pixel takes the source pixel that contains its centre, the centre being carried into
    the file's CRS exactly with pyproj (no GDAL warper, no approximation). ``overview_level`` samples
    that overview instead of the full resolution; ``src_crs`` overrides the file's CRS (for files
    whose header has none).

    Returns ``(values, inside, edge)``: values in the file's dtype (0 outside), whether the centre
    falls inside the file, and the distance, in source pixels, from the exact position to the
    nearest source pixel edge (how close a pixel is to a nearest-neighbour tie).
    """
    from pyproj import Transformer

    kwargs = {} if overview_level is None else {"overview_level": overview_level}
    with rasterio.open(path, **kwargs) as src:
        data = src.read(band)
        t = src.transform
        crs = src_crs or src.crs.to_string()
    xs, ys = np.meshgrid(grid.xs(), grid.ys())
    if crs != grid.crs:
        xs, ys = Transformer.from_crs(grid.crs, crs, always_xy=True).transform(xs, ys)
    fcol = (xs - t.c) / t.a
    frow = (ys - t.f) / t.e
    col, row = np.floor(fcol).astype(np.int64), np.floor(frow).astype(np.int64)
    inside = (col >= 0) & (row >= 0) & (col < data.shape[1]) & (row < data.shape[0])
    values = np.zeros(grid.shape, data.dtype)
    values[inside] = data[row[inside], col[inside]]
    edge = np.minimum(np.abs(fcol - np.round(fcol)), np.abs(frow - np.round(frow)))
    return values, inside, edge


def block_mean(a: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Mean over non-overlapping ``fy`` x ``fx`` blocks (trailing partial blocks dropped), NaN-propagating."""
    h, w = a.shape[0] // fy * fy, a.shape[1] // fx * fx
    return a[:h, :w].reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))


@contextmanager
def http_server(handler):
    """Serve ``handler`` (a ``BaseHTTPRequestHandler`` class or factory) on a free port of 127.0.0.1; yield its URL."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def skimage_remove_small(mask, min_size: int, connectivity: int):
    """skimage remove_small_objects keeping objects of min_size px or more (0.26 renamed its size argument)."""
    import skimage.morphology as skm

    conn = 1 if connectivity == 4 else 2
    try:
        return skm.remove_small_objects(mask, max_size=min_size - 1, connectivity=conn)
    except TypeError:  # scikit-image < 0.26: min_size, objects strictly smaller are removed
        return skm.remove_small_objects(mask, min_size=min_size, connectivity=conn)
