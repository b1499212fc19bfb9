"""One output location: the Zarr store, its manifest (``<store>.geoproc/``) and its STAC Item, and the
connection that reaches them; and the errors that name what went wrong there."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, OutputError
from .storage import S3Options, object_store, parse_location, redact, s3_options

MANIFEST_SUFFIX = ".geoproc"
ITEM_SUFFIX = ".stac-item.json"
_MANIFEST = "manifest.json"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value)).lower()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return value


class _Target:
    """One output: the store, its manifest and item, and the connection to reach them."""

    def __init__(self, url: str | os.PathLike, storage_options: Mapping[str, Any] | None):
        self.loc = parse_location(url)
        if self.loc.is_local and storage_options:
            raise InvalidArgumentError(f"storage_options apply to s3:// URLs, not to the local path {self.loc.url}")
        self.opts: S3Options | None = None if self.loc.is_local else s3_options(storage_options)
        self.manifest_loc = self.loc.sibling(MANIFEST_SUFFIX)

    @property
    def url(self) -> str:
        return self.loc.url

    def error(self, what: str, exc: BaseException, advice: str) -> OutputError:
        return OutputError(f"{what} {self.url}: {_reason(exc, self.opts)}; {advice}")

    def manifest_store(self):
        return object_store(self.manifest_loc, self.opts)

    def read_manifest(self) -> dict | None:
        import obstore

        if self.loc.is_local and not os.path.isdir(self.manifest_loc.path):
            return None
        try:
            return json.loads(bytes(obstore.get(self.manifest_store(), _MANIFEST).bytes()))
        except FileNotFoundError:
            return None

    def write_manifest(self, manifest: dict) -> None:
        import obstore

        obstore.put(self.manifest_store(), _MANIFEST, json.dumps(manifest, indent=1).encode())

    def done_regions(self, write: int | None = None) -> set[str]:
        """The regions recorded as written (their markers): by write number ``write``, or by any write."""
        import obstore

        folder = "done" if write is None else f"done/{write}"
        if self.loc.is_local and not os.path.isdir(os.path.join(self.manifest_loc.path, folder)):
            return set()
        found = set()
        for page in obstore.list(self.manifest_store(), folder + "/"):
            # done/<write>/<variable>/<region>: the region's key is what follows the write number
            found.update(entry["path"].split("/", 2)[2] for entry in page)
        return found

    def store_exists(self) -> bool:
        """True if a Zarr store is at the URL; raises if something else is."""
        import obstore

        if self.loc.is_local:
            path = self.loc.path
            if not os.path.exists(path):
                return False
            if os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zgroup")):
                return True
            if os.path.isdir(path) and not os.listdir(path):
                return False
            raise OutputError(
                f"output {self.url} exists and is not a Zarr store; geoproc only replaces Zarr stores. "
                "Remove it yourself or choose another path"
            )
        store = object_store(self.loc, self.opts)
        for root in ("zarr.json", ".zgroup"):  # Zarr v3, v2 (zarr_format=2)
            try:
                obstore.head(store, root)
                return True
            except FileNotFoundError:
                pass
        if next(iter(obstore.list(store, chunk_size=1)), []):
            raise OutputError(
                f"output {self.url} holds objects but no Zarr store; geoproc only replaces Zarr stores. "
                "Remove them yourself or choose another prefix"
            )
        return False

    def check_writable(self) -> None:
        """Fail now, with the reason, if the location cannot be written."""
        import obstore

        if self.loc.is_local:
            parent = os.path.dirname(os.path.abspath(self.loc.path)) or "."
            try:
                os.makedirs(parent, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=parent, prefix=".geoproc-probe-"):
                    pass
            except OSError as exc:
                raise OutputError(
                    f"cannot write output {self.url}: {exc.strerror or exc}; choose a writable directory (CLI: --output PATH)"
                ) from None
            return
        probe = f"probe-{os.getpid()}"
        try:
            store = self.manifest_store()
            obstore.put(store, probe, b"")
            obstore.delete(store, probe)
        except Exception as exc:
            raise _s3_error(self, exc) from None

    def delete_all(self) -> None:
        """Remove the store, its manifest and its item (``overwrite``)."""
        import obstore

        if self.loc.is_local:
            for path in (self.loc.path, self.manifest_loc.path):
                if os.path.isdir(path):
                    shutil.rmtree(path)
            item = self.loc.path + ITEM_SUFFIX
            if os.path.exists(item):
                os.remove(item)
            return
        for loc in (self.loc, self.manifest_loc):
            store = object_store(loc, self.opts)
            for page in obstore.list(store, chunk_size=1000):
                obstore.delete(store, [entry["path"] for entry in page])
        parent = object_store(self.loc, self.opts, prefix=self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else "")
        try:
            obstore.delete(parent, self.loc.name + ITEM_SUFFIX)
        except FileNotFoundError:
            pass

    def put_item(self, item: dict) -> None:
        self.put_beside(ITEM_SUFFIX, item)

    def put_beside(self, suffix: str, doc: dict) -> None:
        """Write ``doc`` as JSON beside the store (``<store><suffix>``), atomically on local disk."""
        import obstore

        body = json.dumps(doc, indent=1).encode()
        if self.loc.is_local:
            tmp = f"{self.loc.path}{suffix}.tmp-{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, self.loc.path + suffix)
            return
        parent = self.loc.path.rsplit("/", 1)[0] if "/" in self.loc.path else ""
        obstore.put(object_store(self.loc, self.opts, prefix=parent), self.loc.name + suffix, body)


def _reason(exc: BaseException, opts: S3Options | None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for marker in ("<Code>", "<Message>"):
        full = str(exc)
        if marker in full:
            text = text.split(":")[0] + ": " + full.split(marker, 1)[1].split("<", 1)[0]
            break
    return redact(text[:300], opts)


def _s3_error(target: _Target, exc: BaseException) -> OutputError:
    text = str(exc)
    name = type(exc).__name__
    endpoint = (target.opts.endpoint_url if target.opts else None) or "AWS S3"
    if "NoSuchBucket" in text:
        return OutputError(f"bucket {target.loc.bucket!r} of output {target.url} does not exist; create it or check the URL")
    if name in ("PermissionDeniedError", "UnauthenticatedError") or "403" in text or "AccessDenied" in text:
        return OutputError(
            f"the object store at {endpoint} refused the credentials for {target.url} "
            f"({_reason(exc, target.opts)}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, "
            "or storage_options"
        )
    if any(w in text.lower() for w in ("connect", "timed out", "timeout", "dns", "refused")):
        return OutputError(
            f"cannot reach the object store at {endpoint} for {target.url} ({_reason(exc, target.opts)}); "
            "check the endpoint and that the store is running"
        )
    return target.error("cannot write output", exc, "check the URL, the credentials and the endpoint")
