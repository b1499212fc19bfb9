"""How a write is cut into tiles: rectangles of whole chunk positions, sized so that a tile's graph fits a
quarter of the task budget (:func:`geoproc.run.write_tiled`)."""

from __future__ import annotations

import math

from dask._task_spec import DataNode

from ..errors import InvalidArgumentError
from ..io._regions import Block, Write


def _spatial_axes(w: Write, name: str) -> tuple[int, int]:
    dims = w.ds[name].dims
    if "y" not in dims or "x" not in dims:
        raise InvalidArgumentError(f"variable {name!r} has dims {dims}: tiles cut along 'y' and 'x', which it lacks")
    return dims.index("y"), dims.index("x")


def _spatial_chunk(w: Write) -> tuple[int, int]:
    name = next(iter(w.ds.data_vars))
    ay, ax = _spatial_axes(w, name)
    chunks = w.ds[name].data.chunks
    return chunks[ay][0], chunks[ax][0]


def _tiling(w: Write, tile, max_tasks: int) -> tuple[int, int, dict[tuple[int, int], list[Block]]]:
    """Tile size in chunks, and the blocks of every tile (row-major)."""
    axes = {name: _spatial_axes(w, name) for name in w.ds.data_vars}  # once: each look-up builds a DataArray
    reference = None
    for name, var in w.ds.data_vars.items():
        ay, ax = axes[name]
        spatial = (var.data.chunks[ay], var.data.chunks[ax])
        if reference is not None and spatial != reference:
            raise InvalidArgumentError(
                f"variable {name!r} is chunked otherwise along y and x than the others; tiles need one spatial "
                "chunking: rechunk the result first"
            )
        reference = spatial
    if tile is None:
        # the tasks of one chunk position, measured on the first 2 x 2 (a compact graph has one per region;
        # where neighbours share work, the fused graph has several), so that a tile fits a quarter of the budget
        first = _blocks_at(w, axes, 2, 2)
        positions = max(1, len({(b.index[axes[b.variable][0]], b.index[axes[b.variable][1]]) for b in first}))
        dsk = w.graph(first)
        literal = sum(1 for node in dsk.values() if isinstance(node, DataNode))  # tables, a recipe: once a tile
        per_position = max(1, math.ceil((len(dsk) - literal) / positions))
        side = max(1, math.isqrt(max(1, max_tasks // 4 - literal) // per_position))
        ty = tx = side
    elif isinstance(tile, int) and not isinstance(tile, bool):
        ty = tx = tile
    else:
        ty, tx = (int(v) for v in tile)
    if ty < 1 or tx < 1:
        raise InvalidArgumentError(f"tile must be a number of chunks >= 1 along y and x, got {tile!r}")
    tiles: dict[tuple[int, int], list[Block]] = {}
    for b in w.blocks():
        ay, ax = axes[b.variable]
        tiles.setdefault((b.index[ay] // ty, b.index[ax] // tx), []).append(b)
    return ty, tx, dict(sorted(tiles.items()))


def _blocks_at(w: Write, axes: dict, ny: int, nx: int) -> list[Block]:
    """The regions of the first ``ny`` x ``nx`` chunk positions, all variables and other axes."""
    out = []
    for b in w.blocks():
        ay, ax = axes[b.variable]
        if b.index[ay] < ny and b.index[ax] < nx:
            out.append(b)
    return out


def _extent(tiles) -> str:
    rows = 1 + max(p[0] for p in tiles)
    cols = 1 + max(p[1] for p in tiles)
    return f"{rows} x {cols} tiles"
