"""Agents as handlers: one run per message, whose id comes from the message, so a redelivery resumes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkeel import Agent, MemoryStore, ModelError, ModelRequest, ModelResponse, RetryPolicy, ScriptedModel
from agentkeel.bus import DeadLetter, MemoryBus, Message, Worker, agent_handler, open_bus
from agentkeel.bus.sqlite import SQLiteBus
from agentkeel.errors import ConfigError, StoreError
from agentkeel.models.scripted import reply


async def test_an_agent_answers_on_its_reply_topic_and_a_redelivery_reuses_its_run() -> None:
    store = MemoryStore()
    answers = iter([reply("Tides follow the moon.")])
    calls = 0

    async def model(request: ModelRequest) -> ModelResponse:
        nonlocal calls
        calls += 1
        return next(answers)

    researcher = Agent(name="researcher", model=ScriptedModel(model), store=store)
    handle = agent_handler(researcher, reply_topic="research.done")
    bus = MemoryBus()
    asked = await bus.publish("research.requests", {"task": "Why are there tides?"})
    worker = Worker(bus, {"research.requests": handle}, group="researchers")
    assert await worker.step() == 1
    done = await bus.consume("research.done", "writers", "w")
    assert done is not None
    assert done.payload == {"output": "Tides follow the moon.", "run_id": f"bus-researcher-{asked.id}"}
    assert (done.correlation_id, done.causation_id) == (asked.id, asked.id)

    delivered = await bus.consume("research.requests", "audit", "a")  # the same message, delivered again
    assert delivered is not None
    assert await handle(delivered) == [("research.done", done.payload)]
    assert calls == 1  # the run had completed: its result is read, the model is not asked again


async def test_a_run_that_does_not_complete_sends_its_message_to_the_dead_letter_topic() -> None:
    async def broken(request: ModelRequest) -> ModelResponse:
        raise ModelError("401: invalid API key", kind="auth")

    agent = Agent(name="writer", model=ScriptedModel(broken), store=MemoryStore(), model_retry=RetryPolicy(retries=0))
    bus = MemoryBus()
    message = await bus.publish("drafts.requests", "Write about bees")
    delivered = await bus.consume("drafts.requests", "writers", "w")
    assert delivered is not None
    with pytest.raises(DeadLetter, match=rf"run bus-writer-{message.id} ended failed\(model_error\)"):
        await agent_handler(agent)(delivered)


def test_bus_urls_open_their_backend_or_say_what_is_wrong(tmp_path: Path) -> None:
    assert isinstance(open_bus("memory://"), MemoryBus)
    assert isinstance(open_bus(f"sqlite:///{tmp_path / 'bus.db'}"), SQLiteBus)
    with pytest.raises(ConfigError, match="unknown scheme 'kafka'"):
        open_bus("kafka://broker:9092")
    with pytest.raises(ConfigError, match="three slashes"):
        open_bus("sqlite://host/bus.db")
    with pytest.raises(ConfigError, match="unknown option"):
        open_bus("redis://127.0.0.1:6379/0?stream=x")
    with pytest.raises(ConfigError, match="a topic name"):
        Worker(MemoryBus(), {"two words": ignore}, group="g")


async def ignore(message: Message) -> None:
    return None


async def test_an_unreachable_redis_says_where_and_how_to_start_it() -> None:
    pytest.importorskip("redis")
    bus = open_bus("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError, match=r"the Redis bus at redis://127.0.0.1:1/0 is not reachable .*redis-server"):
        await bus.publish("jobs", 1)
    await bus.close()
