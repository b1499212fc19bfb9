"""A reader that makes pixels instead of reading files: for benchmarks of whole jobs at continental scale.

It follows the reader protocol of :mod:`geoproc.io.reader` (``read(asset, grid, resampling, overviews)``),
so a load over fabricated items (hrefs that point nowhere) runs end to end, through masks, indices,
composites and the Zarr writer, at the cost of the computation alone. Pixels are a deterministic
function of the asset, the band and the map position: the same in every process and run, valid inside
the asset's footprint only (so overlapping tiles mosaic as real ones do), with clouds in the
classification band on a third of the dates.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from ..grid import GridSpec, transform_bounds
from ..io.items import AssetSpec

__all__ = ["SyntheticReader"]


@functools.lru_cache(maxsize=4096)
def _footprint(crs: str, bounds: tuple[float, float, float, float], dst: str) -> tuple[float, float, float, float]:
    return bounds if crs == dst else transform_bounds(bounds, crs, dst)


@dataclass(frozen=True)
class SyntheticReader:
    """Pixels made from the asset and the position; ``cost`` extra multiply-adds per pixel stand in for
    decompression when a benchmark wants them (0: none).

    Examples
    --------
    >>> from geoproc.grid import GridSpec
    >>> from geoproc.io.items import AssetSpec
    >>> grid = GridSpec.from_bounds((500_000, 5_000_000, 500_040, 5_000_040), 10, 32633)
    >>> asset = AssetSpec(item_id="a", key="B04", band="red", href="synthetic://a/B04.tif", band_index=1,
    ...                   crs="EPSG:32633", transform=grid.transform, shape=grid.shape, nodata=0, scale=1.0,
    ...                   offset=0.0, data_type="uint16")
    >>> raw, valid = SyntheticReader().read(asset, grid, "nearest")
    >>> raw.dtype.name, raw.shape, bool(valid.all())
    ('uint16', (4, 4), True)
    """

    cost: int = 0

    def read(self, asset: AssetSpec, grid: GridSpec, resampling: str, overviews: bool = True):
        h, w = grid.shape
        seed = zlib.crc32(asset.item_id.encode()) % 997
        xs = grid.xs()
        ys = grid.ys()
        fp = _footprint(asset.crs, tuple(asset.bounds), grid.crs) if asset.placed else grid.bounds
        cols = (xs > fp[0]) & (xs < fp[2])
        rows = (ys > fp[1]) & (ys < fp[3])
        valid = rows[:, None] & cols[None, :]
        # a smooth field of the position plus a per-item shift
        field = (np.add.outer((ys // 100.0) % 97, (xs // 100.0) % 89) + seed).astype(np.float32)
        for _ in range(self.cost):
            field = field * np.float32(0.999) + np.float32(0.5)
        dtype = np.dtype(asset.data_type or "uint16")
        if dtype == np.uint8:  # a classification band: vegetation, clouds on a third of the items
            raw = np.where((field.astype(np.int32) % 7 == 0) & (seed % 3 == 0), 9, 4).astype(np.uint8)
        else:
            raw = (1000 + field * (3 if asset.key.endswith("8") else 2)).astype(dtype)
        raw[~valid] = 0
        return raw, valid
