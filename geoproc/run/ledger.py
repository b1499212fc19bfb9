"""A workflow's state beside its outputs: the ledger of what was processed, the run lock, the run reports.

The state folder (a path or ``s3://`` prefix, the workflow's ``state`` key) holds:

``ledger.json``
    Every item processed (id -> its ``datetime``, ``updated`` and ``created``), the catalog's latest
    ``updated``/``created`` seen, each product's time labels written, and the last runs. Written once, at
    the end of a run that finished every product: an interrupted run leaves the previous ledger, so the
    next run sees the same new items again and resumes (the stores keep the regions already written).
``lock.json``
    The run holding the outputs: ``holder`` (host, process, run id) and ``expires`` (UTC seconds). A run
    renews the lease while it works (a thread, every third of the lease); a holder that dies stops renewing
    and the lock is taken over once it expires. A second run while the lease holds is refused.
``reports/<run id>.json`` and ``last-report.json``
    What each run did (:class:`geoproc.run.report.RunReport`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from ..errors import GeoprocError, OutputError
from ..io.storage import object_store, parse_location, s3_options

__all__ = ["State", "Lock", "LockHeldError"]


class LockHeldError(GeoprocError):
    """Another run holds the workflow's outputs."""


class State:
    """The state folder of a workflow: JSON documents read and written whole (one PUT each)."""

    def __init__(self, url: str, storage_options: dict | None = None):
        check_state_url(url)
        self.loc = parse_location(url)
        self.url = self.loc.url
        self.store = object_store(self.loc, None if self.loc.is_local else s3_options(storage_options))

    def read(self, name: str) -> dict | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            return json.loads(bytes(obstore.get(self.store, name).bytes()))
        except (NotFoundError, FileNotFoundError):
            return None

    def write(self, name: str, doc: dict, *, create: bool = False) -> bool:
        """Write ``doc``; with ``create``, only if ``name`` does not exist (False if it does)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, NotSupportedError

        data = json.dumps(doc, indent=1, sort_keys=True, default=str).encode()
        if not create:
            obstore.put(self.store, name, data)
            return True
        try:
            obstore.put(self.store, name, data, mode="create")
            return True
        except (AlreadyExistsError, FileExistsError):
            return False
        except NotSupportedError:  # a store without conditional writes: check, then write
            if self.read(name) is not None:
                return False
            obstore.put(self.store, name, data)
            return True

    def delete(self, name: str) -> None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            obstore.delete(self.store, name)
        except (NotFoundError, FileNotFoundError):
            pass

    def ledger(self) -> dict[str, Any]:
        """The ledger, or an empty one before the first run."""
        return self.read("ledger.json") or {"format": "geoproc-ledger/1", "items": {}, "products": {}, "runs": []}


class Lock:
    """The lease on a workflow's outputs (``lock.json`` in its state folder), renewed while held.

    Examples
    --------
    >>> import tempfile
    >>> state = State(tempfile.mkdtemp())
    >>> with Lock(state, lease=30, run_id="a"):
    ...     Lock(state, lease=30, run_id="b").acquire()
    Traceback (most recent call last):
    geoproc.run.ledger.LockHeldError: ...
    """

    NAME = "lock.json"

    def __init__(self, state: State, *, lease: float = 300.0, run_id: str | None = None):
        self.state, self.lease = state, float(lease)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.run_id}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.took_over: str | None = None

    def _doc(self) -> dict:
        return {"holder": self.holder, "expires": time.time() + self.lease, "lease_s": self.lease}

    def acquire(self) -> Lock:
        if not self.state.write(self.NAME, self._doc(), create=True):
            held = self.state.read(self.NAME) or {}
            if held.get("expires", 0) > time.time() and not _dead_here(held.get("holder", "")):
                left = held["expires"] - time.time()
                raise LockHeldError(
                    f"another run holds the outputs of this workflow ({held.get('holder')}, lease for {left:.0f} s "
                    f"more, {self.state.url}/{self.NAME}); wait for it to finish, or for its lease to expire if it died"
                )
            # the holder died (its lease ran out, or its process on this machine is gone): take over, then check that no one else did at the same time
            self.took_over = held.get("holder")
            self.state.write(self.NAME, self._doc())
            time.sleep(0.2)
            if (self.state.read(self.NAME) or {}).get("holder") != self.holder:
                raise LockHeldError(f"another run took over the expired lock at {self.state.url}/{self.NAME} first")
        self._thread = threading.Thread(target=self._renew, name="geoproc-lock", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.state.write(self.NAME, self._doc())
            except Exception:  # a failed renewal is retried at the next tick; the lease covers two misses
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        held = self.state.read(self.NAME) or {}
        if held.get("holder") == self.holder:
            self.state.delete(self.NAME)

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _dead_here(holder: str) -> bool:
    """True if ``holder`` was a process on this machine that no longer runs (its lock need not wait out its lease)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_state_url(url: str) -> None:
    """Refuse a state folder that is a Zarr store (a typo for a product's output)."""
    if url.rstrip("/").endswith(".zarr"):
        raise OutputError(f"the workflow's state {url} looks like a Zarr store; give a folder of its own (state: ...)")
