"""Composite kernels against independent references: numpy percentiles, scipy distances, a float64 Weiszfeld."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from geoproc.kernels.composite import METHODS, decode, percentile_time, quality_select, reduce_time, sorting_network
from geoproc.kernels.geomedian import geomedian, medoid

rng = np.random.default_rng(7)
NO_MASK = np.zeros((0, 0), np.bool_)


def _series(t_len: int, n: int, nan: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    values = rng.normal(size=(t_len, n)).astype(np.float32)
    values[rng.random(values.shape) < nan] = np.nan
    values[:, :7] = np.nan  # pixels without any observation
    values[:, 7] = 1.5  # all equal
    invalid = rng.random(values.shape) < 0.15
    return values, invalid


@pytest.mark.parametrize("t_len", [1, 2, 3, 17, 50, 64, 65, 130])
def test_sorting_network_sorts(t_len):
    net = sorting_network(t_len)
    assert (net[:, 0] < net[:, 1]).all() and (net < t_len).all()
    x = rng.normal(size=(t_len, 500))
    x[rng.random(x.shape) < 0.2] = np.inf
    y = x.copy()
    for a, b in net:
        y[a], y[b] = np.minimum(y[a], y[b]), np.maximum(y[a], y[b])
    np.testing.assert_array_equal(y, np.sort(x, axis=0))


@pytest.mark.parametrize("t_len", [1, 2, 5, 32, 50, 101])
@pytest.mark.parametrize("q", [0.0, 2.5, 10.0, 50.0, 90.0, 100.0])
def test_percentile_time_equals_nanpercentile_exactly(t_len, q):
    values, invalid = _series(t_len, 1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        expected = np.nanpercentile(np.where(invalid, np.nan, values), q, axis=0)
    got = percentile_time(values, invalid, q)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[:7]).all()


@pytest.mark.parametrize("t_len", [2, 8, 33, 50, 300])
def test_median_equals_nanmedian_exactly(t_len):
    values, invalid = _series(t_len, 1200)
    values[0, 100:110] = np.inf  # infinities are values, not nodata
    values[1, 100:105] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(np.where(invalid, np.nan, values), axis=0)
    np.testing.assert_array_equal(reduce_time(values, invalid, METHODS["median"]), expected)


def test_median_float64_input():
    values, _ = _series(40, 800)
    v64 = values.astype(np.float64) + 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(v64, axis=0).astype(np.float32)
    np.testing.assert_array_equal(reduce_time(v64, NO_MASK, METHODS["median"]), expected)


def test_decode_like_the_loader():
    raw = rng.integers(0, 10000, 5000).astype(np.uint16)
    got = decode(raw, 1e-4, -0.1, 0.0)
    ref = raw.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)
    ref[raw == 0] = np.nan
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(decode(np.float32([1, np.nan]), 2.0, 0.0, np.nan), [2.0, np.nan])


def _stack(n_bands=4, t_len=12, n=600):
    stack = rng.uniform(0.0, 0.5, (n_bands, t_len, n)).astype(np.float32)
    stack[rng.integers(0, n_bands, 300), rng.integers(0, t_len, 300), rng.integers(0, n, 300)] = np.nan
    stack[:, :, :5] = np.nan
    invalid = rng.random((t_len, n)) < 0.2
    return stack, invalid


def _valid_obs(stack, invalid, i):
    ok = ~invalid[:, i] & np.isfinite(stack[:, :, i]).all(axis=0)
    return np.flatnonzero(ok), stack[:, ok, i].T.astype(np.float64)


def test_quality_select_picks_the_best_scored_valid_observation():
    stack, invalid = _stack()
    score = rng.normal(size=stack.shape[1:])
    score[3, 50:60] = np.nan
    score[:, 200] = 1.0  # ties: the earliest valid date wins
    got = quality_select(stack, score, invalid)
    for i in range(stack.shape[2]):
        dates, _ = _valid_obs(stack, invalid, i)
        dates = dates[np.isfinite(score[dates, i])]
        if dates.size == 0:
            assert np.isnan(got[:, i]).all()
            continue
        best = dates[np.argmax(score[dates, i])]  # argmax: first of the ties
        np.testing.assert_array_equal(got[:, i], stack[:, best, i])


def test_medoid_against_scipy_distances():
    stack, invalid = _stack()
    got = medoid(stack, invalid)
    for i in range(stack.shape[2]):
        dates, obs = _valid_obs(stack, invalid, i)
        if dates.size == 0:
            assert np.isnan(got[:, i]).all()
            continue
        best = dates[np.argmin(cdist(obs, obs).sum(axis=1))]
        np.testing.assert_array_equal(got[:, i], stack[:, best, i])


def _weiszfeld_reference(obs: np.ndarray, tol: float = 1e-12, max_iter: int = 100_000) -> np.ndarray:
    """Plain float64 Weiszfeld with the Vardi-Zhang step, straight from the paper's formulas."""
    x = obs.mean(axis=0)
    for _ in range(max_iter):
        dist = np.linalg.norm(obs - x, axis=1)
        away = dist > 1e-14
        w = 1.0 / dist[away]
        t = (w[:, None] * obs[away]).sum(axis=0) / w.sum() if away.any() else x
        eta = np.count_nonzero(~away)
        if eta:
            r = np.linalg.norm((w[:, None] * (obs[away] - x)).sum(axis=0))
            if r <= eta:
                return x
            new = (1 - eta / r) * t + (eta / r) * x
        else:
            new = t
        if np.linalg.norm(new - x) < tol:
            return new
        x = new
    return x


def _objective(obs, x):
    return np.linalg.norm(obs - x, axis=1).sum()


def test_geomedian_against_float64_reference():
    stack, invalid = _stack(n_bands=6, t_len=15, n=400)
    # observations repeated at one pixel: the iterate lands on them (the Vardi-Zhang case)
    stack[:, 1:4, 10] = stack[:, :1, 10]
    invalid[:4, 10] = False
    got = geomedian(stack, invalid, 1e-7, 1000)
    assert got.dtype == np.float32
    for i in range(stack.shape[2]):
        dates, obs = _valid_obs(stack, invalid, i)
        if dates.size == 0:
            assert np.isnan(got[:, i]).all()
            continue
        ref = _weiszfeld_reference(obs)
        np.testing.assert_allclose(got[:, i], ref, atol=1e-4)
        # and it is the minimiser: no worse than the reference or any observation
        assert _objective(obs, got[:, i].astype(np.float64)) <= _objective(obs, ref) + 1e-5
        assert _objective(obs, got[:, i].astype(np.float64)) <= min(_objective(obs, o) for o in obs) + 1e-6


def test_geomedian_on_an_observation_stops_there():
    # three points at one place and two elsewhere: the median is the repeated point (eta = 3 >= r)
    obs = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    stack = obs.T[:, :, None].copy()
    got = geomedian(stack, NO_MASK, 1e-9, 500)
    np.testing.assert_allclose(got[:, 0], [0.0, 0.0], atol=1e-6)
    # one point only, and no point at all
    one = np.full((2, 3, 1), np.nan, np.float32)
    one[:, 1, 0] = [0.3, 0.4]
    np.testing.assert_array_equal(geomedian(one, NO_MASK, 1e-6, 100)[:, 0], np.float32([0.3, 0.4]))
    assert np.isnan(geomedian(np.full((2, 3, 1), np.nan, np.float32), NO_MASK, 1e-6, 100)).all()


def test_geomedian_iteration_cap_and_tolerance_are_used():
    stack, invalid = _stack(n_bands=3, t_len=20, n=50)
    one_step = geomedian(stack, invalid, 1e-9, 1)
    converged = geomedian(stack, invalid, 1e-9, 1000)
    loose = geomedian(stack, invalid, 1.0, 1000)  # stops after the first step
    np.testing.assert_array_equal(one_step, loose)
    assert np.nanmax(np.abs(one_step - converged)) > 1e-5
