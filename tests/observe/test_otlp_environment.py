"""The user's side of tracing: set ``OTEL_EXPORTER_OTLP_ENDPOINT`` and run ``keel run``: the receiver gets one
trace with the agent, model and tool spans nested, with tokens and cost. Run in a child process, as a user would
(the SDK's global provider can be set once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[2]


class Receiver(BaseHTTPRequestHandler):
    spans: ClassVar[list[Any]] = []
    resources: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                type(self).resources.append(attributes)
                for scope in resource_spans.scope_spans:
                    type(self).spans.extend(scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def endpoint() -> Iterator[str]:
    Receiver.spans, Receiver.resources = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return values


def keel_run(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``keel run`` of the support desk example in a child process, with ``env``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agentkeel.cli",
            "run",
            f"{ROOT / 'examples' / 'support_desk.py'}:agent",
            "Where is order #1234?",
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_otel_exporter_otlp_endpoint_is_all_it_takes(endpoint: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "support-desk",
        "OTEL_METRICS_EXPORTER": "none",
        "KEEL_STORE": f"sqlite:///{tmp_path / 'keel.db'}",
    }
    done = keel_run(env, tmp_path)
    assert done.returncode == 0, done.stderr
    spans = Receiver.spans
    names = [span.name for span in spans]
    assert sum(n.startswith("invoke_agent ") for n in names) == 1
    assert any(n.startswith("chat ") for n in names) and any(n.startswith("execute_tool ") for n in names)
    assert {span.trace_id for span in spans} == {spans[0].trace_id}  # one trace
    by_id = {span.span_id: span for span in spans}
    run = next(span for span in spans if span.name.startswith("invoke_agent"))
    for span in spans:
        if span is not run:
            assert span.parent_span_id in by_id, f"{span.name} has no parent in the trace"
    chat = next(span for span in spans if span.name.startswith("chat "))
    figures = attributes(chat)
    assert figures["gen_ai.usage.input_tokens"] > 0 and figures["gen_ai.usage.output_tokens"] > 0
    assert "agentkeel.run.cost_usd" in attributes(run)
    assert Receiver.resources and Receiver.resources[0]["service.name"] == "support-desk"


def test_a_collector_that_does_not_answer_costs_one_sentence_not_a_run(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "KEEL_STORE": f"sqlite:///{tmp_path / 'keel.db'}",
    }
    done = keel_run(env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "shipped" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # no retry warnings, no traceback
    assert f"could not be sent to http://127.0.0.1:{port}/v1/traces" in lines[0] and "keel export" in lines[0]
