"""Bounded context: when the boundary moves, what the model sees, and what it saves over a long run."""

from __future__ import annotations

from typing import Any

import pytest
from bench.compaction import simulate, simulate_run

from agentkeel import AssistantMessage, ConfigError, ToolCall, ToolResultMessage, UserMessage
from agentkeel.core.compaction import (
    NOTES_HEADER,
    ContextPolicy,
    compacted_view,
    estimate_tokens,
    plan_compaction,
)
from agentkeel.core.messages import Conversation, Message

TASK = UserMessage(text="Check every order.")
BIG = 4_000


def conversation(steps: int, *, calls_per_step: int = 1, size: int = BIG) -> list[Message]:
    """The task, then per step an assistant turn with ``calls_per_step`` calls and their results."""
    messages: list[Message] = [TASK]
    for step in range(1, steps + 1):
        calls = tuple(
            ToolCall(id=f"call_{step}_{n}", name="lookup", arguments={"n": step}) for n in range(1, calls_per_step + 1)
        )
        messages.append(AssistantMessage(text=f"step {step}", tool_calls=calls))
        for call in calls:
            messages.append(ToolResultMessage(call_id=call.id, name="lookup", content=f"{call.id}:" + "x" * size))
    return messages


def plan(messages: list[Message], *, upto: int = 0, policy: ContextPolicy | None = None) -> int | None:
    policy = policy or ContextPolicy(max_tokens=10_000)
    view = compacted_view(messages, upto=upto, notes={}, digest_chars=policy.digest_chars)
    return plan_compaction(messages, upto=upto, prompt_tokens=estimate_tokens(view), policy=policy)


def test_no_compaction_below_the_threshold() -> None:
    messages = conversation(9)  # 9 x 4,000 chars: about 9,000 tokens
    assert estimate_tokens(messages) <= 10_000
    assert plan(messages) is None


def test_past_the_threshold_the_boundary_jumps_to_the_last_steps() -> None:
    messages = conversation(12)
    boundary = plan(messages)
    assert boundary is not None
    recent = messages[boundary:]
    assert sum(1 for m in recent if m.kind == "assistant") == 4  # keep_recent_steps
    assert messages[boundary] == AssistantMessage(
        text="step 9", tool_calls=(ToolCall(id="call_9_1", name="lookup", arguments={"n": 9}),)
    )
    view = compacted_view(messages, upto=boundary, notes={})
    assert view[boundary:] == recent  # the recent steps verbatim
    assert all(len(m.content) < 300 for m in view[1:boundary] if m.kind == "tool_result")
    assert estimate_tokens(view) < 10_000 / 2


def test_keep_recent_steps_is_honoured() -> None:
    messages = conversation(12)
    boundary = plan(messages, policy=ContextPolicy(max_tokens=10_000, keep_recent_steps=2))
    assert boundary is not None
    assert sum(1 for m in messages[boundary:] if m.kind == "assistant") == 2


@pytest.mark.parametrize("calls_per_step", [1, 3])
def test_the_boundary_never_parts_a_call_from_its_results(calls_per_step: int) -> None:
    messages = conversation(15, calls_per_step=calls_per_step, size=BIG // calls_per_step)
    for keep in range(1, 8):
        boundary = plan(messages, policy=ContextPolicy(max_tokens=1_000, keep_recent_steps=keep))
        assert boundary is not None
        assert messages[boundary].kind == "assistant"
        view = compacted_view(messages, upto=boundary, notes={})
        asked = {c.id for m in view if m.kind == "assistant" for c in m.tool_calls}
        answered = [m.call_id for m in view if m.kind == "tool_result"]
        assert sorted(answered) == sorted(asked)  # every call answered, every result asked for


def test_the_boundary_only_moves_forward() -> None:
    policy = ContextPolicy(max_tokens=10_000)
    messages = conversation(4)
    upto, seen = 0, []
    for step in range(5, 60):
        messages.extend(conversation(step)[-2:])  # one more step
        moved = plan(messages, upto=upto, policy=policy)
        if moved is not None:
            assert moved > upto
            upto = moved
            seen.append(step)
        assert plan(messages, upto=upto, policy=policy) is None  # settled until the prompt grows again
    assert 3 <= len(seen) < 30  # in jumps, not at every step


def test_a_run_whose_bulk_is_already_compacted_is_left_alone() -> None:
    messages = conversation(12, size=40)  # short results: a digest would not be shorter
    assert plan(messages, policy=ContextPolicy(max_tokens=10)) is None


def test_the_task_and_the_notes_reach_the_model_verbatim() -> None:
    messages = conversation(12)
    notes = {"zeta": "the last fact", "alpha": "order #7 was held\nsecond line kept"}
    view = compacted_view(messages, upto=len(messages) - 2, notes=notes)
    assert view[0] is TASK
    last = view[-1]
    assert isinstance(last, UserMessage)
    assert last.text == f"{NOTES_HEADER}\n- alpha: order #7 was held\nsecond line kept\n- zeta: the last fact"
    assert view[:-1][-2:] == messages[-2:]  # notes come after the recent steps
    assert compacted_view(messages, upto=0, notes={})[-1] == messages[-1]  # no notes, no notes message


def test_a_digest_is_shorter_and_names_the_original_size() -> None:
    messages = conversation(6)
    original = messages[2]
    assert isinstance(original, ToolResultMessage)
    view = compacted_view(messages, upto=5, notes={}, digest_chars=50)
    digest = view[2]
    assert isinstance(digest, ToolResultMessage)
    assert (digest.call_id, digest.name, digest.is_error) == (original.call_id, original.name, original.is_error)
    assert len(digest.content) < 120 < len(original.content)
    assert digest.content.startswith("[compacted: call_1_1:xxx")
    assert f"({len(original.content):,} chars in the journal)]" in digest.content
    assert view[3] == messages[3]  # assistant turns stay whole before the boundary
    assert view[6] == messages[6]  # and from the boundary on, everything does


def test_an_error_result_keeps_its_mark_when_compacted() -> None:
    messages: list[Message] = [
        TASK,
        AssistantMessage(tool_calls=(ToolCall(id="c1", name="lookup"),)),
        ToolResultMessage(call_id="c1", name="lookup", content="failed: " + "y" * 500, is_error=True),
        AssistantMessage(text="done"),
    ]
    digest = compacted_view(messages, upto=3, notes={})[2]
    assert isinstance(digest, ToolResultMessage)
    assert digest.is_error and digest.content.startswith("[compacted: failed: yyy")


def test_the_view_is_deterministic_and_the_memo_changes_nothing() -> None:
    messages = conversation(20)
    notes = {"b": "2", "a": "1"}
    memo: dict[str, Any] = {}
    first = compacted_view(messages, upto=10, notes=notes, memo=memo)
    assert compacted_view(messages, upto=10, notes=dict(reversed(list(notes.items())))) == first
    assert compacted_view(messages, upto=10, notes=notes, memo=memo) == first  # from the memo
    later = compacted_view(messages, upto=30, notes=notes, memo=memo)  # the memo's prefix, extended
    assert later == compacted_view(messages, upto=30, notes=notes)
    assert compacted_view(Conversation(messages), upto=30, notes=notes) == later
    assert compacted_view(messages, upto=10, notes=notes, memo=memo) == first  # a smaller boundary is rebuilt
    with_other_size = compacted_view(messages, upto=10, notes=notes, digest_chars=20, memo=memo)
    assert with_other_size == compacted_view(messages, upto=10, notes=notes, digest_chars=20)
    assert with_other_size != first


def test_a_resumed_run_sends_the_same_prompt() -> None:
    messages = conversation(20)
    live = compacted_view(messages, upto=12, notes={"k": "v"}, memo={})
    replayed = compacted_view(list(messages), upto=12, notes={"k": "v"}, memo={})
    assert replayed == live


def test_estimate_counts_four_characters_a_token() -> None:
    messages: list[Message] = [
        UserMessage(text="a" * 40),
        AssistantMessage(text="b" * 4, tool_calls=(ToolCall(id="c", name="look", arguments={"key": "vvvv", "n": 1}),)),
        ToolResultMessage(call_id="c", name="look", content="c" * 40),
    ]
    # 40 + 4 + (4 + 3 + 4 + 6 + 1 + 8 + 6) + 40 = 116 characters
    assert estimate_tokens(messages) == 116 // 4


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"keep_recent_steps": 0}, "keep_recent_steps"),
        ({"digest_chars": -1}, "digest_chars"),
        ({"digest_chars": 1.5}, "digest_chars"),
    ],
)
def test_a_bad_policy_is_refused_with_a_sentence_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"ContextPolicy\.{field} must be an integer"):
        ContextPolicy(**changes)


def test_a_hundred_step_task_sends_five_times_fewer_tokens_with_the_default_policy() -> None:
    (without, plain_answer), (with_, answer) = simulate_run(100, None), simulate_run(100, ContextPolicy())
    assert without / with_ >= 5.0
    assert answer == plain_answer and answer.count("- orders ") == 10  # the notes carried every fact to the end


def test_below_the_threshold_the_simulation_sends_what_it_would_without_compaction() -> None:
    assert simulate(10, None) == pytest.approx(simulate(10, ContextPolicy(max_tokens=10**9)), rel=0.01)
