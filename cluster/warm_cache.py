"""Compile geoproc's numba kernels into a cache folder, so that a new worker computes at once.

    NUMBA_CACHE_DIR=/opt/geoproc/numba-cache python cluster/warm_cache.py
    python cluster/warm_cache.py --measure      time a fresh process's first task, cold and with the cache

Every kernel is ``numba.njit(cache=True)``: compiled on its first call with each argument types, then loaded from
``NUMBA_CACHE_DIR`` (or ``__pycache__`` beside the source when that is writable; in an image it is not, and an
unset ``NUMBA_CACHE_DIR`` there makes ``import geoproc`` fail). Compiling happens per type signature, so this
runs what jobs run, on a small synthetic archive with dask's synchronous scheduler: the workflow pipeline
(load -> cloud mask -> index -> composite, raw integers and decoded floats) with every composite method, then
every public algorithm with its defaults. The cache is valid for the same geoproc source, numba version and CPU
family: build it in the image, on the kind of node the workers run on (or set ``NUMBA_CPU_NAME=generic`` at
build and run time for a cache that any x86-64 node loads).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def warm(cache_dir: str | None = None, *, quick: bool = False) -> int:
    """Compile into ``cache_dir`` (default: ``$NUMBA_CACHE_DIR``); return the number of cache index files.

    ``quick`` compiles only what the workflow's mask + NDVI + median job needs.
    """
    if cache_dir:
        os.environ["NUMBA_CACHE_DIR"] = cache_dir  # before numba is imported
    if not os.environ.get("NUMBA_CACHE_DIR"):
        raise SystemExit("set NUMBA_CACHE_DIR (or pass --dir): the folder the image's workers will read")
    import dask

    import geoproc
    from geoproc.testing import generate_archive

    with tempfile.TemporaryDirectory() as tmp, dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive = generate_archive(Path(tmp) / "archive", size=64, dates=3, tiles=3, seed=0)
        items = geoproc.search(archive.catalog)
        for raw in (True, False):
            ds = geoproc.load(items, bands=["red", "green", "blue", "nir", "swir16", "scl"], resolution=20, chunks=64, raw=raw)
            mask = geoproc.cloud_mask(ds, classes=[0, 1, 3, 8, 9, 10])
            ndvi = geoproc.index(ds, "NDVI")
            geoproc.composite(ndvi, "median", mask=mask).compute()
            if quick:
                continue
            for method in ("mean", "min", "max", "count", "p25"):
                geoproc.composite(ndvi, method, mask=mask).compute()
            for method in ("medoid", "geomedian"):
                _try(lambda: geoproc.composite(ds[["red", "green", "blue", "nir"]], method, mask=mask).compute())
            for name in ("NDWI", "EVI", "SAVI", "NBR", "NDMI"):
                _try(lambda: geoproc.index(ds, name).compute())
        if not quick:
            image = geoproc.index(ds, "NDVI").isel(time=0)
            for name in ("median_filter", "gaussian_filter", "bilateral_filter", "lee_filter", "stretch", "adjust_gamma",
                         "equalize_hist", "clahe", "sobel", "canny", "glcm", "percentiles", "dilate",
                         "remove_small_objects", "otsu_threshold"):
                _try(lambda: _compute(getattr(geoproc, name)(image if name not in ("dilate", "remove_small_objects") else image > 0.3)))
            _try(lambda: _compute(geoproc.spectral_classes(ds)))
            _try(lambda: _compute(geoproc.change(ndvi.isel(time=0), ndvi.isel(time=-1))))
            _try(lambda: _compute(geoproc.harmonic_fit(ndvi)))
    return sum(1 for _ in Path(os.environ["NUMBA_CACHE_DIR"]).rglob("*.nbi"))


def _compute(result):
    return result.compute() if hasattr(result, "compute") else result


def _try(action) -> None:
    # an algorithm whose defaults need more than this small archive offers is skipped: the cache is an
    # optimisation, and what it lacks compiles on first use as before
    try:
        action()
    except Exception:  # noqa: BLE001
        pass


_FIRST_TASK = r"""
import time, warnings
started = time.perf_counter()
import dask, geoproc
imported = time.perf_counter()
warnings.simplefilter("ignore")
items = geoproc.search({catalog!r})
ds = geoproc.load(items, bands=["red", "nir", "scl"], resolution=20, chunks=64, raw=True)
result = geoproc.composite(geoproc.index(ds, "NDVI"), "median", mask=geoproc.cloud_mask(ds, classes=[0, 1, 3, 8, 9, 10]))
with dask.config.set(scheduler="synchronous"):
    result[:64, :64].compute()
done = time.perf_counter()
print(f"{{imported - started:.2f}} {{done - imported:.2f}}")
"""


def measure(repeat: int = 3) -> dict[str, list[tuple[float, float]]]:
    """Seconds of a fresh process's first task (one chunk of mask + NDVI + median): (import, first task), per run,
    with an empty cache folder and with one that :func:`warm` filled (quick)."""
    from geoproc.testing import generate_archive

    found: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        archive = generate_archive(Path(tmp) / "archive", size=128, dates=4, tiles=3, seed=0)
        code = _FIRST_TASK.format(catalog=str(archive.catalog))
        warmed = Path(tmp) / "warm-cache"
        subprocess.run([sys.executable, __file__, "--dir", str(warmed), "--quick"], check=True,
                       env=dict(os.environ, NUMBA_CACHE_DIR=str(warmed)))
        for i in range(repeat):
            for kind in ("cold", "warm"):
                cache = warmed if kind == "warm" else Path(tmp) / f"cold-{i}"
                out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                     env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
                found[kind].append(tuple(float(v) for v in out.stdout.split()[-2:]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="cache folder (default: $NUMBA_CACHE_DIR)")
    parser.add_argument("--quick", action="store_true", help="only the kernels of a mask + NDVI + median job")
    parser.add_argument("--measure", action="store_true", help="time a fresh process's first task, cold and warm")
    args = parser.parse_args(argv)
    if args.measure:
        for kind, runs in measure().items():
            imports = ", ".join(f"{a:.2f}" for a, _ in runs)
            tasks = ", ".join(f"{b:.2f}" for _, b in runs)
            print(f"{kind}: import geoproc {imports} s; first task {tasks} s")
        return 0
    started = time.perf_counter()
    count = warm(args.dir, quick=args.quick)
    print(f"{count} compiled kernel signatures in {os.environ['NUMBA_CACHE_DIR']} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
