"""The failure records of a tiled run, beside its store (``<store>.geoproc/failed/ROW_COL.json``)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import GeoprocWarning
from ..io._regions import Write

if TYPE_CHECKING:
    from .tiles import TileFailure


def _failure_name(pos: tuple[int, int]) -> str:
    return f"failed/{pos[0]}_{pos[1]}.json"


def _record_failure(w: Write, failure: TileFailure) -> None:
    import obstore

    body = json.dumps({**failure.__dict__, "write": w.write, "tile": list(failure.tile)}).encode()
    try:
        obstore.put(w.target.manifest_store(), _failure_name(failure.tile), body)
    except Exception:  # the report still names the tile
        pass


def _forget_failure(w: Write, pos: tuple[int, int]) -> None:
    import obstore

    if w.target.loc.is_local and not os.path.exists(os.path.join(w.target.manifest_loc.path, _failure_name(pos))):
        return
    try:
        obstore.delete(w.target.manifest_store(), _failure_name(pos))
    except Exception:
        pass


def _forget_all_failures(w: Write) -> None:
    import obstore

    if w.target.loc.is_local and not os.path.isdir(os.path.join(w.target.manifest_loc.path, "failed")):
        return
    store = w.target.manifest_store()
    try:
        for page in obstore.list(store, "failed/"):
            obstore.delete(store, [entry["path"] for entry in page])
    except Exception as exc:
        warnings.warn(f"could not remove the old failure records beside {w.target.url}: {exc}", GeoprocWarning,
                      stacklevel=3)


def recorded_failures(url: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> list[dict]:
    """The tiles recorded as failed beside a store (by :func:`write_tiled`), each with its error."""
    import obstore

    from ..io._target import _Target

    target = _Target(url, storage_options)
    if target.loc.is_local and not os.path.isdir(os.path.join(target.manifest_loc.path, "failed")):
        return []
    out = []
    for page in obstore.list(target.manifest_store(), "failed/"):
        for entry in page:
            out.append(json.loads(bytes(obstore.get(target.manifest_store(), entry["path"]).bytes())))
    return sorted(out, key=lambda f: tuple(f["tile"]))
