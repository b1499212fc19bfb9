"""End-to-end job, side by side: geoproc vs odc-stac vs stackstac, in one process run.

What is measured
----------------
The same job, run by each library on a cached synthetic archive
(``geoproc.testing.generate_archive(root, size=2048, dates=8, tiles=1, seed=0)``:
one 2048 x 2048 px tile in UTM 33, 8 dates; ``--quick``: 1024 px, 4 dates):

1. read the static STAC catalog;
2. load red and nir (10 m) and SCL (20 m, nearest onto the 10 m grid);
3. mask SCL classes 3, 8, 9, 10 (shadow, cloud medium/high, cirrus);
4. NDVI per date from reflectance, i.e. with ``raster:bands`` scale 0.0001 and
   offset -0.1 applied and nodata 0 left out;
5. median over time, skipping masked and missing observations;
6. write the float32 result to a local Zarr v3 store under /tmp.

geoproc does it with its public API (``search``, ``load``, ``cloud_mask``,
``ndvi``, ``composite``, ``to_zarr``); odc-stac with ``odc.stac.load`` and
stackstac with ``stackstac.stack``, each followed by the same plain xarray
expression (:func:`xarray_ndvi_median`) and ``Dataset.to_zarr``.

Everything runs on the same Dask setup: a ``distributed.LocalCluster`` of 2
worker processes x 1 thread per library (the setup ``geoproc demo`` and the
README use). Processes rather than the threaded scheduler because GDAL calls
and the pure-Python parts of the three loaders hold the GIL for part of their
time, so threads would measure GIL contention rather than the libraries, and
because a cluster is how the job runs in production. One cluster per library
keeps one library's leftovers (GDAL caches, heap) out of another's memory and
CPU figures; the three are started up front (their schedulers share the client
process) and the runs are interleaved (round 1: geoproc, odc-stac, stackstac;
round 2: ...), so that other work on the machine spreads over all libraries.
All three use the same chunks: the whole time axis in one chunk (the median
needs it; stackstac's docs recommend ``(-1, 1, n, n)`` for composites) and
``n x n`` px spatially (default ``n = size / 2``: four chunks, two per worker).
Each library reads with its own default GDAL settings.

For each run: wall time (catalog read to store written: graph building
included, cluster start-up not), CPU time (user + system, summed over the
client process and the library's two worker processes, from ``/proc``), and
peak memory (RSS summed over the same processes, sampled every 20 ms by a
thread). Each job runs ``--repeats`` times (default 5); the table gives the
run with the best wall time and, separately, the first run's wall time, which
also pays worker-side imports and, for geoproc, the numba compilation of its
kernels in each new worker process (``cache=True`` does not help there: the
kernels reach the workers pickled inside closures, and numba rebuilds a pickled
dispatcher without its disk cache).

The three Zarr outputs are then compared: same grid (x/y coordinates), same NaN
pattern, and the largest absolute difference of NDVI; the script exits with
status 1 if they disagree grossly (NaN patterns differing in more than 0.1% of
pixels or a difference above 1e-3).

``--profile`` additionally profiles the geoproc job: the time per task kind
from the cluster's task stream, and a cProfile of the whole job run with dask's
synchronous scheduler in this process (reads, warps, decoding, kernels, Zarr
encoding), and writes a dask performance report (HTML) under /tmp.

Usage::

    python benchmarks/bench_load.py            # full archive; writes benchmarks/RESULTS.md
    python benchmarks/bench_load.py --quick    # 1024 px x 4 dates sanity run; prints only
    python benchmarks/bench_load.py --profile  # + where geoproc spends its time
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import dask
import numpy as np
import odc.stac
import pystac
import stackstac
import xarray as xr
from rasterio.enums import Resampling

import geoproc
import geoproc.testing
from _common import (
    N_WORKERS,
    THREADS_PER_WORKER,
    ProcessTreeMonitor,
    Usage,
    gib,
    local_cluster,
    machine,
    markdown_table,
    today,
    update_results,
    versions,
    worker_pids,
)

warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)

CACHE = "/tmp/geoproc-bench"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
MASK_CLASSES = (3, 8, 9, 10)
#: asset keys of the bands in the synthetic archive (Sentinel-2 naming)
RED, NIR, SCL = "B04", "B08", "SCL"
OUTPUT_CRS = 32633
#: gross-disagreement limits between the libraries' outputs
MAX_ABS_DIFF, MAX_NAN_MISMATCH = 1e-3, 1e-3


# --------------------------------------------------------------------------- data


def cached_archive(size: int, dates: int, seed: int = 0) -> str:
    """Path of the catalog of a one-tile synthetic archive under /tmp, generated on first use.

    Generation writes into a temporary folder that is renamed when complete, so
    an interrupted run never leaves a half-written archive in the cache.
    """
    root = os.path.join(CACHE, f"archive-s{size}-d{dates}-t1-seed{seed}")
    catalog = os.path.join(root, "catalog.json")
    if not os.path.exists(catalog):
        os.makedirs(CACHE, exist_ok=True)
        partial = tempfile.mkdtemp(prefix=os.path.basename(root) + ".partial-", dir=CACHE)
        print(f"generating the archive {root} (size={size}, dates={dates}; ~2-8 s per date) ...", flush=True)
        t0 = time.perf_counter()
        geoproc.testing.generate_archive(partial, size=size, dates=dates, tiles=1, seed=seed)
        shutil.rmtree(root, ignore_errors=True)
        os.rename(partial, root)
        print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
    return catalog


def stac_items(catalog: str) -> list[pystac.Item]:
    """The catalog's items with absolute asset hrefs, as odc-stac and stackstac need them."""
    items = []
    for item in pystac.Catalog.from_file(catalog).get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        items.append(item)
    return items


def raster_band(items: list[pystac.Item], key: str) -> tuple[float, float, float | None]:
    """``(scale, offset, nodata)`` of asset ``key`` from its ``raster:bands`` (same for all items here)."""
    band = items[0].assets[key].extra_fields["raster:bands"][0]
    return float(band.get("scale", 1.0)), float(band.get("offset", 0.0)), band.get("nodata")


def native_bounds(items: list[pystac.Item], key: str = RED) -> tuple[float, float, float, float]:
    """Union of the assets' pixel bounds from ``proj:transform``/``proj:shape`` (all items in one CRS here)."""
    boxes = []
    for item in items:
        a = item.assets[key].extra_fields
        (h, w), t = a["proj:shape"], a["proj:transform"]
        boxes.append((t[2], t[5] + t[4] * h, t[2] + t[0] * w, t[5]))
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


# --------------------------------------------------------------------------- the three jobs


def xarray_ndvi_median(red: xr.DataArray, nir: xr.DataArray, scl: xr.DataArray) -> xr.DataArray:
    """The job's expression in plain xarray, on float32 reflectance (NaN = no data) and SCL codes."""
    clear = ~scl.isin(MASK_CLASSES)
    ndvi = (nir - red) / (nir + red)
    return ndvi.where(clear).median("time").rename("ndvi_median")


def decode(raw: xr.DataArray, scale: float, offset: float, nodata: float | None) -> xr.DataArray:
    """``raw * scale + offset`` in float32 (as geoproc decodes), NaN where ``raw == nodata``."""
    values = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return values if nodata is None else values.where(raw != nodata)


def write_zarr(result: xr.DataArray, out: str):
    """Pending write of ``result`` (index coordinates only, no attributes) to a new Zarr v3 store.

    stackstac's attributes (``RasterSpec``, ``Affine``) and coordinates (dicts)
    cannot be stored as Zarr metadata, so all are dropped, for both libraries.
    """
    ds = result.reset_coords(drop=True).to_dataset().drop_attrs()
    return ds.to_zarr(out, mode="w-", zarr_format=3, consolidated=True, compute=False)


def geoproc_job(catalog: str, out: str, chunk: int):
    """The job with geoproc's public API; returns the pending Zarr write."""
    items = geoproc.search(catalog)
    # raw=True: reflectance stays uint16 in memory; the NDVI kernel applies scale/offset as it reads
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, chunks=chunk, raw=True)
    mask = geoproc.cloud_mask(ds, classes=MASK_CLASSES)
    median = geoproc.composite(geoproc.ndvi(ds), "median", mask=mask).rename("ndvi_median")
    return geoproc.to_zarr(median, out, compute=False)


def odc_stac_load(items, chunk: int):
    """odc-stac's lazy load for the job: raw integers, nodata 0, time whole, nearest resampling."""
    return odc.stac.load(
        items,
        bands=["red", "nir", "SCL"],
        resolution=10,
        chunks={"time": -1, "y": chunk, "x": chunk},
        groupby="solar_day",
        resampling={"SCL": "nearest", "*": "nearest"},
    )


def stackstac_stack(items, chunk: int):
    """stackstac's lazy stack for the job: float32 with NaN for nodata, time whole, nearest resampling.

    The items carry no proj:bbox, so stackstac would take their lon/lat bbox reprojected (a grid wider
    than the tile); the tiles' native bounds give the grid the other two choose. One tile per date, so
    no solar-day mosaic is needed (stackstac has no groupby). rescale=False: stackstac refuses to
    rescale into float32 (scale 0.0001 is not "safely castable"), so the decode happens in the
    expression, as for odc-stac.
    """
    return stackstac.stack(
        items,
        assets=[RED, NIR, SCL],
        resolution=10,
        epsg=OUTPUT_CRS,
        bounds=native_bounds(items),
        chunksize=(-1, 1, chunk, chunk),
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,
        xy_coords="center",
        resampling=Resampling.nearest,
    )


def odc_stac_job(catalog: str, out: str, chunk: int):
    """The job with ``odc.stac.load`` (raw integers, nodata 0) and the xarray expression."""
    items = stac_items(catalog)
    ds = odc_stac_load(items, chunk)
    red = decode(ds.red, *raster_band(items, RED))
    nir = decode(ds.nir, *raster_band(items, NIR))
    return write_zarr(xarray_ndvi_median(red, nir, ds.SCL), out)


def stackstac_job(catalog: str, out: str, chunk: int):
    """The job with ``stackstac.stack`` (float32, NaN for nodata) and the xarray expression."""
    items = stac_items(catalog)
    stack = stackstac_stack(items, chunk)
    red = decode(stack.sel(band=RED), *raster_band(items, RED)[:2], None)
    nir = decode(stack.sel(band=NIR), *raster_band(items, NIR)[:2], None)
    return write_zarr(xarray_ndvi_median(red, nir, stack.sel(band=SCL)), out)


JOBS: dict[str, Callable[[str, str, int], object]] = {
    "geoproc": geoproc_job,
    "odc-stac": odc_stac_job,
    "stackstac": stackstac_job,
}


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    usage: Usage
    build: float  # seconds to build the lazy job (catalog read included)
    tasks: int  # tasks in the graph handed to the scheduler (before optimisation)


def run_once(client, job, catalog: str, out: str, chunk: int) -> Run:
    """One timed run of ``job`` on ``client``'s cluster (the client process and that cluster's workers)."""
    shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    client.run(gc.collect)
    with ProcessTreeMonitor(pids=worker_pids(client)) as mon:
        t0 = time.perf_counter()
        pending = job(catalog, out, chunk)
        build = time.perf_counter() - t0
        client.compute(pending).result()
    return Run(mon.usage, build, len(pending.__dask_graph__()))


def run_all(catalog: str, chunk: int, repeats: int, outdir: str) -> dict[str, list[Run]]:
    """``repeats`` rounds; each round runs every library once, on that library's own cluster.

    Interleaving the libraries spreads a passing load on the machine over all
    of them instead of one.
    """
    runs: dict[str, list[Run]] = {name: [] for name in JOBS}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(local_cluster()) for name in JOBS}
        for r in range(repeats):
            for name, job in JOBS.items():
                run = run_once(clients[name], job, catalog, os.path.join(outdir, f"{name}.zarr"), chunk)
                runs[name].append(run)
                u = run.usage
                print(
                    f"round {r + 1} {name:10s} wall {u.wall:6.2f} s  build {run.build:5.2f} s  cpu {u.cpu:6.2f} s "
                    f"(client {u.cpu_client:5.2f})  peak rss {gib(u.peak_rss)} GiB (idle {gib(u.start_rss)})  "
                    f"tasks {run.tasks}" + (f"  LOST {u.lost} processes" if u.lost else ""),
                    flush=True,
                )
    return runs


def compare_outputs(outdir: str) -> tuple[list[list[str]], bool]:
    """Rows comparing geoproc's output with the others', and whether they agree."""
    arrays = {}
    for name in JOBS:
        ds = xr.open_zarr(os.path.join(outdir, f"{name}.zarr"), consolidated=True)
        arrays[name] = ds["ndvi_median"].load()
    ref = arrays["geoproc"]
    rows, ok = [], True
    for name, other in arrays.items():
        if name == "geoproc":
            continue
        same_grid = ref.shape == other.shape and all(
            np.allclose(ref[d].values, other[d].values, rtol=0, atol=1e-6) for d in ("x", "y")
        )
        if not same_grid:
            rows.append([f"geoproc vs {name}", "grids differ", f"{ref.shape} vs {other.shape}", "", ""])
            ok = False
            continue
        a, b = ref.values, other.values
        na, nb = np.isnan(a), np.isnan(b)
        nan_equal = float((na == nb).mean())
        both = ~na & ~nb
        diff = float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0
        identical = float(((a == b) | (na & nb)).mean())
        ok &= diff <= MAX_ABS_DIFF and (1 - nan_equal) <= MAX_NAN_MISMATCH
        rows.append(
            [
                f"geoproc vs {name}",
                f"{diff:.2e}",
                f"{100 * nan_equal:.4f}%",
                f"{100 * identical:.4f}%",
                f"{100 * na.mean():.2f}%",
            ]
        )
    return rows, ok


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.usage.wall)


def tables(runs: dict[str, list[Run]]) -> tuple[str, str]:
    repeats = len(next(iter(runs.values())))
    header = [
        "library",
        f"wall s (best of {repeats})",
        "median wall s (warm runs)",
        "1st run wall s",
        "graph build s",
        "CPU s",
        "CPU s in client",
        "peak RSS GiB",
        "idle RSS GiB",
        "tasks",
    ]
    rows = []
    for name, rs in runs.items():
        b = best(rs)
        u = b.usage
        rows.append(
            [
                name,
                f"{u.wall:.2f}",
                f"{np.median([r.usage.wall for r in rs[1:] or rs]):.2f}",
                f"{rs[0].usage.wall:.2f}",
                f"{b.build:.2f}",
                f"{u.cpu:.2f}",
                f"{u.cpu_client:.2f}",
                gib(u.peak_rss),
                gib(u.start_rss),
                b.tasks,
            ]
        )
    main = markdown_table(header, rows)
    g = best(runs["geoproc"]).usage
    ratio_rows = []
    for name, rs in runs.items():
        if name == "geoproc":
            continue
        o = best(rs).usage
        ratio_rows.append(
            [
                name,
                f"{g.wall / o.wall:.2f}",
                f"{g.cpu / o.cpu:.2f}",
                f"{g.peak_rss / o.peak_rss:.2f}",
                f"{(g.peak_rss - g.start_rss) / max(o.peak_rss - o.start_rss, 1):.2f}",
            ]
        )
    ratios = markdown_table(["geoproc / ...", "wall", "CPU", "peak RSS", "peak RSS above idle"], ratio_rows)
    return main, ratios


# --------------------------------------------------------------------------- profile


def profile_geoproc(catalog: str, chunk: int, outdir: str) -> str:
    """Where the geoproc job spends its time; returns Markdown."""
    from dask.utils import key_split
    from distributed import get_task_stream, performance_report

    out = os.path.join(outdir, "geoproc-profile.zarr")
    report = os.path.join(CACHE, "geoproc-performance-report.html")
    parts = []

    # 1. per task kind, on the cluster (second run: warm)
    with local_cluster() as client:
        run_once(client, geoproc_job, catalog, out, chunk)
        shutil.rmtree(out, ignore_errors=True)
        with performance_report(filename=report), get_task_stream(client) as ts:
            client.compute(geoproc_job(catalog, out, chunk)).result()
    per_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for task in ts.data:
        kind = key_split(task["key"])
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                per_kind[kind][1] += ss["stop"] - ss["start"]
            else:
                per_kind[kind][2] += ss["stop"] - ss["start"]
        per_kind[kind][0] += 1
    total = sum(v[1] for v in per_kind.values())
    rows = [
        [k, n, f"{c:.2f}", f"{100 * c / total:.0f}%", f"{o:.2f}"]
        for k, (n, c, o) in sorted(per_kind.items(), key=lambda kv: -kv[1][1])
    ]
    parts.append(
        "Task stream of one warm run on the cluster (seconds summed over the two workers; "
        "dask fuses some steps into one task, named after its parts):\n"
    )
    parts.append(markdown_table(["task kind", "tasks", "compute s", "share", "transfer/other s"], rows))
    parts.append(f"\nDask performance report: `{report}`.\n")

    # 2. cProfile of the whole job, synchronous scheduler, this process (warm: run once first)
    with dask.config.set(scheduler="synchronous"):
        shutil.rmtree(out, ignore_errors=True)
        dask.compute(geoproc_job(catalog, out, chunk))
        shutil.rmtree(out, ignore_errors=True)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        dask.compute(geoproc_job(catalog, out, chunk))
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    parts.append(
        f"\ncProfile of the whole job with the synchronous scheduler in one process ({wall:.2f} s wall, "
        "a warm run), inclusive time of the steps:\n"
    )
    parts.append(markdown_table(["step", "calls", "inclusive s", "share"], _steps(stats, wall)))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    top = "\n".join(
        ln for ln in buf.getvalue().splitlines() if ln.strip() and not ln.startswith(("   Ordered", "   List"))
    )
    parts.append(
        "\nTop functions by own time (C calls such as GDAL reads count in their Python caller):\n\n```\n"
        + top.split("\n", 1)[1]
        + "\n```\n"
    )
    shutil.rmtree(out, ignore_errors=True)

    # 3. the loaders alone
    parts.append(
        f"Loading alone: seconds for one {chunk} x {chunk} px chunk (all dates) of each band, synchronous, best of 3:\n"
    )
    parts.append(
        markdown_table(
            ["library", "red (10 m, float32)", "nir (10 m, float32)", "SCL (20 m onto 10 m)"],
            load_chunk_times(catalog, chunk),
        )
    )
    return "\n".join(parts)


#: (label, path fragment, function name) of the steps the profile reports, outermost first
_STEPS = [
    ("graph building: geoproc.load (lazy)", "geoproc/loader.py", "load"),
    ("load: read_chunk (one band, one chunk, all dates)", "geoproc/io/reader.py", "read_chunk"),
    ("  rasterio.open (per asset and chunk)", "rasterio/__init__.py", "open"),
    ("  _read_open (window read or WarpedVRT, nodata mask)", "geoproc/io/reader.py", "_read_open"),
    ("  numpy.full (output chunk allocation)", "numpy/_core/numeric.py", "full"),
    ("mask and NDVI kernels (elementwise blocks)", "geoproc/_blocks.py", "block"),
    ("median kernel (composite block)", "geoproc/compositing.py", "block"),
    ("Zarr: encode + write a chunk (dask store task)", "dask/array/core.py", "load_store_chunk"),
]


def _steps(stats: pstats.Stats, wall: float) -> list[list[str]]:
    rows = []
    for label, path, func in _STEPS:
        found = [
            (nc, ct) for (fn, _, name), (_, nc, _, ct, _) in stats.stats.items() if name == func and fn.endswith(path)
        ]
        if found:  # the geoproc internals move; a step that is not there is left out
            calls, cum = sum(f[0] for f in found), sum(f[1] for f in found)
            rows.append([label, int(calls), f"{cum:.2f}", f"{100 * cum / wall:.0f}%"])
    return rows


def load_chunk_times(catalog: str, chunk: int, repeats: int = 3) -> list[list[str]]:
    """Seconds to load one chunk (all dates) of each band, per library, synchronously in this process.

    Reflectance is decoded to float32 with NaN for all three (geoproc in its
    loader, the others with :func:`decode`), SCL stays codes. This isolates the
    loaders from the kernels and the Zarr write.
    """
    items = stac_items(catalog)
    gds = geoproc.load(geoproc.search(catalog), ["red", "nir", "scl"], resolution=10, chunks=chunk)
    ods = odc_stac_load(items, chunk)
    sst = stackstac_stack(items, chunk)
    arrays = {
        "geoproc": [gds.red, gds.nir, gds.scl],
        "odc-stac": [decode(ods.red, *raster_band(items, RED)), decode(ods.nir, *raster_band(items, NIR)), ods.SCL],
        "stackstac": [
            decode(sst.sel(band=RED), *raster_band(items, RED)[:2], None),
            decode(sst.sel(band=NIR), *raster_band(items, NIR)[:2], None),
            sst.sel(band=SCL),
        ],
    }
    rows = []
    for lib, bands in arrays.items():
        row = [lib]
        for arr in bands:
            block = arr.data.blocks[(0,) * arr.ndim]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                block.compute(scheduler="synchronous")
                times.append(time.perf_counter() - t0)
            row.append(f"{min(times):.3f}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small archive (1024 px, 4 dates); results are printed, not saved"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per library (default 5; the best is reported)")
    parser.add_argument("--chunk", type=int, default=None, help="spatial chunk size in px (default: size / 2)")
    parser.add_argument("--profile", action="store_true", help="also profile the geoproc job")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    size, dates = (1024, 4) if args.quick else (2048, 8)
    chunk = args.chunk or size // 2
    catalog = cached_archive(size, dates)
    command = "python benchmarks/bench_load.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    load_before = os.getloadavg()
    print(
        f"archive: {os.path.dirname(catalog)} ({size} x {size} px, {dates} dates, 1 tile); "
        f"chunks (time=all, {chunk}, {chunk})"
    )
    print(
        f"dask: distributed LocalCluster, {N_WORKERS} worker processes x {THREADS_PER_WORKER} thread, one per library\n"
    )

    with tempfile.TemporaryDirectory(prefix="bench-load-out-", dir=CACHE) as outdir:
        runs = run_all(catalog, chunk, args.repeats, outdir)
        agreement, ok = compare_outputs(outdir)
        profile = profile_geoproc(catalog, chunk, outdir) if args.profile else ""

    main_table, ratio_table = tables(runs)
    agree_table = markdown_table(
        ["outputs", "max abs diff", "same NaN pattern", "bit-identical px", "NaN px (geoproc)"], agreement
    )
    vers = versions()
    body = "\n".join(
        [
            f"Date: {today()}. Machine: {machine()}; load average before the runs "
            f"{load_before[0]:.2f} / {load_before[1]:.2f} (1 / 5 min; other work on the machine adds noise).",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
            f"Command: `{command}`. Archive: {size} x {size} px at 10 m, {dates} dates, 1 tile (UTM 33), seed 0; "
            f"chunks: whole time axis x {chunk} x {chunk} px. Dask: distributed LocalCluster, {N_WORKERS} processes x "
            f"{THREADS_PER_WORKER} thread, one per library, runs interleaved; {args.repeats} runs each, "
            "best wall time shown. The 1st run also pays worker-side imports and, for geoproc, numba compiling "
            "its kernels in each new worker.",
            "",
            main_table,
            "",
            ratio_table,
            "",
            "Agreement of the outputs (pixels of the 10 m grid):",
            "",
            agree_table,
            "",
        ]
    )
    if profile:
        body += "\n### Where geoproc spends its time\n\n" + profile
    print("\n" + body)
    if not args.quick and not args.no_save:
        update_results(RESULTS, "Load job", body)
        print(f"\nwritten to {RESULTS}")
    if not ok:
        print("\nERROR: the libraries' outputs disagree grossly (see the agreement table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
