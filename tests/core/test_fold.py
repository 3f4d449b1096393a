"""The run state is a fold over the journal: each event kind moves it, and only the allowed status moves exist."""

from __future__ import annotations

import pytest

from agentkeel import JournalError, ModelResponse, ToolCall, Usage
from agentkeel.core.events import (
    CallRetryAuthorized,
    Event,
    ModelResponded,
    NoteWritten,
    RollbackStarted,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.state import TRANSITIONS, RunState, replay


def started(at: float = 100.0, **changes: object) -> RunStarted:
    settings: dict[str, object] = {
        "at": at,
        "run_id": "r1",
        "agent": "support",
        "task": "Where is order #1234?",
        "model": "scripted",
        "instructions": "Be brief.",
        "max_steps": 7,
        "timeout_s": 60.0,
        "tools": ("lookup", "refund"),
        "agent_ref": "app.py:agent",
        "parent_id": "p0",
    }
    settings.update(changes)
    return RunStarted(**settings)  # type: ignore[arg-type]


def responded(step: int, at: float, *calls: ToolCall, text: str = "", usage: Usage | None = None) -> ModelResponded:
    response = ModelResponse(
        text=text,
        tool_calls=calls,
        stop_reason="tool_use" if calls else "end_turn",
        usage=usage or Usage(input_tokens=10, output_tokens=5),
    )
    return ModelResponded(at=at, step=step, response=response, cost_usd=0.25)


def call_started(call: str, at: float, name: str = "lookup") -> ToolCallStarted:
    return ToolCallStarted(
        at=at,
        call=call,
        tool_call_id=f"id-{call}",
        name=name,
        arguments={"order_id": "#1234"},
        idempotency_key=f"r1:{call}",
    )


def call_finished(call: str, at: float, *, error: ToolFailure | None = None, name: str = "lookup") -> ToolCallFinished:
    return ToolCallFinished(
        at=at,
        call=call,
        tool_call_id=f"id-{call}",
        name=name,
        content="boom" if error else '{"status":"shipped"}',
        result=None if error else {"status": "shipped"},
        error=error,
    )


def at_status(status: str) -> RunState:
    """A state with the given status, reached through the journal."""
    events: list[Event] = [started()]
    if status == "paused":
        events.append(RunPaused(at=101.0, reason="step_mode"))
    elif status in ("completed", "failed", "cancelled"):
        events.append(RunEnded(at=101.0, status=status, reason="" if status == "completed" else "x"))  # type: ignore[arg-type]
    return replay(events)


def test_run_started_sets_the_task_and_the_configuration() -> None:
    state = replay([started()])
    assert (state.run_id, state.agent, state.task, state.model) == (
        "r1",
        "support",
        "Where is order #1234?",
        "scripted",
    )
    assert state.instructions == "Be brief."
    assert (state.max_steps, state.timeout_s, state.tools) == (7, 60.0, ("lookup", "refund"))
    assert (state.agent_ref, state.parent_id) == ("app.py:agent", "p0")
    assert state.status == "running"
    assert state.steps_completed == 0
    assert state.last_seq == 1
    assert state.started_at == state.updated_at == 100.0
    assert [(m.kind, m.text) for m in state.messages] == [("user", "Where is order #1234?")]  # type: ignore[union-attr]


def test_a_journal_must_begin_with_run_started() -> None:
    with pytest.raises(JournalError, match="begin with run_started"):
        replay([])
    with pytest.raises(JournalError, match="begin with run_started"):
        replay([NoteWritten(at=1.0, key="k", value="v")])


def test_a_second_run_started_is_refused() -> None:
    with pytest.raises(JournalError, match="second run_started"):
        replay([started(), started(at=101.0)])


def test_model_responded_counts_the_step_usage_cost_and_adds_the_assistant_message() -> None:
    lookup = ToolCall(id="c1", name="lookup", arguments={"order_id": "#1234"})
    state = replay(
        [
            started(),
            responded(1, 101.0, lookup, text="Let me check."),
            responded(2, 102.0, text="Shipped.", usage=Usage(input_tokens=1, output_tokens=2, cache_read_tokens=1)),
        ]
    )
    assert state.steps_completed == 2
    assert state.model_calls == 2
    assert state.usage == Usage(input_tokens=11, output_tokens=7, cache_read_tokens=1)
    assert state.cost_usd == pytest.approx(0.5)
    assert state.messages[1].kind == "assistant"
    assert state.messages[1].tool_calls == (lookup,)  # type: ignore[union-attr]
    assert state.last_model_text == "Shipped."
    assert state.last_seq == 3


def test_tool_call_started_records_an_open_call() -> None:
    state = replay([started(), responded(1, 101.0), call_started("1.1", 101.0)])
    assert state.tool_calls == 1
    record = state.calls["1.1"]
    assert (record.status, record.name, record.idempotency_key) == ("started", "lookup", "r1:1.1")
    assert record.arguments == {"order_id": "#1234"}
    assert [c.call for c in state.in_flight] == ["1.1"]


def test_tool_call_finished_closes_the_call_and_adds_the_result_message() -> None:
    state = replay([started(), responded(1, 101.0), call_started("1.1", 101.0), call_finished("1.1", 102.0)])
    record = state.calls["1.1"]
    assert record.status == "finished"
    assert record.finished is not None and record.finished.result == {"status": "shipped"}
    assert state.in_flight == []
    assert state.tool_errors == 0
    last = state.messages[-1]
    assert last.kind == "tool_result"
    assert (last.call_id, last.name, last.content, last.is_error) == ("id-1.1", "lookup", '{"status":"shipped"}', False)


def test_a_call_rejected_before_it_started_counts_as_a_call_and_an_error() -> None:
    failure = ToolFailure(kind="unknown_tool", message="There is no tool named 'nope'.")
    state = replay([started(), responded(1, 101.0), call_finished("1.1", 101.0, error=failure, name="nope")])
    assert state.tool_calls == 1
    assert state.tool_errors == 1
    assert "1.1" not in state.calls
    assert state.messages[-1].is_error is True  # type: ignore[union-attr]


def test_a_call_that_finishes_twice_is_a_corrupt_journal() -> None:
    events: list[Event] = [started(), responded(1, 101.0), call_started("1.1", 101.0), call_finished("1.1", 102.0)]
    with pytest.raises(JournalError, match="finished twice"):
        replay([*events, call_finished("1.1", 103.0)])


def test_tool_call_retrying_counts_failed_attempts() -> None:
    failure = ToolFailure(kind="exception", message="flaky", exception_type="ConnectionError")
    state = replay(
        [
            started(),
            responded(1, 101.0),
            call_started("1.1", 101.0),
            ToolCallRetrying(at=101.5, call="1.1", attempt=1, error=failure, delay_s=0.2),
            ToolCallRetrying(at=101.8, call="1.1", attempt=2, error=failure, delay_s=0.4),
        ]
    )
    assert state.calls["1.1"].attempts == 2
    assert state.calls["1.1"].status == "started"


def test_a_retry_of_a_call_that_never_started_is_refused() -> None:
    failure = ToolFailure(kind="exception", message="flaky")
    with pytest.raises(JournalError, match="never started"):
        replay([started(), ToolCallRetrying(at=101.0, call="9.9", attempt=1, error=failure, delay_s=0.1)])


def test_note_written_keeps_the_last_value_of_each_key() -> None:
    state = replay(
        [
            started(),
            NoteWritten(at=101.0, key="customer", value="ada"),
            NoteWritten(at=102.0, key="customer", value="grace"),
            NoteWritten(at=103.0, key="order", value="#1234"),
        ]
    )
    assert state.notes == {"customer": "grace", "order": "#1234"}


def test_run_paused_for_attention_lists_the_calls_and_a_decision_clears_them() -> None:
    events: list[Event] = [
        started(),
        responded(1, 101.0),
        call_started("1.1", 101.0, name="refund"),
        call_started("1.2", 101.0, name="refund"),
        RunPaused(at=102.0, reason="needs_attention", detail="check the refunds", calls=("1.1", "1.2")),
    ]
    state = replay(events)
    assert (state.status, state.reason, state.detail) == ("paused", "needs_attention", "check the refunds")
    assert state.attention == ("1.1", "1.2")

    state.apply(CallRetryAuthorized(at=103.0, call="1.1", by="ops"))
    assert state.calls["1.1"].retry_authorized is True
    assert state.attention == ("1.2",)

    state.apply(call_finished("1.2", 104.0, name="refund"))
    assert state.attention == ()
    assert state.status == "paused"


def test_a_paused_run_that_ends_waits_for_no_decision() -> None:
    state = replay(
        [
            started(),
            responded(1, 101.0),
            call_started("1.1", 101.0, name="refund"),
            RunPaused(at=102.0, reason="needs_attention", calls=("1.1",)),
            RunEnded(at=103.0, status="cancelled", reason="cancelled", by="ops"),
        ]
    )
    assert (state.status, state.attention) == ("cancelled", ())


def test_a_retry_authorised_for_a_call_that_is_not_interrupted_is_refused() -> None:
    events: list[Event] = [started(), responded(1, 101.0), call_started("1.1", 101.0), call_finished("1.1", 102.0)]
    with pytest.raises(JournalError, match="not interrupted"):
        replay([*events, CallRetryAuthorized(at=103.0, call="1.1", by="ops")])
    with pytest.raises(JournalError, match="not interrupted"):
        replay([started(), CallRetryAuthorized(at=103.0, call="7.1", by="ops")])


def test_tool_call_resumed_starts_a_new_attempt_and_uses_up_a_retry_authorisation() -> None:
    state = replay(
        [
            started(),
            responded(1, 101.0),
            call_started("1.1", 101.0, name="refund"),
            RunPaused(at=102.0, reason="needs_attention", calls=("1.1",)),
            CallRetryAuthorized(at=103.0, call="1.1", by="ops"),
            RunResumed(at=104.0, owner="host:2"),
            ToolCallResumed(at=104.0, call="1.1", attempt=1, why="authorized"),
        ]
    )
    record = state.calls["1.1"]
    assert (record.attempts, record.retry_authorized, record.status) == (1, False, "started")
    assert [c.call for c in state.in_flight] == ["1.1"]  # if this attempt dies too, the call is interrupted again


def test_a_resumed_call_must_be_interrupted() -> None:
    events: list[Event] = [started(), responded(1, 101.0), call_started("1.1", 101.0), call_finished("1.1", 102.0)]
    with pytest.raises(JournalError, match="not interrupted"):
        replay([*events, ToolCallResumed(at=103.0, call="1.1", attempt=2, why="read")])


def test_run_resumed_sets_the_run_running_again() -> None:
    state = replay([started(), RunPaused(at=101.0, reason="step_mode"), RunResumed(at=102.0, owner="host:1")])
    assert (state.status, state.reason, state.detail) == ("running", "", "")


@pytest.mark.parametrize(
    ("status", "reason"), [("completed", ""), ("failed", "max_steps_exceeded"), ("cancelled", "cancelled")]
)
def test_run_ended_sets_the_status_reason_output_and_error(status: str, reason: str) -> None:
    state = replay([started(), RunEnded(at=101.0, status=status, reason=reason, output="out", error="why")])  # type: ignore[arg-type]
    assert (state.status, state.reason, state.output, state.detail) == (status, reason, "out", "why")
    assert state.terminal


def test_nothing_is_applied_after_the_run_ended() -> None:
    state = replay([started(), RunEnded(at=101.0, status="completed", output="done")])
    with pytest.raises(JournalError, match="after the run ended"):
        state.apply(NoteWritten(at=102.0, key="k", value="v"))
    assert state.last_seq == 2


def test_replay_is_deterministic_and_equals_applying_one_event_at_a_time() -> None:
    events: list[Event] = [
        started(),
        responded(1, 101.0, ToolCall(id="c1", name="lookup", arguments={"order_id": "#1234"})),
        call_started("1.1", 101.0),
        call_finished("1.1", 102.0),
        NoteWritten(at=102.5, key="k", value="v"),
        responded(2, 103.0, text="Shipped."),
        RunEnded(at=103.0, status="completed", output="Shipped."),
    ]
    stepwise = replay(events[:1])
    for event in events[1:]:
        stepwise.apply(event)
    assert replay(events) == replay(list(events)) == stepwise
    assert stepwise.last_seq == len(events)


# -- the status table ---------------------------------------------------------------------------------------

_TO: dict[str, Event] = {
    "running": RunResumed(at=200.0, owner="host:2"),
    "paused": RunPaused(at=200.0, reason="step_mode"),
    "completed": RunEnded(at=200.0, status="completed"),
    "failed": RunEnded(at=200.0, status="failed", reason="timeout"),
    "cancelled": RunEnded(at=200.0, status="cancelled", reason="cancelled"),
    "rolling_back": RollbackStarted(at=200.0, by="ops", why="keel rollback", calls=()),
    "rolled_back": RunEnded(at=200.0, status="rolled_back", reason="rolled_back"),
}
_ALL = sorted(_TO)


def test_the_table_names_every_status_and_ended_ones_lead_only_to_a_rollback() -> None:
    assert set(TRANSITIONS) == set(_ALL)
    for status in ("completed", "failed", "cancelled"):
        assert TRANSITIONS[status] == {"rolling_back"}
    assert TRANSITIONS["rolled_back"] == frozenset()


@pytest.mark.parametrize(("source", "target"), [(s, t) for s in ("running", "paused") for t in _ALL])
def test_status_transitions_follow_the_table(source: str, target: str) -> None:
    state = at_status(source)
    assert state.status == source
    if target in TRANSITIONS[source]:
        state.apply(_TO[target])
        assert state.status == target
    else:
        with pytest.raises(JournalError, match=f"from {source} to {target}"):
            state.apply(_TO[target])


def test_the_allowed_moves_are_the_documented_ones() -> None:
    assert TRANSITIONS["running"] == {"running", "paused", "completed", "failed", "cancelled", "rolling_back"}
    assert TRANSITIONS["paused"] == {"running", "completed", "failed", "cancelled", "rolling_back"}
    assert TRANSITIONS["rolling_back"] == {"rolling_back", "paused", "rolled_back"}


@pytest.mark.parametrize("source", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("target", [t for t in _ALL if t != "rolling_back"])
def test_an_ended_run_refuses_every_transition_but_a_rollback(source: str, target: str) -> None:
    state = at_status(source)
    with pytest.raises(JournalError):
        state.apply(_TO[target])
    assert state.status == source
    state.apply(_TO["rolling_back"])
    assert state.status == "rolling_back"


# -- active time ----------------------------------------------------------------------------------------------


def test_active_time_sums_the_driven_segments_and_excludes_the_gap_before_a_resume() -> None:
    state = replay(
        [
            started(at=100.0),
            responded(1, 103.0),
            call_started("1.1", 103.0),
            # the driver died here; another process resumed 1000 s later
            RunResumed(at=1103.0, owner="host:2"),
            call_finished("1.1", 1105.0),
            RunEnded(at=1106.0, status="completed"),
        ]
    )
    assert state.active_s == pytest.approx(3.0 + 2.0 + 1.0)
    assert state.updated_at == 1106.0


def test_time_spent_paused_waiting_for_a_person_is_not_driving_time() -> None:
    state = replay(
        [
            started(at=100.0),
            responded(1, 102.0),
            call_started("1.1", 102.0, name="refund"),
            RunPaused(at=103.0, reason="needs_attention", calls=("1.1",)),
            # an operator decides an hour later, then the run is resumed
            call_finished("1.1", 3703.0, name="refund"),
            RunResumed(at=3710.0, owner="host:2"),
            responded(2, 3711.0, text="done"),
            RunEnded(at=3711.0, status="completed", output="done"),
        ]
    )
    assert state.active_s == pytest.approx(3.0 + 1.0)
