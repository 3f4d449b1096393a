"""examples/bus_chain.py: four agents chained on the bus by topics alone, on the in-memory and the SQLite bus."""

from __future__ import annotations

import runpy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentkeel import MemoryStore
from agentkeel.bus import Bus, MemoryBus, SQLiteBus, agent_handler
from agentkeel.core.state import replay

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STAGES = ["researcher", "writer", "editor", "validator"]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLES / "bus_chain.py"))


@pytest.fixture(params=["memory", "sqlite"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    opened: Bus = MemoryBus() if request.param == "memory" else SQLiteBus(tmp_path / "bus.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_chain_answers_with_the_requests_correlation_id_and_one_run_per_stage(
    example: dict[str, Any], bus: Bus
) -> None:
    store = MemoryStore()
    chain = await example["run_chain"](bus, store=store, timeout_s=10.0, block_s=0.02)

    assert chain.final is not None and chain.final.topic == "validated"
    assert chain.final.correlation_id == chain.request.correlation_id == chain.request.id
    assert chain.text.startswith("APPROVED\n\nWhy does the sea have tides?\n\nThe moon's gravity pulls the ocean")
    assert list(chain.run_ids) == STAGES
    assert chain.run_ids["researcher"] == f"bus-researcher-{chain.request.id}"
    runs = await store.list_runs()
    assert sorted((row.agent, row.run_id, row.status) for row in runs) == sorted(
        (name, chain.run_ids[name], "completed") for name in STAGES
    )
    stats = {(row.topic, row.group): row for row in await bus.topics()}
    assert all(row.pending == 0 and row.lag == 0 and row.dead == 0 for row in stats.values())
    assert stats[("validated", "chain-watcher")].messages == 1


async def test_a_redelivered_request_does_not_start_a_second_researcher_run(example: dict[str, Any], bus: Bus) -> None:
    store = MemoryStore()
    team = example["agents"](store)
    request = await bus.publish("research.requested", "Why does the sea have tides?")

    # The researcher's consumer runs the agent, then fails before acknowledging: the request goes back to the group.
    delivered = await bus.consume("research.requested", "researcher", "first-consumer")
    assert delivered is not None and delivered.attempts == 1
    handle = agent_handler(team["researcher"], reply_topic="research.done", task=example["previous_output"])
    first_answer = await handle(delivered)
    await bus.nack(delivered, "researcher", "the consumer lost its connection before the ack")

    chain = await example["follow"](bus, example["Chain"](request=request), team, timeout_s=10.0, block_s=0.02)

    assert chain.final is not None and chain.final.correlation_id == request.id
    researchers = [row for row in await store.list_runs() if row.agent == "researcher"]
    assert [row.run_id for row in researchers] == [f"bus-researcher-{request.id}"] == [chain.run_ids["researcher"]]
    state = replay(await store.load(researchers[0].run_id))
    assert [record.name for record in state.calls.values()] == ["read_notes"]  # the notes were read once
    assert researchers[0].steps == 2
    stats = {(row.topic, row.group): row for row in await bus.topics()}
    assert stats[("research.done", "writer")].messages == 1  # the second delivery's answer is the first one's
    assert first_answer is not None and first_answer[0][1]["run_id"] == chain.run_ids["researcher"]
    assert {row.agent for row in await store.list_runs()} == set(STAGES)
