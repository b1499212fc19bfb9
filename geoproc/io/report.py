"""Failed reads recorded during a load with ``on_error="fill"``, and the report that collects them.

Chunk tasks run on Dask workers, so a failure is recorded where it happens: as a
``distributed`` event under a topic named after the load (on a cluster), or in
this process (local schedulers). :func:`read_report` gathers both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["record_failure", "record_missing", "LoadReport", "TOPIC_PREFIX"]

TOPIC_PREFIX = "geoproc-load-failures-"
_LOCAL: dict[str, list[dict]] = {}
_MISSING: dict[str, dict[str, tuple[str, ...]]] = {}  # insertion-ordered: oldest load first
MISSING_KEPT = 1024
_LOCK = threading.Lock()


def record_missing(token: str, band: str, item_ids: tuple[str, ...]) -> None:
    """Record, when a load is prepared (in the client's process), the items that lack ``band``.

    The records of the last :data:`MISSING_KEPT` loads are kept."""
    with _LOCK:
        _MISSING.setdefault(token, {})[band] = tuple(item_ids)
        while len(_MISSING) > MISSING_KEPT:
            _MISSING.pop(next(iter(_MISSING)))


def record_failure(token: str, record: dict) -> None:
    """Record one failed read of a load identified by ``token``."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        worker.log_event(TOPIC_PREFIX + token, record)
    else:
        with _LOCK:
            _LOCAL.setdefault(token, []).append(record)


@dataclass(frozen=True)
class LoadReport:
    """The assets a load could not read and filled with nodata.

    Attributes
    ----------
    token
        Identifies the load (``ds.attrs["load_report"]``).
    """

    token: str

    def failures(self) -> list[dict]:
        """One entry per failed asset: ``item_id``, ``asset``, ``href``, ``error``, ``chunks`` (how many chunks it left empty).

        Only reads that have run are known: compute the data first.
        """
        records = list(_LOCAL.get(self.token, []))
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
        if client is not None:
            records += [msg for _, msg in client.get_events(TOPIC_PREFIX + self.token)]
        merged: dict[tuple, dict] = {}
        for r in records:
            key = (r["item_id"], r["asset"], r["href"])
            entry = merged.setdefault(key, {**r, "chunks": 0})
            entry["chunks"] += 1
        return sorted(merged.values(), key=lambda e: (e["item_id"], e["asset"]))

    def missing(self) -> dict[str, tuple[str, ...]]:
        """``{band: item ids}`` of items that have no such band (loaded as nodata); known before any read."""
        with _LOCK:
            return dict(_MISSING.get(self.token, {}))

    def __len__(self) -> int:
        return len(self.failures())

    def __str__(self) -> str:
        failures, missing = self.failures(), self.missing()
        lines = []
        for band, ids in sorted(missing.items()):
            lines.append(f"band {band!r} is missing from {len(ids)} item(s), loaded as nodata: {', '.join(ids)}")
        if failures:
            lines.append(f"{len(failures)} asset(s) could not be read and were filled with nodata:")
            lines += [f"  {f['item_id']} {f['asset']} ({f['href']}): {f['error']}" for f in failures]
        return "\n".join(lines) or "no failed reads"
