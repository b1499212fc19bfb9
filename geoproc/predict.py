"""Learned models on every chunk: tiles with overlap, blended, so that a chunked result equals the whole-array one.

The tiles are laid on the WHOLE array (starts ``0, s, 2s, ...`` with stride
``s = tile - overlap``, the last one flush with the far edge), never on a
chunk. A chunk's task reads the window its tiles need (its core plus up to one
tile around it), runs the model on those tiles in batches and blends them with
weights that fall off over ``overlap`` pixels at each tile edge, for the
pixels of its core only. Every output pixel thus gets the same tiles, the same
weights and the same order of sums whatever the chunking: chunked equals whole
(up to the floating-point differences a model may show between batch sizes).

The model is serialised once (:mod:`geoproc._models`) and is one key of the
task graph; each worker loads it once into a per-process cache and runs it on
its GPU when it has one. (scikit-learn models per pixel: :func:`geoproc.classify`.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ._blocks import is_dask
from ._models import ModelPayload, local_device, payload, runner
from .errors import InvalidArgumentError, listing

__all__ = ["predict", "tile_starts", "blend_weights"]

_CHANNEL_DIMS = ("band", "feature", "variable")
_OUTPUTS = ("label", "probability", "both")


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles along an axis of ``n`` pixels: every ``tile - overlap``, the last flush with the end.

    Examples
    --------
    >>> tile_starts(300, 128, 32)
    [0, 96, 172]
    >>> tile_starts(50, 128, 32)
    [0]
    """
    if n <= tile:
        return [0]
    return [*range(0, n - tile, tile - overlap), n - tile]


def blend_weights(tile: int, overlap: int, blend: str = "cosine") -> np.ndarray:
    """The 2-D weight of each pixel of a tile: 1 inside, falling off over ``overlap`` pixels to each edge, never 0.

    Examples
    --------
    >>> blend_weights(6, 2, "linear")[0].round(2)
    array([0.06, 0.19, 0.25, 0.25, 0.19, 0.06], dtype=float32)
    """
    if blend not in ("cosine", "linear", "none"):
        raise InvalidArgumentError(f"blend={blend!r}; pass 'cosine', 'linear' or 'none'")
    i = np.arange(tile, dtype=np.float64)
    if blend == "none" or overlap == 0:
        w = np.ones(tile)
    else:
        ramp = np.minimum(1.0, np.minimum(i + 0.5, tile - i - 0.5) / overlap)
        w = ramp if blend == "linear" else 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.outer(w, w).astype(np.float32)


def _run_tiles(x: np.ndarray, origin: tuple[int, int], core: tuple[int, int, int, int], shape: tuple[int, int],
               p: ModelPayload, device: str, tile: int, overlap: int, batch_size: int, blend: str,
               activation: str) -> np.ndarray:
    """Blended probabilities ``(L, K, h, w)`` of the ``core`` ``(y0, y1, x0, x1)`` of the whole array, from its
    window ``x`` ``(L, C, wh, ww)`` (normalised, NaN as 0) whose first pixel is ``origin`` of the whole array."""
    run = runner(p, device)
    y0, y1, x0, x1 = core
    oy, ox = origin
    ys = [t for t in tile_starts(shape[0], tile, overlap) if t < y1 and t + tile > y0]
    xs = [t for t in tile_starts(shape[1], tile, overlap) if t < x1 and t + tile > x0]
    weights = blend_weights(tile, overlap, blend)
    n_lead = x.shape[0]
    acc = wsum = None
    jobs = [(lead, ty, tx) for lead in range(n_lead) for ty in ys for tx in xs]
    for b in range(0, len(jobs), batch_size):
        batch = jobs[b : b + batch_size]
        inputs = np.zeros((len(batch), x.shape[1], tile, tile), np.float32)  # zero (= the mean) past the array
        for k, (lead, ty, tx) in enumerate(batch):
            win = x[lead, :, ty - oy : ty - oy + tile, tx - ox : tx - ox + tile]
            inputs[k, :, : win.shape[1], : win.shape[2]] = win
        out = _activate(run(inputs), activation)
        if acc is None:
            acc = np.zeros((n_lead, out.shape[1], y1 - y0, x1 - x0), np.float32)
            wsum = np.zeros((y1 - y0, x1 - x0), np.float32)
        for k, (lead, ty, tx) in enumerate(batch):
            a0, a1 = max(ty, y0), min(ty + tile, y1)
            b0, b1 = max(tx, x0), min(tx + tile, x1)
            w = weights[a0 - ty : a1 - ty, b0 - tx : b1 - tx]
            acc[lead, :, a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] += out[k, :, a0 - ty : a1 - ty, b0 - tx : b1 - tx] * w
            if lead == 0:
                wsum[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] += w
    return acc / wsum


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def _chunk(window: np.ndarray, mean: np.ndarray, std: np.ndarray, origin, core, shape, p, device, tile, overlap,
           batch_size, blend, activation) -> np.ndarray:
    """One chunk's task: normalise its window, run and blend its tiles, NaN where an input band is NaN."""
    x = (np.asarray(window, dtype=np.float32) - mean[:, None, None]) / std[:, None, None]
    bad = np.isnan(x).any(axis=1)
    x[np.isnan(x)] = 0.0
    prob = _run_tiles(x, origin, core, shape, p, device, tile, overlap, batch_size, blend, activation)
    y0, y1, x0, x1 = core
    oy, ox = origin
    prob[np.broadcast_to(bad[:, None, y0 - oy : y1 - oy, x0 - ox : x1 - ox], prob.shape)] = np.nan
    return prob


def _window(start: int, stop: int, n: int, tile: int, overlap: int) -> tuple[int, int]:
    """The input range the tiles over ``[start, stop)`` read."""
    ts = [t for t in tile_starts(n, tile, overlap) if t < stop and t + tile > start]
    return ts[0], min(ts[-1] + tile, n)


def _probabilities(arr, mean, std, p, device, tile, overlap, batch_size, blend, activation, n_classes):
    """``(lead..., C, y, x)`` -> float32 probabilities ``(lead..., K, y, x)``, lazy if ``arr`` is."""
    shape = arr.shape[-2:]
    args = (p, device, tile, overlap, batch_size, blend, activation)
    lead_shape = arr.shape[:-3]
    if not is_dask(arr):
        flat = np.asarray(arr).reshape(-1, *arr.shape[-3:])
        out = _chunk(flat, mean, std, (0, 0), (0, shape[0], 0, shape[1]), shape, *args)
        return out.reshape(*lead_shape, n_classes, *shape)
    arr = arr.rechunk({arr.ndim - 3: -1})
    key = dask.delayed(p, name=f"model-{p.kind}-{p.token}")  # the bytes, one key, shipped to each worker once
    lead_chunks = arr.chunks[:-3]

    def build(level: int, index: tuple) -> list:
        if level < len(lead_chunks):
            return [build(level + 1, (*index, i)) for i in range(len(lead_chunks[level]))]
        lead_sl = tuple(slice(sum(c[:i]), sum(c[: i + 1])) for c, i in zip(lead_chunks, index))
        lead_n = tuple(c[i] for c, i in zip(lead_chunks, index))
        rows = []
        ybounds = np.cumsum((0, *arr.chunks[-2]))
        xbounds = np.cumsum((0, *arr.chunks[-1]))
        for y0, y1 in zip(ybounds[:-1], ybounds[1:]):
            row = []
            wy = _window(y0, y1, shape[0], tile, overlap)
            for x0, x1 in zip(xbounds[:-1], xbounds[1:]):
                wx = _window(x0, x1, shape[1], tile, overlap)
                window = arr[(*lead_sl, slice(None), slice(*wy), slice(*wx))]
                window = window.reshape(-1, *window.shape[-3:])
                task = dask.delayed(_chunk, pure=True)(
                    window, mean, std, (wy[0], wx[0]), (int(y0), int(y1), int(x0), int(x1)), shape, key, *args[1:]
                )
                out = da.from_delayed(task, (int(np.prod(lead_n)), n_classes, y1 - y0, x1 - x0), dtype=np.float32)
                row.append(out.reshape(*lead_n, n_classes, y1 - y0, x1 - x0))
            rows.append(row)
        return [rows]  # one block along the class axis

    return da.block(build(0, ()))


def _stats(stack: xr.DataArray, dim: str, stats) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    if stats is None:
        n = stack.sizes[dim]
        return stack, np.zeros(n, np.float32), np.ones(n, np.float32)
    if not isinstance(stats, Mapping) or not stats:
        raise InvalidArgumentError("stats must map each input band to its (mean, std), in the model's channel order")
    names = list(stats)
    have = [str(v) for v in stack[dim].values] if dim in stack.coords else []
    missing = [n for n in names if str(n) not in have]
    if missing:
        raise InvalidArgumentError(
            f"stats names {listing(missing)} but {dim!r} holds {listing(have)}; declare the bands the data has"
        )
    mean, std = (np.float32([float(stats[n][k]) for n in names]) for k in (0, 1))
    if not (std > 0).all():
        raise InvalidArgumentError("every std in stats must be > 0")
    return stack.sel({dim: names}), mean, std


def _which_device(kind: str, device: str, lazy: bool) -> str:
    """The device(s) that will run: the distributed workers' when a client is active, else this process's."""
    if lazy and "distributed" in sys.modules:
        from distributed import default_client

        try:
            client = default_client()
        except ValueError:
            client = None
        if client is not None and dask.config.get("scheduler", None) in (None, "dask.distributed", "distributed"):
            found = client.run(local_device, kind, device)
            if found:
                return ", ".join(sorted(set(found.values())))
    return local_device(kind, device)


def predict(
    data: xr.DataArray | xr.Dataset,
    model: Any,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 8,
    stats: Mapping[str, tuple[float, float]] | None = None,
    dim: str | None = None,
    output: str = "label",
    classes=None,
    activation: str = "auto",
    blend: str = "cosine",
    device: str = "auto",
    nodata: int = -1,
) -> xr.DataArray | xr.Dataset:
    """Run a learned segmentation model (PyTorch or ONNX) over every chunk, in blended overlapping tiles.

    Parameters
    ----------
    data
        Bands along ``dim`` and ``y``, ``x`` last (other dims, e.g. ``time``, are run one by one);
        a Dataset's variables are taken as the bands. Lazy (dask) data gives a lazy result.
    model
        A TorchScript module or file, a ``torch.nn.Module`` (its class importable on the workers),
        ``(cls, state_dict)`` or ``(cls, state_dict, kwargs)``, or an ONNX model (``onnx.ModelProto``,
        ``.onnx`` file or bytes). It takes ``(N, C, tile, tile)`` float32 and returns ``(N, K, tile, tile)``
        scores. It is serialised once and is one key of the graph: each worker receives it once and
        loads it once.
    tile, overlap
        Tile size and the overlap of neighbouring tiles, in pixels; tiles are laid on the whole array,
        so the result does not depend on the chunking. Chunks need not be multiples of ``tile``.
    batch_size
        Tiles per model call.
    stats
        The declared ``{band: (mean, std)}`` the model was trained with, in its channel order: the bands
        are selected in that order and normalised as ``(x - mean) / std``. ``None``: all bands as they are.
    dim
        The band dim (default the first of ``band``, ``feature``, ``variable``).
    output
        ``"label"`` (the class map), ``"probability"`` (class probabilities) or ``"both"`` (a Dataset).
    classes
        The label of each of the model's K outputs (default ``0..K-1``).
    activation
        Turns scores into probabilities before blending: ``"softmax"``, ``"sigmoid"``, ``"none"`` (the model
        returns probabilities), or ``"auto"`` (softmax for K > 1, sigmoid for K = 1).
    blend
        Tile weights: ``"cosine"``, ``"linear"`` or ``"none"`` (see :func:`blend_weights`).
    device
        ``"auto"``: a worker's GPU when it has one, else its CPU (the same code path); or ``"cpu"``, ``"cuda"``.
    nodata
        Label where any input band is NaN (probabilities are NaN there).

    Returns
    -------
    xarray.DataArray or Dataset
        ``label`` (int32, ``data``'s dims less ``dim``) and/or ``probability`` (float32, dim ``class`` first),
        with ``data``'s coords and CRS. ``attrs["device"]`` says which device runs the model (the workers'
        when a distributed client is active).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Conv2d(2, 3, 3, padding=1)  # any segmentation network: (N, 2, H, W) -> (N, 3, H, W)
    >>> data = xr.DataArray(np.random.default_rng(0).random((2, 100, 90), np.float32), dims=("band", "y", "x"),
    ...                     coords={"band": ["red", "nir"]})
    >>> out = predict(data.chunk({"y": 45, "x": 50}), net, tile=64, overlap=16, output="both",
    ...               stats={"red": (0.5, 0.3), "nir": (0.5, 0.3)})
    >>> out.label.dims, out.probability.shape, out.attrs["device"]
    (('y', 'x'), (3, 100, 90), 'cpu')
    >>> whole = predict(data, net, tile=64, overlap=16, stats={"red": (0.5, 0.3), "nir": (0.5, 0.3)})
    >>> bool((whole == out.label).all())
    True
    """
    if isinstance(data, xr.Dataset):
        dim = dim or "band"
        data = data.to_dataarray(dim=dim)
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(f"data must be an xarray DataArray or Dataset, got {type(data).__name__}")
    dim = dim or next((d for d in _CHANNEL_DIMS if d in data.dims), None)
    if dim is None or dim not in data.dims:
        raise InvalidArgumentError(f"no band dim among {data.dims}; name it with dim=...")
    if "y" not in data.dims or "x" not in data.dims:
        raise InvalidArgumentError(f"data needs y and x dims, has {data.dims}")
    if not (isinstance(tile, int) and tile >= 8) or not (0 <= overlap < tile // 2 + 1) or batch_size < 1:
        raise InvalidArgumentError(
            f"tile={tile}, overlap={overlap}, batch_size={batch_size}: pass tile >= 8, 0 <= overlap <= tile/2, "
            "batch_size >= 1"
        )
    if output not in _OUTPUTS:
        raise InvalidArgumentError(f"output={output!r}; pass one of {_OUTPUTS}")
    if activation not in ("auto", "softmax", "sigmoid", "none"):
        raise InvalidArgumentError(f"activation={activation!r}; pass 'auto', 'softmax', 'sigmoid' or 'none'")
    blend_weights(tile, overlap, blend)  # checks blend
    stack, mean, std = _stats(data, dim, stats)
    stack = stack.transpose(..., dim, "y", "x")
    p = payload(model)
    try:  # K, and a clear error now rather than in every task
        probe = runner(p, "cpu")(np.zeros((1, stack.sizes[dim], tile, tile), np.float32))
    except Exception as err:
        raise InvalidArgumentError(
            f"the model fails on a (1, {stack.sizes[dim]}, {tile}, {tile}) input ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); pass the bands it was trained "
            "on (stats=...) and a tile size it accepts"
        ) from None
    if probe.ndim != 4 or probe.shape[2:] != (tile, tile):
        raise InvalidArgumentError(
            f"the model maps (1, {stack.sizes[dim]}, {tile}, {tile}) to {probe.shape}; it must return "
            "(N, K, tile, tile) scores (a segmentation model with 'same' padding)"
        )
    k = probe.shape[1]
    if activation == "auto":
        activation = "softmax" if k > 1 else "sigmoid"
    lazy = is_dask(stack.data)
    ran_on = _which_device(p.kind, device, lazy)
    prob = _probabilities(stack.data, mean, std, p, device, tile, overlap, batch_size, blend, activation, k)

    out_dims = tuple(d for d in stack.dims if d != dim)
    coords = {n: c for n, c in stack.coords.items() if dim not in c.dims}
    n_labels = 2 if k == 1 else k  # one sigmoid output: two classes, the second where p > 0.5
    classes = np.arange(n_labels) if classes is None else np.asarray(classes)
    if classes.shape != (n_labels,):
        raise InvalidArgumentError(f"classes has {classes.size} values for a model with {k} outputs; pass {n_labels}")
    attrs = {"model": p.kind, "device": ran_on, "tile": tile, "overlap": overlap, "blend": blend}
    nd = prob.ndim
    result = {}
    if output in ("label", "both"):
        labels = _labels(prob, classes, nodata, nd - 3)
        result["label"] = xr.DataArray(labels, dims=out_dims, coords=coords, name="label",
                                       attrs={**attrs, "long_name": "class label", "nodata": nodata})
    if output in ("probability", "both"):
        moved = prob.transpose(nd - 3, *(i for i in range(nd) if i != nd - 3))
        pcoords = {**coords, "class": classes[-k:] if k == 1 else classes}
        result["probability"] = xr.DataArray(moved, dims=("class", *out_dims), coords=pcoords, name="probability",
                                             attrs={**attrs, "long_name": "class probability", "nodata": np.nan})
    if output != "both":
        return result[output]
    return xr.Dataset(result, attrs=attrs)


def _label_block(classes: np.ndarray, nodata: int, axis: int, prob: np.ndarray) -> np.ndarray:
    bad = np.isnan(prob).any(axis=axis)
    if prob.shape[axis] == 1:
        idx = (np.take(prob, 0, axis=axis) > 0.5).astype(np.intp)
    else:
        idx = np.nanargmax(np.where(np.isnan(prob), -1.0, prob), axis=axis)
    labels = classes[idx].astype(np.int32)
    labels[bad] = nodata
    return labels


def _labels(prob, classes: np.ndarray, nodata: int, axis: int):
    if not is_dask(prob):
        return _label_block(classes, nodata, axis, prob)
    return da.map_blocks(_label_block, classes, nodata, axis, prob, drop_axis=axis, dtype=np.int32)
