"""Connect to a Dask cluster: an existing scheduler, or a LocalCluster sized for this machine."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from .errors import GeoprocError

__all__ = ["connect"]


@contextmanager
def connect(address: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1, memory_limit: str = "auto"):
    """Yield a ``distributed.Client``; close what was started here on exit.

    Parameters
    ----------
    address
        Scheduler address (``tcp://host:8786``). ``None`` starts a
        ``LocalCluster`` of worker processes on this machine.
    n_workers
        Worker processes of the local cluster (default: one per core).
    threads_per_worker
        Threads per local worker. Kernels release the GIL, but one thread per
        process keeps numba and GDAL from oversubscribing cores.
    memory_limit
        Per-worker memory limit of the local cluster.

    Examples
    --------
    A local cluster for the duration of a block (what ``geoproc run`` does; ``tests/test_e2e.py`` runs it)::

        with connect() as client:
            print(client.dashboard_link)
    """
    from distributed import Client, LocalCluster

    if address:
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise GeoprocError(
                f"cannot reach a Dask scheduler at {address}: {exc}; check the address and that the scheduler runs"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        # a task's error reaches the client, which reports it; the workers' own log of it (a traceback
        # block per failed task) would only bury that one line
        silence_logs=logging.CRITICAL,
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=threads_per_worker,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address="127.0.0.1:0",
        host="127.0.0.1",
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
