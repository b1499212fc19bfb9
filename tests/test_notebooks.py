"""Notebooks are executed, so they can never rot.

The documentation build executes them (myst-nb, each in a temporary folder; a failing cell fails the build) and
keeps the executed copies; these tests check those copies, so each notebook runs once per test session.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, docs_site):
    executed = docs_site.executed / "notebooks" / path.name
    assert executed.is_file(), (
        f"the documentation build did not execute {path.name} (is it in a toctree of docs/?):\n"
        + "\n".join(docs_site.problems() or docs_site.log.splitlines()[-30:]))
    nb = nbformat.read(executed, as_version=4)
    source = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # the executed copy is this notebook, every code cell of it run in order
    assert [c.source for c in code] == [c.source for c in source.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the map was not drawn"


def test_there_is_a_quickstart():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)
