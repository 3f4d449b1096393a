"""Routes: which agent answers which topic, declared once and served by ``keel bus work`` or ``serve``.

    ROUTES = [
        Route("research.requested", researcher, reply="research.done"),
        Route("research.done", writer, reply="draft.done", task=previous_output),
    ]

Each route is one consumer group (the agent's name, unless ``group`` says otherwise) running the agent on each
message of its topic (``agent_handler``: a redelivered message resumes the same run) and publishing its answer on
``reply``. Any number of processes may serve the same routes: a group's consumers share its messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentkeel.bus.base import Bus, Message, check_topic
from agentkeel.bus.worker import Handler, Worker, agent_handler, message_task
from agentkeel.errors import ConfigError

if TYPE_CHECKING:
    from agentkeel.agent import Agent


@dataclass(frozen=True, slots=True)
class Route:
    """An agent subscribed to a topic, answering on another (or nowhere)."""

    topic: str
    agent: Agent
    reply: str | None = None
    task: Callable[[Message], str] = message_task
    """The agent's task from a message (default: a string payload, a payload's ``task``, or its JSON)."""
    group: str | None = None
    """The consumer group (default: the agent's name)."""
    max_attempts: int = 5
    claim_idle_s: float = 300.0
    """A delivery idle this long is taken over by another consumer. The worker's heartbeat keeps a running agent's
    delivery fresh however long the run takes, so this bounds how long the message of a dead consumer waits."""

    def __post_init__(self) -> None:
        check_topic(self.topic)
        if self.reply is not None:
            check_topic(self.reply)

    @property
    def handler(self) -> Handler:
        return agent_handler(self.agent, reply_topic=self.reply, task=self.task)


def route_workers(bus: Bus, routes: Sequence[Route]) -> list[Worker]:
    """One worker per group, holding the routes of that group (a group may read several topics)."""
    if not routes:
        raise ConfigError("no routes to serve: pass Route(topic, agent, reply=...) objects")
    groups: dict[str, list[Route]] = {}
    for route in routes:
        groups.setdefault(route.group or route.agent.name, []).append(route)
    workers = []
    for group, members in groups.items():
        topics = [route.topic for route in members]
        if len(set(topics)) != len(topics):
            raise ConfigError(f"group {group!r} has two routes on the same topic: give one of them another group")
        workers.append(
            Worker(
                bus,
                {route.topic: route.handler for route in members},
                group=group,
                max_attempts=min(route.max_attempts for route in members),
                claim_idle_s=max(route.claim_idle_s for route in members),
            )
        )
    return workers


async def serve(
    bus: Bus,
    workers: Sequence[Worker],
    *,
    stop: asyncio.Event | None = None,
    idle_s: float | None = None,
    block_s: float = 0.5,
    on_handled: Callable[[int], None] | None = None,
) -> int:
    """Run the workers until ``stop`` is set or, with ``idle_s``, until no worker has had a message for that long
    (every topic drained); how many messages were handled."""
    stop = stop or asyncio.Event()
    handled = 0
    loop = asyncio.get_running_loop()
    last_work = loop.time()

    async def run(worker: Worker) -> None:
        nonlocal handled, last_work
        while not stop.is_set():
            count = await worker.step(block_s=block_s)
            if count:
                handled += count
                last_work = loop.time()
                if on_handled is not None:
                    on_handled(handled)
            elif idle_s is not None and loop.time() - last_work >= idle_s:
                stop.set()

    async with asyncio.TaskGroup() as tasks:
        for worker in workers:
            tasks.create_task(run(worker))
    return handled
