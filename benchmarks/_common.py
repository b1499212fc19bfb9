"""Shared pieces of the benchmarks: the Dask cluster, resource sampling, versions and Markdown output.

Nothing here knows about a particular library; ``bench_load.py`` and
``bench_graph.py`` import it as a sibling module (the scripts are run as
``python benchmarks/<name>.py``, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import psutil

#: Dask setup shared by every job of ``bench_load.py``: worker processes x threads.
N_WORKERS, THREADS_PER_WORKER = 2, 1

#: Distribution names whose versions go into the results.
PACKAGES = (
    "geoproc",
    "odc-stac",
    "odc-loader",
    "stackstac",
    "dask",
    "distributed",
    "xarray",
    "zarr",
    "rasterio",
    "numba",
    "numpy",
)


def versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (``"-"`` for a missing one), plus GDAL."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    try:
        import rasterio

        out["GDAL"] = rasterio.__gdal_version__
    except ImportError:
        pass
    return out


def machine() -> str:
    """One line describing this machine: cores, memory, CPU model, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def today() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


@contextlib.contextmanager
def local_cluster() -> Iterator[object]:
    """A fresh ``distributed`` LocalCluster of :data:`N_WORKERS` processes x :data:`THREADS_PER_WORKER` thread.

    No dashboard (its bokeh server would cost every library the same, but adds
    noise). The scheduler runs in this (the client) process, the workers in
    child processes: :func:`worker_pids` lists them for ``ProcessTreeMonitor``.
    """
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = LocalCluster(
        n_workers=N_WORKERS,
        threads_per_worker=THREADS_PER_WORKER,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    client = Client(cluster)
    # nanmedian of an all-masked pixel warns in odc-stac's and stackstac's jobs; NaN is the intended result
    client.run(warnings.filterwarnings, "ignore", message="All-NaN slice")
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def worker_pids(client) -> list[int]:
    """Process ids of the client's workers."""
    return sorted(client.run(os.getpid).values())


@dataclass
class Usage:
    """What :class:`ProcessTreeMonitor` measured over one run.

    Attributes
    ----------
    wall
        Seconds between start and stop.
    cpu
        User + system CPU seconds summed over the monitored processes.
    cpu_client
        The part of ``cpu`` spent in this process (graph building, scheduler, the sampler itself).
    peak_rss
        Largest sampled sum of RSS over the monitored processes, in bytes.
    start_rss
        That sum at the start, in bytes.
    samples
        Number of RSS samples taken.
    lost
        Processes that ended during the run (their CPU time is then missing).
    """

    wall: float = 0.0
    cpu: float = 0.0
    cpu_client: float = 0.0
    peak_rss: int = 0
    start_rss: int = 0
    samples: int = 0
    lost: int = 0


@dataclass
class ProcessTreeMonitor:
    """Wall time, CPU time and peak RSS of this process and all its descendants.

    RSS is summed over the processes and sampled by a background thread every
    ``interval`` seconds (a spike shorter than that can be missed). Without
    ``pids`` the process list is refreshed on every sample, so workers started
    later are counted; with ``pids`` only this process and those are watched.
    CPU time is read from ``/proc`` at start and stop for each process.

    Examples
    --------
    >>> with ProcessTreeMonitor() as mon:  # doctest: +SKIP
    ...     work()
    >>> mon.usage.wall, mon.usage.cpu, mon.usage.peak_rss  # doctest: +SKIP
    """

    pids: Sequence[int] | None = None
    interval: float = 0.02
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        if self.pids is None:
            procs = [self._me, *self._me.children(recursive=True)]
        else:
            procs = [self._me, *(self._procs.get(pid) or psutil.Process(pid) for pid in self.pids)]
        for p in procs:
            self._procs.setdefault(p.pid, p)
        return procs

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def _rss(self) -> int:
        total = 0
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            self.usage.samples += 1
            self.usage.peak_rss = max(self.usage.peak_rss, rss)

    def __enter__(self) -> ProcessTreeMonitor:
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                self._cpu0[p.pid] = self._cpu(p)
        self.usage.start_rss = self.usage.peak_rss = self._rss()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.usage.wall = time.perf_counter() - self._t0
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.usage.peak_rss = max(self.usage.peak_rss, self._rss())
        self._tree()
        for pid, p in self._procs.items():
            try:
                used = self._cpu(p) - self._cpu0.get(pid, 0.0)
            except psutil.Error:
                self.usage.lost += 1
                continue
            self.usage.cpu += used
            if pid == self._me.pid:
                self.usage.cpu_client = used


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one character per column, ``l`` or ``r`` (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f}"


#: First lines of a new results file, and the order of its sections.
_RESULTS_HEAD = (
    "# Benchmark results\n\nLatest figures of the benchmarks in this folder; see README.md for what they measure.\n"
)
_SECTION_ORDER = ("Load job", "Graph build")


def update_results(path: str, section: str, body: str) -> None:
    """Replace (or append) the ``## section`` of a Markdown file with ``body``; other sections stay."""
    text = open(path).read() if os.path.exists(path) else _RESULTS_HEAD
    head, *rest = text.split("\n## ")
    sections = {part.split("\n", 1)[0]: "## " + part for part in rest}
    sections[section] = f"## {section}\n\n{body.strip()}\n"
    order = [s for s in _SECTION_ORDER if s in sections] + [s for s in sections if s not in _SECTION_ORDER]
    with open(path, "w") as fh:
        fh.write(head.rstrip() + "\n\n" + "\n".join(sections[s].rstrip() + "\n" for s in order))
