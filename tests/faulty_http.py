"""A real HTTP file server on 127.0.0.1 with Range support that can fail on purpose.

GDAL reads COGs over HTTP with range requests (/vsicurl/); this server serves a
folder and answers the first ``fail_first`` requests for each path with an
error status, so retry behaviour is tested against real HTTP, not a mock.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from .helpers import http_server


@contextmanager
def serve(root: str, fail_first: int = 0, status: int = 503):
    requests: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, head_only: bool):
            path = os.path.join(root, self.path.lstrip("/").split("?")[0])
            with lock:
                requests[self.path] += 1
                n = requests[self.path]
            if n <= fail_first:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not os.path.isfile(path):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            size = os.path.getsize(path)
            rng = self.headers.get("Range")
            start, end = 0, size - 1
            m = re.match(r"bytes=(\d+)-(\d*)", rng or "")
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if not head_only:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    self.wfile.write(fh.read(end - start + 1))

        def do_GET(self):
            self._send(False)

        def do_HEAD(self):
            self._send(True)

    with http_server(Handler) as url:
        yield url, requests
