"""Filters and enhancement, side by side: geoproc vs scipy.ndimage / scikit-image / numpy, one core and two.

What is measured
----------------
A float32 array of ``--bands`` x ``--size`` x ``--size`` px (default 2 x 4096 x 4096;
``--quick``: 2 x 1024 x 1024): a smooth random field plus noise, without NaN (the
references do not skip NaN). Each operation runs three ways:

1. **reference, 1 thread**: what a user would call instead, band by band:
   ``scipy.ndimage.median_filter`` / ``gaussian_filter``,
   ``skimage.restoration.denoise_bilateral``, the usual numpy Lee filter (two
   ``scipy.ndimage.uniform_filter`` passes and the Lee 1980 weights),
   ``np.nanpercentile`` + ``np.clip`` for the percentile stretch,
   ``skimage.exposure.adjust_gamma``, ``equalize_hist`` and ``equalize_adapthist``.
   All of them run on one core.
2. **geoproc, 1 thread**: the public function on the numpy-backed DataArray (the
   numba kernel on the whole array, one core). "speed-up per core" is reference /
   geoproc.
3. **geoproc + dask, 1 and 2 threads**: the same call on the array chunked
   ``--chunk`` px (default 1024; one band per chunk), stored with ``da.store`` into a
   preallocated array (each task writes its chunk, as writing Zarr does), with dask's
   threaded scheduler and ``num_workers`` 1 then 2 (graph building included).
   "2-thread scaling" is the 1-thread time / the 2-thread time (2.0 is perfect).
   "bands on 2 threads, no dask" is the same ratio for the numpy-backed call run on
   each band, the bands shared out to a thread pool: it shows that the whole call
   releases the GIL. "ceiling" is the ratio for a GIL-free numba loop timed in the
   same rounds: what the machine allowed then (2.0 on idle cores; lower while other
   work holds a core). The three are timed interleaved, round by round.

Point operations (stretch with known limits, gamma) are limited by memory
bandwidth: they are also reported as GB/s (bytes read + written) and as a fraction
of ``np.copyto`` between two preallocated arrays of the same size (the bandwidth a
single core gets here). geoproc allocates its output on each call (as
``src.copy()`` does, also shown).

Times are the best of ``--repeats`` runs (default 3); a reference that takes more
than 5 s per run is run once. The machine is shared: the load average before the
runs is printed with the results; compare ratios from one run of the script.

Usage::

    python benchmarks/bench_filters.py            # 2 x 4096 x 4096; writes benchmarks/RESULTS.md
    python benchmarks/bench_filters.py --quick    # 2 x 1024 x 1024; prints only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version

import dask
import dask.array as da
import numba
import numpy as np
import scipy.ndimage as ndi
import xarray as xr

from _common import machine, markdown_table, today, update_results, versions

from geoproc.enhance import adjust_gamma, clahe, equalize_hist, stretch
from geoproc.filters import bilateral_filter, gaussian_filter, lee_filter, median_filter

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Filters and enhancement"
#: a reference slower than this (seconds per run) is run once
SLOW = 5.0


def make_data(bands: int, size: int, seed: int = 0) -> np.ndarray:
    """A smooth random field (Gaussian-blurred noise) plus pixel noise, scaled to about [0, 1]."""
    rng = np.random.default_rng(seed)
    out = np.empty((bands, size, size), np.float32)
    for b in range(bands):
        field = ndi.gaussian_filter(rng.standard_normal((size // 8, size // 8)).astype(np.float32), 2.0)
        field = np.kron(field, np.ones((8, 8), np.float32))
        out[b] = field / (4 * field.std()) + 0.5 + 0.05 * rng.standard_normal((size, size)).astype(np.float32)
    return out


def best_of(func: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (one call if the first takes more than :data:`SLOW`)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
        if times[0] > SLOW:
            break
    return min(times)


# --------------------------------------------------------------------------- the references


def per_band(func: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: np.stack([func(a[b]) for b in range(a.shape[0])])


def lee_numpy(img: np.ndarray, size: int = 7, looks: float = 1.0) -> np.ndarray:
    """The Lee filter as usually written with scipy (multiplicative speckle, intensity)."""
    x = img.astype(np.float64)
    mean = ndi.uniform_filter(x, size)
    var = np.maximum(ndi.uniform_filter(x * x, size) - mean * mean, 0)
    cu2 = 1.0 / looks
    noise = mean * mean * cu2
    var_x = np.maximum((var - noise) / (1 + cu2), 0)
    den = var_x + noise
    k = np.divide(var_x, den, out=np.zeros_like(den), where=den > 0)
    return (mean + k * (x - mean)).astype(np.float32)


def stretch_numpy(img: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(img, (2, 98))
    return np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)


def _skimage():
    from skimage import exposure
    from skimage.restoration import denoise_bilateral

    return exposure, denoise_bilateral


@dataclass
class _Lazy:
    """``func(arg)`` computed when ``.values`` is read (for the thread pool of :func:`thread_times`)."""

    func: Callable[[xr.DataArray], xr.DataArray]
    arg: xr.DataArray

    @property
    def values(self) -> np.ndarray:
        return self.func(self.arg).values


@dataclass
class Op:
    """One operation: its geoproc call and the reference a user would pick."""

    name: str
    geoproc: Callable[[xr.DataArray], xr.DataArray]
    reference: Callable[[np.ndarray], np.ndarray]
    reference_name: str
    point: bool = False  # a point operation: bandwidth figures
    unit: bool = False  # the reference needs values in [0, 1]: both get the data clipped


def operations(size: int) -> list[Op]:
    exposure, denoise_bilateral = _skimage()
    tile = size // 8
    med, pct_clip = "scipy median_filter", "np.nanpercentile + np.clip"
    return [
        *(
            Op(f"median {k} x {k}", partial(median_filter, size=k), per_band(partial(ndi.median_filter, size=k)), med)
            for k in (3, 5)
        ),
        Op(
            "gaussian sigma 2",
            lambda d: gaussian_filter(d, 2.0),
            per_band(partial(ndi.gaussian_filter, sigma=2.0)),
            "scipy gaussian_filter",
        ),
        Op(
            "bilateral 7 x 7",
            lambda d: bilateral_filter(d, sigma_color=0.1, sigma_spatial=1.0, size=7),
            per_band(lambda a: denoise_bilateral(a, win_size=7, sigma_color=0.1, sigma_spatial=1.0, mode="symmetric")),
            "skimage denoise_bilateral",
        ),
        Op("Lee 7 x 7", lambda d: lee_filter(d, 7, looks=1), per_band(lee_numpy), "scipy uniform_filter x 2 + numpy"),
        Op("stretch 2-98 % (global)", partial(stretch, percentiles=(2, 98)), per_band(stretch_numpy), pct_clip),
        Op(
            "stretch, known limits",
            lambda d: stretch(d, limits=(0.2, 0.8)),
            lambda a: np.clip((a - np.float32(0.2)) / np.float32(0.6), 0, 1),
            "numpy (a - lo) / (hi - lo), clip",
            point=True,
        ),
        Op(
            "gamma 0.5",
            lambda d: adjust_gamma(d, 0.5),
            partial(exposure.adjust_gamma, gamma=0.5),
            "skimage adjust_gamma",
            point=True,
            unit=True,
        ),
        Op("histogram equalisation", equalize_hist, per_band(exposure.equalize_hist), "skimage equalize_hist"),
        Op(
            f"CLAHE, {tile} px tiles",
            lambda d: clahe(d, kernel_size=tile),
            per_band(lambda a: exposure.equalize_adapthist(a, kernel_size=tile)),
            "skimage equalize_adapthist",
            unit=True,
        ),
    ]


# --------------------------------------------------------------------------- run


@numba.njit(nogil=True, cache=True)
def _busy(n: int) -> float:
    s = 0.0
    for i in range(n):
        s += (i % 7) * 0.5
    return s


def _busy_run(pool: ThreadPoolExecutor) -> None:
    list(pool.map(_busy, [40_000_000] * 4))


def thread_times(
    build: Callable[[], xr.DataArray], sink: np.ndarray, bands: list[_Lazy], repeats: int
) -> dict[str, float]:
    """Best times on 1 and 2 threads, interleaved round by round, of three things.

    * ``dask k``: building the lazy result and ``da.store``-ing it into the preallocated
      ``sink`` with dask's threaded scheduler, ``num_workers=k`` (each task writes its
      chunk, as writing Zarr does, so nothing serial follows the tasks);
    * ``bands k``: the numpy-backed public function on each band, the bands shared out
      to ``k`` threads (no dask: shows whether the whole call releases the GIL);
    * ``ceiling k``: a GIL-free numba loop, 4 pieces on ``k`` threads: the speed-up the
      machine allowed in that round (2.0 on idle cores; lower while other work holds a
      core, and the other ratios then say more about the machine than about the code).
    """
    _busy(10)
    times: dict[str, list[float]] = {}
    with ThreadPoolExecutor(1) as one, ThreadPoolExecutor(2) as two:
        for _ in range(repeats):
            for k, pool in ((1, one), (2, two)):
                with dask.config.set(scheduler="threads", num_workers=k):
                    t0 = time.perf_counter()
                    da.store(build().data, sink, lock=False)
                    times.setdefault(f"dask {k}", []).append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                list(pool.map(lambda b: b.values, bands))
                times.setdefault(f"bands {k}", []).append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                _busy_run(pool)
                times.setdefault(f"ceiling {k}", []).append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def run(bands: int, size: int, chunk: int, repeats: int) -> tuple[list[list[object]], list[list[object]], str]:
    data = make_data(bands, size)
    arr = xr.DataArray(data, dims=("band", "y", "x"))
    lazy = arr.chunk({"band": 1, "y": chunk, "x": chunk})
    unit = np.clip(data, 0, 1)  # skimage's adjust_gamma and equalize_adapthist refuse values outside [0, 1]
    small = arr.isel(y=slice(0, 64), x=slice(0, 64))
    rows, point_rows = [], []
    nbytes = 2 * data.nbytes  # read + write
    dst = np.empty_like(data)
    sink = np.zeros_like(data)
    sink[...] = 1  # fault its pages in once
    t_copyto = best_of(lambda: np.copyto(dst, data), max(repeats, 5))
    t_copy = best_of(lambda: data.copy(), max(repeats, 5))
    for op in operations(size):
        src, x, xl = (unit, arr.copy(data=unit), lazy.clip(0, 1)) if op.unit else (data, arr, lazy)
        op.geoproc(small).values  # compile (or load from the numba cache) outside the timings
        t_ref = best_of(lambda: op.reference(src), repeats)
        t_geo = best_of(lambda: op.geoproc(x).values, repeats)
        per_band = [_Lazy(op.geoproc, x.isel(band=b)) for b in range(x.sizes["band"])]
        t = thread_times(lambda: op.geoproc(xl), sink, per_band, repeats)
        rows.append(
            [
                op.name,
                op.reference_name,
                f"{t_ref:.3f}",
                f"{t_geo:.3f}",
                f"{t_ref / t_geo:.1f}",
                f"{t['dask 1']:.3f}",
                f"{t['dask 2']:.3f}",
                f"{t['dask 1'] / t['dask 2']:.2f}",
                f"{t['bands 1'] / t['bands 2']:.2f}",
                f"{t['ceiling 1'] / t['ceiling 2']:.2f}",
            ]
        )
        if op.point:
            point_rows.append(
                [
                    op.name,
                    f"{t_geo:.4f}",
                    f"{nbytes / t_geo / 1e9:.1f}",
                    f"{t_copyto / t_geo:.0%}",
                    f"{t_copy / t_geo:.0%}",
                    f"{nbytes / t_ref / 1e9:.1f}",
                ]
            )
        dask_s = f"{t['dask 1']:.3f}/{t['dask 2']:.3f} (ceiling {t['ceiling 1'] / t['ceiling 2']:.2f})"
        print(f"  {op.name}: reference {t_ref:.3f} s, geoproc {t_geo:.3f} s, dask 1/2 threads {dask_s} s", flush=True)
    copy_line = (
        f"np.copyto of the {data.nbytes / 2**20:.0f} MiB array: {t_copyto:.4f} s "
        f"({nbytes / t_copyto / 1e9:.1f} GB/s read + write); "
        f"src.copy(): {t_copy:.4f} s ({nbytes / t_copy / 1e9:.1f} GB/s)."
    )
    return rows, point_rows, copy_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1024 x 1024 px; prints only")
    parser.add_argument("--size", type=int, default=None, help="image side in px (default 4096, --quick 1024)")
    parser.add_argument("--bands", type=int, default=2, help="bands (default 2)")
    parser.add_argument("--chunk", type=int, default=None, help="dask chunk side in px (default 1024, --quick 512)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3; the best is reported)")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    size = args.size or (1024 if args.quick else 4096)
    chunk = args.chunk or (512 if args.quick else 1024)
    load = os.getloadavg()
    print(f"{args.bands} bands x {size} x {size} px float32, dask chunks {chunk} px; load {load[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    rows, point_rows, copy_line = run(args.bands, size, chunk, args.repeats)
    total = time.perf_counter() - t0
    ver = versions()
    ver.update({"scipy": version("scipy"), "scikit-image": version("scikit-image")})
    keep = ("geoproc", "numba", "numpy", "dask", "xarray", "scipy", "scikit-image")
    command = "python benchmarks/bench_filters.py" + (" --quick" if args.quick else "") + (
        f" --size {args.size}" if args.size else ""
    ) + (f" --bands {args.bands}" if args.bands != 2 else "")
    listed = ", ".join(f"{k} {ver.get(k, '-')}" for k in keep)
    body = "\n\n".join(
        [
            f"Date: {today()}. Machine: {machine()}; load average before the runs {load[0]:.2f} / {load[1]:.2f} "
            "(1 / 5 min; other work on the machine adds noise).\n"
            f"Versions: {listed}.\n"
            f"Command: `{command}` ({total:.0f} s in all). "
            f"Data: {args.bands} bands x {size} x {size} px float32, no NaN; "
            f"dask chunks 1 band x {chunk} x {chunk} px, threaded scheduler. Times: best of {args.repeats} "
            f"(references slower than {SLOW:g} s: one run).",
            markdown_table(
                [
                    "operation",
                    "reference (1 thread)",
                    "reference s",
                    "geoproc s (1 thread)",
                    "speed-up per core",
                    "geoproc + dask, 1 thread s",
                    "2 threads s",
                    "2-thread scaling",
                    "bands on 2 threads, no dask",
                    "ceiling",
                ],
                rows,
                "llrrrrrrrr",
            ),
            "Point operations against memory bandwidth (one core, numpy input; bytes read + written):",
            markdown_table(
                ["operation", "geoproc s", "GB/s", "of np.copyto", "of src.copy()", "reference GB/s"],
                point_rows,
                "lrrrrr"
            ),
            copy_line,
        ]
    )
    print()
    print(body)
    if not (args.quick or args.no_save):
        update_results(RESULTS, SECTION, body)
        print(f"\nwritten to {RESULTS} (section '{SECTION}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
