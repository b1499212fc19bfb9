"""Spectral indices on loaded bands: the Awesome Spectral Indices catalog, and formulas of your own.

The catalog (:data:`INDICES`) holds the indices of the Awesome Spectral Indices
project (https://github.com/awesome-spectral-indices/awesome-spectral-indices,
by David Montero Loaiza and contributors, MIT licence) whose bands Sentinel-2
or Landsat deliver; ``geoproc/data/spectral_indices.json`` is a copy, with the
catalog's formulas, constants, references and contributors unchanged, made by
``scripts/update_spectral_indices.py``.

Formulas are written with the catalog's band letters (``N`` near infrared,
``R`` red, ``S1`` SWIR 1.6 um...; see :data:`BAND_NAMES`), which are looked up
in the data by common name (``nir``, ``red``, ``swir16``...) or as mapped by
``bands=`` (``bands=SENTINEL2_ASSET_KEYS`` for ``B04``-style names).

Each formula is compiled once into a fused numba kernel (``geoproc._formula``):
one pass per chunk reads the stored values, decodes raw integers (scale,
offset, nodata from the variable's attrs, as ``load(..., raw=True)`` leaves
them) to float32 as the loader does, evaluates the formula with numpy's float32
semantics and writes float32, NaN where an input is nodata or NaN or the result
is not finite. No float copy of the bands and no temporaries are made, and the
result is bit-identical to the catalog formula evaluated by numpy, xarray or
spyndex on the decoded float32 bands (but for powers other than ``** 2``,
``** 0.5``, ``** -1``, where numpy's pow and the C library's may differ in the
last bit). :func:`spectral_indices` computes several indices in one task per
chunk, so the bands are read (loaded) once for all of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib.resources import files

import dask.array as da
import numpy as np
import xarray as xr

from ._provenance import carry
from . import _formula
from ._blocks import is_dask, map_blocks
from .errors import InvalidArgumentError, UnknownBandError

__all__ = [
    "BAND_NAMES",
    "CONSTANTS",
    "INDICES",
    "SENTINEL2_ASSET_KEYS",
    "SpectralIndex",
    "index",
    "spectral_indices",
    "indices_array",
    "ndvi",
    "register_index",
]

#: Catalog band letter -> variable names it is looked up by, in order: the STAC common name first, then the
#: synonyms the loader also accepts (Landsat 8/9 call the NIR band ``nir08``; some catalogs ``swir1``/``swir2``).
#: Other names, such as asset keys, are mapped with ``bands=`` (``{"N": "B08"}``, ``{"nir": "B08"}``, or
#: ``bands=SENTINEL2_ASSET_KEYS``): asset keys are not guessed, as the same key names different bands on
#: different sensors (``B05`` is red edge on Sentinel-2, NIR on HLS Landsat).
BAND_NAMES: dict[str, tuple[str, ...]] = {
    "A": ("coastal",),
    "B": ("blue",),
    "G": ("green",),
    "R": ("red",),
    "RE1": ("rededge1",),
    "RE2": ("rededge2",),
    "RE3": ("rededge3",),
    "N": ("nir", "nir08"),
    "N2": ("nir08",),
    "WV": ("nir09",),
    "S1": ("swir16", "swir1"),
    "S2": ("swir22", "swir2"),
}

#: ``bands=`` for Sentinel-2 bands loaded by asset key (``B01`` ... ``B12``, ``B8A``).
SENTINEL2_ASSET_KEYS: dict[str, str] = {
    "A": "B01",
    "B": "B02",
    "G": "B03",
    "R": "B04",
    "RE1": "B05",
    "RE2": "B06",
    "RE3": "B07",
    "N": "B08",
    "N2": "B8A",
    "WV": "B09",
    "S1": "B11",
    "S2": "B12",
}

#: Any band name a formula may use -> its catalog letter (letters, common names and synonyms; common names win).
_ALIASES: dict[str, str] = {
    **{letter: letter for letter in BAND_NAMES},
    **{name: letter for letter, names in BAND_NAMES.items() for name in names[1:]},
    **{names[0]: letter for letter, names in BAND_NAMES.items()},
}


@dataclass(frozen=True)
class SpectralIndex:
    """A spectral index: a formula over band letters and constants.

    Attributes
    ----------
    short_name
        Name, as in the catalog (``"NDVI"``).
    long_name
        Human-readable name.
    formula
        The formula, a Python expression, as in the catalog (``"(N - R)/(N + R)"``).
    bands
        Band letters it reads (see :data:`BAND_NAMES`).
    constants
        ``(name, default)`` of each constant it uses; a ``None`` default must be given.
    application_domain, reference, contributor, platforms, date_of_addition
        Catalog metadata (empty for indices you register).
    """

    short_name: str
    long_name: str
    formula: str
    bands: tuple[str, ...]
    constants: tuple[tuple[str, float | None], ...] = ()
    application_domain: str = ""
    reference: str = ""
    contributor: str = ""
    platforms: tuple[str, ...] = ()
    date_of_addition: str = ""


def _read_catalog() -> tuple[dict, dict[str, SpectralIndex]]:
    data = json.loads(files("geoproc").joinpath("data", "spectral_indices.json").read_text(encoding="utf-8"))
    constants = data["constants"]
    out = {}
    for name, entry in data["indices"].items():
        names = entry["bands"]  # the formula's names (scripts/update_spectral_indices.py checks), parsed on use
        out[name] = SpectralIndex(
            short_name=entry["short_name"],
            long_name=entry["long_name"],
            formula=entry["formula"],
            bands=tuple(n for n in names if n not in constants),
            constants=tuple((n, constants[n]["default"]) for n in names if n in constants),
            application_domain=entry["application_domain"],
            reference=entry["reference"],
            contributor=entry["contributor"],
            platforms=tuple(entry["platforms"]),
            date_of_addition=entry["date_of_addition"],
        )
    return constants, out


#: Catalog constants: name -> ``{"default": value or None, "description": ...}``.
CONSTANTS: dict[str, dict]
CONSTANTS, _CATALOG = _read_catalog()

#: The indices :func:`index` knows, by name: the catalog, then those added by :func:`register_index`.
INDICES: dict[str, SpectralIndex] = dict(_CATALOG)


def _lookup(name: str | SpectralIndex) -> SpectralIndex:
    if isinstance(name, SpectralIndex):
        return name
    if not isinstance(name, str):
        raise InvalidArgumentError(f"an index name must be a string, got {type(name).__name__}; e.g. 'NDVI'")
    if name in INDICES:
        return INDICES[name]
    matches = [k for k in INDICES if k.upper() == name.upper()]
    if len(matches) == 1:
        return INDICES[matches[0]]
    if matches:
        raise InvalidArgumentError(f"index name {name!r} is ambiguous: {' or '.join(matches)}; spell it exactly")
    close = [k for k in INDICES if name.upper() in k.upper()][:8]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InvalidArgumentError(
        f"unknown index {name!r}{hint}; see geoproc.indices.INDICES ({len(INDICES)} indices) "
        "or add one with register_index"
    )


def register_index(
    name: str,
    formula: str,
    *,
    long_name: str | None = None,
    constants: Mapping[str, float] | None = None,
    reference: str = "",
    overwrite: bool = False,
) -> SpectralIndex:
    """Add an index defined by a formula, so that :func:`index` and :func:`spectral_indices` compute it by name.

    Parameters
    ----------
    name
        Its name (looked up case-insensitively as well).
    formula
        A Python expression over band letters (``N``, ``R``, ``S1``... see
        :data:`BAND_NAMES`) or common band names (``nir``, ``red``, ``swir16``...),
        constants, numbers, ``+ - * / **``, unary minus, parentheses and
        ``sqrt``, ``abs``, ``exp``, ``log``.
    long_name
        Human-readable name (default: ``name``).
    constants
        Default values of the formula's own constants. Catalog constants
        (:data:`CONSTANTS`, e.g. ``L``) may be used without a value here.
    reference
        Where the index is published.
    overwrite
        Replace an index of the same name.

    Returns
    -------
    SpectralIndex
        The registered index.

    Raises
    ------
    InvalidArgumentError
        For bad syntax, a name that is neither a band nor a constant, or a name already taken.

    Examples
    --------
    >>> spec = register_index("NDVI_SOFT", "(nir - red) / (nir + red + k)", constants={"k": 0.1})
    >>> spec.bands, spec.constants
    (('N', 'R'), (('k', 0.1),))
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.1])), "nir": ("x", np.float32([0.5]))})
    >>> round(float(index(ds, "NDVI_SOFT")[0]), 6)
    0.571429
    """
    if not isinstance(name, str) or not name.strip() or name.strip() != name:
        raise InvalidArgumentError(f"an index name must be a non-empty string without surrounding spaces, got {name!r}")
    taken = [k for k in INDICES if k.upper() == name.upper()]
    if taken and not overwrite:
        raise InvalidArgumentError(f"index {taken[0]!r} already exists; pass overwrite=True to replace it, or rename")
    own = {}
    for key, value in (constants or {}).items():
        if not isinstance(key, str) or not key.isidentifier() or key in _ALIASES:
            raise InvalidArgumentError(f"constant name {key!r} must be an identifier that is not a band name")
        own[key] = _number(key, value)
    hint = (
        "; use band letters (" + ", ".join(BAND_NAMES) + ") or names (" + ", ".join(n[0] for n in BAND_NAMES.values())
        + "), catalog constants, or give the formula's constants with constants={'name': value}"
    )
    parsed = _formula.parse(
        formula, lambda n: n in _ALIASES or n in own or n in CONSTANTS, what=f"formula of {name!r}", hint=hint
    )
    unused = sorted(set(own) - set(parsed.names))
    if unused:
        raise InvalidArgumentError(f"constants {unused} are not used by the formula {formula!r}; remove them")
    letters = tuple(dict.fromkeys(_ALIASES[n] for n in parsed.names if n in _ALIASES and n not in own))
    if not letters:
        raise InvalidArgumentError(f"the formula {formula!r} reads no band; use band letters such as N and R")
    spec = SpectralIndex(
        short_name=name,
        long_name=long_name or name,
        formula=formula,
        bands=letters,
        constants=tuple(
            (n, own[n] if n in own else CONSTANTS[n]["default"]) for n in parsed.names if n not in _ALIASES
        ),
        application_domain="custom",
        reference=reference,
    )
    for key in taken:
        del INDICES[key]
    INDICES[name] = spec
    return spec


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidArgumentError(f"constant {name}={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"constant {name}={value!r} must be finite")
    return value


# --- inputs: bands and constants -------------------------------------------------------------------------------------


def _variables(data: xr.Dataset | xr.DataArray) -> Mapping[str, xr.DataArray]:
    """Band name -> DataArray, from a Dataset (one variable per band) or a DataArray with a ``band`` dimension."""
    if isinstance(data, xr.Dataset):
        return data.data_vars
    if isinstance(data, xr.DataArray) and "band" in data.dims and "band" in data.coords:
        return {str(b): data.isel(band=i, drop=True) for i, b in enumerate(data.coords["band"].values)}
    raise InvalidArgumentError(
        "indices need a Dataset with one variable per band (as geoproc.load returns) or a DataArray with a "
        f"labelled 'band' dimension; got {type(data).__name__}"
    )


def _band_map(bands: Mapping[str, str] | None) -> dict[str, str]:
    """``bands=`` keyed by letter: ``{"nir": "B08"}`` -> ``{"N": "B08"}``."""
    out: dict[str, str] = {}
    for key, var in (bands or {}).items():
        if key not in _ALIASES:
            raise InvalidArgumentError(
                f"bands={{{key!r}: ...}}: {key!r} is not a band letter or name; use one of "
                + ", ".join(f"{k} ({v[0]})" for k, v in BAND_NAMES.items())
            )
        out[_ALIASES[key]] = var
    return out


def _resolve(variables: Mapping[str, xr.DataArray], letters: Iterable[str], bands: dict[str, str], who: str) -> dict:
    """Letter -> variable name in the data."""
    out = {}
    for letter in letters:
        if letter in bands:
            if bands[letter] not in variables:
                raise UnknownBandError(
                    f"bands= maps {letter} to {bands[letter]!r}, which is not in the data "
                    f"(variables: {', '.join(map(str, variables))}); fix the mapping"
                )
            out[letter] = bands[letter]
            continue
        found = next((n for n in BAND_NAMES[letter] if n in variables), None)
        if found is None:
            raise UnknownBandError(
                f"{who} needs band {letter} ({BAND_NAMES[letter][0]}) but the data has "
                f"{', '.join(map(str, variables))}; "
                f"load it, or map it with bands={{{BAND_NAMES[letter][0]!r}: 'variable'}}"
            )
        out[letter] = found
    return out


def _constant_values(specs: Sequence[SpectralIndex], given: Mapping[str, object]) -> list[tuple[float, ...]]:
    names = {n for spec in specs for n, _ in spec.constants}
    unknown = sorted(set(given) - names)
    if unknown:
        have = ", ".join(f"{s.short_name}: {', '.join(n for n, _ in s.constants) or 'none'}" for s in specs)
        raise InvalidArgumentError(f"unknown constant(s) {', '.join(unknown)}; the constants are ({have})")
    out = []
    for spec in specs:
        values = []
        for name, default in spec.constants:
            value = given.get(name, default)
            if value is None:
                about = CONSTANTS.get(name, {}).get("description", "")
                raise InvalidArgumentError(
                    f"{spec.short_name} needs constant {name!r}{f' ({about})' if about else ''}, which has no default; "
                    f"pass it, e.g. index(ds, {spec.short_name!r}, {name}=...)"
                )
            values.append(_number(name, value))
        out.append(tuple(values))
    return out


def _decoding(var: xr.DataArray) -> tuple[float, float, float]:
    attrs = var.attrs
    nodata = attrs.get("nodata")
    nodata = np.nan if nodata is None else float(nodata)
    return float(attrs.get("scale", 1.0)), float(attrs.get("offset", 0.0)), nodata


# --- the dask/numpy layer --------------------------------------------------------------------------------------------


#: Up to this many indices, :func:`spectral_indices` runs one kernel per index on each chunk (vectorised, and
#: shared with :func:`index`); beyond, one kernel computes them all (one compile, ~13 s for the whole catalog,
#: instead of ~0.35 s per index). See ``geoproc/kernels/indices.py``.
MAX_SEPARATE_KERNELS = 8

#: One kernel call per chunk: (program, positions of the arrays it reads, its constant values).
Step = tuple[_formula.Program, tuple[int, ...], tuple[float, ...]]


def _typed_nodata(dtype: np.dtype, nodata: float):
    """``nodata`` as a scalar of the array's dtype where it is one, so that the kernel compares raw values in their
    own type (a float64 comparison of every uint16 pixel cost a quarter of the NDVI kernel's time); else float64
    (no raw value can equal it; NaN: no nodata value)."""
    if dtype.kind == "f" and np.isnan(nodata):
        return dtype.type(nodata)
    if not np.isnan(nodata):
        try:
            with np.errstate(all="ignore"):
                native = dtype.type(nodata)
        except (OverflowError, ValueError):
            native = None
        if native is not None and float(native) == nodata:
            return native
    return np.float64(nodata)


def _rows(block: np.ndarray) -> tuple[np.ndarray, int]:
    """``block`` as rows of its last axis for the kernels: a 1-D unit-stride span of memory and its row stride.

    A C-contiguous block is one row. A view whose rows are cut from wider ones
    (a slice of an in-memory array, as ``DataArray.chunk()`` makes) is passed as
    the memory from its first to its last element, read row by row by the
    kernel: no copy. Anything else (reversed or strided columns) is copied.
    """
    if block.dtype == np.float16:
        block = block.astype(np.float32)
    natural = block.shape[-1] if block.ndim else 1  # the row stride of a C-contiguous block
    if block.flags.c_contiguous:
        return block.reshape(-1), natural
    item = block.itemsize
    single = tuple(k for k in range(block.ndim - 1) if block.shape[k] == 1)  # their strides mean nothing
    core = block.squeeze(axis=single) if single else block
    shape, strides = core.shape, core.strides
    # rows of the last axis, each one unit-stride, evenly spaced (leading axes collapse into one row axis)
    if (
        core.ndim >= 2 and strides[-1] == item and strides[-2] > 0 and strides[-2] % item == 0
        and all(strides[k] == shape[k + 1] * strides[k + 1] for k in range(core.ndim - 2))
    ):  # fmt: skip
        step = strides[-2] // item
        span = (core.size // shape[-1] - 1) * step + shape[-1]
        return np.lib.stride_tricks.as_strided(core, (span,), (item,), writeable=core.flags.writeable), step
    return np.ascontiguousarray(block).reshape(-1), natural


def _index_block(steps: tuple[Step, ...], decodes: tuple, squeeze: bool, *blocks: np.ndarray) -> np.ndarray:
    shape = blocks[0].shape
    n_out = sum(len(prog.outputs) for prog, _, _ in steps)
    width = shape[-1] if len(shape) else 1
    # allocated by numpy (huge pages for large arrays) rather than in the kernel, where numba's allocator costs a
    # page fault per 4 KiB: that alone made the kernel several times slower on 4096 x 4096 px
    out = np.empty((n_out, math.prod(shape)), dtype=np.float32)
    if out.size:
        spans = [_rows(block) for block in blocks]
        if all(span.size == out.shape[1] for span, _ in spans):  # all contiguous: one long row (row 0 only)
            width = out.shape[1]
        decodes = [(s, o, _typed_nodata(span.dtype, nodata)) for (span, _), (s, o, nodata) in zip(spans, decodes, strict=True)]
        row = 0
        for prog, inputs, constants in steps:
            args = [x for i in inputs for x in (*spans[i], *decodes[i])]
            _formula.compiled(prog)(out[row : row + len(prog.outputs)], width, *args, *constants)
            row += len(prog.outputs)
    return out[0].reshape(shape) if squeeze else out.reshape((n_out, *shape))


def indices_array(
    steps: Sequence[Step],
    arrays: Sequence,
    decodes: Sequence[tuple[float, float, float]],
    *,
    squeeze: bool = False,
):
    """The dask/numpy layer: run compiled formula programs on equally shaped numpy or dask arrays.

    Each step is ``(program, positions in arrays of its inputs, constant
    values)`` (see ``geoproc._formula``); ``decodes`` holds ``(scale, offset,
    nodata)`` per array. Returns float32 of shape ``(n_outputs, *shape)``, or
    ``shape`` if ``squeeze`` and there is one output. Dask inputs are aligned on
    the first dask input's chunks; tasks carry the programs (strings), and each
    process compiles its kernels, or loads them from the disk cache, on first use.
    """
    n_out = sum(len(prog.outputs) for prog, _, _ in steps)
    if squeeze and n_out != 1:
        raise InvalidArgumentError(f"squeeze=True needs one output, not {n_out}")
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) != 1:
        raise InvalidArgumentError(f"bands differ in shape: {sorted(shapes)}; load them onto one grid")
    for arr in arrays:
        if np.dtype(arr.dtype).kind not in "uif":
            raise InvalidArgumentError(f"bands must hold numbers, got dtype {arr.dtype}; convert the band first")
    arrays = list(arrays)
    lazy = [a for a in arrays if is_dask(a)]
    if lazy:
        chunks = lazy[0].chunks
        arrays = [a.rechunk(chunks) if is_dask(a) else da.from_array(a, chunks=chunks) for a in arrays]
    steps = tuple((prog, tuple(inputs), tuple(constants)) for prog, inputs, constants in steps)
    block = partial(_index_block, steps, tuple(map(tuple, decodes)), squeeze)
    if squeeze or not lazy:
        return map_blocks(block, *arrays, dtype=np.float32)
    return map_blocks(block, *arrays, dtype=np.float32, new_axis=0, chunks=((n_out,), *chunks))


# --- the public functions --------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _program(
    formulas: tuple[str, ...], slots: tuple[tuple[str, int], ...], constants: tuple[tuple[str, ...], ...]
) -> _formula.Program:
    """The program computing ``formulas``: ``slots`` gives the input position of each band letter, ``constants``
    the constant names of each formula in the order of their values."""
    slot = dict(slots)
    parsed = [_formula.parse(f) for f in formulas]
    inputs = {name: slot[_ALIASES[name]] for p in parsed for name in p.names if name in _ALIASES}
    return _formula.program(parsed, inputs, constants)


def _steps(specs: Sequence[SpectralIndex], where: Mapping[str, str], order: list[str], values) -> list[Step]:
    """Kernel calls computing ``specs`` from the variables ``order`` (``where``: letter -> variable)."""
    n = len(specs)
    groups = [[j] for j in range(n)] if n <= MAX_SEPARATE_KERNELS else [list(range(n))]
    steps = []
    for group in groups:
        letters = [letter for letter in BAND_NAMES if any(letter in specs[j].bands for j in group)]
        own = list(dict.fromkeys(where[letter] for letter in letters))
        slots = tuple((letter, own.index(where[letter])) for letter in letters)
        names = tuple(tuple(c for c, _ in specs[j].constants) for j in group)
        prog = _program(tuple(specs[j].formula for j in group), slots, names)
        steps.append((prog, tuple(order.index(v) for v in own), tuple(c for j in group for c in values[j])))
    return steps


def _compute(data, names, bands, constants, squeeze):
    """Resolve, compile and run; returns (values, specs, template band, per-spec provenance attrs)."""
    specs = [_lookup(n) for n in names]
    variables = _variables(data)
    mapping = _band_map(bands)
    used = [letter for letter in BAND_NAMES if any(letter in s.bands for s in specs)]
    where = _resolve(variables, used, mapping, ", ".join(s.short_name for s in specs))
    order = list(dict.fromkeys(where[letter] for letter in used))  # one input per variable
    values = _constant_values(specs, constants)
    steps = _steps(specs, where, order, values)
    first = variables[order[0]]
    arrays, decodes = [], []
    for var in order:
        band = variables[var]
        if set(band.dims) != set(first.dims):
            raise InvalidArgumentError(f"band {var!r} has dims {band.dims}, {order[0]!r} has {first.dims}; align them")
        arrays.append(band.transpose(*first.dims).data)
        decodes.append(_decoding(band))
    result = indices_array(steps, arrays, decodes, squeeze=squeeze)
    attrs = []
    for spec, vals in zip(specs, values, strict=True):
        a = {"long_name": spec.long_name, "formula": spec.formula, "nodata": np.nan}
        a["bands"] = ", ".join(f"{letter}={where[letter]}" for letter in spec.bands)
        if spec.constants:
            a["constants"] = ", ".join(f"{n}={v:g}" for (n, _), v in zip(spec.constants, vals, strict=True))
        if spec.reference:
            a["reference"] = spec.reference
        attrs.append(a)
    return result, specs, first, attrs


def index(
    data: xr.Dataset | xr.DataArray,
    name: str | SpectralIndex,
    *,
    bands: Mapping[str, str] | None = None,
    constants: Mapping[str, float] | None = None,
    **kwargs: float,
) -> xr.DataArray:
    """Compute a spectral index from the bands of a Dataset.

    Parameters
    ----------
    data
        Dataset with one variable per band (as :func:`geoproc.load` returns,
        decoded floats or ``raw=True`` integers with ``scale``/``offset``/``nodata``
        attrs), or a DataArray with a labelled ``band`` dimension.
    name
        Index name (case-insensitive when unambiguous): a catalog index of
        :data:`INDICES` (``"NDVI"``, ``"EVI"``, ``"SAVI"``, ``"NBR"``...), one added
        with :func:`register_index`, or a :class:`SpectralIndex`.
    bands
        Map from band letters or names to variables of ``data``, for variables
        not named as :data:`BAND_NAMES` expects (``{"nir": "B8"}`` or ``{"N": "B8"}``).
    constants, **kwargs
        Values of the formula's constants (``L=0.5`` or ``constants={"L": 0.5}``);
        catalog defaults otherwise.

    Returns
    -------
    xarray.DataArray
        float32, NaN where an input is nodata/NaN or the result is not finite;
        same dims and coords as the bands; lazy if they are. ``attrs`` records
        the formula, bands, constants and reference.

    Examples
    --------
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.1, 0.2])), "nir": ("x", np.float32([0.5, 0.2]))})
    >>> index(ds, "NDVI").values.round(4)
    array([0.6667, 0.    ], dtype=float32)
    >>> index(ds, "SAVI", L=0.25).values.round(4)
    array([0.5882, 0.    ], dtype=float32)
    >>> index(ds, "SAVI").attrs["formula"]
    '(1.0 + L) * (N - R) / (N + R + L)'
    """
    values, (spec,), first, (attrs,) = _compute(data, [name], bands, {**(constants or {}), **kwargs}, True)
    return xr.DataArray(values, dims=first.dims, coords=first.coords, name=spec.short_name, attrs={**carry(data), **attrs})


def spectral_indices(
    data: xr.Dataset | xr.DataArray,
    names: Iterable[str | SpectralIndex],
    *,
    bands: Mapping[str, str] | None = None,
    constants: Mapping[str, float] | None = None,
    **kwargs: float,
) -> xr.Dataset:
    """Several spectral indices at once: one task per chunk computes them all from the bands read once.

    Up to :data:`MAX_SEPARATE_KERNELS` indices, each runs its own kernel (the
    one :func:`index` uses) on the chunk in memory; beyond, one kernel computes
    them all in a single loop (compiled once instead of once per index).

    Parameters
    ----------
    data, bands
        As in :func:`index`.
    names
        Index names (see :func:`index`).
    constants, **kwargs
        Constant values; one applies to every index that uses a constant of that name.

    Returns
    -------
    xarray.Dataset
        One float32 variable per index, named as the index.

    Examples
    --------
    >>> ds = xr.Dataset({n: ("x", np.float32([v])) for n, v in [("red", 0.1), ("nir", 0.5), ("swir22", 0.2)]})
    >>> out = spectral_indices(ds, ["NDVI", "NBR"])
    >>> list(out.data_vars), [round(float(out[v][0]), 4) for v in out.data_vars]
    (['NDVI', 'NBR'], [0.6667, 0.4286])
    """
    names = [names] if isinstance(names, str | SpectralIndex) else list(names)
    if not names:
        raise InvalidArgumentError("no index names given; pass e.g. ['NDVI', 'NBR']")
    values, specs, first, attrs = _compute(data, names, bands, {**(constants or {}), **kwargs}, False)
    labels = [s.short_name for s in specs]
    if len(set(labels)) != len(labels):
        raise InvalidArgumentError(f"an index is asked for twice in {labels}; list each once")
    variables = {label: (first.dims, values[j], a) for j, (label, a) in enumerate(zip(labels, attrs, strict=True))}
    return xr.Dataset(variables, coords=first.coords, attrs=carry(data))


def ndvi(data: xr.Dataset | xr.DataArray, *, bands: Mapping[str, str] | None = None) -> xr.DataArray:
    """Normalized Difference Vegetation Index, ``(nir - red) / (nir + red)``.

    Same as ``index(data, "NDVI")``; see :func:`index`.

    Examples
    --------
    >>> ds = xr.Dataset({"red": ("x", np.float32([0.05])), "nir": ("x", np.float32([0.45]))})
    >>> round(float(ndvi(ds)[0]), 4)
    0.8
    """
    return index(data, "NDVI", bands=bands)
