"""Numba kernels against plain numpy references, on random data with NaN, nodata and masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from geoproc.kernels.composite import METHODS, count_valid, reduce_time
from geoproc.kernels.masking import class_lut, class_mask

rng = np.random.default_rng(42)


def test_class_mask_equals_isin():
    codes = rng.integers(0, 12, 10_000).astype(np.uint8)
    classes = (0, 1, 3, 8, 9, 10)
    np.testing.assert_array_equal(class_mask(codes, class_lut(classes)), np.isin(codes, classes))


def test_class_mask_out_of_table_is_false():
    codes = np.array([-1, 3, 300, 255], dtype=np.int16)
    np.testing.assert_array_equal(class_mask(codes, class_lut([3, 255])), [False, True, False, True])


def test_class_lut_rejects_out_of_range():
    with pytest.raises(ValueError):
        class_lut([256])


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("t_len", [1, 2, 7, 8])
def test_reduce_time_matches_numpy(method, t_len):
    values = rng.normal(size=(t_len, 3000)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    invalid = rng.random(values.shape) < 0.2
    values[:, :40] = np.nan  # pixels with no observation at all
    ref_in = np.where(invalid, np.nan, values)
    ref = {"median": np.nanmedian, "mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        expected = ref(ref_in, axis=0)
    got = reduce_time(values, invalid, METHODS[method])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isnan(got[:40]).all()


def test_reduce_time_without_mask():
    values = rng.normal(size=(6, 500)).astype(np.float32)
    got = reduce_time(values, np.zeros((0, 0), np.bool_), METHODS["median"])
    np.testing.assert_array_equal(got, np.median(values, axis=0))


def test_count_valid():
    values = rng.normal(size=(9, 1000)).astype(np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    invalid = rng.random(values.shape) < 0.1
    expected = (~np.isnan(values) & ~invalid).sum(axis=0)
    np.testing.assert_array_equal(count_valid(values, invalid), expected)


def test_fuse_into_first_valid_wins_and_decodes():
    from geoproc.kernels.mosaic import fuse_into

    raw1 = np.array([10, 0, 30, 40], np.uint16)
    raw2 = np.array([11, 21, 0, 41], np.uint16)
    out = np.full(4, np.nan, np.float32)
    filled = np.zeros(4, bool)
    assert fuse_into(out, filled, raw1, raw1 != 0, 0.5, -1.0, True) == 3
    assert fuse_into(out, filled, raw2, raw2 != 0, 0.5, -1.0, True) == 4
    np.testing.assert_array_equal(out, np.float32([10, 21, 30, 40]) * np.float32(0.5) + np.float32(-1.0))
    keep = np.zeros(4, np.uint16)
    fuse_into(keep, np.zeros(4, bool), raw2, raw2 != 0, 0.5, -1.0, False)
    np.testing.assert_array_equal(keep, [11, 21, 0, 41])
