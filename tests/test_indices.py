"""Spectral indices: the whole catalog against spyndex and numpy float64 on random and real Sentinel-2 data;
numpy- vs dask-backed input; raw integers vs decoded floats; band mapping, constants, registration and errors."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from geoproc import _formula
from geoproc.errors import InvalidArgumentError, UnknownBandError
from geoproc.indices import (
    BAND_NAMES,
    INDICES,
    SENTINEL2_ASSET_KEYS,
    index,
    ndvi,
    register_index,
    spectral_indices,
)

rng = np.random.default_rng(11)
DIMS = ("time", "y", "x")
#: Values for the constants the catalog gives no default (central wavelengths of Sentinel-2 in nm, and PAR).
REQUIRED = {"lambdaG": 560.0, "lambdaN": 842.0, "lambdaN2": 865.0, "lambdaR": 665.0, "lambdaS1": 1610.0,
            "lambdaS2": 2190.0, "PAR": 1.5}  # fmt: skip
CATALOG = [name for name, spec in INDICES.items() if spec.application_domain != "custom"]
SCALE, OFFSET = 1e-4, -0.1


def cube(shape=(2, 30, 40), letters=tuple(BAND_NAMES), low=0.0, high=0.6) -> xr.Dataset:
    coords = {"time": np.arange(shape[0]).astype("datetime64[D]"), "y": np.arange(shape[1])[::-1] * 10.0,
              "x": np.arange(shape[2]) * 10.0}  # fmt: skip
    bands = {BAND_NAMES[k][0]: (DIMS, rng.uniform(low, high, shape).astype(np.float32)) for k in letters}
    return xr.Dataset(bands, coords=coords).rio.write_crs(32633)


def numpy_reference(spec, env: dict) -> np.ndarray:
    """The catalog formula text evaluated by numpy on float32 band arrays and Python float constants (as xarray and
    spyndex evaluate it on the loader's float32 bands), with NaN where the result is not finite."""
    env = {**{n: (REQUIRED.get(n) if d is None else d) for n, d in spec.constants}, **env}
    with np.errstate(all="ignore"):
        ref = np.asarray(eval(spec.formula, {"__builtins__": {}}, env))  # noqa: S307
    assert ref.dtype == np.float32, spec.formula
    return np.where(np.isfinite(ref), ref, np.float32(np.nan))


def general_powers(spec, constants: dict | None = None) -> bool:
    """Whether the formula raises a band to a power numpy computes with its own pow (not x*x, sqrt, 1/x)."""
    values = {**{n: (REQUIRED.get(n) if d is None else d) for n, d in spec.constants}, **(constants or {})}
    for node in ast.walk(ast.parse(spec.formula, mode="eval")):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            names = {n.id for n in ast.walk(node.right) if isinstance(n, ast.Name)}
            if names - set(values) or eval(ast.unparse(node.right), {}, values) not in (2, 0.5, -1, 1, 0):  # noqa: S307
                return True
    return False


def assert_same(got: np.ndarray, ref: np.ndarray, what: str, pow_tolerance: bool = False) -> None:
    """Bit-identical, NaN where ``ref`` is; where numpy's pow and the C library's powf meet, a few float32 ulp."""
    got, ref = np.asarray(got), np.broadcast_to(ref, np.shape(got))
    if not pow_tolerance:
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN pattern")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


# --- the catalog ----------------------------------------------------------------------------------------------------


def test_catalog_holds_the_common_indices_copied_unchanged_from_spyndex():
    spyndex = pytest.importorskip("spyndex")
    assert len(CATALOG) >= 60
    for name in ("NDVI", "EVI", "SAVI", "NDWI", "MNDWI", "NBR", "NDBI", "NDSI", "NDMI", "MSAVI"):
        assert name in CATALOG
    raw = Path(spyndex.__file__).parent / "data" / "spectral-indices-dict.json"
    catalog = json.loads(raw.read_text())["SpectralIndices"]
    for name in CATALOG:
        ours, theirs = INDICES[name], catalog[name]
        assert (ours.formula, ours.reference, ours.contributor) == (
            theirs["formula"],
            theirs["reference"],
            theirs["contributor"],
        )
        assert set(ours.bands) | {n for n, _ in ours.constants} == set(theirs["bands"])
        assert set(ours.bands) <= set(BAND_NAMES), name
        assert set(_formula.parse(ours.formula).names) == set(ours.bands) | {n for n, _ in ours.constants}
        for constant, default in ours.constants:
            assert default == spyndex.constants[constant].default


def test_every_catalog_index_equals_spyndex_on_random_reflectances():
    spyndex = pytest.importorskip("spyndex")
    ds = cube()
    out = spectral_indices(ds, CATALOG, **REQUIRED)  # one fused kernel for all of them
    params = {k: ds[BAND_NAMES[k][0]].values for k in BAND_NAMES}  # float32, as the loader returns them
    params |= {c: spyndex.constants[c].default for c in spyndex.constants if spyndex.constants[c].default is not None}
    params |= REQUIRED
    with np.errstate(all="ignore"):
        theirs = spyndex.computeIndex(CATALOG, params)
    exact = 0
    for j, name in enumerate(CATALOG):
        ref = np.broadcast_to(np.asarray(theirs[j]), ds.red.shape)
        assert ref.dtype == np.float32
        ref = np.where(np.isfinite(ref), ref, np.float32(np.nan))
        general = general_powers(INDICES[name])
        assert_same(out[name].values, ref, name, pow_tolerance=general)
        exact += not general
        assert out[name].dtype == np.float32
    assert exact >= len(CATALOG) - 10  # all but the few with powers such as ** 4.0 or ** (1 / 3)


@pytest.fixture(scope="module")
def s2_scenes(shared_data):
    base = shared_data / "eolearn"
    scenes = np.load(base / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13): B01..B12 incl. B8A, B09, B10
    alignment = json.load(open(base / "REFERENCE_SCENES.alignment.json"))
    ds = xr.Dataset({b: (DIMS, scenes[..., i]) for i, b in enumerate(alignment["band_order"])})
    return ds, alignment, base


def test_every_catalog_index_on_real_s2_scenes_equals_numpy_numpy_and_dask_alike(s2_scenes):
    ds, _, _ = s2_scenes
    got = spectral_indices(ds, CATALOG, bands=SENTINEL2_ASSET_KEYS, **REQUIRED)
    chunked = ds.chunk({"time": 2, "y": 40, "x": 64})
    lazy = spectral_indices(chunked, CATALOG, bands=SENTINEL2_ASSET_KEYS, **REQUIRED)
    assert isinstance(lazy["NDVI"].data, da.Array)
    lazy = lazy.compute()
    env = {k: ds[v].values for k, v in SENTINEL2_ASSET_KEYS.items()}
    for name in CATALOG:
        spec = INDICES[name]
        assert_same(got[name].values, numpy_reference(spec, env), name, pow_tolerance=general_powers(spec))
        np.testing.assert_array_equal(got[name].values, lazy[name].values, err_msg=name)


def test_ndvi_from_asset_keys_equals_eolearn_ndvi(s2_scenes):
    ds, alignment, base = s2_scenes
    dates = alignment["index_into_TestEOPatch_timestamps"]
    expected = np.load(base / "TestEOPatch" / "data" / "NDVI.npy")[..., 0][dates]
    got = index(ds.chunk({"y": 50, "x": 50}), "NDVI", bands=SENTINEL2_ASSET_KEYS).values
    np.testing.assert_array_equal(got, expected)


# --- numpy vs dask, raw vs decoded ----------------------------------------------------------------------------------

SOME = ["NDVI", "EVI", "SAVI", "MSAVI", "NBR", "ANDWI"]  # ANDWI reads six bands


def test_numpy_and_dask_input_give_identical_results_for_any_chunking():
    ds = cube((3, 33, 47))
    ds["red"] = ds.red.where(rng.random(ds.red.shape) > 0.05)  # NaN as nodata
    ref = spectral_indices(ds, SOME)
    for chunks in ({"time": -1, "y": 16, "x": 20}, {"time": 1, "y": 33, "x": 5}):
        lazy = spectral_indices(ds.chunk(chunks), SOME)
        assert all(isinstance(v.data, da.Array) for v in lazy.data_vars.values())
        for name in SOME:
            np.testing.assert_array_equal(lazy[name].values, ref[name].values)
            np.testing.assert_array_equal(index(ds.chunk(chunks), name).values, ref[name].values)
    # bands chunked differently are aligned on the first one
    mixed = ds.assign(nir=ds.nir.chunk({"y": 7}), red=ds.red.chunk({"x": 9}))
    np.testing.assert_array_equal(index(mixed, "EVI").values, ref["EVI"].values)


def test_views_and_copies_of_bands_give_the_same_bits_as_contiguous_bands():
    """Slices of in-memory arrays (what ``.chunk()`` and ``isel`` hand the kernels) are read row by row, not copied."""
    from geoproc.indices import _rows

    ds = cube((3, 41, 57))
    ds["red"] = ds.red.where(rng.random(ds.red.shape) > 0.05)
    ref = spectral_indices(ds, SOME)
    cut = {"y": slice(5, 37), "x": slice(3, 50)}
    views = ds.isel(cut)  # numpy-backed views: rows of 47 of 57 px
    assert not views.nir.values.flags.c_contiguous
    got = spectral_indices(views, SOME)
    for name in SOME:
        np.testing.assert_array_equal(got[name].values, ref[name].isel(cut).values, err_msg=name)
    # 2-D and 3-D views, a reversed band (copied), views next to contiguous bands, on dask chunks of views
    reversed_red = np.ascontiguousarray(ds.red.values[..., ::-1])[..., ::-1]  # same values, negative x stride
    mixed = ds.assign(red=ds.red.copy(data=reversed_red))
    for data, chunks in ((ds, {"time": 1, "y": 16, "x": 20}), (mixed, {"time": -1, "y": -1, "x": 25}),
                         (ds.isel(time=0), {"y": 9, "x": 31})):  # fmt: skip
        lazy = spectral_indices(data.chunk(chunks), SOME)
        for name in SOME:
            expected = ref[name].isel(time=0) if "time" not in data.dims else ref[name]
            np.testing.assert_array_equal(lazy[name].values, expected.values, err_msg=f"{name} {chunks}")
    # the kernels' view of a block: no copy of a row-strided slice, a copy of a reversed one
    band = ds.nir.values
    for view, copied in ((band[0, 5:30, 3:50], False), (band[:, 5:30, :], True), (band[:, :, 3:50], False),
                         (band[1:2, 5:30, 3:50], False), (band[0, ::-1, :], True), (band[0, :, ::2], True)):  # fmt: skip
        span, step = _rows(view)
        assert np.shares_memory(span, view) != copied, view.strides
        rows = span if copied else np.lib.stride_tricks.as_strided(span, (view.size // view.shape[-1], view.shape[-1]), (step * 4, 4))
        np.testing.assert_array_equal(rows.reshape(view.shape), view)


def test_raw_uint16_with_scale_offset_nodata_equals_floats_decoded_by_numpy():
    shape = (2, 25, 30)
    attrs = {"scale": SCALE, "offset": OFFSET, "nodata": 0}
    raw = {BAND_NAMES[k][0]: rng.integers(1, 10000, shape).astype(np.uint16) for k in ("B", "G", "R", "N", "S1", "S2")}
    raw["red"][0, :3] = 0
    raw_ds = xr.Dataset({k: (DIMS, v, attrs) for k, v in raw.items()})

    def decode(v):
        values = v.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET)
        return np.where(v == 0, np.float32(np.nan), values)

    float_ds = xr.Dataset({k: (DIMS, decode(v)) for k, v in raw.items()})
    got = spectral_indices(raw_ds, SOME)
    lazy = spectral_indices(raw_ds.chunk({"y": 10}), SOME)
    expected = spectral_indices(float_ds, SOME)
    for name in SOME:
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
        np.testing.assert_array_equal(lazy[name].values, expected[name].values, err_msg=name)
        assert np.isnan(got[name].values[0, :3]).all() == ("R" in INDICES[name].bands)  # red's nodata
    # and the decoded floats against numpy's evaluation of the formula
    env = {k: decode(raw[BAND_NAMES[k][0]]) for k in ("B", "G", "R", "N", "S1", "S2")}
    for name in SOME:
        assert_same(got[name].values, numpy_reference(INDICES[name], env), name)


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("uint16", 0), ("uint16", 65535), ("uint16", -9999), ("int16", -9999), ("uint8", 255), ("int32", 70000),
     ("float32", -9999.0), ("float64", 0.5), ("uint16", None)],
)  # fmt: skip
def test_nodata_of_any_dtype_is_compared_exactly(dtype, nodata):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    low, high = (max(info.min, -10000), min(info.max, 80000)) if info else (-10000, 80000)
    raw = {k: rng.integers(low, high, (3, 40)).astype(dtype) for k in ("red", "nir")}
    placed = nodata is not None and (info is None or info.min <= nodata <= info.max)
    if placed:
        raw["red"][0, :5] = nodata
    attrs = {"scale": 0.5, "offset": 3.0, **({} if nodata is None else {"nodata": nodata})}
    ds = xr.Dataset({k: (("t", "x"), v, attrs) for k, v in raw.items()})
    decoded = {k: v.astype(np.float32) * np.float32(0.5) + np.float32(3.0) for k, v in raw.items()}
    for k, v in raw.items():
        if nodata is not None:
            decoded[k][v.astype(np.float64) == nodata] = np.nan
    got = index(ds, "NDVI").values
    assert_same(got, numpy_reference(INDICES["NDVI"], {"N": decoded["nir"], "R": decoded["red"]}), f"{dtype} {nodata}")
    assert np.isnan(got[0, :5]).all() == placed


def test_a_nodata_band_only_blanks_the_indices_that_read_it_and_nonfinite_is_nan():
    ds = cube((1, 4, 5))
    ds["swir22"][0, 0, :] = np.nan
    ds["nir"][0, 1, :] = ds["red"][0, 1, :] = 0.0  # NDVI 0/0
    out = spectral_indices(ds, ["NDVI", "NBR"])
    assert np.isnan(out.NBR.values[0, 0]).all() and not np.isnan(out.NDVI.values[0, 0]).any()
    assert np.isnan(out.NDVI.values[0, 1]).all()


def test_single_index_equals_the_same_index_in_a_multi_index_pass():
    ds = cube()
    multi = spectral_indices(ds, SOME)
    for name in SOME:
        np.testing.assert_array_equal(index(ds, name).values, multi[name].values)


def test_result_keeps_dims_coords_crs_and_records_provenance():
    ds = cube().transpose("y", "time", "x")
    out = index(ds, "SAVI", L=0.25)
    assert out.dims == ("y", "time", "x") and out.name == "SAVI" and out.dtype == np.float32
    assert "spatial_ref" in out.coords and out.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(out.x.values, ds.x.values)
    assert out.attrs["formula"] == INDICES["SAVI"].formula
    assert out.attrs["constants"] == "L=0.25" and out.attrs["bands"] == "N=nir, R=red"
    assert out.attrs["reference"].startswith("http")
    assert ndvi(ds).name == "NDVI"


def test_dataarray_with_a_band_dimension_equals_the_dataset():
    ds = cube(letters=("R", "N", "B"))
    stacked = ds.to_dataarray("band")
    for name in ("NDVI", "EVI"):
        np.testing.assert_array_equal(index(stacked, name).values, index(ds, name).values)
        np.testing.assert_array_equal(index(stacked.chunk({"y": 8}), name).values, index(ds, name).values)


def test_tasks_carry_the_formula_program_not_a_pickled_kernel():
    import cloudpickle

    ds = cube().chunk({"y": 10})
    for result in (index(ds, "EVI"), spectral_indices(ds, ["NDVI", "MSAVI"]).NDVI):
        payload = cloudpickle.dumps(dict(result.data.__dask_graph__()))
        assert b"numba" not in payload and b"CPUDispatcher" not in payload


def test_fresh_worker_processes_compute_the_same_result():
    """Workers receive only the program and rebuild (or load from disk) the kernel on first use."""
    ds = cube((1, 12, 12)).chunk({"y": 6})
    expected = spectral_indices(ds, ["NDVI", "EVI"]).compute()
    with dask.config.set(scheduler="processes", num_workers=1):
        got = spectral_indices(ds, ["NDVI", "EVI"]).compute()
    xr.testing.assert_identical(got, expected)


# --- constants, bands, names ----------------------------------------------------------------------------------------


def test_constants_by_keyword_or_mapping_else_catalog_defaults():
    ds = cube(letters=("R", "N", "B"))
    env = {k: ds[BAND_NAMES[k][0]].values for k in ("R", "N", "B")}
    for kwargs, L in (({}, 1.0), ({"L": 0.25}, 0.25), ({"constants": {"L": 0.5}}, 0.5)):
        ref = numpy_reference(INDICES["SAVI"], {**env, "L": L})
        assert_same(index(ds, "SAVI", **kwargs).values, ref, f"SAVI {kwargs}")
    ref = numpy_reference(INDICES["EVI"], {**env, "g": 2.0, "C1": 6.0, "C2": 7.5, "L": 1.0})
    assert_same(spectral_indices(ds, ["EVI", "NDVI"], g=2.0).EVI.values, ref, "EVI g=2")


def test_constant_errors():
    ds = cube(letters=("R", "N", "N2", "S1", "S2"))
    with pytest.raises(InvalidArgumentError, match="unknown constant.*Q.*SAVI: L"):
        index(ds, "SAVI", Q=1.0)
    with pytest.raises(InvalidArgumentError, match="CRSWIR needs constant 'lambdaS2'.*no default"):
        index(ds, "CRSWIR")
    with pytest.raises(InvalidArgumentError, match="must be a number"):
        index(ds, "SAVI", L="half")
    with pytest.raises(InvalidArgumentError, match="finite"):
        index(ds, "SAVI", L=np.inf)
    assert np.isfinite(index(ds, "CRSWIR", lambdaS2=2190, lambdaN2=865, lambdaS1=1610).values).all()


def test_bands_found_by_common_name_synonym_or_mapping():
    ds = cube(letters=("R", "N"))
    expected = ndvi(ds).values
    as_b8 = ds.rename({"nir": "B8"})
    np.testing.assert_array_equal(index(as_b8, "NDVI", bands={"nir": "B8"}).values, expected)
    np.testing.assert_array_equal(index(as_b8, "NDVI", bands={"N": "B8"}).values, expected)
    np.testing.assert_array_equal(index(ds.rename({"nir": "nir08"}), "NDVI").values, expected)  # Landsat's name
    s2 = ds.rename({"nir": "B08", "red": "B04"})
    np.testing.assert_array_equal(index(s2, "NDVI", bands=SENTINEL2_ASSET_KEYS).values, expected)


def test_band_errors_name_the_band_and_the_fix():
    ds = cube(letters=("R", "N"))
    with pytest.raises(UnknownBandError, match=r"needs band S2 \(swir22\).*bands=\{'swir22'"):
        index(ds, "NBR")
    with pytest.raises(UnknownBandError, match="maps N to 'B8'"):
        index(ds, "NDVI", bands={"N": "B8"})
    with pytest.raises(InvalidArgumentError, match="'nri' is not a band letter"):
        index(ds, "NDVI", bands={"nri": "nir"})
    with pytest.raises(InvalidArgumentError, match="band 'nir' has dims"):
        index(xr.Dataset({"red": ("x", np.ones(3, np.float32)), "nir": ("y", np.ones(4, np.float32))}), "NDVI")
    with pytest.raises(InvalidArgumentError, match="must hold numbers"):
        index(ds.assign(red=ds.red > 0), "NDVI")
    with pytest.raises(InvalidArgumentError, match="labelled 'band' dimension"):
        index(ds.red, "NDVI")


def test_index_names_are_case_insensitive_unless_ambiguous():
    ds = cube(letters=("R", "N", "G", "S1"))
    np.testing.assert_array_equal(index(ds, "ndvi").values, index(ds, "NDVI").values)
    with pytest.raises(InvalidArgumentError, match="ambiguous: BAI or BaI"):
        index(ds, "bai")
    with pytest.raises(InvalidArgumentError, match="unknown index 'NDVX'"):
        index(ds, "NDVX")
    with pytest.raises(InvalidArgumentError, match="twice"):
        spectral_indices(ds, ["NDVI", "ndvi"])


@pytest.fixture
def registry():
    saved = dict(INDICES)
    yield
    INDICES.clear()
    INDICES.update(saved)


def test_register_index_by_formula(registry):
    spec = register_index("MYIDX", "(nir - R) / (N + red + k) * L", constants={"k": 0.1}, long_name="Mine")
    assert spec.bands == ("N", "R") and dict(spec.constants) == {"k": 0.1, "L": 1.0}
    ds = cube(letters=("R", "N"))
    bands = {"nir": ds.nir.values, "red": ds.red.values, "N": ds.nir.values, "R": ds.red.values}
    ref = numpy_reference(spec, {**bands, "k": 0.1, "L": 0.5})
    out = spectral_indices(ds, ["myidx", "NDVI"], L=0.5)
    assert_same(out.MYIDX.values, ref, "MYIDX")
    assert out.MYIDX.attrs["long_name"] == "Mine"
    register_index("MYIDX", "N - R", overwrite=True)
    np.testing.assert_allclose(index(ds, "MYIDX").values, ds.nir.values - ds.red.values, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "formula", "kwargs", "message"),
    [
        ("NDVI", "N - R", {}, "already exists"),
        ("X1", "(N - R", {}, "cannot parse"),
        ("X1", "N - Q", {}, "unknown name.*'Q'.*band letters"),
        ("X1", "N - R < 1", {}, "comparison"),
        ("X1", "N - R", {"constants": {"k": 1.0}}, "not used"),
        ("X1", "N - k", {"constants": {"k": "a"}}, "must be a number"),
        ("X1", "N - red", {"constants": {"red": 1.0}}, "not a band name"),
        ("X1", "L * 2", {}, "reads no band"),
        (" X1", "N", {}, "surrounding spaces"),
    ],
)
def test_register_index_errors(registry, name, formula, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        register_index(name, formula, **kwargs)
