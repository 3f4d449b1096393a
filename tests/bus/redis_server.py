"""The Redis server the bus tests use, and a key prefix of its own for each test.

``KEEL_TEST_REDIS`` names the server (default ``redis://127.0.0.1:6379/0``). When it cannot be reached, every test
that needs it skips with the reason; under ``CI=true`` they fail instead, so that a CI job whose Redis did not start
cannot pass by skipping.
"""

from __future__ import annotations

import functools
import os
import secrets

import pytest

SERVER_URL = os.environ.get("KEEL_TEST_REDIS", "redis://127.0.0.1:6379/0")


@functools.cache
def _unreachable() -> str | None:
    """Why the server cannot be used (None: it can). Asked once per test session."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed: pip install -e '.[redis]'"
    try:
        client = redis.Redis.from_url(SERVER_URL, socket_connect_timeout=2)
        client.ping()
        version = str(client.info("server")["redis_version"])
        client.close()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {SERVER_URL} (start redis-server, or set KEEL_TEST_REDIS): {exc}"
    if tuple(int(part) for part in version.split(".")[:2]) < (7, 0):
        return f"Redis at {SERVER_URL} is {version}; the bus tests need 7.0 or newer (XAUTOCLAIM, lag)"
    return None


def require_redis() -> str:
    """The server's URL; skips the calling test when the server is unreachable, or fails it under ``CI=true``."""
    reason = _unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return SERVER_URL


def fresh_prefix() -> str:
    """A key prefix nobody uses yet."""
    return f"keel:test:{secrets.token_hex(6)}"
