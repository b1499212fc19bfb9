"""Shared fixtures: a small synthetic archive (session-wide) and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geoproc.testing import generate_archive

from .helpers import missing_data

#: The real data: ../shared/data beside the checkout, or where GEOPROC_SHARED_DATA points (a copy of the tree
#: elsewhere, as scripts/mutation.sh makes, still finds it).
SHARED_DATA = Path(os.environ.get("GEOPROC_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    """3 tiles (two in UTM 33, one in UTM 34) x 5 dates of 256 x 256 px at 10 m."""
    return generate_archive(tmp_path_factory.mktemp("archive"), size=256, dates=5, tiles=3, seed=1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skipped where it is absent, except under CI=true or GEOPROC_REQUIRE_DATA=1 (a failure)."""
    if not SHARED_DATA.is_dir():
        missing_data(f"real data not found at {SHARED_DATA} (clone the project with ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def stac_api(archive):
    """A real STAC API serving the ``archive`` items: stac-fastapi-pgstac on a private PostgreSQL + PostGIS.

    Started once per session on free ports of 127.0.0.1 (see ``tests/services/pgstac.py``) and stopped at
    the end. Skipped, with the reason, where PostgreSQL, PostGIS or the test extra is missing (set
    ``GEOPROC_REQUIRE_SERVICES=1``, or run under CI=true, to fail instead).
    """
    import os

    from .services.pgstac import ServiceUnavailable, pgstac_api, static_catalog_records

    collections, items = static_catalog_records(archive.catalog)
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    for key, value in saved.items():  # never send requests for 127.0.0.1 through a proxy
        os.environ[key] = ",".join(v for v in (value, "127.0.0.1", "localhost") if v)
    try:
        with pgstac_api(collections, items) as api:
            yield api
    except ServiceUnavailable as exc:
        # CI (CI=true) installs the services with scripts/install.sh, so there a missing service is a failure
        required = os.environ.get("GEOPROC_REQUIRE_SERVICES", os.environ.get("CI", ""))
        if required.lower() not in ("", "0", "false"):
            pytest.fail(f"the STAC API must run here (CI or GEOPROC_REQUIRE_SERVICES) but cannot: {exc}")
        pytest.skip(str(exc))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _required_services() -> bool:
    import os

    return os.environ.get("GEOPROC_REQUIRE_SERVICES", os.environ.get("CI", "")).lower() not in ("", "0", "false")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible store: SeaweedFS ``weed mini`` with one identity and a bucket, on 127.0.0.1.

    See ``tests/services/seaweedfs.py``. Skipped with the reason where SeaweedFS or obstore is missing
    (failed instead under CI=true or GEOPROC_REQUIRE_SERVICES=1).
    """
    from .services.pgstac import ServiceUnavailable
    from .services.seaweedfs import seaweedfs

    try:
        with seaweedfs() as server:
            yield server
    except ServiceUnavailable as exc:
        if _required_services():
            pytest.fail(f"the S3 store must run here (CI or GEOPROC_REQUIRE_SERVICES) but cannot: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory):
    """The documentation site, built once per session with warnings as errors (``tests/docs_site.py``).

    tests/test_docs.py checks and renders it; tests/test_notebooks.py checks the notebooks it executed.
    """
    from .docs_site import build

    return build(tmp_path_factory.mktemp("docs"))
