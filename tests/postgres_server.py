"""The PostgreSQL server the tests use, and a schema of its own for each test.

``KEEL_TEST_POSTGRES`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``). When it cannot
be reached, every test that needs it skips with the reason; under ``CI=true`` they fail instead, so that a CI
job whose database did not start cannot pass by skipping. All of that lives in ``require_postgres``.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agentkeel.stores.postgres import PostgresStore

SERVER_URL = os.environ.get("KEEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _unreachable() -> str | None:
    """Why the server cannot be used (None: it can). Asked once per test session."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {SERVER_URL} (set KEEL_TEST_POSTGRES to use another): {exc}"
    return None


def require_postgres() -> str:
    """The server's URL; skips the calling test when the server is unreachable, or fails it under ``CI=true``."""
    reason = _unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return SERVER_URL


def schema_url(schema: str) -> str:
    """The store URL of ``schema`` on the test server."""
    return f"{SERVER_URL}{'&' if '?' in SERVER_URL else '?'}schema={schema}"


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema name nobody uses yet (the store creates the schema on first use); dropped afterwards."""
    require_postgres()
    schema = f"keel_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        drop_schema(schema)


@asynccontextmanager
async def fresh_store(clock: Callable[[], float]) -> AsyncIterator[PostgresStore]:
    """A ``PostgresStore`` in a fresh schema with ``clock`` as its lease clock; closed and dropped afterwards."""
    from agentkeel.stores.postgres import PostgresStore

    with fresh_schema() as schema:
        store = PostgresStore(schema_url(schema), clock=clock)
        try:
            yield store
        finally:
            await store.close()
