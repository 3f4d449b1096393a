"""Live tracing: the spans a traced process emits are the journal's spans (same ids, parents, times), a crashed and
resumed run reads as one trace, subagents and bus messages nest, the caller's span is respected, metrics follow
the spans, secrets stay out, and nothing is traced when no SDK is configured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from agentkeel import Agent, ModelRequest, ModelResponse, ScriptedModel, Store, ToolError, call, calls, reply, tool
from agentkeel.bus import MemoryBus, Route, route_workers
from agentkeel.observe import setup
from agentkeel.observe.ids import correlation_trace_id
from agentkeel.observe.spans import journal_spans
from agentkeel.redaction import MARKER
from agentkeel.stores.sqlite import SQLiteStore


class Crash(BaseException):
    """The process dies."""


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Runs traced through an SDK provider of the test's own (not the global one), into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.configure(tracer_provider=provider, meter_provider=None, capture_content=False)
    yield exporter
    setup.reset()
    provider.shutdown()


@tool
def get_order(order_id: str) -> dict[str, str]:
    """Look an order up."""
    if order_id == "#0":
        raise ToolError("Order #0 does not exist; order numbers start at #1.")
    return {"order_id": order_id, "status": "shipped"}


def key(span: ReadableSpan) -> tuple[Any, ...]:
    context, parent = span.context, span.parent
    assert context is not None
    return (
        span.name,
        context.trace_id,
        context.span_id,
        parent.span_id if parent else None,
        span.start_time,
        span.end_time,
    )


def journal_keys(events: list[Any]) -> set[tuple[Any, ...]]:
    return {(r.name, r.trace_id, r.span_id, r.parent_id, r.start_ns, r.end_ns) for r in journal_spans(events)}


async def test_the_live_spans_are_the_journal_s_spans(exported: InMemorySpanExporter, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    model = ScriptedModel([call("get_order", order_id="#0"), call("get_order", order_id="#1"), reply("Shipped.")])
    result = await Agent(name="desk", model=model, tools=[get_order], store=store).run("Where is my order?")
    journal = await store.load(result.run_id)
    await store.close()

    spans = exported.get_finished_spans()
    assert {key(span) for span in spans} == journal_keys(journal)
    assert len(spans) == len({key(span) for span in spans})  # each span once
    names = sorted(span.name for span in spans)
    assert names == sorted(
        ["invoke_agent desk", "step 1", "step 2", "step 3"] + ["chat scripted"] * 3 + ["execute_tool get_order"] * 2
    )
    failed = [s for s in spans if s.name == "execute_tool get_order" and s.status.status_code.name == "ERROR"]
    assert len(failed) == 1
    run = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert run.parent is None and run.attributes is not None
    assert (run.attributes["agentkeel.run.status"], run.attributes["gen_ai.agent.name"]) == ("completed", "desk")


async def test_a_crashed_and_resumed_run_reads_as_one_trace(
    exported: InMemorySpanExporter, tmp_path: Path, clock: Any
) -> None:
    store = SQLiteStore(tmp_path / "keel.db", clock=clock)
    dying = {"armed": True}

    def script(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        if turn == 2 and dying["armed"]:
            dying["armed"] = False
            raise Crash()
        return [call("get_order", order_id="#1"), call("get_order", order_id="#2"), reply("Both shipped.")][turn]

    def agent() -> Agent:
        return Agent(name="desk", model=ScriptedModel(script), tools=[get_order], store=store, lease_s=30.0)

    with pytest.raises(Crash):
        await agent().run("Where are #1 and #2?", run_id="crashy")
    before = {key(span) for span in exported.get_finished_spans()}
    assert not any(name.startswith("invoke_agent") for name, *_ in before)  # the run span is still open
    clock.now += 31.0
    result = await agent().resume("crashy")
    journal = await store.load("crashy")
    await store.close()

    assert result.status == "completed"
    spans = exported.get_finished_spans()
    assert {key(span) for span in spans} == journal_keys(journal)  # the same spans as an uncrashed export
    assert len({span.context.trace_id for span in spans if span.context}) == 1
    run = [s for s in spans if s.name == "invoke_agent desk"]
    assert len(run) == 1 and run[0].start_time == int(journal[0].at * 1e9)  # its original start
    ids = {span.context.span_id for span in spans if span.context}
    assert all(span.parent is None or span.parent.span_id in ids for span in spans)  # no orphans


async def test_subagent_runs_nest_under_their_delegation(exported: InMemorySpanExporter, store: Store) -> None:
    worker = Agent(
        name="worker", model=ScriptedModel([call("get_order", order_id="#1"), reply("#1 shipped")]), tools=[get_order]
    )
    lead = Agent(
        name="lead",
        model=ScriptedModel([calls(("delegate_to_worker", {"task": "check #1"})), reply("done")]),
        subagents=[worker],
        store=store,
    )
    result = await lead.run("Check #1", run_id="tree")
    assert result.status == "completed"
    spans = {span.name: span for span in exported.get_finished_spans()}
    child, delegation = spans["invoke_agent worker"], spans["execute_tool delegate_to_worker"]
    assert child.parent is not None and delegation.context is not None
    assert child.parent.span_id == delegation.context.span_id
    assert len({span.context.trace_id for span in spans.values() if span.context}) == 1


async def test_a_run_started_inside_the_caller_s_span_nests_under_it(exported: InMemorySpanExporter) -> None:
    provider = TracerProvider()
    mine = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mine))
    agent = Agent(name="desk", model=ScriptedModel([reply("Hello.")]), store="memory://")
    with provider.get_tracer("app").start_as_current_span("POST /chat") as request:
        await agent.run("Hi")
    run = next(s for s in exported.get_finished_spans() if s.name == "invoke_agent desk")
    assert run.parent is not None and run.context is not None
    assert (run.context.trace_id, run.parent.span_id) == (
        request.get_span_context().trace_id,
        request.get_span_context().span_id,
    )


async def test_bus_messages_of_one_piece_of_work_share_a_trace_and_hold_their_runs(
    exported: InMemorySpanExporter,
) -> None:
    bus = MemoryBus()
    first = Agent(name="first", model=ScriptedModel(lambda r: reply("one")), store="memory://")
    second = Agent(name="second", model=ScriptedModel(lambda r: reply("two")), store="memory://")
    routes = [Route("a", first, reply="b"), Route("b", second, reply="c")]
    request = await bus.publish("a", "start")
    first_worker, second_worker = route_workers(bus, routes)
    assert await first_worker.step() == 1  # "a" handled: its reply is on "b"
    assert await second_worker.step() == 1
    spans = exported.get_finished_spans()
    trace_id = correlation_trace_id(request.correlation_id)
    assert {span.context.trace_id for span in spans if span.context} == {trace_id}
    process = {s.name: s for s in spans if s.name.startswith("process ")}
    origin = next(s for s in spans if s.name == "publish a")
    assert set(process) == {"process a", "process b"}
    assert all(
        s.parent is not None and origin.context and s.parent.span_id == origin.context.span_id for s in process.values()
    )
    run = next(s for s in spans if s.name == "invoke_agent second")
    assert run.parent is not None and process["process b"].context is not None
    assert run.parent.span_id == process["process b"].context.span_id
    await bus.close()


async def test_metrics_follow_the_spans(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    provider = TracerProvider()
    setup.configure(tracer_provider=provider, meter_provider=meters)
    try:
        model = ScriptedModel([call("get_order", order_id="#0"), call("get_order", order_id="#1"), reply("Ok.")])
        result = await Agent(name="desk", model=model, tools=[get_order], store="memory://").run("Where?")
    finally:
        setup.reset()
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == 3
    assert [(p.attributes["gen_ai.tool.name"], p.value) for p in points["agentkeel.tool.errors"]] == [("get_order", 1)]
    runs = points["agentkeel.runs"]
    assert [(p.attributes["agentkeel.run.status"], p.value) for p in runs] == [("completed", 1)]
    meters.shutdown()


async def test_secrets_stay_out_of_spans_even_with_content(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.configure(tracer_provider=provider, meter_provider=None, capture_content=True)
    key_text = "sk-live-9f8e7d6c5b4a3928171605f4e3d2c1b0"

    @tool
    def login(user: str, password: SecretStr) -> str:
        """Log in."""
        raise ToolError(f"login failed for {user} with api key {key_text}")

    try:
        model = ScriptedModel([call("login", user="ops", password="hunter2-hunter2"), reply(f"Key: {key_text}")])
        await Agent(name="desk", model=model, tools=[login], store="memory://").run(f"Use {key_text}")
    finally:
        setup.reset()
    texts: list[str] = []
    for span in exporter.get_finished_spans():
        texts.extend(str(value) for value in (span.attributes or {}).values())
        texts.extend(str(value) for event in span.events for value in (event.attributes or {}).values())
        texts.append(span.status.description or "")
    joined = "\n".join(texts)
    assert "gen_ai.input.messages" in {k for s in exporter.get_finished_spans() for k in (s.attributes or {})}
    assert key_text not in joined and "hunter2-hunter2" not in joined
    assert MARKER in joined


def test_nothing_is_traced_without_an_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    setup.reset()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no global provider in the tests
    assert setup.current_live() is None
    result = asyncio.run(Agent(name="desk", model=ScriptedModel([reply("Hi.")]), store="memory://").run("Hi"))
    assert result.status == "completed"


async def test_the_provider_s_sampler_keeps_or_drops_a_trace_whole() -> None:
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.configure(tracer_provider=provider, meter_provider=None)
    try:
        agent = Agent(name="desk", model=ScriptedModel(lambda r: reply("Hi.")), store="memory://")
        for n in range(40):
            await agent.run(f"hello {n}")
    finally:
        setup.reset()
    per_trace: dict[int, set[str]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        per_trace.setdefault(span.context.trace_id, set()).add(span.name)
    assert 5 <= len(per_trace) <= 35  # about half the runs kept (the ratio is on the trace id)
    assert all(names == {"invoke_agent desk", "step 1", "chat scripted"} for names in per_trace.values())


async def test_a_tracing_failure_never_fails_the_run(
    exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agentkeel.observe import spans

    def broken(self: Any, event: Any) -> list[Any]:
        raise RuntimeError("a bug in the span builder")

    monkeypatch.setattr(spans.SpanBuilder, "feed", broken)
    model = ScriptedModel([call("get_order", order_id="#1"), reply("Shipped.")])
    result = await Agent(name="desk", model=model, tools=[get_order], store="memory://").run("Where is #1?")
    assert (result.status, result.output) == ("completed", "Shipped.")
    assert exported.get_finished_spans() == ()
    said = [r.getMessage() for r in caplog.records if "a bug in the span builder" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"tracing run {result.run_id} stopped")  # once, not per commit


async def test_a_malformed_trace_parent_is_refused_with_the_expected_form() -> None:
    from agentkeel import ConfigError

    agent = Agent(name="desk", model=ScriptedModel([reply("Hi.")]), store="memory://")
    with pytest.raises(ConfigError, match="not a W3C traceparent: write 00-<32 hex trace id>"):
        await agent.run("Hi", trace_parent="00-not-a-trace")
    nested = await agent.run("Hi", trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    state = await agent.state(nested.run_id)
    assert state.trace_parent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
