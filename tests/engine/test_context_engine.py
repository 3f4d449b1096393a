"""Bounded context through the engine: past the threshold, older tool results reach the model as digests while the
task, the notes and the recent steps stay verbatim; the journal keeps every result whole; the prompt stays small
with the same answer; and a resumed run sends exactly the prompt an uninterrupted one would."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    Store,
    ToolResultMessage,
    UserMessage,
    call,
    reply,
    tool,
)
from agentkeel.core.compaction import NOTES_HEADER, ContextPolicy
from agentkeel.core.events import ContextCompacted, Event, ModelResponded, NoteWritten, ToolCallFinished
from agentkeel.core.messages import Message
from agentkeel.stores.base import DEFAULT_LEASE_S
from agentkeel.tools.notes import notes_tool

MakeAgent = Callable[..., Agent]

POLICY = ContextPolicy(max_tokens=2_000, keep_recent_steps=2)
TASK = "Count the widgets listed on pages 1 to 12 of the inventory, and say how many there are in all. " * 3
ANSWER = "There are 42 widgets."
FIRST_NOTE = "page 1 lists 42 widgets"
SECOND_NOTE = "pages 1-6 list 42 widgets"


def page_text(n: int) -> str:
    """About 2,200 characters (550 tokens): four pages pass the 2,000-token threshold."""
    return f"Page {n}. " + " ".join(f"row{n}-{i} widget count {i * n}" for i in range(90))


@tool
def fetch(page: int) -> str:
    """Fetch one page of the inventory."""
    return page_text(page)


SCRIPT: list[ModelResponse] = [
    call("fetch", page=1),
    call("write_note", key="total", value=FIRST_NOTE),  # turn 2
    *(call("fetch", page=n) for n in range(2, 7)),
    call("write_note", key="total", value=SECOND_NOTE),  # turn 8: replaces the first note
    *(call("fetch", page=n) for n in range(7, 13)),
    reply(ANSWER),
]
TURNS = len(SCRIPT)


def tools() -> list[Any]:
    return [fetch, notes_tool()]


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the engine catches it)."""


class CrashingModel:
    """Plays the script, but the process dies when it is asked for turn ``crash_on``."""

    def __init__(self, crash_on: int) -> None:
        self._inner = ScriptedModel(list(SCRIPT))
        self.name = "scripted"
        self._crash_on = crash_on

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if 1 + sum(m.kind == "assistant" for m in request.messages) == self._crash_on:
            raise Crash()
        return await self._inner.respond(request)


def compactions(events: list[Event]) -> list[ContextCompacted]:
    return [event for event in events if isinstance(event, ContextCompacted)]


def full_results(events: list[Event]) -> dict[str, str]:
    """Each call's result as the journal holds it, by the provider's call id."""
    return {event.tool_call_id: event.content for event in events if isinstance(event, ToolCallFinished)}


def results(messages: Any) -> list[ToolResultMessage]:
    return [m for m in messages if isinstance(m, ToolResultMessage)]


def last_steps_results(messages: list[Message], steps: int) -> list[ToolResultMessage]:
    """The tool results of the last ``steps`` steps of a request."""
    starts = [i for i, m in enumerate(messages) if m.kind == "assistant"]
    return results(messages[starts[-steps] :]) if len(starts) >= steps else results(messages)


async def run_script(make_agent: MakeAgent, recording_model: Any, **settings: Any) -> tuple[Any, Any]:
    model = recording_model(list(SCRIPT))
    result = await make_agent(model, tools(), **settings).run(TASK)
    assert (result.status, result.output, result.steps) == ("completed", ANSWER, TURNS)
    return model, result


# -- what the model sees --------------------------------------------------------------------------------------


async def test_past_the_threshold_older_results_reach_the_model_as_digests(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model, result = await run_script(make_agent, recording_model, context=POLICY)
    events = await store.load(result.run_id)
    compacted = compactions(events)
    assert len(compacted) >= 2  # it grows again after a compaction, and compacts again
    assert [c.upto for c in compacted] == sorted({c.upto for c in compacted})  # the boundary only moves forward
    for c in compacted:
        assert c.tokens_before > POLICY.max_tokens and c.tokens_after < c.tokens_before

    whole = full_results(events)
    digested_in = []
    for turn, request in enumerate(model.requests, start=1):
        messages = list(request.messages)
        assert messages[0] == UserMessage(text=TASK)  # the task, verbatim
        assert sum(m.kind == "assistant" for m in messages) == turn - 1  # no turn is ever dropped
        digests = 0
        for message in results(messages):
            full = whole[message.call_id]
            if message.content != full:
                assert message.content.startswith("[compacted: " + full[:20])
                assert message.content.endswith(f"({len(full):,} chars in the journal)]")
                assert len(message.content) < len(full) // 5
                digests += 1
        for message in last_steps_results(messages, POLICY.keep_recent_steps):
            assert message.content == whole[message.call_id]  # the recent steps, verbatim
        digested_in.append(digests)
    first = next(turn for turn, n in enumerate(digested_in, start=1) if n)
    assert first > 2 and digested_in[: first - 1] == [0] * (first - 1)  # nothing shortened below the threshold
    assert digested_in[-1] >= 8  # by the end, most pages are digests
    assert digested_in == sorted(digested_in)  # a result once digested stays digested


async def test_the_journal_keeps_every_result_whole(make_agent: MakeAgent, recording_model: Any, store: Store) -> None:
    _, result = await run_script(make_agent, recording_model, context=POLICY)
    events = await store.load(result.run_id)
    fetched = [e.content for e in events if isinstance(e, ToolCallFinished) and e.name == "fetch"]
    assert fetched == [page_text(n) for n in range(1, 13)]
    state = await make_agent(list(SCRIPT), tools()).state(result.run_id)
    assert [m.content for m in results(state.messages) if m.name == "fetch"] == fetched
    assert state.compacted_upto == compactions(events)[-1].upto


async def test_compaction_sends_far_fewer_tokens_for_the_same_answer(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    whole_model, whole = await run_script(make_agent, recording_model, context=None)
    small_model, small = await run_script(make_agent, recording_model, context=POLICY)
    assert small.output == whole.output == ANSWER and small.steps == whole.steps
    assert small.usage.input_tokens < 0.6 * whole.usage.input_tokens
    assert max(r.usage.input_tokens for r in responses(await store.load(small.run_id))) < 2 * POLICY.max_tokens
    assert not compactions(await store.load(whole.run_id))
    assert not any(m.content.startswith("[compacted:") for r in whole_model.requests for m in results(r.messages))
    assert any(m.content.startswith("[compacted:") for m in results(small_model.requests[-1].messages))


def responses(events: list[Event]) -> list[Any]:
    return [event.response for event in events if isinstance(event, ModelResponded)]


async def test_below_the_threshold_the_model_gets_the_whole_history(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    whole_model, _ = await run_script(make_agent, recording_model, context=None)
    roomy_model, roomy = await run_script(make_agent, recording_model, context=ContextPolicy(max_tokens=100_000))
    assert not compactions(await store.load(roomy.run_id))
    for roomy_request, whole_request in zip(roomy_model.requests, whole_model.requests, strict=True):
        sent = list(roomy_request.messages)
        if any(isinstance(m, UserMessage) and NOTES_HEADER in m.text for m in sent):
            sent = sent[:-1]  # the notes come last; the rest is the history, untouched
        assert sent == list(whole_request.messages)


# -- notes ------------------------------------------------------------------------------------------------------


async def test_notes_reach_the_model_verbatim_at_every_later_turn(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model, result = await run_script(make_agent, recording_model, context=POLICY)
    events = await store.load(result.run_id)
    notes = [e for e in events if isinstance(e, NoteWritten)]
    assert [(n.key, n.value) for n in notes] == [("total", FIRST_NOTE), ("total", SECOND_NOTE)]
    kinds = [e.kind for e in events]
    for index, kind in enumerate(kinds):  # each note is journaled with its call's outcome
        if kind == "note_written":
            assert kinds[index + 1] == "tool_call_finished"

    for turn, request in enumerate(model.requests, start=1):
        last = request.messages[-1]
        if turn <= 2:  # before the first note: no notes message
            assert not any(isinstance(m, UserMessage) and NOTES_HEADER in m.text for m in request.messages)
            continue
        value = FIRST_NOTE if turn <= 8 else SECOND_NOTE
        assert isinstance(last, UserMessage)
        assert last.text == f"{NOTES_HEADER}\n- total: {value}"  # verbatim, replaced, and last in the request
    assert (await make_agent(list(SCRIPT), tools()).state(result.run_id)).notes == {"total": SECOND_NOTE}


async def test_a_failed_note_is_not_kept(make_agent: MakeAgent, recording_model: Any, store: Store) -> None:
    model = recording_model([call("write_note", key=" ", value="lost"), reply("ok")])
    result = await make_agent(model, tools(), context=POLICY).run(TASK)
    assert result.status == "completed"
    assert not any(isinstance(e, NoteWritten) for e in await store.load(result.run_id))
    assert all(NOTES_HEADER not in getattr(m, "text", "") for m in model.requests[-1].messages)


# -- resume -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "crash_on", [3, 7, 10, TURNS], ids=["before-any-compaction", "first-compaction", "between-compactions", "last-turn"]
)
async def test_a_resumed_run_sends_the_prompt_an_uninterrupted_one_would(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any, crash_on: int
) -> None:
    straight_model, straight = await run_script(make_agent, recording_model, context=POLICY)
    journal = await store.load(straight.run_id)
    compacted_before = {
        after.step
        for event, after in itertools.pairwise(journal)
        if isinstance(event, ContextCompacted) and isinstance(after, ModelResponded)
    }
    assert 7 in compacted_before and not {3, 10} & compacted_before  # the crash points fall where they should

    crashing = make_agent(CrashingModel(crash_on), tools(), context=POLICY)
    with pytest.raises(Crash):
        await crashing.run(TASK, run_id="crashed")
    clock.advance(DEFAULT_LEASE_S + 1)  # the dead process's lease runs out
    kinds = [e.kind for e in await store.load("crashed")]
    # where a compaction came right before the call the crash ate, it was journaled: the resume must not redo it
    assert (kinds[-1] == "context_compacted") is (crash_on in compacted_before)

    model = recording_model(list(SCRIPT))
    resumed = await make_agent(model, tools(), context=POLICY).resume("crashed")  # a new process, a new agent
    assert (resumed.status, resumed.output, resumed.usage) == (straight.status, straight.output, straight.usage)
    expected = straight_model.requests[crash_on - 1 :]
    assert len(model.requests) == len(expected) == TURNS - crash_on + 1
    for got, want in zip(model.requests, expected, strict=True):
        assert list(got.messages) == list(want.messages)
        assert (got.instructions, got.tools) == (want.instructions, want.tools)
    a, b = await store.load(straight.run_id), await store.load("crashed")
    assert [(c.upto, c.tokens_before, c.tokens_after) for c in compactions(a)] == [
        (c.upto, c.tokens_before, c.tokens_after) for c in compactions(b)
    ]
