"""Writing the regions of a prepared store: one task per compute chunk, each writing its Zarr chunks (and those
of every overview level, computed from the same values) and then recording itself done; and the finish
(consolidated metadata, manifest ``complete``, STAC Item, and a STAC Collection for a time series).

:class:`Write` holds a write whose checks and template are done (see :func:`geoproc.io.zarr.to_zarr`). It
knows every region of the result and which are already written, and gives the dask graph of any set of
them, fused with the computation that produces them and culled to it: so the whole result can run as
one graph (:func:`geoproc.to_zarr`) or tile by tile (:mod:`geoproc.run.tiles`), with the same tasks and
the same bytes either way.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import itertools
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import OutputError
from ._compact import compact_graph, shares_work
from ._overviews import pyramid
from ._target import _reason, _Target
from .storage import Location, S3Options, object_store, zarr_store

__all__ = ["Write", "Block"]


def _blockwise(graph, keys: list):
    """Blockwise fusion on the high-level graph, culled to ``keys`` (nothing materialised)."""
    from dask.blockwise import optimize_blockwise

    return optimize_blockwise(graph, keys=keys).cull(set(keys))


def _optimize(graph, keys: list) -> dict:
    """dask.array's optimisation of a :func:`_blockwise` graph without ``fuse_roots`` (which materialises
    whole layers, so a tile of a continental graph cost as much as all of it): linear fusion of its tasks."""
    from dask._task_spec import convert_legacy_graph, fuse_linear_task_spec
    from dask.array.optimization import _optimize_slices

    dsk = convert_legacy_graph(dict(graph))
    return _optimize_slices(fuse_linear_task_spec(dsk, keys=keys))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _region_key(name: str, starts: Sequence[int], sizes: Sequence[int]) -> str:
    """``<variable>/<start>+<size>_...``: a marker stands for exactly that region, so a rerun chunked otherwise
    along time never takes a larger region for written."""
    return f"{name}/" + "_".join(f"{int(s)}+{int(n)}" for s, n in zip(starts, sizes, strict=True))


@dataclass(frozen=True)
class _Output:
    """What a write task needs to reach one variable of the store and the manifest; small to pickle.

    The zarr array and the marker store are opened once per worker process (:func:`_open_output`):
    unpickling an obstore S3Store costs 3-20 ms, which every task paid when they travelled with it.
    """

    loc: Location
    manifest_loc: Location
    opts: S3Options | None
    variable: str
    token: str  # one per to_zarr call: a later write to the same URL never reuses an array opened for this one
    write: int  # the write's number in the manifest: its markers go to done/<write>/
    levels: int = 0  # overview levels: the variable is then at <0>/<variable>, level l at <l>/<variable>
    resampling: str = "mean"
    nodata: float | None = None
    axes: tuple[int, int] = (-2, -1)  # positions of y and x in the variable's dims

    def open(self):
        return _open_output(self)


@functools.lru_cache(maxsize=16)
def _open_output(output: _Output):
    import zarr

    store = zarr_store(output.loc, output.opts)
    if not output.levels:
        arrays = [zarr.open_array(store, path=output.variable, mode="r+")]
    else:
        arrays = [zarr.open_array(store, path=f"{level}/{output.variable}", mode="r+") for level in range(output.levels + 1)]
    return arrays, object_store(output.manifest_loc, output.opts)


def _level_region(region: tuple[slice, ...], shape: tuple[int, ...], axes: tuple[int, int], factor: int) -> tuple[slice, ...]:
    """Where the block written to ``region`` lies in a level ``factor`` times coarser along ``axes``."""
    out = list(region)
    for axis in axes:
        start = region[axis].start // factor  # a multiple of factor: chunks are multiples of 2**levels
        out[axis] = slice(start, start + shape[axis])
    return tuple(out)


def _write_block(block: np.ndarray, store: _Output, offsets: tuple[int, ...], url: str, block_info=None) -> np.ndarray:
    """Write one compute chunk into its Zarr region, then mark the region done (module level: pickled by reference)."""
    import obstore

    arrays, markers = store.open()
    target = arrays[0]
    variable, opts = store.variable, store.opts
    location = block_info[0]["array-location"]
    starts = [a + off for (a, _), off in zip(location, offsets)]
    region = tuple(slice(s, s + (b - a)) for s, (a, b) in zip(starts, location))
    values = np.asarray(block).astype(target.dtype, copy=False)
    axes = tuple(a % values.ndim for a in store.axes)
    levels = []  # each overview level's values and region, from this block alone (before any write)
    if store.levels:
        smaller = pyramid(values, store.levels, store.resampling, store.nodata, axes)
        for level, (array, small) in enumerate(zip(arrays[1:], smaller), start=1):
            levels.append((array, _level_region(region, small.shape, axes, 2**level), small))
    # Writing whole chunks is idempotent, so a region is simply written again after a failure that
    # the client's own retries gave up on (a request cut by a store that went away mid-flight),
    # until the retry budget is spent.
    budget = opts.retry_timeout if opts is not None else 0.0
    deadline, pause = time.monotonic() + budget, 0.5
    while True:
        try:
            target[region] = values
            for array, where, small in levels:
                array[where] = small
            obstore.put(markers, f"done/{store.write}/" + _region_key(variable, starts, values.shape), b"")
            break
        except Exception as exc:
            if _transient(exc) and time.monotonic() + pause < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 8.0)
                continue
            failure = exc
        # raised without the original as context: distributed pickles the whole chain
        raise OutputError(
            f"cannot write {variable!r} region {[(r.start, r.stop) for r in region]} of {url}"
            f"{f' (retried for {budget:.0f} s)' if budget else ''}: {_reason(failure, opts)}. "
            "The regions written so far are recorded: rerun with mode='resume' once the store is reachable"
        )
    return np.ones((1,) * block.ndim, dtype=bool)


def _transient(exc: BaseException) -> bool:
    """Worth writing again: not refused credentials, a missing bucket or a programming error."""
    if isinstance(exc, TypeError | ValueError | IndexError | KeyError | OutputError):
        return False
    text = str(exc)
    return type(exc).__name__ not in ("PermissionDeniedError", "UnauthenticatedError") and "NoSuchBucket" not in text


COLLECTION_SUFFIX = ".stac-collection.json"


def _delete_beside(target: _Target, suffix: str) -> None:
    """Remove ``<store><suffix>`` if it is there (an overwrite replaces the store and what describes it)."""
    import os

    import obstore

    if target.loc.is_local:
        if os.path.exists(target.loc.path + suffix):
            os.remove(target.loc.path + suffix)
        return
    parent = target.loc.path.rsplit("/", 1)[0] if "/" in target.loc.path else ""
    try:
        obstore.delete(object_store(target.loc, target.opts, prefix=parent), target.loc.name + suffix)
    except FileNotFoundError:
        pass


def _finish(_written, target: _Target, manifest: dict, item: dict | None, collection: dict | None = None) -> str:
    """Consolidate metadata, mark the manifest complete and write the STAC Item and Collection (the last task)."""
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # consolidated metadata is a zarr-python extension
            zarr.consolidate_metadata(zarr_store(target.loc, target.opts))
        target.write_manifest({**manifest, "status": "complete", "completed": _now()})
        if item is not None:
            target.put_item(item)
        if collection is not None:
            target.put_beside(COLLECTION_SUFFIX, collection)
    except Exception as exc:
        raise OutputError(
            f"every region of {target.url} is written, but finishing the store failed: {_reason(exc, target.opts)}; "
            "rerun with mode='resume' to finish it"
        ) from None
    return target.url




def _mark(target: _Target, write: int, keys: Sequence[str]) -> None:
    """Markers of ``keys`` under write number ``write`` (regions an earlier write already stored)."""
    import obstore

    store = target.manifest_store()
    try:
        for key in keys:
            obstore.put(store, f"done/{write}/{key}", b"")
    except Exception as exc:
        raise target.error("cannot record the regions written in", exc, "rerun with mode='resume'") from None


@dataclass(frozen=True)
class Block:
    """One region of the result: a compute chunk of one variable."""

    variable: str
    index: tuple[int, ...]  # block index in the variable's dask chunks
    start: tuple[int, ...]  # first pixel of the region in the store (offsets included)
    size: tuple[int, ...]

    @property
    def key(self) -> str:
        """The region's marker key (see :func:`_region_key`)."""
        return _region_key(self.variable, self.start, self.size)


@dataclass
class Write:
    """A write whose checks and template are done and whose manifest says ``writing``.

    Attributes
    ----------
    target
        The output.
    ds
        The lazy result (dask-backed variables).
    manifest
        The manifest as written at the start (``finish`` marks it complete).
    write
        The write's number: its markers go to ``done/<write>/``.
    offsets
        Per variable, where its blocks start in the store (an append starts after the stored dates).
    done
        Keys of the regions written by this write or an earlier one (skipped).
    item
        The STAC Item to write beside the store at the finish, or None.
    token
        One per write call: names its dask layers.
    levels
        Overview levels written by each region's task (0: none).
    resampling
        Per variable, how its overviews are computed (``mean``, ``mode``, ``nearest``).
    collection
        The STAC Collection to write beside the store at the finish (time series), or None.
    compact
        Give compact graphs where regions share no work (see :meth:`graph`); False: always dask's fused tasks.
    """

    target: _Target
    ds: xr.Dataset
    manifest: dict
    write: int
    offsets: dict[str, tuple[int, ...]]
    done: set[str]
    item: dict | None = None
    token: str = ""
    levels: int = 0
    resampling: dict[str, str] = field(default_factory=dict)
    collection: dict | None = None
    compact: bool = True
    _arrays: dict[str, da.Array] = field(default_factory=dict, repr=False)
    _shares: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, var in self.ds.data_vars.items():
            nodata = var.attrs.get("nodata")
            output = _Output(
                self.target.loc, self.target.manifest_loc, self.target.opts, name, self.token, self.write,
                levels=self.levels, resampling=self.resampling.get(name, "mean"),
                nodata=None if nodata is None else float(nodata),
                axes=(var.dims.index("y"), var.dims.index("x")) if self.levels else (-2, -1),
            )
            # name and meta given: dask would otherwise tokenize the arguments and call the function on an empty block
            self._arrays[name] = da.map_blocks(
                _write_block, var.data, dtype=bool, chunks=tuple((1,) * n for n in var.data.numblocks),
                meta=np.empty((0,) * var.ndim, dtype=bool), name=self.layer(name),
                store=output, offsets=self.offsets[name], url=self.target.url,
            )
        self._graph = None

    def layer(self, variable: str) -> str:
        """The name of the dask layer that writes ``variable``."""
        return f"geoproc-write-{variable}-{self.token}"

    def blocks(self) -> Iterable[Block]:
        """Every region of the result, variable by variable, blocks in C order."""
        for name, var in self.ds.data_vars.items():
            chunks = var.data.chunks
            starts = [np.cumsum((0,) + c[:-1]) for c in chunks]
            for index in np.ndindex(var.data.numblocks):
                yield Block(
                    name, index, tuple(int(s[i] + off) for s, i, off in zip(starts, index, self.offsets[name])),
                    tuple(int(c[i]) for c, i in zip(chunks, index)),
                )

    def pending(self) -> list[Block]:
        """The regions not yet written."""
        return [b for b in self.blocks() if b.key not in self.done]

    def key(self, block: Block) -> tuple:
        """The dask key of the task that writes ``block``."""
        return (self.layer(block.variable), *block.index)

    def graph(self, blocks: Sequence[Block], compact: bool | None = None) -> dict:
        """The low-level graph that writes ``blocks`` and nothing else.

        Blockwise steps are fused into the write (a region's reads, masks and reductions run in its
        write task) and the graph is culled to the blocks' keys: its size grows with the blocks, not
        with the whole result. Where regions share no work (:meth:`shares_work`; the usual case), the
        graph is compact (:mod:`geoproc.io._compact`): one small task per region and the graph's layers
        sent once, each region's tasks made on the worker; otherwise dask fuses the tasks by its rules.
        ``compact``: False builds dask's fused graph whatever :attr:`compact` says.
        """
        from dask._task_spec import Alias

        keys = [self.key(b) for b in blocks]
        hlg = self._culled(keys)
        if (self.compact if compact is None else compact) and not self.shares_work():
            dsk = compact_graph(hlg, keys, f"geoproc-{self.token}")
            if dsk is not None:
                return dsk
        dsk = _optimize(hlg, keys)
        # dask names a fused task after its chain and leaves an alias under the requested key: give the
        # fused task the key itself (half the tasks for the scheduler to hold; nothing else depends on it)
        for key in keys:
            node = dsk.get(key)
            if isinstance(node, Alias) and node.target in dsk:
                fused = copy.copy(dsk.pop(node.target))
                fused.key = key
                dsk[key] = fused
        return dsk

    def shares_work(self) -> bool:
        """Whether two regions of the result need a same task (decided once, on a sample of regions).

        The sample: a few chunk positions spread over the result, each with its neighbours along y and x,
        and at each of those positions every variable's regions (the first, second, middle and last
        along other axes, such as time chunks). A mask read by two variables, a halo and a reduction over
        the whole scene all show as tasks that two of these regions need.
        """
        if self._shares is None:
            probes = self._probes()
            self._shares = probes is None or shares_work(self._culled(probes), probes)
        return self._shares

    def _probes(self, spread: int = 4) -> list | None:
        """Keys of the sample of :meth:`shares_work`; None where a variable has no y and x."""
        axes, blocks = {}, {}
        for name, var in self.ds.data_vars.items():
            if "y" not in var.dims or "x" not in var.dims:
                return None
            axes[name] = (var.dims.index("y"), var.dims.index("x"))
            blocks[name] = var.data.numblocks
        first = next(iter(blocks))
        ny, nx = blocks[first][axes[first][0]], blocks[first][axes[first][1]]
        centres = {(round(i * (ny - 1) / max(spread - 1, 1)), round(i * (nx - 1) / max(spread - 1, 1)))
                   for i in range(spread)} | {(0, nx - 1), (ny - 1, 0)}
        positions = {(y + dy, x + dx) for y, x in centres for dy, dx in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))}
        out = []
        for name, numblocks in blocks.items():
            ay, ax = axes[name]
            others = [sorted({0, min(1, n - 1), n // 2, n - 1}) if i not in (ay, ax) else None
                      for i, n in enumerate(numblocks)]
            for y, x in positions:
                if not (0 <= y < numblocks[ay] and 0 <= x < numblocks[ax]):
                    continue
                grid = [[y] if i == ay else [x] if i == ax else others[i] for i in range(len(numblocks))]
                out.extend((self.layer(name), *idx) for idx in itertools.product(*grid))
        return out

    def _culled(self, keys: list):
        """The high-level graph of the writes ``keys``, blockwise-fused and culled to them."""
        from dask.highlevelgraph import HighLevelGraph

        if self._graph is None:
            self._graph = HighLevelGraph.merge(*(a.__dask_graph__() for a in self._arrays.values()))
        return _blockwise(self._graph, keys)

    def carry_over(self) -> None:
        """Record under this write the regions an earlier write already stored (so that counts add up)."""
        own = self.target.done_regions(self.write) if self.done else set()
        carried = [b.key for b in self.blocks() if b.key in self.done and b.key not in own]
        if carried:
            _mark(self.target, self.write, carried)

    def delayed(self, blocks: Sequence[Block]):
        """A ``dask.delayed`` object that writes ``blocks`` and then finishes the store."""
        from dask._task_spec import List, Task, TaskRef
        from dask.delayed import Delayed

        dsk = self.graph(blocks)
        key = f"geoproc-finish-{self.token}"
        dsk[key] = Task(key, _finish, List(*(TaskRef(self.key(b)) for b in blocks)), self.target, self.manifest,
                        self.item, self.collection)
        return Delayed(key, dsk)

    def finish(self) -> str:
        """Consolidate the metadata, mark the manifest complete, write the STAC Item (and Collection); returns the URL."""
        return _finish(None, self.target, self.manifest, self.item, self.collection)

