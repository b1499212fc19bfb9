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

This is only right where regions share no work: a task needed by two regions would be run twice.
:func:`compact_graph` checks that on a sample of regions (neighbours along every axis, and the other
variables at the same block) and returns None otherwise, so the caller builds the usual fused graph.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from dask.blockwise import BlockwiseDep

__all__ = ["Recipe", "compact_graph", "run_region"]

#: Most pieces of literal data (tables of assets, arrays) a compact graph passes to every region's task
MAX_SHARED = 64


def _is_data(layer) -> bool:
    from dask._task_spec import DataNode
    from dask.highlevelgraph import MaterializedLayer

    return isinstance(layer, MaterializedLayer) and all(isinstance(v, DataNode) for v in layer.mapping.values())


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
        self.values = {b: dep[b] for b in blocks}

    @property
    def produces_keys(self) -> bool:
        return self._keys

    def __getitem__(self, idx):
        return self.values[idx]

    def get(self, idx, default=None):  # dask falls back to ``default`` on a KeyError: never silently here
        return self.values[idx]


def _restricted(layer):
    """A culled blockwise layer whose inputs made of values (not tasks) keep only the blocks it uses: a
    continental load's chunk index, or ``map_blocks``' ``block_info`` of every block, would otherwise
    travel whole with every tile. Inputs that can restrict themselves (``restricted(blocks)``; ``blocks``
    None where the layer is not culled) do."""
    from dask.blockwise import Blockwise

    if not layer.io_deps:
        return layer
    deps = dict(layer.io_deps)
    for arg, ind in layer.indices:
        dep = deps.get(arg) if ind is not None and isinstance(arg, str) else None
        if dep is None or not (layer.output_blocks or hasattr(dep, "restricted")):
            continue
        blocks = _dep_blocks(layer, arg, ind) if layer.output_blocks else None  # None: all of them
        deps[arg] = dep.restricted(blocks) if hasattr(dep, "restricted") else _Subset(dep, blocks)
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
            return len(idx) == len(dims) and all(type(i) is int and 0 <= i < n for i, n in zip(idx, dims))
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

    Each intermediate result is dropped as soon as its last user has run, as the scheduler would.
    """
    dsk = recipe.tasks_of(key, names)
    order: list = []
    seen: set = set()
    stack: list = [(key, False)]
    while stack:  # depth-first post-order: each task after its dependencies
        k, ready = stack.pop()
        if ready:
            order.append(k)
            continue
        if k in seen or k not in dsk:
            continue
        seen.add(k)
        stack.append((k, True))
        stack.extend((d, False) for d in dsk[k].dependencies if d not in seen)
    users: dict = {}
    for k in order:
        for d in dsk[k].dependencies:
            users[d] = users.get(d, 0) + 1
    results = dict(zip(names, values))
    for k in order:
        node = dsk[k]
        results[k] = node({d: results[d] for d in node.dependencies})
        for d in node.dependencies:
            users[d] -= 1
            if users[d] == 0 and d in dsk:
                del results[d]
    return results[key]


def _probes(keys: Sequence, limit: int = 6) -> list:
    """A sample of ``keys``: a few spread over them, each with its neighbours along every axis and the keys of
    other layers at the same block, where those are among ``keys``."""
    present = set(keys)
    names = sorted({k[0] for k in keys}, key=str)
    picks = [keys[i] for i in sorted({round(j * (len(keys) - 1) / max(limit - 1, 1)) for j in range(limit)})]
    out: list = []
    for k in picks:
        idx = k[1:]
        around = [(name, *idx) for name in names]
        for axis in range(len(idx)):
            for step in (-1, 1):
                moved = list(idx)
                moved[axis] += step
                around.append((k[0], *moved))
        out.extend(a for a in around if a in present and a not in out)
    return out


def compact_graph(graph, keys: Sequence, name: str) -> dict | None:
    """One task per key of ``keys`` over a :class:`Recipe` of ``graph``; None where regions share work.

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
        A low-level graph: the literal data of ``graph`` (as its own :class:`dask._task_spec.DataNode`),
        the recipe (a ``DataNode`` under ``<name>-recipe-<uuid>``) and a task per region.
    """
    from dask._task_spec import DataNode, Task, TaskRef

    if not keys:
        return None
    data = {k: v for layer in graph.layers.values() if _is_data(layer) for k, v in layer.mapping.items()}
    recipe = Recipe({n: layer for n, layer in graph.layers.items() if not _is_data(layer)})
    seen: dict = {}
    try:
        for probe in _probes(list(keys)):
            for k, node in recipe.tasks_of(probe, data).items():
                if seen.setdefault(k, probe) != probe:
                    return None  # two regions need the same task
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a layer this does not know how to take apart: the usual graph
    if len(data) > MAX_SHARED:
        return None
    names = tuple(sorted(data, key=str))  # all of them: a region the sample missed may need another
    rkey = f"{name}-recipe-{uuid.uuid4().hex}"
    dsk: dict = {k: data[k] for k in names}
    dsk[rkey] = DataNode(rkey, recipe)
    refs = [TaskRef(k) for k in names]
    recipe_ref = TaskRef(rkey)
    for key in keys:
        dsk[key] = Task(key, run_region, recipe_ref, key, names, *refs)
    return dsk
