"""``next_action``: one branch per situation, decided from the state alone."""

from __future__ import annotations

from agentkeel import ModelResponse, ToolCall
from agentkeel.core.decide import (
    CallModel,
    Done,
    Finish,
    RecoverCalls,
    Wait,
    finish_if_answered,
    next_action,
)
from agentkeel.core.events import (
    Event,
    ModelResponded,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkeel.core.state import RunState, replay


def journal(*events: Event, max_steps: int = 3, timeout_s: float | None = None) -> RunState:
    first = RunStarted(
        at=0.0, run_id="r1", agent="a", task="t", model="scripted", max_steps=max_steps, timeout_s=timeout_s
    )
    return replay([first, *events])


def step(n: int, *, text: str = "", with_call: bool = True) -> list[Event]:
    calls = (ToolCall(id=f"c{n}", name="lookup", arguments={}),) if with_call else ()
    events: list[Event] = [ModelResponded(at=float(n), step=n, response=ModelResponse(text=text, tool_calls=calls))]
    if with_call:
        events.append(
            ToolCallStarted(
                at=float(n), call=f"{n}.1", tool_call_id=f"c{n}", name="lookup", arguments={}, idempotency_key=f"k{n}"
            )
        )
        events.append(ToolCallFinished(at=float(n), call=f"{n}.1", tool_call_id=f"c{n}", name="lookup", content="ok"))
    return events


def test_a_fresh_run_calls_the_model_for_step_one() -> None:
    assert next_action(journal(), driven_s=0.0) == CallModel(step=1)


def test_after_a_finished_step_the_model_is_asked_for_the_next_one() -> None:
    assert next_action(journal(*step(1), *step(2)), driven_s=0.0) == CallModel(step=3)


def test_an_ended_run_is_done() -> None:
    for status in ("completed", "failed", "cancelled"):
        state = journal(RunEnded(at=1.0, status=status))  # type: ignore[arg-type]
        assert next_action(state, driven_s=0.0) == Done()


def test_a_run_paused_for_attention_waits_with_its_reason_and_detail() -> None:
    events = step(1)[:2]  # the call started and never finished
    state = journal(*events, RunPaused(at=2.0, reason="needs_attention", detail="decide 1.1", calls=("1.1",)))
    assert next_action(state, driven_s=0.0) == Wait(reason="needs_attention", detail="decide 1.1")


def test_interrupted_calls_are_recovered_before_anything_else() -> None:
    events = step(1)[:2]
    state = journal(*events, RunResumed(at=5.0, owner="h:2"), max_steps=1, timeout_s=1.0)
    action = next_action(state, driven_s=100.0)  # past both limits: recovery still comes first
    assert isinstance(action, RecoverCalls)
    assert [c.call for c in action.calls] == ["1.1"]
    assert action.calls[0].idempotency_key == "k1"


def test_a_run_driven_past_its_timeout_finishes_failed_timeout() -> None:
    state = journal(*step(1, text="working on it"), timeout_s=2.0)
    assert next_action(state, driven_s=1.9) == CallModel(step=2)
    action = next_action(state, driven_s=2.0)
    assert isinstance(action, Finish)
    assert (action.status, action.reason, action.output) == ("failed", "timeout", "working on it")
    assert "2.0s" in action.error and "Agent(timeout=...)" in action.error


def test_a_run_at_its_step_limit_finishes_failed_max_steps_exceeded() -> None:
    state = journal(*step(1), *step(2, text="still looking"), max_steps=2)
    action = next_action(state, driven_s=0.0)
    assert isinstance(action, Finish)
    assert (action.status, action.reason, action.output) == ("failed", "max_steps_exceeded", "still looking")
    assert "2 steps" in action.error and "max_steps=2" in action.error and "keel show r1" in action.error


def test_a_response_without_tool_calls_is_the_final_answer() -> None:
    assert finish_if_answered(ModelResponse(text="Shipped.")) == Finish(status="completed", output="Shipped.")
    asking = ModelResponse(text="Let me look.", tool_calls=(ToolCall(id="c", name="lookup"),))
    assert finish_if_answered(asking) is None
