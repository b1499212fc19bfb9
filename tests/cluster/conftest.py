"""Fixtures of the cluster tests: a real Dask Gateway, and a small job on the session's synthetic archive."""

from __future__ import annotations

import os

import pytest


def _required_services() -> bool:
    return os.environ.get("GEOPROC_REQUIRE_SERVICES", os.environ.get("CI", "")).lower() not in ("", "0", "false")


@pytest.fixture(scope="session")
def gateway():
    """A password-protected ``dask-gateway-server`` on 127.0.0.1 (see ``tests/services/gateway.py``).

    Skipped with the reason where dask-gateway-server is missing (failed instead under CI=true or
    GEOPROC_REQUIRE_SERVICES=1).
    """
    from ..services.gateway import dask_gateway
    from ..services.pgstac import ServiceUnavailable

    try:
        with dask_gateway() as server:
            yield server
    except ServiceUnavailable as exc:
        if _required_services():
            pytest.fail(f"the Dask Gateway must run here (CI or GEOPROC_REQUIRE_SERVICES) but cannot: {exc}")
        pytest.skip(str(exc))


def job_dict(archive, output, **changes) -> dict:
    """A mask + NDVI + median job over the whole archive, 64 px chunks (55 chunks of output, a few seconds)."""
    spec = {
        "catalog": str(archive.catalog), "output": str(output), "index": "NDVI", "composite": "median",
        "load": {"bands": ["red", "nir", "scl"], "resolution": 10, "chunks": 64},
    }
    spec.update(changes)
    return spec
