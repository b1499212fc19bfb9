"""Peak memory of one region task of a mask + NDVI + median job, against plan().task_bytes.

``python benchmarks/task_memory.py [CHUNK ...]`` generates a synthetic archive (3 tiles of 512 px, 6 dates)
in a temporary folder, warms the kernels on a small chunk, then for each chunk size runs the job's single
largest region task on the threaded scheduler (one thread) while a thread samples the process's RSS every
2 ms; prints the idle RSS, the task's peak above it, bytes per pixel per date, and plan().task_bytes.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time

import psutil

import geoproc
from geoproc.testing import generate_archive


def job(items, chunk):
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=chunk)
    return geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds, classes=[0, 1, 3, 8, 9, 10])), ds


def peak_of(fn) -> tuple[int, int]:
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        stop.set()
        thread.join()
    return base, peak[0] - base


def main(chunks):
    import dask

    root = tempfile.mkdtemp(prefix="geoproc-task-memory-")
    arc = generate_archive(root, size=512, dates=6, tiles=3, seed=0)
    items = geoproc.search(arc.catalog)
    dask.config.set(scheduler="synchronous")
    job(items, 64)[0].isel(x=slice(0, 64), y=slice(0, 64)).compute()  # compile and warm caches
    print(f"{'chunk':>6} {'dates':>5} {'idle MiB':>9} {'peak MiB':>9} {'B/px/date':>9} {'task_bytes MiB':>14}")
    for chunk in chunks:
        result, ds = job(items, chunk)
        block = result.isel(y=slice(0, chunk), x=slice(0, chunk))
        base, peak = peak_of(block.compute)
        px = block.sizes["y"] * block.sizes["x"] * ds.sizes["time"]
        plan = geoproc.plan(items, ["red", "nir", "scl"], resolution=10, chunks=chunk)
        print(f"{chunk:>6} {ds.sizes['time']:>5} {base / 2**20:>9.0f} {peak / 2**20:>9.1f} {peak / px:>9.1f} "
              f"{plan.task_bytes / 2**20:>14.1f}")


if __name__ == "__main__":
    main([int(c) for c in sys.argv[1:]] or [256, 512, 1024])
