"""What the docstring examples run by ``pytest --doctest-modules`` find: names, and a demo archive.

Doctests run in a fresh folder holding ``geoproc-demo/archive`` (the synthetic archive that
``geoproc demo`` writes, smaller), so the examples of ``search``, ``load``, ``plan``, ``to_zarr`` and
``open_result`` run as written, with the output they show.
"""

import numpy as np
import pytest
import xarray as xr
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def _doctest_folder(tmp_path_factory):
    from geoproc.testing import generate_archive

    root = tmp_path_factory.mktemp("doctest")
    generate_archive(root / "geoproc-demo" / "archive", size=128, dates=6, tiles=3, seed=0)
    return root


@pytest.fixture(autouse=True)
def _doctest_namespace(request, doctest_namespace):
    import geoproc

    doctest_namespace.update({"np": np, "xr": xr, "geoproc": geoproc})
    if isinstance(request.node, DoctestItem):
        folder = request.getfixturevalue("_doctest_folder")
        mp = request.getfixturevalue("monkeypatch")
        mp.chdir(folder)
        # each module's examples write their own outputs: start from the archive alone
        import shutil

        for out in folder.iterdir():
            if out.name != "geoproc-demo":
                shutil.rmtree(out) if out.is_dir() else out.unlink()
