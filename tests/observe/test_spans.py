"""A run's spans, derived from its journal: the tree (names, kinds, parents, timings), the conventions' attributes,
error statuses, content only when asked for, and the same spans whether the journal is read at once or fed event
by event after a resumed process primed its builder with what the dead one had journaled."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

from agentkeel import (
    Agent,
    MemoryStore,
    ModelError,
    ModelRequest,
    ModelResponse,
    Pipeline,
    PipelineContext,
    RetryPolicy,
    ScriptedModel,
    ToolContext,
    call,
    calls,
    cancel_run,
    reply,
    require_approval,
    tool,
)
from agentkeel.core.events import (
    CompensationFinished,
    CompensationStarted,
    Event,
    ModelResponded,
    RollbackStarted,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkeel.core.messages import ToolCall
from agentkeel.core.state import replay
from agentkeel.observe.export import tree_spans
from agentkeel.observe.ids import span_id, trace_id_of
from agentkeel.observe.spans import SpanBuilder, SpanRecord, journal_spans

TOLERANCE_NS = 1_000_000
"""Model-call starts are the response's time less a latency measured on another clock: allow them a millisecond."""


class Crash(BaseException):
    """The process dies."""


# -- checks ---------------------------------------------------------------------------------------------------


def named(spans: Sequence[SpanRecord], name: str) -> list[SpanRecord]:
    return [span for span in spans if span.name == name]


def one(spans: Sequence[SpanRecord], name: str) -> SpanRecord:
    [found] = named(spans, name)
    return found


def run_span(spans: Sequence[SpanRecord], run_id: str) -> SpanRecord:
    [found] = [span for span in spans if span.span_id == span_id(run_id, "run")]
    return found


def text_of(spans: Sequence[SpanRecord]) -> str:
    """Everything a backend would store about the spans, as one text to search."""
    parts: list[str] = []
    for span in spans:
        parts += [span.name, span.error or ""]
        parts += [f"{key}={value}" for key, value in span.attributes.items()]
        for event in span.events:
            parts += [event.name, *(f"{key}={value}" for key, value in event.attributes.items())]
    return "\n".join(parts)


def check_tree(spans: Sequence[SpanRecord], *, nests_under: int | None = None) -> None:
    """One trace of unique spans, each within its parent's time, listed after its children; only the run's span
    has a parent outside the list (``nests_under``, or none)."""
    by_id = {span.span_id: span for span in spans}
    assert len(by_id) == len(spans), "span ids are unique"
    assert len({span.trace_id for span in spans}) == 1
    position = {span.span_id: index for index, span in enumerate(spans)}
    outside = [span for span in spans if span.parent_id not in by_id]
    assert [span.parent_id for span in outside] == [nests_under]
    for span in spans:
        assert span.start_ns <= span.end_ns, span.name
        parent = by_id.get(span.parent_id) if span.parent_id is not None else None
        if parent is None:
            continue
        assert parent.start_ns - TOLERANCE_NS <= span.start_ns, (span.name, parent.name)
        assert span.end_ns <= parent.end_ns, (span.name, parent.name)
        assert position[span.span_id] < position[parent.span_id], f"{span.name} is listed after {parent.name}"


def check_steps_in_order(spans: Sequence[SpanRecord]) -> None:
    steps = sorted((s for s in spans if s.name.startswith("step ")), key=lambda s: int(s.name.split()[1]))
    for earlier, later in itertools.pairwise(steps):
        assert earlier.end_ns - TOLERANCE_NS <= later.start_ns, (earlier.name, later.name)


def check_incremental(events: Sequence[Event], *, capture_content: bool = False) -> None:
    """Whatever prefix a resuming process primes its builder with, the spans it then emits are exactly the rest of
    the journal's spans: same ids, same times, same attributes, each emitted once."""
    whole = journal_spans(events, capture_content=capture_content)
    for split in range(len(events) + 1):
        builder = SpanBuilder(capture_content=capture_content)
        dead = [span for event in events[:split] for span in builder.feed(event)]
        assert dead == journal_spans(events[:split], capture_content=capture_content, finished_only=True)
        live: list[SpanRecord] = []
        for event in events[split:]:
            finished = builder.feed(event)
            ids = [span.span_id for span in finished]
            for index, span in enumerate(finished):  # children before parents within each batch
                assert span.parent_id not in ids[:index], f"{span.name} comes after its parent"
            live += finished
        live += builder.close()
        assert dead + live == whole, f"primed with {split} events"


async def journal(store: MemoryStore, run_id: str) -> list[Event]:
    return list(await store.load(run_id))


# -- an agent with tools ------------------------------------------------------------------------------------

TASK = "Where is order #4417 for Ana Duarte?"


def support_agent(store: MemoryStore) -> Agent:
    @tool
    def get_order(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": order_id, "status": "shipped to Lisbon"}

    model = ScriptedModel(
        [
            calls(("get_order", {"order_id": "#4417"}), ("no_such_tool", {"x": 1})),
            reply("Order #4417 shipped to Lisbon."),
        ],
        name="openai:gpt-4o-mini",
    )
    return Agent(name="support", instructions="Be brief and kind.", model=model, tools=[get_order], store=store)


async def test_an_agents_run_is_its_steps_model_calls_and_tool_calls() -> None:
    store = MemoryStore()
    result = await support_agent(store).run(TASK)
    events = await journal(store, result.run_id)
    spans = journal_spans(events)
    run_id = result.run_id

    assert sorted(span.name for span in spans) == [
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "execute_tool get_order",
        "execute_tool no_such_tool",
        "invoke_agent support",
        "step 1",
        "step 2",
    ]
    check_tree(spans)
    check_steps_in_order(spans)
    run = run_span(spans, run_id)
    assert (run.trace_id, run.parent_id, run.kind, run.error) == (trace_id_of(run_id, None), None, "internal", None)
    assert spans[-1] == run
    assert run.start_ns == int(events[0].at * 1e9) and run.end_ns == int(events[-1].at * 1e9)
    assert {k: run.attributes[k] for k in ("gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.conversation.id")} == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "support",
        "gen_ai.conversation.id": run_id,
    }
    assert (run.attributes["gen_ai.provider.name"], run.attributes["gen_ai.request.model"]) == ("openai", "gpt-4o-mini")
    assert run.attributes["gen_ai.usage.input_tokens"] == result.usage.input_tokens > 0
    assert run.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens > 0
    assert (run.attributes["agentkeel.run.status"], run.attributes["agentkeel.run.reason"]) == ("completed", "")
    assert (run.attributes["agentkeel.run.steps"], run.attributes["agentkeel.run.tool_errors"]) == (2, 1)
    assert run.attributes["openinference.span.kind"] == "AGENT"
    assert "agentkeel.run.parent_id" not in run.attributes

    step1, step2 = one(spans, "step 1"), one(spans, "step 2")
    assert step1.parent_id == step2.parent_id == run.span_id
    assert step1.span_id == span_id(run_id, "step/1") and step1.attributes["openinference.span.kind"] == "CHAIN"
    first, second = named(spans, "chat gpt-4o-mini")
    assert (first.parent_id, second.parent_id) == (step1.span_id, step2.span_id)
    assert first.kind == "client" and first.span_id == span_id(run_id, "model/1")
    assert first.start_ns == step1.start_ns  # a step begins with its model call
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_call",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert first.attributes["openinference.span.kind"] == "LLM" and first.attributes["llm.model_name"] == "gpt-4o-mini"
    total = first.attributes["llm.token_count.prompt"] + first.attributes["llm.token_count.completion"]  # type: ignore[operator]
    assert first.attributes["llm.token_count.total"] == total
    assert first.attributes["gen_ai.usage.input_tokens"] + second.attributes["gen_ai.usage.input_tokens"] == (  # type: ignore[operator]
        result.usage.input_tokens
    )

    lookup, unknown = one(spans, "execute_tool get_order"), one(spans, "execute_tool no_such_tool")
    assert lookup.parent_id == unknown.parent_id == step1.span_id
    assert lookup.span_id == span_id(run_id, "tool/1.1")
    assert (lookup.kind, lookup.error) == ("internal", None)
    assert {k: lookup.attributes[k] for k in ("gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.tool.call.id")} == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_order",
        "gen_ai.tool.call.id": "call_1_1",
    }
    assert (
        lookup.attributes["gen_ai.tool.type"] == "function" and lookup.attributes["openinference.span.kind"] == "TOOL"
    )
    assert unknown.error == "unknown_tool" and unknown.attributes["error.type"] == "unknown_tool"
    assert unknown.start_ns == unknown.end_ns  # refused before it could run
    assert step1.end_ns == max(lookup.end_ns, unknown.end_ns)  # the step ends with its last call

    shown = text_of(spans)
    for secret in (TASK, "#4417", "Lisbon", "Ana Duarte", "Be brief", "no tool named"):
        assert secret not in shown
    check_incremental(events)


async def test_content_is_recorded_only_when_asked_for_in_the_conventions_format() -> None:
    store = MemoryStore()
    result = await support_agent(store).run(TASK)
    events = await journal(store, result.run_id)
    spans = journal_spans(events, capture_content=True)

    shown = text_of(spans)
    for secret in (TASK, "#4417", "Lisbon", "Be brief"):
        assert secret in shown
    _, second = named(spans, "chat gpt-4o-mini")
    sent = json.loads(str(second.attributes["gen_ai.input.messages"]))
    assert [message["role"] for message in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[0]["parts"] == [{"type": "text", "content": TASK}]
    asked = sent[1]["parts"]
    assert {"type": "tool_call", "id": "call_1_1", "name": "get_order", "arguments": {"order_id": "#4417"}} in asked
    responses = {part["id"]: part["response"] for message in sent[2:] for part in message["parts"]}
    assert "Lisbon" in responses["call_1_1"] and "no tool named" in responses["call_1_2"]
    said = json.loads(str(second.attributes["gen_ai.output.messages"]))
    assert said == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Order #4417 shipped to Lisbon."}],
            "finish_reason": "stop",
        }
    ]
    assert json.loads(str(second.attributes["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief and kind."}
    ]
    assert second.attributes["input.value"] == second.attributes["gen_ai.input.messages"]
    lookup = one(spans, "execute_tool get_order")
    assert json.loads(str(lookup.attributes["gen_ai.tool.call.arguments"])) == {"order_id": "#4417"}
    assert json.loads(str(lookup.attributes["gen_ai.tool.call.result"])) == {
        "order_id": "#4417",
        "status": "shipped to Lisbon",
    }
    run = run_span(spans, result.run_id)
    assert (run.attributes["input.value"], run.attributes["output.value"]) == (TASK, "Order #4417 shipped to Lisbon.")
    unknown = one(spans, "execute_tool no_such_tool")
    assert unknown.error is not None and unknown.error.startswith("unknown_tool: ")
    # the same ids and times as without content: only attributes differ
    plain = journal_spans(events)
    assert [(s.span_id, s.parent_id, s.start_ns, s.end_ns) for s in spans] == [
        (s.span_id, s.parent_id, s.start_ns, s.end_ns) for s in plain
    ]
    check_incremental(events, capture_content=True)


# -- failures and retries -----------------------------------------------------------------------------------


class RateLimitedOnce:
    """A model that answers 429 to its first request, then plays its script."""

    def __init__(self, script: list[ModelResponse], name: str = "anthropic:claude-sonnet-4") -> None:
        self.name = name
        self._inner = ScriptedModel(script, name=name)
        self.failed = False

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if not self.failed:
            self.failed = True
            raise ModelError("429 Too Many Requests", retryable=True, kind="rate_limit")
        return await self._inner.respond(request)


async def test_a_failing_tool_and_retries_are_error_statuses_and_span_events() -> None:
    @tool(retries=1, retry_on=(ConnectionError,), backoff=0.0)
    def charge(card: str) -> str:
        """Charge a card."""
        raise ConnectionError(f"card service down for {card}")

    store = MemoryStore()
    model = RateLimitedOnce([call("charge", card="4242-secret"), reply("The card service is down.")])
    agent = Agent(
        name="billing", model=model, tools=[charge], store=store, model_retry=RetryPolicy(retries=2, backoff_s=0.0)
    )
    result = await agent.run("Charge card 4242-secret")
    assert result.status == "completed"
    events = await journal(store, result.run_id)
    spans = journal_spans(events)
    check_tree(spans)

    first = one(spans, "step 1")
    chat = next(s for s in spans if s.name == "chat claude-sonnet-4" and s.parent_id == first.span_id)
    assert chat.error is None and chat.attributes["gen_ai.provider.name"] == "anthropic"
    [retried] = chat.events
    assert retried.name == "model_retrying" and chat.start_ns <= retried.time_ns <= chat.end_ns
    assert (retried.attributes["error.type"], retried.attributes["agentkeel.attempt"]) == ("rate_limit", 1)
    assert retried.attributes["error.message"] == "429 Too Many Requests"

    charged = one(spans, "execute_tool charge")
    assert charged.error == "exception (ConnectionError)"
    assert (charged.attributes["error.type"], charged.attributes["agentkeel.tool.attempts"]) == ("exception", 2)
    assert [event.name for event in charged.events] == ["tool_call_retrying"]
    assert charged.events[0].attributes["error.type"] == "exception"
    assert "error.message" not in charged.events[0].attributes
    assert run_span(spans, result.run_id).error is None  # the run recovered
    assert "4242-secret" not in text_of(spans) and "card service down" not in text_of(spans)

    with_content = one(journal_spans(events, capture_content=True), "execute_tool charge")
    assert with_content.error is not None and "card service down for 4242-secret" in with_content.error
    check_incremental(events)


async def test_a_model_that_never_answers_fails_its_call_its_step_and_the_run() -> None:
    class Down:
        name = "openai:gpt-4.1"

        async def respond(self, request: ModelRequest) -> ModelResponse:
            raise ModelError("503 Service Unavailable", retryable=True, kind="server")

    store = MemoryStore()
    agent = Agent(name="down", model=Down(), store=store, model_retry=RetryPolicy(retries=2, backoff_s=0.0))
    result = await agent.run("Anything")
    assert (result.status, result.reason) == ("failed", "model_error")
    events = await journal(store, result.run_id)
    spans = journal_spans(events)
    check_tree(spans)
    chat, step = one(spans, "chat gpt-4.1"), one(spans, "step 1")
    assert chat.parent_id == step.span_id and chat.span_id == span_id(result.run_id, "model/1")
    assert chat.error is not None and chat.attributes["error.type"] == "server"
    assert [event.name for event in chat.events] == ["model_retrying", "model_retrying"]
    run = run_span(spans, result.run_id)
    assert run.attributes["error.type"] == "model_error" and run.error is not None and "503" in run.error
    assert run.attributes["agentkeel.run.status"] == "failed"
    check_incremental(events)


# -- approvals ----------------------------------------------------------------------------------------------


def refund_agent(store: MemoryStore) -> Agent:
    @tool(effect="write", idempotent=True)
    def issue_refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        return f"refunded {amount} on {order_id}"

    @issue_refund.compensate
    def void(order_id: str, amount: float) -> str:
        return f"voided the refund of {order_id}"

    return Agent(
        name="refunds",
        model=ScriptedModel([call("issue_refund", order_id="#1", amount=150.0), reply("Refunded #1.")]),
        tools=[issue_refund],
        gates=[require_approval("issue_refund", why="refunds need a person")],
        store=store,
    )


async def test_an_approval_is_a_span_from_the_request_to_the_decision() -> None:
    store = MemoryStore()
    agent = refund_agent(store)
    paused = await agent.run("Refund #1", run_id="r-approve")
    assert (paused.status, paused.reason) == ("paused", "awaiting_approval")

    at_pause = await journal(store, "r-approve")
    waiting = journal_spans(at_pause)  # exported while it waits: open spans end at the pause
    run = run_span(waiting, "r-approve")
    assert run.attributes["agentkeel.run.status"] == "paused" and run.attributes["agentkeel.unfinished"] is True
    assert run.error is None and run.end_ns == int(at_pause[-1].at * 1e9)
    held = one(waiting, "await_approval issue_refund")
    assert held.attributes["agentkeel.approval.decision"] == "undecided" and held.error is None
    assert [s.name for s in journal_spans(at_pause, finished_only=True)] == ["chat scripted"]

    await agent.approve("r-approve", "1.1", by="ops")
    done = await agent.resume("r-approve")
    assert done.status == "completed"
    events = await journal(store, "r-approve")
    spans = journal_spans(events)
    check_tree(spans)
    requested = next(e for e in events if e.kind == "approval_requested")
    approved = next(e for e in events if e.kind == "call_approved")
    started = next(e for e in events if isinstance(e, ToolCallStarted))
    approval, refund, step = (
        one(spans, "await_approval issue_refund"),
        one(spans, "execute_tool issue_refund"),
        one(spans, "step 1"),
    )
    assert approval.span_id == span_id("r-approve", "approval/1.1") and approval.parent_id == step.span_id
    assert (approval.start_ns, approval.end_ns) == (int(requested.at * 1e9), int(approved.at * 1e9))
    assert approval.attributes["agentkeel.approval.decision"] == "approved"
    assert approval.attributes["agentkeel.approval.by"] == "ops"
    assert approval.attributes["agentkeel.approval.why"] == "refunds need a person"
    assert refund.parent_id == step.span_id and refund.start_ns == int(started.at * 1e9) >= approval.end_ns
    assert step.end_ns == refund.end_ns  # the step waited for the person, and ended with its call
    run = run_span(spans, "r-approve")
    assert [event.name for event in run.events] == ["run_paused", "run_resumed"]
    assert run.events[0].attributes["agentkeel.pause.reason"] == "awaiting_approval"
    check_incremental(events)


async def test_a_rejection_and_a_cancel() -> None:
    store = MemoryStore()
    agent = refund_agent(store)
    await agent.run("Refund #1", run_id="r-reject")
    await agent.reject("r-reject", "1.1", reason="over the limit", by="ops")
    await agent.resume("r-reject")
    spans = journal_spans(await journal(store, "r-reject"))
    approval, refund = one(spans, "await_approval issue_refund"), one(spans, "execute_tool issue_refund")
    assert approval.attributes["agentkeel.approval.decision"] == "rejected"
    assert approval.attributes["agentkeel.approval.reason"] == "over the limit"
    assert refund.error == "rejected" and refund.start_ns == refund.end_ns == approval.end_ns

    await agent.run("Refund #1", run_id="r-cancel")
    await cancel_run(store, "r-cancel", by="ops", reason="customer withdrew")
    events = await journal(store, "r-cancel")
    spans = journal_spans(events)
    check_tree(spans)
    assert one(spans, "await_approval issue_refund").attributes["agentkeel.approval.decision"] == "undecided"
    run = run_span(spans, "r-cancel")
    assert run.attributes["error.type"] == "cancelled" and run.error == "cancelled by ops: customer withdrew"
    assert run.attributes["agentkeel.run.ended_by"] == "ops"
    check_incremental(events)


async def test_a_rollback_after_the_end_has_its_own_span_with_the_compensations() -> None:
    store = MemoryStore()
    agent = refund_agent(store).replace(gates=[])
    done = await agent.run("Refund #1", run_id="r-undo")
    assert done.status == "completed"
    ended = journal_spans(await journal(store, "r-undo"))
    undone = await agent.rollback("r-undo", by="ops", reason="wrong order")
    assert undone.status == "rolled_back"
    events = await journal(store, "r-undo")
    spans = journal_spans(events)
    assert spans[: len(ended)] == ended  # what the run's end emitted does not change
    rollback, compensate = one(spans, "rollback refunds"), one(spans, "compensate issue_refund")
    started = next(e for e in events if e.kind == "rollback_started")
    assert rollback.parent_id == span_id("r-undo", "run") and rollback.span_id == span_id("r-undo", "rollback/1")
    assert (rollback.start_ns, rollback.end_ns) == (int(started.at * 1e9), int(events[-1].at * 1e9))
    assert rollback.attributes["agentkeel.run.status"] == "rolled_back"
    assert rollback.attributes["agentkeel.rollback.why"] == "wrong order"
    assert compensate.parent_id == rollback.span_id and compensate.span_id == span_id("r-undo", "undo/1.1")
    assert compensate.error is None and rollback.start_ns <= compensate.start_ns <= compensate.end_ns
    assert spans[-1] == rollback
    check_incremental(events)


# -- a supervisor and its subagents -------------------------------------------------------------------------


def supervisor(store: MemoryStore) -> Agent:
    @tool
    def get_order(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": order_id, "paid": 40.0}

    @tool(effect="write", idempotent=True)
    def issue_refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        return f"refunded {amount}"

    def research(request: ModelRequest) -> ModelResponse:
        order = request.messages[0].text.split()[-1]  # type: ignore[union-attr]
        if not any(m.kind == "tool_result" for m in request.messages):
            return call("get_order", order_id=order)
        return reply(f"{order} was paid $40.")

    researcher = Agent(name="researcher", model=ScriptedModel(research), tools=[get_order])
    refunder = Agent(
        name="refunder",
        model=ScriptedModel([call("issue_refund", order_id="#1", amount=40.0), reply("Refunded #1.")]),
        tools=[issue_refund],
    )
    script = [
        calls(
            ("delegate_to_researcher", {"task": "Check order #1"}),
            ("delegate_to_researcher", {"task": "Check order #2"}),
        ),
        call("delegate_to_refunder", task="Refund order #1: $40"),
        reply("#1 refunded; #2 checked."),
    ]
    return Agent(name="lead", model=ScriptedModel(script), subagents=[researcher, refunder], store=store)


async def test_a_supervisors_tree_is_one_trace_with_each_child_under_its_delegation() -> None:
    store = MemoryStore()
    result = await supervisor(store).run("Look into #1 and #2, refund #1", run_id="lead")
    assert result.status == "completed"
    tree = await tree_spans(store, "lead")
    assert [run.run_id for run in tree] == ["lead", "lead.1.1", "lead.1.2", "lead.2.1"]
    assert [run.agent for run in tree] == ["lead", "researcher", "researcher", "refunder"]
    trace = trace_id_of("lead", None)
    everything = [span for run in tree for span in run.spans]
    assert {span.trace_id for span in everything} == {trace} and {run.trace_id for run in tree} == {trace}
    assert len({span.span_id for span in everything}) == len(everything)

    lead = tree[0].spans
    check_tree(lead)
    for run in tree[1:]:
        call_id = run.run_id.removeprefix("lead.")
        delegation = next(s for s in lead if s.span_id == span_id("lead", f"tool/{call_id}"))
        assert delegation.name in ("execute_tool delegate_to_researcher", "execute_tool delegate_to_refunder")
        assert delegation.attributes["agentkeel.child_run.id"] == run.run_id
        check_tree(run.spans, nests_under=delegation.span_id)
        child = run_span(run.spans, run.run_id)
        assert child.name == f"invoke_agent {run.agent}" and child.parent_id == delegation.span_id
        assert child.attributes["agentkeel.run.parent_id"] == "lead" and run.parent_id == "lead"
        assert delegation.start_ns <= child.start_ns and child.end_ns <= delegation.end_ns
        check_incremental(await journal(store, run.run_id))
    check_incremental(await journal(store, "lead"))


# -- a pipeline ---------------------------------------------------------------------------------------------


async def test_a_pipelines_steps_are_spans_with_their_model_calls_inside() -> None:
    def model(request: ModelRequest) -> ModelResponse:
        text = request.messages[-1].text  # type: ignore[union-attr]
        return reply(f"{text.count('summary of')} combined" if text.startswith("Combine") else f"summary of {text}")

    async def summarise(ctx: PipelineContext, doc: str) -> str:
        return await ctx.llm("summary", doc)

    async def flow(ctx: PipelineContext, docs: list[str]) -> str:
        summaries = await ctx.map("summaries", docs, summarise)

        async def count() -> int:
            return len(summaries)

        await ctx.step("count", count)
        return await ctx.llm("combine", "Combine: " + "; ".join(summaries))

    store = MemoryStore()
    pipeline = Pipeline(name="digest", flow=flow, model=ScriptedModel(model, name="openai:gpt-4.1-nano"), store=store)
    result = await pipeline.run(["report A", "report B"])
    assert result.status == "completed"
    events = await journal(store, result.run_id)
    spans = journal_spans(events)
    check_tree(spans)
    run = run_span(spans, result.run_id)
    assert run.name == "invoke_workflow digest" and run.attributes["openinference.span.kind"] == "CHAIN"
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["gen_ai.workflow.name"] == "digest"
    assert (run.attributes["agentkeel.run.steps"], run.attributes["agentkeel.run.model_calls"]) == (4, 3)
    steps = {s.name: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"step summaries[0].summary", "step summaries[1].summary", "step count", "step combine"}
    assert all(step.parent_id == run.span_id for step in steps.values())
    assert steps["step combine"].span_id == span_id(result.run_id, "step/combine")
    chats = named(spans, "chat gpt-4.1-nano")
    assert sorted(chat.parent_id for chat in chats) == sorted(  # type: ignore[type-var]
        steps[name].span_id for name in ("step summaries[0].summary", "step summaries[1].summary", "step combine")
    )
    for chat in chats:
        assert chat.kind == "client" and chat.attributes["agentkeel.model_calls"] == 1
        parent = next(s for s in steps.values() if s.span_id == chat.parent_id)
        assert (chat.start_ns, chat.end_ns) == (parent.start_ns, parent.end_ns)
    assert sum(chat.attributes["gen_ai.usage.input_tokens"] for chat in chats) == result.usage.input_tokens  # type: ignore[misc]
    assert "report A" not in text_of(spans)
    check_incremental(events)


# -- a crash and a resume -----------------------------------------------------------------------------------


async def test_a_run_that_crashed_mid_call_continues_its_spans_with_their_original_starts(clock: Any) -> None:
    died = {"yet": False}

    @tool(effect="write", idempotent=True)  # a write: its intent is durable before it runs (a read's is not)
    async def lookup(ctx: ToolContext, order_id: str) -> dict[str, Any]:
        """Look an order up and mark it seen (idempotent: safe to run again after a crash)."""
        if not died["yet"]:
            died["yet"] = True
            raise Crash()
        return {"order_id": order_id, "status": "packed"}

    store = MemoryStore(clock=clock)
    agent = Agent(
        name="support",
        model=ScriptedModel([call("lookup", order_id="#7"), reply("#7 is packed.")]),
        tools=[lookup],
        store=store,
    )
    with pytest.raises(Crash):
        await agent.run("Where is #7?", run_id="crashy")
    before = await journal(store, "crashy")
    assert isinstance(before[-1], ToolCallStarted)  # the call's intent, and no outcome
    at_crash = journal_spans(before)  # exported before anyone resumed it
    lookup_then = one(at_crash, "execute_tool lookup")
    assert lookup_then.error is None and lookup_then.attributes["agentkeel.unfinished"] is True
    assert run_span(at_crash, "crashy").attributes["agentkeel.run.status"] == "running"

    clock.advance(60)
    result = await agent.resume("crashy")
    assert result.status == "completed"
    events = await journal(store, "crashy")
    assert events[: len(before)] == before

    builder = SpanBuilder()
    emitted_before = [span for event in before for span in builder.feed(event)]  # the dead process's spans
    assert [span.name for span in emitted_before] == ["chat scripted"]
    emitted_after = [span for event in events[len(before) :] for span in builder.feed(event)]
    assert emitted_before + emitted_after == journal_spans(events)
    check_tree(emitted_before + emitted_after)

    first = events[0]
    assert isinstance(first, RunStarted)
    lookup_span, step, run = (
        one(emitted_after, "execute_tool lookup"),
        one(emitted_after, "step 1"),
        run_span(emitted_after, "crashy"),
    )
    assert lookup_span.start_ns == int(before[-1].at * 1e9)  # started by the dead process
    assert lookup_span.error is None and [e.name for e in lookup_span.events] == ["tool_call_resumed"]
    assert lookup_span.events[0].attributes == {"agentkeel.attempt": 1, "agentkeel.resumed.why": "idempotent"}
    assert step.start_ns == one(emitted_before, "chat scripted").start_ns
    assert run.start_ns == int(first.at * 1e9) and "run_resumed" in [e.name for e in run.events]
    assert builder.close() == []  # the run ended: nothing is left open
    check_incremental(events)


def test_a_rollback_from_a_pause_ends_the_calls_left_open_and_a_rerun_compensation_keeps_its_span() -> None:
    """A run paused with an interrupted write is rolled back; its compensation is interrupted too and runs again
    after a resume. (A journal written out, checked by the fold: no agent takes this path in a few lines.)"""
    response = ModelResponse(
        tool_calls=(
            ToolCall(id="c1", name="refund", arguments={"order_id": "#1"}),
            ToolCall(id="c2", name="refund", arguments={"order_id": "#2"}),
        ),
        stop_reason="tool_use",
    )
    events: list[Event] = [
        RunStarted(at=100.0, run_id="rb", agent="refunds", task="Refund #1 and #2", model="scripted"),
        ModelResponded(at=101.0, step=1, response=response, latency_s=0.5),
        ToolCallStarted(at=101.0, call="1.1", tool_call_id="c1", name="refund", arguments={}, idempotency_key="k1"),
        ToolCallStarted(at=101.0, call="1.2", tool_call_id="c2", name="refund", arguments={}, idempotency_key="k2"),
        ToolCallFinished(at=102.0, call="1.1", tool_call_id="c1", name="refund", content="done"),
        RunResumed(at=110.0, owner="host:2"),
        RunPaused(at=111.0, reason="needs_attention", calls=("1.2",)),
        RollbackStarted(at=120.0, by="ops", why="wrong orders", calls=("1.1",)),
        CompensationStarted(at=121.0, call="1.1"),
        RunResumed(at=130.0, owner="host:3"),
        CompensationStarted(at=131.0, call="1.1", attempt=2),
        CompensationFinished(at=132.0, call="1.1", content="voided"),
        RunEnded(at=133.0, status="rolled_back", reason="rolled_back", error="undone: 1.1"),
    ]
    assert replay(events).status == "rolled_back"  # a journal the engine would have written
    spans = journal_spans(events)
    check_tree(spans)
    second = next(s for s in spans if s.span_id == span_id("rb", "tool/1.2"))
    assert (second.end_ns, second.error, second.attributes["error.type"]) == (
        120_000_000_000,
        "interrupted: the run went on without an outcome of this call",
        "interrupted",
    )
    assert one(spans, "step 1").end_ns == 120_000_000_000  # the agent's part ended with the rollback
    rollback, compensate = one(spans, "rollback refunds"), one(spans, "compensate refund")
    assert (compensate.start_ns, compensate.end_ns, compensate.error) == (121_000_000_000, 132_000_000_000, None)
    assert [(e.name, dict(e.attributes)) for e in compensate.events] == [
        ("compensation_resumed", {"agentkeel.attempt": 2})
    ]
    assert compensate.parent_id == rollback.span_id and rollback.end_ns == 133_000_000_000
    run = run_span(spans, "rb")
    assert (run.end_ns, run.error, run.attributes["agentkeel.run.status"]) == (133_000_000_000, None, "rolled_back")
    assert [e.name for e in run.events] == ["run_resumed", "run_paused", "run_resumed"]
    check_incremental(events)
