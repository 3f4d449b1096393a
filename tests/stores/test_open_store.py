"""``open_store``: a store by URL, and a sentence with the right example when the URL is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkeel import ConfigError, MemoryStore, SQLiteStore, open_store
from agentkeel.stores.open import DEFAULT_STORE_URL, default_store_url


async def test_memory_url() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    assert store.url == "memory://"


async def test_three_slashes_make_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data/keel.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == Path("data/keel.db")
        assert (tmp_path / "data" / "keel.db").exists()
    finally:
        await store.close()


async def test_four_slashes_make_an_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/abs.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "abs.db"
        assert store.path.is_absolute()
        assert (tmp_path / "abs.db").exists()
    finally:
        await store.close()


@pytest.mark.parametrize(("query", "value"), [("?synchronous=normal", 1), ("?synchronous=full", 2), ("", 2)])
async def test_the_synchronous_option(sqlite_path: Path, query: str, value: int) -> None:
    store = open_store(f"sqlite:///{sqlite_path}{query}")
    try:
        assert isinstance(store, SQLiteStore)
        assert store._db.execute("PRAGMA synchronous").fetchone() == (value,)
    finally:
        await store.close()


@pytest.mark.parametrize(("query", "ms"), [("?busy_timeout=2.5", 2500), ("", 30000)])
async def test_the_busy_timeout_option(sqlite_path: Path, query: str, ms: int) -> None:
    store = open_store(f"sqlite:///{sqlite_path}{query}")
    try:
        assert store._db.execute("PRAGMA busy_timeout").fetchone() == (ms,)  # type: ignore[attr-defined]
    finally:
        await store.close()


@pytest.mark.parametrize("given", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_busy_timeout_is_a_config_error(sqlite_path: Path, given: str) -> None:
    with pytest.raises(ConfigError, match=r"busy_timeout is a number of seconds above 0, e\.g\. .*busy_timeout=60"):
        open_store(f"sqlite:///{sqlite_path}?busy_timeout={given}")
    assert not sqlite_path.exists()


def test_the_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_STORE", raising=False)
    assert default_store_url() == DEFAULT_STORE_URL == "sqlite:///.keel/keel.db"
    monkeypatch.setenv("KEEL_STORE", "memory://")
    assert default_store_url() == "memory://"
    assert isinstance(open_store(), MemoryStore)


def test_an_unknown_option_is_refused_with_the_known_ones(sqlite_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option\\(s\\) journal, timeout; known: busy_timeout, synchronous"):
        open_store(f"sqlite:///{sqlite_path}?timeout=5&journal=wal")
    assert not sqlite_path.exists()


def test_a_bad_synchronous_value_is_a_config_error(sqlite_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous must be off, normal, full or extra") as refused:
        open_store(f"sqlite:///{sqlite_path}?synchronous=fast")
    assert "?synchronous=normal" in str(refused.value)
    assert not sqlite_path.exists()


@pytest.mark.parametrize(
    ("url", "example"),
    [
        ("redis://localhost/0", "use sqlite:///path/to/keel.db, postgresql://user@host/db or memory://"),
        ("keel.db", "use sqlite:///path/to/keel.db, postgresql://user@host/db or memory://"),
        ("sqlite://keel.db", "three slashes before a relative path (sqlite:///data/keel.db)"),
        ("sqlite:///", "names no file: use e.g. sqlite:///.keel/keel.db"),
    ],
)
def test_a_bad_url_is_refused_with_the_right_example(url: str, example: str) -> None:
    with pytest.raises(ConfigError) as refused:
        open_store(url)
    assert repr(url) in str(refused.value)
    assert example in str(refused.value)


async def test_the_shared_sqlite_url_fixture_opens_a_fresh_store(sqlite_url: str, sqlite_path: Path) -> None:
    store = open_store(sqlite_url)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == sqlite_path
        assert await store.list_runs() == []
    finally:
        await store.close()
