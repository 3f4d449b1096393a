"""Sending runs' spans to an OpenTelemetry backend after the fact (``keel export``).

A run's spans are derived from its journal (``spans.py``), so a run that was never traced live (tracing was off,
the collector was down, it ran before tracing was set up) can still be sent, with the same ids a live trace would
have had. The spans are handed to an SDK ``SpanExporter`` as ``ReadableSpan`` objects, with the recorded start
and end times and the ids derived from the run: nothing goes through a tracer, so nothing is sampled away or
re-timed.

A supervisor's run is sent with its subagents' runs. Each child's journal names the delegation span it nests under
(``RunStarted.trace_parent``), so the tree arrives as one trace; the children are found from the supervisor's
``delegate_to_*`` calls (a child's id is ``<parent run id>.<call id>``), not by scanning the store.

The OpenTelemetry SDK and the OTLP exporter are the ``agentkeel[otel]`` extra: they are imported only here, when
something is exported.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agentkeel.core.events import Event, RunStarted
from agentkeel.errors import ConfigError, KeelError, RunNotFound
from agentkeel.observe.ids import span_id, trace_id_of
from agentkeel.observe.spans import SpanRecord, journal_spans

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from agentkeel.stores.base import Store

EXTRA = "pip install 'agentkeel[otel]'"
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
"""Where the OTLP exporter sends spans when no variable says otherwise (a collector on this machine)."""
BATCH = 512
"""Spans per export request: a long run's trace goes in several requests, none near the exporter's size limit."""
DELEGATION = "delegate_to_"
_EXPORTER_LOGGER = "opentelemetry.exporter"


class ExportFailed(KeelError):
    """The backend did not take the spans: it could not be reached, or it refused them."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where spans go, and what said so (for a message that tells the operator what to change)."""

    url: str
    source: str
    """``--endpoint``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``default``."""

    def setting(self) -> str:
        """How to point it elsewhere, as a clause."""
        if self.source == "default":
            return (
                "no endpoint is set: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or pass "
                "--endpoint) to your collector's OTLP/HTTP address"
            )
        return f"it comes from {self.source}: point that at your collector's OTLP/HTTP address"


def destination(endpoint: str | None = None) -> Destination:
    """The OTLP/HTTP traces URL: ``endpoint`` (a base URL gets ``/v1/traces``, like OTEL_EXPORTER_OTLP_ENDPOINT; a
    URL with a path is used as it is), else the standard variables, else the local default. Resolved here rather
    than left to the exporter so that a message can name the URL and the setting it came from."""
    if endpoint:
        return Destination(_with_traces_path(endpoint.strip()), "--endpoint")
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return Destination(traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return Destination(f"{base.removesuffix('/')}/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT")
    return Destination(DEFAULT_ENDPOINT, "default")


def _with_traces_path(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.path in ("", "/"):
        return f"{parts.scheme}://{parts.netloc}/v1/traces"
    return parts.geturl()


# -- runs and their spans ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunSpans:
    """One run's spans, and what a listing says about it."""

    run_id: str
    agent: str
    status: str
    parent_id: str | None
    trace_id: int
    spans: list[SpanRecord]


def delegations(events: Sequence[Event]) -> list[str]:
    """The child run ids of a supervisor's delegations, in the order they started."""
    if not events or not isinstance(events[0], RunStarted):
        return []
    run_id = events[0].run_id
    return [
        f"{run_id}.{event.call}"
        for event in events
        if event.kind == "tool_call_started" and event.name.startswith(DELEGATION)
    ]


def run_spans(events: Sequence[Event], *, capture_content: bool = False) -> RunSpans:
    """A journal's spans, the ones still open ended at its last event (a run exported as it stands)."""
    first = events[0]
    if not isinstance(first, RunStarted):
        raise ConfigError("a journal must begin with run_started")
    spans = journal_spans(events, capture_content=capture_content)
    own = span_id(first.run_id, "run")
    status = next((s.attributes.get("agentkeel.run.status") for s in spans if s.span_id == own), None)
    trace = trace_id_of(first.run_id, first.trace_parent)
    return RunSpans(first.run_id, first.agent, str(status or "running"), first.parent_id, trace, spans)


async def tree_spans(
    store: Store, run_id: str, events: Sequence[Event] | None = None, *, capture_content: bool = False
) -> list[RunSpans]:
    """The run's spans and those of its subagents' runs (and theirs), parents first. ``events``: the run's
    journal, when the caller has it already. A delegation whose child was never created (the supervisor died
    first) has no run to send."""
    found: list[RunSpans] = []
    pending: list[tuple[str, Sequence[Event] | None]] = [(run_id, events)]
    seen: set[str] = set()
    while pending:
        current, journal = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if journal is None:
            try:
                journal = await store.load(current)
            except RunNotFound:
                if current == run_id:
                    raise
                continue
        found.append(run_spans(journal, capture_content=capture_content))
        pending.extend((child, None) for child in delegations(journal))
    return found


# -- the SDK ----------------------------------------------------------------------------------------------


def resource() -> Resource:
    """The exporting process's resource: ``service.name`` from OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES),
    else ``agentkeel``; the other OTEL_RESOURCE_ATTRIBUTES as the SDK reads them."""
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:
        raise ConfigError(f"exporting spans needs the OpenTelemetry SDK: {EXTRA}") from exc
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return Resource.create({} if named else {"service.name": "agentkeel"})


def readable_spans(records: Sequence[SpanRecord], *, on: Resource | None = None) -> list[ReadableSpan]:
    """The SDK's finished spans for ``records``: their own ids (sampled, local), parents, times, attributes,
    events and an ERROR status with its description where the record failed; redacted (a journal read from a store
    is redacted already, one built in memory may not be)."""
    try:
        import opentelemetry.sdk.trace  # noqa: F401  (the extra, asked for here so that its absence is said here)

        from agentkeel.observe.sdk_spans import SpanMaker
    except ImportError as exc:
        raise ConfigError(f"exporting spans needs the OpenTelemetry SDK: {EXTRA}") from exc
    maker = SpanMaker(on if on is not None else resource(), _version(), all_attributes=True)
    return [maker.make(record) for record in records]


def _version() -> str:
    try:
        return metadata.version("agentkeel")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return ""


def otlp_exporter(to: Destination) -> SpanExporter:
    """The OTLP/HTTP exporter for ``to``; headers, timeout, compression and certificates come from the standard
    OTEL_EXPORTER_OTLP_(TRACES_)* variables."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(f"exporting spans over OTLP needs the OpenTelemetry exporter: {EXTRA}") from exc
    return OTLPSpanExporter(endpoint=to.url)


def send(records: Sequence[SpanRecord], exporter: SpanExporter, *, to: Destination | None = None) -> None:
    """Export ``records`` in batches; ``ExportFailed`` (saying where, why, and what sets the endpoint) when the
    backend does not take one. The exporter's own log lines (its retries) are kept for that message instead of
    going to stderr."""
    spans = readable_spans(records)  # first: without the SDK, this is the error that names the extra
    from opentelemetry.sdk.trace.export import SpanExportResult

    sent = 0
    with _exporter_log() as said:
        for start in range(0, len(spans), BATCH):
            batch = spans[start : start + BATCH]
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                raise ExportFailed(_failure(to, said, sent))
            sent += len(batch)


def _failure(to: Destination | None, said: list[str], sent: int) -> str:
    before = f" ({sent} spans were sent before)" if sent else ""
    if to is None:
        reason = said[-1] if said else "the exporter reported a failure"
        return f"the spans could not be exported: {reason}{before}"
    unreachable = _unreachable(to.url)
    if unreachable:
        return f"cannot reach the OTLP endpoint {to.url} ({unreachable}){before}; {to.setting()}"
    reason = said[-1] if said else "it did not accept them"
    return f"the OTLP endpoint {to.url} did not take the spans: {reason}{before}; {to.setting()}"


def _unreachable(url: str) -> str:
    """Why nothing listens at ``url`` (empty when a connection can be made there)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"its port is not valid: {exc}"
    try:
        with socket.create_connection((host, port), timeout=3.0):
            return ""
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _exporter_log() -> Iterator[list[str]]:
    logger = logging.getLogger(_EXPORTER_LOGGER)
    handler = _Said()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
