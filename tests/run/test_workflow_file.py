"""Workflow files: validation (one line naming file, line and fix), refusal of code, the JSON Schema, and the
example workflows run on the synthetic archive against the library functions called directly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

import geoproc
from geoproc.errors import InvalidArgumentError
from geoproc.run.incremental import run_workflow
from geoproc.run.workflow_file import FUNCTIONS, PERIODS, parse_workflow, read_workflow

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "workflows").glob("*.yaml") if p.name != "demo.yaml")

GOOD = """\
name: t
catalog: nowhere/catalog.json
search: {bbox: [17.88, 45.45, 18.08, 45.51]}
steps:
  data:   {load: {bands: [red, nir, scl], resolution: 10}}
  cloudy: {cloud_mask: {data: $data}}
  ndvi:   {index: {data: $data, name: NDVI}}
products:
  ndvi: {step: ndvi, output: out/ndvi.zarr}
"""


def test_a_good_file_parses_without_reading_anything():
    wf = parse_workflow(GOOD, "good.yaml")
    assert [s.function for s in wf.steps] == ["load", "cloud_mask", "index"]
    assert wf.step("ndvi").args["data"].step == "data"
    assert wf.state == "out/t.workflow"


@pytest.mark.parametrize("old, new, line, message", [
    ("cloud_mask: {data", "cloud_mask_x: {data", 6, "'cloud_mask_x' is not a function a workflow can call"),
    ("name: NDVI}", "name: NDVI, colour: red}", 7, "index\\(\\) has no argument 'colour'; its arguments: data, name, bands, constants"),
    ("resolution: 10", "resolution: ten", 5, "resolution must be float .*got str 'ten'"),
    ("bands: [red, nir, scl]", "bands: [red, scl]", 7, "NDVI needs band\\(s\\) nir, which step 'data' does not load"),
    ("{data: $data, name", "{data: $dta, name", 7, "\\$dta is not an earlier step; steps so far: data, cloudy"),
    ("{step: ndvi,", "{step: ndvy,", 9, "product 'ndvi' names step 'ndvy', which does not exist"),
    ("search:", "serch:", 3, "unknown key 'serch' in the workflow; valid keys:"),
    ("{data: $data}}", "{classes: [3]}}", 6, "cloud_mask\\(\\) needs 'data'; add it"),
    ("{data: $data}}", "{data: cloudy}}", 6, "data takes a cube: write \\$step_name"),
    ("name: NDVI}}", "name: NDVI}}\n  bad: {composite: {data: $ndvi}, per: fortnight}", 8, "per must be one of day"),
])
def test_each_mistake_is_one_line_naming_file_line_and_fix(old, new, line, message):
    assert old in GOOD
    with pytest.raises(InvalidArgumentError, match=f"^bad.yaml:{line}: .*{message}") as info:
        parse_workflow(GOOD.replace(old, new, 1), "bad.yaml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("call, message", [
    ("__import__: {name: os}", "'__import__' is not a function .*dotted paths and imports are not allowed"),
    ("os.system: {command: ls}", "'os.system' is not a function .*dotted paths and imports are not allowed"),
    ("geoproc.io.storage.read_bytes: {url: x}", ".* dotted paths and imports are not allowed"),
    ("to_zarr: {data: $data, url: x}", "'to_zarr' is not a function a workflow can call"),
    ("eval: {source: '1+1'}", "'eval' is not a function a workflow can call"),
])
def test_names_outside_the_public_functions_are_refused(call, message):
    text = GOOD.replace("  ndvi:   {index", f"  evil: {{{call}}}\n  ndvi:   {{index")
    with pytest.raises(InvalidArgumentError, match=f"^evil.yaml:7: step 'evil': {message}"):
        parse_workflow(text, "evil.yaml")


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['touch /tmp/geoproc-pwned']",
    "!!python/name:os.system",
    "!!python/object:collections.OrderedDict {}",
    "!!python/module:os",
    "!custom {a: 1}",
])
def test_object_constructing_yaml_tags_are_refused(tagged, tmp_path):
    # yaml.safe_load refuses each of these tags as well: the workflow reader never constructs them
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(f"x: {tagged}\n")
    text = GOOD.replace("name: t\n", f"name: t\ndescription: {tagged}\n")
    path = tmp_path / "tags.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError, match=r"^.*tags.yaml:2: YAML tag '.*' is not allowed: a workflow file is data"):
        read_workflow(path)
    assert not Path("/tmp/geoproc-pwned").exists()


def test_the_schema_lists_the_functions_and_the_examples_validate():
    schema = json.loads((REPO / "workflows" / "workflow.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    step = schema["$defs"]["step"]["properties"]
    assert set(step) == {*FUNCTIONS, "per"} and step["per"]["enum"] == list(PERIODS)
    assert len(EXAMPLES) >= 4
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
        read_workflow(path)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(GOOD.replace("search:", "serch:")), schema)


def _retarget(path: Path, catalog: str, bbox: list[float], out: Path):
    """The example on the test archive (its catalog and extent), writing under ``out``."""
    wf = read_workflow(path)
    products = tuple(dataclasses.replace(p, output=str(out / Path(p.output).name)) for p in wf.products)
    return dataclasses.replace(wf, catalog=catalog, generate=None, products=products, state=str(out / "state"),
                               search={**wf.search, "bbox": bbox})


def _values(url, name):
    return geoproc.open_result(url)[name].values


def test_example_workflows_equal_the_library_called_directly(archive, tmp_path):
    from geoproc import bfast_monitor, burn_severity, change, cloud_mask, composite, index, load, search

    items = search(archive.catalog)
    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items), max(i.bbox[2] for i in items),
            max(i.bbox[3] for i in items)]
    wfs = {p.stem: _retarget(p, str(archive.catalog), bbox, tmp_path / p.stem) for p in EXAMPLES}
    for wf in wfs.values():
        report = run_workflow(wf, log=lambda s: None)
        assert report.regions_written > 0 and not report.failures
        again = run_workflow(wf, log=lambda s: None)
        assert again.regions_written == 0 and "nothing new" in again.summary()

    items = search(archive.catalog, bbox=bbox)
    out = {name: wf.products for name, wf in wfs.items()}

    data = load(items, ["red", "nir", "scl"], resolution=10, chunks=256, bbox=bbox)
    ndvi = index(data, "NDVI")
    cloudy = cloud_mask(data, classes=[0, 1, 3, 8, 9, 10])
    expected = ndvi.where(~cloudy).values
    got = _values(out["ndvi_cube"][0].output, "ndvi")
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).sum() > 0.3 * got.size

    monthly = composite(ndvi, "median", mask=cloud_mask(data))
    got = geoproc.open_result(out["monthly_composites"][0].output)
    assert got["time"].values.astype("datetime64[D]").tolist() == [np.datetime64("2024-05-01", "D").tolist()]
    np.testing.assert_array_equal(got["monthly"].values[0], monthly.values)

    alerts = bfast_monitor(ndvi, "2024-05-15", history="all", harmonics=1, trend=False, mask=cloud_mask(data), min_obs=2)
    got = geoproc.open_result(out["bfast_alerts"][0].output)
    for name in ("break_time", "magnitude"):
        np.testing.assert_array_equal(got[name].values, alerts[name].values)

    burn = load(items, ["nir", "swir22", "scl"], resolution=20, chunks=256, bbox=bbox)
    clouds = cloud_mask(burn)
    pre = composite(burn.sel(time=slice(None, "2024-05-10")), "median", mask=clouds.sel(time=slice(None, "2024-05-10")))
    post = composite(burn.sel(time=slice("2024-05-11", None)), "median", mask=clouds.sel(time=slice("2024-05-11", None)))
    dnbr = change(pre, post, "dnbr")
    dnbr_out, severity_out = out["dnbr_burn_severity"]
    np.testing.assert_array_equal(_values(dnbr_out.output, "dnbr"), dnbr.values)
    np.testing.assert_array_equal(_values(severity_out.output, "severity"), burn_severity(dnbr).values)


def test_the_cli_prints_a_mistake_in_one_line(tmp_path, capsys):
    from geoproc.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("$data, name", "$dta, name"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"geoproc: error: {path}:7: step 'ndvi': data: $dta is not an earlier step; steps so far: data, cloudy " \
                  "(a step can use only the steps above it)\n"
    assert not (tmp_path / "out").exists()
