"""Rules of the test suite itself: no test passes in CI by skipping for want of real data."""

from __future__ import annotations

import pytest

from .helpers import data_required, missing_data


@pytest.mark.parametrize(
    "env, required",
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"GEOPROC_REQUIRE_DATA": "1"}, True),
        ({"CI": "true", "GEOPROC_REQUIRE_DATA": "0"}, False),  # an explicit opt-out wins over CI
        ({"CI": "", "GEOPROC_REQUIRE_DATA": "yes"}, True),
    ],
)
def test_missing_data_fails_under_ci_and_skips_elsewhere(monkeypatch, env, required):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("GEOPROC_REQUIRE_DATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert data_required() is required
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="no such scene"):
        missing_data("no such scene")


def test_the_shared_data_fixture_goes_through_the_rule(monkeypatch, tmp_path):
    """The ``shared_data`` fixture fails under CI when ../shared/data is absent (it skipped silently before)."""
    from . import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "absent")
    fixture = conftest.shared_data.__wrapped__  # the function under pytest's fixture definition
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("GEOPROC_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.fail.Exception, match="real data not found"):
        fixture()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="real data not found"):
        fixture()
