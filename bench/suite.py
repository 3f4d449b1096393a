"""The benchmark suite: every case, measured in rounds so that machine noise hits all of them alike.

A round measures each case once, in a fixed order; warm-up rounds are thrown away. Each case returns one or more
figures per measurement (µs per step, or ms), and the report takes medians over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentkeel import SQLiteStore
from bench.engine_overhead import memory_agent, sqlite_agent, time_agent_run
from bench.floors import Journal, time_plain_loop
from bench.resume import build_journal, plant, time_resume


@dataclass(frozen=True, kw_only=True)
class Settings:
    steps: int = 200
    """Tool-calling steps per run, for the per-step figures."""
    resume_steps: int = 1000
    """Finished steps in the journal of the resumed run; also the length of the long in-memory run."""
    rounds: int = 9
    warmup: int = 1


QUICK = Settings(steps=5, resume_steps=20, rounds=2, warmup=1)


@dataclass(frozen=True, kw_only=True)
class Figure:
    key: str
    label: str
    unit: str
    floor: str | None = None
    """The floor this figure is compared with, for the ``x floor`` column."""


FIGURES = (
    Figure(key="floor_a_us", label="floor A: plain loop (Pattern 1)", unit="µs/step"),
    Figure(key="floor_b_us", label="floor B: plain loop + 2 SQLite commits", unit="µs/step"),
    Figure(key="memory_async_us", label="agentkeel, MemoryStore, async tool", unit="µs/step", floor="floor_a_us"),
    Figure(key="memory_sync_us", label="agentkeel, MemoryStore, sync tool", unit="µs/step", floor="floor_a_us"),
    Figure(
        key="memory_inline_us", label="agentkeel, MemoryStore, sync tool inline", unit="µs/step", floor="floor_a_us"
    ),
    Figure(key="memory_minimal_us", label="agentkeel, MemoryStore, MinimalModel", unit="µs/step", floor="floor_a_us"),
    Figure(
        key="memory_long_us",
        label="agentkeel, MemoryStore, {resume_steps:,}-step run",
        unit="µs/step",
        floor="floor_a_us",
    ),
    Figure(key="sqlite_async_us", label="agentkeel, SQLiteStore, async tool", unit="µs/step", floor="floor_b_us"),
    Figure(key="sqlite_write_us", label="agentkeel, SQLiteStore, async write tool", unit="µs/step", floor="floor_b_us"),
    Figure(key="resume_load_ms", label="resume: store.load ({resume_steps:,} steps)", unit="ms"),
    Figure(key="resume_replay_ms", label="resume: replay(events)", unit="ms"),
    Figure(key="resume_load_replay_ms", label="resume: replay(await store.load(id))", unit="ms"),
    Figure(key="resume_ms", label="resume: agent.resume(id), call to result", unit="ms"),
)


@dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    measure: Callable[[], dict[str, float]]


def run_suite(settings: Settings, *, progress: Callable[[str], None] = lambda _: None) -> dict[str, list[float]]:
    """Measure every case ``settings.rounds`` times (after the warm-up) and return the samples of each figure."""
    samples: dict[str, list[float]] = {figure.key: [] for figure in FIGURES}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agentkeel-bench-")))
        runner = stack.enter_context(asyncio.Runner())
        cases = _cases(settings, tmp, runner, stack)
        for round_number in range(-settings.warmup, settings.rounds):
            progress("warm-up" if round_number < 0 else f"round {round_number + 1}/{settings.rounds}")
            for case in cases:
                gc.collect()  # each case starts with the same heap, not with the previous case's garbage
                figures = case.measure()
                if round_number >= 0:
                    for key, value in figures.items():
                        samples[key].append(value)
    return samples


def _cases(settings: Settings, tmp: Path, runner: asyncio.Runner, stack: contextlib.ExitStack) -> list[Case]:
    steps, long_steps = settings.steps, settings.resume_steps

    def per_step(seconds: float, run_steps: int = steps) -> float:
        return seconds * 1e6 / run_steps

    def floor_a() -> dict[str, float]:
        return {"floor_a_us": per_step(time_plain_loop(steps))}

    journal = Journal(tmp / "floor.db")
    stack.callback(journal.close)
    floor_runs = iter(range(1_000_000))

    def floor_b() -> dict[str, float]:
        return {"floor_b_us": per_step(time_plain_loop(steps, journal, run_id=f"run-{next(floor_runs)}"))}

    def memory(
        key: str, run_steps: int, *, tool_kind: str = "async", minimal: bool = False
    ) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            agent = memory_agent(run_steps, tool_kind, minimal=minimal)
            return {key: per_step(runner.run(time_agent_run(agent, run_steps)), run_steps)}

        return measure

    durable = sqlite_agent(steps, tmp / "keel.db")
    stack.callback(lambda: runner.run(durable.store.close()))

    def sqlite() -> dict[str, float]:
        return {"sqlite_async_us": per_step(runner.run(time_agent_run(durable, steps)))}

    durable_write = sqlite_agent(steps, tmp / "keel-write.db", write=True)
    stack.callback(lambda: runner.run(durable_write.store.close()))

    def sqlite_write() -> dict[str, float]:
        return {"sqlite_write_us": per_step(runner.run(time_agent_run(durable_write, steps)))}

    resume_path = tmp / "resume.db"
    resume_ids = [f"resume-{n}" for n in range(settings.warmup + settings.rounds)]
    runner.run(_plant_all(resume_path, long_steps, resume_ids))
    pending = iter(resume_ids)

    def resume() -> dict[str, float]:
        return runner.run(time_resume(resume_path, next(pending), long_steps))

    return [
        Case(name="floor A", measure=floor_a),
        Case(name="floor B", measure=floor_b),
        Case(name="memory, async tool", measure=memory("memory_async_us", steps, tool_kind="async")),
        Case(name="memory, sync tool", measure=memory("memory_sync_us", steps, tool_kind="sync")),
        Case(name="memory, sync tool inline", measure=memory("memory_inline_us", steps, tool_kind="inline")),
        Case(name="memory, minimal model", measure=memory("memory_minimal_us", steps, minimal=True)),
        Case(name="memory, long run", measure=memory("memory_long_us", long_steps)),
        Case(name="SQLite, async tool", measure=sqlite),
        Case(name="SQLite, async write tool", measure=sqlite_write),
        Case(name="resume", measure=resume),
    ]


async def _plant_all(path: Path, steps: int, run_ids: list[str]) -> None:
    template = await build_journal(steps)
    store = SQLiteStore(path)
    try:
        for run_id in run_ids:
            await plant(store, template, run_id)
    finally:
        await store.close()
