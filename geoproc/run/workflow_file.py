"""Workflow files: parse, validate and build a pipeline of geoproc's public functions.

A workflow file (YAML, schema in ``workflows/workflow.schema.json``) names a catalog and a search, a list of
**steps**, each one call of a public geoproc function with literal arguments or references to earlier steps
(``$name``), and the **products** to write, each its own Zarr store::

    name: nightly-ndvi
    catalog: https://stac.example.org
    search: {collections: [sentinel-2-l2a], bbox: [17.88, 45.45, 18.08, 45.51], datetime: 2024-01-01/..}
    steps:
      data:    {load: {bands: [red, nir, scl], resolution: 10}}
      cloudy:  {cloud_mask: {data: $data}}
      ndvi:    {index: {data: $data, name: NDVI}}
      clear:   {masked: {data: $ndvi, mask: $cloudy}}
      monthly: {composite: {data: $ndvi, method: median, mask: $cloudy}, per: month}
    products:
      ndvi:    {step: clear, output: out/ndvi.zarr}
      monthly: {step: monthly, output: out/ndvi_monthly.zarr}

A file is data, not code: only the functions in :data:`FUNCTIONS` (geoproc's public processing functions and
three wiring steps, :data:`WIRING`) can be named, arguments are YAML literals or ``$step`` references, and
YAML tags other than the standard ones (``!!python/object``, ``!!python/name``, custom tags) are refused.
The whole file is checked before anything is read; each mistake is one line naming the file, the line and
the fix (:class:`geoproc.errors.InvalidArgumentError`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import InvalidArgumentError

__all__ = ["Workflow", "Step", "Product", "read_workflow", "parse_workflow", "FUNCTIONS", "WIRING", "PERIODS"]

#: geoproc's public functions a step may call (IO, display and registration functions excluded).
PUBLIC = (
    "load", "cloud_mask", "spectral_classes", "fmask_classes", "dilate", "remove_small_objects", "ndvi", "index",
    "spectral_indices", "median_filter", "gaussian_filter", "bilateral_filter", "lee_filter", "stretch",
    "adjust_gamma", "equalize_hist", "clahe", "pansharpen", "glcm", "sobel", "canny", "classify", "composite",
    "change", "change_mask", "burn_severity", "harmonic_fit", "bfast_monitor", "ccdc_segments", "label",
    "felzenszwalb",
)


def _masked(data, mask):
    """``data`` where ``mask`` is False, NaN where it is True (a cloud mask applied to a cube)."""
    return data.where(~mask.astype(bool))


def _between(data, start=None, end=None):
    """The dates of ``data`` from ``start`` to ``end`` (inclusive; ISO dates)."""
    return data.sel(time=slice(start, end))


def _select(data, bands):
    """Some variables of a Dataset (``bands``: a list of names)."""
    return data[list(bands)]


#: Wiring steps: no science, only selection and masking of cubes that other steps computed.
WIRING: dict[str, Callable] = {"masked": _masked, "between": _between, "select": _select}

#: Every function a step may name.
FUNCTIONS = (*PUBLIC, *WIRING)

#: ``per:`` values: a step applied to each calendar period of its inputs' dates (pandas period aliases).
PERIODS = {"day": "D", "week": "W", "month": "M", "quarter": "Q", "year": "Y"}

TOP_KEYS = ("name", "description", "catalog", "generate", "search", "steps", "products", "state", "cluster",
            "lock_lease")
SEARCH_KEYS = ("collections", "bbox", "intersects", "datetime", "query", "filter", "filter_lang", "max_items")
PRODUCT_KEYS = ("step", "output", "zarr_format", "overviews")
_STD_TAG = "tag:yaml.org,2002:"
_SAFE_TAGS = {f"{_STD_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


@dataclass(frozen=True)
class Step:
    """One call: ``function(**args)``; args hold literals and :class:`Ref` to earlier steps."""

    name: str
    function: str
    args: dict[str, Any]
    per: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Ref:
    """A reference to an earlier step's result (``$name`` in the file)."""

    step: str


@dataclass(frozen=True)
class Product:
    """A step's result written to its own Zarr store."""

    name: str
    step: str
    output: str
    zarr_format: int | None = None
    overviews: bool | int = False


@dataclass(frozen=True)
class Workflow:
    """A validated workflow file."""

    path: str
    name: str
    catalog: str
    search: dict[str, Any]
    steps: tuple[Step, ...]
    products: tuple[Product, ...]
    state: str
    generate: dict[str, Any] | None = None
    cluster: Any = None
    lock_lease: float = 300.0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def build(self, items) -> dict[str, Any]:
        """Call every step on ``items`` (the search result): the lazy results by step name."""
        import geoproc

        results: dict[str, Any] = {}
        for step in self.steps:
            fn = WIRING.get(step.function) or getattr(geoproc, step.function)
            args = {k: _resolve(v, results) for k, v in step.args.items()}
            if step.function == "load":
                if "bbox" in self.search and not {"bbox", "bounds", "geometry", "like"} & set(args):
                    args["bbox"] = self.search["bbox"]
                results[step.name] = fn(items, **args)
            elif step.per:
                results[step.name] = _per_period(fn, args, PERIODS[step.per])
            else:
                results[step.name] = fn(**args)
        return results


def _resolve(value, results):
    if isinstance(value, Ref):
        return results[value.step]
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    return value


def _per_period(fn: Callable, args: dict, freq: str):
    """``fn`` on each calendar period of the dates of its time-series arguments, stacked along ``time``
    stamped with each period's first day (wiring only: the function does the work)."""
    import pandas as pd
    import xarray as xr

    series = {k: v for k, v in args.items() if isinstance(v, (xr.DataArray, xr.Dataset)) and "time" in v.dims}
    times = pd.DatetimeIndex(next(iter(series.values()))["time"].values)
    periods = times.to_period(freq)
    parts, labels = [], []
    for period in periods.unique():
        keep = periods == period
        sub = {k: (v.isel(time=keep) if k in series else v) for k, v in args.items()}
        parts.append(fn(**sub))
        labels.append(period.start_time.to_datetime64())
    out = xr.concat(parts, dim="time", combine_attrs="override")
    return out.assign_coords(time=("time", pd.DatetimeIndex(labels).values.astype("datetime64[ns]")))


# -- reading YAML with line numbers, refusing constructor tags

class _Node:
    """A YAML value and its line (1-based)."""

    __slots__ = ("value", "line")

    def __init__(self, value, line):
        self.value, self.line = value, line


def _convert(node: yaml.Node, path: str, scalar: Callable) -> _Node:
    line = node.start_mark.line + 1
    tag = node.tag or ""
    if tag not in _SAFE_TAGS:
        raise InvalidArgumentError(
            f"{path}:{line}: YAML tag {tag.replace(_STD_TAG, '!!')!r} is not allowed: a workflow file is data, "
            "not code; write plain values (strings, numbers, lists, mappings) instead"
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        for key, value in node.value:
            k = _convert(key, path, scalar)
            if not isinstance(k.value, (str, int, float)):
                raise InvalidArgumentError(f"{path}:{k.line}: mapping keys must be plain strings")
            out[str(k.value)] = _convert(value, path, scalar)
        return _Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_convert(v, path, scalar) for v in node.value], line)
    return _Node(scalar(node), line)


def _plain(node: _Node):
    if isinstance(node.value, dict):
        return {k: _plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(v) for v in node.value]
    return node.value


def read_workflow(path: str | os.PathLike) -> Workflow:
    """Read and validate a workflow file; raises one-line errors naming the file and the line.

    Examples
    --------
    >>> import os
    >>> examples = os.path.join(os.path.dirname(geoproc.__file__), "..", "workflows")  # the repository's examples
    >>> wf = read_workflow(os.path.join(examples, "ndvi_cube.yaml"))
    >>> [p.name for p in wf.products]
    ['ndvi']
    """
    path = os.fspath(path)
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read workflow file {path}: {exc.strerror}; check the path") from None
    return parse_workflow(text, path)


def parse_workflow(text: str, path: str = "<workflow>") -> Workflow:
    """Validate the YAML ``text`` of a workflow file (``path`` names it in errors)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise InvalidArgumentError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    finally:
        loader.dispose()
    if root is None:
        raise InvalidArgumentError(f"{path}: the file is empty; see workflows/ for examples")
    top = _convert(root, path, lambda n: yaml.SafeLoader("").construct_object(n, deep=True))
    return _Validator(path).workflow(top)


class _Validator:
    def __init__(self, path: str):
        self.path = path

    def fail(self, line: int, message: str) -> None:
        raise InvalidArgumentError(f"{self.path}:{line}: {message}")

    def mapping(self, node: _Node, what: str) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            self.fail(node.line, f"{what} must be a mapping (key: value)")
        return node.value

    def keys(self, node: _Node, allowed, what: str) -> None:
        for key, value in self.mapping(node, what).items():
            if key not in allowed:
                self.fail(value.line, f"unknown key {key!r} in {what}; valid keys: {', '.join(allowed)}")

    def workflow(self, top: _Node) -> Workflow:
        self.keys(top, TOP_KEYS, "the workflow")
        d = top.value
        for key in ("catalog", "steps", "products"):
            if key not in d:
                self.fail(top.line, f"the workflow lacks {key!r}; see workflows/ for examples")
        if not isinstance(d["catalog"].value, str):
            self.fail(d["catalog"].line, "catalog must be a path or URL (a string)")
        search = d.get("search", _Node({}, top.line))
        self.keys(search, SEARCH_KEYS, "search")
        steps: list[Step] = []
        for name, node in self.mapping(d["steps"], "steps").items():
            steps.append(self.step(name, node, {s.name: s for s in steps}))
        if not steps or steps[0].function != "load":
            self.fail(d["steps"].line, "the first step must be a load step (it reads the searched items)")
        products = []
        outputs: dict[str, str] = {}
        for name, node in self.mapping(d["products"], "products").items():
            self.keys(node, PRODUCT_KEYS, f"product {name!r}")
            p = {k: _plain(v) for k, v in node.value.items()}
            for key in ("step", "output"):
                if not isinstance(p.get(key), str):
                    self.fail(node.line, f"product {name!r} needs {key!r} (a string)")
            ref = p["step"].lstrip("$")
            if ref not in {s.name for s in steps}:
                self.fail(node.value["step"].line, f"product {name!r} names step {ref!r}, which does not exist; "
                          f"steps: {', '.join(s.name for s in steps)}")
            if p["output"] in outputs:
                self.fail(node.value["output"].line, f"products {outputs[p['output']]!r} and {name!r} write the same "
                          "output; give each product its own store")
            outputs[p["output"]] = name
            products.append(Product(name, ref, p["output"], p.get("zarr_format"), p.get("overviews", False)))
        if not products:
            self.fail(d["products"].line, "the workflow writes no products; name at least one")
        raw = _plain(top)
        first = products[0].output.rstrip("/")
        name = raw.get("name") or os.path.splitext(os.path.basename(self.path))[0]
        state = raw.get("state") or f"{first.rsplit('/', 1)[0] if '/' in first else '.'}/{name}.workflow"
        lease = raw.get("lock_lease", 300)
        if not isinstance(lease, (int, float)) or lease < 5:
            self.fail(d["lock_lease"].line, f"lock_lease must be seconds >= 5, got {lease!r}")
        return Workflow(self.path, str(name), raw["catalog"], raw.get("search") or {}, tuple(steps), tuple(products),
                        state, raw.get("generate"), raw.get("cluster"), float(lease), raw)

    def step(self, name: str, node: _Node, earlier: dict[str, Step]) -> Step:
        body = self.mapping(node, f"step {name!r}")
        per = body.get("per")
        calls = [k for k in body if k != "per"]
        if len(calls) != 1:
            self.fail(node.line, f"step {name!r} must name exactly one function (and optionally per:), "
                      f"got {calls or 'none'}")
        fn_name = calls[0]
        line = body[fn_name].line
        if fn_name not in FUNCTIONS:
            hint = ("dotted paths and imports are not allowed: a workflow can call only geoproc's public functions"
                    if "." in fn_name or fn_name.startswith("_") else "")
            self.fail(line, f"step {name!r}: {fn_name!r} is not a function a workflow can call"
                      f"{'; ' + hint if hint else ''}; choose one of {', '.join(FUNCTIONS)}")
        if per is not None and per.value not in PERIODS:
            self.fail(per.line, f"step {name!r}: per must be one of {', '.join(PERIODS)}, got {per.value!r}")
        args_node = body[fn_name]
        if args_node.value is None:
            args_node = _Node({}, line)
        args_map = self.mapping(args_node, f"the arguments of step {name!r}")
        fn = WIRING.get(fn_name)
        if fn is None:
            import geoproc

            fn = getattr(geoproc, fn_name)
        params = inspect.signature(fn).parameters
        names = [p for p in params if params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        if fn_name == "load":
            names = names[1:]  # the items: the search result
        accepts_more = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
        args: dict[str, Any] = {}
        var_kw = next((p for p in params.values() if p.kind == inspect.Parameter.VAR_KEYWORD), None)
        for key, value in args_map.items():
            extra_ok = accepts_more and isinstance(_plain(value), (int, float)) and "float" in str(var_kw.annotation)
            if key not in names and not extra_ok:
                self.fail(value.line, f"step {name!r}: {fn_name}() has no argument {key!r}; "
                          f"its arguments: {', '.join(names)}")
            args[key] = self.value(value, name, key, params.get(key), earlier)
        for p in names:
            if params[p].default is inspect.Parameter.empty and p not in args:
                self.fail(line, f"step {name!r}: {fn_name}() needs {p!r}; add it to the step's arguments")
        if fn_name in ("index", "spectral_indices"):
            self.bands(name, fn_name, args, earlier, line)
        return Step(name, fn_name, args, per.value if per is not None else None, line)

    def value(self, node: _Node, step: str, key: str, param, earlier):
        plain = _plain(node)
        if isinstance(plain, str) and plain.startswith("$"):
            ref = plain[1:]
            if ref not in earlier:
                self.fail(node.line, f"step {step!r}: {key}: ${ref} is not an earlier step; steps so far: "
                          f"{', '.join(earlier) or 'none'} (a step can use only the steps above it)")
            return Ref(ref)
        if param is not None:
            self.check_type(node, plain, step, key, str(param.annotation))
        return plain

    def check_type(self, node: _Node, value, step: str, key: str, annotation: str) -> None:
        if annotation in ("<class 'inspect._empty'>", "inspect._empty"):
            return
        tokens = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "Sequence": (list,),
                  "Iterable": (list,), "tuple": (list,), "list": (list,), "Mapping": (dict,), "dict": (dict,),
                  "None": (type(None),), "SpectralIndex": (str,)}
        if any(t in annotation for t in ("Any", "object", "Callable")):
            return
        allowed = tuple({t for tok, types in tokens.items() if tok in annotation for t in types})
        xarray_only = "xr." in annotation and not allowed
        if xarray_only:
            self.fail(node.line, f"step {step!r}: {key} takes a cube: write $step_name (an earlier step), "
                      f"not {value!r}")
        if allowed and not (isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)):
            import datetime as dt

            if isinstance(value, (dt.date, dt.datetime)) and str in allowed:
                return
            self.fail(node.line, f"step {step!r}: {key} must be {annotation.replace('xr.', '')}, "
                      f"got {type(value).__name__} {value!r}")

    def bands(self, step: str, fn_name: str, args: dict, earlier: dict[str, Step], line: int) -> None:
        """An index step whose load step lacks a band it needs."""
        from ..indices import INDICES

        source = args.get("data")
        while isinstance(source, Ref) and earlier[source.step].function != "load":
            source = earlier[source.step].args.get("data")
        if not isinstance(source, Ref) or args.get("bands"):
            return
        loaded = earlier[source.step].args.get("bands")
        loaded = [loaded] if isinstance(loaded, str) else list(loaded or [])
        names = args.get("names") if fn_name == "spectral_indices" else [args.get("name")]
        from ..indices import BAND_NAMES  # the index band letters and the common names they read

        for index_name in names or []:
            spec = INDICES.get(str(index_name).upper()) if isinstance(index_name, str) else None
            if spec is None:
                self.fail(line, f"step {step!r}: unknown spectral index {index_name!r}; see geoproc.indices.INDICES")
            missing = [BAND_NAMES.get(b, (b,))[0] for b in spec.bands
                       if b in BAND_NAMES and not set(BAND_NAMES[b]) & set(loaded)]
            if missing:
                self.fail(line, f"step {step!r}: {spec.short_name} needs band(s) {', '.join(missing)}, which step "
                          f"{source.step!r} does not load; add them to its bands")
