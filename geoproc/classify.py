"""Per-pixel classification: apply a fitted scikit-learn-compatible model to a stack of features.

The model is put in the task graph ONCE, as a single key that every chunk's
task depends on: the scheduler ships it to each worker once (pickled once on
submission, then copied worker to worker), however many chunks there are,
rather than once per task as a model captured in every task would be.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from ._blocks import is_dask
from .errors import InvalidArgumentError

__all__ = ["classify", "predict_array", "predict_proba_array", "shipped_once", "FEATURE_DIMS"]

#: Dims taken as the feature dim, in this order, when ``dim`` is not given.
FEATURE_DIMS = ("feature", "band", "variable")


def _rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``block`` ``(..., n_features)`` as rows, and which rows hold no NaN."""
    flat = block.reshape(-1, block.shape[-1])
    if flat.dtype.kind == "f":
        valid = ~np.isnan(flat).any(axis=1)
    else:
        valid = np.ones(flat.shape[0], dtype=bool)
    return flat, valid


def _predict_block(nodata: Any, dtype: np.dtype, block: np.ndarray, model: Any) -> np.ndarray:
    """Class labels of one chunk (module-level: tasks pickle it by reference)."""
    flat, valid = _rows(block)
    out = np.full(flat.shape[0], nodata, dtype=dtype)
    if valid.any():
        out[valid] = model.predict(flat[valid])
    return out.reshape(block.shape[:-1])


def _proba_block(n_classes: int, block: np.ndarray, model: Any) -> np.ndarray:
    """Class probabilities of one chunk, class axis last; NaN rows where a feature is NaN."""
    flat, valid = _rows(block)
    out = np.full((flat.shape[0], n_classes), np.nan, dtype=np.float32)
    if valid.any():
        out[valid] = model.predict_proba(flat[valid])
    return out.reshape((*block.shape[:-1], n_classes))


def _label_dtype(model: Any, n_features: int, dtype) -> np.dtype:
    classes = getattr(model, "classes_", None)
    if classes is not None:
        sample = np.asarray(classes)
    else:  # no classes_: ask the model what it returns for one row
        sample = np.asarray(model.predict(np.zeros((1, n_features), dtype=dtype)))
    kind = sample.dtype.kind
    if kind in "iub":
        if sample.size and (sample.min() < np.iinfo(np.int32).min or sample.max() > np.iinfo(np.int32).max):
            return np.dtype(np.int64)
        return np.dtype(np.int32)
    if kind == "f":
        return np.dtype(np.float32) if sample.dtype.itemsize <= 4 else np.dtype(np.float64)
    raise InvalidArgumentError(
        f"the model predicts {sample.dtype} labels; fit it on integer class codes "
        "(e.g. sklearn.preprocessing.LabelEncoder) so that pixels can hold them"
    )


def shipped_once(model: Any) -> Delayed:
    """``model`` as a single graph key (a :class:`dask.delayed.Delayed`), not tokenised (no pickling here)."""
    if isinstance(model, Delayed):
        return model
    return dask.delayed(model, name=f"model-{type(model).__name__}-{uuid.uuid4().hex}")


def predict_array(arr, model: Any, *, nodata: Any = None, dtype=None, shipped: Delayed | None = None):
    """The dask/numpy layer: labels of ``arr`` ``(..., n_features)`` (feature axis last).

    Returns ``arr.shape[:-1]`` labels, ``nodata`` where any feature is NaN.
    ``shipped`` is the model already placed in a graph by :func:`shipped_once`
    (to share one key between several outputs); by default a new key.
    """
    n_features = arr.shape[-1]
    dtype = np.dtype(dtype) if dtype is not None else _label_dtype(model, n_features, arr.dtype)
    if nodata is None:
        nodata = np.nan if dtype.kind == "f" else -1
    classes = getattr(model, "classes_", None)
    if classes is not None and not (isinstance(nodata, float) and np.isnan(nodata)) and np.isin(nodata, classes):
        raise InvalidArgumentError(f"nodata={nodata} is one of the model's classes; pass another nodata=...")
    if dtype.kind in "iu" and not (np.iinfo(dtype).min <= nodata <= np.iinfo(dtype).max):
        raise InvalidArgumentError(f"nodata={nodata} does not fit the labels' dtype {dtype}; pass nodata=-1")
    if not is_dask(arr):
        return _predict_block(nodata, dtype, np.asarray(arr), model)
    arr = arr.rechunk({arr.ndim - 1: -1})
    func = partial(_predict_block, nodata, dtype)
    key = shipped if shipped is not None else shipped_once(model)
    return da.map_blocks(func, arr, key, drop_axis=arr.ndim - 1, dtype=dtype)


def predict_proba_array(arr, model: Any, *, shipped: Delayed | None = None):
    """The dask/numpy layer: float32 class probabilities ``(..., n_classes)`` of ``arr`` ``(..., n_features)``."""
    n_classes = len(model.classes_)
    if not is_dask(arr):
        return _proba_block(n_classes, np.asarray(arr), model)
    arr = arr.rechunk({arr.ndim - 1: -1})
    func = partial(_proba_block, n_classes)
    chunks = (*arr.chunks[:-1], (n_classes,))
    key = shipped if shipped is not None else shipped_once(model)
    return da.map_blocks(func, arr, key, chunks=chunks, dtype=np.float32)


def _feature_stack(features: xr.DataArray | xr.Dataset, dim: str | None) -> tuple[xr.DataArray, str]:
    if isinstance(features, xr.Dataset):
        if not features.data_vars:
            raise InvalidArgumentError("the Dataset has no variables to use as features")
        dim = dim or "feature"
        return features.to_dataarray(dim=dim), dim
    if not isinstance(features, xr.DataArray):
        raise InvalidArgumentError(f"features must be an xarray DataArray or Dataset, got {type(features).__name__}")
    if dim is None:
        dim = next((d for d in FEATURE_DIMS if d in features.dims), None)
        if dim is None:
            raise InvalidArgumentError(
                f"no feature dim among {features.dims}; name it with dim=... (e.g. dim='time' for a time series)"
            )
    elif dim not in features.dims:
        raise InvalidArgumentError(f"features has no dim {dim!r} (dims: {features.dims}); pass dim=...")
    return features, dim


def classify(
    features: xr.DataArray | xr.Dataset,
    model: Any,
    *,
    dim: str | None = None,
    proba: bool = False,
    nodata: Any = None,
) -> xr.DataArray | xr.Dataset:
    """Classify every pixel with a fitted model, chunk by chunk.

    Parameters
    ----------
    features
        A DataArray with a feature dim (``dim``; by default the first of
        ``feature``, ``band``, ``variable``), or a Dataset whose variables are
        the features, in the order the model was fitted on.
    model
        Anything with ``predict(X)`` (and ``predict_proba(X)`` and
        ``classes_`` for ``proba=True``) that takes ``X`` of shape
        ``(n_pixels, n_features)``: a fitted scikit-learn classifier or
        pipeline, for instance. It is placed in the task graph once and shared
        by every chunk's task.
    dim
        The feature dim of a DataArray (or the name given to the stacked
        variables of a Dataset).
    proba
        Also return the class probabilities.
    nodata
        Label of pixels with a NaN feature (never passed to the model):
        default -1 for integer labels, NaN for float labels.

    Returns
    -------
    xarray.DataArray or Dataset
        The labels (int32 for integer classes), with ``features``' dims less
        ``dim``, its coords and CRS; lazy if ``features`` is. With
        ``proba=True``, a Dataset of ``label`` and ``probability`` (float32,
        dim ``class`` before the others, coordinate ``model.classes_``, NaN at
        nodata pixels).

    Examples
    --------
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> x = np.float32([[0.1, 0.2], [0.8, 0.9]])
    >>> model = DecisionTreeClassifier().fit(x, [3, 7])
    >>> feats = xr.DataArray(np.float32([[[0.1, 0.9, np.nan]], [[0.2, 0.9, 0.5]]]), dims=("band", "y", "x"))
    >>> classify(feats, model).values
    array([[ 3,  7, -1]], dtype=int32)
    """
    stack, dim = _feature_stack(features, dim)
    n_features = stack.sizes[dim]
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and expected != n_features:
        raise InvalidArgumentError(
            f"the model was fitted on {expected} features but {dim!r} holds {n_features}; "
            "pass the same features, in the same order"
        )
    if not hasattr(model, "predict"):
        raise InvalidArgumentError(f"{type(model).__name__} has no predict(); pass a fitted model")
    ordered = stack.transpose(..., dim)
    out_dims = ordered.dims[:-1]
    coords = {k: v for k, v in ordered.coords.items() if dim not in v.dims}
    if proba and (not hasattr(model, "predict_proba") or getattr(model, "classes_", None) is None):
        raise InvalidArgumentError(f"{type(model).__name__} has no predict_proba()/classes_; call with proba=False")
    shipped = shipped_once(model) if is_dask(ordered.data) else None  # one key for labels and probabilities
    values = predict_array(ordered.data, model, nodata=nodata, shipped=shipped)
    labels = xr.DataArray(values, dims=out_dims, coords=coords, name="label")
    labels.attrs = {"long_name": "class label", "model": type(model).__name__}
    labels.attrs["nodata"] = (-1 if labels.dtype.kind != "f" else np.nan) if nodata is None else nodata
    if not proba:
        return labels
    prob = predict_proba_array(ordered.data, model, shipped=shipped)
    nd = prob.ndim
    prob = prob.transpose(nd - 1, *range(nd - 1)) if is_dask(prob) else np.moveaxis(prob, -1, 0)
    probability = xr.DataArray(prob, dims=("class", *out_dims), coords={**coords, "class": np.asarray(model.classes_)})
    probability.attrs = {"long_name": "class probability", "nodata": np.nan}
    return xr.Dataset({"label": labels, "probability": probability})
