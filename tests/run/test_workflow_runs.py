"""Incremental workflow runs against a real stac-fastapi-pgstac (items inserted between runs with pypgstac),
on SeaweedFS, killed mid-way, and started twice at once."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import geoproc
from geoproc.run.incremental import run_workflow
from geoproc.run.workflow_file import parse_workflow
from geoproc.testing import generate_archive

from ..services.pgstac import _write_ndjson, static_catalog_records

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64

NIGHTLY = """\
name: nightly
catalog: {catalog}
search: {search}
steps:
  data:   {{load: {{bands: [red, nir, scl], resolution: 10, chunks: {chunk}}}}}
  cloudy: {{cloud_mask: {{data: $data}}}}
  ndvi:   {{index: {{data: $data, name: NDVI}}}}
  clear:  {{masked: {{data: $ndvi, mask: $cloudy}}}}
  weekly: {{composite: {{data: $ndvi, method: median, mask: $cloudy}}, per: week}}
products:
  ndvi:   {{step: clear, output: {out}/ndvi.zarr}}
  weekly: {{step: weekly, output: {out}/weekly.zarr}}
state: {out}/state
"""


def _workflow(catalog, search, out, chunk=CHUNK, path="nightly.yaml"):
    text = NIGHTLY.format(catalog=catalog, search=search, out=out, chunk=chunk)
    return parse_workflow(text, path), text


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """One tile, 4 dates (May 3, 8, 13, 18: weeks 18, 19, 20, 20) of 128 x 128 px."""
    return generate_archive(tmp_path_factory.mktemp("nightly"), size=128, dates=4, tiles=1, seed=3)


def _pgstac_load(dsn: str, folder: Path, *, collections=(), items=(), upsert=False) -> None:
    """What ``pypgstac load`` does: collections and items from ndjson files into the running pgstac."""
    from psycopg_pool import ConnectionPool
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    pool = ConnectionPool(dsn, min_size=1, max_size=1, open=True)
    try:
        with PgstacDB(pool=pool) as db:
            loader = Loader(db)
            if collections:
                loader.load_collections(str(_write_ndjson(folder / "c.ndjson", collections)), Methods.upsert)
            if items:
                loader.load_items(str(_write_ndjson(folder / "i.ndjson", items)), Methods.upsert if upsert else Methods.insert)
    finally:
        pool.close()


def _store(url, name, **kw):
    return geoproc.open_result(url, **kw)[name]


def _spatial_chunks(url, name) -> int:
    var = _store(url, name)
    return math.ceil(var.sizes["y"] / CHUNK) * math.ceil(var.sizes["x"] / CHUNK)


def _quiet(_line):
    pass


def test_nightly_runs_do_only_the_new_work(stac_api, small_archive, tmp_path):
    collections, items = static_catalog_records(small_archive.catalog)
    coll = copy.deepcopy(collections[0])
    coll["id"] = "nightly"
    records = []
    for rec in sorted(items, key=lambda r: r["properties"]["datetime"]):
        rec = copy.deepcopy(rec)
        rec["id"], rec["collection"] = "nightly-" + rec["id"], "nightly"
        rec["properties"]["updated"] = "2024-06-01T00:00:00Z"
        records.append(rec)
    assert len(records) == 4
    bbox = records[0]["bbox"]
    search = f"{{collections: [nightly], bbox: {bbox}}}"
    wf, _ = _workflow(stac_api.url, search, tmp_path / "out")

    _pgstac_load(stac_api.dsn, tmp_path, collections=[coll], items=records[:2])
    first = run_workflow(wf, log=_quiet)
    s = _spatial_chunks(wf.products[0].output, "ndvi")
    assert sorted(first.new_items) == sorted(r["id"] for r in records[:2])
    assert [p.regions_written for p in first.products] == [2 * s, 2 * s]  # 2 dates; weeks 18 and 19
    before = _store(wf.products[0].output, "ndvi").values[1]

    _pgstac_load(stac_api.dsn, tmp_path, items=records[2:])  # May 13 and 18: one new week
    second = run_workflow(wf, log=_quiet)
    assert len(second.new_items) == 2 and not second.updated_items
    assert [p.regions_written for p in second.products] == [2 * s, s]
    assert [len(p.labels_appended) for p in second.products] == [2, 1]
    collection = json.loads(Path(wf.products[0].output + ".stac-collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"][0][1].startswith("2024-05-18")  # the STAC Collection follows

    # a reprocessed scene: the same id, a newer `updated`, other pixels (May 13's red band)
    replaced = copy.deepcopy(records[1])
    replaced["properties"]["updated"] = "2024-06-15T00:00:00Z"
    replaced["assets"]["B04"]["href"] = records[2]["assets"]["B04"]["href"]
    _pgstac_load(stac_api.dsn, tmp_path, items=[replaced], upsert=True)
    third = run_workflow(wf, log=_quiet)
    assert third.updated_items == [replaced["id"]] and not third.new_items and third.dates == ["2024-05-08"]
    assert [p.regions_written for p in third.products] == [s, s]  # that date's regions; its week's
    assert [[d[:10] for d in p.labels_rewritten] for p in third.products] == [["2024-05-08"], ["2024-05-06"]]
    after = _store(wf.products[0].output, "ndvi").values[1]
    assert not np.array_equal(before, after, equal_nan=True)

    fourth = run_workflow(wf, log=_quiet)
    assert fourth.regions_written == 0 and "nothing new" in fourth.summary()
    reports = [first, second, third, fourth]
    print("regions computed per run:", [r.regions_written for r in reports])
    print(third.summary())

    # every product equals a one-shot run over all the items, bit for bit
    oneshot, _ = _workflow(stac_api.url, search, tmp_path / "oneshot")
    run_workflow(oneshot, log=_quiet)
    for inc, one in zip(wf.products, oneshot.products):
        a, b = _store(inc.output, inc.name), _store(one.output, one.name)
        assert a.dtype == b.dtype and np.array_equal(a["time"].values, b["time"].values)
        assert a.values.tobytes() == b.values.tobytes()
    state = geoproc.run.ledger.State(wf.state)
    assert state.read("last-report.json")["summary"] == fourth.summary()
    assert len(state.ledger()["items"]) == 4


def test_outputs_and_state_on_seaweedfs(s3_server, small_archive, tmp_path):
    opts = s3_server.storage_options()
    search = "{}"
    out = f"s3://{s3_server.bucket}/workflow-{os.getpid()}"
    wf, _ = _workflow(str(small_archive.catalog), search, out)
    report = run_workflow(wf, storage_options=opts, log=_quiet)
    assert report.regions_written > 0
    assert run_workflow(wf, storage_options=opts, log=_quiet).regions_written == 0
    local, _ = _workflow(str(small_archive.catalog), search, tmp_path / "local")
    run_workflow(local, log=_quiet)
    for remote, here in zip(wf.products, local.products):
        a = _store(remote.output, remote.name, storage_options=opts).values
        assert a.tobytes() == _store(here.output, here.name).values.tobytes()
    assert geoproc.run.ledger.State(wf.state, opts).ledger()["products"]["ndvi"]["status"] == "complete"


def _cli(path: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "geoproc.cli", "run", str(path)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _markers(store: Path) -> int:
    done = Path(str(store) + ".geoproc") / "done"
    return sum(len(files) for _, _, files in os.walk(done)) if done.is_dir() else 0


def test_a_run_killed_mid_way_resumes_and_a_second_run_is_refused(small_archive, tmp_path):
    wf, text = _workflow(str(small_archive.catalog), "{}", tmp_path / "out", chunk=16)
    path = tmp_path / "nightly.yaml"
    path.write_text(text)
    store = Path(wf.products[0].output)

    # two runs started together: one holds the lock, the other is refused with one line
    procs = [_cli(path, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [err for (_, err), p in zip(outs, procs) if p.returncode == 2]
    assert codes == [0, 2], outs
    assert refused[0].strip().startswith("geoproc: error: another run holds the outputs of this workflow")
    assert len(refused[0].strip().splitlines()) == 1

    # a run SIGKILLed once it has written some regions; the next run resumes (its lock's holder is dead)
    for p in wf.products:
        subprocess.run(["rm", "-rf", p.output, p.output + ".geoproc", p.output + ".stac-item.json",
                        p.output + ".stac-collection.json"], check=True)
    subprocess.run(["rm", "-rf", wf.state], check=True)
    proc = _cli(path, tmp_path)
    deadline = time.monotonic() + 60
    while _markers(store) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert geoproc.run.ledger.State(wf.state).read("lock.json") is not None  # the dead run's lock
    resumed = run_workflow(wf, log=_quiet)
    ndvi = resumed.products[0]
    assert ndvi.regions_skipped >= 3 and ndvi.regions_written > 0
    assert any("took over" in n for n in resumed.notes)
    oneshot, _ = _workflow(str(small_archive.catalog), "{}", tmp_path / "oneshot", chunk=16)
    run_workflow(oneshot, log=_quiet)
    for a, b in zip(wf.products, oneshot.products):
        assert _store(a.output, a.name).values.tobytes() == _store(b.output, b.name).values.tobytes()


def test_from_to_backfills_the_dates_in_the_range(small_archive, tmp_path):
    wf, _ = _workflow(str(small_archive.catalog), "{}", tmp_path / "out")
    run_workflow(wf, log=_quiet)
    s = _spatial_chunks(wf.products[0].output, "ndvi")
    again = run_workflow(wf, backfill=("2024-05-08", "2024-05-08"), log=_quiet)
    assert again.dates == ["2024-05-08"] and again.updated_items == ["S2X_33TA_20240508_L2A"]
    assert [p.regions_written for p in again.products] == [s, s]  # that date, its week
    assert run_workflow(wf, log=_quiet).regions_written == 0
