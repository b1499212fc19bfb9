"""A continental job, simulated: plan, graph, tiles, scheduler and throughput at 200,000 x 200,000 px.

What is measured
----------------
Items are fabricated (``_fabricate.py``): Sentinel-2-like tiles of 109.8 km, 100 km apart, each in the UTM
zone of its centre, with red and nir (10 m, uint16, scale/offset) and SCL (20 m, uint8), on ``n`` dates.
The job is a monthly-composite-like reduction: load red/nir/SCL onto a 10 m EPSG:3035 grid, mask SCL
cloud classes, NDVI, median over time, written to Zarr. Pixels come from
:class:`geoproc.testing.synthetic_reader.SyntheticReader` (the reader protocol allows it): nothing is read
from files, so the figures are those of geoproc's own work (planning, graphs, scheduling, computing,
writing).

1. **Graph scale** (CPU seconds of this process; 50,000^2 px x 2,000 items, 100,000^2 x 8,000, 200,000^2 x
   32,000): ``plan()``; building the lazy job; the store's template; the one-graph write (every region's
   graph, fused and culled: what ``to_zarr`` submits) where ``--one-graph-limit`` allows; and the tiles'
   graphs, all of them (what ``write_tiled`` builds over the run), with the largest tile's task count.
2. **Submission**: a one-graph write of >= 50,000 regions submitted to a real ``dask scheduler`` process
   (two ``dask worker`` processes), as a compact graph and as dask's fused tasks: wall seconds until the
   scheduler holds every task, and its memory then.
3. **Tiles end to end** on that cluster: a sample of tiles of the 200,000^2 job (``--sample``) computed and
   written to a local store: throughput (output Mpx/s per worker core and input Mpx/s: dates x bands x
   px), the most tasks in flight, the scheduler's memory.
4. **Tiling overhead**: one area small enough for one graph, written as one graph (``to_zarr``) and in
   tiles (``write_tiled``) on the same cluster; wall seconds of each.
5. **Long series**: for 8, 128 and 1,000 dates, the automatic chunk, ``plan().task_bytes`` and the peak
   memory of one region's task (tracemalloc, the region computed alone).
6. **Europe estimate** from 3: a 10 m monthly median composite of Europe on N workers.

Usage::

    python benchmarks/bench_continental.py            # writes the section of benchmarks/RESULTS.md
    python benchmarks/bench_continental.py --quick    # smaller sizes, prints only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _fabricate as F  # noqa: E402
from _common import machine, today, update_results, versions  # noqa: E402

import geoproc  # noqa: E402
from geoproc.io.items import as_items  # noqa: E402
from geoproc.io.zarr import begin_write  # noqa: E402
from geoproc.run import write_tiled  # noqa: E402
from geoproc.run.tiles import DEFAULT_MAX_TASKS, _tiling  # noqa: E402
from geoproc.testing.synthetic_reader import SyntheticReader  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
BANDS = ["red", "nir", "scl"]
CLOUDS = (3, 8, 9, 10)
#: Europe (the continent, to the Urals) in km^2, and Sentinel-2 acquisitions of one place in a month
#: (two satellites, 5-day revisit at the equator, more where orbits overlap)
EUROPE_KM2, DATES_PER_MONTH = 10.2e6, 8
#: tiles of the end-to-end sample, in chunks (4 x 4 chunks of 512 px: 16 regions of 80 dates each)
SAMPLE_TILE = 4


def cpu(f, *args, **kwargs):
    t = time.process_time()
    out = f(*args, **kwargs)
    return out, time.process_time() - t


def build(items, side, chunks=None, reader=None):
    b = F.area_bounds(side)
    ds = geoproc.load(items, BANDS, crs=F.OUT_CRS, resolution=10, bounds=b, chunks=chunks,
                      reader=reader or SyntheticReader())
    return geoproc.composite(geoproc.ndvi(ds), "median", mask=geoproc.cloud_mask(ds, classes=CLOUDS))


def graph_scale(sizes, one_graph_limit, folder):
    rows = []
    for side, n in sizes:
        items = as_items(F.make_items(side, n))
        b = F.area_bounds(side)
        p, t_plan = cpu(geoproc.plan, items, BANDS, crs=F.OUT_CRS, resolution=10, bounds=b)
        job, t_build = cpu(build, items, side)
        w, t_template = cpu(begin_write, job, os.path.join(folder, f"g{side}.zarr"), stac_item=False)
        blocks = w.pending()
        t_one, n_one = float("nan"), None
        if len(blocks) <= one_graph_limit:
            dsk, t_one = cpu(w.graph, blocks)
            n_one = len(dsk)
            del dsk
        (ty, tx, tiles), t_tiling = cpu(_tiling, w, None, DEFAULT_MAX_TASKS)
        t = time.process_time()
        biggest = 0
        for tile_blocks in tiles.values():
            biggest = max(biggest, len(w.graph(tile_blocks)))
        t_tiles = time.process_time() - t + t_tiling
        rows.append({
            "job": f"{side:,}^2 px, {len(items):,} items, {p.shape[0]} dates", "regions": len(blocks),
            "load tasks": p.tasks, "plan": t_plan, "build": t_build, "template": t_template,
            "one graph": (t_one, n_one), "tiles": len(tiles), "tile": f"{ty}x{tx} chunks", "tile graphs": t_tiles,
            "largest tile": biggest, "task memory": p.task_bytes,
        })
        print(rows[-1], flush=True)
    return rows


class Cluster:
    """A real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, workers=2, threads=1, memory="4GiB"):
        self.dir = tempfile.mkdtemp(prefix="bench-cluster-")
        self.file = os.path.join(self.dir, "scheduler.json")
        bindir = os.path.dirname(sys.executable)
        self.procs = [subprocess.Popen([os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                        "--dashboard-address", ":0", "--scheduler-file", self.file],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        for _ in range(200):
            if os.path.exists(self.file):
                break
            time.sleep(0.1)
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [os.path.join(bindir, "dask"), "worker", "--scheduler-file", self.file, "--nthreads", str(threads),
                 "--memory-limit", memory, "--local-directory", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        self.client = Client(scheduler_file=self.file)
        self.client.wait_for_workers(workers, timeout=120)
        self.cores = workers * threads

    def scheduler_rss(self) -> int:
        import psutil

        return psutil.Process(self.procs[0].pid).memory_info().rss

    def close(self):
        self.client.close()
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def submission(cluster, folder, side=100_000, n=8000, chunk=448):
    """A one-graph write submitted as a compact graph and as dask's fused graph, one after the other."""
    items = as_items(F.make_items(side, n))
    job = build(items, side, chunks=chunk)
    w = begin_write(job, os.path.join(folder, "submit.zarr"), stac_item=False)
    blocks = w.pending()
    out = {}
    for compact in (True, False):
        w.compact = compact
        rss0 = cluster.scheduler_rss()
        t = time.perf_counter()
        dsk = w.graph(blocks)
        t_graph = time.perf_counter() - t
        from dask.highlevelgraph import HighLevelGraph

        graph = HighLevelGraph.from_collections("bench-submit", dsk, dependencies=())  # not tokenized task by task
        futures = cluster.client.get(graph, [w.key(b) for b in blocks], sync=False)
        t_sent = time.perf_counter() - t
        n_tasks = len(dsk)
        while cluster.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) < n_tasks:
            time.sleep(0.05)
        t_held = time.perf_counter() - t
        rss = cluster.scheduler_rss() - rss0
        cluster.client.cancel(futures)
        del futures, graph, dsk
        while cluster.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) > 0:
            time.sleep(0.5)
        out["compact" if compact else "fused"] = {"tasks": n_tasks, "graph": t_graph, "submitted": t_sent,
                                                  "held": t_held, "scheduler MiB": rss / 2**20}
        print(out, flush=True)
    return out


def tiles_end_to_end(cluster, folder, side, n, sample):
    items = as_items(F.make_items(side, n))
    job = build(items, side)
    url = os.path.join(folder, "continent.zarr")
    w = begin_write(job, url, stac_item=False)
    _, _, tiles = _tiling(w, SAMPLE_TILE, DEFAULT_MAX_TASKS)
    positions = sorted(tiles)
    # a representative sample: tiles spread over the area
    pick = [positions[i] for i in np.linspace(0, len(positions) - 1, sample).round().astype(int)]
    peak = [0]

    def watch(run, done, total):
        if done % 16 == 0:
            peak[0] = max(peak[0], cluster.scheduler_rss())

    rss0 = cluster.scheduler_rss()
    run = write_tiled(job, url, mode="resume", tile=SAMPLE_TILE, only=pick, client=cluster.client, progress=watch,
                      stac_item=False)
    dates = len(set(i.datetime.date() for i in items))
    return {"tiles run": f"{len(pick)} of {len(positions)}", "regions": run.regions_written, "seconds": run.seconds,
            "Mpx/s/core": run.mpx_per_s / cluster.cores,
            "input Mpx/s/core": run.mpx_per_s * dates * len(BANDS) / cluster.cores, "dates": dates,
            "max tasks in flight": run.max_tasks_in_flight, "scheduler MiB": max(peak[0], cluster.scheduler_rss()) / 2**20,
            "scheduler MiB added": (max(peak[0], cluster.scheduler_rss()) - rss0) / 2**20}


def overhead(cluster, folder, side=4096, n=50):
    items = as_items(F.make_items(side, n))
    t = time.perf_counter()
    geoproc.to_zarr(build(items, side), os.path.join(folder, "one.zarr"), stac_item=False)
    one = time.perf_counter() - t
    t = time.perf_counter()
    run = write_tiled(build(items, side), os.path.join(folder, "tiled.zarr"), tile=2, client=cluster.client,
                      stac_item=False)
    tiled = time.perf_counter() - t
    a, b = (geoproc.open_result(os.path.join(folder, name)) for name in ("one.zarr", "tiled.zarr"))
    a, b = (next(iter(ds.data_vars.values())).values for ds in (a, b))
    assert a.tobytes() == b.tobytes()
    return {"area": f"{side:,}^2 px", "regions": run.regions_written, "tiles": run.tiles, "one graph s": one,
            "tiles s": tiled}


def long_series(dates_list=(8, 128, 1000)):
    rows = []
    for n in dates_list:
        side = 4096
        items = as_items(F.make_items(side, n))  # one tile position (the area is smaller than a tile) on n dates
        p = geoproc.plan(items, BANDS, crs=F.OUT_CRS, resolution=10, bounds=F.area_bounds(side))
        job = build(items, side)
        w = begin_write(job, tempfile.mkdtemp() + "/s.zarr", stac_item=False)
        block = w.pending()[0]
        dsk = w.graph([block])
        import dask.threaded

        tracemalloc.start()
        dask.threaded.get(dsk, [w.key(block)], num_workers=1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append({"dates": p.shape[0], "chunk": f"{p.chunk[0]} x {p.chunk[1]} px", "plan task MiB": p.task_bytes / 2**20,
                     "measured peak MiB": peak / 2**20})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--sample", type=int, default=4, help="tiles of the 200,000^2 job run end to end")
    parser.add_argument("--cluster-only", action="store_true", help="only the parts on the cluster (2, 3, 4)")
    parser.add_argument("--one-graph-limit", type=int, default=50_000, help="regions above which no one graph is built")
    args = parser.parse_args()
    sizes = [(20_000, 200), (50_000, 2_000)] if args.quick else [(50_000, 2_000), (100_000, 8_000), (200_000, 32_000)]
    folder = tempfile.mkdtemp(prefix="bench-continental-")
    scale = [] if args.cluster_only else graph_scale(sizes, args.one_graph_limit, folder)
    series = [] if args.cluster_only else long_series((8, 128) if args.quick else (8, 128, 1000))
    cluster = Cluster()
    try:
        sub = submission(cluster, folder, *((50_000, 2_000, 256) if args.quick else (100_000, 8_000, 448)))
        print(sub, flush=True)
        e2e = tiles_end_to_end(cluster, folder, *(sizes[-1]), 1 if args.quick else args.sample)
        print(e2e, flush=True)
        ovh = overhead(cluster, folder, 2048 if args.quick else 4096, 20 if args.quick else 50)
        print(ovh, flush=True)
    finally:
        cluster.close()
    body = report(scale, series, sub, e2e, ovh, cluster.cores)
    print(body)
    if not (args.quick or args.no_save):
        update_results(RESULTS, "Continental scale (bench_continental.py)", body)


def _span(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def report(scale, series, sub, e2e, ovh, cores) -> str:
    lines = [f"{today()}, {machine()}; {versions().get('dask', '')} dask. `python benchmarks/bench_continental.py`", "",
             "Fabricated Sentinel-2-like items (109.8 km tiles 100 km apart, each in the UTM zone of its centre; red, "
             "nir at 10 m, SCL at 20 m; 80 dates), output 10 m EPSG:3035, job = load, SCL mask, NDVI, median, Zarr; "
             "pixels from `SyntheticReader`.", ""]
    lines += ["| job | regions | load tasks | plan | build | template | one graph (tasks) | tiles | all tile graphs | largest tile | task memory |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in scale:
        t_one, n_one = r["one graph"]
        one = f"{t_one:.1f} s ({n_one:,})" if n_one else "not built"
        lines.append(f"| {r['job']} | {r['regions']:,} | {r['load tasks']:,} | {r['plan']:.1f} s | {r['build']:.1f} s | "
                     f"{r['template']:.1f} s | {one} | {r['tiles']} of {r['tile']} | {r['tile graphs']:.1f} s | "
                     f"{r['largest tile']:,} tasks | {r['task memory'] / 2**20:.0f} MiB |")
    lines += ["", "CPU seconds of the client process. Tiles: the default tiling for a budget of "
              f"{DEFAULT_MAX_TASKS:,} tasks.", ""]
    c, f = sub["compact"], sub["fused"]
    lines += [f"**Submission** of a one-graph write of {c['tasks']:,} regions to a `dask scheduler` process, as a "
              "compact graph (one task per region, the layers sent once; the default) and as dask's fused tasks:", "",
              "| graph | tasks | graph built | submitted | held by the scheduler | scheduler memory |", "|---|---|---|---|---|---|"]
    for name, r in (("compact", c), ("fused", f)):
        lines.append(f"| {name} | {r['tasks']:,} | {r['graph']:.1f} s | {r['submitted']:.1f} s | {r['held']:.1f} s | "
                     f"+{r['scheduler MiB']:.0f} MiB |")
    lines += ["", f"Wall seconds from the start of the graph; compact is {f['held'] / c['held']:.1f}x faster to the "
              "scheduler.", ""]
    lines += [f"**Tiles end to end** ({e2e['tiles run']} tiles of {SAMPLE_TILE} x {SAMPLE_TILE} chunks of the largest job, {e2e['regions']} regions of 80 dates, "
              f"synthetic pixels, 2 workers x 1 thread): {e2e['seconds']:.0f} s, **{e2e['Mpx/s/core']:.2f} output Mpx/s "
              f"per core** ({e2e['input Mpx/s/core']:.0f} input Mpx/s per core: {e2e['dates']} dates x 3 bands), at most "
              f"{e2e['max tasks in flight']:,} tasks in flight, scheduler at {e2e['scheduler MiB']:.0f} MiB at most "
              "(its memory after the submission test above included).", ""]
    lines += [f"**Tiling overhead** ({ovh['area']}, {ovh['regions']} regions, {ovh['tiles']} tiles): one graph "
              f"{ovh['one graph s']:.1f} s, tiles {ovh['tiles s']:.1f} s ({ovh['tiles s'] / ovh['one graph s']:.2f}x); "
              "the stores are byte-identical.", ""]
    lines += ["| dates | automatic chunk | task memory (plan) | peak of one region's task (measured) |", "|---|---|---|---|"]
    for r in series:
        lines.append(f"| {r['dates']} | {r['chunk']} | {r['plan task MiB']:.0f} MiB | {r['measured peak MiB']:.0f} MiB |")
    px = EUROPE_KM2 * 1e4  # 10 m pixels
    rate = e2e["input Mpx/s/core"] * 1e6  # input pixels (date x band) per second per core
    core_hours = px * DATES_PER_MONTH * len(BANDS) / rate / 3600
    lines += ["", f"**Europe, 10 m monthly median composite** ({EUROPE_KM2 / 1e6:.1f} M km^2 = {px / 1e9:.0f} Gpx per "
              f"date, {DATES_PER_MONTH} dates, 3 bands): {core_hours:,.0f} core-hours of geoproc's own work at the rate "
              f"above, so about {_span(core_hours / 100)} on 100 worker cores or {_span(core_hours / 500)} on 500, plus "
              "reading: at the latencies of `bench_latency.py`, reading, not computing, sets the pace on object storage."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
