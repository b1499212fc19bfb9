"""Surviving lost workers: region tasks that check their marker first, a per-region run log, a watch on the
cluster for stalls, and one-line errors for a lost scheduler, killed workers and memory exhaustion.

A region's task may run again after it has written its region: its worker died before the scheduler heard
of the result, or a client still held the result when the worker went. :func:`guard` wraps each region's
fused task so that it first looks for the region's done marker and, when it is there, returns without
reading or computing anything. Every run of a region task leaves one small JSON record beside the store
(``<store>.geoproc/log/<write>/...``: worker, process, seconds, ``written`` or ``skipped``); :func:`run_log`
reads them back, and :func:`recomputed` counts the regions written more than once.

:class:`Watch` is asked by the tiled runner, while it waits, whether the cluster can still make progress:
no worker at all, or every worker paused at its memory limit, for longer than ``warn`` seconds is said
once (with the workers' memory figures), and for longer than ``stop`` seconds ends the run with the
``--resume`` hint. The times come from the dask config (``geoproc.stall.warn``, ``geoproc.stall.stop``;
environment ``DASK_GEOPROC__STALL__WARN``...) unless given.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import GeoprocError

__all__ = ["guard", "run_log", "recomputed", "Watch", "ClusterStalledError", "SchedulerLostError",
           "WorkersKilledError", "OutOfMemoryError", "explain", "STALL_WARN", "STALL_STOP"]

#: Seconds without a worker able to run (none, or all paused at their memory limit) before the run says so,
#: and before it stops: defaults of the dask config keys ``geoproc.stall.warn`` / ``geoproc.stall.stop``.
STALL_WARN, STALL_STOP = 60.0, 600.0
RESUME = "the regions written so far are recorded: rerun with --resume (Python: mode='resume') to finish the job"


class ClusterStalledError(GeoprocError):
    """No worker could run a task (none connected, or all paused at their memory limit) for too long."""


class SchedulerLostError(GeoprocError):
    """The connection to the Dask scheduler was lost mid-job."""


class WorkersKilledError(GeoprocError):
    """A region task's workers died while running it, on every attempt (``KilledWorker``)."""


class OutOfMemoryError(GeoprocError):
    """A region task ran out of memory."""


# --- the region guard and its run log ---


@dataclass(frozen=True)
class _Region:
    """What a region's guard needs: where its marker and log go (small to pickle)."""

    manifest_loc: Any
    opts: Any
    write: int
    key: str  # the region's marker key

    def store(self):
        return _marker_store(self.manifest_loc, self.opts)


@functools.lru_cache(maxsize=16)
def _marker_store(loc, opts):
    from ..io.storage import object_store

    return object_store(loc, opts)


def _log_name(write: int, key: str) -> str:
    # one object per run of the task, never overwritten: a region run twice leaves two records
    return f"log/{write}/{key}~{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"


def _guarded(region: _Region, task, deps: Mapping[str, Any]):
    """Run a region's fused task unless its marker says it is written; leave a record of the run either way."""
    import obstore

    store = region.store()
    began = time.perf_counter()
    try:
        obstore.head(store, f"done/{region.write}/{region.key}")
        status = "skipped"
    except FileNotFoundError:
        status = "written"
    if status == "written":
        task(deps)  # reads, computes, writes the region and its marker
    record = {"region": region.key, "status": status, "seconds": round(time.perf_counter() - began, 4),
              "worker": _worker_address(), "host": socket.gethostname(), "pid": os.getpid(), "finished": time.time()}
    try:
        obstore.put(store, _log_name(region.write, region.key), json.dumps(record).encode())
    except Exception:  # the region is written; a missing record only leaves the log short
        pass
    return status == "written"


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def guard(dsk: dict, keys, write) -> dict:
    """Wrap the tasks ``keys`` of ``dsk`` (region writes of ``write``, a :class:`geoproc.io._regions.Write`)
    so that each checks its region's marker before computing; returns ``dsk``, changed in place."""
    from dask._task_spec import DataNode, Dict, Task, TaskRef

    for key, block in keys:
        node = dsk[key]
        region = _Region(write.target.manifest_loc, write.target.opts, write.write, block.key)
        deps = Dict({d: TaskRef(d) for d in node.dependencies})
        dsk[key] = Task(key, _guarded, region, DataNode(None, node), deps)
    return dsk


def run_log(url: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, write: int | None = None) -> list[dict]:
    """Every run of a region task recorded beside the store (by :func:`geoproc.run.write_tiled`), oldest first.

    Each record: ``region`` (its marker key), ``status`` (``written``, or ``skipped`` where the task found
    the region written and computed nothing), ``seconds``, ``worker``, ``host``, ``pid``, ``finished``
    (Unix time), ``write`` (the write's number).

    Examples
    --------
    >>> from geoproc.run import write_tiled
    >>> from geoproc.run.watch import recomputed, run_log
    >>> items = geoproc.search("geoproc-demo/archive/catalog.json")
    >>> ds = geoproc.load(items, ["red", "nir"], resolution=20, chunks=64)
    >>> _ = write_tiled(geoproc.ndvi(ds), "out/ndvi-logged.zarr", mode="w")
    >>> log = run_log("out/ndvi-logged.zarr")
    >>> sorted({r["status"] for r in log}), recomputed(log)
    (['written'], 0)
    """
    import obstore

    from ..io._target import _Target

    target = _Target(url, storage_options)
    folder = "log/" if write is None else f"log/{write}/"
    if target.loc.is_local and not os.path.isdir(os.path.join(target.manifest_loc.path, folder)):
        return []
    store = target.manifest_store()
    out = []
    for page in obstore.list(store, folder):
        for entry in page:
            record = json.loads(bytes(obstore.get(store, entry["path"]).bytes()))
            record["write"] = int(entry["path"].split("/", 2)[1])
            out.append(record)
    return sorted(out, key=lambda r: r["finished"])


def recomputed(log: list[dict]) -> int:
    """Regions that a run log shows written more than once within one write."""
    counts: dict[tuple[int, str], int] = {}
    for r in log:
        if r["status"] == "written":
            counts[(r.get("write", 0), r["region"])] = counts.get((r.get("write", 0), r["region"]), 0) + 1
    return sum(1 for n in counts.values() if n > 1)


# --- watching the cluster while the runner waits ---


def _mib(n: float | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.0f} MiB"


class Watch:
    """Says when no worker can run a task (none, or all paused at their memory limit), and stops the run
    when that lasts; raises :class:`SchedulerLostError` when the scheduler cannot be reached.

    Parameters
    ----------
    client
        The ``distributed.Client`` of the run.
    warn, stop
        Seconds of stall before saying so, and before stopping (default: dask config ``geoproc.stall.warn``
        and ``geoproc.stall.stop``, else :data:`STALL_WARN` and :data:`STALL_STOP`).
    log
        Where the message goes (default: ``print``).
    every
        Seconds between looks at the scheduler.
    """

    def __init__(self, client, *, warn: float | None = None, stop: float | None = None,
                 log: Callable[[str], None] | None = None, every: float = 1.0):
        import dask

        self.client = client
        self.warn = float(warn if warn is not None else dask.config.get("geoproc.stall.warn", STALL_WARN))
        self.stop = float(stop if stop is not None else dask.config.get("geoproc.stall.stop", STALL_STOP))
        self.log = log or (lambda text: print(f"\n{text}", flush=True))
        self.every = every
        self.last = 0.0
        self.since: float | None = None  # when the current stall began
        self.said = False
        self.limit: int | None = None  # the smallest worker memory limit last seen
        self.address = getattr(getattr(client, "scheduler", None), "address", None)

    def check(self) -> None:
        """Look at the cluster (at most every ``every`` seconds)."""
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        if self.client.status not in ("running", "connecting", "newly-created"):
            raise self.lost()
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception as exc:  # the scheduler went away (the client may still be reconnecting)
            if self.client.status == "running":
                raise self.lost(exc) from None
            workers = None
        if self.client.status == "connecting":
            if self.since is None:
                self.since = now
            if now - self.since > min(self.stop, 30.0):
                raise self.lost()
            return
        limits = [w.get("memory_limit") or 0 for w in (workers or {}).values()]
        if limits and min(limits) > 0:
            self.limit = min(limits)
        stalled = self.describe(workers or {})
        if stalled is None:
            self.since, self.said = None, False
            return
        if self.since is None:
            self.since = now
        waited = now - self.since
        if waited >= self.stop:
            raise ClusterStalledError(f"{stalled} for {waited:.0f} s, so the job stopped: start workers (with more "
                                      f"memory each, or use smaller chunks) and rerun; {RESUME}")
        if waited >= self.warn and not self.said:
            self.said = True
            self.log(f"geoproc: {stalled} for {waited:.0f} s; waiting up to {self.stop:.0f} s for workers "
                     "(start workers, or give them more memory)")

    @staticmethod
    def describe(workers: Mapping[str, Mapping[str, Any]]) -> str | None:
        """What keeps every task waiting, or None when some worker can run."""
        if not workers:
            return "no Dask worker is connected"
        if any(w.get("status") != "paused" for w in workers.values()):
            return None
        figures = ", ".join(
            f"{w.get('name', addr)} {_mib(w.get('metrics', {}).get('memory'))} of {_mib(w.get('memory_limit'))}"
            for addr, w in list(workers.items())[:4]
        ) + (f" and {len(workers) - 4} more" if len(workers) > 4 else "")
        return f"all {len(workers)} workers are paused at their memory limit ({figures})"

    def lost(self, exc: BaseException | None = None) -> SchedulerLostError:
        reason = f": {_first_line(exc)}" if exc is not None else ""
        return SchedulerLostError(f"lost the connection to the Dask scheduler{f' at {self.address}' if self.address else ''}"
                                  f"{reason}; restart it (and its workers), then {RESUME}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def explain(exc: BaseException, where: str, task_bytes: int | None = None, limit: int | None = None) -> GeoprocError | None:
    """The one-line error for a region task that failed for a cluster reason (workers killed, memory), or None.

    ``where`` names the task (``tile (0, 1)``); ``task_bytes`` is the memory one task needs (its plan) and
    ``limit`` the workers' memory limit, when known.
    """
    from distributed import KilledWorker

    memory = ""
    if task_bytes:
        memory = f" (a task needs about {_mib(task_bytes)}" + (f", workers have {_mib(limit)})" if limit else ")")
    advice = f"use smaller chunks (load chunks=...) or give each worker more memory{memory}; {RESUME}"
    if isinstance(exc, KilledWorker):
        return WorkersKilledError(
            f"the workers running {where} died on every attempt (dask's KilledWorker): most often "
            f"they ran out of memory (see the worker logs); {advice}")
    if isinstance(exc, MemoryError):
        return OutOfMemoryError(f"{where} ran out of memory on its worker: {advice}")
    return None
