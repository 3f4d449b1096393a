"""The rules of ``bus/base.py``, checked against every backend: memory, SQLite, Redis Streams and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentkeel.bus import DeadLetter, MemoryBus, Message, TrimReport, Worker
from agentkeel.errors import StoreError
from conftest import BusCase, ManualClock, close_case, eventually, open_case

IDLE_S = 0.05  # what "stale" means once a test has aged the deliveries (Redis: by waiting that long)
TOUCH_IDLE_S = 0.5
"""Stale, in the touch test: on Redis, more than the time between a touch and the claim that follows it."""


async def drain(case: BusCase, topic: str, group: str) -> list[Message]:
    """Every message the group has not seen yet, acked."""
    seen = []
    while (message := await case.bus.consume(topic, group, "reader")) is not None:
        assert await case.bus.ack(message, group)
        seen.append(message)
    return seen


async def test_messages_arrive_in_publishing_order_and_once_acked_are_gone(case: BusCase) -> None:
    sent = [await case.bus.publish("jobs", {"n": n}) for n in range(3)]
    got = [await case.bus.consume("jobs", "workers", "w1") for _ in range(3)]
    assert [message.id if message else None for message in got] == [message.id for message in sent]
    assert [message.payload if message else None for message in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(message is not None and message.attempts == 1 for message in got)
    assert sent[0].correlation_id == sent[0].id  # a message that starts a piece of work
    for message in got:
        assert message is not None
        assert await case.bus.ack(message, "workers")
    assert await case.bus.consume("jobs", "workers", "w1") is None
    [stats] = [row for row in await case.bus.topics() if row.topic == "jobs"]
    assert (stats.group, stats.messages, stats.pending, stats.lag, stats.dead) == ("workers", 3, 0, 0, 0)


async def test_each_group_sees_every_message_and_its_consumers_share_them(case: BusCase) -> None:
    for n in range(2):
        await case.bus.publish("orders", n)
    first = await case.bus.consume("orders", "billing", "b1")
    second = await case.bus.consume("orders", "billing", "b2")
    assert first is not None and second is not None
    assert {first.payload, second.payload} == {0, 1}
    assert await case.bus.consume("orders", "billing", "b3") is None
    assert [message.payload for message in await drain(case, "orders", "audit")] == [0, 1]


async def test_a_message_left_by_a_dead_consumer_goes_to_another_after_the_idle_time(case: BusCase) -> None:
    published = await case.bus.publish("jobs", "resize photo 7")
    taken = await case.bus.consume("jobs", "workers", "doomed")
    assert taken is not None and taken.attempts == 1
    # "doomed" dies here without acking. Another consumer (another connection) takes over once it is idle enough.
    rescuer = case.another()
    assert await rescuer.claim_stale("jobs", "workers", "rescuer", idle_s=30.0) == []
    case.advance(60.0)
    [claimed] = await eventually(lambda: rescuer.claim_stale("jobs", "workers", "rescuer", idle_s=IDLE_S))
    assert (claimed.id, claimed.payload, claimed.attempts) == (published.id, "resize photo 7", 2)
    assert await rescuer.ack(claimed, "workers")
    assert await rescuer.consume("jobs", "workers", "rescuer") is None
    case.advance(60.0)
    assert await rescuer.claim_stale("jobs", "workers", "rescuer", idle_s=0.0) == []


async def test_a_nacked_message_comes_back_first_with_its_error(case: BusCase) -> None:
    first = await case.bus.publish("jobs", "a")
    await case.bus.publish("jobs", "b")
    taken = await case.bus.consume("jobs", "workers", "w1")
    assert taken is not None
    await case.bus.nack(taken, "workers", "TimeoutError: the API did not answer")
    again = await case.bus.consume("jobs", "workers", "w2")
    assert again is not None
    assert (again.id, again.attempts, again.headers["error"]) == (first.id, 2, "TimeoutError: the API did not answer")


async def test_a_message_is_settled_once_when_a_slow_consumer_finishes_after_a_takeover(case: BusCase) -> None:
    await case.bus.publish("research", "topic X")
    slow = await case.bus.consume("research", "writers", "slow")
    assert slow is not None
    case.advance(60.0)
    rescuer = case.another()
    [claimed] = await eventually(lambda: rescuer.claim_stale("research", "writers", "fast", idle_s=IDLE_S))
    await case.bus.nack(slow, "writers", "late failure")  # the slow one's delivery moved on: this changes nothing
    assert await case.bus.consume("research", "writers", "third") is None
    assert await rescuer.ack(claimed, "writers", publish=[("drafts", "draft by fast")])
    assert not await case.bus.ack(slow, "writers", publish=[("drafts", "draft by slow")])
    assert [message.payload for message in await drain(case, "drafts", "editors")] == ["draft by fast"]


async def test_a_handler_that_keeps_failing_sends_its_message_to_the_dead_letter_topic(case: BusCase) -> None:
    calls: list[int] = []

    async def parse(message: Message) -> None:
        calls.append(message.attempts)
        raise ValueError(f"no invoice number in {message.payload!r}")

    worker = Worker(case.bus, {"invoices": parse}, group="parsers", max_attempts=3)
    published = await case.bus.publish("invoices", "hello")
    while await worker.step():
        pass
    assert calls == [1, 2, 3]
    [dead] = await case.bus.dead_letters("invoices")
    assert dead.topic == "invoices.dead" and dead.payload == "hello"
    assert (dead.correlation_id, dead.causation_id) == (published.correlation_id, published.id)
    assert dead.headers["error"] == "failed 3 times; last: ValueError: no invoice number in 'hello'"
    assert (dead.headers["dead_from"], dead.headers["group"], dead.headers["attempts"]) == (
        published.id,
        "parsers",
        "3",
    )
    [stats] = [row for row in await case.bus.topics() if row.topic == "invoices"]
    assert (stats.pending, stats.lag, stats.dead) == (0, 0, 1)


async def test_dead_letter_raised_by_a_handler_skips_the_retries(case: BusCase) -> None:
    calls = 0

    async def triage(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise DeadLetter("not a support ticket: a newsletter")

    worker = Worker(case.bus, {"tickets": triage}, group="triage")
    await case.bus.publish("tickets", "Weekly digest")
    assert await worker.step() == 1
    assert calls == 1
    assert [dead.headers["error"] for dead in await case.bus.dead_letters("tickets")] == [
        "not a support ticket: a newsletter"
    ]


async def test_a_message_whose_consumers_keep_dying_is_dead_lettered_without_running_again(case: BusCase) -> None:
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1

    await case.bus.publish("jobs", "poison")
    assert await case.bus.consume("jobs", "workers", "dies-1") is not None
    for name in ("dies-2", "dies-3"):
        case.advance(60.0)
        await eventually(lambda name=name: case.bus.claim_stale("jobs", "workers", name, idle_s=IDLE_S))  # type: ignore[misc]
    case.advance(60.0)
    worker = Worker(case.bus, {"jobs": handler}, group="workers", max_attempts=2, claim_idle_s=IDLE_S)
    await eventually(worker.step)
    assert calls == 0
    [dead] = await case.bus.dead_letters("jobs")
    assert dead.headers["error"].startswith("delivered 4 times; last: ")


async def test_correlation_ids_tie_a_two_stage_chain_into_one_trace(case: BusCase) -> None:
    async def research(message: Message) -> list[tuple[str, Any]]:
        return [("research.done", {"question": message.payload, "facts": ["f1"]})]

    async def write(message: Message) -> list[tuple[str, Any]]:
        return [("drafts", f"draft on {message.payload['question']}")]

    researcher = Worker(case.bus, {"research.requests": research}, group="researchers")
    writer = Worker(case.bus, {"research.done": write}, group="writers")
    asked = [await case.bus.publish("research.requests", question) for question in ("tides", "bees")]
    assert await researcher.step() + await researcher.step() == 2
    assert await writer.step() + await writer.step() == 2
    done = {message.causation_id: message for message in await drain(case, "research.done", "audit")}
    drafts = {message.causation_id: message for message in await drain(case, "drafts", "audit")}
    for request in asked:
        middle = done[request.id]
        final = drafts[middle.id]
        assert middle.correlation_id == final.correlation_id == request.id
        assert final.payload == f"draft on {request.payload}"


async def test_topics_report_pending_lag_and_dead_letters_per_group(case: BusCase) -> None:
    for n in range(3):
        await case.bus.publish("events", n)
    await case.bus.publish("unread", "x")
    taken = await case.bus.consume("events", "g", "c")
    assert taken is not None
    await case.bus.dead_letter(taken, "g", "cannot parse")
    assert await case.bus.consume("events", "g", "c") is not None  # pending from here
    rows = {(row.topic, row.group): row for row in await case.bus.topics()}
    events = rows[("events", "g")]
    assert (events.messages, events.pending, events.lag, events.dead) == (3, 1, 1, 1)
    unread = rows[("unread", "")]
    assert (unread.messages, unread.pending, unread.lag, unread.dead) == (1, 0, 0, 0)
    assert not any(topic.endswith(".dead") for topic, _ in rows)
    assert not await case.bus.dead_letter(taken, "g", "again")  # settled once
    assert len(await case.bus.dead_letters("events")) == 1


# -- heartbeat: touch -----------------------------------------------------------------------------------------------


async def test_a_touched_delivery_is_not_taken_over_while_an_untouched_one_of_the_same_age_is(case: BusCase) -> None:
    await case.bus.publish("jobs", "long report")
    abandoned = await case.bus.publish("jobs", "resize photo 7")
    slow = await case.bus.consume("jobs", "workers", "slow")
    assert slow is not None and slow.consumer == "slow"
    assert await case.bus.consume("jobs", "workers", "doomed") is not None  # "doomed" dies here
    case.advance(60.0)  # both deliveries are a minute old: both would be stale
    rescuer = case.another()

    async def touch_then_claim() -> list[Message]:
        assert await case.bus.touch(slow, "workers")  # the slow consumer's heartbeat
        return await rescuer.claim_stale("jobs", "workers", "rescuer", idle_s=TOUCH_IDLE_S)

    [claimed] = await eventually(touch_then_claim)
    assert (claimed.id, claimed.attempts, claimed.consumer) == (abandoned.id, 2, "rescuer")
    assert await case.bus.ack(slow, "workers")  # still the slow consumer's: it settles it, once
    assert await rescuer.ack(claimed, "workers")
    [stats] = [row for row in await case.bus.topics() if row.topic == "jobs"]
    assert (stats.pending, stats.lag) == (0, 0)


async def test_touch_answers_false_once_the_delivery_is_taken_over_given_back_or_settled(case: BusCase) -> None:
    await case.bus.publish("jobs", "x")
    slow = await case.bus.consume("jobs", "workers", "slow")
    assert slow is not None
    case.advance(60.0)
    rescuer = case.another()
    [claimed] = await eventually(lambda: rescuer.claim_stale("jobs", "workers", "rescuer", idle_s=IDLE_S))
    assert not await case.bus.touch(slow, "workers")  # taken over: the touch changes nothing
    assert await rescuer.touch(claimed, "workers")
    await rescuer.nack(claimed, "workers", "flaky")
    assert not await rescuer.touch(claimed, "workers")  # given back
    again = await case.bus.consume("jobs", "workers", "third")
    assert again is not None and again.attempts == 3
    assert await case.bus.touch(again, "workers")
    assert await case.bus.ack(again, "workers")
    assert not await case.bus.touch(again, "workers")  # settled
    assert not await case.bus.touch(slow, "workers")


# -- heartbeat: the worker -------------------------------------------------------------------------------------------


class Beats:
    """The heartbeat's sleep, driven by the test: a beat waits until the test lets it through, and the test can
    wait until the heartbeat is waiting again (its touch done)."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._waiting: asyncio.Queue[None] = asyncio.Queue()
        self._go: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        self.intervals.append(seconds)
        self._waiting.put_nowait(None)
        await self._go.get()

    async def waiting(self) -> None:
        """Until the heartbeat is waiting for its next beat (a bound, not a pause: a missing beat fails)."""
        await asyncio.wait_for(self._waiting.get(), timeout=10.0)

    async def beat(self) -> None:
        """Let one beat through, and wait until it has touched the delivery."""
        self._go.put_nowait(None)
        await self.waiting()


class SlowHandler:
    """A handler that runs until the test says it is done."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, message: Message) -> list[tuple[str, Any]]:
        self.calls.append((message.payload, message.attempts))
        self.started.set()
        await self.finish.wait()
        return [("done", message.payload)]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BusCase]:
    """A backend that times idleness with the manual clock, so a handler can run for minutes of it at once."""
    opened = await open_case(request.param, tmp_path)
    try:
        yield opened
    finally:
        await close_case(opened)


async def test_a_slow_handler_keeps_its_message_with_the_heartbeat_and_it_is_handled_once(clocked: BusCase) -> None:
    case = clocked
    handler, beats = SlowHandler(), Beats()
    worker = Worker(case.bus, {"jobs": handler}, group="writers", consumer="slow", claim_idle_s=60.0, sleep=beats.sleep)
    rescuer = Worker(case.another(), {"jobs": handler}, group="writers", consumer="rescuer", claim_idle_s=60.0)
    await case.bus.publish("jobs", "long report")
    stepping = asyncio.create_task(worker.step())
    await handler.started.wait()
    await beats.waiting()
    assert beats.intervals == [20.0]  # a third of claim_idle_s
    for _ in range(4):  # three minutes of handling, a beat every 45 s: never 60 s idle
        case.advance(45.0)
        await beats.beat()
        assert await rescuer.step() == 0  # nothing stale to take over, nothing new
    handler.finish.set()
    assert await stepping == 1
    assert handler.calls == [("long report", 1)]
    assert [message.payload for message in await drain(case, "done", "audit")] == ["long report"]

    # The same wait without a beat: the delivery goes to the rescuer, and the message runs twice.
    handler.finish.clear()
    await case.bus.publish("jobs", "another report")
    stepping = asyncio.create_task(worker.step())
    await beats.waiting()
    case.advance(61.0)
    [taken] = await rescuer.bus.claim_stale("jobs", "writers", "rescuer", idle_s=60.0)
    assert taken.payload == "another report"
    handler.finish.set()
    assert await stepping == 1
    assert await rescuer.handle(taken) == "duplicate"  # settled by the slow one first: published once all the same
    assert handler.calls[1:] == [("another report", 1), ("another report", 2)]


class UnreachableTouch(MemoryBus):
    async def touch(self, message: Message, group: str) -> bool:
        raise StoreError("the bus at memory:// failed: connection reset")


async def test_a_failing_heartbeat_is_logged_and_the_handler_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    bus = UnreachableTouch(clock=ManualClock())
    handler, beats = SlowHandler(), Beats()
    worker = Worker(bus, {"jobs": handler}, group="writers", claim_idle_s=30.0, heartbeat_s=5.0, sleep=beats.sleep)
    await bus.publish("jobs", "long report")
    with caplog.at_level(logging.WARNING, logger="agentkeel.bus"):
        stepping = asyncio.create_task(worker.step())
        await beats.waiting()
        await beats.beat()
        await beats.beat()  # the heartbeat goes on after a failed touch
        handler.finish.set()
        assert await stepping == 1
    assert beats.intervals == [5.0, 5.0, 5.0]
    failures = [record.getMessage() for record in caplog.records if "heartbeat of" in record.getMessage()]
    assert len(failures) == 2 and "the handler keeps running" in failures[0]
    assert [message.payload for message in await drain_bus(bus, "done")] == ["long report"]


async def drain_bus(bus: MemoryBus, topic: str) -> list[Message]:
    seen = []
    while (message := await bus.consume(topic, "audit", "reader")) is not None:
        assert await bus.ack(message, "audit")
        seen.append(message)
    return seen


# -- retention: trim -------------------------------------------------------------------------------------------------


async def test_trim_removes_old_settled_messages_and_keeps_what_a_group_still_needs(case: BusCase) -> None:
    bus = case.bus
    jobs = [await bus.publish("jobs", n) for n in range(4)]
    for _ in range(2):
        taken = await bus.consume("jobs", "workers", "w1")
        assert taken is not None
        assert await bus.ack(taken, "workers")
    pending = await bus.consume("jobs", "workers", "w1")  # jobs 2: pending; jobs 3: not delivered to workers
    assert pending is not None and pending.id == jobs[2].id
    assert len(await drain(case, "jobs", "audit")) == 4  # another group has settled all four
    await bus.publish("unread", "no group reads this topic yet")
    await bus.publish("invoices", "hello")
    invoice = await bus.consume("invoices", "parsers", "p1")
    assert invoice is not None
    assert await bus.dead_letter(invoice, "parsers", "ValueError: no invoice number")
    before = case.cut_off()
    fresh = await bus.publish("invoices", "settled, but newer than the cut-off")
    taken = await bus.consume("invoices", "parsers", "p1")
    assert taken is not None and taken.id == fresh.id
    assert await bus.ack(taken, "parsers")

    # Gone: jobs 0 and 1 (settled by both groups), the old invoice, and their five handled records. Kept because
    # still needed: jobs 2 (pending), jobs 3 (workers not given it yet) and the unread message. Also kept: the new
    # invoice and its handled record (newer than the cut-off), audit's records of jobs 2 and 3, the dead letter.
    report = await bus.trim(before=before)
    assert report == TrimReport(messages=3, handled=5, dead_letters=0, kept=3)
    rows = {(row.topic, row.group): row for row in await bus.topics()}
    assert (rows[("jobs", "workers")].messages, rows[("jobs", "workers")].pending, rows[("jobs", "workers")].lag) == (
        2,
        1,
        1,
    )
    assert (rows[("jobs", "audit")].pending, rows[("jobs", "audit")].lag) == (0, 0)
    assert rows[("unread", "")].messages == 1
    assert (rows[("invoices", "parsers")].messages, rows[("invoices", "parsers")].dead) == (1, 1)
    assert [letter.headers["dead_from"] for letter in await bus.dead_letters("invoices")] == [invoice.id]
    assert await bus.trim(before=before) == TrimReport(kept=3)  # nothing more to do

    # Dead letters go only when asked for.
    assert await bus.trim(before=before, dead=True) == TrimReport(dead_letters=1, kept=3)
    assert await bus.dead_letters("invoices") == []

    # The bus works on: the pending message is settled, the undelivered one delivered, a new group reads from the
    # oldest message left, and a new message goes through.
    assert await bus.ack(pending, "workers")
    last = await bus.consume("jobs", "workers", "w1")
    assert last is not None and last.id == jobs[3].id
    assert await bus.ack(last, "workers")
    assert [message.id for message in await drain(case, "jobs", "late")] == [jobs[2].id, jobs[3].id]
    after = case.cut_off()
    report = await bus.trim(before=after)
    assert (report.messages, report.handled, report.kept) == (3, 7, 1)  # jobs 2, 3 and the new invoice, settled
    rows = {(row.topic, row.group): row for row in await bus.topics()}
    assert [(row.messages, row.pending, row.lag) for key, row in rows.items() if key[0] == "jobs"] == [(0, 0, 0)] * 3
    newest = await bus.publish("jobs", "after the trim")
    for group in ("audit", "late", "workers"):
        assert [message.id for message in await drain(case, "jobs", group)] == [newest.id]
    [row] = [row for row in await bus.topics() if row.topic == "jobs" and row.group == "workers"]
    assert (row.messages, row.pending, row.lag) == (1, 0, 0)


async def test_trim_keeps_messages_of_a_group_that_has_not_consumed_them_yet(case: BusCase) -> None:
    for n in range(3):
        await case.bus.publish("orders", n)
    assert len(await drain(case, "orders", "billing")) == 3
    first = await case.bus.consume("orders", "shipping", "s1")  # shipping has only been given the first one
    assert first is not None
    assert await case.bus.ack(first, "shipping")
    assert await case.bus.trim(before=case.cut_off()) == TrimReport(messages=1, handled=2, kept=2)
    assert [message.payload for message in await drain(case, "orders", "shipping")] == [1, 2]
    assert [message.payload for message in await drain(case, "orders", "billing")] == []


async def test_trim_removes_settled_messages_behind_a_pending_one(case: BusCase) -> None:
    for n in range(3):
        await case.bus.publish("jobs", n)
    held = await case.bus.consume("jobs", "workers", "slow")
    assert held is not None
    assert [message.payload for message in await drain(case, "jobs", "workers")] == [1, 2]
    assert await case.bus.trim(before=case.cut_off()) == TrimReport(messages=2, handled=2, kept=1)
    [row] = [row for row in await case.bus.topics() if row.topic == "jobs"]
    assert (row.messages, row.pending, row.lag) == (1, 1, 0)
    assert await case.bus.touch(held, "workers")
    assert await case.bus.ack(held, "workers")
    assert await case.bus.consume("jobs", "workers", "slow") is None
    assert await case.bus.trim(before=case.cut_off()) == TrimReport(messages=1, handled=1)
    [row] = [row for row in await case.bus.topics() if row.topic == "jobs"]
    assert (row.messages, row.pending, row.lag) == (0, 0, 0)


async def test_trim_goes_through_a_long_topic_batch_after_batch(case: BusCase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[type(case.bus).__module__], "_TRIM_BATCH", 2, raising=False)  # memory: none
    sent = [await case.bus.publish("jobs", n) for n in range(7)]
    for n in range(7):
        taken = await case.bus.consume("jobs", "workers", "w1")
        assert taken is not None and taken.id == sent[n].id
        if n not in (2, 5):  # 2 and 5 stay pending, between settled ones
            assert await case.bus.ack(taken, "workers")
    assert await case.bus.trim(before=case.cut_off()) == TrimReport(messages=5, handled=5, kept=2)
    case.advance(60.0)
    claimed: list[Message] = []

    async def both_claimed() -> bool:  # on Redis, each as soon as it has been idle long enough
        claimed.extend(await case.bus.claim_stale("jobs", "workers", "w2", idle_s=IDLE_S))
        return len(claimed) == 2

    await eventually(both_claimed)
    assert [message.payload for message in claimed] == [2, 5]
    [row] = [row for row in await case.bus.topics() if row.topic == "jobs"]
    assert (row.messages, row.pending, row.lag) == (2, 2, 0)


async def test_the_heartbeat_of_a_real_clock_starts_once_the_handler_outlasts_a_beat() -> None:
    """Without a test's sleep the first beat is a timer: a handler that outlasts it gets its delivery touched (the
    handler waits for the touch itself, so nothing here waits on time but the timer under test), and a quick
    handler never starts a heartbeat at all."""
    bus = MemoryBus()
    touched = asyncio.Event()
    touches: list[str] = []
    real_touch = bus.touch

    async def touch(message: Message, group: str) -> bool:
        touches.append(message.payload)
        touched.set()
        return await real_touch(message, group)

    bus.touch = touch  # type: ignore[method-assign]

    async def handler(message: Message) -> None:
        if message.payload == "slow":
            await asyncio.wait_for(touched.wait(), timeout=10.0)

    worker = Worker(bus, {"jobs": handler}, group="g", claim_idle_s=0.15)  # a beat every 50 ms
    for payload in ("quick", "slow"):
        await bus.publish("jobs", payload)
        assert await worker.step() == 1
    assert touches and set(touches) == {"slow"}
    assert (await bus.topics())[0].pending == 0  # both settled
    await bus.close()
