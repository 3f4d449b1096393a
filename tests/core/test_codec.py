"""Events to JSON and back: every kind survives the trip unchanged; a foreign event is refused with a sentence."""

from __future__ import annotations

import json

import pytest

from agentkeel import JournalError, ModelResponse, ToolCall, Usage
from agentkeel.core.codec import decode_event, encode_event
from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CallPreviewed,
    CallRejected,
    CallRetryAuthorized,
    CompensationFinished,
    CompensationStarted,
    ContextCompacted,
    Event,
    Intervened,
    ModelResponded,
    ModelRetrying,
    NoteWritten,
    PlannedCall,
    RollbackStarted,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    StepFinished,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)

FAILURE = ToolFailure(
    kind="exception", message="lookup failed with KeyError", exception_type="KeyError", traceback="Traceback ..."
)

EVENTS: list[Event] = [
    ApprovalRequested(
        at=3.0,
        call="2.1",
        tool_call_id="c9",
        name="refund",
        arguments={"order_id": "#1", "amount": 120.5},
        idempotency_key="r1:2.1",
        why="refunds above $100",
    ),
    CallApproved(at=3.1, call="2.1", by="ops@desk", arguments={"order_id": "#1", "amount": 100.0}),
    CallApproved(at=3.1, call="2.2", by="ops@desk"),
    CallRejected(at=3.2, call="2.3", by="ops@desk", reason="not without a receipt ✓"),
    Intervened(at=3.3, rule="repeated_call", message="You called lookup 5 times.", evidence="1.1 … 5.1"),
    Intervened(at=3.4, rule="budget", message="Answer now.", final=True, final_reason="budget_exceeded:cost_usd"),
    ContextCompacted(at=3.5, upto=40, tokens_before=52_000, tokens_after=9_000),
    CallPreviewed(
        at=3.9,
        call="2.1",
        tool_call_id="c9",
        name="refund",
        arguments={"order_id": "#1", "amount": 150.0},
        content="[dry run] refund was not run.",
        preview={"would_refund": 150.0},
        has_preview=True,
    ),
    RunStarted(
        at=1.0,
        run_id="r3",
        agent="a",
        task="t",
        model="scripted",
        mode="apply",
        plan=(PlannedCall(call="2.1", name="refund", arguments={"amount": 1.5}, preview={"x": 1}, has_preview=True),),
        plan_of="r2",
        approved_by="ops",
    ),
    StepFinished(
        at=4.5,
        key="docs[3].summary",
        result={"text": "ok", "n": [1, 2.5]},
        model_calls=2,
        input_tokens=40,
        output_tokens=9,
        cost_usd=0.001,
        latency_s=0.2,
    ),
    RollbackStarted(at=4.0, by="ops", why="on failure: budget_exceeded:cost_usd", calls=("3.1", "2.1")),
    CompensationStarted(at=4.1, call="3.1", attempt=2),
    CompensationFinished(at=4.2, call="3.1", content='{"voided": true}', result={"voided": True}),
    CompensationFinished(
        at=4.3,
        call="2.1",
        content="no undo",
        error=ToolFailure(kind="no_compensation", message="no undo"),
        resolved_by="ops",
    ),
    RunStarted(
        at=1.5,
        run_id="r1",
        agent="support",
        task="Where is order #1234? ünïcödé ✓",
        model="openai:gpt-4.1-mini",
        instructions="Be brief.",
        max_steps=9,
        timeout_s=30.0,
        tools=("lookup", "refund"),
        agent_ref="app.py:agent",
        parent_id="p0",
    ),
    RunStarted(at=1.0, run_id="r2", agent="a", task="t", model="scripted"),
    ModelResponded(
        at=2.0,
        step=1,
        response=ModelResponse(
            text="Let me check.",
            tool_calls=(
                ToolCall(id="c1", name="lookup", arguments={"order_id": "#1234", "nested": {"a": [1, 2.5, None]}}),
                ToolCall(id="c2", name="lookup", arguments='{"order_id": "#12'),
                ToolCall(id="c3", name="lookup", arguments=""),
            ),
            stop_reason="tool_use",
            usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=50, cache_write_tokens=10),
            model="gpt-4.1-mini-2025",
        ),
        latency_s=0.42,
        cost_usd=0.0012,
    ),
    ToolCallStarted(
        at=2.1,
        call="1.1",
        tool_call_id="c1",
        name="lookup",
        arguments={"order_id": "#1234", "n": 3, "flag": True, "items": ["x"]},
        idempotency_key="r1:1.1",
    ),
    ModelRetrying(at=2.15, step=2, attempt=1, error_kind="rate_limit", message="slow down", delay_s=1.5),
    ToolCallRetrying(at=2.2, call="1.1", attempt=1, error=FAILURE, delay_s=0.2),
    ToolCallFinished(
        at=2.3,
        call="1.1",
        tool_call_id="c1",
        name="lookup",
        content='{"status":"shipped"}',
        result={"status": "shipped", "items": [1, 2]},
        attempts=2,
        latency_s=0.3,
    ),
    ToolCallFinished(
        at=2.4,
        call="1.2",
        tool_call_id="c2",
        name="lookup",
        content="bad",
        error=FAILURE,
        attempts=0,
        resolved_by="ops",
    ),
    CallRetryAuthorized(at=3.0, call="1.3", by="ops"),
    ToolCallResumed(at=3.05, call="1.3", attempt=2, why="authorized"),
    NoteWritten(at=3.1, key="customer", value="ada"),
    RunPaused(at=3.2, reason="needs_attention", detail="decide", calls=("1.3", "1.4")),
    RunResumed(at=4.0, owner="host:123:ab"),
    RunEnded(at=5.0, status="failed", reason="timeout", output="partial", error="too long", by="ops"),
]


def test_every_event_kind_is_covered() -> None:
    assert {type(e).__name__ for e in EVENTS} == {t.__name__ for t in Event.__args__}  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_every_event_kind_round_trips(event: Event) -> None:
    data = encode_event(event)
    assert isinstance(data, bytes)
    assert json.loads(data)["kind"] == event.kind
    assert decode_event(data) == event
    assert decode_event(data.decode()) == event


def test_tool_call_arguments_keep_their_form_dict_or_raw_text() -> None:
    event = next(e for e in EVENTS if isinstance(e, ModelResponded))
    decoded = decode_event(encode_event(event))
    assert isinstance(decoded, ModelResponded)
    dict_args, raw_args, empty_args = (c.arguments for c in decoded.response.tool_calls)
    assert dict_args == {"order_id": "#1234", "nested": {"a": [1, 2.5, None]}}
    assert raw_args == '{"order_id": "#12'
    assert empty_args == ""
    assert isinstance(decoded.response.tool_calls, tuple)


def test_an_event_of_an_unknown_kind_is_refused_with_a_sentence() -> None:
    data = json.dumps({"kind": "budget_charged", "at": 1.0, "amount_usd": 0.5})
    with pytest.raises(JournalError) as raised:
        decode_event(data, run_id="r1", seq=7)
    message = str(raised.value)
    assert message.startswith("run r1, event 7: ")
    assert "cannot read" in message and "newer version" in message


def test_an_event_with_a_missing_field_is_refused() -> None:
    with pytest.raises(JournalError, match="cannot read"):
        decode_event(json.dumps({"kind": "note_written", "at": 1.0, "key": "k"}))


def test_bytes_that_are_not_json_are_refused() -> None:
    with pytest.raises(JournalError, match="cannot read"):
        decode_event(b"\x00not json")
