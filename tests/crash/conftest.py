"""The crash tests' stores and references.

Every crash test that has a run directory (``tmp_path``) runs twice: on a SQLite file in the directory, and on
PostgreSQL in a fresh schema named by the directory's ``store.url`` (see ``harness.open_store``). The references
are each scenario run once, uncrashed, in a real worker process and a SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

import postgres_server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tmp_path" in metafunc.fixturenames:
        metafunc.parametrize("crash_store", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(autouse=True)
def crash_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend of the test's run: for ``postgres``, a fresh schema whose URL goes into ``store.url``."""
    backend = getattr(request, "param", "sqlite")
    if backend != "postgres":
        yield backend
        return
    directory: Path = request.getfixturevalue("tmp_path")
    with postgres_server.fresh_schema() as schema:
        (directory / harness.STORE_URL_FILE).write_text(postgres_server.schema_url(schema))
        yield backend


@pytest.fixture(scope="session")
def desk_baseline(tmp_path_factory: pytest.TempPathFactory) -> harness.Baseline:
    """What an uncrashed run of the ``desk`` scenario leaves behind."""
    return harness.uncrashed(tmp_path_factory.mktemp("baseline-desk"), "desk")


@pytest.fixture(scope="session")
def charge_baseline(tmp_path_factory: pytest.TempPathFactory) -> harness.Baseline:
    """What an uncrashed run of the ``charge`` scenario leaves behind."""
    return harness.uncrashed(tmp_path_factory.mktemp("baseline-charge"), "charge")
