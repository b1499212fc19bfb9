"""Where a result came from, carried by the data itself: input items and acquisition span.

:func:`geoproc.load` records ``input_items`` (ids, in fuse order) and the span of
the acquisitions (``input_start``/``input_end``, ISO 8601 UTC) on the Dataset and
on every variable; the functions that derive new variables pass them on
(:func:`carry`), and reductions over time record the span of the dates they
reduced (:func:`time_span`). :func:`geoproc.to_zarr` then describes any result,
on any path, by its inputs (:func:`collect`) rather than by the time it was
written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import xarray as xr

__all__ = ["PROVENANCE_KEYS", "carry", "time_span", "collect", "merge", "iso"]

PROVENANCE_KEYS = ("input_items", "input_start", "input_end")


def iso(value) -> str:
    """ISO 8601 UTC (``...Z``) of a datetime64 or datetime."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return np.datetime_as_string(np.datetime64(value, "s"), unit="s") + "Z"


def carry(source: xr.Dataset | xr.DataArray | Mapping) -> dict:
    """The provenance attrs of ``source`` (a Dataset's own, else those of its variables)."""
    attrs = source if isinstance(source, Mapping) else source.attrs
    found = {k: attrs[k] for k in PROVENANCE_KEYS if k in attrs}
    if not found and isinstance(source, xr.Dataset):
        found = collect(source)
    return found


def time_span(data: xr.DataArray | xr.Dataset, dim: str = "time") -> dict:
    """``input_start``/``input_end`` of the ``dim`` coordinate, when it holds dates (the end from the
    ``time_end`` coordinate where :func:`geoproc.load` left one)."""
    if dim not in data.coords or not data[dim].size or data[dim].dtype.kind != "M":
        return {}
    values = data[dim].values
    # the loader's time_end coordinate: the end of each slice's last acquisition (MODIS periods)
    end = data.coords.get(f"{dim}_end") if dim == "time" else None
    last = end.values.max() if end is not None and end.dtype.kind == "M" and end.dims == (dim,) else values.max()
    return {"input_start": iso(values.min()), "input_end": iso(max(last, values.max()))}


def collect(ds: xr.Dataset) -> dict:
    """Provenance of a Dataset from its own attrs, else merged from its variables'.

    Examples
    --------
    >>> a = xr.DataArray([1.0], dims="x", attrs={"input_items": ["s1", "s2"], "input_start": "2024-05-02T10:00:00Z"})
    >>> b = xr.DataArray([2.0], dims="x", attrs={"input_items": ["s2", "s3"], "input_end": "2024-05-30T10:00:00Z"})
    >>> collect(xr.Dataset({"a": a, "b": b}))
    {'input_items': ['s1', 's2', 's3'], 'input_start': '2024-05-02T10:00:00Z', 'input_end': '2024-05-30T10:00:00Z'}
    """
    if any(k in ds.attrs for k in PROVENANCE_KEYS):
        return {k: ds.attrs[k] for k in PROVENANCE_KEYS if k in ds.attrs}
    items: dict[str, None] = {}
    starts, ends = [], []
    for var in ds.data_vars.values():
        for item in var.attrs.get("input_items") or ():
            items[str(item)] = None
        if var.attrs.get("input_start"):
            starts.append(str(var.attrs["input_start"]))
        if var.attrs.get("input_end"):
            ends.append(str(var.attrs["input_end"]))
    out: dict = {}
    if items:
        out["input_items"] = list(items)
    if starts:
        out["input_start"] = min(starts)
    if ends:
        out["input_end"] = max(ends)
    return out


def merge(old: Mapping, new: Mapping) -> dict:
    """Provenance of a store after ``new`` was appended to ``old``: items of both (old first, once
    each), the earliest start and the latest end.

    Examples
    --------
    >>> merge({"input_items": ["a", "b"], "input_start": "2024-05-01T00:00:00Z", "input_end": "2024-05-02T00:00:00Z"},
    ...       {"input_items": ["b", "c"], "input_start": "2024-05-03T00:00:00Z", "input_end": "2024-05-04T00:00:00Z"})
    {'input_items': ['a', 'b', 'c'], 'input_start': '2024-05-01T00:00:00Z', 'input_end': '2024-05-04T00:00:00Z'}
    """
    out: dict = {}
    items = [*(old.get("input_items") or ()), *(new.get("input_items") or ())]
    if items:
        out["input_items"] = list(dict.fromkeys(map(str, items)))
    starts = [str(v) for v in (old.get("input_start"), new.get("input_start")) if v]
    ends = [str(v) for v in (old.get("input_end"), new.get("input_end")) if v]
    if starts:
        out["input_start"] = min(starts)
    if ends:
        out["input_end"] = max(ends)
    return out
