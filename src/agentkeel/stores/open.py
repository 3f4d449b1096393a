"""Choosing a store by URL: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``memory://``,
``postgresql://user@host/db?schema=keel`` (see ``stores/postgres.py``).

The default is ``KEEL_STORE`` from the environment, else ``sqlite:///.keel/keel.db`` (relative to the
working directory).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from agentkeel.errors import ConfigError
from agentkeel.stores.base import Store
from agentkeel.stores.memory import MemoryStore
from agentkeel.stores.sqlite import SQLiteStore

DEFAULT_STORE_URL = "sqlite:///.keel/keel.db"


def default_store_url() -> str:
    return os.environ.get("KEEL_STORE") or DEFAULT_STORE_URL


def _busy_timeout(url: str, options: dict[str, str]) -> float:
    """``?busy_timeout=SECONDS``: how long a write waits for another process's write lock (default 30)."""
    given = options.get("busy_timeout", "30")
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(
            f"store URL {url!r}: busy_timeout is a number of seconds above 0, e.g. {DEFAULT_STORE_URL}?busy_timeout=60"
        )
    return seconds


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names (the default store when ``url`` is None)."""
    url = url or default_store_url()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(
                f"store URL {url!r}: a SQLite URL has three slashes before a relative path "
                f"(sqlite:///data/keel.db) and four before an absolute one (sqlite:////var/keel.db)"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"store URL {url!r} names no file: use e.g. {DEFAULT_STORE_URL}")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(options) - {"synchronous", "busy_timeout"}
        if unknown:
            raise ConfigError(
                f"store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; known: busy_timeout, synchronous"
            )
        if options.get("synchronous", "full").lower() not in ("off", "normal", "full", "extra"):
            raise ConfigError(
                f"store URL {url!r}: synchronous must be off, normal, full or extra (e.g. {DEFAULT_STORE_URL}"
                "?synchronous=normal)"
            )
        return SQLiteStore(
            path, synchronous=options.get("synchronous", "full"), busy_timeout_s=_busy_timeout(url, options)
        )
    if scheme in ("postgres", "postgresql"):
        try:
            from agentkeel.stores.postgres import PostgresStore  # psycopg is an optional dependency
        except ImportError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise ConfigError(
                "a postgresql:// store needs the PostgreSQL driver: pip install 'agentkeel[postgres]'"
            ) from exc
        return PostgresStore(url)  # connects on its first awaited call
    raise ConfigError(
        f"store URL {url!r} has an unknown scheme {parts.scheme!r}: use sqlite:///path/to/keel.db, "
        "postgresql://user@host/db or memory://"
    )
