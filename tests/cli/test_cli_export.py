"""``keel export`` against a real OTLP/HTTP receiver: a supervisor's tree arrives as one trace, nested as derived,
with the ids ``journal_spans`` computes; the choice of runs (ids, prefixes, --all --since --agent); and errors that
say what to do (an unknown run, an unreachable or refusing endpoint, a missing extra, a bad --since)."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from keel_harness import Keel
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentkeel.cli.exits import BUSY_OR_NOT_FOUND, USAGE
from agentkeel.cli.since import parse_since
from agentkeel.observe.ids import span_id, trace_id_of
from agentkeel.observe.spans import journal_spans

TREE = '''
from agentkeel import Agent, ScriptedModel, call, calls, reply, tool


@tool
def get_order(order_id: str) -> dict:
    """Look an order up."""
    return {"order_id": order_id, "paid": 40.0}


@tool(effect="write", idempotent=True)
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return "refunded"


researcher = Agent(
    name="researcher",
    model=ScriptedModel([call("get_order", order_id="#2"), reply("#2 was paid $40.")]),
    tools=[get_order],
)
refunder = Agent(
    name="refunder",
    model=ScriptedModel([call("issue_refund", order_id="#1", amount=40.0), reply("Refunded #1.")]),
    tools=[issue_refund],
)
agent = Agent(
    name="lead",
    model=ScriptedModel(
        [
            calls(
                ("delegate_to_researcher", {"task": "Check order #2"}),
                ("delegate_to_refunder", {"task": "Refund order #1: $40"}),
            ),
            reply("#1 refunded; #2 checked."),
        ]
    ),
    subagents=[researcher, refunder],
)
'''

SOLO = """
from agentkeel import Agent, ScriptedModel, reply

agent = Agent(name="solo", model=ScriptedModel([reply("Hello.")]))
"""


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each request, answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.paths.append(self.path)
                answer = ExportTraceServiceResponse().SerializeToString() if receiver.status == 200 else b"no"
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span that arrived, with its resource's attributes."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    assert scope_spans.scope.name == "agentkeel"
                    found += [(resource, span) for span in scope_spans.spans]
        return found


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    ):
        monkeypatch.delenv(name, raising=False)
    made = Receiver()
    thread = threading.Thread(target=made.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()
    thread.join()


def run_tree(keel: Keel) -> str:
    ref = f"{keel.write('tree.py', TREE)}:agent"
    done = keel("run", ref, "Refund #1, check #2")
    assert done.exit_code == 0, done.output
    [lead] = [run_id for run_id in keel.run_ids() if "." not in run_id]
    return lead


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_supervisors_tree_arrives_as_one_trace_with_the_derived_ids(keel: Keel, receiver: Receiver) -> None:
    lead = run_tree(keel)
    sent = keel("export", lead, "--endpoint", receiver.url)
    assert sent.exit_code == 0, sent.output
    assert "exported 3 runs, " in sent.output and f"to {receiver.url}/v1/traces (from --endpoint)" in sent.output
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}

    expected = {}
    for run_id in (lead, f"{lead}.1.1", f"{lead}.1.2"):
        for record in journal_spans(keel.events(run_id)):
            expected[record.span_id] = record
    arrived = receiver.spans()
    assert len(arrived) == len(expected)
    trace = trace_id_of(lead, None)
    for resource, span in arrived:
        assert resource["service.name"] == "agentkeel"
        assert int.from_bytes(span.trace_id, "big") == trace
        record = expected[int.from_bytes(span.span_id, "big")]
        parent = int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None
        assert (span.name, parent) == (record.name, record.parent_id)
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (record.start_ns, record.end_ns)
    by_id = {int.from_bytes(span.span_id, "big"): span for _, span in arrived}
    for child, agent, call_id in ((f"{lead}.1.1", "researcher", "1.1"), (f"{lead}.1.2", "refunder", "1.2")):
        root = by_id[span_id(child, "run")]
        assert root.name == f"invoke_agent {agent}"
        delegation = by_id[int.from_bytes(root.parent_span_id, "big")]
        assert delegation.name == f"execute_tool delegate_to_{agent}"
        assert delegation.span_id == span_id(lead, f"tool/{call_id}").to_bytes(8, "big")
        assert int.from_bytes(delegation.parent_span_id, "big") == span_id(lead, "step/1")
    top = by_id[span_id(lead, "run")]
    assert top.parent_span_id == b"" and top.name == "invoke_agent lead"
    text = str(receiver.requests)
    assert "Refund #1, check #2" not in text and "#2 was paid" not in text  # no content unless asked


def test_json_output_and_content_on_request(keel: Keel, receiver: Receiver) -> None:
    lead = run_tree(keel)
    sent = keel("export", lead, "--endpoint", receiver.url, "--content", "--json")
    assert sent.exit_code == 0, sent.output
    report = json.loads(sent.stdout)
    assert report["endpoint"] == f"{receiver.url}/v1/traces" and report["endpoint_from"] == "--endpoint"
    assert [(run["run_id"], run["agent"], run["status"]) for run in report["runs"]] == [
        (lead, "lead", "completed"),
        (f"{lead}.1.1", "researcher", "completed"),
        (f"{lead}.1.2", "refunder", "completed"),
    ]
    assert {run["trace_id"] for run in report["runs"]} == {f"{trace_id_of(lead, None):032x}"}
    assert report["spans"] == sum(run["spans"] for run in report["runs"]) == len(receiver.spans())
    text = str(receiver.requests)
    assert "Refund #1, check #2" in text and "#2 was paid $40." in text


def test_all_runs_since_a_time_of_one_agent(keel: Keel, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    lead = run_tree(keel)
    solo = keel("run", f"{keel.write('solo.py', SOLO)}:agent", "Say hello")
    assert solo.exit_code == 0, solo.output
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-desk")

    everything = keel("export", "--all", "--since", "1h", "--json")
    assert everything.exit_code == 0, everything.output
    report = json.loads(everything.stdout)
    assert report["endpoint_from"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert sorted(run["agent"] for run in report["runs"]) == ["lead", "refunder", "researcher", "solo"]
    assert {resource["service.name"] for resource, _ in receiver.spans()} == {"support-desk"}

    leads = keel("export", "--all", "--agent", "lead", "--json")
    assert [run["run_id"] for run in json.loads(leads.stdout)["runs"]] == [lead, f"{lead}.1.1", f"{lead}.1.2"]
    [solo_id] = [run_id for run_id in keel.run_ids() if run_id != lead and not run_id.startswith(f"{lead}.")]
    by_prefix = keel("export", solo_id[:-2], "--json")  # a unique prefix of an id will do
    assert [run["run_id"] for run in json.loads(by_prefix.stdout)["runs"]] == [solo_id]
    later = keel("export", "--all", "--since", "2999-01-01")
    assert later.exit_code == 0 and "nothing was sent" in later.output


def test_since_reads_spans_back_and_dates() -> None:
    assert parse_since("24h", 100_000.0) == 100_000.0 - 86_400
    assert parse_since("90m", 10_000.0) == 10_000.0 - 5_400
    assert parse_since("1.5d", 200_000.0) == 200_000.0 - 129_600
    assert parse_since("2026-05-01T00:00:00+00:00", 0.0) == 1_777_593_600.0


def test_errors_say_what_to_do(keel: Keel, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    lead = run_tree(keel)

    unknown = keel("export", "no-such-run", "--endpoint", receiver.url)
    assert unknown.exit_code == BUSY_OR_NOT_FOUND
    assert "no run 'no-such-run'" in unknown.output and "keel runs" in unknown.output

    port = closed_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")
    down = keel("export", lead)
    assert down.exit_code == USAGE
    assert f"cannot reach the OTLP endpoint http://127.0.0.1:{port}/v1/traces" in down.output
    assert "it comes from OTEL_EXPORTER_OTLP_ENDPOINT" in down.output
    assert "Traceback" not in down.output and "Transient error" not in down.output

    receiver.status = 400
    refused = keel("export", lead, "--endpoint", receiver.url)
    assert refused.exit_code == USAGE
    assert f"the OTLP endpoint {receiver.url}/v1/traces did not take the spans" in refused.output
    assert "it comes from --endpoint" in refused.output

    for args, said in (
        ((lead, "--all"), "give run ids or --all, not both"),
        ((), "say which runs to send"),
        ((lead, "--since", "1h"), "use them with --all"),
        (("--all", "--since", "yesterday"), "--since 'yesterday' is neither"),
    ):
        wrong = keel("export", *args, "--endpoint", receiver.url)
        assert wrong.exit_code == USAGE and said in wrong.output, (args, wrong.output)

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    missing = keel("export", lead, "--endpoint", receiver.url)
    assert missing.exit_code == USAGE and "pip install 'agentkeel[otel]'" in missing.output
