"""Workflow files and job specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoproc.errors import InvalidArgumentError
from geoproc.workflow import DEMO_SPEC, JobSpec, load_spec

REPO = Path(__file__).resolve().parents[1]


def test_demo_yaml_is_the_embedded_default():
    assert load_spec(REPO / "workflows" / "demo.yaml") == JobSpec.from_dict(DEMO_SPEC)


def test_overrides_and_unknown_keys(tmp_path):
    spec = load_spec(REPO / "workflows" / "demo.yaml", output="elsewhere.zarr", overwrite=None)
    assert spec.output == "elsewhere.zarr" and spec.overwrite is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog: x\noutput: y\nindx: NDVI\n")
    with pytest.raises(InvalidArgumentError, match="unknown job keys.*indx"):
        load_spec(bad)
    bad.write_text("catalog: [unclosed\n")
    with pytest.raises(InvalidArgumentError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(InvalidArgumentError, match="lacks"):
        JobSpec.from_dict({"catalog": "x"})
