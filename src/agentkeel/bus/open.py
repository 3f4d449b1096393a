"""Choosing a bus by URL: ``memory://``, ``sqlite:///relative/bus.db``, ``sqlite:////absolute/bus.db``,
``redis://host:port/db?prefix=keel:bus``, ``postgresql://user@host:5432/db?schema=keel``.

The default is ``KEEL_BUS`` from the environment, else ``sqlite:///.keel/bus.db`` (relative to the working
directory). A SQLite bus may share the store's file, and a PostgreSQL bus the store's database and schema: their
tables are their own (``keel_bus_*``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

from agentkeel.bus.base import Bus
from agentkeel.bus.memory import MemoryBus
from agentkeel.bus.sqlite import SQLiteBus
from agentkeel.errors import ConfigError

DEFAULT_BUS_URL = "sqlite:///.keel/bus.db"


def default_bus_url() -> str:
    return os.environ.get("KEEL_BUS") or DEFAULT_BUS_URL


def open_bus(url: str | None = None, *, clock: Callable[[], float] | None = None) -> Bus:
    """Open the bus a URL names (the default bus when ``url`` is None). ``clock`` (memory, SQLite and PostgreSQL)
    times the idleness of deliveries, for tests."""
    url = url or default_bus_url()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryBus(clock=clock) if clock else MemoryBus()
    if scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(
                f"bus URL {url!r}: a SQLite URL has three slashes before a relative path (sqlite:///data/bus.db) "
                "and four before an absolute one (sqlite:////var/bus.db)"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"bus URL {url!r} names no file: use e.g. {DEFAULT_BUS_URL}")
        return SQLiteBus(path, clock=clock) if clock else SQLiteBus(path)
    if scheme in ("redis", "rediss"):
        try:
            from agentkeel.bus.redis_streams import RedisBus  # redis-py is an optional dependency
        except ImportError as exc:
            if not (exc.name or "").startswith("redis"):
                raise
            raise ConfigError("a redis:// bus needs the Redis client: pip install 'agentkeel[redis]'") from exc
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(options) - {"prefix"}
        if unknown:
            raise ConfigError(f"bus URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; known: prefix")
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return RedisBus(plain, prefix=options.get("prefix", "keel:bus"))
    if scheme in ("postgresql", "postgres"):
        try:
            from agentkeel.bus.postgres import PostgresBus  # psycopg is an optional dependency
        except ImportError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise ConfigError(
                "a postgresql:// bus needs the PostgreSQL driver: pip install 'agentkeel[postgres]'"
            ) from exc
        return PostgresBus(url, clock=clock) if clock else PostgresBus(url)
    raise ConfigError(
        f"bus URL {url!r} has an unknown scheme {parts.scheme!r}: use sqlite:///path/to/bus.db, "
        "postgresql://user@host:5432/db, redis://host:6379/0 or memory://"
    )
