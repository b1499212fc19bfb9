"""The job of the tiled-runner tests, and a script that writes it tile by tile (the SIGKILL test runs it).

``python tests/run/tiled_job.py CATALOG URL MODE [SLEEP]`` writes :func:`job` to ``URL`` with
``write_tiled(mode=MODE)`` on the threaded scheduler, each asset read sleeping ``SLEEP`` seconds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import geoproc
from geoproc.loader import default_reader

TILE, MAX_TASKS = 2, 12  # tiles of 2 x 2 chunks, at most 12 tasks submitted


@dataclass(frozen=True)
class SlowReader:
    """The real reader, each read delayed (so that a test can kill a run half-way)."""

    sleep: float

    def read(self, *args, **kwargs):
        time.sleep(self.sleep)
        return default_reader().read(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(default_reader(), name)


def job(catalog: str, sleep: float = 0.0, per_date: bool = False):
    """Masked NDVI: its median over time (or, ``per_date``, the cube, one date per chunk), 20 m, 16 px chunks."""
    items = geoproc.search(catalog)
    reader = SlowReader(sleep) if sleep else None
    chunks = {"time": 1, "y": 16, "x": 16} if per_date else 16
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=20, chunks=chunks, reader=reader, read_concurrency=1)
    ndvi = geoproc.ndvi(ds).where(~geoproc.cloud_mask(ds))
    return ndvi if per_date else geoproc.composite(ndvi, "median")


if __name__ == "__main__":
    catalog, url, mode = sys.argv[1:4]
    sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    from geoproc.run import write_tiled

    run = write_tiled(job(catalog, sleep), url, tile=TILE, max_tasks=MAX_TASKS, mode=mode)
    print(run.summary())
