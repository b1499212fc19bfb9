"""Names available to the docstring examples run by ``pytest --doctest-modules``."""

import numpy as np
import pytest
import xarray as xr


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    import geoproc

    doctest_namespace.update({"np": np, "xr": xr, "geoproc": geoproc})
