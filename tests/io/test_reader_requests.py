"""Fewer requests per file: the header in one request, no overview query when none can serve, datasets reused."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

import geoproc.io.reader as reader_module
from geoproc.grid import GridSpec
from geoproc.io.items import AssetSpec
from geoproc.io.reader import DEFAULT_GDAL_ENV, RasterioReader

from ..faulty_http import serve
from ..helpers import http_server

SIZE, BLOCK = 4096, 128  # 1,024 tiles and 5 overview levels
TRANSFORM = Affine(10, 0, 500_000, 0, -10, 5_000_000)
_fresh = itertools.count()


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    """A COG whose header is larger than GDAL's default first read (16 KB); mostly zeros, so small."""
    folder = tmp_path_factory.mktemp("cog")
    data = np.zeros((SIZE, SIZE), np.uint16)
    data[::7, ::5] = 1234
    profile = dict(driver="GTiff", height=SIZE, width=SIZE, count=1, dtype="uint16", crs="EPSG:32633",
                   transform=TRANSFORM, nodata=0)
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, folder / "big.tif", driver="COG", BLOCKSIZE=BLOCK, COMPRESS="DEFLATE")
    return folder, data


def asset(href: str) -> AssetSpec:
    return AssetSpec(
        item_id="big", key="B04", band="red", href=href, band_index=1, crs="EPSG:32633", transform=TRANSFORM,
        shape=(SIZE, SIZE), nodata=0, scale=1.0, offset=0.0, data_type="uint16",
    )


def chunk_grid(row: int, col: int, n: int = 1024, res: float = 10) -> GridSpec:
    return GridSpec("EPSG:32633", Affine(res, 0, TRANSFORM.c + col * 10, 0, -res, TRANSFORM.f - row * 10), (n, n))


def count_requests(url: str, requests, action) -> int:
    before = sum(n for path, n in requests.items() if path.startswith(url))
    action()
    return sum(n for path, n in requests.items() if path.startswith(url)) - before


@contextlib.contextmanager
def range_server(folder):
    """An HTTP server of ``folder`` that logs ``(method, Range)`` of every request."""
    log = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = os.path.join(folder, self.path.lstrip("/").split("?")[0])
            size = os.path.getsize(path)
            rng = self.headers.get("Range")
            log.append((self.command, rng))
            m = re.match(r"bytes=(\d+)-(\d*)", rng or "")
            if not m:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                return
            start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if self.command == "GET":
                with open(path, "rb") as fh:
                    fh.seek(start)
                    self.wfile.write(fh.read(end - start + 1))

        do_HEAD = do_GET

    with http_server(Handler) as url:
        yield url, log


def test_the_header_comes_in_one_request(cog):
    """GDAL's first read of a file asks for GDAL_INGESTED_BYTES_AT_OPEN bytes: the header in one round trip.

    (GDAL's default 16 KB took two sequential requests per file over /vsis3/ in bench_latency.py.)
    """
    folder, _ = cog
    default = {k: v for k, v in DEFAULT_GDAL_ENV.items() if k != "GDAL_INGESTED_BYTES_AT_OPEN"}
    with range_server(str(folder)) as (url, log):
        for env, tag in ((DEFAULT_GDAL_ENV, "ours"), (default, "gdal")):
            log.clear()
            with rasterio.Env(**env), rasterio.open(f"/vsicurl/{url}/big.tif?{tag}") as src:
                gets = [rng for method, rng in log if method == "GET"]
                first = int(gets[0].split("-")[1]) + 1
                if tag == "ours":
                    assert len(gets) == 1 and first >= DEFAULT_GDAL_ENV["GDAL_INGESTED_BYTES_AT_OPEN"], gets
                    src.overviews(1)  # the overview IFDs are in those bytes too
                    assert [rng for method, rng in log if method == "GET"] == gets
                else:
                    assert first < DEFAULT_GDAL_ENV["GDAL_INGESTED_BYTES_AT_OPEN"]


def test_no_overview_query_unless_the_read_shrinks_2x(cog, monkeypatch):
    folder, data = cog
    calls = []
    real = reader_module._overview_level
    monkeypatch.setattr(reader_module, "_overview_level", lambda *a: calls.append(1) or real(*a))
    r = RasterioReader()
    spec = asset(str(folder / "big.tif"))
    out, _ = r.read(spec, chunk_grid(0, 0), "nearest")
    np.testing.assert_array_equal(out, data[:1024, :1024])
    assert calls == []
    r.read(spec, chunk_grid(0, 0, n=256, res=40), "nearest")  # 4x coarser: an overview may serve it
    assert calls == [1]


def test_chunks_of_a_file_open_it_once_per_process_and_give_the_same_pixels(cog, monkeypatch):
    folder, data = cog
    opened = []
    real_open = rasterio.open
    monkeypatch.setattr(reader_module.rasterio, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    monkeypatch.setattr(reader_module, "_OPEN", reader_module._OpenDatasets(8))
    r = RasterioReader()
    with serve(str(folder)) as (url, requests):
        href = f"{url}/big.tif?chunks{next(_fresh)}"
        spec = asset(href)
        grids = [chunk_grid(row, col) for row in (0, 1024) for col in (0, 1024, 2048)]
        outs = {}

        def read_all():
            for g in grids:
                outs[g.transform.c, g.transform.f] = r.read(spec, g, "nearest")[0]

        count_requests(href, requests, read_all)
        assert opened == [href]
        for g in grids:
            row, col = round((TRANSFORM.f - g.transform.f) / 10), round((g.transform.c - TRANSFORM.c) / 10)
            np.testing.assert_array_equal(outs[g.transform.c, g.transform.f], data[row : row + 1024, col : col + 1024])
        # concurrent reads of one file each get their own dataset (never one shared between threads)
        opened.clear()
        barrier = threading.Barrier(3)

        def read_one(g):
            barrier.wait()
            r.read(spec, g, "nearest")

        threads = [threading.Thread(target=read_one, args=(g,)) for g in grids[:3]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(opened) <= 2  # one was idle in the cache; the others opened their own


def test_a_failed_read_is_not_reused_and_the_cache_is_bounded(cog, monkeypatch):
    folder, _ = cog
    cache = reader_module._OpenDatasets(2)
    monkeypatch.setattr(reader_module, "_OPEN", cache)
    r = RasterioReader()
    for i in range(4):
        r.read(asset(str(folder / "big.tif")), chunk_grid(0, 0, n=64), "nearest")
    assert cache._count == 1
    copies = []
    for i in range(3):
        path = folder / f"copy{i}.tif"
        path.write_bytes((folder / "big.tif").read_bytes())
        copies.append(path)
        r.read(asset(str(path)), chunk_grid(0, 0, n=64), "nearest")
    assert cache._count == 2
    with pytest.raises(Exception):
        with cache.checkout(str(copies[-1]), None, ("env",)) as src:
            raise RuntimeError("a read failed")
    assert src.closed
