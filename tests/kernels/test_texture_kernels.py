"""GLCM kernels against scikit-image's graycomatrix / graycoprops, window by window, on random data with NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoproc.kernels.texture import FEATURES, glcm_features, quantize

skimage_feature = pytest.importorskip("skimage.feature")

rng = np.random.default_rng(11)


def _offsets(distances, angles):
    # skimage rounds sin(a) * d and cos(a) * d half away from zero
    rnd = lambda v: int(math.copysign(math.floor(abs(v) + 0.5), v))  # noqa: E731
    return np.array([[rnd(math.sin(a) * d), rnd(math.cos(a) * d)] for d in distances for a in angles], np.int64)


def reference_features(q, radius, distances, angles, levels, symmetric, names):
    """float64 ``(n_features, n_dist, n_angle, H, W)`` from skimage on every window of ``q`` (-1 = missing).

    Missing pixels become an extra grey level ``levels`` whose row and column of the GLCM are dropped, which
    leaves out exactly the pairs that involve them. Entropy (absent from older graycoprops) is computed here
    from the normalised matrix, ``-sum(p ln p)``.
    """
    w = 2 * radius + 1
    h, wd = q.shape[0] - 2 * radius, q.shape[1] - 2 * radius
    out = np.full((len(names), len(distances), len(angles), h, wd), np.nan)
    for y in range(h):
        for x in range(wd):
            if q[y + radius, x + radius] < 0:
                continue
            patch = q[y : y + w, x : x + w].astype(np.int64)
            patch[patch < 0] = levels
            glcm = skimage_feature.graycomatrix(
                patch.astype(np.uint16), distances, angles, levels=levels + 1, symmetric=symmetric
            )[:levels, :levels].astype(np.float64)
            sums = glcm.sum(axis=(0, 1))
            for f, name in enumerate(names):
                if name == "entropy":
                    p = glcm / np.where(sums == 0, 1, sums)
                    val = -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=(0, 1))
                else:
                    val = skimage_feature.graycoprops(glcm, name)
                out[f, :, :, y, x] = np.where(sums == 0, np.nan, val)
    return out


def _quantised(shape, levels, nan_fraction, radius):
    img = rng.normal(size=shape).astype(np.float32)
    img[rng.random(shape) < nan_fraction] = np.nan
    padded = np.pad(img, radius, constant_values=np.nan)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    return quantize(padded.reshape(-1), lo, hi, levels).reshape(padded.shape)


def test_quantize_matches_formula_and_clips():
    v = rng.uniform(-3, 5, 5000)
    v[rng.random(v.shape) < 0.1] = np.nan
    v[:4] = [-10.0, 10.0, np.inf, -np.inf]  # outside the range: clipped
    lo, hi, levels = -2.0, 4.0, 16
    got = quantize(v, lo, hi, levels)
    ref = np.clip(np.floor((v - lo) / (hi - lo) * levels), 0, levels - 1)
    ref = np.where(np.isnan(v), -1, ref)
    np.testing.assert_array_equal(got, ref.astype(np.int16))
    assert got.dtype == np.int16 and got[:4].tolist() == [0, 15, 15, 0]
    # a constant range puts every valid value on level 0; a NaN range leaves every value out
    np.testing.assert_array_equal(quantize(np.float32([1, np.nan, 1]), 1.0, 1.0, 8), [0, -1, 0])
    np.testing.assert_array_equal(quantize(np.float32([1, 2]), np.nan, np.nan, 8), [-1, -1])
    # integers too
    np.testing.assert_array_equal(quantize(np.arange(10, dtype=np.uint16), 0.0, 9.0, 3), [0, 0, 0, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize("symmetric", [True, False])
def test_glcm_features_match_skimage_on_every_window(symmetric):
    levels, radius = 8, 2
    distances = [1, 3]
    angles = [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, 5 * math.pi / 6]  # 5pi/6 rounds to an odd offset
    q = _quantised((17, 19), levels, 0.12, radius)
    codes = np.arange(len(FEATURES))
    got = glcm_features(q, radius, _offsets(distances, angles), len(distances), levels, symmetric, codes, False)
    ref = reference_features(q, radius, distances, angles, levels, symmetric, FEATURES)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6, equal_nan=True)
    assert np.isnan(ref).any() and (~np.isnan(ref)).sum() > 1000  # both cases are exercised
    # averaged over angles: the mean of the per-angle values (NaN if any angle is NaN)
    avg = glcm_features(q, radius, _offsets(distances, angles), len(distances), levels, symmetric, codes, True)
    np.testing.assert_allclose(avg[:, :, 0], ref.mean(axis=2), rtol=2e-6, atol=2e-6, equal_nan=True)


def test_glcm_features_subset_in_requested_order():
    levels, radius = 16, 3
    q = _quantised((12, 12), levels, 0.0, radius)
    names = ["entropy", "contrast", "correlation"]
    codes = np.array([FEATURES.index(n) for n in names])
    offsets = _offsets([1], [0.0, math.pi / 2])
    got = glcm_features(q, radius, offsets, 1, levels, True, codes, False)
    ref = reference_features(q, radius, [1], [0.0, math.pi / 2], levels, True, names)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)


def test_glcm_features_constant_window_and_empty_glcm():
    radius, levels = 1, 4
    q = np.full((5, 5), 2, np.int16)
    codes = np.arange(len(FEATURES))
    got = glcm_features(q, radius, _offsets([1], [0.0]), 1, levels, True, codes, True)[:, 0, 0]
    expected = {"contrast": 0, "dissimilarity": 0, "homogeneity": 1, "ASM": 1, "energy": 1, "correlation": 1}
    expected.update(entropy=0, mean=2, variance=0, std=0)
    for f, name in enumerate(FEATURES):
        np.testing.assert_array_equal(got[f], np.float32(expected[name]), err_msg=name)
    # a valid centre whose window holds no pair at all: NaN, never 0
    lonely = np.full((3, 3), -1, np.int16)
    lonely[1, 1] = 0
    assert np.isnan(glcm_features(lonely, radius, _offsets([1], [0.0]), 1, levels, True, codes, True)).all()


def test_glcm_result_does_not_depend_on_where_rows_start():
    """The exact integer state makes the value of a pixel independent of the path of the sliding window."""
    levels, radius = 32, 3
    q = _quantised((30, 40), levels, 0.05, radius)
    codes = np.arange(len(FEATURES))
    offsets = _offsets([1, 2], [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    whole = glcm_features(q, radius, offsets, 2, levels, True, codes, True)
    part = glcm_features(np.ascontiguousarray(q[5:, 11:]), radius, offsets, 2, levels, True, codes, True)
    np.testing.assert_array_equal(whole[..., 5:, 11:], part)
