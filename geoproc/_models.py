"""Learned models for :func:`geoproc.predict`: serialised once, loaded once per process, run on the best device.

A model (TorchScript, a PyTorch module or a state dict with its class, ONNX) is
turned into bytes once on the client (:func:`payload`); those bytes are one key
of the task graph, so the scheduler ships them to each worker once. A worker
turns them into a runner the first time a task needs them and keeps it in a
small per-process cache keyed by the bytes' token, so later tasks on that
worker (any thread) reuse the loaded model, on the GPU when there is one.

torch and onnxruntime are imported here only, and only when a model of their
kind is used (the ``ml`` extra).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["ModelPayload", "payload", "runner", "local_device", "loads"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.jit.save and torch.save write zip archives; ONNX is protobuf
_MAX_RUNNERS = 4
_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_lock = threading.Lock()
_loads = 0


@dataclass(frozen=True)
class ModelPayload:
    """A model as bytes, ready to ship.

    Attributes
    ----------
    kind
        ``"torchscript"``, ``"torch"`` (a pickled module, or a class with its state dict) or ``"onnx"``.
    data
        The serialised model.
    token
        SHA-1 of ``data``: the per-process cache key.
    """

    kind: str
    data: bytes
    token: str


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise InvalidArgumentError(
            f"{module} is not installed; install geoproc's ml extra (pip install 'geoproc[ml]')"
        ) from None


def _make(kind: str, data: bytes) -> ModelPayload:
    return ModelPayload(kind, data, hashlib.sha1(data).hexdigest())


def payload(model: Any) -> ModelPayload:
    """Serialise ``model`` once: a path or bytes (ONNX or TorchScript), an ``onnx.ModelProto``,
    a ``torch.jit.ScriptModule``, a ``torch.nn.Module``, or ``(cls, state_dict[, kwargs])``."""
    if isinstance(model, ModelPayload):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise InvalidArgumentError(f"model file {path!r} does not exist; pass an .onnx or TorchScript .pt file")
        with open(path, "rb") as fh:
            model = fh.read()
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        if data[:4] == _ZIP_MAGIC:
            return _make("torchscript", data)
        return _make("onnx", data)
    if hasattr(model, "SerializeToString") and hasattr(model, "graph"):  # onnx.ModelProto
        return _make("onnx", model.SerializeToString())
    if isinstance(model, tuple) and len(model) in (2, 3) and isinstance(model[0], type):
        torch = _need("torch")
        cls, state = model[0], model[1]
        kwargs = dict(model[2]) if len(model) == 3 else {}
        buf = io.BytesIO()
        torch.save({"cls": cls, "kwargs": kwargs, "state": state}, buf)
        return _make("torch", buf.getvalue())
    torch = _need("torch") if type(model).__module__.startswith("torch") or hasattr(model, "state_dict") else None
    if torch is not None and isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()
        with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; its models still run
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(model, buf)
        return _make("torchscript", buf.getvalue())
    if torch is not None and isinstance(model, torch.nn.Module):
        buf = io.BytesIO()
        torch.save({"cls": type(model), "module": model}, buf)
        return _make("torch", buf.getvalue())
    raise InvalidArgumentError(
        f"cannot run a {type(model).__name__} model; pass a TorchScript module or file, a torch.nn.Module, "
        "(cls, state_dict[, kwargs]), or an ONNX model, file or bytes"
    )


def local_device(kind: str, device: str = "auto") -> str:
    """The device this process runs a ``kind`` model on: ``"cuda:0"`` when there is a GPU (and ``device`` allows it),
    else ``"cpu"``."""
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidArgumentError(f"device={device!r}; pass 'auto', 'cpu' or 'cuda'")
    if device == "cpu":
        return "cpu"
    if kind == "onnx":
        ort = _need("onnxruntime")
        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    else:
        torch = _need("torch")
        gpu = torch.cuda.is_available()
    if not gpu and device == "cuda":
        raise InvalidArgumentError("device='cuda' but this process sees no GPU; pass device='auto' or 'cpu'")
    return "cuda:0" if gpu else "cpu"


class _TorchRunner:
    def __init__(self, p: ModelPayload, device: str):
        import torch

        self.torch = torch
        self.device = device
        buf = io.BytesIO(p.data)
        if p.kind == "torchscript":
            with warnings.catch_warnings():  # deprecated since torch 2.9, still supported
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(buf, map_location=device)
        else:
            saved = torch.load(buf, map_location=device, weights_only=False)
            if "module" in saved:
                model = saved["module"]
            else:
                model = saved["cls"](**saved["kwargs"])
                model.load_state_dict(saved["state"])
        self.model = model.to(device).eval()
        self.fixed_batch = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return out.float().cpu().numpy()


class _OnnxRunner:
    def __init__(self, p: ModelPayload, device: str):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": 0}))
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(p.data, sess_options=options, providers=providers)
        used = self.session.get_providers()[0]
        self.device = "cuda:0" if used == "CUDAExecutionProvider" else "cpu"
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        batch = inp.shape[0] if inp.shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_batch is None or x.shape[0] == self.fixed_batch:
            return np.asarray(self.session.run(None, {self.name: x})[0], dtype=np.float32)
        b = self.fixed_batch  # a model exported for one batch size: run it that many tiles at a time, padded
        outs = []
        for i in range(0, x.shape[0], b):
            part = x[i : i + b]
            n = part.shape[0]
            if n < b:
                part = np.concatenate([part, np.zeros((b - n, *part.shape[1:]), np.float32)])
            outs.append(np.asarray(self.session.run(None, {self.name: part})[0], dtype=np.float32)[:n])
        return np.concatenate(outs)


def runner(p: ModelPayload, device: str = "auto"):
    """The loaded model for ``p`` in this process (loaded on first use, then cached by token): a callable
    ``(N, C, H, W) float32 -> (N, K, H, W) float32`` with a ``device`` attribute."""
    global _loads
    key = (p.token, device)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        dev = local_device(p.kind, device)
        made = _OnnxRunner(p, dev) if p.kind == "onnx" else _TorchRunner(p, dev)
        _loads += 1
        _cache[key] = made
        while len(_cache) > _MAX_RUNNERS:
            _cache.popitem(last=False)
        return made


def loads() -> int:
    """How many times this process has loaded a model (cache misses of :func:`runner`)."""
    return _loads
