"""Running a workflow file incrementally: only the work that new or changed items make.

A run searches the workflow's items, compares them with the ledger (:mod:`geoproc.run.ledger`) by item id
and ``updated`` time (STAC APIs have no "what is new" call, so the search covers the workflow's dates and
de-duplicates by id), and finds the **changed dates**: those of items not seen before or whose ``updated``
(or ``created``) is newer than the ledger's. Every step is built lazily over all the items, as a one-shot
run would, and each product writes only what the changed dates touch:

* a time series (a ``time`` dimension: per-date cubes, period composites stamped with the period's first
  day) maps each changed date to the label at or before it; labels past the store's end are appended
  (``mode='a'``), labels already written are rewritten in place (their regions' done markers are dropped
  and the store resumed: whole-chunk rewrites, idempotent); a label inserted before the store's end
  rewrites the store;
* a product without ``time`` (a BFAST or dNBR map) is recomputed whole when anything it reads changed.

Nothing changed: nothing is computed and the report says so. ``--from/--to`` (``backfill``) treats every
item dated in the range as changed. The ledger is written only when every product is finished, so an
interrupted run is resumed by the next (the regions written stay written).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .ledger import Lock, State
from .report import ProductReport, RunReport
from .workflow_file import Workflow

__all__ = ["run_workflow", "changed_items"]


def _item_record(item) -> dict:
    props = item.properties if hasattr(item, "properties") else item["properties"]
    return {"datetime": props.get("datetime") or props.get("start_datetime"), "updated": props.get("updated"),
            "created": props.get("created")}


def _item_id(item) -> str:
    return item.id if hasattr(item, "id") else item["id"]


def changed_items(items, ledger: dict, backfill: tuple[str | None, str | None] | None = None) -> dict[str, dict]:
    """The items (id -> record) that are new, or newer than the ledger says, or dated within ``backfill``.

    Examples
    --------
    >>> items = [{"id": "a", "properties": {"datetime": "2024-05-01T10:00:00Z", "updated": "2024-05-02"}}]
    >>> sorted(changed_items(items, {"items": {}}))
    ['a']
    >>> sorted(changed_items(items, {"items": {"a": {"updated": "2024-05-02"}}}))
    []
    """
    seen = ledger.get("items", {})
    lo, hi = backfill or (None, None)
    out = {}
    for item in items:
        rec = _item_record(item)
        old = seen.get(_item_id(item))
        day = (rec["datetime"] or "")[:10]
        in_range = backfill is not None and (lo is None or day >= lo[:10]) and (hi is None or day <= hi[:10])
        if old is None or in_range or (rec["updated"] or rec["created"] or "") > (old.get("updated") or old.get("created") or ""):
            out[_item_id(item)] = rec
    return out


def _as_datetime64(value: str) -> np.datetime64:
    return np.datetime64(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None), "ns")


def _labels_touched(labels: np.ndarray, dates: list[np.datetime64]) -> set[int]:
    """Positions of the labels each date falls in: the last label at or before it (the same day counts)."""
    touched = set()
    for d in dates:
        day_end = d.astype("datetime64[D]") + np.timedelta64(1, "D")
        i = int(np.searchsorted(labels, day_end, side="left")) - 1
        if i >= 0:
            touched.add(i)
    return touched


def _as_dataset(result, name: str):
    import xarray as xr

    if isinstance(result, xr.DataArray):
        result = result.to_dataset(name=name)  # the product's name: what a reader asks for
    if "time" in result.dims:
        result = result.chunk({"time": 1})
    return result


def _forget_regions(target, keys: set[str]) -> None:
    """Delete the done markers of ``keys`` (by every write of the store), so the regions are written again."""
    import obstore

    store = target.manifest_store()
    found = [e["path"] for page in obstore.list(store, "done/") for e in page if e["path"].split("/", 2)[2] in keys]
    for path in found:
        obstore.delete(store, path)


def _write_product(product, result, changed_dates, run, *, committed, client, storage_options) -> ProductReport:
    """Write what the changed dates touch; returns what was written. ``committed``: the labels a finished run
    wrote (those touched are rewritten; others in the store were written by an interrupted run: resumed)."""
    from ..io._target import _Target
    from ..io.zarr import _open_existing, begin_write
    from .tiles import run_tiles

    ds = _as_dataset(result, product.name)
    rep = ProductReport(product.name, product.output)
    target = _Target(product.output, storage_options)
    exists = target.store_exists()
    kw = dict(storage_options=storage_options, zarr_format=product.zarr_format, overviews=product.overviews,
              attrs={"workflow": run.workflow})

    def go(data, mode, drop=()):
        w = begin_write(data, product.output, mode=mode, **kw)
        if drop:  # rewrite in place: forget these regions' done markers (region tasks check them) and write them
            keys = {b.key for b in w.blocks() if b.start[data[b.variable].dims.index("time")] in drop}
            _forget_regions(target, keys)
            w.done -= keys
        tiled = run_tiles(w, client=client, on_failure="stop", retries=1)
        rep.regions_written += tiled.regions_written
        rep.regions_skipped += tiled.regions_skipped
        rep.pixels += tiled.pixels

    if not exists:
        rep.action = "created"
        go(ds, "w")
        rep.labels = [str(t) for t in ds["time"].values.astype("datetime64[ns]")] if "time" in ds.dims else []
        return rep
    manifest = target.read_manifest() or {}
    unfinished = manifest.get("status") != "complete"
    if "time" not in ds.dims:
        if changed_dates or unfinished:
            rep.action = "recomputed" if changed_dates else "resumed"
            go(ds, "w" if changed_dates else "resume")
        return rep
    existing = _open_existing(target, int(manifest.get("overviews") or 0))
    stored = existing["time"].values.astype("datetime64[ns]")
    labels = ds["time"].values.astype("datetime64[ns]")
    if len(stored) > len(labels) or not np.array_equal(labels[: len(stored)], stored):
        rep.action = "rewritten (dates before the store's end changed)"
        go(ds, "w")
        rep.labels = [str(t) for t in labels]
        return rep
    touched = _labels_touched(labels, changed_dates)
    rewrite = sorted(i for i in touched if i < len(stored) and str(labels[i]) in committed)
    rep.labels = [str(t) for t in labels]
    if rewrite or unfinished:
        go(ds.isel(time=slice(0, len(stored))), "resume", drop=set(rewrite))
        rep.labels_rewritten = [str(labels[i]) for i in rewrite]
    if len(labels) > len(stored):
        go(ds.isel(time=slice(len(stored), None)), "a")
        rep.labels_appended = [str(t) for t in labels[len(stored):]]
    rep.action = "updated" if (rewrite or len(labels) > len(stored) or unfinished) else "unchanged"
    return rep


def run_workflow(wf: Workflow, *, client=None, backfill: tuple[str | None, str | None] | None = None,
                 storage_options: dict | None = None, log: Callable[[str], None] = print,
                 run_id: str | None = None) -> RunReport:
    """Run ``wf`` once: lock its outputs, find what is new, write it, update the ledger, write the report.

    ``client``: a dask.distributed Client to run on (None: the threaded scheduler of this process).

    Examples
    --------
    ::

        from geoproc.run.workflow_file import read_workflow
        from geoproc.run.incremental import run_workflow
        report = run_workflow(read_workflow("workflows/ndvi_cube.yaml"))
        print(report.summary())   # nightly-ndvi: 3 new items, 1 date, 12 regions written ...
    """
    import geoproc

    started = time.perf_counter()
    if backfill is not None and all(v is None for v in backfill):
        backfill = None
    state = State(wf.state, storage_options)
    lock = Lock(state, lease=wf.lock_lease, run_id=run_id)
    with lock:
        report = RunReport(workflow=wf.name, run_id=lock.run_id, state=state.url,
                           started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        if lock.took_over:
            report.notes.append(f"took over the expired lock of {lock.took_over}")
        if wf.generate and "://" not in wf.catalog:
            import os

            if not os.path.exists(wf.catalog):
                from ..testing import generate_archive

                generate_archive(os.path.dirname(os.path.abspath(wf.catalog)), **wf.generate)
        ledger = state.ledger()
        items = geoproc.search(wf.catalog, **wf.search)
        changed = changed_items(items, ledger, backfill)
        report.items_found = len(items)
        report.new_items = sorted(i for i in changed if i not in ledger["items"])
        report.updated_items = sorted(i for i in changed if i in ledger["items"])
        dates = sorted({_as_datetime64(r["datetime"]) for r in changed.values() if r["datetime"]})
        report.dates = sorted({str(d)[:10] for d in dates})
        unfinished = [p.name for p in wf.products if ledger["products"].get(p.name, {}).get("status") != "complete"]
        if not changed and not unfinished:
            report.finish(started)
            log(report.summary())
            _save(state, ledger, report, items)
            return report
        if not items:
            raise InvalidArgumentError(f"{wf.path}: the search found no items in {wf.catalog}; check search:")
        results = wf.build(items)
        for product in wf.products:
            ledger["products"].setdefault(product.name, {})["status"] = "writing"
            state.write("ledger.json", ledger)
            try:
                rep = _write_product(product, results[product.step], dates, report, client=client,
                                     committed=set(ledger["products"][product.name].get("labels", [])),
                                     storage_options=storage_options)
            except Exception as exc:
                report.failures.append({"product": product.name, "error": f"{type(exc).__name__}: {exc}",
                                        "items": sorted(changed)})
                report.finish(started)
                state.write(f"reports/{report.run_id}.json", report.to_dict())
                state.write("last-report.json", report.to_dict())
                raise
            report.products.append(rep)
            ledger["products"][product.name] = {"status": "complete", "output": product.output, "labels": rep.labels}
            log(f"{product.name}: {rep.summary()}")
        report.input_bytes = _input_bytes(items, changed)
        report.finish(started)
        log(report.summary())
        _save(state, ledger, report, items)
        return report


def _input_bytes(items, changed) -> int:
    """Bytes of the assets of the changed items that are files on this machine (0 for remote assets)."""
    import os

    total = 0
    for item in items:
        if _item_id(item) in changed:
            for asset in item.assets.values():
                href = asset.get_absolute_href() or asset.href
                if href and os.path.exists(href.removeprefix("file://")):
                    total += os.path.getsize(href.removeprefix("file://"))
    return total


def _save(state: State, ledger: dict, report: RunReport, items) -> None:
    for item in items:
        ledger["items"][_item_id(item)] = _item_record(item)
    for key in ("updated", "created"):
        values = [r[key] for r in ledger["items"].values() if r.get(key)]
        ledger[f"catalog_{key}_max"] = max(values) if values else None
    ledger["runs"] = (ledger.get("runs", []) + [report.brief()])[-50:]
    state.write(f"reports/{report.run_id}.json", report.to_dict())
    state.write("last-report.json", report.to_dict())
    state.write("ledger.json", ledger)
