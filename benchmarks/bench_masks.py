"""Speed of the mask kernels: quality-band decoders, Fmask pixel tests, shadow step, morphology.

What is measured
----------------
On one 4096 x 4096 px scene (``--quick``: 1024 x 1024), in this process, one
thread, best of ``--repeats`` (default 10; the whole classification and the
morphology: half as many) wall times after a warm-up call. The best of many
runs is what the code can do; on a shared machine the median is mostly other
people's load (the load average is printed with the results):

* **QA_PIXEL decoder**: ``qa_pixel_mask_array`` (default flags: fill, dilated
  cloud, cirrus, cloud, shadow; and the same plus cloud confidence >= medium)
  on uint16 codes drawn from the real Landsat 8 scene's QA_PIXEL values, vs the
  numpy expression of the same bits and the same expression on an
  ``xarray.DataArray``.
* **SCL decoder**: ``scl_mask_array`` (default classes) vs ``np.isin`` and
  ``DataArray.isin``.
* **Fmask pixel tests**: the ``fmask_tests`` kernel (6 float32 bands in; flags,
  quantised NIR and SWIR out) vs the plain numpy and xarray expressions of the
  published tests (potential cloud, water, snow; what ``tests/kernels`` checks
  it against). Twice: as the process starts, and after telling glibc
  (``mallopt``) to keep freed memory. By default glibc returns large freed
  arrays to the operating system and every new one arrives as fresh pages that
  the system zero-fills on first touch. The kernel's outputs are allocated by
  numpy, which asks for transparent huge pages for large arrays, so that costs
  ~3 ms per 64 MiB; allocated inside the kernel by numba (4 KiB pages) they
  cost ~28 ms per 64 MiB, more than the tests (114 ms in all, before the
  change). The rows after these run with memory kept.
* **Whole spectral classification** (pixel tests + 3 x 3 fill + shadow
  darkness against a 500 m background + shadow zone within 2 km of clouds, or
  projected along the sun for 200-6,000 m high clouds at 45 degrees) on one
  date at 10 m: absolute time only (nothing else does this step).
* **Morphology**: ``dilate`` (disk, radius 10 px) vs
  ``scipy.ndimage.binary_dilation`` with the same disk; ``remove_small_objects``
  (50 px, 8-connected) vs ``skimage.morphology.remove_small_objects``.

Memory bandwidth: a decoder reads its inputs and writes its output once, so
its speed is reported as (bytes read + bytes written) / time, next to what
``np.copyto`` reaches copying the same number of input bytes (read + write),
measured here in the same way, and next to a 64 MiB float32 copy (larger than
the caches: the machine's memory bandwidth, as ``bench_kernels.py`` takes it).

Usage::

    python benchmarks/bench_masks.py            # writes its section of benchmarks/RESULTS.md
    python benchmarks/bench_masks.py --quick    # 1024 x 1024, prints only
    python benchmarks/bench_masks.py --no-save
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import xarray as xr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, markdown_table, today, update_results, versions  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data")
SECTION = "Mask kernels"
QA_FILE = "stactools-landsat/LC08_L2SP_008059_20191201_20200825_02_T1/LC08_L2SP_008059_20191201_20200825_02_T1_QA_PIXEL.TIF"


def best(func, repeats: int) -> float:
    func()  # warm-up: compilation, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes per second that np.copyto moves (read + write) copying ``nbytes``."""
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    return 2 * nbytes / best(lambda: np.copyto(dst, src), repeats)


def qa_codes(n: int, rng) -> np.ndarray:
    path = os.path.join(DATA, QA_FILE)
    if os.path.exists(path):
        import rasterio

        with rasterio.open(path) as src:
            pool = src.read(1).ravel()
    else:  # a few typical Landsat 8 codes
        pool = np.array([1, 21824, 21826, 22080, 22280, 23888, 24088, 54596, 55052], np.uint16)
    return rng.choice(pool, size=(n, n)).astype(np.uint16)


def spectra(n: int, rng) -> list[np.ndarray]:
    kinds = np.array([
        [0.50, 0.50, 0.49, 0.52, 0.40, 0.30], [0.035, 0.065, 0.04, 0.38, 0.19, 0.09],
        [0.10, 0.13, 0.17, 0.24, 0.31, 0.27], [0.07, 0.06, 0.04, 0.02, 0.012, 0.008],
    ], np.float32)
    pick = rng.integers(0, len(kinds), (n, n))
    noise = rng.normal(1.0, 0.05, (n, n)).astype(np.float32)
    return [np.ascontiguousarray(kinds[pick, i] * noise) for i in range(6)]


def keep_pages() -> bool:
    """Make glibc keep freed memory (no fresh, zero-filled pages for every large array); False if not glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def numpy_fmask(b, g, r, n, s1, s2):
    """The published tests as a user would write them in numpy (what the kernel is tested against)."""
    b, g, r, n, s1, s2 = (np.maximum(x, 1e-5) for x in (b, g, r, n, s1, s2))
    ndvi = (n - r) / (n + r)
    ndsi = (g - s1) / (g + s1)
    mean = (b + g + r) / 3
    whiteness = (abs(b - mean) + abs(g - mean) + abs(r - mean)) / mean
    pcp = (s2 > 0.03) & (ndsi < 0.8) & (ndvi < 0.8) & (whiteness < 0.7) & (b - 0.5 * r - 0.08 > 0) & (n / s1 > 0.75)
    water = ((ndvi < 0.01) & (n < 0.11)) | ((ndvi > 0) & (ndvi < 0.1) & (n < 0.05))
    snow = (ndsi > 0.15) & (n > 0.11) & (g > 0.1)
    return pcp, water, snow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024 x 1024 px; prints only")
    parser.add_argument("--size", type=int, default=4096, help="scene side in px (default 4096)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per case (best is reported)")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    n = 1024 if args.quick else args.size
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    load_before = os.getloadavg()

    import scipy.ndimage as ndi
    import skimage.morphology as skm

    from geoproc.kernels.spectral_mask import fmask_tests
    from geoproc.masking import SCL_DEFAULT_MASK, qa_pixel_mask_array, scl_mask_array
    from geoproc.morphology import dilate_array, remove_small_objects_array
    from geoproc.spectral_mask import FmaskThresholds, spectral_classes

    rng = np.random.default_rng(0)
    rows = []
    px = n * n

    big = copy_bandwidth(4096 * 4096 * 4, args.repeats)  # 64 MiB, more than the caches hold: memory bandwidth

    def row(name, t_geo, t_np, t_xr, bytes_moved, copy_bw):
        eff = bytes_moved / t_geo
        rows.append([
            name, f"{t_geo * 1e3:.1f}", f"{t_np * 1e3:.1f}" if t_np else "-", f"{t_xr * 1e3:.1f}" if t_xr else "-",
            f"{t_np / t_geo:.1f}x" if t_np else "-", f"{t_xr / t_geo:.1f}x" if t_xr else "-",
            f"{px / t_geo / 1e6:.0f}",
            f"{eff / 1e9:.1f}" if copy_bw else "-",
            f"{copy_bw / 1e9:.1f} ({eff / copy_bw:.0%})" if copy_bw else "-",
            f"{eff / big:.0%}" if copy_bw else "-",
        ])

    # QA_PIXEL
    qa = qa_codes(n, rng)
    qa_x = xr.DataArray(qa, dims=("y", "x"))
    bw = copy_bandwidth(qa.nbytes, args.repeats)
    t_geo = best(lambda: qa_pixel_mask_array(qa), args.repeats)
    t_np = best(lambda: (qa & 0b11111) != 0, args.repeats)
    t_xr = best(lambda: ((qa_x & 0b11111) != 0).values, args.repeats)
    row("QA_PIXEL, default flags", t_geo, t_np, t_xr, qa.nbytes + px, bw)
    conf = {"cloud": "medium"}
    t_geo = best(lambda: qa_pixel_mask_array(qa, confidence=conf), args.repeats)
    t_np = best(lambda: ((qa & 0b11111) != 0) | (((qa >> 8) & 3) >= 2), args.repeats)
    t_xr = best(lambda: (((qa_x & 0b11111) != 0) | (((qa_x >> 8) & 3) >= 2)).values, args.repeats)
    row("QA_PIXEL, + cloud confidence >= medium", t_geo, t_np, t_xr, qa.nbytes + px, bw)

    # SCL
    scl = rng.integers(0, 12, (n, n)).astype(np.uint8)
    scl_x = xr.DataArray(scl, dims=("y", "x"))
    bw = copy_bandwidth(scl.nbytes, args.repeats)
    t_geo = best(lambda: scl_mask_array(scl), args.repeats)
    t_np = best(lambda: np.isin(scl, SCL_DEFAULT_MASK), args.repeats)
    t_xr = best(lambda: scl_x.isin(SCL_DEFAULT_MASK).values, args.repeats)
    row("SCL, default classes", t_geo, t_np, t_xr, scl.nbytes + px, bw)

    # Fmask pixel tests
    bands = spectra(n, rng)
    flat = [b.reshape(-1) for b in bands]
    decode = np.tile([1.0, 0.0, np.nan], (7, 1))
    thr = FmaskThresholds().pixel_tests()
    empty = np.zeros(0, np.float32)
    in_bytes = sum(b.nbytes for b in bands)
    bw = copy_bandwidth(in_bytes, args.repeats)
    t_geo = best(lambda: fmask_tests(*flat, empty, decode, thr, False), args.repeats)
    with np.errstate(all="ignore"):
        t_np = best(lambda: numpy_fmask(*bands), args.repeats)
        xb = [xr.DataArray(b, dims=("y", "x")) for b in bands]
        t_xr = best(lambda: [v.values for v in numpy_fmask(*xb)], args.repeats)
    row("Fmask pixel tests (6 float32 bands)", t_geo, t_np, t_xr, in_bytes + px * 5, bw)
    if keep_pages():  # the same, with freed memory kept by malloc instead of returned to the OS
        t_geo = best(lambda: fmask_tests(*flat, empty, decode, thr, False), args.repeats)
        with np.errstate(all="ignore"):
            t_np = best(lambda: numpy_fmask(*bands), args.repeats)
            t_xr = best(lambda: [v.values for v in numpy_fmask(*xb)], args.repeats)
        row("Fmask pixel tests, memory kept by malloc", t_geo, t_np, t_xr, in_bytes + px * 5, bw)

    # whole classification and morphology (no bandwidth figure: neighbourhood work)
    coords = {"y": 5e6 - np.arange(n) * 10.0, "x": 4e5 + np.arange(n) * 10.0}
    ds = xr.Dataset({k: (("y", "x"), b) for k, b in zip(("blue", "green", "red", "nir", "swir16", "swir22"), bands)}, coords=coords)
    reps = max(1, args.repeats // 2)
    t_geo = best(lambda: spectral_classes(ds).values, reps)
    row("spectral_classes, shadows within 2 km", t_geo, None, None, in_bytes, None)
    t_geo = best(lambda: spectral_classes(ds, sun_azimuth=150.0, sun_elevation=45.0).values, reps)
    row("spectral_classes, shadows projected (sun at 45 deg)", t_geo, None, None, in_bytes, None)

    mask = rng.random((n, n)) < 0.01
    yy, xx = np.mgrid[-10:11, -10:11]
    disk = yy**2 + xx**2 <= 100
    t_geo = best(lambda: dilate_array(mask, 10.0), reps)
    t_sp = best(lambda: ndi.binary_dilation(mask, structure=disk), reps)
    row("dilate, disk radius 10 px", t_geo, t_sp, None, mask.nbytes * 2, None)
    blobs = rng.random((n, n)) < 0.45
    t_geo = best(lambda: remove_small_objects_array(blobs, 50), reps)
    try:
        skm.remove_small_objects(blobs[:8, :8], max_size=49, connectivity=2)
        size_kw = {"max_size": 49}
    except TypeError:  # scikit-image < 0.26
        size_kw = {"min_size": 50}
    t_sk = best(lambda: skm.remove_small_objects(blobs, connectivity=2, **size_kw), reps)
    row("remove_small_objects, 50 px", t_geo, t_sk, None, blobs.nbytes * 2, None)

    header = ["case", "geoproc ms", "numpy / scipy / skimage ms", "xarray ms", "speed-up vs numpy/scipy/skimage",
              "speed-up vs xarray", "Mpx/s", "GB/s moved", "np.copyto of the same bytes, GB/s (share reached)",
              f"share of np.copyto of 64 MiB ({big / 1e9:.1f} GB/s)"]
    table = markdown_table(header, rows, "l" + "r" * 9)
    v = versions()
    body = (
        f"Date: {today()}. Machine: {machine()}. Versions: geoproc {v['geoproc']}, numba {v['numba']}, numpy {v['numpy']}, "
        f"xarray {v['xarray']}.\nCommand: `python benchmarks/bench_masks.py{' --quick' if args.quick else ''}`. Scene "
        f"{n} x {n} px, one thread, best of {args.repeats} (whole classification and morphology: best of {reps}); "
        f"load average before the runs {load_before[0]:.2f} / {load_before[1]:.2f} (1 / 5 min; 2 cores). "
        "The numpy and xarray columns compute the same masks with plain expressions; morphology compares with "
        "scipy.ndimage.binary_dilation and skimage.morphology.remove_small_objects. GB/s moved: bytes read + written "
        "by the kernel per second (its output is a new array, as numpy's is), next to np.copyto (read + write) "
        "copying as many bytes as the kernel reads, between existing arrays; inputs of 16-32 MiB partly stay in "
        "the CPU caches there, so the last column also compares with a 64 MiB copy (the memory bandwidth, as "
        "bench_kernels.py measures it). From the row 'memory kept by malloc' on, glibc keeps freed memory "
        "(mallopt) instead of handing every large new array fresh zero-filled pages (the row before it pays for "
        "them; see the script's docstring).\n\n" + table
    )
    print(table)
    if not (args.no_save or args.quick):
        update_results(RESULTS, SECTION, body)
        print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
