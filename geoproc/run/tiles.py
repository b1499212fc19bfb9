"""Jobs larger than one graph: the regions of a result written tile by tile, a bounded number of tasks at a time.

A continental result has more regions than one Dask graph holds (building and optimising it grows
faster than its size, and the scheduler's memory with it). :func:`write_tiled` cuts the result into
tiles of whole compute chunks (so each tile writes whole Zarr chunks), builds the graph of one tile at
a time from the lazy result (culled to that tile: its cost grows with the tile, not with the result)
and keeps the tiles' tasks in flight under a budget, the next tile's graph built while others run.
Dask does the scheduling, the retries of single tasks and the work stealing: this module only decides
what is submitted when. The output is one store, created once with its template (as
:func:`geoproc.to_zarr` creates it); each region records itself done, so an interrupted run resumes
at the regions that are missing, and the same result written as one graph or in tiles has the same
bytes.

A tile whose tasks still fail after Dask's retries is submitted again (``retries``); if it fails
every time it is recorded with its error beside the store (``<store>.geoproc/failed/``) and, with
``on_failure="continue"``, the other tiles go on; the store then stays unfinished and the report
names the failed tiles, which a run with ``mode="resume"`` completes.

Losing workers costs only what they were computing: each region's task checks its done marker before
reading (:func:`geoproc.run.watch.guard`), so a task that runs again after its worker died having written
the region computes nothing, and every run of a region task leaves a record in the run log
(:func:`geoproc.run.watch.run_log`). While it waits, the runner watches the cluster
(:class:`geoproc.run.watch.Watch`): no workers, or all of them paused at their memory limit, is said and then
stops the run; a lost scheduler, workers killed on every attempt and memory exhaustion end in one-line errors
with the ``--resume`` hint.
"""

from __future__ import annotations

import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
from dask._task_spec import DataNode

from ..errors import GeoprocError, InvalidArgumentError, OutputError
from ..io._compact import Recipe
from ..io._regions import Block, Write
from ..io.zarr import begin_write
from . import watch as _watch
from ._records import _forget_all_failures, _forget_failure, _record_failure, recorded_failures
from ._tiling import _extent, _spatial_chunk, _tiling

__all__ = ["write_tiled", "run_tiles", "TiledRun", "TileFailure", "recorded_failures", "DEFAULT_MAX_TASKS", "ON_FAILURE"]

#: Tasks the client keeps submitted at once, by default: well within what a scheduler handles with
#: ease (about 1 GiB per 100,000 tasks), and enough to keep hundreds of workers busy.
DEFAULT_MAX_TASKS = 20_000
ON_FAILURE = ("continue", "stop")


@dataclass(frozen=True)
class TileFailure:
    """A tile that failed after every attempt: its position (in tiles), region count and the error."""

    tile: tuple[int, int]
    regions: int
    attempts: int
    error: str


@dataclass
class TiledRun:
    """What a tiled write did.

    Attributes
    ----------
    url
        The output store.
    tiles
        Tiles in the run (all of the result's, or those asked for with ``only``).
    tile_shape
        A tile's size in pixels ``(y, x)`` (edge tiles are smaller).
    tiles_written, tiles_skipped
        Tiles computed in this run, and tiles whose regions were all written before.
    failed
        Tiles that failed on every attempt, with their errors.
    regions_written, regions_skipped
        Regions (compute chunks of one variable) written in this run, and found written before.
    pixels
        Pixels written (all variables, all steps).
    seconds, graph_seconds
        Wall time of the run, and of building the tiles' graphs within it.
    max_tasks_in_flight
        The most tasks submitted and not finished at any time.
    complete
        Every region of the result is written and the store is finished (readable by
        :func:`geoproc.open_result`).
    """

    url: str
    tiles: int
    tile_shape: tuple[int, int]
    tiles_written: int = 0
    tiles_skipped: int = 0
    failed: list[TileFailure] = field(default_factory=list)
    regions_written: int = 0
    regions_skipped: int = 0
    pixels: int = 0
    seconds: float = 0.0
    graph_seconds: float = 0.0
    max_tasks_in_flight: int = 0
    complete: bool = False

    @property
    def mpx_per_s(self) -> float:
        return self.pixels / 1e6 / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """One line: tiles, regions, throughput, failures."""
        text = (
            f"{self.url}: {self.tiles_written} tiles written, {self.tiles_skipped} already done, "
            f"{len(self.failed)} failed of {self.tiles}; {self.regions_written} regions "
            f"({self.pixels / 1e6:,.1f} Mpx) in {self.seconds:.1f} s, {self.mpx_per_s:,.1f} Mpx/s"
        )
        if self.failed:
            named = ", ".join(f"{f.tile}" for f in self.failed[:8]) + (" ..." if len(self.failed) > 8 else "")
            text += f"; failed tiles {named}: rerun with mode='resume' (CLI: --resume) to write them"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "failed"}
        out["failed"] = [f.__dict__ for f in self.failed]
        out["mpx_per_s"] = self.mpx_per_s
        return out


@dataclass
class _Tile:
    pos: tuple[int, int]
    blocks: list[Block]
    attempts: int = 0
    tasks: int = 0
    pending: dict = field(default_factory=dict)  # future key -> Block, while submitted
    failed: list[Block] = field(default_factory=list)  # of the current attempt
    errors: list[str] = field(default_factory=list)
    exc: BaseException | None = None  # the last failure


def write_tiled(
    data: xr.DataArray | xr.Dataset,
    url: str | os.PathLike,
    *,
    tile: int | tuple[int, int] | None = None,
    max_tasks: int = DEFAULT_MAX_TASKS,
    retries: int = 2,
    on_failure: str = "continue",
    mode: str = "w-",
    only: Sequence[tuple[int, int]] | None = None,
    progress: bool | Callable[[TiledRun, int, int], None] = False,
    client=None,
    task_bytes: int | None = None,
    watch: _watch.Watch | None = None,
    **to_zarr_args: Any,
) -> TiledRun:
    """Write ``data`` to a Zarr store tile by tile, keeping at most ``max_tasks`` tasks submitted.

    Parameters
    ----------
    data
        A lazy (dask-backed) result with ``y`` and ``x`` dimensions, such as
        ``geoproc.composite(...)`` over a whole country.
    url
        The store (local path or ``s3://``), as for :func:`geoproc.to_zarr`.
    tile
        Tile size in compute chunks along y and x (an int for both). Default:
        the largest square whose tasks fit a quarter of ``max_tasks``, so that
        several tiles run at once and the next is ready.
    max_tasks
        Tasks submitted and not finished, at most (a tile larger than this
        still runs, alone).
    retries
        Times a failed tile is submitted again (its failed regions only), on
        top of Dask's own retries of each task.
    on_failure
        ``"continue"``: record a tile that fails on every attempt and go on
        with the others. ``"stop"``: stop at the first such tile (the regions
        written so far stay recorded).
    mode
        As for :func:`geoproc.to_zarr`: ``"w-"`` (create), ``"w"``
        (overwrite), ``"resume"`` (write only the missing regions), ``"a"``.
    only
        Tile positions ``(row, col)`` to run, of the tiling this call makes
        (for tests, benchmarks and sampling a job); the store is finished only
        when every region is written.
    progress
        True: one line on stdout, updated as tiles finish (tiles, regions,
        throughput, time left). Or a function called ``(run, regions_done,
        regions_total)`` after each region.
    client
        A ``distributed.Client`` (default: the current one, if any; else the
        tiles run one after another on the local threaded scheduler).
    task_bytes
        The memory one region task needs (:func:`geoproc.planning.task_memory`), named with the
        workers' limit when tasks run out of memory.
    watch
        What watches the cluster while the runner waits for regions (default: a
        :class:`geoproc.run.watch.Watch` of the client, with the dask config's
        stall times): no workers, or all paused at their memory limit, is said
        and then stops the run with :class:`geoproc.run.watch.ClusterStalledError`.
    **to_zarr_args
        ``attrs``, ``storage_options``, ``append_dim``, ``compression_level``,
        ``shard_inner_chunk``, ``stac_item``, as for :func:`geoproc.to_zarr`.

    Returns
    -------
    TiledRun
        Counts, timings and failed tiles.

    Raises
    ------
    OutputError
        As :func:`geoproc.to_zarr` before any compute; with
        ``on_failure="stop"``, the first tile that failed on every attempt.

    Examples
    --------
    >>> from geoproc.run import write_tiled
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> ds = geoproc.load(items, ["red", "nir"], resolution=20, chunks=32)
    >>> run = write_tiled(geoproc.ndvi(ds), "out/ndvi-tiles.zarr", tile=2, max_tasks=16)
    >>> run.tiles, run.tiles_written, run.complete
    (6, 6, True)
    >>> write_tiled(geoproc.ndvi(ds), "out/ndvi-tiles.zarr", tile=2, mode="resume").tiles_skipped
    6
    """
    _check(max_tasks, retries, on_failure)  # before the store is created
    started = time.perf_counter()
    w = begin_write(data, url, mode=mode, **to_zarr_args)
    return run_tiles(w, tile=tile, max_tasks=max_tasks, retries=retries, on_failure=on_failure, only=only,
                     progress=progress, client=client, started=started, task_bytes=task_bytes,
                     watch=watch)


def run_tiles(w: Write, *, tile=None, max_tasks: int = DEFAULT_MAX_TASKS, retries: int = 2, on_failure: str = "continue",
              only=None, progress=False, client=None, started: float | None = None,
              watch: _watch.Watch | None = None, task_bytes: int | None = None) -> TiledRun:
    """Run the regions of a prepared write (:func:`geoproc.io.zarr.begin_write`) tile by tile: what
    :func:`write_tiled` does after creating the store. Arguments as there, and ``watch``, what watches the
    cluster while the runner waits (default: a :class:`geoproc.run.watch.Watch` of the client), and
    ``task_bytes``, the memory one region task needs (named in an out-of-memory error)."""
    _check(max_tasks, retries, on_failure)
    started = time.perf_counter() if started is None else started
    ty, tx, tiles = _tiling(w, tile, max_tasks)
    if only is not None:
        wanted = {tuple(int(v) for v in t) for t in only}
        unknown = wanted - set(tiles)
        if unknown:
            raise InvalidArgumentError(f"only= names tiles {sorted(unknown)[:4]} outside the tiling's {_extent(tiles)}")
        tiles = {pos: blocks for pos, blocks in tiles.items() if pos in wanted}
    chunk_y, chunk_x = _spatial_chunk(w)
    run = TiledRun(w.target.url, len(tiles), (ty * chunk_y, tx * chunk_x))
    todo = []
    for pos, blocks in tiles.items():
        pending = [b for b in blocks if b.key not in w.done]
        run.regions_skipped += len(blocks) - len(pending)
        if pending:
            todo.append(_Tile(pos, pending))
        else:
            run.tiles_skipped += 1
    total = sum(len(t.blocks) for t in todo)
    show = _Progress(run, total) if progress is True else progress or None
    runner = _Runner(w, run, max_tasks, retries, on_failure, _client(client), show)
    runner.total = total
    runner.task_bytes = task_bytes
    if runner.client is not None:
        runner.watch = watch or _watch.Watch(runner.client)
    try:
        runner.execute(todo)
    finally:
        run.seconds = time.perf_counter() - started
        if progress is True:
            show.close()
    if not run.failed and (only is None or _all_written(w)):
        w.finish()
        run.complete = True
        _forget_all_failures(w)  # records of an earlier run's tiling, now written
    return run


def _check(max_tasks, retries, on_failure) -> None:
    if on_failure not in ON_FAILURE:
        raise InvalidArgumentError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
        raise InvalidArgumentError(f"max_tasks must be a whole number >= 1, got {max_tasks!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgumentError(f"retries must be a whole number >= 0, got {retries!r}")


def _client(client):
    if client is not None:
        return client
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _all_written(w: Write) -> bool:
    done = w.target.done_regions()
    return all(b.key in done for b in w.blocks())


class _Runner:
    """Submits tiles under the task budget and collects their regions as they finish."""

    def __init__(self, w: Write, run: TiledRun, max_tasks: int, retries: int, on_failure: str, client, show):
        self.w, self.run, self.max_tasks, self.retries, self.on_failure = w, run, max_tasks, retries, on_failure
        self.client, self.show = client, show
        self.held: dict[str, Any] = {}  # literal graph data (tables of assets), a future each, held for the run
        self.in_flight = 0
        self.watch: _watch.Watch | None = None
        self.task_bytes: int | None = None
        self.done_regions = 0
        self.total: int | None = None

    def graph(self, t: _Tile) -> dict:
        began = time.perf_counter()
        # a tile tried before gets dask's fused graph: a failure of the compact one is not met twice
        dsk = self.w.graph(t.blocks, compact=False) if t.attempts else self.w.graph(t.blocks)
        dsk = _watch.guard(dsk, [(self.w.key(b), b) for b in t.blocks], self.w)
        self.run.graph_seconds += time.perf_counter() - began
        t.tasks = len(dsk)
        return dsk

    def execute(self, todo: list[_Tile]) -> None:
        if self.client is None:
            for t in todo:
                self._local(t)
            return
        self._distributed(todo)

    # -- without a cluster: tiles one after another on the threaded scheduler
    def _local(self, t: _Tile) -> None:
        import dask.threaded

        while True:
            dsk = self.graph(t)
            self.run.max_tasks_in_flight = max(self.run.max_tasks_in_flight, t.tasks)
            keys = [self.w.key(b) for b in t.blocks]
            failed = []
            try:
                dask.threaded.get(dsk, keys)
            except Exception as exc:  # which regions failed: those without their marker
                done = self.w.target.done_regions(self.w.write)
                failed = [b for b in t.blocks if b.key not in done]
                t.exc = exc
                t.errors.append(_short(exc))
            written = [b for b in t.blocks if b not in failed]
            self._count(written)
            if not failed:
                self.run.tiles_written += 1
                _forget_failure(self.w, t.pos)
                return
            t.attempts += 1
            t.blocks = failed
            if t.attempts > self.retries:
                self._failed(t)
                return

    # -- on a distributed cluster: tiles in flight under the budget, regions collected as they finish
    def _distributed(self, todo: list[_Tile]) -> None:
        from distributed import as_completed

        queue = list(reversed(todo))
        ready: tuple[_Tile, dict] | None = None
        futures = as_completed([], loop=self.client.loop, with_results=False)  # this client, default or not
        submitted: dict[Any, tuple[_Tile, Any]] = {}  # future key -> (tile, future)
        while queue or ready or submitted:
            # submit while the budget allows (always at least one tile in flight); the next tile's
            # graph is built here, while the submitted ones run
            while True:
                if ready is None and queue:
                    t = queue.pop()
                    ready = (t, self.graph(t))
                if ready is None:
                    break
                t, dsk = ready
                if self.in_flight and self.in_flight + t.tasks > self.max_tasks:
                    break
                for fut, block in zip(self._submit(dsk, t), t.blocks):
                    t.pending[fut.key] = block
                    submitted[fut.key] = (t, fut)
                    futures.add(fut)
                self.in_flight += t.tasks
                self.run.max_tasks_in_flight = max(self.run.max_tasks_in_flight, self.in_flight)
                ready = None
            if not submitted:
                break
            try:
                for fut in self._next(futures):
                    self._collect(fut, submitted, queue, futures)
            except BaseException:  # Ctrl-C, a stop, a lost cluster: nothing of this run goes on computing
                self._cancel(submitted, futures)
                raise

    def _cancel(self, submitted, futures) -> None:
        try:
            self.client.cancel([f for _, f in submitted.values()] + list(self.held.values()))
        except Exception:  # the cluster may be gone already
            pass
        submitted.clear()
        futures.clear()
        self.held.clear()

    def _next(self, futures) -> list:
        """The futures that finished, waiting for one while the cluster is watched."""
        pause = 0.005
        while True:
            batch = futures.next_batch(block=False)
            if batch:
                return batch
            self.watch.check()
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _collect(self, fut, submitted, queue, futures) -> None:
        """Count a finished region, or keep its failure; resubmit or give up on its tile once all are in."""
        t, _ = submitted.pop(fut.key)
        block = t.pending.pop(fut.key)
        if fut.status == "finished":
            self._count([block])
        elif fut.status == "cancelled":  # the scheduler forgot it: the connection is gone
            raise self.watch.lost()
        else:
            t.exc = fut.exception()
            t.errors.append(_short(t.exc))
            t.failed.append(block)
        fut.release()  # nothing of a finished region stays in worker memory
        if t.pending:
            return
        self.in_flight -= t.tasks
        if not t.failed:
            self.run.tiles_written += 1
            _forget_failure(self.w, t.pos)
            return
        t.attempts += 1
        t.blocks, t.failed = t.failed, []
        # dask already ran a KilledWorker's task on several workers: another round would kill more
        if t.attempts <= self.retries and _watch.explain(t.exc, "") is None:
            queue.append(t)
            return
        self._failed(t)
        if self.on_failure == "stop":
            self._stop(t)  # the caller cancels what is still submitted

    def _submit(self, dsk: dict, t: _Tile) -> list:
        """Futures of the tile's regions; literal data of the graph (tables of assets) goes to the
        cluster once and is held for the run, instead of travelling with every tile."""
        from dask._task_spec import Task
        from dask.highlevelgraph import HighLevelGraph

        for key, node in list(dsk.items()):
            if isinstance(node, DataNode) and not isinstance(node.value, Recipe):  # a recipe is the tile's own
                if key not in self.held:  # a task, not scattered data: the scheduler recomputes it if its worker dies
                    self.held[key] = self.client.submit(_same, node.value, key=f"held-{key}-{uuid.uuid4().hex}", pure=False)
                dsk[key] = Task(key, _same, self.held[key])
        # as a HighLevelGraph: distributed names it with a random token, where a plain dict would be
        # tokenized task by task (25 s for 20,000 fused tasks)
        graph = HighLevelGraph.from_collections(f"geoproc-tile-{uuid.uuid4().hex}", dsk, dependencies=())
        return self.client.get(graph, [self.w.key(b) for b in t.blocks], sync=False)

    def _count(self, blocks: Sequence[Block]) -> None:
        for b in blocks:
            self.run.regions_written += 1
            self.run.pixels += math.prod(b.size)
            self.done_regions += 1
            if self.show is not None:
                self.show(self.run, self.done_regions, self.total)

    def _failed(self, t: _Tile) -> None:
        failure = TileFailure(t.pos, len(t.blocks), t.attempts, t.errors[-1] if t.errors else "unknown error")
        self.run.failed.append(failure)
        _record_failure(self.w, failure)
        if self.on_failure == "stop" and self.client is None:
            self._stop(t)

    def _stop(self, t: _Tile) -> None:
        hint = ("the regions written so far are recorded: fix the cause and rerun with mode='resume' "
                "(CLI: --resume)")
        limit = None
        if self.client is not None and self.task_bytes:
            limit = _memory_limit(self.client) or (self.watch.limit if self.watch is not None else None)
        explained = _watch.explain(t.exc, f"a region task of tile {t.pos}", self.task_bytes, limit)
        if explained is not None:
            raise explained from None
        if isinstance(t.exc, GeoprocError):  # the library's own message first, as a user reads it
            try:
                raise type(t.exc)(f"{t.exc} (tile {t.pos}, {t.attempts} attempts); {hint}") from None
            except TypeError:
                pass
        raise OutputError(
            f"tile {t.pos} of {self.w.target.url} failed {t.attempts} times: {t.errors[-1] if t.errors else '?'}; {hint}"
        ) from None


def _same(value):
    return value


def _memory_limit(client) -> int | None:
    try:
        limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    except Exception:
        return None
    return min(limits) if limits and min(limits) > 0 else None


def _short(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:400]


class _Progress:
    """One line on stdout for the whole job: tiles, regions, throughput, time left."""

    def __init__(self, run: TiledRun, total: int):
        self.run, self.total, self.started, self.last = run, total, time.perf_counter(), 0.0

    def __call__(self, run: TiledRun, done: int, _total) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        elapsed = now - self.started
        rate = run.pixels / 1e6 / elapsed if elapsed else 0.0
        eta = elapsed / done * (self.total - done) if done else float("nan")
        sys.stdout.write(
            f"\rtiles {run.tiles_written + run.tiles_skipped}/{run.tiles} ({len(run.failed)} failed)  "
            f"regions {done}/{self.total}  {rate:,.1f} Mpx/s  ETA {_duration(eta)}   "
        )
        sys.stdout.flush()

    def close(self) -> None:
        run = self.run
        sys.stdout.write(f"\nCompleted {run.tiles_written} tiles ({run.tiles_skipped} already done, "
                         f"{len(run.failed)} failed), {run.regions_written} regions\n")
        sys.stdout.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
