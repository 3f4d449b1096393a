"""Fixtures of the bus tests: ``case``, each backend in turn (memory, SQLite, Redis, PostgreSQL), with a way to age
deliveries.

Memory, SQLite and PostgreSQL time idleness with a manual clock, so ``case.advance`` makes deliveries stale at once.
Redis times it on the server: there ``advance`` does nothing and the tests claim with a small ``idle_s`` and poll
(``eventually``). The PostgreSQL bus of a test lives in a schema of its own on the test server
(``postgres_server.py``), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import redis_server

import postgres_server
from agentkeel.bus import Bus, MemoryBus, SQLiteBus

T = TypeVar("T")
BACKENDS = ["memory", "sqlite", "redis", "postgres"]


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class BusCase:
    """One backend under test."""

    name: str
    bus: Bus
    url: str
    """How another process opens the same bus."""
    clock: ManualClock | None
    others: list[Bus] = field(default_factory=list)
    opener: Callable[[], Bus] | None = None
    schema: str | None = None
    """PostgreSQL: the test's own schema, dropped when the case closes."""

    def advance(self, seconds: float) -> None:
        """Age every delivery by ``seconds`` (Redis: a no-op; its server's clock runs by itself)."""
        if self.clock is not None:
            self.clock.now += seconds

    def cut_off(self) -> float:
        """A moment after everything published or settled so far, before anything published or settled next (a
        trim's ``before``): the manual clock moves an hour on; Redis stamps messages with the real clock."""
        if self.clock is None:
            return time.time()
        self.clock.now += 3_600.0
        return self.clock.now

    def another(self) -> Bus:
        """A second handle on the same bus, as another process would have (memory: the same object)."""
        if self.opener is None:
            return self.bus
        other = self.opener()
        self.others.append(other)
        return other


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout_s: float = 5.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await probe()
        if value or loop.time() > deadline:
            assert value, f"nothing came within {timeout_s} s"
            return value
        await asyncio.sleep(0.01)


async def open_case(name: str, tmp_path: Path) -> BusCase:
    if name == "memory":
        clock = ManualClock()
        return BusCase(name=name, bus=MemoryBus(clock=clock), url="memory://", clock=clock)
    if name == "sqlite":
        clock = ManualClock()
        path = tmp_path / "bus.db"
        return BusCase(
            name=name,
            bus=SQLiteBus(path, clock=clock),
            url=f"sqlite:///{path}",
            clock=clock,
            opener=lambda: SQLiteBus(path, clock=clock),
        )
    if name == "postgres":
        return open_postgres_case()
    from agentkeel.bus.redis_streams import RedisBus

    server = redis_server.require_redis()
    prefix = redis_server.fresh_prefix()
    return BusCase(
        name=name,
        bus=RedisBus(server, prefix=prefix),
        url=f"{server}?prefix={prefix}",
        clock=None,
        opener=lambda: RedisBus(server, prefix=prefix),
    )


def open_postgres_case() -> BusCase:
    from agentkeel.bus.postgres import PostgresBus

    postgres_server.require_postgres()
    clock = ManualClock()
    schema = f"keel_test_{secrets.token_hex(6)}"
    url = postgres_server.schema_url(schema)
    return BusCase(
        name="postgres",
        bus=PostgresBus(url, clock=clock),
        url=url,
        clock=clock,
        opener=lambda: PostgresBus(url, clock=clock),
        schema=schema,
    )


async def close_case(case: BusCase) -> None:
    try:
        for other in case.others:
            await other.close()
        if case.name == "redis":
            from agentkeel.bus.redis_streams import RedisBus

            assert isinstance(case.bus, RedisBus)
            await case.bus.drop()
        await case.bus.close()
    finally:
        if case.schema is not None:
            postgres_server.drop_schema(case.schema)


@pytest.fixture(params=BACKENDS)
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusCase]:
    opened = await open_case(request.param, tmp_path)
    try:
        yield opened
    finally:
        await close_case(opened)
