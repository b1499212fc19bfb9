"""Malformed STAC items: one typed error, never a crash from deep inside a library.

Property-based tests (hypothesis) take REAL items (``../shared/data/stac_items`` and
``tests/data/stac_items``), break them the way real catalogs are broken (a field deleted, a
field of the wrong type or range, at the paths geoproc reads: datetimes, bbox, geometry,
``proj:*`` on the item and on assets, ``eo:bands``, ``raster:bands``, hrefs, roles, media types,
ids) and check that :func:`geoproc.search`, :func:`geoproc.plan` and :func:`geoproc.load`
(graph only, nothing computed) either succeed or raise a :class:`~geoproc.errors.GeoprocError`:
no ``TypeError``, ``KeyError``, ``ValueError``, pystac or pyproj error escapes.

Example tests pin the two layouts of old items that must *work*: STAC 1.0.0-beta ``eo:bands``
given as indices into the item's band table, and ``proj:transform`` written in GDAL's order.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import tempfile
import warnings
from pathlib import Path

import pystac
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import geoproc
from geoproc.errors import GeoprocError, MetadataError
from geoproc.io.bands import available_bands, resolve_band
from geoproc.io.items import as_items, asset_spec

#: pystac's own complaints about the broken items (proj:code against proj:epsg, hrefs it cannot migrate)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pystac.*")

HERE = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("GEOPROC_SHARED_DATA") or HERE.parents[2] / "shared" / "data")
ITEM_DIRS = (SHARED_DATA / "stac_items", HERE.parent / "data" / "stac_items")

#: examples per plan/load property (each plans and builds a graph for one item: a few ms); the search
#: property takes a sixth. GEOPROC_FUZZ_EXAMPLES=10000 searches deeper (about 3 minutes).
EXAMPLES = int(os.environ.get("GEOPROC_FUZZ_EXAMPLES", "300"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- the real items


def _real_items() -> list[tuple[str, dict]]:
    """``(file name, item dict without links)`` of every real item on disk, FeatureCollections unpacked."""
    found = []
    for folder in ITEM_DIRS:
        for path in sorted(folder.glob("**/*.json")):
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            features = doc.get("features", []) if doc.get("type") == "FeatureCollection" else [doc]
            for i, feature in enumerate(features[:2]):  # two features of a collection are variety enough
                if isinstance(feature, dict) and feature.get("type") == "Feature" and feature.get("assets"):
                    feature = {k: v for k, v in feature.items() if k != "links"}
                    found.append((f"{path.name}[{i}]" if len(features) > 1 else path.name, feature))
    return found


def _bands_of(item: dict) -> list[str]:
    """Names a user would ask for: data asset keys and common names, as the unmutated item offers them."""
    try:
        names = available_bands(pystac.Item.from_dict(copy.deepcopy(item)))
    except Exception:
        names = set()
    names |= {k for k, a in item["assets"].items() if "image" in str(a.get("type", "image")).lower()}
    return sorted(names)


ITEMS = [(name, item, bands) for name, item in _real_items() if (bands := _bands_of(item))]
ITEMS_BY_NAME = {name: item for name, item, _ in ITEMS}


# ---------------------------------------------------------------- mutations

NAN, INF = float("nan"), float("inf")
#: values of the wrong type or range for any field
JUNK = [None, "", "abc", "nan", "-inf", "2020-13-45T99:00:00Z", [], [None], ["a", "b"], [[1, 2]], {}, {"a": 1},
        True, 0, -1, 1.5, -0.5, 2**70, -(2**63), NAN, INF, -INF]
junk = st.one_of(
    st.sampled_from(JUNK),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
numbers = st.one_of(st.sampled_from([0, -1, 2**70, NAN, INF, -INF, 1e308, "1", None]), st.floats(), st.integers())


def _lists_of(elements, min_size=0, max_size=10):
    return st.lists(elements, min_size=min_size, max_size=max_size)


def _transforms(current):
    """Broken ``proj:transform`` values, and the GDAL-ordered one (valid: it must still load)."""
    options = [junk, _lists_of(numbers), _lists_of(junk, 6, 6), st.just([0.0] * 6), st.just([10, 0, 0, 0, 10, 0])]
    if isinstance(current, list) and len(current) >= 6:
        c = list(current[:6])
        options.append(st.just([c[2], c[0], c[1], c[5], c[3], c[4]]))  # GDAL order
        options.append(st.builds(lambda i, v: c[:i] + [v] + c[i + 1:], st.integers(0, 5), numbers))
    return st.one_of(*options)


shapes = st.one_of(junk, _lists_of(numbers, 0, 3), st.sampled_from([[0, 0], [-1, 10], [1.5, 2], ["10", "10"],
                                                                     [2**40, 2**40], [2**70, 1], [10, 10, 10]]))
crs_codes = st.one_of(junk, st.sampled_from([0, 99999, 32633.5, "32633", "EPSG:32633", "EPSG:0", "foo", [32633],
                                             {"epsg": 32633}, 10**30]))
geometries = st.one_of(junk, st.sampled_from([
    {"type": "Polygon"}, {"type": "Polygon", "coordinates": "x"}, {"type": "Polygon", "coordinates": [[1, 2]]},
    {"type": "Point", "coordinates": [NAN, NAN]}, {"type": "Nonsense", "coordinates": []},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # a bow tie (self-intersecting)
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},  # too few points
    {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], "x"]},
]))
bboxes = st.one_of(junk, _lists_of(numbers, 0, 7), st.sampled_from([[200, 100, -200, -100], [10, 50, 11, NAN],
                                                                    [11, 46, 10, 45], [0, 0, 0, 0]]))
datetimes = st.one_of(junk, st.sampled_from(["2020-01-01", "2020-01-01T00:00:00", "yesterday", "2020/2021", 1577836800]))


def _band_tables(current):
    """Broken ``eo:bands`` lists: not a list, entries not objects, indices out of range, fields of the wrong type."""
    entry = st.fixed_dictionaries({}, optional={
        "name": junk, "common_name": junk, "center_wavelength": junk, "eo:common_name": junk,
    })
    options = [junk, _lists_of(junk, 1, 3), st.lists(st.integers(-3, 40), min_size=1, max_size=3),
               _lists_of(entry, 1, 3)]
    if isinstance(current, list) and current and isinstance(current[0], dict):
        options.append(st.builds(lambda k, v: [{**current[0], k: v}, *current[1:]],
                                 st.sampled_from(["name", "common_name", "center_wavelength"]), junk))
    return st.one_of(*options)


def _raster_tables(current):
    """Broken ``raster:bands`` lists: scale/offset/nodata/data_type of the wrong type, ``"nan"`` strings."""
    field = st.sampled_from(["scale", "offset", "nodata", "data_type", "spatial_resolution", "unit"])
    value = st.one_of(junk, st.sampled_from(["nan", "NaN", "inf", "-inf", " 1 ", "int16x", "complex64", "other"]))
    base = current[0] if isinstance(current, list) and current and isinstance(current[0], dict) else {}
    options = [junk, _lists_of(junk, 1, 3),
               st.builds(lambda k, v: [{**base, k: v}], field, value),
               st.builds(lambda kv: [dict(kv)], st.lists(st.tuples(field, value), max_size=4))]
    return st.one_of(*options)


#: item-level paths and how to break them
ITEM_FIELDS = {
    ("id",): lambda cur: st.one_of(junk, st.just("")),
    ("bbox",): lambda cur: bboxes,
    ("geometry",): lambda cur: geometries,
    ("properties",): lambda cur: st.sampled_from([None, [], "x", {}]),
    ("properties", "datetime"): lambda cur: datetimes,
    ("properties", "start_datetime"): lambda cur: datetimes,
    ("properties", "end_datetime"): lambda cur: datetimes,
    ("properties", "proj:epsg"): lambda cur: crs_codes,
    ("properties", "proj:code"): lambda cur: crs_codes,
    ("properties", "proj:transform"): _transforms,
    ("properties", "proj:shape"): lambda cur: shapes,
    ("properties", "eo:bands"): _band_tables,
    ("assets",): lambda cur: st.sampled_from([None, [], "x", {}, {"B04": "b04.tif"}, {"B04": None}]),
}
#: asset-level fields and how to break them
ASSET_FIELDS = {
    "href": lambda cur: st.one_of(junk, st.sampled_from(["", " ", "relative/path.tif", "://", "s3://"])),
    "type": lambda cur: junk,
    "roles": lambda cur: st.one_of(junk, st.just("data"), _lists_of(junk, 1, 3)),
    "proj:epsg": lambda cur: crs_codes,
    "proj:code": lambda cur: crs_codes,
    "proj:wkt2": lambda cur: junk,
    "proj:projjson": lambda cur: st.one_of(junk, st.just({"type": "ProjectedCRS"})),
    "proj:transform": _transforms,
    "proj:shape": lambda cur: shapes,
    "proj:bbox": lambda cur: bboxes,
    "eo:bands": _band_tables,
    "bands": _band_tables,
    "raster:bands": _raster_tables,
    "nodata": lambda cur: junk,
}
DELETE = object()


def _get(doc, path):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _set(doc, path, value) -> None:
    for key in path[:-1]:
        if not isinstance(doc.get(key), dict):
            return  # an earlier mutation replaced the parent: nothing left to break here
        doc = doc[key]
    if value is DELETE:
        doc.pop(path[-1], None)
    else:
        doc[path[-1]] = value


@st.composite
def malformed_items(draw):
    """``(source file, band, mutated item dict, [(path, value), ...])``."""
    name, item, bands = draw(st.sampled_from(ITEMS))
    band = draw(st.sampled_from(bands))
    item = copy.deepcopy(item)
    try:
        home = resolve_band(pystac.Item.from_dict(copy.deepcopy(item)), band)[0]
    except Exception:
        home = next(iter(item["assets"]))
    done = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):  # an asset field, most often of the asset holding the band
            assets = _get(item, ("assets",))
            keys = sorted(k for k, a in assets.items() if isinstance(a, dict)) if isinstance(assets, dict) else []
            if not keys:
                continue
            key = home if home in keys and draw(st.booleans()) else draw(st.sampled_from(keys))
            field = draw(st.sampled_from(sorted(ASSET_FIELDS)))
            path, breaker = ("assets", key, field), ASSET_FIELDS[field]
        else:
            path = draw(st.sampled_from(sorted(ITEM_FIELDS)))
            breaker = ITEM_FIELDS[path]
        current = _get(item, path)
        value = DELETE if draw(st.integers(0, 4)) == 0 else draw(breaker(current))
        _set(item, path, value if value is DELETE else copy.deepcopy(value))
        done.append((path, "<deleted>" if value is DELETE else value))
    return name, band, item, done


@st.composite
def load_args(draw, item: dict):
    """No arguments (the item's own grid), or a small area, sometimes with a CRS and resolution, so that
    items without ``proj:`` fields can be planned too."""
    choice = draw(st.sampled_from(["native", "area", "crs+area"]))
    if choice == "native":
        return {}
    if len(item.get("bbox") or ()) not in (4, 6):
        return {}
    west, south, east, north = item["bbox"][:2] + item["bbox"][-2:] if len(item["bbox"]) == 6 else item["bbox"]
    lon, lat = draw(st.floats(0.2, 0.8)), draw(st.floats(0.2, 0.8))
    x, y = west + (east - west) * lon, south + (north - south) * lat
    box = (x - 0.02, max(-90.0, y - 0.02), x + 0.02, min(90.0, y + 0.02))
    if choice == "area":
        return {"bbox": box}
    return {"bbox": box, "crs": "EPSG:4326", "resolution": 0.0004}


class _TooSlow(Exception):
    """A call that ran past :data:`SECONDS` (a grid of millions of chunks, say): a failure like a leak."""


SECONDS = 20


def _alarm(signum, frame):
    raise _TooSlow(f"took more than {SECONDS} s")


def _only_geoproc_errors(call, what: str, done) -> GeoprocError | None:
    """Run ``call``: it succeeds (``None``) or raises a GeoprocError with a message (returned); anything else fails."""
    timed = hasattr(signal, "SIGALRM")  # not on Windows: there a hang is only a hang
    if timed:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
        event(f"{what.split('(')[0]}: ok")
        return None
    except GeoprocError as exc:
        event(f"{what.split('(')[0]}: {type(exc).__name__}")
        assert str(exc).strip(), f"{what}: {type(exc).__name__} without a message"
        return exc
    except Exception as exc:  # the property: nothing else escapes
        raise AssertionError(f"{what} let {type(exc).__name__} escape after {done}: {exc}") from exc
    finally:
        if timed:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


#: what the message of an error caused by breaking an asset field must contain
FIELD_WORDS = {"href": "href", "type": "type", "roles": "roles", "eo:bands": "bands", "bands": "bands",
               "raster:bands": "bands", "nodata": "nodata"}


def _check_names(exc: GeoprocError | None, name: str, band: str, item: dict, kwargs: dict, done) -> None:
    """A MetadataError names the item; one caused by breaking one asset field names the asset and the field."""
    if not isinstance(exc, MetadataError):
        return
    message, item_id = str(exc), item.get("id")
    if isinstance(item_id, str) and item_id:
        assert repr(item_id) in message, f"{message!r} does not name item {item_id!r} (after {done})"
    else:
        assert "field id" in message, f"{message!r} does not say the id is wrong (after {done})"
    if len(done) != 1 or done[0][0][0] != "assets" or len(done[0][0]) != 3:
        return
    (_, key, field), _ = done[0]
    try:  # only when the item as it was loads: else the error may be about what it lacked before
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geoproc.plan([ITEMS_BY_NAME[name]], [band], **kwargs)
    except GeoprocError:
        return
    word = FIELD_WORDS.get(field, "proj:")
    assert repr(key) in message and word in message, f"{message!r} does not name asset {key!r} and {word} ({done})"


# ---------------------------------------------------------------- properties: plan and load


@PROPERTY
@given(data=st.data())
def test_plan_and_load_raise_only_geoproc_errors_on_malformed_item_dicts(data):
    name, band, item, done = data.draw(malformed_items(), label="item")
    kwargs = data.draw(load_args(ITEMS_BY_NAME[name]), label="load args")
    _plan_and_load(item, f"{name} band {band!r} {kwargs}", name, band, item, kwargs, done)


@PROPERTY
@given(data=st.data())
def test_plan_and_load_raise_only_geoproc_errors_on_malformed_pystac_items(data):
    name, band, item, done = data.draw(malformed_items(), label="item")
    try:
        built = pystac.Item.from_dict(copy.deepcopy(item))
    except Exception:  # pystac refuses it: pystac's business, not geoproc's (the dict test covers as_items)
        return
    kwargs = data.draw(load_args(ITEMS_BY_NAME[name]), label="load args")
    _plan_and_load(built, f"{name} band {band!r} {kwargs} (pystac.Item)", name, band, item, kwargs, done)


def _plan_and_load(given, what, name, band, item, kwargs, done):
    """plan and load (graph only) of ``given`` (the mutated item as a dict or a pystac Item): only
    GeoprocErrors, naming what :func:`_check_names` expects."""
    failed = _only_geoproc_errors(lambda: geoproc.plan([given], [band], **kwargs), f"plan({what})", done)
    _check_names(failed, name, band, item, kwargs, done)
    failed = _only_geoproc_errors(lambda: geoproc.load([given], [band], probe=False, **kwargs), f"load({what})", done)
    _check_names(failed, name, band, item, kwargs, done)


# ---------------------------------------------------------------- property: search of a static catalog


def _write_catalog(folder: Path, item: dict) -> Path:
    """A static catalog holding ``item``: written by pystac where it accepts the item, else by hand."""
    try:
        catalog = pystac.Catalog("fuzz", "one mutated item")
        catalog.add_item(pystac.Item.from_dict(copy.deepcopy(item)))
        catalog.normalize_hrefs(str(folder))
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
        return folder / "catalog.json"
    except Exception:  # pystac cannot write it: write the two files as a broken catalog on disk has them
        for leftover in sorted(folder.rglob("*"), reverse=True):
            leftover.unlink() if leftover.is_file() else leftover.rmdir()
    (folder / "item").mkdir()
    links = [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"}]
    (folder / "item" / "item.json").write_text(json.dumps({**item, "links": links}, default=str))
    (folder / "catalog.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "fuzz", "description": "one mutated item",
        "links": [{"rel": "root", "href": "./catalog.json"}, {"rel": "item", "href": "./item/item.json"}],
    }))
    return folder / "catalog.json"


@settings(PROPERTY, max_examples=max(EXAMPLES // 6, 10))
@given(data=st.data())
def test_search_raises_only_geoproc_errors_on_a_catalog_of_a_malformed_item(data):
    name, _, item, done = data.draw(malformed_items(), label="item")
    original = ITEMS_BY_NAME[name]
    args = {}
    if data.draw(st.booleans(), label="bbox?") and len(original.get("bbox") or ()) == 4:
        args["bbox"] = original["bbox"]
    if data.draw(st.booleans(), label="datetime?"):
        args["datetime"] = data.draw(st.sampled_from(["1970/2040", "2020-01", "../2000", "2019/.."]), label="datetime")
    if data.draw(st.booleans(), label="filter?"):
        args["filter"] = data.draw(st.sampled_from(["eo:cloud_cover < 50", "platform = 'landsat-8'",
                                                    "S_INTERSECTS(geometry, POINT(0 0))"]), label="filter")
    with tempfile.TemporaryDirectory() as folder:
        path = _write_catalog(Path(folder), item)
        _only_geoproc_errors(lambda: list(geoproc.search(path, **args)), f"search({name} {args})", done)


# ---------------------------------------------------------------- examples: old layouts that must work


def _shared_item(shared_data: Path, name: str) -> dict:
    return json.loads((shared_data / "stac_items" / "odc-stac" / name).read_text())


def test_indexed_eo_bands_of_a_beta_item_resolve(shared_data):
    """STAC 1.0.0-beta.2: assets say ``"eo:bands": [3]``, an index into the item's ``properties.eo:bands``."""
    item = _shared_item(shared_data, "LC08_L2SR_081119_20200101_20200823_02_T2.json")
    assert item["assets"]["SR_B4.TIF"]["eo:bands"] == [3]
    [built] = as_items([item])
    assert resolve_band(built, "red") == ("SR_B4.TIF", 1)
    assert resolve_band(built, "SR_B4") == ("SR_B4.TIF", 1)  # the band's name in the table, too
    assert resolve_band(built, "nir08") == ("SR_B5.TIF", 1)
    spec = asset_spec(built, "red")
    assert (spec.key, spec.crs, spec.shape) == ("SR_B4.TIF", "EPSG:3031", (200, 200))
    plan = geoproc.plan([item], ["red", "nir08"])
    assert plan.crs == "EPSG:3031" and plan.shape[1:] == (200, 200)


@pytest.mark.parametrize("index", [7, 99, -1])
def test_indexed_eo_bands_out_of_range_name_item_asset_and_field(shared_data, index):
    item = _shared_item(shared_data, "LC08_L2SR_081119_20200101_20200823_02_T2.json")
    item["assets"]["SR_B4.TIF"]["eo:bands"] = [index]
    with pytest.raises(MetadataError) as caught:
        geoproc.plan([item], ["SR_B4.TIF"])
    message = str(caught.value)
    for part in ("'LC08_L2SR_081119_20200101_20200823_02_T2'", "'SR_B4.TIF'", "eo:bands", str(index)):
        assert part in message
    assert "fix the item" in message
    with pytest.raises(MetadataError, match=r"SR_B4\.TIF.*eo:bands"):  # by common name: the same error
        geoproc.plan([item], ["red"])


def _with_transform(item: dict, order: str) -> dict:
    """``item`` with every ``proj:transform`` written in ``order`` ("stac" as found, or "gdal")."""
    item = copy.deepcopy(item)
    for holder in [item["properties"], *item["assets"].values()]:
        t = holder.get("proj:transform")
        if t is not None and order == "gdal":
            a, b, c, d, e, f = t[:6]
            holder["proj:transform"] = [c, a, b, f, d, e]
    return item


@pytest.mark.parametrize("name, band", [
    ("LC08_L2SP_028030_20200114_20200824_02_T1_SR.json", "red"),
    ("S2A_28QCH_20200714_0_L2A.json", "B04"),
    ("S2A_28QCH_20200714_0_L2A.json", "B05"),
    ("LC08_L2SR_081119_20200101_20200823_02_T2.json", "red"),
])
def test_gdal_ordered_transform_gives_the_stac_grid(shared_data, name, band):
    stac = _shared_item(shared_data, name)
    gdal = _with_transform(stac, "gdal")
    assert gdal != stac
    [a], [b] = as_items([stac]), as_items([gdal])
    assert asset_spec(b, band).transform == asset_spec(a, band).transform
    assert asset_spec(b, band).bounds == asset_spec(a, band).bounds
    one, other = geoproc.plan([stac], [band]), geoproc.plan([gdal], [band])  # no "resolution must be positive"
    assert (other.crs, other.resolution, other.bounds, other.shape) == (one.crs, one.resolution, one.bounds, one.shape)
    assert one.resolution[0] > 0 and one.resolution[1] > 0


# ---------------------------------------------------------------- examples: the leaks the properties found

LANDSAT5 = "planetarycomputer__landsat-c2-l1__LM05_L1GS_039039_20130107_02_T2.json"  # proj: on the item, B2 = red


@pytest.mark.parametrize("changes, words", [
    pytest.param({("assets", "red", "type"): 5}, ["'red'", "field type", "media type"], id="type-not-a-string"),
    pytest.param({("assets", "rendered_preview", "roles"): "overview"}, ["'rendered_preview'", "field roles"],
                 id="roles-not-a-list"),
    pytest.param({("id",): []}, ["field id", "[]"], id="id-a-list"),
    pytest.param({("properties", "start_datetime"): 5}, ["properties.start_datetime", "ISO 8601"],
                 id="start-datetime-a-number"),
    pytest.param({("properties", "proj:shape"): [0, INF]}, ["'red'", "properties.proj:shape"], id="shape-infinite"),
    pytest.param({("properties", "proj:shape"): [2**40, 2**40]}, ["'red'", "properties.proj:shape", "2147483647"],
                 id="shape-beyond-gdal"),
    # pystac reads proj:epsg into proj:code ("EPSG:abc"): the message names both
    pytest.param({("properties", "proj:epsg"): "abc"}, ["'red'", "properties.proj:code", "proj:epsg", "'EPSG:abc'"],
                 id="epsg-a-word"),
    pytest.param({("properties", "proj:epsg"): 32611.5}, ["'red'", "proj:epsg", "32611.5"], id="epsg-not-an-integer"),
    pytest.param({("properties", "proj:epsg"): DELETE, ("properties", "proj:code"): {"epsg": 32611}},
                 ["'red'", "properties.proj:code", "not a string"], id="code-a-dict"),
    pytest.param({("properties", "proj:transform"): [1.2e21, 0, 2, 3, 1, 3]},
                 ["'red'", "proj:transform", "output grid would be"], id="transform-giant-pixels"),
    pytest.param({("properties", "proj:transform"): [20000.0, 0, 451710, 0, -60, 3467370]},
                 ["'red'", "proj:transform", "not on the Earth"], id="transform-off-the-earth"),
    pytest.param({("assets", "red", "raster:bands"): [{"scale": "x"}]}, ["'red'", "raster:bands[0].scale"],
                 id="scale-a-word"),
    pytest.param({("assets", "red", "raster:bands"): [{"nodata": 2**2000}]}, ["'red'", "raster:bands[0].nodata"],
                 id="nodata-overflows"),
    pytest.param({("assets", "red", "href"): None}, ["'red'", "field href"], id="href-null"),
    pytest.param({("assets", "red", "eo:bands"): [9]}, ["'red'", "eo:bands", "index 9"], id="index-without-table"),
])
def test_each_leak_found_is_one_metadata_error_naming_item_asset_and_field(changes, words):
    item = copy.deepcopy(ITEMS_BY_NAME[LANDSAT5])
    for path, value in changes.items():
        _set(item, path, value)
    for call in (lambda: geoproc.plan([item], ["B2"]), lambda: geoproc.load([item], ["B2"], probe=False)):
        with pytest.raises(MetadataError) as caught:
            call()
        message = str(caught.value)
        if "id" not in {p[0] for p in changes}:
            assert "'LM05_L1GS_039039_20130107_02_T2'" in message
        for word in words:
            assert word in message, f"{word!r} not in {message!r}"
        assert "fix" in message or "leave" in message or "pass" in message  # and what to do


def test_a_band_name_of_the_wrong_type_is_no_name():
    """``eo:bands`` names that are not strings (a list here) cannot be asked for, and break no other band."""
    item = copy.deepcopy(ITEMS_BY_NAME[LANDSAT5])
    item["assets"]["red"]["eo:bands"] = [{"name": ["B2"], "common_name": {"a": 1}, "center_wavelength": "x"}]
    assert geoproc.plan([item], ["B1"]).bands == geoproc.plan([ITEMS_BY_NAME[LANDSAT5]], ["B1"]).bands
    with pytest.raises(geoproc.errors.BandNotFoundError, match="'B2' not found"):
        geoproc.plan([item], ["B2"])


@settings(PROPERTY, max_examples=max(EXAMPLES // 3, 10))
@given(data=st.data())
def test_a_malformed_item_among_good_ones_is_the_one_named(data):
    """Loading a good item with a broken one: only GeoprocError, and a MetadataError names the broken item."""
    name, band, item, done = data.draw(malformed_items(), label="item")
    good = copy.deepcopy(ITEMS_BY_NAME[name])
    good["id"] = f"{good['id']}-good"
    kwargs = data.draw(load_args(good), label="load args")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geoproc.plan([good], [band], **kwargs)
    except GeoprocError:
        return  # the good item alone does not load (a thumbnail asked for by key, say): nothing to compare
    order = data.draw(st.booleans(), label="broken first?")
    items = [item, good] if order else [good, item]
    what = f"{name} band {band!r} {kwargs} (with a good item)"
    failed = _only_geoproc_errors(lambda: geoproc.plan(items, [band], **kwargs), f"plan({what})", done)
    if isinstance(failed, MetadataError) and isinstance(item.get("id"), str) and item["id"]:
        assert repr(item["id"]) in str(failed), f"{failed} does not name the broken item (after {done})"
