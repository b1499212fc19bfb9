"""Formula kernels (geoproc._formula + geoproc.kernels.indices) against numpy's evaluation of the same formula text
on float32 arrays: bit-identical, but for pow/exp/log, whose numpy and C-library implementations differ in the last
bit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from geoproc import _formula
from geoproc.errors import InvalidArgumentError

rng = np.random.default_rng(7)
NO_DECODE = (1.0, 0.0, np.nan)


def run(formulas, inputs, arrays, decodes=None, constants=None):
    """Compile ``formulas`` over band names ``inputs`` and run the kernel on 1-D ``arrays``."""
    parsed = [_formula.parse(f) for f in formulas]
    consts = [[n for n in p.names if n not in inputs] for p in parsed]
    prog = _formula.program(parsed, inputs, consts)
    out = np.full((len(formulas), arrays[0].size), -999.0, np.float32)
    width = max(arrays[0].size, 1)  # one row of all the pixels
    args = [x for arr, dec in zip(arrays, decodes or [NO_DECODE] * len(arrays)) for x in (arr, width, *dec)]
    values = [(constants or {})[n] for names in consts for n in names]
    _formula.compiled(prog)(out, width, *args, *values)
    return out, prog


def reference(formula, env):
    """numpy's evaluation of the formula text on float32 arrays and Python floats, NaN where not finite."""
    namespace = {"sqrt": np.sqrt, "abs": np.abs, "exp": np.exp, "log": np.log}
    with np.errstate(all="ignore"):
        ref = np.asarray(eval(formula, {"__builtins__": {}, **namespace}, env))  # noqa: S307
    assert ref.dtype == np.float32
    return np.where(np.isfinite(ref), ref, np.float32(np.nan))


def assert_same(got, ref, exact=True):
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:  # numpy's pow/exp/log and the C library's differ in the last bit, which later operations may amplify
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


FORMULAS = [
    ("(N - R) / (N + R)", True),
    ("2.5 * (N - R) / (N + 6.0 * R - 7.5 * B + 1.0)", True),
    ("0.5 * (2.0 * N + 1 - (((2 * N + 1) ** 2) - 8 * (N - R)) ** 0.5)", True),  # ** 2 and ** 0.5 as numpy does
    ("N ** -1 - (R - B) ** 2.0 + B ** 1 * N ** 0", True),
    ("(1.0 + 0.1234) * N - N / (3.0 / 7.0) + 2 ** 3 * R", True),  # number-only parts in float64, as Python does
    ("N ** 3 - R ** 4 + B ** -2 + N ** 1.5 + R ** 0.25 - B ** -0.5", False),  # pow
    ("-N + (-R) * +B", True),
    ("sqrt(N) + abs(R - B)", True),
    ("exp(-N) + log(R)", False),
    ("(N - R) / (N - R)", True),  # 0/0 where N == R
    ("log(R - B)", False),  # NaN for R < B
    ("1 / (N - 0.3)", True),  # large values
]


@pytest.mark.parametrize(("formula", "exact"), FORMULAS)
def test_formula_kernel_equals_numpy_on_float32(formula, exact):
    n = 5000
    x = {k: rng.uniform(0.0, 0.6, n).astype(np.float32) for k in "NRB"}
    x["R"][:20] = x["N"][:20]  # equal bands: zero differences and denominators
    x["B"][20:30] = np.nan
    names = [k for k in "NRB" if k in _formula.parse(formula).names]
    got, _ = run([formula], names, [x[k] for k in names])
    ref = np.broadcast_to(reference(formula, {k: x[k] for k in names}), (n,))
    assert_same(got[0], ref, exact)
    if "B" in names:
        assert np.isnan(got[0][20:30]).all()


def test_raw_integers_decode_like_the_loader_bit_for_bit():
    n = 20000
    raw = [rng.integers(0, 10000, n).astype(np.uint16) for _ in range(3)]
    raw[0][:100] = 0
    raw[2][100:150] = 0
    scale, offset = 1e-4, -0.1
    decoded = [np.where(r == 0, np.nan, r.astype(np.float32) * np.float32(scale) + np.float32(offset)) for r in raw]
    formula = ["2.5 * (N - R) / (N + 6 * R - 7.5 * B + 1)", "(N - R) / (N + R)"]
    got_raw, _ = run(formula, ["N", "R", "B"], raw, [(scale, offset, 0.0)] * 3)
    got_float, _ = run(formula, ["N", "R", "B"], [d.astype(np.float32) for d in decoded])
    np.testing.assert_array_equal(got_raw, got_float)
    assert np.isnan(got_raw[:, :100]).all()
    # a nodata input only blanks the outputs that read it
    assert np.isnan(got_raw[0, 100:150]).all() and not np.isnan(got_raw[1, 100:150]).any()


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float64])
def test_other_dtypes_and_a_nodata_value(dtype):
    a = rng.integers(1, 100, 3000).astype(dtype)
    b = rng.integers(1, 100, 3000).astype(dtype)
    a[:10] = 7
    got, _ = run(["(N - R) / (N + R)"], ["N", "R"], [a, b], [(0.5, 1.0, 7.0), (0.5, 1.0, np.nan)])
    fa = a.astype(np.float32) * np.float32(0.5) + np.float32(1.0)
    fb = b.astype(np.float32) * np.float32(0.5) + np.float32(1.0)
    ref = (fa - fb) / (fa + fb)
    ref[a == 7] = np.nan
    np.testing.assert_array_equal(got[0], ref)


@pytest.mark.parametrize("n_outputs", [2, 9])
@pytest.mark.parametrize("size", [0, 1, 4099])
def test_several_formulas_in_one_kernel_and_any_length(n_outputs, size):
    pool = ["(N - R) / (N + R)", "N * B - R", "(B - N) / (B + 0.5)", "R ** 2 - N", "sqrt(N * R)", "B / R"]
    formulas = [pool[j % len(pool)] + f" + {j}" for j in range(n_outputs)]
    x = {k: rng.uniform(0.0, 0.6, size).astype(np.float32) for k in "NRB"}
    if size:
        x["B"][0] = np.nan
    got, prog = run(formulas, ["N", "R", "B"], [x["N"], x["R"], x["B"]])
    assert prog.source.count("for c in range(width)") == 1  # one pass over the pixels for all the formulas
    for j, formula in enumerate(formulas):
        np.testing.assert_array_equal(got[j], reference(formula, x))


def test_constants_are_arguments_and_one_kernel_serves_all_values():
    n = 1000
    nir, red = (rng.uniform(0.01, 0.5, n).astype(np.float32) for _ in range(2))
    formula = "(1.0 + L) * (N - R) / (N + R + L)"
    for L in (0.0, 0.5, 1.0, 0.1234):
        got, prog = run([formula], ["N", "R"], [nir, red], constants={"L": L})
        np.testing.assert_array_equal(got[0], reference(formula, {"N": nir, "R": red, "L": L}))
    assert "0.5" not in prog.source and "c0_0" in prog.source  # L is an argument, not baked into the code
    assert len(_formula.compiled(prog).signatures) == 1  # one compiled specialisation served the three values


@pytest.mark.parametrize(("k", "exact"), [(2.0, True), (0.5, True), (-1.0, True), (1.0, True), (3.0, False)])
def test_a_constant_exponent_takes_numpy_s_shortcuts_at_run_time(k, exact):
    nir = rng.uniform(0.01, 0.5, 2000).astype(np.float32)
    got, _ = run(["N ** k - N"], ["N"], [nir], constants={"k": k})
    assert_same(got[0], reference("N ** k - N", {"N": nir, "k": k}), exact)


def test_lowering_takes_numpy_s_power_shortcuts_and_shares_subexpressions():
    prog = _formula.program([_formula.parse("(N - R) ** 2 + (N - R) ** 0.5 + N ** 3 + R ** 2.2")], ["N", "R"], [[]])
    (statements, _, used, _), = prog.outputs
    code = "\n".join(statements)
    assert code.count("v0 - v1") == 1  # N - R computed once
    assert "np.sqrt(" in code and "** np.float32(2.2)" in code and "** np.float32(3.0)" in code
    assert "** np.float32(2" not in code.replace("2.2", "")  # ** 2 is a product, as numpy computes it
    assert used == (0, 1)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("(N - R", "cannot parse"),
        ("N < R", "comparison"),
        ("N.real", "attribute"),
        ("N[0]", "subscript"),
        ("N if R else 1", "conditional"),
        ("N // R", r"\+ - \* / \*\*"),
        ("not N", "unary minus"),
        ("foo(N)", "may be called"),
        ("sqrt(N, R)", "one argument"),
        ("__import__('os').system('true')", "may be called"),
        ("N + 1e999", "finite"),
        ("N + 'a'", "finite"),
        ("N + True", "finite"),
        ("N + X", "unknown name.*'X'"),
        ("", "non-empty"),
    ],
)
def test_parse_rejects_with_a_clear_message(formula, message):
    with pytest.raises(InvalidArgumentError, match=message):
        _formula.parse(formula, {"N", "R"})


def test_generated_module_is_cached_on_disk_and_reused_by_a_new_process(tmp_path, monkeypatch):
    """The on-disk cache: a fresh process (a Dask worker, say) loads the machine code instead of compiling."""
    monkeypatch.setenv("GEOPROC_KERNEL_CACHE", str(tmp_path))
    formula = f"(N - R) / (N + R + {rng.uniform(1, 2)!r})"  # a kernel no other test (or run) has compiled
    _, prog = run([formula], ["N", "R"], [np.ones(10, np.float32)] * 2)
    kernel = _formula.compiled(prog)
    assert sum(kernel.stats.cache_misses.values()) == 1 and not kernel.stats.cache_hits
    sources = list(tmp_path.glob("geoproc_kernel_*.py"))
    assert len(sources) == 1 and sources[0].read_text() == prog.source
    assert list((tmp_path / "__pycache__").glob("*.nbi"))
    script = (
        "import numpy as np\n"
        "from geoproc import _formula\n"
        f"prog = _formula.program([_formula.parse({formula!r})], ['N', 'R'], [[]])\n"
        "k = _formula.compiled(prog)\n"
        "x = np.ones(10, np.float32)\n"
        "k(np.empty((1, 10), np.float32), 10, x, 10, 1.0, 0.0, np.nan, x, 10, 1.0, 0.0, np.nan)\n"
        "print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))\n"
    )
    env = {**os.environ, "GEOPROC_KERNEL_CACHE": str(tmp_path)}
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.split() == ["1", "0"]  # loaded from the cache, not compiled
    assert list(tmp_path.glob("geoproc_kernel_*.py")) == sources  # and the module was not written again
