"""Zonal statistics of field polygons over a (time, y, x) cube: geoproc vs exactextract vs xarray-spatial, one run.

    python benchmarks/bench_zonal.py                       # scaled: 2048 x 2048 px x 10 dates, ~4,200 fields
    python benchmarks/bench_zonal.py --size 10000 --dates 50 --fields 100000   # the issue's full size

The cube (float32, written once as a tiled multi-band GeoTIFF, one band per date) and the fields (rotated
rectangles of about 32 x 32 px on a jittered grid, no overlaps; the full-size density: 100,000 fields per 10^8 px)
are the same for all three:

* geoproc: ``zonal_stats`` on the GeoTIFF opened lazily (rioxarray, 1024 x 1024 px chunks, all dates per chunk) on
  a distributed LocalCluster of 2 processes x 1 thread; once with exact coverage fractions, once with pixel centres.
* exactextract: ``exact_extract`` on the same file and polygons (exact coverage fractions; one process, as it runs).
* xarray-spatial: ``xrspatial.zonal.stats`` per date on the fields rasterised by pixel centre (rasterio), numpy-backed;
  the rasterisation is timed apart.

Statistics: count and mean per field and date. Agreement: geoproc's fractions vs exactextract, geoproc's centres vs
xarray-spatial (max abs differences). The figures go to RESULTS.md (section "Zonal statistics").

    python benchmarks/bench_zonal.py --memory 2048,4096,8192   # geoproc alone: peak memory against area

measures geoproc alone on cubes generated in the graph (no files) of growing area with the same chunks, dates and
density of fields: wall time and the peak RSS of the client and the workers (sampled every 20 ms), which should
follow the chunk size and the number of zones, not the area (section "Zonal statistics: memory against area").
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def fields(size: int, n: int, res: float, x0: float, y1: float, seed: int = 0):
    import shapely

    rng = np.random.default_rng(seed)
    per_row = int(np.ceil(np.sqrt(n)))
    cell = size / per_row
    out = []
    for k in range(n):
        r, c = divmod(k, per_row)
        cx = x0 + (c + 0.5) * cell * res + rng.uniform(-0.1, 0.1) * cell * res
        cy = y1 - (r + 0.5) * cell * res + rng.uniform(-0.1, 0.1) * cell * res
        w, h = rng.uniform(0.45, 0.6, 2) * cell * res  # with the jitter and turn: never overlapping
        g = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        out.append(shapely.affinity.rotate(g, rng.uniform(-10, 10)))
    return out


def write_cube(path: str, size: int, dates: int, res: float, x0: float, y1: float) -> None:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=dates, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(x0, y1, res, res), tiled=True, blockxsize=512,
                       blockysize=512) as dst:
        step = 1024
        for y in range(0, size, step):
            h = min(step, size - y)
            block = rng.random((dates, h, size), dtype=np.float32)
            dst.write(block, window=rasterio.windows.Window(0, y, size, h))


def memory_scaling(sizes: list[int], dates: int, chunk: int, write: bool) -> None:
    import dask.array as da
    import xarray as xr
    from _common import ProcessTreeMonitor, worker_pids
    from dask.distributed import Client, LocalCluster

    import geoproc

    res, x0, y1 = 10.0, 400000.0, 5500000.0
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for size in sizes:
            n = size * size // 1000
            geoms = fields(size, n, res, x0, y1)
            cube = xr.DataArray(
                da.random.default_rng(size).random((dates, size, size), dtype=np.float32, chunks=(dates, chunk, chunk)),
                dims=("time", "y", "x"), coords={"time": np.arange(dates), "y": y1 - res / 2 - res * np.arange(size),
                                                  "x": x0 + res / 2 + res * np.arange(size)})
            geoproc.zonal_stats(cube.isel(y=slice(0, 64), x=slice(0, 64)), geoms[:4], stats=("count", "mean"),
                                coverage="fraction")  # imports and compiling, not measured
            client.run(lambda: __import__("gc").collect())
            with ProcessTreeMonitor(pids=worker_pids(client)) as mon:
                out = geoproc.zonal_stats(cube, geoms, stats=("count", "mean"), coverage="fraction", output="xarray")
            u = mon.usage
            assert out.sizes["zone"] == n and float(out["count"].sum()) > 0
            rows.append((size, n, size * size * dates * 4 / 2**30, u.wall, u.start_rss / 2**30, u.peak_rss / 2**30))
            print(rows[-1])
    lines = ["## Zonal statistics: memory against area", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Command: `python benchmarks/bench_zonal.py "
             f"--memory {','.join(map(str, sizes))}`. geoproc alone, exact fractions, count and mean, on float32 cubes "
             f"of {dates} dates generated in the graph (no files), chunks of {dates} x {chunk} x {chunk} px, one field "
             "per 1,000 px; LocalCluster of 2 processes x 1 thread. RSS summed over the client and both workers.", "",
             "| size (px) | fields | cube GiB | wall s | RSS before GiB | peak RSS GiB | peak above before GiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size, n, gb, wall, r0, r1 in rows:
        lines.append(f"| {size} x {size} | {n} | {gb:.2f} | {wall:.1f} | {r0:.2f} | {r1:.2f} | {r1 - r0:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        path = HERE / "RESULTS.md"
        old = path.read_text()
        section = re.compile(r"## Zonal statistics: memory against area\n.*?(?=\n## |\Z)", re.S)
        new = section.sub(text.rstrip("\n") + "\n", old) if section.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--dates", type=int, default=10)
    ap.add_argument("--fields", type=int, default=None, help="default: the full size's density, size^2 / 1000")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    ap.add_argument("--memory", default=None, help="comma-separated sizes: geoproc's peak memory against area")
    args = ap.parse_args()
    if args.memory:
        return memory_scaling([int(v) for v in args.memory.split(",")], args.dates, args.chunk, not args.no_write)
    n = args.fields or args.size * args.size // 1000
    res, x0, y1 = 10.0, 400000.0, 5500000.0

    import geopandas as gpd
    import rioxarray
    import xarray as xr
    from dask.distributed import Client, LocalCluster
    from exactextract import exact_extract
    from rasterio.features import rasterize
    from rasterio.transform import from_origin
    import xrspatial.zonal

    import geoproc

    tmp = tempfile.mkdtemp(prefix="bench_zonal_")
    tif = os.path.join(tmp, "cube.tif")
    t0 = time.perf_counter()
    write_cube(tif, args.size, args.dates, res, x0, y1)
    geoms = fields(args.size, n, res, x0, y1)
    gdf = gpd.GeoDataFrame({"field": np.arange(n)}, geometry=geoms, crs="EPSG:32633")
    print(f"cube {args.size} x {args.size} x {args.dates}, {n} fields: made in {time.perf_counter() - t0:.1f} s")

    rows, agree = [], []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        cube = rioxarray.open_rasterio(tif, chunks={"band": -1, "y": args.chunk, "x": args.chunk}, lock=False)
        cube = cube.rename(band="time").assign_coords(time=np.arange(args.dates))
        geoproc.zonal_stats(cube.isel(y=slice(0, 64), x=slice(0, 64)), geoms[:4], stats=("count", "mean"),
                            coverage="fraction")  # workers import and compile once, not timed
        got = {}
        for cov in ("fraction", "centre"):
            t0 = time.perf_counter()
            got[cov] = geoproc.zonal_stats(cube, gdf, stats=("count", "mean"), coverage=cov, output="xarray")
            rows.append((f"geoproc ({cov}, LocalCluster 2 x 1)", time.perf_counter() - t0))
            print(rows[-1])

    t0 = time.perf_counter()
    ee = exact_extract(tif, gdf, ["count", "mean"], include_cols=["field"], output="pandas")
    rows.append(("exactextract (fraction, 1 process)", time.perf_counter() - t0))
    print(rows[-1])

    t0 = time.perf_counter()
    zones = rasterize(((g, k + 1) for k, g in enumerate(geoms)), out_shape=(args.size, args.size),
                      transform=from_origin(x0, y1, res, res), fill=0, dtype="int32")
    t_rast = time.perf_counter() - t0
    import rasterio

    with rasterio.open(tif) as src:
        values = src.read()
    zda = xr.DataArray(zones, dims=("y", "x"))
    t0 = time.perf_counter()
    xs = []
    for t in range(args.dates):
        df = xrspatial.zonal.stats(zda, xr.DataArray(values[t], dims=("y", "x")), stats_funcs=["count", "mean"],
                                   nodata_values=0)
        xs.append(df.set_index("zone"))
    rows.append(("xarray-spatial (centre, numpy, per date)", time.perf_counter() - t0))
    rows.append(("xarray-spatial + rasterising the fields", rows[-1][1] + t_rast))
    print(rows[-2:])

    # agreement
    frac = got["fraction"]
    ee = ee.set_index("field").loc[frac.zone.values]
    band = [f"band_{t + 1}_" for t in range(args.dates)] if args.dates > 1 else [""]
    ee_mean = np.stack([ee[f"{b}mean"].values for b in band], axis=1)
    ee_count = np.stack([ee[f"{b}count"].values for b in band], axis=1)
    agree.append(("geoproc fraction vs exactextract", np.nanmax(abs(frac["mean"].values - ee_mean)),
                  np.nanmax(abs(frac["count"].values - ee_count))))
    cen = got["centre"]
    xs_mean = np.stack([x.reindex(np.arange(1, n + 1))["mean"].values for x in xs], axis=1)
    xs_count = np.stack([x.reindex(np.arange(1, n + 1))["count"].values for x in xs], axis=1)
    agree.append(("geoproc centre vs xarray-spatial", np.nanmax(abs(cen["mean"].values - xs_mean)),
                  np.nanmax(abs(cen["count"].values - xs_count))))

    px = args.size * args.size * args.dates
    lines = ["## Zonal statistics", "",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {os.cpu_count()} cores, shared "
             "with other work (noise). Command: `python benchmarks/bench_zonal.py"
             + (f" --size {args.size} --dates {args.dates} --fields {n}" if args.fields or args.size != 2048
                or args.dates != 10 else "") + "`.",
             f"Cube: {args.size} x {args.size} px x {args.dates} dates (float32 GeoTIFF, one band per date); {n} "
             f"field polygons (rotated rectangles of ~{args.size / np.ceil(np.sqrt(n)) * 0.52:.0f} px a side, "
             "no overlaps); count "
             f"and mean per field and date. geoproc chunks: {args.chunk} x {args.chunk} px x all dates. "
             + ("Scaled down from the issue's 10,000 x 10,000 px x 50 dates with 100,000 fields (the same density "
                "of fields): that cube is 20 GB of float32, beyond this 2-core machine's share of memory and time; "
                "run the command above with `--size 10000 --dates 50 --fields 100000` on a bigger machine."
                if args.size < 10000 else ""), "",
             "| library (coverage rule) | wall s | Mpx x dates / s |", "| :--- | ---: | ---: |"]
    for name, s in rows:
        lines.append(f"| {name} | {s:.2f} | {px / s / 1e6:.1f} |")
    lines += ["", "| agreement | max abs diff, mean | max abs diff, count |", "| :--- | ---: | ---: |"]
    for name, m, c in agree:
        lines.append(f"| {name} | {m:.2e} | {c:.2e} |")
    lines += ["", "exactextract keeps coverage fractions in single precision, so its counts (sums of fractions) differ "
              "from geoproc's double-precision ones by about 1e-7 per pixel; the means agree to 1e-9. geoproc's "
              "times include reading the GeoTIFF and computing the weights; xarray-spatial's exclude reading it."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        path = HERE / "RESULTS.md"
        old = path.read_text()
        section = re.compile(r"## Zonal statistics\n.*?(?=\n## |\Z)", re.S)
        new = section.sub(text.rstrip("\n") + "\n", old) if section.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new)


if __name__ == "__main__":
    main()
