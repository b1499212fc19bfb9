"""The .geoproc accessor only aliases public functions, and stays in step with __all__."""

from __future__ import annotations

import numpy as np
import xarray as xr

import geoproc
from geoproc.accessor import ALIASES


def test_aliases_are_public_functions():
    for name, func in ALIASES.items():
        assert name in geoproc.__all__
        assert getattr(geoproc, name) is func


#: public names that do not take an xarray object first (they find, load, open or describe data)
NOT_ON_DATA = {"search", "load", "plan", "open_result", "register_index", "GridSpec", "GeoprocError", "__version__"}


def test_every_public_function_on_xarray_objects_has_an_alias():
    assert set(geoproc.__all__) - NOT_ON_DATA == set(ALIASES)


def test_accessor_gives_the_same_results():
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "red": (("time", "y", "x"), rng.uniform(0.01, 0.3, (4, 5, 6)).astype(np.float32)),
            "nir": (("time", "y", "x"), rng.uniform(0.01, 0.5, (4, 5, 6)).astype(np.float32)),
            "scl": (("time", "y", "x"), rng.integers(0, 12, (4, 5, 6)).astype(np.uint8)),
        }
    )
    np.testing.assert_array_equal(ds.geoproc.ndvi().values, geoproc.ndvi(ds).values)
    np.testing.assert_array_equal(ds.geoproc.index("NDVI").values, geoproc.index(ds, "NDVI").values)
    np.testing.assert_array_equal(ds.geoproc.cloud_mask().values, geoproc.cloud_mask(ds).values)
    vi = geoproc.ndvi(ds)
    np.testing.assert_array_equal(vi.geoproc.composite("max").values, geoproc.composite(vi, "max").values)
    assert ds.geoproc.ndvi.__doc__ == geoproc.ndvi.__doc__
