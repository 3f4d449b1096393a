"""The consumer loop: subscriptions of handlers to topics, retries, dead letters, stale deliveries taken over.

Per delivered message: a handler that returns settles it (``ack``: the handled-ids record, the outputs and the
acknowledgement in one transaction); one that raises gives it back for another attempt (``nack``), until its
``max_attempts``-th delivery fails, which sends it to ``<topic>.dead`` with the last error. A message delivered more
than ``max_attempts`` times (its handlers keep killing their process) goes there too, without running again.

While a handler runs, a heartbeat touches its delivery every ``heartbeat_s`` (a third of ``claim_idle_s`` by
default), so another consumer's ``claim_stale`` takes over only the deliveries of a consumer that died or hangs,
not those of a slow handler. A failed touch is logged and the handler keeps running: if the delivery was taken
over meanwhile, the settlement of whichever consumer finishes second changes nothing.

What is guaranteed: every message is handled at least once per group; its outputs are published once per group,
whatever crashed when; a handler's effects *outside* the bus happen again when its process died mid-message (it
sees ``attempts > 1`` and can dedupe by ``message.id``), except an agent's (``agent_handler``): its run id comes
from the message id, so a redelivery resumes the same run, whose journal repeats no tool call.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from agentkeel.bus.base import Bus, DeadLetter, Message, Outgoing, check_topic
from agentkeel.core.state import RunState, replay
from agentkeel.errors import RunBusy, RunNotFound, StoreError
from agentkeel.observe.setup import current_live
from agentkeel.redaction import logger, redactor
from agentkeel.result import RunResult

if TYPE_CHECKING:
    from agentkeel.agent import Agent

Handler = Callable[[Message], Awaitable[Sequence[Outgoing] | None]]
"""Handles one message; returns the messages to publish in reply (same correlation id), or None."""
Sleep = Callable[[float], Awaitable[None]]
"""How the heartbeat waits between beats: ``asyncio.sleep``, or one a test drives to beat on cue."""

Outcome = Literal["acked", "duplicate", "retry", "dead"]

log = logger("agentkeel.bus")


def new_consumer() -> str:
    """A consumer's name: host, process and a token (two workers in one process are two consumers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Worker:
    """Consumes the subscribed topics as one consumer of ``group`` and runs their handlers."""

    def __init__(
        self,
        bus: Bus,
        subscriptions: Mapping[str, Handler],
        *,
        group: str,
        consumer: str | None = None,
        max_attempts: int = 5,
        claim_idle_s: float = 60.0,
        heartbeat_s: float | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts is at least 1: got {max_attempts}")
        if claim_idle_s <= 0:  # every step would take over every delivery of the group, and beat without pause
            raise ValueError(f"claim_idle_s is above 0: got {claim_idle_s}")
        if heartbeat_s is not None and heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s is above 0: got {heartbeat_s}")
        self.bus = bus
        self.subscriptions = {check_topic(topic): handler for topic, handler in subscriptions.items()}
        self.group = group
        self.consumer = consumer or new_consumer()
        self.max_attempts = max_attempts
        self.claim_idle_s = claim_idle_s
        """A delivery idle this long is taken over. The heartbeat keeps a running handler's delivery fresh, so this
        only bounds how long a dead or hung consumer's messages wait: well above ``heartbeat_s`` plus the time a
        touch takes."""
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else claim_idle_s / 3
        """How often a running handler's delivery is touched; three beats per ``claim_idle_s`` by default, so one
        late or failed beat does not lose the delivery."""
        self._sleep = sleep
        """What the heartbeat waits with between beats (tests pass one they drive)."""

    async def handle(self, message: Message) -> Outcome:
        """Run the topic's handler on a delivered message and settle it (traced as ``process <topic>`` when runs
        are traced, with the handler's work nested under it)."""
        live = current_live()
        if live is None:
            return (await self._handle(message))[0]
        from agentkeel.observe.bus_spans import process_span, processing

        started = time.time_ns()
        with processing(message, self.group):
            outcome, error = await self._handle(message)
        live.emit([process_span(message, self.group, "agentkeel", start_ns=started, outcome=outcome, error=error)])
        return outcome

    async def _handle(self, message: Message) -> tuple[Outcome, str | None]:
        """The outcome, and the error for a message not handled (each topic's loop runs concurrently: the error
        goes with its message, not through the worker's state)."""
        handler = self.subscriptions[message.topic]
        if message.attempts > self.max_attempts:  # the handler keeps dying with its process: do not run it again
            error = message.headers.get("error") or "its consumer died while handling it"
            error = f"delivered {message.attempts} times; last: {error}"
            return await self._dead(message, error), error
        try:
            outputs = await self._with_heartbeat(handler, message)
        except DeadLetter as exc:
            return await self._dead(message, str(exc)), str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if message.attempts >= self.max_attempts:
                return await self._dead(message, f"failed {message.attempts} times; last: {error}"), error
            log.warning("%s on %s failed (attempt %d): %s", message.id, message.topic, message.attempts, error)
            await self.bus.nack(message, self.group, error)
            return "retry", error
        if await self.bus.ack(message, self.group, publish=outputs or ()):
            return "acked", None
        log.info("%s on %s was settled by another consumer of %s first", message.id, message.topic, self.group)
        return "duplicate", None

    async def _with_heartbeat(self, handler: Handler, message: Message) -> Sequence[Outgoing] | None:
        """Run the handler while a heartbeat keeps its delivery; the heartbeat stops when the handler returns or
        raises. Most handlers end long before the first beat is due: for them the heartbeat is a timer, cancelled
        (a task for each message would halve a fast bus's throughput); it becomes a task when the first beat
        comes. A heartbeat driven by a test's ``sleep`` is a task from the start."""
        beating: list[asyncio.Task[None]] = []

        def start(first_now: bool) -> None:
            beating.append(asyncio.ensure_future(self._heartbeat(message, first_now=first_now)))

        timer = None
        if self._sleep is asyncio.sleep:
            timer = asyncio.get_running_loop().call_later(self.heartbeat_s, start, True)
        else:
            start(False)
        try:
            return await handler(message)
        finally:
            if timer is not None:
                timer.cancel()
            if beating:
                beating[0].cancel()
                await asyncio.wait(beating)  # ended before settling: no touch after the ack

    async def _heartbeat(self, message: Message, *, first_now: bool) -> None:
        """Touch the delivery every ``heartbeat_s`` (the first time at once when ``first_now``) until cancelled, or
        until it is no longer this consumer's."""
        wait = not first_now
        while True:
            if wait:
                await self._sleep(self.heartbeat_s)
            wait = True
            try:
                kept = await self.bus.touch(message, self.group)
            except Exception as exc:  # the bus is unreachable for a moment: the next beat may get through
                log.warning(
                    "heartbeat of %s on %s failed (the handler keeps running): %s: %s",
                    message.id,
                    message.topic,
                    type(exc).__name__,
                    exc,
                )
                continue
            if not kept:
                log.warning(
                    "%s on %s is no longer %s's (taken over after %g s idle?): its handler keeps running; whichever "
                    "consumer settles it first publishes its outputs",
                    message.id,
                    message.topic,
                    self.consumer,
                    self.claim_idle_s,
                )
                return

    async def _dead(self, message: Message, error: str) -> Outcome:
        await self.bus.dead_letter(message, self.group, error)
        log.warning("%s on %s went to %s.dead: %s", message.id, message.topic, message.topic, error)
        return "dead"

    async def step(self, *, block_s: float = 0.0) -> int:
        """Take over stale deliveries, then handle at most one new message per topic; how many were handled."""
        handled = 0
        for topic in self.subscriptions:
            handled += await self._step_topic(topic, block_s=block_s)
        return handled

    async def _step_topic(self, topic: str, *, block_s: float) -> int:
        handled = 0
        for stale in await self.bus.claim_stale(topic, self.group, self.consumer, idle_s=self.claim_idle_s):
            await self.handle(stale)
            handled += 1
        message = await self.bus.consume(topic, self.group, self.consumer, block_s=block_s)
        if message is not None:
            await self.handle(message)
            handled += 1
        return handled

    async def run(self, stop: asyncio.Event, *, block_s: float = 1.0) -> None:
        """Handle messages, one task per topic, until ``stop`` is set (each task notices within ``block_s``)."""

        async def loop(topic: str) -> None:
            while not stop.is_set():
                await self._step_topic(topic, block_s=block_s)

        async with asyncio.TaskGroup() as tasks:
            for topic in self.subscriptions:
                tasks.create_task(loop(topic))


def message_task(message: Message) -> str:
    """An agent's task from a message: a string payload, a payload's ``task``, or the payload as JSON."""
    payload = message.payload
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("task"), str):
        return str(payload["task"])
    return json.dumps(payload, ensure_ascii=False)


def agent_handler(
    agent: Agent, *, reply_topic: str | None = None, task: Callable[[Message], str] = message_task
) -> Handler:
    """A handler that runs ``agent`` on each message and publishes ``{"output", "run_id"}`` on ``reply_topic``.

    The run's id is ``bus-<agent>-<message id>``: a redelivered message resumes that run (or reads its result)
    instead of starting another. A run that does not complete sends the message to the dead-letter topic.
    """

    async def handle(message: Message) -> Sequence[Outgoing]:
        run_id = f"bus-{agent.name}-{message.id}"
        found = await _load(agent, run_id)
        if found is None:
            try:
                result = await agent.run(task(message), run_id=run_id)
            except (RunBusy, StoreError):  # another consumer started it a moment ago
                result = await _when_free(agent, run_id)
        elif found.terminal:
            result = RunResult.of(found)
        else:
            result = await _when_free(agent, run_id)
        if result.status != "completed":
            raise DeadLetter(f"run {run_id} ended {result.status}({result.reason}): {result.detail}")
        output = redactor().text(result.output)  # the bus is written to like a journal: no secret goes on it
        return [(reply_topic, {"output": output, "run_id": run_id})] if reply_topic else []

    return handle


async def _when_free(agent: Agent, run_id: str, poll_s: float = 0.5) -> RunResult:
    """Resume the run, or, while another consumer drives it (its delivery was taken over because it is slow), wait
    for that one to finish or die (its lease runs out: then this consumer resumes the run)."""
    while True:
        try:
            return await agent.resume(run_id)
        except RunBusy:
            await asyncio.sleep(poll_s)


async def _load(agent: Agent, run_id: str) -> RunState | None:
    try:
        return replay(await agent.store.load(run_id))
    except RunNotFound:
        return None
