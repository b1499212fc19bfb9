"""Kernel speed: spectral indices (geoproc's compiled formulas) vs the xarray expression a user would write.

What is measured
----------------
One 4096 x 4096 px array per band (``--size``), in memory, numpy-backed, one
thread for every contender (geoproc's kernel is single-threaded per chunk;
numpy's elementwise operations are too). Indices: NDVI (2 bands), EVI (3
bands), ANDWI (6 bands: B, G, R, N, S1, S2), and the four indices NDVI, EVI,
NBR, MNDWI together (``geoproc.spectral_indices``: one kernel per index on the bands). Inputs: float32
reflectances, and raw uint16 with scale 0.0001, offset -0.1, nodata 0 (as
``geoproc.load(..., raw=True)`` returns them).

* geoproc: ``geoproc.index(ds, name)`` (or ``spectral_indices``), the public call,
  which includes allocating the output; ``kernel only`` is the compiled kernel
  writing into a preallocated output.
* xarray: the catalog formula evaluated on the DataArrays, which is what
  ``(ds.nir - ds.red) / (ds.nir + ds.red)`` and spyndex's ``computeIndex`` do;
  raw bands are decoded first the careful way that stays in float32:
  ``v.astype("float32").where(v != 0) * float32(scale) + float32(offset)``.
* spyndex: ``spyndex.computeIndex(name, params)`` on the same (decoded) DataArrays.

Bandwidth: bytes read + written by the index (every input band once, the
float32 output once) per second, as a fraction of this machine's copy bandwidth
(``np.copyto`` between two float32 arrays of one band's size: 2 x 64 MiB per
copy). Times are the best of ``--repeat`` runs after a warm-up call, measured as
this thread's CPU time (user + system, so page faults count): on a shared
machine other work inflates wall time but not that (``--clock wall`` for wall
time). Each row also checks that geoproc's result equals the xarray
expression's bit for bit.

``--dask`` adds the same on Dask (threads scheduler, 2 threads, 1024 x 1024
chunks) for geoproc and the xarray expression. The compile cost of a formula
(first call in a fresh process, with an empty kernel cache and with a warm
one) is measured in subprocesses.

Usage::

    python benchmarks/bench_kernels.py            # writes benchmarks/RESULTS.md
    python benchmarks/bench_kernels.py --quick    # 1024 px, prints only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from _common import machine, markdown_table, today, update_results, versions
from geoproc import _formula
from geoproc.indices import BAND_NAMES, INDICES, _steps, _typed_nodata, index, spectral_indices

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
SECTION = "Spectral index kernels"
SCALE, OFFSET, NODATA = 1e-4, -0.1, 0
CASES = [("NDVI",), ("EVI",), ("ANDWI",), ("NDVI", "EVI", "NBR", "MNDWI")]


#: The clock of the single-thread timings: this thread's CPU time (user + system, page faults included), which other
#: work on a shared machine does not inflate as it does wall time (``--clock wall`` for wall time).
CLOCK = time.thread_time


def best(func: Callable[[], object], repeat: int, clock: Callable[[], float] | None = None) -> float:
    clock = clock or CLOCK
    func()
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = clock()
        func()
        times.append(clock() - t0)
    return min(times)


def make_data(size: int) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    letters = sorted({b for case in CASES for name in case for b in INDICES[name].bands}, key=list(BAND_NAMES).index)
    raw, floats = {}, {}
    for letter in letters:
        name = BAND_NAMES[letter][0]
        values = rng.integers(1, 10000, (size, size), dtype=np.uint16)
        values[rng.random((size, size)) < 0.01] = NODATA
        raw[name] = (("y", "x"), values, {"scale": SCALE, "offset": OFFSET, "nodata": NODATA})
        floats[name] = (("y", "x"), rng.uniform(0.01, 0.6, (size, size)).astype(np.float32))
    return xr.Dataset(floats), xr.Dataset(raw)


def decoded(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """Band letter -> float32 DataArray, decoding raw bands as a careful user would."""
    out = {}
    for letter, names in BAND_NAMES.items():
        if names[0] in ds:
            v = ds[names[0]]
            if v.dtype.kind == "f":
                out[letter] = v
            else:
                out[letter] = v.astype("float32").where(v != NODATA) * np.float32(SCALE) + np.float32(OFFSET)
    return out


def xarray_expression(ds: xr.Dataset, names: tuple[str, ...]) -> list[xr.DataArray]:
    bands = decoded(ds)
    results = []
    for name in names:
        spec = INDICES[name]
        env = {**{c: d for c, d in spec.constants}, **{b: bands[b] for b in spec.bands}}
        results.append(eval(spec.formula, {"__builtins__": {}}, env))  # noqa: S307
    return results


def spyndex_call(ds: xr.Dataset, names: tuple[str, ...]):
    import spyndex

    bands = decoded(ds)
    params = {b: bands[b] for name in names for b in INDICES[name].bands}
    params |= {c: d for name in names for c, d in INDICES[name].constants}
    return spyndex.computeIndex(list(names) if len(names) > 1 else names[0], params)


def geoproc_call(ds: xr.Dataset, names: tuple[str, ...]):
    return index(ds, names[0]) if len(names) == 1 else spectral_indices(ds, list(names))


def kernel_only(ds: xr.Dataset, names: tuple[str, ...]) -> Callable[[], None]:
    """The compiled kernels on flat arrays into a preallocated output (what the public call adds is allocation)."""
    specs = [INDICES[n] for n in names]
    letters = [b for b in BAND_NAMES if any(b in s.bands for s in specs)]
    where = {b: BAND_NAMES[b][0] for b in letters}
    order = list(where.values())
    steps = _steps(specs, where, order, [tuple(d for _, d in s.constants) for s in specs])
    flat = [ds[v].values.reshape(-1) for v in order]
    decodes = []
    for x in flat:  # as the public call passes them (see geoproc.indices._index_block)
        if x.dtype.kind == "f":
            decodes.append((1.0, 0.0, _typed_nodata(x.dtype, np.nan)))
        else:
            decodes.append((SCALE, OFFSET, _typed_nodata(x.dtype, float(NODATA))))
    out = np.empty((len(names), flat[0].size), np.float32)
    calls, row = [], 0
    for prog, inputs, constants in steps:
        args = [x for i in inputs for x in (flat[i], flat[i].size, *decodes[i])]
        calls.append((_formula.compiled(prog), out[row : row + len(prog.outputs)], args, constants))
        row += len(prog.outputs)

    def run() -> None:
        for kernel, rows, args, constants in calls:
            kernel(rows, rows.shape[1], *args, *constants)

    return run


def moved_bytes(ds: xr.Dataset, names: tuple[str, ...]) -> int:
    letters = {b for n in names for b in INDICES[n].bands}
    read = sum(ds[BAND_NAMES[b][0]].nbytes for b in letters)
    return read + len(names) * ds.sizes["y"] * ds.sizes["x"] * 4


def copy_bandwidth(size: int, repeat: int) -> float:
    src = np.random.default_rng(1).random((size, size), dtype=np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best(lambda: np.copyto(dst, src), repeat * 2)


def check_agreement(ds: xr.Dataset, names: tuple[str, ...]) -> str:
    """Share of pixels where geoproc equals the xarray expression bit for bit (non-finite there counted as NaN)."""
    ours = geoproc_call(ds, names)
    ours = [ours] if len(names) == 1 else [ours[n] for n in names]
    same = total = 0
    for a, b in zip(ours, xarray_expression(ds, names), strict=True):
        a, b = a.values, b.values
        b = np.where(np.isfinite(b), b, np.float32(np.nan))
        same += int(np.sum((a == b) | (np.isnan(a) & np.isnan(b))))
        total += a.size
    return f"{same / total:.4%}"


_COMPILE_SCRIPT = """
import json, sys, time
import numpy as np, xarray as xr
from geoproc.indices import BAND_NAMES, INDICES, spectral_indices
names, constants = json.loads(sys.argv[1]), json.loads(sys.argv[2])
letters = {b for n in names for b in INDICES[n].bands}
ds = xr.Dataset({BAND_NAMES[b][0]: (("y", "x"), np.full((8, 8), 0.3, np.float32)) for b in letters})
t0 = time.perf_counter()
spectral_indices(ds, names, **constants)
print(time.perf_counter() - t0)
"""


#: Values for the catalog constants without a default (Sentinel-2 central wavelengths in nm, PAR).
REQUIRED = {"lambdaG": 560.0, "lambdaN": 842.0, "lambdaN2": 865.0, "lambdaR": 665.0, "lambdaS1": 1610.0,
            "lambdaS2": 2190.0, "PAR": 1.5}  # fmt: skip


def compile_costs(cases: list[tuple[str, ...]]) -> list[list[object]]:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GEOPROC_KERNEL_CACHE": cache}
        for names in cases:
            seconds = []
            for _ in range(2):  # an empty cache, then the same cache in a new process
                used = {c for n in names for c, d in INDICES[n].constants if d is None}
                constants = json.dumps({c: REQUIRED[c] for c in used})
                proc = subprocess.run(
                    [sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(list(names)), constants],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                seconds.append(float(proc.stdout.strip().splitlines()[-1]))
            label = names[0] if len(names) == 1 else f"all {len(names)} catalog indices in one kernel"
            rows.append([label, f"{seconds[0]:.2f}", f"{seconds[1]:.3f}"])
    return rows


def dask_rows(floats: xr.Dataset, raw: xr.Dataset, repeat: int) -> list[list[object]]:
    import dask

    rows = []
    for kind, ds in (("float32", floats), ("uint16 raw", raw)):
        lazy = ds.chunk({"y": 1024, "x": 1024})
        for names in CASES:
            with dask.config.set(scheduler="threads", num_workers=2):
                ours = best(lambda: dask.compute(geoproc_call(lazy, names)), repeat, time.perf_counter)  # noqa: B023
                theirs = best(
                    lambda: dask.compute(*xarray_expression(lazy, names)),  # noqa: B023
                    repeat,
                    time.perf_counter,
                )
            rows.append([" + ".join(names), kind, f"{ours:.3f}", f"{theirs:.3f}", f"{theirs / ours:.1f}x"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1024 px, 3 repeats, no compile runs; prints only")
    parser.add_argument("--size", type=int, default=None, help="px per side (default 4096; 1024 with --quick)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per contender (default 5)")
    parser.add_argument("--dask", action="store_true", help="also time both on Dask threads (2 threads)")
    parser.add_argument("--no-spyndex", action="store_true", help="leave spyndex out")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="single-thread clock (default cpu)")
    parser.add_argument("--no-save", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # xarray's x / 0 where a denominator is 0
    np.seterr(all="ignore")
    size = args.size or (1024 if args.quick else 4096)
    repeat = args.repeat or (3 if args.quick else 5)
    load = os.getloadavg()

    floats, raw = make_data(size)
    bandwidth = copy_bandwidth(size, repeat)
    header = ["index", "input", "geoproc s", "xarray s", "speed-up", "spyndex s", "geoproc GB/s", "of copy bw",
              "kernel only: of copy bw", "bit-identical to xarray"]  # fmt: skip
    rows = []
    for kind, ds in (("float32", floats), ("uint16 raw", raw)):
        for names in CASES:
            ours = best(lambda: geoproc_call(ds, names), repeat)  # noqa: B023
            kernel = best(kernel_only(ds, names), repeat)
            theirs = best(lambda: xarray_expression(ds, names), repeat)  # noqa: B023
            spy = "-"
            if not args.no_spyndex:
                try:
                    spy = f"{best(lambda: spyndex_call(ds, names), repeat):.3f}"  # noqa: B023
                except ImportError:
                    pass
            nbytes = moved_bytes(ds, names)
            rows.append([
                " + ".join(names), kind, f"{ours:.4f}", f"{theirs:.4f}", f"{theirs / ours:.1f}x", spy,
                f"{nbytes / ours / 1e9:.1f}", f"{nbytes / ours / bandwidth:.0%}", f"{nbytes / kernel / bandwidth:.0%}",
                check_agreement(ds, names),
            ])  # fmt: skip
            print(" | ".join(map(str, rows[-1])), flush=True)

    lines = [
        f"Date: {today()}. Machine: {machine()}; load average before the runs {load[0]:.2f} / {load[1]:.2f}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items() if v != "-") + ".",
        f"Command: `python benchmarks/bench_kernels.py{' --quick' if args.quick else ''}"
        f"{' --dask' if args.dask else ''}{' --clock wall' if args.clock == 'wall' else ''}`. {size} x {size} px "
        f"per band, numpy-backed, one thread for every contender, best of {repeat} runs, "
        f"{'CPU time of the thread (user + system)' if args.clock == 'cpu' else 'wall time'}. "
        f"Copy bandwidth (np.copyto, float32, {size} x {size}): "
        f"{bandwidth / 1e9:.1f} GB/s (read + write). Bytes counted: each input band read once + the float32 "
        "output written once. `kernel only`: the compiled kernels into a preallocated output, as `np.copyto` "
        "writes into one; the public call also allocates its output, and the first write to each fresh page of "
        "a 64 MiB array costs a page fault (dask chunks of 1024 x 1024 px reuse freed memory instead). "
        "xarray's float32 NDVI is only three array passes, so no kernel can be 5x faster than it there; raw "
        "integers (a decoding pass per band) and longer formulas add passes to the xarray expression. Last "
        "column: pixels where geoproc's result equals the xarray expression's bit for bit (where that is not "
        "finite, geoproc's NaN counts as equal).",
        "",
        markdown_table(header, rows),
    ]
    if args.dask:
        print("Dask, 2 threads ...", flush=True)
        lines += [
            "",
            "On Dask (threads scheduler, 2 threads, 1024 x 1024 px chunks), wall seconds, best of runs:",
            "",
            markdown_table(["index", "input", "geoproc s", "xarray s", "speed-up"], dask_rows(floats, raw, repeat)),
        ]
    if not args.quick:
        print("compile costs ...", flush=True)
        catalog = tuple(n for n, spec in INDICES.items() if spec.application_domain != "custom")
        costs = compile_costs([("NDVI",), ("EVI",), ("ANDWI",), catalog])
        lines += [
            "",
            "Compile cost of a formula in a new process (a Dask worker, say), first `index` call, seconds: with an "
            "empty kernel cache (generate the module, numba compiles it), and in another new process with the cache "
            "that left (numba loads the machine code). The last row is the whole catalog in one kernel, with the "
            "required wavelength constants given.",
            "",
            markdown_table(["formula", "empty cache s", "warm cache s"], costs),
        ]
    body = "\n".join(lines)
    print(body)
    if not (args.no_save or args.quick):
        update_results(RESULTS, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
