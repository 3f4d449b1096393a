"""Loop detection through the engine: a spiral gets one message, then the run fails ``loop_detected`` with the
evidence; a healthy poller is never disturbed; and an intervention survives a crash, so a resumed run fails on
the next trip instead of being told a second time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    Store,
    UserMessage,
    call,
    calls,
    reply,
    tool,
)
from agentkeel.core.events import Event, Intervened, RunEnded
from agentkeel.core.loops import LoopPolicy
from agentkeel.stores.base import DEFAULT_LEASE_S

MakeAgent = Callable[..., Agent]


def turn_of(request: ModelRequest) -> int:
    """The turn a request asks for: one more than the model turns it holds."""
    return 1 + sum(message.kind == "assistant" for message in request.messages)


def spiral(request: ModelRequest) -> ModelResponse:
    """A model that looks the same order up forever, whatever it is told."""
    return calls(("lookup", {"order_id": "#1"}), text=f"Looking #1 up again (turn {turn_of(request)}).")


class Orders:
    """A lookup that never finds the order, and a refund that insists on a number."""

    def __init__(self) -> None:
        self.lookups = 0
        self.refunds: list[float] = []

    def tools(self) -> list[Any]:
        @tool
        def lookup(order_id: str) -> str:
            """Look an order up."""
            self.lookups += 1
            return f"Order {order_id} not found."

        @tool(effect="write", idempotent=True)
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.refunds.append(amount)
            return f"Refunded {amount} on {order_id}."

        return [lookup, refund]


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the engine catches it)."""


class CrashingModel:
    """Plays ``script``, but the process dies when it is asked for turn ``crash_on``."""

    def __init__(self, script: Callable[[ModelRequest], ModelResponse], crash_on: int) -> None:
        self._inner = ScriptedModel(script)
        self.name = "scripted"
        self._crash_on = crash_on

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if turn_of(request) == self._crash_on:
            raise Crash()
        return await self._inner.respond(request)


def interventions(events: list[Event]) -> list[Intervened]:
    return [event for event in events if isinstance(event, Intervened)]


# -- a spiral -------------------------------------------------------------------------------------------------


async def test_a_spiral_is_told_once_then_the_run_fails_with_the_evidence(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(spiral)
    orders = Orders()
    result = await make_agent(model, orders.tools(), max_steps=25).run("Where is order #1?")
    assert (result.status, result.reason) == ("failed", "loop_detected")
    assert model.calls == 10 and orders.lookups == 10  # 5 calls, the message, 5 more calls, the end
    assert result.output == "Looking #1 up again (turn 10)."  # the partial answer: what the agent said last
    assert result.detail.startswith("loop detected (repeated_call): lookup(")
    assert '"order_id": "#1"' in result.detail and "(calls 6.1, 7.1, 8.1, 9.1, 10.1)" in result.detail
    assert "Order #1 not found." in result.detail and "told 1 time(s) before" in result.detail

    events = await store.load(result.run_id)
    told = interventions(events)
    assert len(told) == 1
    assert told[0].rule == "repeated_call" and not told[0].final
    assert "(calls 1.1, 2.1, 3.1, 4.1, 5.1)" in told[0].evidence
    assert "same arguments 5 times" in told[0].message and "change your approach" in told[0].message
    # the message reached the model, as a user message right before its sixth turn
    assert all(not isinstance(m, UserMessage) for m in list(model.requests[4].messages)[1:])
    sixth = model.requests[5].messages
    assert sixth[-1] == UserMessage(text=told[0].message)
    assert [m.kind for m in list(sixth)[-3:]] == ["assistant", "tool_result", "user"]
    ended = events[-1]
    assert isinstance(ended, RunEnded) and ended.error == result.detail
    state = await make_agent(model).state(result.run_id)
    assert state.interventions == {"repeated_call": 1}


async def test_the_model_that_listens_to_the_message_completes(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    def listening(request: ModelRequest) -> ModelResponse:
        if isinstance(request.messages[-1], UserMessage) and turn_of(request) > 1:
            return reply("Order #1 does not exist; please check the number.")
        return spiral(request)

    model = recording_model(listening)
    result = await make_agent(model, Orders().tools()).run("Where is order #1?")
    assert (result.status, result.output) == ("completed", "Order #1 does not exist; please check the number.")
    assert model.calls == 6
    assert [e.rule for e in interventions(await store.load(result.run_id))] == ["repeated_call"]


async def test_without_loop_detection_the_spiral_runs_to_max_steps(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(spiral)
    orders = Orders()
    result = await make_agent(model, orders.tools(), max_steps=12, loops=None).run("Where is order #1?")
    assert (result.status, result.reason) == ("failed", "max_steps_exceeded")
    assert model.calls == 12 and orders.lookups == 12
    assert not interventions(await store.load(result.run_id))
    assert not any(isinstance(m, UserMessage) for m in list(model.requests[-1].messages)[1:])


async def test_with_no_interventions_allowed_the_first_trip_fails_the_run(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(spiral)
    result = await make_agent(model, Orders().tools(), loops=LoopPolicy(interventions=0)).run("Where is order #1?")
    assert (result.status, result.reason, model.calls) == ("failed", "loop_detected", 5)
    assert "(calls 1.1, 2.1, 3.1, 4.1, 5.1)" in result.detail and "told" not in result.detail
    assert not interventions(await store.load(result.run_id))


async def test_a_custom_message_and_threshold_reach_the_model(make_agent: MakeAgent, recording_model: Any) -> None:
    model = recording_model(spiral)
    policy = LoopPolicy(repeated_call=3, message="[{rule}] You are going round: {summary}")
    result = await make_agent(model, Orders().tools(), loops=policy).run("Where is order #1?")
    assert (result.reason, model.calls) == ("loop_detected", 6)
    told = model.requests[3].messages[-1]
    assert isinstance(told, UserMessage)
    assert told.text == (
        "[repeated_call] You are going round: You have called lookup with the same arguments 3 times and got the "
        "same result each time."
    )


async def test_a_cycle_too_long_for_repeated_call_is_caught_as_no_progress(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    # Six orders looked up in turn, forever: no call repeats five times in ten, but nothing new comes after the
    # first round.
    model = recording_model(lambda request: call("lookup", order_id=f"#{turn_of(request) % 6}"))
    result = await make_agent(model, Orders().tools(), max_steps=40).run("Find an order")
    told = interventions(await store.load(result.run_id))
    assert told and told[0].rule == "no_progress"
    assert "steps 7 to 14 (8 steps, 8 calls)" in told[0].evidence
    assert model.requests[14].messages[-1] == UserMessage(text=told[0].message)
    assert (result.status, result.reason) == ("failed", "loop_detected")


# -- healthy agents -------------------------------------------------------------------------------------------


async def test_a_healthy_poller_completes_without_a_single_message(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    statuses = iter(["pending", "pending", "pending", "pending", "running 40%", "running 80%", "done"])

    @tool
    def job_status(job_id: str) -> str:
        """The status of an export job."""
        return next(statuses)

    script = [call("job_status", job_id="exp-7")] * 7 + [reply("The export is done.")]
    model = recording_model(script)
    result = await make_agent(model, [job_status]).run("Wait for export exp-7")
    assert (result.status, result.output, model.calls) == ("completed", "The export is done.", 8)
    assert not interventions(await store.load(result.run_id))
    assert all(not isinstance(m, UserMessage) for r in model.requests for m in list(r.messages)[1:])
    assert (await make_agent(model).state(result.run_id)).interventions == {}


async def test_a_pager_with_changing_arguments_is_never_disturbed(make_agent: MakeAgent, store: Store) -> None:
    @tool
    def page(number: int) -> str:
        """One page of results."""
        return "no more results" if number > 12 else f"results {10 * number}-{10 * number + 9}"

    script = [call("page", number=n) for n in range(1, 16)] + [reply("Read every page.")]
    result = await make_agent(script, [page], max_steps=20).run("Read all the pages")
    assert (result.status, result.output) == ("completed", "Read every page.")
    assert not interventions(await store.load(result.run_id))


# -- repeated errors --------------------------------------------------------------------------------------------


def invalid_refund(request: ModelRequest) -> ModelResponse:
    return call("refund", order_id="#1", amount="the full amount")


async def test_the_same_validation_error_three_times_trips_repeated_error(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    def fixes_it_when_told(request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        if isinstance(last, UserMessage) and turn_of(request) > 1:
            return call("refund", order_id="#1", amount=25.0)
        if last.kind == "tool_result" and last.content.startswith("Refunded"):  # type: ignore[union-attr]
            return reply("Refunded $25.")
        return invalid_refund(request)

    model = recording_model(fixes_it_when_told)
    orders = Orders()
    result = await make_agent(model, orders.tools()).run("Refund order #1 in full")
    assert (result.status, result.output) == ("completed", "Refunded $25.")
    assert orders.refunds == [25.0]
    told = interventions(await store.load(result.run_id))
    assert [t.rule for t in told] == ["repeated_error"]
    assert "refund failed 3 times" in told[0].evidence and "(calls 1.1, 2.1, 3.1)" in told[0].evidence
    assert 'amount was "the full amount"' in told[0].evidence
    assert "refund has failed 3 times with the same error" in told[0].message
    assert model.requests[3].messages[-1] == UserMessage(text=told[0].message)


async def test_a_model_that_keeps_sending_the_invalid_call_ends_loop_detected(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(invalid_refund)
    orders = Orders()
    result = await make_agent(model, orders.tools(), max_steps=25).run("Refund order #1 in full")
    assert (result.status, result.reason) == ("failed", "loop_detected")
    assert orders.refunds == [] and model.calls < 10
    assert result.detail.startswith("loop detected (repeated_error): refund failed 3 times")
    assert interventions(await store.load(result.run_id))[0].rule == "repeated_error"


# -- interventions survive a crash ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "crash_on", [4, 6, 8, 10], ids=["before-the-message", "right-after-the-message", "mid-way", "before-the-trip"]
)
async def test_an_intervention_survives_a_crash_and_the_next_trip_fails_the_run(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any, crash_on: int
) -> None:
    straight = await make_agent(spiral, Orders().tools()).run("Where is order #1?", run_id="straight")
    assert (straight.status, straight.reason, straight.steps) == ("failed", "loop_detected", 10)

    crashing = make_agent(CrashingModel(spiral, crash_on), Orders().tools())
    with pytest.raises(Crash):
        await crashing.run("Where is order #1?", run_id="crashed")
    clock.advance(DEFAULT_LEASE_S + 1)  # the dead process's lease runs out
    before = await crashing.state("crashed")
    told_before = {"repeated_call": 1} if crash_on > 5 else {}
    assert before.interventions == told_before and before.steps_completed == crash_on - 1

    model = recording_model(spiral)
    orders = Orders()
    resumed = await make_agent(model, orders.tools()).resume("crashed")  # a new process, a new agent
    assert (resumed.status, resumed.reason, resumed.steps) == ("failed", "loop_detected", 10)
    assert model.calls == orders.lookups == 10 - crash_on + 1  # the turns left, not one more
    assert resumed.detail == straight.detail and resumed.output == straight.output
    events = await store.load("crashed")
    assert len(interventions(events)) == 1  # no second message after the resume
    message = UserMessage(text=interventions(events)[0].message)
    for request in model.requests:  # besides the task, at most the one message, however many turns came after it
        assert [m for m in list(request.messages)[1:] if isinstance(m, UserMessage)] in ([], [message])
    assert message in model.requests[-1].messages
