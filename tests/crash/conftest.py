"""The crash tests' references: each scenario run once, uncrashed, in a real worker process and a SQLite file."""

from __future__ import annotations

import harness
import pytest


@pytest.fixture(scope="session")
def desk_baseline(tmp_path_factory: pytest.TempPathFactory) -> harness.Baseline:
    """What an uncrashed run of the ``desk`` scenario leaves behind."""
    return harness.uncrashed(tmp_path_factory.mktemp("baseline-desk"), "desk")


@pytest.fixture(scope="session")
def charge_baseline(tmp_path_factory: pytest.TempPathFactory) -> harness.Baseline:
    """What an uncrashed run of the ``charge`` scenario leaves behind."""
    return harness.uncrashed(tmp_path_factory.mktemp("baseline-charge"), "charge")
