"""Mask kernels (quality bits, morphology, Fmask tests, shadow steps) against independent references.

References: numpy bit operations, scipy.ndimage (distance transform, dilation,
correlation, label), scikit-image's remove_small_objects, and plain numpy
expressions of the published Fmask thresholds; on random arrays and on real
ones (Landsat QA_PIXEL, eo-learn s2cloudless masks and Sentinel-2 reflectance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import scipy.ndimage as ndi

from geoproc.kernels.masking import NO_BITS, bit_mask
from geoproc.kernels.morphology import dilate_disk, dilate_square, majority, remove_small
from geoproc.kernels.spectral_mask import (
    CIRRUS, NODATA, PCP, QUANT, SNOW, WATER, dark_pixels, dilate_line, fmask_tests,
)
from geoproc.spectral_mask import FmaskThresholds

from ..helpers import skimage_remove_small

rng = np.random.default_rng(7)

LANDSAT = "stactools-landsat/LC08_L2SP_008059_20191201_20200825_02_T1/LC08_L2SP_008059_20191201_20200825_02_T1"


def _random_masks():
    for p in (0.002, 0.05, 0.3, 0.8):
        yield rng.random((int(rng.integers(20, 70)), int(rng.integers(20, 70)))) < p
    yield np.zeros((9, 13), bool)
    yield np.ones((9, 13), bool)


@pytest.fixture(scope="module")
def clm(shared_data):
    """Real binary masks: 6 dates of the s2cloudless mask of the eo-learn patch (101 x 100)."""
    return np.load(shared_data / "eolearn" / "TestEOPatch" / "mask" / "CLM.npy")[[0, 5, 9, 20, 33, 50], ..., 0].astype(bool)


# --- quality bits ----------------------------------------------------------------------------------------------


def _bits_reference(codes, any_bits, all_masks):
    c = codes.astype(np.int64)
    out = (c & any_bits) != 0
    for m in all_masks:
        out |= (c & m) == m
    return out & (c >= 0)


def _all_bits(masks):
    return np.array(list(masks) + [NO_BITS] * (4 - len(masks)), np.int64)


@pytest.mark.parametrize("masks", [[], [3 << 8], [3 << 8, 3 << 10, 3 << 14, 0b1001]])
def test_bit_mask_equals_numpy_bit_ops(masks):
    codes = rng.integers(0, 2**16, 20_000).astype(np.uint16)
    any_bits = (1 << 0) | (1 << 3) | (1 << 4)
    np.testing.assert_array_equal(bit_mask(codes, any_bits, _all_bits(masks)), _bits_reference(codes, any_bits, masks))


def test_bit_mask_on_real_qa_pixel(shared_data):
    with rasterio.open(shared_data / f"{LANDSAT}_QA_PIXEL.TIF") as src:
        qa = src.read(1).ravel()
    any_bits = 0b11111  # fill, dilated cloud, cirrus, cloud, shadow
    got = bit_mask(qa, any_bits, _all_bits([3 << 10]))
    np.testing.assert_array_equal(got, _bits_reference(qa, any_bits, [3 << 10]))
    assert 0 < got.mean() < 1


def test_bit_mask_negative_codes_are_false():
    got = bit_mask(np.array([-1, 8, 0], np.int32), 8, _all_bits([]))
    np.testing.assert_array_equal(got, [False, True, False])


# --- morphology ------------------------------------------------------------------------------------------------


def _disk(r):
    n = int(np.floor(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return yy**2 + xx**2 <= r * r


@pytest.mark.parametrize("radius", [0, 1, 1.5, 2.9, 6])
def test_dilations_equal_scipy_on_random_masks(radius):
    for m in _random_masks():
        np.testing.assert_array_equal(dilate_disk(m, radius), ndi.binary_dilation(m, structure=_disk(radius)))
        r = int(np.floor(radius))
        square = np.ones((2 * r + 1, 2 * r + 1), bool)
        np.testing.assert_array_equal(dilate_square(m, r), ndi.binary_dilation(m, structure=square))


def test_dilations_equal_scipy_on_real_masks(clm):
    for m in clm:
        np.testing.assert_array_equal(dilate_disk(m, 4.5), ndi.binary_dilation(m, structure=_disk(4.5)))
        np.testing.assert_array_equal(dilate_square(m, 3), ndi.binary_dilation(m, structure=np.ones((7, 7), bool)))


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("min_size", [1, 2, 5, 30])
def test_remove_small_equals_skimage(connectivity, min_size):
    closed = np.zeros(4, bool)
    for m in _random_masks():
        ref = skimage_remove_small(m, min_size, connectivity)
        np.testing.assert_array_equal(remove_small(m, min_size, connectivity, closed), ref)


def test_remove_small_on_real_masks_matches_label_sizes(clm):
    for m in clm:
        labels, _ = ndi.label(~m, structure=np.ones((3, 3)))  # the clear areas: many small and large objects
        sizes = np.bincount(labels.ravel())
        ref = (labels > 0) & (sizes[labels] >= 40)
        np.testing.assert_array_equal(remove_small(~m, 40, 8, np.zeros(4, bool)), ref)


def test_remove_small_keeps_objects_on_open_edges():
    m = np.zeros((6, 6), bool)
    m[0, 2] = m[3, 3] = m[5, 5] = True  # one on the top edge, one inside, one in the bottom-right corner
    got = remove_small(m, 2, 8, np.array([True, False, False, False]))
    assert got[0, 2] and not got[3, 3] and not got[5, 5]
    got = remove_small(m, 2, 8, np.array([False, False, False, True]))
    assert got[5, 5] and not got[0, 2]


def test_majority_equals_convolution(clm):
    for m in [*_random_masks(), *clm]:
        ref = ndi.convolve(m.astype(int), np.ones((3, 3), int), mode="constant") >= 5
        np.testing.assert_array_equal(majority(m, 5), ref)


# --- Fmask pixel tests -----------------------------------------------------------------------------------------


def _fmask_reference(bands, thr: FmaskThresholds, cirrus=None):
    """The published tests as plain numpy (Zhu & Woodcock 2012 Eq. 1-5, 20; Zhu et al. 2015 cirrus test).

    In float32, as the kernel computes (the loader's dtype), reflectance clamped to >= 1e-5 first.
    """
    f = np.float32
    b, g, r, n, s1, s2 = (np.maximum(np.asarray(x, f), f(1e-5)) for x in bands)
    t = {k: f(v) for k, v in vars(thr).items()}
    missing = np.zeros(b.shape, bool)
    for x in bands if cirrus is None else (*bands, cirrus):
        missing |= np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (n - r) / (n + r)
        ndsi = (g - s1) / (g + s1)
        mean = (b + g + r) / f(3)
        whiteness = (np.abs(b - mean) + np.abs(g - mean) + np.abs(r - mean)) / mean
        pcp = (s2 > t["swir22_min"]) & (ndsi < t["ndsi_max"]) & (ndvi < t["ndvi_max"])
        pcp &= (whiteness < t["whiteness_max"]) & (b - f(0.5) * r - t["hot_offset"] > 0) & (n / s1 > t["nir_swir16_min"])
        cirrus_hit = np.zeros(b.shape, bool) if cirrus is None else np.maximum(cirrus, f(1e-5)) > t["cirrus_min"]
        water = ((ndvi < t["water_ndvi_max"]) & (n < t["water_nir_max"])) | (
            (ndvi > 0) & (ndvi < t["water_ndvi_max_low"]) & (n < t["water_nir_max_low"])
        )
        snow = (ndsi > t["snow_ndsi_min"]) & (n > t["snow_nir_min"]) & (g > t["snow_green_min"])
    flags = (pcp | cirrus_hit) * PCP + water * WATER + snow * SNOW + cirrus_hit * CIRRUS
    flags = np.where(missing, NODATA, flags).astype(np.uint8)
    nir_q = np.where(missing, 0, np.minimum(np.floor(n * f(QUANT) + f(0.5)), 32767)).astype(np.int16)
    return flags, nir_q


def _spectra(n):
    """Reflectance of cloud-, vegetation-, soil-, water- and snow-like pixels with noise, some NaN."""
    kinds = np.array([
        [0.50, 0.50, 0.49, 0.52, 0.40, 0.30],  # cloud
        [0.035, 0.065, 0.04, 0.38, 0.19, 0.09],  # vegetation
        [0.10, 0.13, 0.17, 0.24, 0.31, 0.27],  # soil
        [0.07, 0.06, 0.04, 0.02, 0.012, 0.008],  # water
        [0.80, 0.78, 0.75, 0.70, 0.10, 0.05],  # snow
    ])
    pick = rng.integers(0, len(kinds), n)
    refl = kinds[pick] * rng.uniform(0.6, 1.4, (n, 6)) + rng.normal(0, 0.02, (n, 6))
    refl = np.concatenate([refl, rng.uniform(-0.05, 3.5, (n // 4, 6))]).astype(np.float32)  # plus anything at all
    refl[rng.random(refl.shape) < 0.01] = np.nan
    return [np.ascontiguousarray(refl[:, i]) for i in range(6)]


def test_fmask_tests_equal_published_formulas_on_random_spectra():
    thr = FmaskThresholds()
    bands = _spectra(20_000)
    cirrus = rng.uniform(0, 0.03, bands[0].size).astype(np.float32)
    decode = np.tile([1.0, 0.0, np.nan], (7, 1))
    for with_cirrus in (False, True):
        flags, nir_q, _ = fmask_tests(*bands, cirrus, decode, thr.pixel_tests(), with_cirrus)
        ref_flags, ref_nir = _fmask_reference(bands, thr, cirrus if with_cirrus else None)
        np.testing.assert_array_equal(flags, ref_flags)
        np.testing.assert_array_equal(nir_q, ref_nir)
    # every test is exercised: some pixels of each kind
    for bit in (PCP, WATER, SNOW, NODATA, CIRRUS):
        assert (flags & bit).any()


def test_fmask_tests_decode_raw_integers_like_floats():
    """uint16 with scale/offset/nodata in the kernel == float32 decoded as the loader does, then tested."""
    scale, offset = 2.75e-5, -0.2
    raw = [rng.integers(7000, 30000, 5000).astype(np.uint16) for _ in range(6)]
    for r in raw:
        r[rng.random(r.size) < 0.02] = 0
    f = np.float32
    decoded = [np.where(r == 0, np.nan, r.astype(f) * f(scale) + f(offset)).astype(f) for r in raw]
    thr = FmaskThresholds().pixel_tests()
    empty = np.zeros(0, np.float32)
    got = fmask_tests(*raw, empty, np.tile([scale, offset, 0.0], (7, 1)), thr, False)
    ref = fmask_tests(*decoded, empty, np.tile([1.0, 0.0, np.nan], (7, 1)), thr, False)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert ((got[0] & NODATA) > 0).sum() >= 0.05 * raw[0].size


def test_fmask_tests_on_real_sentinel2_l1c(shared_data):
    eo = shared_data / "eolearn"
    order = json.load(open(eo / "REFERENCE_SCENES.alignment.json"))["band_order"]
    scenes = np.load(eo / "REFERENCE_SCENES.npy").reshape(-1, 13)
    bands = [np.ascontiguousarray(scenes[:, order.index(b)]) for b in ("B02", "B03", "B04", "B08", "B11", "B12")]
    cirrus = np.ascontiguousarray(scenes[:, order.index("B10")])
    thr = FmaskThresholds()
    flags, nir_q, _ = fmask_tests(*bands, cirrus, np.tile([1.0, 0.0, np.nan], (7, 1)), thr.pixel_tests(), True)
    ref_flags, ref_nir = _fmask_reference(bands, thr, cirrus)
    np.testing.assert_array_equal(flags, ref_flags)
    np.testing.assert_array_equal(nir_q, ref_nir)
    assert 0.2 < (flags & PCP > 0).mean() < 0.6  # 2 of the 5 dates are cloudy


# --- shadow steps ----------------------------------------------------------------------------------------------


def _dark_reference(nir, swir, ok, water, radius, ratio, diff, iterations):
    box = np.ones((2 * radius + 1, 2 * radius + 1))
    dark = np.zeros(nir.shape, bool)
    for subset, min_diff in ((~water, diff), (water, 0)):
        base = ok & subset
        keep = base.copy()
        for _ in range(iterations):
            count = ndi.convolve(keep.astype(float), box, mode="constant")
            with np.errstate(invalid="ignore", divide="ignore"):
                bn = ndi.convolve(np.where(keep, nir, 0).astype(float), box, mode="constant") / count
                bs = ndi.convolve(np.where(keep, swir, 0).astype(float), box, mode="constant") / count
                d = (count > 0) & (nir < ratio * bn) & (bn - nir >= min_diff) & (swir < ratio * bs)
            dark[subset] = d[subset]
            keep = base & ~d
    return dark


def test_dark_pixels_equal_numpy_reference():
    nir = rng.integers(100, 4000, (60, 70)).astype(np.int16)
    swir = rng.integers(100, 4000, (60, 70)).astype(np.int16)
    nir[20:30, 10:40] //= 3  # a shadow
    swir[20:30, 10:40] //= 3
    ok = rng.random(nir.shape) < 0.9
    water = np.zeros(nir.shape, bool)
    water[40:, 40:] = True
    # radii from one pixel to more than the array (the running sums' edge cases: nothing drops out, nothing comes in)
    for radius, iterations in ((0, 1), (1, 1), (4, 1), (40, 1), (60, 1), (3, 1), (8, 2)):
        got = dark_pixels(nir, swir, ok, water, radius, 0.8, 200, iterations)
        np.testing.assert_array_equal(got, _dark_reference(nir, swir, ok, water, radius, 0.8, 200, iterations))
    assert got[20:30, 10:40].mean() > 0.9


def _line_offsets(p, q, sign, kmin, kmax, transpose):
    offsets = []
    for k in range(kmin, kmax + 1):
        along, across = sign * k, int(np.floor(k * p / q + 0.5))
        offsets.append((along, across) if transpose else (across, along))
    return offsets


@pytest.mark.parametrize("seed", range(40))
def test_dilate_line_equals_correlation_with_the_segment(seed):
    """out[y, x] = OR mask[(y, x) + o] over the segment's offsets o: scipy.ndimage.correlate with those offsets."""
    r = np.random.default_rng(seed)
    m = r.random((int(r.integers(5, 45)), int(r.integers(5, 45)))) < r.choice([0.01, 0.05, 0.3])
    q = int(r.integers(1, 17))
    p, sign = int(r.integers(-q, q + 1)), int(r.choice([-1, 1]))
    kmin = int(r.integers(0, 8))
    kmax = kmin + int(r.integers(0, 50))
    transpose = bool(r.integers(0, 2))
    offsets = _line_offsets(p, q, sign, kmin, kmax, transpose)
    reach = max(max(abs(a), abs(b)) for a, b in offsets)
    weights = np.zeros((2 * reach + 1, 2 * reach + 1))
    for oy, ox in offsets:
        weights[reach + oy, reach + ox] = 1
    ref = ndi.correlate(m.astype(float), weights, mode="constant") > 0
    np.testing.assert_array_equal(dilate_line(m, p, q, sign, kmin, kmax, transpose), ref)


def test_class_mask_both_paths_equal_isin():
    """Classes below 64 take the 64-bit-word path, others the table; both are np.isin."""
    from geoproc.kernels.masking import class_lut, class_mask

    codes = rng.integers(-3, 256, 30_000).astype(np.int16)
    for classes in ((0, 1, 3, 8, 9, 10), (0, 63), (3, 64, 200, 255)):
        got = class_mask(codes, class_lut(classes))
        np.testing.assert_array_equal(got, np.isin(codes, classes))
        assert got.dtype == np.bool_


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64])
def test_bit_mask_in_every_integer_width(dtype):
    """The kernel works in the codes' own width: masks with bits beyond it never match, negative codes are False."""
    info = np.iinfo(dtype)
    codes = rng.integers(max(info.min, -1000), min(info.max, 2**20), 5000).astype(dtype)
    masks = [3 << 8, 0b101, 3 << 14, 1 << 30]
    any_bits = 0b1000 | (1 << 12)
    np.testing.assert_array_equal(bit_mask(codes, any_bits, _all_bits(masks)), _bits_reference(codes, any_bits, masks))
