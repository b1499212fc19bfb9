"""Per-pixel composites over time, side by side: geoproc vs xarray vs odc-algo.

What is measured
----------------
One in-memory float32 stack of ``--dates`` (default 50) dates x ``--size`` x
``--size`` px (default 2048), values uniform in [0, 1) with 20 % NaN (clouds
already masked), held as a Dask array of C-contiguous ``(dates, 512, 512)``
chunks (as a loader produces them); every library reduces that same Dask
array. Generating it is not timed.

Jobs (``.compute()`` of each, best of ``--repeats`` (5) runs, interleaved across the libraries):

* median: ``geoproc.composite(x, "median")``; ``x.median("time")`` (xarray,
  i.e. ``dask.array.nanmedian`` -> ``numpy.nanmedian`` per chunk);
  odc-algo's ``xr_quantile(ds, [0.5], nodata=nan)`` (sort-based; nearest rank,
  NaN below 3 valid observations, so its values differ slightly);
* 90th percentile: ``composite(x, "p90")``; ``x.quantile(0.9, "time")``
  (xarray, ``numpy.nanquantile``); ``xr_quantile(ds, [0.9], nodata=nan)``.

Same Dask setup for all: the threaded scheduler with 2 threads
(``--threads``). Agreement with geoproc is reported (max abs difference,
identical pixels). odc-algo's geometric median needs the ``geomad`` package
(``hdstats``'s successor), which is not installed here, so geoproc's
geomedian is timed alone on 4 bands of ``--gm-size`` px.

Usage::

    python benchmarks/bench_composite.py            # writes the "Composites" section of RESULTS.md
    python benchmarks/bench_composite.py --quick    # 1024 px, 2 runs; prints only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr

import geoproc
from _common import machine, markdown_table, today, update_results, versions

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Composites"
CHUNK = 512


def _stack(dates: int, size: int, seed: int = 0) -> xr.DataArray:
    """The test stack as a Dask array of C-contiguous chunks, as a loader produces them (not views of one array)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(0, size, CHUNK):
        row = []
        for _ in range(0, size, CHUNK):
            block = rng.random((dates, CHUNK, CHUNK), dtype=np.float32)
            block[rng.random(block.shape, dtype=np.float32) < 0.2] = np.nan
            row.append(da.from_array(block, chunks=block.shape))
        rows.append(row)
    arr = da.block(rows)
    times = np.datetime64("2024-01-01") + np.arange(dates).astype("timedelta64[D]") * 5
    return xr.DataArray(arr, dims=("time", "y", "x"), coords={"time": times}, name="ndvi")


def _jobs(x: xr.DataArray) -> dict[str, dict[str, object]]:
    from odc.algo import xr_quantile

    ds = x.to_dataset()
    return {
        "median": {
            "geoproc": lambda: geoproc.composite(x, "median"),
            "xarray": lambda: x.median("time"),
            "odc-algo": lambda: xr_quantile(ds, [0.5], nodata=np.nan)["ndvi"].isel(quantile=0),
        },
        "90th percentile": {
            "geoproc": lambda: geoproc.composite(x, "p90"),
            "xarray": lambda: x.quantile(0.9, "time"),
            "odc-algo": lambda: xr_quantile(ds, [0.9], nodata=np.nan)["ndvi"].isel(quantile=0),
        },
    }


def _time(build, repeats: int) -> tuple[float, np.ndarray]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = build().values
        best = min(best, time.perf_counter() - t0)
    return best, out


def _agreement(ref: np.ndarray, other: np.ndarray) -> tuple[str, str]:
    both = np.isfinite(ref) & np.isfinite(other)
    same = (ref == other) | (np.isnan(ref) & np.isnan(other))
    diff = float(np.max(np.abs(ref[both] - other[both]))) if both.any() else 0.0
    return f"{diff:.2e}", f"{100 * same.mean():.2f}%"


def _geomedian_row(size: int, dates: int, repeats: int) -> list[object]:
    rng = np.random.default_rng(1)
    bands = {}
    for b in ("blue", "red", "nir", "swir16"):
        v = rng.uniform(0.0, 0.5, (dates, size, size)).astype(np.float32)
        v[rng.random(v.shape) < 0.2] = np.nan
        bands[b] = (("time", "y", "x"), da.from_array(v, chunks=(dates, CHUNK // 2, CHUNK // 2)))
    ds = xr.Dataset(bands)
    geoproc.composite(ds.isel(y=slice(0, 8), x=slice(0, 8)), "geomedian").compute()  # compile outside the timing
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        geoproc.composite(ds, "geomedian").compute()
        best = min(best, time.perf_counter() - t0)
    return [f"geomedian, 4 bands x {dates} dates x {size}^2 px", "geoproc", f"{best:.2f}", f"{size * size / best / 1e6:.2f}", "-", "-", "-"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1024 px, 2 runs, no save")
    parser.add_argument("--size", type=int, default=2048, help="width and height in px (default 2048)")
    parser.add_argument("--dates", type=int, default=50, help="dates (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per library and job, interleaved (best reported)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the dask threaded scheduler (default 2)")
    parser.add_argument("--gm-size", type=int, default=512, help="px of the geomedian run (default 512)")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeats, args.no_save, args.gm_size = 1024, 2, True, 256
    warnings.filterwarnings("ignore", message="All-NaN slice")
    load = os.getloadavg()
    x = _stack(args.dates, args.size)
    rows, header = [], ["job", "library", "wall s (best)", "Mpx/s", "geoproc speed-up", "max abs diff vs geoproc", "identical px"]
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        geoproc.composite(x[:, :8, :8], "median").compute()  # numba compiles (or loads its cache) outside the timing
        geoproc.composite(x[:, :8, :8], "p90").compute()
        for job, libs in _jobs(x).items():
            timings, outputs = dict.fromkeys(libs, np.inf), {}
            for _ in range(args.repeats):  # interleaved: every library sees the same moments of a shared machine
                for lib, build in libs.items():
                    seconds, outputs[lib] = _time(build, 1)
                    timings[lib] = min(timings[lib], seconds)
            for lib in libs:
                print(f"{job:16s} {lib:9s} {timings[lib]:7.2f} s", file=sys.stderr)
                diff, same = _agreement(outputs["geoproc"], outputs[lib]) if lib != "geoproc" else ("-", "-")
                speed = f"{timings[lib] / timings['geoproc']:.1f}x" if lib != "geoproc" else "-"
                rows.append([job, lib, f"{timings[lib]:.2f}", f"{args.size**2 / timings[lib] / 1e6:.2f}", speed, diff, same])
        rows.append(_geomedian_row(args.gm_size, args.dates, args.repeats))
    table = markdown_table(header, rows, "llrrrrr")
    vers = versions()
    odc_algo = __import__("importlib.metadata").metadata.version("odc-algo")
    body = (
        f"Date: {today()}. Machine: {machine()}; load average before the runs {load[0]:.2f} / {load[1]:.2f} (1 / 5 min).\n"
        f"Versions: geoproc {vers['geoproc']}, odc-algo {odc_algo}, dask {vers['dask']}, xarray {vers['xarray']}, "
        f"numba {vers['numba']}, numpy {vers['numpy']}.\n"
        f"Command: `python benchmarks/bench_composite.py{' --quick' if args.quick else ''}`. Data: one in-memory float32 "
        f"stack of {args.dates} dates x {args.size} x {args.size} px, 20% NaN, one Dask array of C-contiguous chunks "
        f"({args.dates}, {CHUNK}, {CHUNK}) shared by all. Dask: threaded scheduler, {args.threads} threads, for all. "
        f"Best of {args.repeats} runs, interleaved. Speed-up: the library's wall time / geoproc's.\n\n{table}\n\n"
        "geoproc's median equals `numpy.nanmedian` and its percentiles `numpy.nanpercentile(x, q)` (scalar q: "
        "interpolation in float32) bit for bit; xarray's `quantile` passes q as an array, so numpy interpolates in "
        "float64 and rounds once: differences of 1 ulp. odc-algo's quantile takes the nearest rank (no interpolation) "
        "and gives NaN below 3 valid observations, hence its differences. odc-algo's geometric median needs `geomad`, "
        "not installed here: the geomedian row has no alternative.\n"
    )
    print(body)
    if not args.no_save:
        update_results(RESULTS, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
