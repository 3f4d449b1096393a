"""Resuming a long run: a journal of ``steps`` finished steps whose process died waiting for the next model turn.

The journal is made once by a real run (in memory) whose model call at step ``steps + 1`` never returns; a copy
of it is then planted in the SQLite store for each repetition under a fresh run id. Each repetition opens the
store anew (a cold SQLite page cache, as in a fresh process) and times:

* ``load``: ``await store.load(run_id)`` (read and decode every event);
* ``replay``: ``replay(events)`` (the fold);
* ``resume``: ``agent.resume(run_id)`` from the call to its result: every load and replay it makes, the lease,
  ``run_resumed``, the one model turn that finishes the run and its commit.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from agentkeel import MemoryStore, ModelRequest, ModelResponse, ScriptedModel, SQLiteStore, call
from agentkeel.core.events import Event, RunStarted
from agentkeel.core.state import replay
from agentkeel.stores.base import RunRow
from bench.engine_overhead import bench_agent

PLANTER = "bench:planter"


class ProcessDied(BaseException):
    """Stands for the driving process dying while it waits for the model: nothing catches it."""


async def build_journal(steps: int) -> list[Event]:
    """The journal of a run that finished ``steps`` tool-calling steps and died before its last model turn."""

    def script(request: ModelRequest) -> ModelResponse:
        done = (len(request.messages) - 1) // 2
        if done < steps:
            return call("lookup_order", order_id=f"#{done + 1:04d}")
        raise ProcessDied

    agent = bench_agent(steps=steps, store=MemoryStore()).replace(model=ScriptedModel(script))
    try:
        await agent.run("Where are my orders?", run_id="template")
    except ProcessDied:
        pass
    else:
        raise RuntimeError("the template run was meant to die before its last model turn")
    events = await agent.store.load("template")
    if replay(events).steps_completed != steps:
        raise RuntimeError(f"the template journal does not hold {steps} steps")
    return events


async def plant(store: SQLiteStore, template: list[Event], run_id: str) -> None:
    """Write a copy of the template journal as run ``run_id``, leased to nobody."""
    first = template[0]
    assert isinstance(first, RunStarted)
    first = dataclasses.replace(first, run_id=run_id)
    events = [first, *template[1:]]
    await store.create_run(first, RunRow.of(replay([first])), owner=PLANTER, lease_s=30.0)
    await store.append(run_id, PLANTER, 1, events[1:], RunRow.of(replay(events)))
    await store.release_lease(run_id, PLANTER)


async def time_resume(path: Path, run_id: str, steps: int) -> dict[str, float]:
    """Milliseconds to load, replay and resume the planted run ``run_id``, each through a freshly opened store."""
    reader = SQLiteStore(path)
    try:
        started = time.perf_counter()
        events = await reader.load(run_id)
        loaded = time.perf_counter()
        state = replay(events)
        replayed = time.perf_counter()
    finally:
        await reader.close()
    if state.steps_completed != steps or state.terminal:
        raise RuntimeError(f"planted run {run_id} is not a live run of {steps} steps")

    store = SQLiteStore(path)
    try:
        agent = bench_agent(steps=steps, store=store)
        resume_started = time.perf_counter()
        result = await agent.resume(run_id)
        resumed = time.perf_counter()
    finally:
        await store.close()
    if result.status != "completed" or result.steps != steps + 1:
        raise RuntimeError(f"the resumed run did not finish in one more turn: {result}")
    return {
        "resume_load_ms": (loaded - started) * 1e3,
        "resume_replay_ms": (replayed - loaded) * 1e3,
        "resume_load_replay_ms": (replayed - started) * 1e3,
        "resume_ms": (resumed - resume_started) * 1e3,
    }
