"""Compact region graphs: one small task per region, whose computation is made where it runs.

A region's computation (its reads, masks, indices, reduction and write) is dozens of dask tasks, fused
into one by dask's optimisation. Making them costs the client ~0.2 ms a region and their pickles ~4 KB
each, so 50,000 regions took ~11 s to build and ~17 s more to reach the scheduler. Here the client
sends instead:

- the layers of the optimised graph, once, as a :class:`Recipe` (a blockwise layer is a few KB whatever
  its number of blocks; the few materialised layers are culled to the regions sent);
- the literal data of the graph (tables of assets) as they are, each one key;
- per region, one task that names its key (:func:`run_region`): the worker takes the region's own tasks
  out of the recipe (a blockwise layer makes one block on demand) and runs them.

This is only right where regions share no work: a task needed by two regions would be run twice (a
mask read by two variables, a halo, a reduction over the whole scene). :func:`shares_work` looks for
such tasks among a sample of regions that the caller draws from the whole result
(:meth:`geoproc.io._regions.Write.shares_work`: spread positions, their neighbours, every variable
there), and the caller builds dask's fused graph where it finds one.
"""

from __future__ import annotations

import numbers
import uuid
from collections.abc import Iterable, Sequence

from dask.blockwise import BlockwiseDep

__all__ = ["Recipe", "compact_graph", "run_region", "shares_work"]

#: Most pieces of literal data (tables of assets, arrays) a compact graph passes to every region's task
MAX_SHARED = 64


def _literal(value) -> bool:
    """A graph value that is data, not a task: a DataNode, or an array, number or string put in as it is."""
    import numpy as np
    from dask._task_spec import DataNode

    return isinstance(value, DataNode | np.ndarray | numbers.Number | str | bytes)


def _is_data(layer) -> bool:
    from dask.highlevelgraph import MaterializedLayer

    return isinstance(layer, MaterializedLayer) and all(_literal(v) for v in layer.mapping.values())


def _dep_blocks(layer, arg, ind) -> set:
    """The blocks of ``layer``'s input ``arg`` (indexed by ``ind``) that its output blocks use."""
    import itertools

    out_ind = layer.output_indices
    nb = layer.numblocks[arg]
    contracted = [s for s in dict.fromkeys(ind) if s not in out_ind]
    ranges = [range(layer.dims[s]) for s in contracted]
    blocks = set()
    for ob in layer.output_blocks:
        coords = dict(zip(out_ind, ob))
        for extra in itertools.product(*ranges):
            coords.update(zip(contracted, extra))
            # an input of one block along an axis is broadcast (dask takes its block 0)
            blocks.add(tuple(0 if n == 1 else coords[s] for s, n in zip(ind, nb)))
    return blocks


class _Subset(BlockwiseDep):
    """The values of a blockwise input (a :class:`dask.blockwise.BlockwiseDep`) for some of its blocks only."""

    def __init__(self, dep, blocks: Iterable):
        self.numblocks = dep.numblocks
        self.produces_tasks = dep.produces_tasks
        self._keys = dep.produces_keys
        self.values = {b: dep.get(b, b) for b in blocks}  # as dask asks for them

    @property
    def produces_keys(self) -> bool:
        return self._keys

    def __getitem__(self, idx):
        return self.values[idx]

    def get(self, idx, default=None):  # dask falls back to ``default`` on a KeyError: never silently here
        return self.values[idx]


def _restricted(layer):
    """A culled blockwise layer whose inputs made of values (not tasks) keep only the blocks it uses: a
    continental load's chunk index, or ``map_blocks``' ``block_info`` of every block, would otherwise travel
    whole with every tile. An uncut layer keeps its inputs, less what they offer to drop (``without_data()``:
    a load's table of assets, which is a graph key of its own)."""
    from dask.blockwise import Blockwise

    if not layer.io_deps:
        return layer
    deps = dict(layer.io_deps)
    needed: dict = {}
    for arg, ind in layer.indices:
        if ind is not None and isinstance(arg, str) and arg in deps:
            blocks = needed.setdefault(arg, set())
            if layer.output_blocks:
                blocks |= _dep_blocks(layer, arg, ind)
    for arg, blocks in needed.items():
        dep = deps[arg]
        if layer.output_blocks:
            deps[arg] = _Subset(dep, blocks)
        elif hasattr(dep, "without_data"):
            deps[arg] = dep.without_data()
    return Blockwise(layer.output, layer.output_indices, layer.task, layer.indices, layer.numblocks,
                     concatenate=layer.concatenate, new_axes=layer.new_axes, output_blocks=layer.output_blocks,
                     annotations=layer.annotations, io_deps=deps)


class _Keys:
    """``key in keys`` for the keys of a recipe and its shared data, without listing the blockwise keys."""

    def __init__(self, recipe: Recipe, shared: Iterable):
        self.recipe, self.shared = recipe, set(shared)

    def __contains__(self, key) -> bool:
        try:
            if key in self.shared or key in self.recipe.tasks:
                return True
        except TypeError:  # unhashable
            return False
        if type(key) is tuple and key and key[0] in self.recipe.blockwise:
            layer = self.recipe.blockwise[key[0]]
            idx = key[1:]
            dims = [layer.dims[i] for i in layer.output_indices]
            return len(idx) == len(dims) and all(isinstance(i, numbers.Integral) and 0 <= i < n
                                                 for i, n in zip(idx, dims))
        return False


class Recipe:
    """The layers of a blockwise-optimised, culled graph without its literal data, from which the tasks of
    any one region are made (:meth:`tasks_of`).

    Parameters
    ----------
    layers
        The graph's layers, by name: :class:`dask.blockwise.Blockwise` layers and materialised ones.
    """

    def __init__(self, layers: dict):
        from dask.blockwise import Blockwise

        self.blockwise = {}
        self.tasks: dict = {}
        for layer in layers.values():
            if isinstance(layer, Blockwise):
                self.blockwise[layer.output] = _restricted(layer)
            else:
                self.tasks.update(layer)

    def tasks_of(self, key, shared: Iterable = ()) -> dict:
        """The tasks that compute ``key``, as a graph that stops at the keys ``shared`` (given by the caller)."""
        from dask._task_spec import DataNode, GraphNode, convert_legacy_task

        shared = set(shared)
        known = _Keys(self, shared)
        out: dict = {}
        stack = [key]
        while stack:
            k = stack.pop()
            if k in out or k in shared:
                continue
            if k in self.tasks:
                node = convert_legacy_task(k, self.tasks[k], known)
                if not isinstance(node, GraphNode):
                    node = DataNode(k, node)
            elif type(k) is tuple and k[0] in self.blockwise:
                node = self.blockwise[k[0]]._cull({k[1:]})._dict[k]
            else:
                raise KeyError(f"task {k!r} is neither in the recipe nor shared")
            out[k] = node
            stack.extend(node.dependencies)
        return out


def run_region(recipe: Recipe, key, names: Sequence, *values):
    """Make the tasks of ``key`` from ``recipe`` and run them (``names``: the shared keys, given as ``values``).

    Dask's synchronous scheduler runs them, dropping each intermediate result once its last user has run.
    """
    try:
        dsk = recipe.tasks_of(key, names)
    except Exception as exc:
        from ..errors import GeoprocError

        raise GeoprocError(
            f"cannot make the tasks of region {key!r} from its compact graph ({type(exc).__name__}: {exc}); "
            "a tiled run retries the tile with dask's fused graph, and Write.compact = False always uses it"
        ) from None
    from dask._task_spec import DataNode
    from dask.local import get_sync

    dsk.update((name, DataNode(name, value)) for name, value in zip(names, values))
    return get_sync(dsk, key)


def _data(graph) -> dict:
    """The literal data of ``graph`` (layers made of :class:`dask._task_spec.DataNode` alone), by key."""
    from dask._task_spec import DataNode

    return {k: v if isinstance(v, DataNode) else DataNode(k, v)
            for layer in graph.layers.values() if _is_data(layer) for k, v in layer.mapping.items()}


def _recipe(graph) -> Recipe:
    return Recipe({n: layer for n, layer in graph.layers.items() if not _is_data(layer)})


def shares_work(graph, probes: Sequence) -> bool:
    """Whether two of the regions ``probes`` need a same task (other than literal data) in ``graph``.

    ``graph`` is a blockwise-optimised :class:`dask.highlevelgraph.HighLevelGraph` culled to at least
    ``probes``. A graph whose layers this cannot take apart counts as sharing (the fused graph is then used).
    """
    data = _data(graph)
    if len(data) > MAX_SHARED:
        return True
    seen: dict = {}
    try:
        recipe = _recipe(graph)
        for probe in probes:
            for k in recipe.tasks_of(probe, data):
                if seen.setdefault(k, probe) != probe:
                    return True
    except Exception:  # a layer this does not know how to take apart
        return True
    return False


def compact_graph(graph, keys: Sequence, name: str) -> dict | None:
    """One task per key of ``keys`` over a :class:`Recipe` of ``graph``; None where it cannot be built.

    The caller has found that the regions share no work (:func:`shares_work`).

    Parameters
    ----------
    graph
        A :class:`dask.highlevelgraph.HighLevelGraph`, blockwise-optimised and culled to ``keys``.
    keys
        The keys of the regions (tuples ``(layer, *block)``).
    name
        Prefix of the recipe's key.

    Returns
    -------
    dict or None
        A low-level graph: the literal data of ``graph`` (each its own :class:`dask._task_spec.DataNode`),
        the recipe (a ``DataNode`` under ``<name>-recipe-<uuid>``) and a task per region, which depends on
        the recipe and on all the data (which of it a region reads is only known once its tasks are made;
        each worker fetches a piece of data once).
    """
    from dask._task_spec import DataNode, Task, TaskRef

    if not keys:
        return None
    data = _data(graph)
    try:
        recipe = _recipe(graph)
    except Exception:
        return None
    names = tuple(sorted(data, key=str))
    refs = [TaskRef(k) for k in names]
    rkey = f"{name}-recipe-{uuid.uuid4().hex}"
    dsk: dict = dict(data)
    dsk[rkey] = DataNode(rkey, recipe)
    recipe_ref = TaskRef(rkey)
    for key in keys:
        dsk[key] = Task(key, run_region, recipe_ref, key, names, *refs)
    return dsk
