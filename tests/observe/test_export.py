"""From span records to the SDK's spans and through an exporter: ids, parents, times, statuses and the resource
as derived; where spans go and what says so; failures that name the endpoint; a missing extra that names it."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentkeel import Agent, ConfigError, MemoryStore, ScriptedModel, ToolError, call, reply, tool
from agentkeel.core.events import RunStarted, ToolCallStarted
from agentkeel.core.state import replay
from agentkeel.observe.export import Destination, ExportFailed, destination, otlp_exporter, send, tree_spans
from agentkeel.observe.ids import span_id
from agentkeel.observe.spans import SpanEvent, SpanRecord, journal_spans
from agentkeel.stores.base import RunRow


async def failing_run() -> list[SpanRecord]:
    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        raise ToolError(f"order {order_id} not found")

    store = MemoryStore()
    agent = Agent(
        name="support",
        model=ScriptedModel([call("lookup", order_id="#5"), reply("Not found.")]),
        tools=[lookup],
        store=store,
    )
    result = await agent.run("Where is #5?", run_id="exp")
    return journal_spans(await store.load(result.run_id))


@pytest.fixture
def no_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)


async def test_the_sdk_gets_the_derived_spans_as_they_are(no_service_name: None) -> None:
    records = await failing_run()
    exporter = InMemorySpanExporter()
    send(records, exporter)
    finished = exporter.get_finished_spans()
    assert len(finished) == len(records)
    for record, span in zip(records, finished, strict=True):
        context = span.get_span_context()
        assert context is not None
        assert (context.trace_id, context.span_id, context.is_remote) == (record.trace_id, record.span_id, False)
        assert context.trace_flags.sampled
        assert (span.parent.span_id if span.parent else None) == record.parent_id
        assert (span.name, span.start_time, span.end_time) == (record.name, record.start_ns, record.end_ns)
        assert span.kind == (SpanKind.CLIENT if record.kind == "client" else SpanKind.INTERNAL)
        assert dict(span.attributes or {}) == dict(record.attributes)
        assert [(e.name, e.timestamp) for e in span.events] == [(e.name, e.time_ns) for e in record.events]
        assert span.resource.attributes["service.name"] == "agentkeel"
        assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "agentkeel"
    failed = next(span for span in finished if span.name == "execute_tool lookup")
    assert (failed.status.status_code, failed.status.description) == (
        StatusCode.ERROR,
        "tool_error (agentkeel.errors.ToolError)",
    )
    run = next(span for span in finished if span.name == "invoke_agent support")
    assert run.status.status_code is StatusCode.UNSET and run.parent is None
    assert run.get_span_context().span_id == span_id("exp", "run")  # type: ignore[union-attr]


async def test_the_service_name_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-agents")
    exporter = InMemorySpanExporter()
    send(await failing_run(), exporter)
    assert {span.resource.attributes["service.name"] for span in exporter.get_finished_spans()} == {"billing-agents"}


class Refusing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_failure_says_where_the_spans_were_going_and_what_set_it() -> None:
    records = await failing_run()
    with pytest.raises(ExportFailed, match="could not be exported"):
        send(records, Refusing())
    url = f"http://127.0.0.1:{closed_port()}/v1/traces"
    with pytest.raises(ExportFailed) as failed:
        send(records, Refusing(), to=Destination(url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    message = str(failed.value)
    assert f"cannot reach the OTLP endpoint {url}" in message
    assert "it comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in message


def test_where_spans_go(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert destination() == Destination("http://localhost:4318/v1/traces", "default")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert destination() == Destination("http://collector:4318/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example.com/otlp/v1/traces")
    assert destination() == Destination(
        "https://traces.example.com/otlp/v1/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    assert destination("http://127.0.0.1:4318") == Destination("http://127.0.0.1:4318/v1/traces", "--endpoint")
    assert destination("127.0.0.1:4318") == Destination("http://127.0.0.1:4318/v1/traces", "--endpoint")
    assert destination("http://h:1/custom/path") == Destination("http://h:1/custom/path", "--endpoint")
    assert "set OTEL_EXPORTER_OTLP_ENDPOINT" in Destination("http://localhost:4318/v1/traces", "default").setting()


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install 'agentkeel\[otel\]'"):
        otlp_exporter(destination("http://127.0.0.1:4318"))
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"pip install 'agentkeel\[otel\]'"):
        send([], InMemorySpanExporter())


async def test_a_delegation_whose_child_never_started_is_left_out() -> None:
    store = MemoryStore()
    first = RunStarted(at=1_000.0, run_id="sup", agent="lead", task="t", model="scripted")
    started = ToolCallStarted(
        at=1_001.0,
        call="1.1",
        tool_call_id="c1",
        name="delegate_to_helper",
        arguments={"task": "x"},
        idempotency_key="k",
    )
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner="dead", lease_s=30)
    state.apply(started)
    await store.append("sup", "dead", 1, [started], RunRow.of(state))
    [only] = await tree_spans(store, "sup")
    assert (only.run_id, only.status) == ("sup", "running")
    delegation = next(span for span in only.spans if span.name == "execute_tool delegate_to_helper")
    assert delegation.attributes["agentkeel.child_run.id"] == "sup.1.1"
    assert delegation.attributes["agentkeel.unfinished"] is True


def test_secrets_are_redacted_on_the_way_out(no_service_name: None) -> None:
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    record = SpanRecord(
        trace_id=1,
        span_id=2,
        parent_id=None,
        name="execute_tool login",
        kind="internal",
        start_ns=10,
        end_ns=20,
        attributes={"gen_ai.tool.call.arguments": f'{{"api_key": "{key}"}}', "agentkeel.tool.attempts": 1},
        error=f"tool_error: rejected {key}",
        events=(SpanEvent("tool_call_retrying", 15, {"error.message": f"bad key {key}"}),),
    )
    exporter = InMemorySpanExporter()
    send([record], exporter)
    [span] = exporter.get_finished_spans()
    shown = f"{dict(span.attributes or {})} {span.status.description} {[dict(e.attributes or {}) for e in span.events]}"
    assert key not in shown and shown.count("[REDACTED]") == 3
    assert span.attributes is not None and span.attributes["agentkeel.tool.attempts"] == 1
