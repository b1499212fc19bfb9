"""CCDC per pixel: pixel series per second per core, geoproc vs lcmap-pyccd (the reference implementation).

What is measured
----------------
``--pixels`` (default 4,000) synthetic Landsat-like series
(``tests/pyccd_reference.synthetic_series``): 16-day revisits over 1985-2016
with 10 % of the dates missing (660 dates), seven bands (blue..swir2,
thermal), an annual cycle of random amplitude and phase, noise, up to three
land-cover changes per pixel, 30 % of the dates flagged cloudy and 3 % of the
clear ones hit by an unflagged bright outlier. Generating them is not timed.

* lcmap-pyccd 2021.7.19 (``ccd.detect``, its own venv, see
  ``tests/pyccd_reference.py``) on the first ``--pyccd-pixels`` (default 40)
  series, one process: CPU seconds per series (``time.process_time``);
* geoproc, 1 thread: the numba kernel (``geoproc.kernels.ccdc.ccdc``) on
  numpy input, all ``--pixels`` series, CPU seconds (best of ``--repeats``);
* geoproc ``ccdc_segments`` on a Dask array chunked 256 pixels, threaded
  scheduler with ``--threads`` (default 2): wall seconds.

Per core means CPU time: the machine is shared, so wall time measures the
neighbours as much as the code. The segments of the series both ran are
compared (count and start / end / break dates).

Usage::

    python benchmarks/bench_ccdc.py           # writes the "CCDC" section of RESULTS.md
    python benchmarks/bench_ccdc.py --quick   # 1,000 series, 20 for pyccd; prints only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import dask  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _common import machine, markdown_table, today, update_results, versions  # noqa: E402
from geoproc.ccdc import PYCCD_STAT_END, ccdc_segments  # noqa: E402
from tests.pyccd_reference import pyccd_detect, synthetic_series  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "CCDC"
EPOCH = 719163  # date(1970, 1, 1).toordinal()
NAMES = ("blue", "green", "red", "nir", "swir16", "swir22", "thermal")


def _inputs(series):
    dates = np.array(series[0]["dates"])
    bands = np.array([s["bands"] for s in series], dtype=np.float64)  # (px, 7, T)
    qa = np.array([s["qa"] for s in series]).T
    scale = np.array([1e4] * 6 + [10.0])
    values = (np.transpose(bands, (2, 1, 0)) / scale[None, :, None]).astype(np.float32)  # (T, 7, px)
    ds = xr.Dataset(
        {nm: (("time", "x"), values[:, i]) for i, nm in enumerate(NAMES)},
        coords={"time": (dates - EPOCH).astype("datetime64[D]").astype("datetime64[ns]")},
    )
    mask = xr.DataArray(np.isin(qa, (2, 4, 255)), dims=("time", "x"))
    return ds, mask


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pixels", type=int, default=4000)
    ap.add_argument("--pyccd-pixels", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1,000 series (20 for pyccd); print, do not save")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.pixels, args.pyccd_pixels, args.no_save = 1000, 20, True

    rng = np.random.default_rng(1)
    dates = np.arange(725000, 725000 + int(365.25 * 32), 16)
    dates = dates[rng.random(dates.size) < 0.9]
    series = synthetic_series(11, args.pixels, dates)
    ds, mask = _inputs(series)
    load = os.getloadavg()

    # geoproc, one thread: the public function on numpy input runs the kernel in this thread
    ccdc_segments(ds.isel(x=slice(0, 4)), mask=mask.isel(x=slice(0, 4)), stat_end=PYCCD_STAT_END)  # compile
    best_k, out = np.inf, None
    for _ in range(args.repeats):
        c0 = time.process_time()
        out = ccdc_segments(ds, mask=mask, stat_end=PYCCD_STAT_END)
        best_k = min(best_k, time.process_time() - c0)

    chunked, cmask = ds.chunk({"x": 256}), mask.chunk({"x": 256})
    best_d = best_dc = np.inf
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            lazy = ccdc_segments(chunked, mask=cmask, stat_end=PYCCD_STAT_END).compute()
            best_d, best_dc = min(best_d, time.perf_counter() - t0), min(best_dc, time.process_time() - c0)
    same_dask = bool(lazy.equals(out))

    m = args.pyccd_pixels
    ref, cpu_p = pyccd_detect(series[:m])
    n_seg = same_count = same_dates = 0
    for j, models in enumerate(ref):
        same_count += int(out.n_segments[j]) == len(models)
        for s, mdl in enumerate(models[: int(out.n_segments[j])]):
            n_seg += 1
            ours = [int(out[v][s, j]) + EPOCH for v in ("start_day", "end_day", "break_day")]
            same_dates += ours == [mdl["start_day"], mdl["end_day"], mdl["break_day"]]

    rate_k, rate_d, rate_p = args.pixels / best_k, args.pixels / best_dc, m / cpu_p
    rows = [
        ["geoproc `ccdc_segments` (numba kernel, numpy input)", 1, f"{best_k:.2f} CPU", f"{rate_k:,.0f}",
         f"{rate_k / rate_p:,.0f}x"],
        [f"geoproc `ccdc_segments` (dask, {args.threads} threads, 256-pixel chunks)", args.threads,
         f"{best_dc:.2f} CPU, {best_d:.2f} wall", f"{rate_d:,.0f}", f"{rate_d / rate_p:,.0f}x"],
        [f"lcmap-pyccd 2021.7.19 (`ccd.detect`), {m} series", 1, f"{cpu_p:.2f} CPU", f"{rate_p:,.1f}", "1x"],
    ]
    table = markdown_table(["implementation", "cores", "seconds", "series / s / core", "vs pyccd"], rows, "lrrrr")
    vers = versions()
    body = (
        f"Date: {today()}. Machine: {machine()}; load average before the runs {load[0]:.2f} / {load[1]:.2f} "
        f"(1 / 5 min).\nVersions: geoproc {vers['geoproc']}, numba {vers['numba']}, numpy {vers['numpy']}; "
        f"pyccd in its own venv (numpy 1.23.5, scipy 1.10.1, scikit-learn 1.3.2).\n"
        f"Command: `python benchmarks/bench_ccdc.py{' --quick' if args.quick else ''}`. {args.pixels:,} synthetic "
        f"Landsat-like series of {dates.size} dates (16-day revisits 1985-2016, 10 % missing), 7 bands, up to 3 "
        f"changes each, 30 % cloudy, 3 % unflagged outliers; pyccd's defaults (stat_end {PYCCD_STAT_END}). "
        f"Per core = CPU time (the machine is shared); best of {args.repeats} for geoproc.\n\n{table}\n\n"
        f"Agreement on the {m} series pyccd ran: same number of segments in {same_count}/{m}, identical start, end "
        f"and break dates in {same_dates}/{n_seg} segments; dask result identical to numpy's: {same_dask}. "
        f"{int((out.n_segments > 1).sum())} of {args.pixels:,} series have more than one segment.\n"
    )
    print(body)
    if not args.no_save:
        update_results(RESULTS, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
