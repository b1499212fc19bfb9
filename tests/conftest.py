"""Shared fixtures: a small synthetic archive (session-wide) and the real data in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoproc.testing import generate_archive

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    """3 tiles (two in UTM 33, one in UTM 34) x 5 dates of 256 x 256 px at 10 m."""
    return generate_archive(tmp_path_factory.mktemp("archive"), size=256, dates=5, tiles=3, seed=1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone the project with ../shared beside it)")
    return SHARED_DATA
