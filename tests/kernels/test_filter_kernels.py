"""Filter kernels against scipy.ndimage, scikit-image and plain float64 numpy references, with NaN."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from numpy.lib.stride_tricks import sliding_window_view

from geoproc.filters import gaussian_weights
from geoproc.kernels import filters as kf
from geoproc.kernels.filters import LEE_ADDITIVE, LEE_MULTIPLICATIVE, sorting_network

rng = np.random.default_rng(7)


def _with_out(kernel):
    """The kernel with its output allocated here, as the dask layer does."""
    return lambda values, *args: kernel(values, *args, np.empty(values.shape, np.float32))


median_filter, gaussian_filter = _with_out(kf.median_filter), _with_out(kf.gaussian_filter)
bilateral_filter, lee_filter = _with_out(kf.bilateral_filter), _with_out(kf.lee_filter)


def _network(size):
    k = size * size
    return sorting_network(k, keep=(k // 2 - 1, k // 2) if k > 1 else (0,))


def _windows(img: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, size, size)`` windows of a 2-D image mirrored as scipy's 'reflect' (numpy's 'symmetric')."""
    r = size // 2
    return sliding_window_view(np.pad(img.astype(np.float64), r, mode="symmetric"), (size, size))


def _with_nan(shape, frac=0.15, dtype=np.float32):
    a = rng.gamma(3.0, 1.0, shape).astype(dtype)
    a[rng.random(shape) < frac] = np.nan
    return a


# --------------------------------------------------------------------------- sorting network


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 12])
def test_sorting_network_sorts_every_01_input(n):
    """0-1 principle: a comparator network sorts everything iff it sorts every 0/1 sequence."""
    net = sorting_network(n)
    x = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.int8)
    for i, j in net:
        lo, hi = np.minimum(x[:, i], x[:, j]), np.maximum(x[:, i], x[:, j])
        x[:, i], x[:, j] = lo, hi
    np.testing.assert_array_equal(x, np.sort(x, axis=1))


@pytest.mark.parametrize("n", [25, 49, 81])
def test_pruned_network_places_the_middle_values(n):
    h = n // 2
    net = sorting_network(n, keep=(h - 1, h))
    assert len(net) < len(sorting_network(n))
    x = rng.normal(size=(500, n))
    for i, j in net:
        lo, hi = np.minimum(x[:, i], x[:, j]), np.maximum(x[:, i], x[:, j])
        x[:, i], x[:, j] = lo, hi
    ref = np.sort(x, axis=1)
    np.testing.assert_array_equal(x[:, h - 1 : h + 1], ref[:, h - 1 : h + 1])


# --------------------------------------------------------------------------- median


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(2, 37, 29), (1, 4, 3)])
def test_median_equals_scipy_without_nan(size, shape):
    a = rng.normal(size=shape).astype(np.float32)
    got = median_filter(a, size, _network(size))
    assert got.dtype == np.float32
    for p in range(shape[0]):
        np.testing.assert_array_equal(got[p], ndi.median_filter(a[p], size=size, mode="reflect"))


@pytest.mark.parametrize("size", [3, 5])
def test_median_with_nan_equals_nanmedian_of_windows(size):
    a = _with_nan((1, 31, 26), 0.3)
    a[0, :6, :6] = np.nan  # windows with no or few valid values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(_windows(a[0], size), axis=(2, 3))
    ref[np.isnan(a[0])] = np.nan
    got = median_filter(a, size, _network(size))[0]
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(a[0]))


def test_median_float64_input():
    a = rng.normal(size=(1, 20, 21))
    got = median_filter(a, 3, _network(3))
    np.testing.assert_array_equal(got[0], ndi.median_filter(a[0], size=3, mode="reflect").astype(np.float32))


# --------------------------------------------------------------------------- gaussian


@pytest.mark.parametrize("sigma", [(0.8, 0.8), (2.0, 2.0), (2.0, 0.5), (3.0, 1.0)])
@pytest.mark.parametrize("shape", [(2, 40, 33), (1, 5, 4)])
def test_gaussian_equals_scipy_without_nan(sigma, shape):
    a = rng.normal(size=shape).astype(np.float32)
    got = gaussian_filter(a, gaussian_weights(sigma[0]), gaussian_weights(sigma[1]))
    for p in range(shape[0]):
        ref = ndi.gaussian_filter(a[p].astype(np.float64), sigma, mode="reflect", truncate=4.0)
        np.testing.assert_allclose(got[p], ref, rtol=1e-6, atol=1e-6)


def test_gaussian_with_nan_is_normalised_convolution():
    a = _with_nan((1, 45, 38), 0.2)
    valid = ~np.isnan(a[0])
    filled = np.where(valid, a[0], 0).astype(np.float64)
    num = ndi.gaussian_filter(filled, 1.5, mode="reflect")
    den = ndi.gaussian_filter(valid.astype(np.float64), 1.5, mode="reflect")
    ref = np.where(valid, num / den, np.nan)
    w = gaussian_weights(1.5)
    got = gaussian_filter(a, w, w)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_gaussian_nan_path_equals_fast_path_where_no_nan_is_near():
    """A plane with one far-away NaN takes the NaN-aware path; elsewhere it must match the NaN-free path bit for bit
    (this is what makes a chunk without NaN agree with the whole image)."""
    a = rng.normal(size=(1, 60, 60)).astype(np.float32)
    b = a.copy()
    b[0, 59, 59] = np.nan
    w = gaussian_weights(2.0)
    fast, slow = gaussian_filter(a, w, w)[0], gaussian_filter(b, w, w)[0]
    np.testing.assert_array_equal(fast[:45, :45], slow[:45, :45])


# --------------------------------------------------------------------------- bilateral


def _bilateral_reference(img: np.ndarray, radius: int, sigma_s: float, sigma_c: float) -> np.ndarray:
    win = _windows(img, 2 * radius + 1)
    d = np.arange(-radius, radius + 1)
    spatial = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma_s**2))
    center = img.astype(np.float64)[:, :, None, None]
    with np.errstate(invalid="ignore"):
        w = spatial * np.exp(-((win - center) ** 2) / (2 * sigma_c**2))
    w = np.where(np.isnan(win), 0.0, w)
    with np.errstate(invalid="ignore"):
        out = np.nansum(w * np.nan_to_num(win), axis=(2, 3)) / w.sum(axis=(2, 3))
    return np.where(np.isnan(img), np.nan, out)


@pytest.mark.parametrize("radius,sigma_s,sigma_c", [(2, 1.0, 0.5), (3, 2.0, 2.0), (1, 0.7, 0.1)])
def test_bilateral_equals_float64_reference(radius, sigma_s, sigma_c):
    a = _with_nan((2, 30, 27), 0.1)
    got = bilateral_filter(a, radius, sigma_s, sigma_c)
    for p in range(2):
        ref = _bilateral_reference(a[p], radius, sigma_s, sigma_c)
        np.testing.assert_allclose(got[p], ref, rtol=2e-6, atol=1e-6, equal_nan=True)


def test_bilateral_close_to_scikit_image():
    """skimage reads range weights from a quantised table (``bins``) and pads with zeros by default; with a fine
    table and mirrored edges it agrees closely. Its spatial weights are compared flat (huge ``sigma_spatial``):
    scikit-image 0.26 builds its spatial table on ``win_size + 1`` points (``np.arange(-w // 2, w // 2 + 1)``)
    and reads it with a stride of ``win_size``, so its spatial weights are shifted (the full kernel is checked
    against the float64 reference above)."""
    from skimage.restoration import denoise_bilateral

    img = rng.random((40, 36))
    got = bilateral_filter(img[None].astype(np.float32), 3, 1e6, 0.2)[0]
    ref = denoise_bilateral(img, win_size=7, sigma_color=0.2, sigma_spatial=1e6, bins=1_000_000, mode="symmetric")
    np.testing.assert_allclose(got, ref, atol=2e-6)


# --------------------------------------------------------------------------- Lee


def _lee_reference(img: np.ndarray, size: int, model: int, noise: float) -> np.ndarray:
    """Lee (1980): local mean/variance over the valid pixels of the window; k = var_x / (var_x + noise_var)."""
    win = _windows(img, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(win, axis=(2, 3))
        var_z = np.nanvar(win, axis=(2, 3))
    if model == LEE_MULTIPLICATIVE:
        noise_var = mean**2 * noise
        var_x = np.maximum((var_z - noise_var) / (1 + noise), 0)
    else:
        noise_var = np.full_like(mean, noise)
        var_x = np.maximum(var_z - noise, 0)
    den = var_x + noise_var
    k = np.divide(var_x, den, out=np.zeros_like(den), where=den > 0)
    return np.where(np.isnan(img), np.nan, mean + k * (img - mean))


@pytest.mark.parametrize("size", [3, 7])
@pytest.mark.parametrize("model,noise", [(LEE_MULTIPLICATIVE, 1.0), (LEE_MULTIPLICATIVE, 0.25), (LEE_ADDITIVE, 0.5)])
def test_lee_equals_published_formula(size, model, noise):
    a = _with_nan((2, 33, 28), 0.1)
    got = lee_filter(a, size, model, noise)
    for p in range(2):
        ref = _lee_reference(a[p], size, model, noise)
        np.testing.assert_allclose(got[p], ref, rtol=2e-5, atol=2e-6, equal_nan=True)


def test_lee_keeps_a_flat_area_flat_and_zero_noise_is_identity():
    flat = np.full((1, 12, 12), 5.0, np.float32)
    np.testing.assert_allclose(lee_filter(flat, 5, LEE_MULTIPLICATIVE, 1.0), flat, rtol=1e-6)
    a = _with_nan((1, 15, 14), 0.1)
    np.testing.assert_allclose(lee_filter(a, 5, LEE_ADDITIVE, 0.0), a, rtol=1e-6, equal_nan=True)
