"""Loop detection: spirals are caught, healthy pollers are not, and a resumed run sees what the live run saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkeel import ModelResponse, ToolCall
from agentkeel.core.calls import CallRecord
from agentkeel.core.events import (
    Event,
    Intervened,
    ModelResponded,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.loops import REMEMBERED_RESULTS, LoopPolicy, LoopTracker, LoopVerdict
from agentkeel.core.state import RunState, replay
from agentkeel.errors import ConfigError

ADVICE = (
    "Do not make these calls again: change your approach (other arguments, another tool), or answer with what you know."
)


@dataclass(frozen=True)
class Call:
    """One tool call of a scripted step: what the model asked, and what it read back."""

    name: str
    content: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    rejected: bool = False
    """Refused before it ran (invalid arguments, unknown tool): journaled as finished, never started."""


def call(name: str, content: str, *, error: bool = False, rejected: bool = False, **arguments: Any) -> Call:
    return Call(name=name, content=content, arguments=arguments, error=error or rejected, rejected=rejected)


class Run:
    """A run driven the way the engine drives a tracker: the journal, the state, and the live tracker side by side."""

    def __init__(self, policy: LoopPolicy | None = None) -> None:
        self.policy = policy or LoopPolicy()
        self.events: list[Event] = [RunStarted(at=0.0, run_id="r1", agent="a", task="Find order #1", model="scripted")]
        self.state: RunState = replay(self.events)
        self.tracker = LoopTracker(self.policy)
        self.verdicts: list[LoopVerdict] = []

    def commit(self, *events: Event) -> None:
        for event in events:
            self.events.append(event)
            self.state.apply(event)

    def step(self, *calls: Call, check: bool = True) -> LoopVerdict | None:
        """One model turn and its calls; then (``check``) what the engine does before the next model call."""
        step = self.state.steps_completed + 1
        at = float(len(self.events))
        ids = [f"{step}.{index}" for index in range(1, len(calls) + 1)]
        asked = tuple(
            ToolCall(id=f"t-{i}", name=c.name, arguments=c.arguments) for i, c in zip(ids, calls, strict=True)
        )
        refused = [finished(i, c, at) for i, c in zip(ids, calls, strict=True) if c.rejected]
        starts = [started(i, c, at) for i, c in zip(ids, calls, strict=True) if not c.rejected]
        self.commit(ModelResponded(at=at, step=step, response=ModelResponse(tool_calls=asked)), *starts, *refused)
        for event in refused:
            self.tracker.observe_rejected(event)
        for i, c in zip(ids, calls, strict=True):
            if not c.rejected:
                self.commit(finished(i, c, at))
                self.tracker.observe(self.state.calls[i])
        self.tracker.end_step(step)
        if not check:
            return None
        verdict = self.tracker.verdict(self.state.interventions)
        if verdict is not None:
            self.verdicts.append(verdict)
            if not verdict.fail:
                self.commit(Intervened(at=at, rule=verdict.rule, message=verdict.message, evidence=verdict.evidence))
                self.tracker.reset(verdict.rule)
        return verdict

    def steps(self, *calls: Call) -> list[LoopVerdict | None]:
        """One call per step."""
        return [self.step(c) for c in calls]


def started(call_id: str, c: Call, at: float) -> ToolCallStarted:
    return ToolCallStarted(
        at=at, call=call_id, tool_call_id=f"t-{call_id}", name=c.name, arguments=c.arguments, idempotency_key=call_id
    )


def finished(call_id: str, c: Call, at: float) -> ToolCallFinished:
    failure = ToolFailure(kind="invalid_arguments" if c.rejected else "tool_error", message=c.content)
    return ToolCallFinished(
        at=at,
        call=call_id,
        tool_call_id=f"t-{call_id}",
        name=c.name,
        content=c.content,
        error=failure if c.error else None,
    )


def snapshot(tracker: LoopTracker) -> tuple[object, ...]:
    """Everything a tracker knows."""
    return (
        list(tracker._calls),
        tracker._call_counts,
        list(tracker._errors),
        tracker._error_counts,
        list(tracker._seen),
        tracker._stale_steps,
        tracker._stale_calls,
        tracker._stale_from,
        list(tracker._stale),
        tracker._ended,
    )


def resumed(run: Run) -> LoopTracker:
    """The tracker a fresh process builds from the journal, after the engine's first ``end_step``."""
    state = replay(run.events)
    tracker = LoopTracker.of(state, run.policy)
    tracker.end_step(state.steps_completed)
    return tracker


NOT_FOUND = call("lookup", "Order #1 not found.", order_id="#1")


# -- spirals are caught ---------------------------------------------------------------------------------------


def test_the_same_lookup_answering_the_same_thing_five_times_gets_a_message() -> None:
    run = Run()
    assert run.steps(*[NOT_FOUND] * 4) == [None] * 4
    verdict = run.step(NOT_FOUND)
    assert verdict is not None and not verdict.fail
    assert verdict.rule == "repeated_call"
    assert verdict.evidence == (
        'lookup({"order_id": "#1"}) returned the same result 5 times in the last 5 calls '
        "(calls 1.1, 2.1, 3.1, 4.1, 5.1): Order #1 not found."
    )
    assert verdict.message == (
        f"You have called lookup with the same arguments 5 times and got the same result each time. {ADVICE}"
    )
    assert run.state.interventions == {"repeated_call": 1}


def test_two_calls_alternating_are_caught_as_surely_as_one_repeated() -> None:
    other = call("search", "[]", q="order 1")
    run = Run()
    verdicts = run.steps(*[NOT_FOUND, other] * 4, NOT_FOUND)
    assert verdicts[:-1] == [None] * 8
    last = verdicts[-1]
    assert last is not None and last.rule == "repeated_call"
    assert "(calls 1.1, 3.1, 5.1, 7.1, 9.1)" in last.evidence


def test_the_same_validation_error_three_times_is_caught_whatever_the_arguments() -> None:
    invalid = "priority: must be one of low, normal, high."
    run = Run()
    assert run.step(call("create_ticket", invalid, rejected=True), call("search", "[1 hit]", q="printer")) is None
    assert run.step(call("create_ticket", invalid, rejected=True)) is None
    verdict = run.step(call("lookup", '{"id": 7}', id=7), call("create_ticket", invalid, rejected=True))
    assert verdict is not None and verdict.rule == "repeated_error"
    assert verdict.evidence == (
        f"create_ticket failed 3 times in the last 5 calls with the same error (calls 1.1, 2.1, 3.2): {invalid}"
    )
    assert verdict.message == f"create_ticket has failed 3 times with the same error: {invalid} {ADVICE}"


def test_a_started_call_failing_the_same_way_with_new_arguments_is_caught() -> None:
    run = Run()
    failing = [call("refund", "Refunds need an order id like #1234.", error=True, order_id=n) for n in ("1", "a", "x")]
    verdicts = run.steps(*failing)
    assert verdicts[:2] == [None, None]
    assert verdicts[2] is not None and verdicts[2].rule == "repeated_error"


def test_the_same_error_spread_over_parallel_calls_is_caught() -> None:
    """One call of four fails the same way at every step: three errors within nine calls."""
    run = Run()
    verdicts = []
    for n in range(3):
        reads = [call("read", f"text {n}.{i}", path=f"f{n}.{i}") for i in range(3)]
        verdicts.append(run.step(*reads, call("write", "Permission denied: /etc.", error=True, path="/etc")))
    assert verdicts[:2] == [None, None]
    assert verdicts[2] is not None and verdicts[2].rule == "repeated_error"


def test_a_cycle_too_long_for_repeated_call_is_caught_as_no_progress() -> None:
    cycle = [call("read", f"page {n}", page=n) for n in range(4)]
    run = Run()
    verdicts = run.steps(*cycle * 3)  # steps 5 to 12 bring nothing new
    assert verdicts[:11] == [None] * 11
    verdict = verdicts[11]
    assert verdict is not None and verdict.rule == "no_progress"
    assert verdict.evidence.startswith("steps 5 to 12 (8 steps, 8 calls) returned only results seen before (calls ")
    assert verdict.evidence.endswith("12.1; tools read)")
    assert verdict.message.startswith("Your last 8 steps brought nothing new:")


def test_the_evidence_shortens_long_arguments_and_results() -> None:
    write = call("write_file", "Error: disk full\n" + "detail " * 500, error=True, path="a.txt", text="x" * 5000)
    verdict = Run().steps(write, write, write)[-1]
    assert verdict is not None and verdict.rule == "repeated_error"
    assert len(verdict.evidence) < 300 and "Error: disk full detail detail" in verdict.evidence
    assert verdict.evidence.endswith("...") and "\n" not in verdict.message


def test_the_most_specific_rule_is_named_first() -> None:
    same_failure = call("lookup", "Order #1 not found.", error=True, order_id="#1")
    verdicts = Run(LoopPolicy(repeated_call=2, repeated_error=2)).steps(same_failure, same_failure)
    assert verdicts[1] is not None and verdicts[1].rule == "repeated_error"


# -- interventions, then failure --------------------------------------------------------------------------------


def test_the_next_trip_after_the_message_fails_the_run_with_the_evidence() -> None:
    run = Run()
    run.steps(*[NOT_FOUND] * 5)
    assert run.steps(*[NOT_FOUND] * 4) == [None] * 4  # the rule counts from zero after its message
    verdict = run.step(NOT_FOUND)
    assert verdict is not None and verdict.fail
    assert verdict.rule == "repeated_call" and verdict.message == ""
    assert "(calls 6.1, 7.1, 8.1, 9.1, 10.1)" in verdict.evidence
    assert verdict.evidence.endswith("; the model had been told 1 time(s) before")


@pytest.mark.parametrize("interventions", [0, 2])
def test_interventions_is_how_many_messages_come_before_the_failure(interventions: int) -> None:
    run = Run(LoopPolicy(interventions=interventions))
    run.steps(*[NOT_FOUND] * 5 * (interventions + 1))
    assert [v.fail for v in run.verdicts] == [False] * interventions + [True]
    assert run.state.interventions == ({"repeated_call": interventions} if interventions else {})


def test_interventions_are_counted_per_rule() -> None:
    run = Run()
    run.steps(*[NOT_FOUND] * 5)
    verdict = run.steps(*[call("fetch", "Timed out.", error=True, url=f"u{n}") for n in range(3)])[-1]
    assert verdict is not None and verdict.rule == "repeated_error" and not verdict.fail


def test_a_reset_after_a_message_clears_every_rule_but_other_names_change_nothing() -> None:
    run = Run()
    failure = call("lookup", "Order #1 not found.", error=True, order_id="#1")
    for _ in range(5):
        run.step(failure, check=False)
    tracker = run.tracker
    assert [v.rule for v in [tracker.verdict({})] if v] == ["repeated_error"]
    tracker.reset("budget")  # not a loop rule: nothing changes
    assert [v.rule for v in [tracker.verdict({})] if v] == ["repeated_error"]
    tracker.reset("repeated_error")  # the same calls also tripped repeated_call: one loop, one message
    assert tracker.verdict({}) is None


def test_a_custom_message_gets_the_placeholders() -> None:
    run = Run(LoopPolicy(repeated_call=2, message="[{rule}] Stop. ({evidence})"))
    verdict = run.steps(NOT_FOUND, NOT_FOUND)[-1]
    assert verdict is not None
    assert verdict.message == f"[repeated_call] Stop. ({verdict.evidence})"


# -- healthy agents are left alone ---------------------------------------------------------------------------


def polling() -> list[Call]:
    states = ["pending"] * 4 + ["running 40%", "running 80%", "done: 1,204 rows"]
    return [call("check_job", s, id="j1") for s in states]


def polling_among_work() -> list[Call]:
    calls = []
    for n in range(6):
        calls.append(call("check_job", "pending" if n < 4 else f"running {n * 15}%", id="j1"))
        calls.append(call("read_log", f"line {n}: copied batch {n}", offset=n))
    return [*calls, call("check_job", "done", id="j1")]


def paging() -> list[Call]:
    return [call("search", f"results {10 * n}-{10 * n + 9}", q="refunds", page=n) for n in range(40)]


def progress_polling() -> list[Call]:
    return [call("check_job", f"running {n}%", id="j2") for n in range(0, 100, 4)]


def flaky_tool() -> list[Call]:
    """A tool that times out once in five calls, among successes."""
    return [
        call("fetch", "Timed out after 30s.", error=True, url=f"u{n}")
        if n % 5 == 4
        else call("fetch", f"page {n}", url=f"u{n}")
        for n in range(60)
    ]


def fixing_tests() -> list[Call]:
    calls = []
    for n in range(6):
        calls.append(call("edit", "ok", path="app.py", patch=f"fix {n}"))
        calls.append(call("run_tests", f"{6 - n} failed" if n < 5 else "all passed"))
    return calls


@pytest.mark.parametrize(
    "calls", [polling(), polling_among_work(), paging(), progress_polling(), flaky_tool(), fixing_tests()]
)
def test_a_healthy_agent_is_never_stopped_with_the_defaults(calls: list[Call]) -> None:
    run = Run()
    assert run.steps(*calls) == [None] * len(calls)


def test_a_healthy_agent_with_parallel_calls_is_never_stopped() -> None:
    run = Run()
    for n in range(12):
        status = "pending" if n < 4 else f"running {n * 8}%"
        assert run.step(call("check_job", status, id="j1"), call("read", f"chunk {n}", line=n)) is None
    assert run.step(call("check_job", "done", id="j1")) is None


# -- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["repeated_call", "repeated_error", "no_progress"])
def test_none_turns_a_rule_off(rule: str) -> None:
    spirals = {
        "repeated_call": [NOT_FOUND] * 12,
        "repeated_error": [call("fetch", "Timed out.", error=True, url=f"u{n}") for n in range(12)],
        "no_progress": [call("read", f"page {n % 3}", page=n % 3) for n in range(30)],
    }
    run = Run(LoopPolicy(**{rule: None}))  # type: ignore[arg-type]
    run.steps(*spirals[rule])
    assert rule not in {v.rule for v in run.verdicts}
    assert Run().steps(*spirals[rule]).count(None) < len(spirals[rule])  # the spiral trips the rule when on


@pytest.mark.parametrize(
    ("values", "field_name"),
    [
        ({"repeated_call": 0}, "repeated_call"),
        ({"repeated_call": 1}, "repeated_call"),
        ({"repeated_error": -3}, "repeated_error"),
        ({"no_progress": True}, "no_progress"),
        ({"no_progress": 2.5}, "no_progress"),
        ({"repeated_call": "5"}, "repeated_call"),
        ({"interventions": -1}, "interventions"),
        ({"interventions": True}, "interventions"),
        ({"message": ""}, "message"),
        ({"message": "Stop {looping}."}, "message"),
        ({"message": "Stop {"}, "message"),
    ],
)
def test_a_bad_policy_is_refused_with_a_sentence_naming_the_field(values: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        LoopPolicy(**values)
    text = str(caught.value)
    assert text.startswith(f"LoopPolicy({field_name}=") and text.endswith(".")


def test_the_defaults_are_the_documented_ones() -> None:
    policy = LoopPolicy()
    assert (policy.repeated_call, policy.repeated_error, policy.no_progress, policy.interventions) == (5, 3, 8, 1)


def test_observing_a_call_that_has_not_finished_is_a_mistake() -> None:
    record = CallRecord(started=started("1.1", NOT_FOUND, 0.0))
    with pytest.raises(ValueError, match=r"call 1\.1 has not finished"):
        LoopTracker(LoopPolicy()).observe(record)


# -- resume and memory ----------------------------------------------------------------------------------------


def test_ending_a_step_twice_counts_it_once() -> None:
    run = Run(LoopPolicy(no_progress=2))
    same = call("read", "a", page=1)
    assert run.steps(same, same) == [None, None]
    run.tracker.end_step(2)
    run.tracker.end_step(1)
    assert run.tracker.verdict({}) is None
    verdict = run.step(same)
    assert verdict is not None and verdict.rule == "no_progress" and "steps 2 to 3" in verdict.evidence


def test_a_resumed_tracker_sees_what_the_live_one_saw() -> None:
    invalid = "priority: must be one of low, normal, high."
    run = Run()
    run.steps(*[NOT_FOUND] * 5)  # an intervention: the rule counts from zero in both
    run.step(call("create_ticket", invalid, rejected=True), NOT_FOUND)
    run.step(call("create_ticket", invalid, rejected=True))
    assert snapshot(resumed(run)) == snapshot(run.tracker)
    verdict = run.step(call("create_ticket", invalid, rejected=True))
    assert verdict is not None and verdict.rule == "repeated_error"  # refused calls before the resume count too
    rebuilt = resumed(run)
    assert snapshot(rebuilt) == snapshot(run.tracker)
    assert rebuilt.verdict(run.state.interventions) == run.tracker.verdict(run.state.interventions)


CALLS = st.builds(
    Call,
    name=st.sampled_from(["lookup", "search"]),
    content=st.sampled_from(["found", "not found"]),
    arguments=st.fixed_dictionaries({"q": st.integers(0, 2)}),
    error=st.booleans(),
    rejected=st.sampled_from([False, False, False, True]),
).map(lambda c: Call(c.name, c.content, c.arguments, c.error or c.rejected, c.rejected))
POLICIES = st.builds(
    LoopPolicy,
    repeated_call=st.sampled_from([None, 2, 3, 5]),
    repeated_error=st.sampled_from([None, 2, 3]),
    no_progress=st.sampled_from([None, 2, 4]),
    interventions=st.integers(0, 2),
)


@settings(max_examples=150, deadline=None)
@given(policy=POLICIES, steps=st.lists(st.lists(CALLS, min_size=1, max_size=3), max_size=25))
def test_after_any_journal_a_resumed_tracker_is_the_live_one(policy: LoopPolicy, steps: list[list[Call]]) -> None:
    run = Run(policy)
    for calls in steps:
        verdict = run.step(*calls)
        rebuilt = resumed(run)
        assert snapshot(rebuilt) == snapshot(run.tracker)
        assert rebuilt.verdict(run.state.interventions) == run.tracker.verdict(run.state.interventions)
        if verdict is not None and verdict.fail:
            break


def test_memory_stays_bounded_over_a_long_run() -> None:
    policy = LoopPolicy()
    tracker = LoopTracker(policy)
    for n in range(1, 10_001):
        record = CallRecord(started=started(f"{n}.1", call("read", "", page=n), 0.0))
        failing = n % 2 == 0
        content = f"Page {n} is missing." if failing else f"page {n} " + "x" * 1000
        record.finished = finished(f"{n}.1", call("read", content, error=failing, page=n), 0.0)
        tracker.observe(record)
        tracker.end_step(n)
        assert tracker.verdict({}) is None
    assert len(tracker._seen) == REMEMBERED_RESULTS
    assert len(tracker._calls) == len(tracker._call_counts) == 10
    assert len(tracker._errors) == 9 and len(tracker._error_counts) <= 5
    assert len(tracker._stale) == 0 and tracker._step == []
    assert all(len(seen.result) <= 80 for _, seen in tracker._calls)
