"""Concurrent reads inside a chunk task: overlapped in time, fused in the sequential order, faults as before."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import dask
import numpy as np
import pytest
from affine import Affine

import geoproc
from geoproc.errors import AssetReadError, InvalidArgumentError
from geoproc.grid import GridSpec
from geoproc.io.items import AssetSpec
from geoproc.io.reader import ChunkTask, read_chunk
from geoproc.io.report import LoadReport

GRID = GridSpec("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), (4, 6))


def spec(i: int, value: int = 0) -> AssetSpec:
    """An asset whose fake file holds ``value`` on the pixels chosen by :class:`FakeReader`."""
    return AssetSpec(
        item_id=f"item{i}", key="B04", band="red", href=f"fake://{i}/{value}", band_index=1, crs="EPSG:32633",
        transform=GRID.transform, shape=GRID.shape, nodata=0, scale=1.0, offset=0.0, data_type="uint16",
    )


def task(specs: list[AssetSpec], times: list[int], on_error: str = "raise", token: str | None = None) -> ChunkTask:
    return ChunkTask(
        grid=GRID, assets=np.arange(len(specs)), times=np.asarray(times), n_time=max(times) + 1,
        dtype="uint16", fill=0, decode=False, resampling="nearest", on_error=on_error, report_token=token,
    )


@dataclass(frozen=True)
class FakeReader:
    """Sleeps ``delay`` s per read (as a network round trip would) and records reads.

    The file of asset ``i`` is valid on pixels where ``(row + col + i) % period == 0`` (every pixel for
    period 1), holding ``i + 1``; hrefs in ``broken`` raise :class:`AssetReadError`.
    """

    delay: float = 0.0
    period: int = 1
    broken: frozenset = frozenset()
    log: list = field(default_factory=list)
    active: list = field(default_factory=lambda: [0, 0])  # now, most at once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, asset, grid, resampling, overviews=True):
        with self.lock:
            self.log.append(asset.item_id)
            self.active[0] += 1
            self.active[1] = max(self.active)
        try:
            time.sleep(self.delay)
            if asset.href in self.broken:
                raise AssetReadError(f"cannot read item {asset.item_id!r}: boom")
            i = int(asset.item_id[4:])
            rows, cols = np.indices(grid.shape)
            valid = (rows + cols + i) % self.period == 0
            return np.where(valid, i + 1, 0).astype(np.uint16), valid
        finally:
            with self.lock:
                self.active[0] -= 1


def test_reads_of_a_task_overlap_in_time():
    n, delay = 8, 0.2
    specs = [spec(i) for i in range(n)]
    reader = FakeReader(delay=delay)
    out = read_chunk(task(specs, list(range(n))), specs, reader, concurrency=8)
    # all n reads were in flight at once (counted by the reader, not timed: the machine may be busy)
    assert reader.active[1] == n
    np.testing.assert_array_equal(out[:, 0, 0], np.arange(1, n + 1))
    # one at a time, as before
    reader = FakeReader(delay=0.05)
    read_chunk(task(specs, list(range(n))), specs, reader, concurrency=1)
    assert reader.active[1] == 1


def test_concurrency_is_bounded():
    reader = FakeReader(delay=0.02)
    read_chunk(task([spec(i) for i in range(20)], list(range(20))), [spec(i) for i in range(20)], reader, concurrency=3)
    assert reader.active[1] == 3 and sorted(reader.log) == sorted(f"item{i}" for i in range(20))


@pytest.mark.parametrize("concurrency", [1, 2, 4, 16])
def test_overlapping_assets_fuse_in_order_whatever_finishes_first(concurrency):
    """Later assets finish first (shorter sleeps); the first valid pixel in fuse order must still win."""

    @dataclass(frozen=True)
    class Reversed(FakeReader):
        def read(self, asset, grid, resampling, overviews=True):
            time.sleep(0.01 * (10 - int(asset.item_id[4:])))
            return FakeReader.read(self, asset, grid, resampling, overviews)

    specs = [spec(i) for i in range(6)]
    times = [0, 0, 0, 1, 1, 1]
    got = read_chunk(task(specs, times), specs, Reversed(period=2), concurrency=concurrency)
    want = read_chunk(task(specs, times), specs, FakeReader(period=2), concurrency=1)
    np.testing.assert_array_equal(got, want)
    rows, cols = np.indices(GRID.shape)
    even = (rows + cols) % 2 == 0
    # slot 0: item0 on even pixels, item1 on odd ones; item2 never wins
    np.testing.assert_array_equal(got[0], np.where(even, 1, 2))
    np.testing.assert_array_equal(got[1], np.where(even, 5, 4))


def test_a_full_slot_stops_reading_and_ignores_later_failures():
    """Sequentially, the first asset fills the slot and the others are never read: their errors do not count."""
    specs = [spec(0), spec(1, 1), spec(2, 2), spec(3)]
    broken = frozenset({specs[1].href, specs[2].href})
    for concurrency in (1, 4):
        reader = FakeReader(delay=0.01, broken=broken)
        out = read_chunk(task(specs, [0, 0, 0, 1]), specs, reader, concurrency=concurrency)
        assert (out[0] == 1).all() and (out[1] == 4).all()
        if concurrency == 1:
            assert reader.log == ["item0", "item3"]


def test_fill_mode_reports_a_failing_asset_once_and_raise_mode_raises_it():
    specs = [spec(0, 9), spec(1), spec(2)]
    reader = FakeReader(delay=0.01, period=3, broken=frozenset({specs[0].href}))
    token = "test-read-concurrency"
    filled = read_chunk(task(specs, [0, 0, 1], on_error="fill", token=token), specs, reader, concurrency=8)
    want = read_chunk(task(specs, [0, 0, 1], on_error="fill", token=token + "-seq"), specs, reader, concurrency=1)
    np.testing.assert_array_equal(filled, want)
    failures = LoadReport(token).failures()
    assert [(f["item_id"], f["asset"]) for f in failures] == [("item0", "B04")]
    with pytest.raises(AssetReadError, match="item0"):
        read_chunk(task(specs, [0, 0, 1]), specs, reader, concurrency=8)


def test_load_results_do_not_depend_on_concurrency(archive):
    items = geoproc.search(archive.catalog)
    with dask.config.set(scheduler="threads", num_workers=2):
        one = geoproc.load(items, ["red", "scl"], resolution=20, chunks=128, read_concurrency=1).compute()
        many = geoproc.load(items, ["red", "scl"], resolution=20, chunks=128, read_concurrency=16).compute()
    for band in ("red", "scl"):
        np.testing.assert_array_equal(one[band].values, many[band].values)
    with pytest.raises(InvalidArgumentError, match="read_concurrency"):
        geoproc.load(items, ["red"], read_concurrency=0)
    assert geoproc.plan(items, ["red"], read_concurrency=4).items == len(items)
