"""Graph building at scale, side by side: geoproc vs odc-stac vs stackstac.

What is measured
----------------
2,000 STAC items are built in memory (not timed): 250 dates x 8 tiles of
10,980 x 10,980 px at 10 m in EPSG:32633, laid out like Sentinel-2 MGRS tiles
(100 km apart, so neighbours overlap by 9.8 km; a 3 x 3 block without one
corner), with ``proj:epsg``/``proj:shape``/``proj:transform``, ``eo:bands`` and
``raster:bands`` (scale 0.0001, offset -0.1, nodata 0), and three assets each:
red (B04) and nir (B08) at 10 m, SCL at 20 m. The hrefs point nowhere: nothing
is read.

Each library then builds the lazy result of the job of ``bench_load.py`` (load
red, nir, SCL; mask SCL classes 3, 8, 9, 10; NDVI; median over time) on a
10,000 x 10,000 px output grid at 10 m whose 100 km square crosses all 8
tiles, with the 8 tiles of one date mosaicked into one time slice (geoproc and
odc-stac: ``groupby="solar_day"``; stackstac has no grouping, so its stack is
mosaicked per day with xarray's ``groupby(day).first()``, which takes the
first valid value in time order, as the other two do). Reported per library:

* build time: wall seconds from the item list to the lazy median, in this
  process, no cluster; best of ``--repeats`` (default 3), except that builds
  taking more than 20 s in all are not repeated;
* tasks: ``len(result.__dask_graph__())``, the materialised graph;
* after optimisation: tasks of ``dask.optimize(result)`` (blockwise fusion and
  culling) and the seconds that took (skipped above ``--optimize-limit``);
* the size of the optimised graph pickled with cloudpickle (what a client
  ships to a distributed scheduler, roughly);
* tasks (after optimisation) per output chunk of the median.

Chunks: 1024 x 1024 px (``--chunk``) with the whole time axis in one chunk for
all three, as in ``bench_load.py``. Extra rows: ``stackstac, no mosaic`` (its
load graph alone; not the same result where tiles overlap), and ``default
chunks``: geoproc's automatic chunk size, and odc-stac's and stackstac's own
default of one time step per chunk (rechunked to one time chunk for the
median), which is how they are usually called.

Usage::

    python benchmarks/bench_graph.py             # writes benchmarks/RESULTS.md
    python benchmarks/bench_graph.py --no-save   # prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import cloudpickle
import dask
import numpy as np
import pystac
import xarray as xr
from pyproj import Transformer

import geoproc
from _common import machine, markdown_table, today, update_results, versions

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
EPSG = 32633
MASK_CLASSES = (3, 8, 9, 10)
SCALE, OFFSET = 0.0001, -0.1
N_DATES, TILE_PX, OUT_PX = 250, 10980, 10_000
#: upper-left corners of the 8 tiles (x, y) in EPSG:32633: 3 x 3, 100 km apart, without the SE corner
TILE_ORIGINS = [(399960 + 100_000 * i, 5_200_020 - 100_000 * j) for j in range(3) for i in range(3)][:-1]
#: the 100 km x 100 km output area: it overlaps every tile
OUT_BOUNDS = (504_960.0, 4_995_020.0, 504_960.0 + OUT_PX * 10, 4_995_020.0 + OUT_PX * 10)
_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]


# --------------------------------------------------------------------------- items


def _footprint(x0: float, y0: float, size_m: float) -> tuple[dict, list[float]]:
    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    corners = [(x0, y0), (x0 + size_m, y0), (x0 + size_m, y0 - size_m), (x0, y0 - size_m)]
    ring = [list(map(float, to_ll.transform(x, y))) for x, y in corners]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}, [min(lons), min(lats), max(lons), max(lats)]


def make_items(n_dates: int = N_DATES) -> list[pystac.Item]:
    """``n_dates`` x 8 Sentinel-2-like items with red, nir (10 m) and SCL (20 m) assets; nothing behind the hrefs."""
    tiles = []
    for k, (x0, y0) in enumerate(TILE_ORIGINS):
        geometry, bbox = _footprint(x0, y0, TILE_PX * 10)
        tiles.append((f"33T{chr(ord('A') + k)}", x0, y0, geometry, bbox))
    reflectance = {"nodata": 0, "data_type": "uint16", "scale": SCALE, "offset": OFFSET, "spatial_resolution": 10}
    start = dt.datetime(2021, 1, 1, 9, 50, tzinfo=dt.timezone.utc)
    items = []
    for d in range(n_dates):
        for k, (name, x0, y0, geometry, bbox) in enumerate(tiles):
            when = start + dt.timedelta(days=5 * d, seconds=5 * k)
            item_id = f"S2X_{name}_{when:%Y%m%d}_L2A"
            item = pystac.Item(
                id=item_id,
                geometry=geometry,
                bbox=bbox,
                datetime=when,
                properties={"proj:epsg": EPSG, "eo:cloud_cover": 10.0, "platform": "sentinel-2a"},
                stac_extensions=list(_EXTENSIONS),
                collection="sentinel-2-l2a-synthetic",
            )
            base = f"https://example.invalid/s2/{item_id}"
            for key, common, res in (("B04", "red", 10), ("B08", "nir", 10), ("SCL", None, 20)):
                px = TILE_PX * 10 // res
                extra = {
                    "proj:shape": [px, px],
                    "proj:transform": [res, 0, x0, 0, -res, y0],
                    "raster:bands": [
                        reflectance if common else {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}
                    ],
                }
                if common:
                    extra["eo:bands"] = [{"name": key, "common_name": common}]
                item.add_asset(
                    key,
                    pystac.Asset(
                        f"{base}/{key}.tif", media_type=pystac.MediaType.COG, roles=["data"], extra_fields=extra
                    ),
                )
            items.append(item)
    return items


# --------------------------------------------------------------------------- the three lazy jobs


def _decode(raw: xr.DataArray, nodata: float | None = None) -> xr.DataArray:
    """Reflectance in float32 as geoproc decodes it (the items' scale and offset), NaN where ``raw == nodata``."""
    values = raw.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET)
    return values if nodata is None else values.where(raw != nodata)


def _xarray_median(red, nir, scl) -> xr.DataArray:
    clear = ~scl.isin(MASK_CLASSES)
    return ((nir - red) / (nir + red)).where(clear).median("time")


def geoproc_graph(items, chunk):
    ds = geoproc.load(items, ["red", "nir", "scl"], resolution=10, bounds=OUT_BOUNDS, chunks=chunk)
    mask = geoproc.cloud_mask(ds, classes=MASK_CLASSES)
    return geoproc.composite(geoproc.ndvi(ds), "median", mask=mask)


def odc_stac_graph(items, chunk, time_chunk=-1):
    import odc.stac
    from odc.geo.geobox import GeoBox

    geobox = GeoBox.from_bbox(OUT_BOUNDS, crs=f"EPSG:{EPSG}", resolution=10)
    ds = odc.stac.load(
        items,
        bands=["red", "nir", "SCL"],
        geobox=geobox,
        groupby="solar_day",
        chunks={"time": time_chunk, "y": chunk, "x": chunk},
        resampling={"SCL": "nearest", "*": "nearest"},
    )
    if time_chunk != -1:
        ds = ds.chunk({"time": -1})
    return _xarray_median(_decode(ds.red, nodata=0), _decode(ds.nir, nodata=0), ds.SCL)


def stackstac_graph(items, chunk, time_chunk=-1, mosaic=True):
    import stackstac

    stack = stackstac.stack(
        items,
        assets=["B04", "B08", "SCL"],
        resolution=10,
        epsg=EPSG,
        bounds=OUT_BOUNDS,
        chunksize=(time_chunk, 1, chunk, chunk),
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,
        xy_coords="center",
    )
    if mosaic:
        # one time slice per solar day (local time = UTC + lon/15 h, about +1 h here), first valid value
        # in time order, as geoproc and odc-stac fuse; stackstac has no grouping of its own
        day = (stack.time + np.timedelta64(1, "h")).dt.floor("1D")
        stack = stack.assign_coords(day=("time", day.data)).groupby("day").first(skipna=True).rename(day="time")
    if mosaic or time_chunk != -1:
        stack = stack.chunk({"time": -1, "y": chunk, "x": chunk})
    red, nir, scl = (stack.sel(band=b) for b in ("B04", "B08", "SCL"))
    return _xarray_median(_decode(red), _decode(nir), scl)


@dataclass
class Case:
    name: str
    build: Callable[[list[pystac.Item]], xr.DataArray]
    note: str


def cases(chunk: int) -> list[Case]:
    return [
        Case("geoproc", lambda items: geoproc_graph(items, chunk), f"chunks (all, {chunk}, {chunk})"),
        Case("odc-stac", lambda items: odc_stac_graph(items, chunk), f"chunks (all, {chunk}, {chunk})"),
        Case(
            "stackstac",
            lambda items: stackstac_graph(items, chunk),
            f"chunks (all, 1, {chunk}, {chunk}); groupby(day).first()",
        ),
        Case(
            "stackstac, no mosaic",
            lambda items: stackstac_graph(items, chunk, mosaic=False),
            "as above without the mosaic: its load graph alone (not the same result)",
        ),
        Case(
            "geoproc, default chunks", lambda items: geoproc_graph(items, None), "automatic: <= 128 MiB per band chunk"
        ),
        Case(
            "odc-stac, default chunks",
            lambda items: odc_stac_graph(items, chunk, time_chunk=1),
            f"chunks (1, {chunk}, {chunk}), then time rechunked to one chunk",
        ),
        Case(
            "stackstac, default chunks",
            lambda items: stackstac_graph(items, chunk, time_chunk=1),
            f"chunks (1, 1, {chunk}, {chunk}), then time rechunked to one chunk",
        ),
    ]


# --------------------------------------------------------------------------- measuring


@dataclass
class Measure:
    build: float
    tasks: int
    tasks_opt: int | None
    optimize: float | None
    pickled: int | None
    out_chunks: int
    chunk_shape: tuple


def measure(case: Case, items: list[pystac.Item], repeats: int, optimize_limit: int, slow: float = 20.0) -> Measure:
    times: list[float] = []
    while len(times) < repeats and sum(times) < slow:  # a slow build (tens of seconds) is not repeated
        gc.collect()
        t0 = time.perf_counter()
        result = case.build(items)
        times.append(time.perf_counter() - t0)
    tasks = len(result.__dask_graph__())
    tasks_opt = opt_s = pickled = None
    if tasks <= optimize_limit:
        t0 = time.perf_counter()
        (optimized,) = dask.optimize(result)
        graph = dict(optimized.__dask_graph__())
        opt_s = time.perf_counter() - t0
        tasks_opt = len(graph)
        pickled = len(cloudpickle.dumps(graph))
    chunk_shape = tuple(c[0] for c in result.chunks)
    return Measure(min(times), tasks, tasks_opt, opt_s, pickled, result.data.npartitions, chunk_shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunk", type=int, default=1024, help="spatial chunk size in px (default 1024)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="builds per library; the fastest is reported (default 3)"
    )
    parser.add_argument(
        "--optimize-limit", type=int, default=1_000_000, help="skip dask.optimize above this many tasks"
    )
    parser.add_argument("--only", nargs="*", help="run only the cases whose name starts with one of these")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=dask.array.core.PerformanceWarning)

    t0 = time.perf_counter()
    items = make_items()
    print(
        f"{len(items)} items ({N_DATES} dates x {len(TILE_ORIGINS)} tiles) "
        f"built in {time.perf_counter() - t0:.1f} s (not timed)"
    )
    print(f"output: {OUT_PX} x {OUT_PX} px at 10 m, EPSG:{EPSG}, bounds {OUT_BOUNDS}\n")

    rows, results = [], {}
    for case in cases(args.chunk):
        if args.only and not any(case.name.startswith(o) for o in args.only):
            continue
        m = measure(case, items, args.repeats, args.optimize_limit)
        results[case.name] = m
        opt = f"{m.tasks_opt:,}" if m.tasks_opt is not None else "skipped"
        opt_s = f"{m.optimize:.2f}" if m.optimize is not None else "-"
        per_chunk = f"{(m.tasks_opt or m.tasks) / m.out_chunks:.1f}"
        mb = f"{m.pickled / 1e6:.1f}" if m.pickled is not None else "-"
        row = [
            case.name,
            f"{m.build:.2f}",
            f"{m.tasks:,}",
            opt,
            opt_s,
            mb,
            f"{m.out_chunks:,}",
            per_chunk,
            case.note + (f" ({m.chunk_shape[0]} px)" if m.chunk_shape != (args.chunk, args.chunk) else ""),
        ]
        rows.append(row)
        print(" | ".join(row), flush=True)

    table = markdown_table(
        [
            "library",
            f"build s (best of {args.repeats})",
            "tasks",
            "tasks optimised",
            "optimise s",
            "graph MB",
            "output chunks",
            "tasks per output chunk",
            "chunking",
        ],
        rows,
        align="lrrrrrrrl",
    )
    command = "python benchmarks/bench_graph.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    vers = versions()
    body = "\n".join(
        [
            f"Date: {today()}. Machine: {machine()}.",
            "Versions: "
            + ", ".join(f"{k} {vers[k]}" for k in ("geoproc", "odc-stac", "odc-loader", "stackstac", "dask", "xarray"))
            + ".",
            f"Command: `{command}`. {len(items):,} items ({N_DATES} dates x {len(TILE_ORIGINS)} overlapping "
            f"10,980 px tiles, EPSG:{EPSG}) x 3 bands onto {OUT_PX:,} x {OUT_PX:,} px; "
            "lazy load + mask + NDVI + median, nothing computed. "
            "Target (issue 3): geoproc under 0.5 s, tasks within a small constant of the output chunks.",
            "",
            table,
            "",
        ]
    )
    g = results.get("geoproc")
    if g:
        verdict = "meets" if g.build < 0.5 else "misses"
        body += f"geoproc {verdict} the 0.5 s target at {args.chunk} px chunks ({g.build:.2f} s).\n"
    print("\n" + body)
    if not args.no_save and not args.only:
        update_results(RESULTS, "Graph build", body)
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
