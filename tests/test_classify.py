"""geoproc.classify: identical to model.predict on real eo-learn data, numpy vs dask, one model key, a real cluster."""

from __future__ import annotations

import logging
from functools import partial

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from geoproc.classify import classify
from geoproc.errors import InvalidArgumentError

sklearn = pytest.importorskip("sklearn")
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

rng = np.random.default_rng(21)


class CountingModel:
    """A model wrapper that counts how often it is pickled and unpickled (per process)."""

    pickled = 0
    unpickled = 0

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_

    def predict(self, x):
        return self.model.predict(x)

    def predict_proba(self, x):
        return self.model.predict_proba(x)

    def __getstate__(self):
        type(self).pickled += 1
        return self.__dict__

    def __setstate__(self, state):
        type(self).unpickled += 1
        self.__dict__.update(state)


def _unpickled_here() -> int:
    return CountingModel.unpickled


@pytest.fixture(scope="module")
def eolearn(shared_data):
    """The eo-learn patch: 68 NDVI dates as features, LULC labels; a forest fitted on 20% of the labelled pixels."""
    patch = shared_data / "eolearn" / "TestEOPatch"
    ndvi = np.load(patch / "data" / "NDVI.npy")[..., 0]  # (68, 101, 100)
    lulc = np.load(patch / "mask_timeless" / "LULC.npy")[..., 0].astype(np.int64)
    x_all = ndvi.reshape(ndvi.shape[0], -1).T
    labelled = np.flatnonzero(lulc.ravel() != 0)
    train = rng.choice(labelled, size=labelled.size // 5, replace=False)
    model = RandomForestClassifier(n_estimators=15, random_state=0, n_jobs=1).fit(x_all[train], lulc.ravel()[train])
    features = xr.DataArray(ndvi, dims=("time", "y", "x"), coords={"y": 5080250.0 - 10 * np.arange(101)})
    return features.rio.write_crs(32633), lulc, model, x_all, np.setdiff1d(labelled, train)


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client


def test_classify_real_patch_equals_model_predict(eolearn):
    features, lulc, model, x_all, held_out = eolearn
    expected = model.predict(x_all).reshape(lulc.shape)
    eager = classify(features, model, dim="time")
    lazy = classify(features.chunk({"y": 32, "x": 40}), model, dim="time")
    assert isinstance(lazy.data, da.Array) and lazy.dims == ("y", "x") and lazy.dtype == np.int32
    np.testing.assert_array_equal(eager.values, expected)
    np.testing.assert_array_equal(lazy.values, expected)
    assert lazy.rio.crs.to_epsg() == 32633 and np.array_equal(lazy.y.values, features.y.values)
    # a real problem: far better than the majority class on the pixels the forest never saw
    truth = lulc.ravel()[held_out]
    accuracy = (expected.ravel()[held_out] == truth).mean()
    majority = np.bincount(truth).max() / truth.size
    assert accuracy > majority + 0.05


def test_classify_probabilities_and_nodata(eolearn):
    features, lulc, model, x_all, _ = eolearn
    feats = features.copy(data=features.values.copy())
    feats[5, 10, 20] = np.nan  # one NaN feature makes the pixel nodata
    out = classify(feats.chunk({"y": 50, "x": 50}), model, dim="time", proba=True)
    assert out.probability.dims == ("class", "y", "x")
    np.testing.assert_array_equal(out.probability["class"].values, model.classes_)
    ref = model.predict_proba(x_all).astype(np.float32).T.reshape(len(model.classes_), *lulc.shape)
    prob = out.probability.values
    assert np.isnan(prob[:, 10, 20]).all() and out.label.values[10, 20] == -1
    prob[:, 10, 20] = ref[:, 10, 20]
    np.testing.assert_array_equal(prob, ref)
    # labels and probabilities share one model key
    graph = dict(out.__dask_graph__())
    assert sum(1 for v in graph.values() if _holds_model(v, model)) == 1


def _holds_model(task, model) -> bool:
    """Whether a graph value is (or directly wraps) the model object."""
    if task is model:
        return True
    return getattr(task, "value", None) is model


def test_model_is_in_the_graph_once_and_pickled_once():
    x = rng.normal(size=(300, 3)).astype(np.float32)
    model = CountingModel(RandomForestClassifier(n_estimators=5, random_state=0).fit(x, (x[:, 0] > 0).astype(int)))
    feats = xr.DataArray(rng.normal(size=(3, 64, 64)).astype(np.float32), dims=("band", "y", "x"))
    lazy = classify(feats.chunk({"y": 16, "x": 16}), model)  # 16 chunks
    graph = dict(lazy.data.__dask_graph__())
    holders = [k for k, v in graph.items() if _holds_model(v, model)]
    assert len(holders) == 1
    blocks = [k for k in graph if isinstance(k, tuple) and k[0] == lazy.data.name]
    assert len(blocks) == 16
    deps = lazy.data.__dask_graph__().get_all_dependencies()
    assert all(_depends_on(k, holders[0], graph, deps) for k in blocks)
    # the whole graph pickles the model once; a chunk's task alone does not pickle it at all (it names the key)
    CountingModel.pickled = 0
    cloudpickle.dumps(graph)
    assert CountingModel.pickled == 1
    CountingModel.pickled = 0
    for k in blocks:
        cloudpickle.dumps(graph[k])
    assert CountingModel.pickled == 0
    # whereas a model captured in every task is pickled with each of them (what this design avoids)
    chunked = feats.chunk({"y": 16, "x": 16}).data
    naive = da.map_blocks(partial(_naive_block, model), chunked, drop_axis=0, meta=np.empty((0, 0), np.int64))
    naive_graph = dict(naive.__dask_graph__())
    CountingModel.pickled = 0  # (building it pickled the model too: dask hashes it into the key names)
    for k in (k for k in naive_graph if isinstance(k, tuple) and k[0] == naive.name):
        cloudpickle.dumps(naive_graph[k])
    assert CountingModel.pickled == 16


def _naive_block(model, block):
    return model.predict(block.reshape(block.shape[0], -1).T).reshape(block.shape[1:])


def _depends_on(key, target, graph, deps) -> bool:
    seen, stack = set(), [key]
    while stack:
        k = stack.pop()
        if k == target:
            return True
        if k not in seen:
            seen.add(k)
            stack.extend(deps.get(k, ()))
    return False


def test_numpy_and_dask_and_dataset_inputs_agree():
    x = rng.normal(size=(400, 2)).astype(np.float64)
    y = np.where(x[:, 0] + x[:, 1] > 0, 4, 9)
    model = RandomForestClassifier(n_estimators=5, random_state=1).fit(x, y)
    a = rng.normal(size=(20, 30))
    b = rng.normal(size=(20, 30))
    b[3, 4] = np.nan
    ds = xr.Dataset({"a": (("y", "x"), a), "b": (("y", "x"), b)})
    from_ds = classify(ds, model)
    from_da = classify(xr.DataArray(np.stack([a, b]), dims=("feature", "y", "x")).chunk({"feature": 1, "y": 7}), model)
    expected = model.predict(np.stack([a.ravel(), np.nan_to_num(b).ravel()], axis=1)).reshape(a.shape)
    expected[3, 4] = -1
    np.testing.assert_array_equal(from_ds.values, expected)
    np.testing.assert_array_equal(from_da.values, expected)
    with dask.config.set(scheduler="synchronous"):
        got = classify(ds.chunk({"x": 8}), model, nodata=0).values
    np.testing.assert_array_equal(got, np.where(expected == -1, 0, expected))


def test_model_without_classes_and_errors():
    x = rng.normal(size=(200, 2)).astype(np.float32)
    km = KMeans(n_clusters=3, n_init=2, random_state=0).fit(x)
    feats = xr.DataArray(rng.normal(size=(2, 9, 11)).astype(np.float32), dims=("band", "y", "x"))
    out = classify(feats.chunk({"y": 4}), km)
    np.testing.assert_array_equal(out.values, km.predict(feats.values.reshape(2, -1).T).reshape(9, 11))
    rf = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, (x[:, 0] > 0).astype(int))
    with pytest.raises(InvalidArgumentError, match="fitted on 2 features"):
        classify(feats.isel(band=[0]), rf)
    with pytest.raises(InvalidArgumentError, match="no feature dim"):
        classify(feats.rename(band="b"), rf)
    with pytest.raises(InvalidArgumentError, match="nodata=1 is one of the model's classes"):
        classify(feats, rf, nodata=1)
    strings = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.where(x[:, 0] > 0, "crop", "forest"))
    with pytest.raises(InvalidArgumentError, match="integer class codes"):
        classify(feats, strings)
    with pytest.raises(InvalidArgumentError, match="predict_proba"):
        classify(feats, km, proba=True)


def test_classify_on_a_distributed_cluster(eolearn, cluster_client):
    """Two worker processes: the right labels, and the model unpickled a few times per worker, not once per task
    (a model captured in every task is unpickled once per task: 64 times for 64 chunks, measured)."""
    features, lulc, model, x_all, _ = eolearn
    counting = CountingModel(model)
    lazy = classify(features.chunk({"y": 26, "x": 25}), counting, dim="time")  # 16 chunks
    assert lazy.data.npartitions == 16
    cluster_client.run(_reset_counter)
    got = cluster_client.compute(lazy).result()
    np.testing.assert_array_equal(got.values, model.predict(x_all).reshape(lulc.shape))
    per_worker = cluster_client.run(_unpickled_here)
    # seen: 1 on one worker and 2 on the other, for 16 or 64 chunks alike
    assert 1 <= sum(per_worker.values()) <= 2 * len(per_worker) < lazy.data.npartitions


def _reset_counter() -> None:
    CountingModel.unpickled = 0
