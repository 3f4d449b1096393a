"""The rules of ``bus/base.py``, checked against every backend: memory, SQLite and Redis Streams."""

from __future__ import annotations

from typing import Any

from agentkeel.bus import DeadLetter, Message, Worker
from conftest import BusCase, eventually

IDLE_S = 0.05  # what "stale" means once a test has aged the deliveries (Redis: by waiting that long)


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
