"""Bus throughput and latency per backend (`python -m bench.bus`).

* Throughput: one producer publishes N messages while one ``Worker`` consumes them with a handler that does
  nothing, each delivery acknowledged (one ``ack`` transaction); the figure is N over the time from the first
  publish to the last ack, in messages per second.
* Latency: one producer publishes a message every ``--interval-ms`` (below saturation, so nothing queues up)
  while one ``Worker`` consumes them; the figure is each message's time from the call to ``publish`` to the return
  of its ``ack``, as p50, p95 and p99 in milliseconds. The SQLite and PostgreSQL buses poll (``consume`` looks
  again every 50 ms when it finds nothing), so an idle consumer's wait shows up here; Redis blocks on the server;
  the in-memory bus wakes on a condition.

Each figure is the median of 3 runs (``--repeats``), on the in-memory bus, on SQLite (a temporary file), on Redis
(``--redis``, default ``redis://127.0.0.1:6379/0``, a key prefix of its own, deleted afterwards) and on PostgreSQL
(``--postgres``, default ``KEEL_BENCH_POSTGRES`` or ``postgresql://postgres@127.0.0.1:5432/test``, a schema of its
own, dropped afterwards) when they can be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agentkeel.bus import Bus, MemoryBus, Message, SQLiteBus, Worker
from agentkeel.bus.worker import Outcome
from agentkeel.errors import StoreError
from bench.report import machine, source

RESULTS = Path(__file__).resolve().parent / "results"
TOPIC = "bench.jobs"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = os.environ.get("KEEL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BLOCK_S = 0.05
T = TypeVar("T")


class TimedWorker(Worker):
    """A worker that notes when each message's settlement returned, and sets ``done`` after ``expected`` of them."""

    def __init__(self, bus: Bus, expected: int) -> None:
        super().__init__(bus, {TOPIC: nothing}, group="bench")
        self.expected = expected
        self.settled: dict[str, float] = {}
        self.done = asyncio.Event()

    async def handle(self, message: Message) -> Outcome:
        outcome = await super().handle(message)
        self.settled[message.id] = time.perf_counter()
        if len(self.settled) >= self.expected:
            self.done.set()
        return outcome


async def nothing(message: Message) -> None:
    return None


async def one_pass(bus: Bus, count: int, interval_s: float, timeout_s: float) -> tuple[dict[str, float], TimedWorker]:
    """Publish ``count`` messages (``interval_s`` apart; 0: as fast as possible) while a worker consumes them; when
    each publish was called, and the worker with when each ack returned."""
    worker = TimedWorker(bus, count)
    published: dict[str, float] = {}
    stop = asyncio.Event()

    async def produce() -> None:
        for n in range(count):
            started = time.perf_counter()
            message = await bus.publish(TOPIC, {"n": n})
            published[message.id] = started
            if interval_s:
                await asyncio.sleep(interval_s)  # pacing the producer, not waiting for the consumer

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(worker.run(stop, block_s=BLOCK_S))
        tasks.create_task(produce())
        try:
            await asyncio.wait_for(worker.done.wait(), timeout_s)
        finally:
            stop.set()
    return published, worker


async def throughput(bus: Bus, count: int) -> float:
    """Messages per second, published, consumed and acked."""
    published, worker = await one_pass(bus, count, 0.0, timeout_s=max(60.0, count / 20))
    return count / (max(worker.settled.values()) - min(published.values()))


async def latency(bus: Bus, count: int, interval_s: float) -> dict[str, float]:
    """p50, p95 and p99 of publish-to-ack, in ms."""
    published, worker = await one_pass(bus, count, interval_s, timeout_s=60.0 + count * interval_s * 2)
    samples = sorted((worker.settled[key] - started) * 1000 for key, started in published.items())
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


def openers(
    tmp: Path, redis_url: str | None, postgres_url: str | None = None
) -> tuple[dict[str, Callable[[], Bus]], dict[str, str]]:
    """How to open a fresh bus per backend, and why a backend is left out (PostgreSQL: only when asked for; its
    buses share one schema, whose tables each run drops, and which ``measure`` drops at the end)."""
    found: dict[str, Callable[[], Bus]] = {
        "memory": MemoryBus,
        "sqlite": lambda: SQLiteBus(tmp / f"bus-{secrets.token_hex(4)}.db"),
    }
    skipped: dict[str, str] = {}
    if redis_url is None:
        skipped["redis"] = "not asked for (--redis '')"
    elif (reason := asyncio.run(_redis_unreachable(redis_url))) is None:
        from agentkeel.bus.redis_streams import RedisBus

        found["redis"] = lambda: RedisBus(redis_url, prefix=f"keel:bench:{secrets.token_hex(6)}")
    else:
        skipped["redis"] = reason
    if postgres_url is not None:
        if (reason := asyncio.run(_postgres_unreachable(postgres_url))) is None:
            from agentkeel.bus.postgres import PostgresBus

            found["postgres"] = lambda: PostgresBus(postgres_url)
        else:
            skipped["postgres"] = reason
    return found, skipped


async def _redis_unreachable(url: str) -> str | None:
    try:
        from agentkeel.bus.redis_streams import RedisBus
    except ImportError:
        return "redis-py is not installed: pip install -e '.[redis]'"
    bus = RedisBus(url, prefix=f"keel:bench:{secrets.token_hex(6)}")
    try:
        await bus.topics()
    except StoreError as exc:
        return f"Redis is not reachable at {url}: {exc}"
    finally:
        await bus.close()
    return None


def in_schema(url: str, schema: str) -> str:
    """``url`` with its tables in ``schema`` (created by the bus's first call)."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def _postgres_unreachable(url: str) -> str | None:
    try:
        from agentkeel.bus.postgres import PostgresBus
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    bus = PostgresBus(url)
    try:
        await bus.topics()
    except StoreError as exc:
        reason = exc.__cause__ or exc
        return f"PostgreSQL is not reachable at {bus.url} (KEEL_BENCH_POSTGRES or --postgres names another): {reason}"
    finally:
        await bus.close()
    return None


async def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


async def _fresh(open_bus: Callable[[], Bus], measure: Callable[[Bus], Awaitable[T]]) -> T:
    """``measure`` on a bus of its own, closed (and on Redis and PostgreSQL, deleted) afterwards."""
    bus = open_bus()
    try:
        return await measure(bus)
    finally:
        drop = getattr(bus, "drop", None)
        if drop is not None:
            await drop()
        await bus.close()


def measure(
    count: int = 2_000,
    latency_count: int = 500,
    interval_ms: float = 2.0,
    repeats: int = 3,
    redis_url: str | None = REDIS_URL,
    postgres_url: str | None = None,
) -> dict[str, Any]:
    """The figures per backend (each the median of ``repeats`` runs, on a fresh bus each time); PostgreSQL only
    when ``postgres_url`` names a server."""
    figures: dict[str, Any] = {}
    schema = f"keel_bench_bus_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="agentkeel-bus-") as tmp:
        schema_url = in_schema(postgres_url, schema) if postgres_url is not None else None
        found, skipped = openers(Path(tmp), redis_url, schema_url)
        try:
            for kind, open_bus in found.items():
                rate_of = functools.partial(throughput, count=count)
                latency_of = functools.partial(latency, count=latency_count, interval_s=interval_ms / 1000)
                rates = [asyncio.run(_fresh(open_bus, rate_of)) for _ in range(repeats)]
                lat = [asyncio.run(_fresh(open_bus, latency_of)) for _ in range(repeats)]
                figures[kind] = {
                    "messages": count,
                    "msgs_per_s": statistics.median(rates),
                    "msgs_per_s_samples": rates,
                    "latency_messages": latency_count,
                    "interval_ms": interval_ms,
                    **{key: statistics.median(sample[key] for sample in lat) for key in ("p50_ms", "p95_ms", "p99_ms")},
                    "latency_samples": lat,
                }
        finally:
            if postgres_url is not None and "postgres" in found:
                asyncio.run(_drop_schema(postgres_url, schema))
        for kind, reason in skipped.items():
            figures[kind] = {"skipped": reason}
    return figures


def render(figures: dict[str, Any]) -> str:
    lines = ["bus: publish + consume + ack through a Worker, one producer, one consumer, median of the runs"]
    for kind, figure in figures.items():
        if "skipped" in figure:
            lines.append(f"  {kind:8} skipped: {figure['skipped']}")
            continue
        lines.append(
            f"  {kind:8} {figure['msgs_per_s']:>9,.0f} msgs/s ({figure['messages']:,} messages)   "
            f"publish-to-ack p50 {figure['p50_ms']:.2f} ms  p95 {figure['p95_ms']:.2f} ms  "
            f"p99 {figure['p99_ms']:.2f} ms ({figure['latency_messages']:,} messages, "
            f"one every {figure['interval_ms']:g} ms)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000, help="messages per throughput run")
    parser.add_argument("--latency-messages", type=int, default=500, help="messages per latency run")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="time between two publishes, latency runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", default=REDIS_URL, help="the Redis server ('' to leave Redis out)")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="the PostgreSQL server ('' to leave it out)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON figures")
    args = parser.parse_args(argv)
    figures = measure(
        args.messages, args.latency_messages, args.interval_ms, args.repeats, args.redis or None, args.postgres or None
    )
    print(render(figures))
    out = args.out or RESULTS / f"bus-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures, "machine": machine(), "source": source()}, indent=2) + "\n")
    print(f"raw figures: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
