"""Texture and edges: geoproc's GLCM features, Sobel and Canny vs scikit-image (and scipy) on one band.

What is measured
----------------
One float32 band of ``--size`` x ``--size`` px (4096; 1024 with ``--quick``),
in memory: the red band of a real Landsat 7 scene (``rasterio/RGB.byte.tif``
from ../shared/data, 718 x 791 px, 0 = nodata -> NaN, divided by 255) mirrored
out to that size, so it holds real texture, edges and nodata borders.

* **GLCM**: 7 x 7 window, 32 grey levels over a fixed range (0, 1), distance 1,
  angles 0/45/90/135 degrees averaged, 7 features (contrast, dissimilarity,
  homogeneity, ASM, energy, correlation, entropy). scikit-image has no moving
  window GLCM, so its figure is a Python loop that calls ``graycomatrix`` +
  ``graycoprops`` (one call per feature) on every window: timed on a
  ``--glcm-sample`` x ``--glcm-sample`` area of fully valid windows and scaled
  per pixel to the whole image (marked "extrapolated"). Its values are checked
  against geoproc's on that area.
* **Sobel**: the magnitude alone (``skimage.filters.sobel``) and the magnitude
  with the direction (what ``scipy.ndimage.sobel`` along both axes, ``hypot``
  and ``arctan2`` give).
* **Canny**: ``skimage.feature.canny(nan_to_num(img), sigma=2, low, high,
  mask=~isnan(img))``, the call that handles nodata, against
  ``geoproc.canny``; the outputs are compared pixel for pixel.

geoproc runs on numpy input (one call, one thread; processed in 1024 px tiles)
and on Dask (1024 x 1024 chunks; 512 with ``--quick``) with the threads
scheduler on 1 and then 2 threads, which gives the scaling over 2 cores.
scikit-image and scipy are single-threaded. Times are the best of ``--repeat``
runs, after a warm-up on a small image (numba compiles, or loads from its
cache, on first use); ``CPU s`` is the CPU time of that run summed over threads
(2 busy threads: about twice the wall time). On a shared machine the second
core may be busy with other work: ``--wait-load`` waits for a quiet moment.

Usage::

    python benchmarks/bench_texture.py            # writes benchmarks/RESULTS.md
    python benchmarks/bench_texture.py --quick    # 1024 px; prints only
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time
from collections.abc import Callable

import dask
import numpy as np
import xarray as xr

from _common import machine, markdown_table, today, update_results, versions

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
SECTION = "Texture and edges"
SCENE = os.path.join(HERE, "..", "..", "shared", "data", "rasterio", "RGB.byte.tif")
ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_KW = dict(window=7, levels=32, distances=(1,), angles=ANGLES, value_range=(0.0, 1.0))
SK_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation", "entropy")
SIGMA, LOW, HIGH = 2.0, 0.02, 0.06


def best(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Wall seconds of the fastest of ``repeat`` runs, and the CPU seconds (all threads) of that run."""
    runs = []
    for _ in range(repeat):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        func()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(runs)


def make_image(size: int) -> np.ndarray:
    import rasterio

    with rasterio.open(SCENE) as src:
        band = src.read(1).astype(np.float32)
    band[band == 0] = np.nan
    band /= 255
    reps = (math.ceil(size / band.shape[0]), math.ceil(size / band.shape[1]))
    tiles = np.block([[band[:: (-1) ** i, :: (-1) ** j] for j in range(reps[1])] for i in range(reps[0])])
    return np.ascontiguousarray(tiles[:size, :size])


def skimage_glcm_loop(img: np.ndarray, y0: int, x0: int, n: int) -> np.ndarray:
    """The 7 features of every window centred in ``img[y0:y0+n, x0:x0+n]``, by skimage, window by window."""
    from skimage.feature import graycomatrix, graycoprops

    lo, hi = GLCM_KW["value_range"]
    levels, r = GLCM_KW["levels"], GLCM_KW["window"] // 2
    area = img[y0 - r : y0 + n + r, x0 - r : x0 + n + r].astype(np.float64)  # NaN-free (see valid_area)
    q = np.clip(np.floor((area - lo) / (hi - lo) * levels), 0, levels - 1).astype(np.uint8)
    out = np.empty((len(SK_PROPS), n, n))
    for y in range(n):
        for x in range(n):
            patch = q[y : y + 2 * r + 1, x : x + 2 * r + 1]
            glcm = graycomatrix(patch, [1], ANGLES, levels=levels, symmetric=True)
            for f, prop in enumerate(SK_PROPS):
                out[f, y, x] = graycoprops(glcm, prop).mean()
    return out


def valid_area(img: np.ndarray, n: int, margin: int) -> tuple[int, int]:
    """Top-left corner of an ``n`` x ``n`` area whose windows (``margin`` px around) hold no NaN."""
    bad = np.isnan(img)
    step = max(n // 2, 1)
    for y in range(margin, img.shape[0] - n - margin, step):
        for x in range(margin, img.shape[1] - n - margin, step):
            if not bad[y - margin : y + n + margin, x - margin : x + n + margin].any():
                return y, x
    raise SystemExit("no NaN-free area for the skimage GLCM sample; lower --glcm-sample")


def run(size: int, repeat: int, chunk: int, sample: int) -> tuple[list[list[object]], list[list[object]], str]:
    from scipy import ndimage as ndi
    from skimage.feature import canny as sk_canny
    from skimage.filters import sobel as sk_sobel

    from geoproc.edges import canny, sobel
    from geoproc.texture import glcm

    img = make_image(size)
    arr = xr.DataArray(img, dims=("y", "x"))
    lazy = arr.chunk({"y": chunk, "x": chunk})
    mpx = img.size / 1e6
    # warm-up: numba compiles (or loads its cache) on first use
    small = arr[:64, :64]
    glcm(small, **GLCM_KW).values, sobel(small).magnitude.values, canny(small.chunk(32), sigma=SIGMA).values

    def threads(n: int, func: Callable[[], object]) -> Callable[[], object]:
        def call():
            with dask.config.set(scheduler="threads", num_workers=n):
                return func()

        return call

    rows: list[list[object]] = []
    checks: list[list[object]] = []

    def add(op: str, who: str, timing: tuple[float, float], ref: tuple[float, float], note: str = "") -> None:
        seconds, cpu = timing
        rows.append([op, who, f"{seconds:.3f}", f"{cpu:.3f}", f"{seconds / mpx * 1e3:.1f}", f"{ref[0] / seconds:.1f}x",
                     note])  # fmt: skip

    # GLCM
    y0, x0 = valid_area(img, sample, GLCM_KW["window"] // 2)
    t0 = time.perf_counter()
    sk_vals = skimage_glcm_loop(img, y0, x0, sample)
    sk_per_px = (time.perf_counter() - t0) / sample**2
    sk_glcm = (sk_per_px * img.size,) * 2
    add("GLCM 7 features", "skimage graycomatrix + graycoprops, loop over windows", sk_glcm, sk_glcm,
        f"extrapolated from {sample}x{sample} windows")  # fmt: skip
    res: dict[str, np.ndarray] = {}
    add("GLCM 7 features", "geoproc.glcm, numpy",
        best(lambda: res.update(g=glcm(arr, **GLCM_KW).values), repeat), sk_glcm)  # fmt: skip
    for n in (1, 2):
        add("GLCM 7 features", f"geoproc.glcm, dask {n} thread{'s' * (n > 1)}",
            best(threads(n, lambda: glcm(lazy, **GLCM_KW).values), repeat), sk_glcm)  # fmt: skip
    ours = res["g"][:, 0, y0 : y0 + sample, x0 : x0 + sample]
    checks.append(["GLCM, skimage loop vs geoproc", f"max abs diff {np.abs(ours - sk_vals).max():.1e}",
                   f"{sample}x{sample} px x 7 features"])  # fmt: skip

    # Sobel magnitude
    sk_mag = best(lambda: res.update(s=sk_sobel(img)), repeat)
    add("Sobel magnitude", "skimage.filters.sobel", sk_mag, sk_mag)
    add("Sobel magnitude", "geoproc.sobel(direction=False), numpy",
        best(lambda: res.update(m=sobel(arr, direction=False).magnitude.values), repeat), sk_mag)  # fmt: skip
    for n in (1, 2):
        add("Sobel magnitude", f"geoproc.sobel(direction=False), dask {n} thread{'s' * (n > 1)}",
            best(threads(n, lambda: sobel(lazy, direction=False).magnitude.values), repeat), sk_mag)  # fmt: skip
    scaled = res["m"] / (4 * np.sqrt(2))
    ok = ~np.isnan(res["s"]) & ~np.isnan(scaled)
    rel = np.abs(scaled[ok] - res["s"][ok]) / np.maximum(np.abs(res["s"][ok]), 1e-6)
    extra_nan = int((np.isnan(scaled) & ~np.isnan(res["s"])).sum())
    checks.append(["Sobel magnitude / (4 sqrt 2) vs skimage", f"max rel diff {rel.max():.1e} where both are finite",
                   f"{extra_nan} px NaN in geoproc only (NaN in a zero-weight pixel of the 3 x 3, which "
                   "skimage's 2-D correlate skips and scipy.ndimage.sobel does not)"])  # fmt: skip

    # Sobel magnitude + direction
    def scipy_sobel():
        gx, gy = ndi.sobel(img, axis=1), ndi.sobel(img, axis=0)
        return np.hypot(gx, gy), np.arctan2(gy, gx)

    sp = best(scipy_sobel, repeat)
    add("Sobel magnitude + direction", "scipy.ndimage.sobel x2, hypot, arctan2", sp, sp)
    add("Sobel magnitude + direction", "geoproc.sobel, numpy",
        best(lambda: sobel(arr).to_dataarray().values, repeat), sp)  # fmt: skip
    for n in (1, 2):
        add("Sobel magnitude + direction", f"geoproc.sobel, dask {n} thread{'s' * (n > 1)}",
            best(threads(n, lambda: sobel(lazy).to_dataarray().values), repeat), sp)  # fmt: skip

    # Canny
    valid = ~np.isnan(img)
    filled = np.nan_to_num(img)
    skc = best(lambda: res.update(c=sk_canny(filled, SIGMA, LOW, HIGH, mask=valid)), repeat)
    add("Canny", "skimage.feature.canny (mask = valid pixels)", skc, skc)
    kw = dict(sigma=SIGMA, low_threshold=LOW, high_threshold=HIGH)
    add("Canny", "geoproc.canny, numpy", best(lambda: res.update(cn=canny(arr, **kw).values), repeat), skc)
    for n in (1, 2):
        add("Canny", f"geoproc.canny, dask {n} thread{'s' * (n > 1)}",
            best(threads(n, lambda: res.update(cd=canny(lazy, **kw).values)), repeat), skc)  # fmt: skip
    for name, key in (("numpy", "cn"), ("dask", "cd")):
        diff = int((res[key] != res["c"]).sum())
        checks.append([f"Canny, geoproc ({name}) vs skimage", f"{diff} px differ",
                       f"{int(res['c'].sum())} edge px ({res['c'].mean():.1%})"])  # fmt: skip
    info = f"{sample}x{sample} windows of skimage: {sk_per_px * 1e6:.0f} us per pixel"
    return rows, checks, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1024 px, 512 px chunks, 2 repeats; prints only")
    parser.add_argument("--size", type=int, default=None, help="px per side (default 4096; 1024 with --quick)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per contender (default 3)")
    parser.add_argument("--glcm-sample", type=int, default=None, help="side of skimage's GLCM sample (default 64)")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument(
        "--wait-load", type=float, default=None, help="first wait (up to 20 min) for a 1-min load average below this"
    )
    args = parser.parse_args(argv)
    if args.wait_load is not None:
        deadline = time.time() + 1200
        while os.getloadavg()[0] >= args.wait_load and time.time() < deadline:
            time.sleep(10)
    size = args.size or (1024 if args.quick else 4096)
    repeat = args.repeat or (2 if args.quick else 3)
    chunk = 512 if args.quick else 1024
    sample = args.glcm_sample or (32 if args.quick else 64)
    load = os.getloadavg()
    rows, checks, info = run(size, repeat, chunk, sample)
    header = ["operation", "contender", "wall s", "CPU s", "wall ms per Mpx", "speed vs reference", "note"]
    table = markdown_table(header, rows, "llrrrrl")
    check_table = markdown_table(["agreement", "result", "on"], checks, "lll")
    v = versions()
    try:
        from importlib.metadata import version

        extra = f", scikit-image {version('scikit-image')}, scipy {version('scipy')}"
    except Exception:  # noqa: BLE001
        extra = ""
    command = "python benchmarks/bench_texture.py" + (" --quick" if args.quick else "")
    command += f" --wait-load {args.wait_load:g}" if args.wait_load is not None else ""
    body = (
        f"Date: {today()}. Machine: {machine()}; load average before the runs {load[0]:.2f} / {load[1]:.2f} "
        "(1 / 5 min; other work on the machine adds noise).\n"
        f"Versions: geoproc {v['geoproc']}, dask {v['dask']}, numba {v['numba']}, numpy {v['numpy']}{extra}.\n"
        f"Command: `{command}`. Image: {size} x {size} px float32, the red band of rasterio's RGB.byte.tif "
        f"(real Landsat 7, nodata as NaN) mirrored out; Dask chunks {chunk} x {chunk}, threads scheduler. "
        f"Best of {repeat} runs. The reference of each operation (speed 1.0x) is the single-threaded "
        "scikit-image / scipy call; geoproc's numpy and 1-thread rows compare per core, the 2-thread row "
        "shows the scaling. CPU s is the process's CPU time over all its threads: a 2-thread run that got both "
        f"cores shows about twice its wall time. GLCM: {info}, times the whole image.\n\n"
        f"{table}\n\n{check_table}\n"
    )
    print(body)
    if not (args.no_save or args.quick):
        update_results(RESULTS, SECTION, body)
        print(f"saved to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
