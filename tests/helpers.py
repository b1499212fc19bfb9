"""Independent reference computations from the generated files, for the tests."""

from __future__ import annotations

import os

import numpy as np
import rasterio

from geoproc.testing import OFFSET, SCALE


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
