"""Fixtures shared by the whole suite: stores (memory, SQLite, PostgreSQL), a manual clock, agents and recording models.

The ``store`` fixture is parametrised, so a test that takes it runs against ``MemoryStore``, ``SQLiteStore`` in a
temporary file and ``PostgresStore`` in a schema of its own (skipped when no server is reachable, see
``postgres_server.py``): the same rules hold for every backend.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import postgres_server
from agentkeel import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    RetryPolicy,
    ScriptedModel,
    SQLiteStore,
    Store,
    Tool,
)
from agentkeel.models.scripted import Script


@pytest.fixture(autouse=True)
def _collector_settings_restored() -> Iterator[None]:
    """A test that tunes the garbage collector (``keel bus work`` does) leaves the suite's settings as they were."""
    thresholds = gc.get_threshold()
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
    gc.set_threshold(*thresholds)


class ManualClock:
    """A clock that moves only when a test moves it (for lease expiry)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingModel:
    """A ``ScriptedModel`` that keeps every request it answers, so a test can count the model calls."""

    def __init__(self, script: Script, *, name: str = "scripted", latency_s: float = 0.0) -> None:
        self._inner = ScriptedModel(script, name=name, latency_s=latency_s)
        self.name = name
        self.requests: list[ModelRequest] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return await self._inner.respond(request)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path (the file does not exist yet)."""
    return tmp_path / "keel.db"


@pytest.fixture
def sqlite_url(sqlite_path: Path) -> str:
    """The store URL of ``sqlite_path`` (absolute: four slashes)."""
    return f"sqlite:///{sqlite_path}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, sqlite_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    """Each backend in turn, with ``clock`` as its lease clock (PostgreSQL: a fresh schema, dropped after)."""
    if request.param == "postgres":
        async with postgres_server.fresh_store(clock) as postgres:
            yield postgres
        return
    backend: Store
    backend = MemoryStore(clock=clock) if request.param == "memory" else SQLiteStore(sqlite_path, clock=clock)
    yield backend
    await backend.close()


@pytest.fixture
def recording_model() -> type[RecordingModel]:
    """``recording_model(script, name=..., latency_s=...)``: a scripted model that counts its calls."""
    return RecordingModel


@pytest.fixture
def make_agent(store: Store) -> Callable[..., Agent]:
    """``make_agent(model_or_script, tools=[...], **settings)``: an agent named ``test`` on the ``store`` fixture."""

    def build(model: Any, tools: Sequence[Tool] = (), **settings: Any) -> Agent:
        if not hasattr(model, "respond"):
            model = RecordingModel(model)
        settings.setdefault("name", "test")
        settings.setdefault("model_retry", RetryPolicy(retries=2, backoff_s=0.0))  # retried at once: no waiting
        return Agent(model=model, tools=list(tools), store=store, **settings)

    return build
