"""The SDK set up from the standard ``OTEL_*`` variables, for a process that set up nothing itself, and its end.

Exporters get a 5-second deadline per batch unless ``OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)TIMEOUT`` says otherwise
(the SDK's default, 10 s, doubled at exit by the metrics, makes a short command hang when the collector is down).
``finish`` flushes within a bound and says, in one sentence, what could not be sent: nothing is lost, the journal
holds every run and ``keel export`` sends it later.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from agentkeel.errors import ConfigError

TRUE = ("1", "true", "yes", "on")
"""How the variables say yes."""
EXPORT_TIMEOUT_S = 5.0


@dataclass
class Telemetry:
    """What ``from_environment`` set up."""

    provider: Any
    meters: Any | None
    exporter: Any
    endpoint: str
    metric_exporter: Any | None = None
    failed: int = 0
    """Spans the exporter could not send (counted by the ``_Watched`` wrapper)."""

    def _stop_exporters(self) -> None:
        self.exporter.shutdown()
        if self.metric_exporter is not None:
            self.metric_exporter.shutdown()

    def finish(self, timeout_s: float = 3.0) -> str | None:
        """Send what is left within ``timeout_s`` and shut down; a sentence when some spans were not sent."""
        gave_up = threading.Event()

        def give_up() -> None:  # an export retrying past the bound is stopped (its retries wait on this)
            gave_up.set()
            self._stop_exporters()

        watchdog = threading.Timer(timeout_s, give_up)
        watchdog.start()
        try:
            flushed = self.provider.force_flush(timeout_millis=int(timeout_s * 1000))
        finally:
            watchdog.cancel()
        if not flushed or self.failed or gave_up.is_set():
            flushed = False
            if not gave_up.is_set():
                self._stop_exporters()  # the collector does not answer: no final retries for the metrics
        self.provider.shutdown()
        if self.meters is not None:
            self.meters.shutdown(timeout_millis=int(timeout_s * 1000))
        if flushed and not self.failed:
            return None
        return (
            f"the traces could not be sent to {self.endpoint} (nothing is lost: the runs' journals hold them; "
            "`keel export RUN_ID` sends them once the collector answers)"
        )


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in TRUE:
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return exporter not in ("", "none") or bool(endpoint and exporter != "none")


def from_environment() -> Telemetry | None:
    """The SDK set up from the standard variables and installed as the global providers; None if they ask for
    nothing."""
    env = os.environ
    if not wanted(env):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as exc:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) is set, but the OpenTelemetry SDK is not "
            "installed: pip install 'agentkeel[otel]', or unset the variable"
        ) from exc
    console = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console"
    exporter: SpanExporter
    if console:
        exporter, endpoint = ConsoleSpanExporter(), "the console"
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(timeout=_timeout(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"))
        endpoint = getattr(exporter, "_endpoint", "") or "the OTLP endpoint"
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {"service.name": "agentkeel"})
    provider = TracerProvider(resource=resource)
    telemetry = Telemetry(provider=provider, meters=None, exporter=exporter, endpoint=endpoint)
    provider.add_span_processor(BatchSpanProcessor(_watched(exporter, telemetry)))
    trace.set_tracer_provider(provider)
    if not console and env.get("OTEL_METRICS_EXPORTER", "").strip().lower() != "none":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        metric_exporter = OTLPMetricExporter(timeout=_timeout(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"))
        telemetry.metric_exporter = metric_exporter
        telemetry.meters = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
        )
        metrics.set_meter_provider(telemetry.meters)
    return telemetry


def _timeout(env: Mapping[str, str], specific: str) -> float | None:
    """None (the SDK reads the variables) when one is set, else our shorter deadline."""
    if env.get(specific) or env.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
        return None
    return EXPORT_TIMEOUT_S


def _watched(exporter: Any, telemetry: Telemetry) -> Any:
    """The exporter, counting the spans it fails to send."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Watched(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            result: SpanExportResult = exporter.export(spans)
            if result is not SpanExportResult.SUCCESS:
                telemetry.failed += len(spans)
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return bool(exporter.force_flush(timeout_millis))

    return Watched()
