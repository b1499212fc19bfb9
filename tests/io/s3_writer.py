"""A slow, deterministic job that writes to S3: run as a separate process by the fault tests.

``python tests/io/s3_writer.py URL MODE LOG [SLEEP]`` writes :func:`result` to ``URL`` with ``to_zarr(mode=MODE)``;
each computed block appends its location to ``LOG`` and sleeps ``SLEEP`` seconds. The store's settings come
from the standard AWS environment variables the test sets.
"""

from __future__ import annotations

import os
import sys
import time

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401
import xarray as xr

SHAPE, CHUNK = (96, 128), 24  # 4 x 6 = 24 regions


def result(log: str | None = None, sleep: float = 0.0) -> xr.DataArray:
    """A float32 grid with NaNs, in EPSG:32633; the same values in every process."""
    values = np.random.default_rng(7).random(SHAPE, dtype=np.float32)
    values[values < 0.05] = np.nan
    data = da.from_array(values, chunks=CHUNK)

    def slow(block, block_info=None):
        if block_info is not None and block.size:
            if log:
                with open(log, "a") as fh:
                    fh.write("%d,%d\n" % tuple(block_info[0]["chunk-location"]))
            time.sleep(sleep)
        return block

    data = data.map_blocks(slow, dtype=np.float32)
    ys = 5_000_000 - 10 * np.arange(SHAPE[0]) - 5.0
    xs = 700_000 + 10 * np.arange(SHAPE[1]) + 5.0
    arr = xr.DataArray(data, dims=("y", "x"), coords={"y": ys, "x": xs}, name="ndvi")
    return arr.rio.write_crs(32633)


if __name__ == "__main__":
    url, mode, log = sys.argv[1:4]
    sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    import geoproc

    with dask.config.set(scheduler="threads", num_workers=2):
        geoproc.to_zarr(result(log, sleep), url, mode=mode)
    print("done", os.getpid())
