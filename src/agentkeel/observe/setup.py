"""Whether runs are traced, the OpenTelemetry way.

In order:

1. ``configure(tracer_provider=..., meter_provider=..., capture_content=...)`` — explicit, for this process.
2. A ``TracerProvider`` the application set globally (``trace.set_tracer_provider``, or ``opentelemetry-instrument``)
   — used as it is: its processors, exporters, sampler and resource.
3. The standard variables: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
   ``OTEL_TRACES_EXPORTER=otlp|console``) set and no provider, agentkeel sets up the SDK itself: a batch OTLP/HTTP
   exporter for spans and, unless ``OTEL_METRICS_EXPORTER=none``, a periodic one for metrics. ``OTEL_SDK_DISABLED``,
   ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS`` and the rest work as the SDK
   documents them. This needs the ``agentkeel[otel]`` extra.
4. Otherwise nothing is traced, and the engine's cost is one check per commit.

Message and argument content is recorded only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (or
``configure(capture_content=True)``), as the GenAI conventions ask.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from agentkeel.observe.environment import TRUE, Telemetry, from_environment
from agentkeel.redaction import logger

if TYPE_CHECKING:
    from agentkeel.core.events import RunStarted
    from agentkeel.observe.live import Live
    from agentkeel.stores.base import Store

log = logger("agentkeel.observe")
_lock = threading.Lock()
_explicit: Live | None = None
_disabled = False
_cached: tuple[Any, Live | None] | None = None
_env_checked = False
_auto: Telemetry | None = None
_UNKNOWN = object()
_env_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def configure(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
    enabled: bool = True,
) -> None:
    """Trace runs through these providers (default: the global ones), or not at all (``enabled=False``).

    A provider from the OpenTelemetry SDK gets span ids derived from run ids (its id generator is wrapped; other
    spans of the process keep their random ids), so that a resumed run continues its trace."""
    global _explicit, _disabled, _cached
    with _lock:
        _disabled = not enabled
        _cached = None
        if not enabled:
            _explicit = None
            return
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        from agentkeel.observe.live import Live  # made only when runs are traced

        _explicit = Live(provider, meters, capture_content=_capture(capture_content))


def reset() -> None:
    """Forget ``configure`` and what was found (tests)."""
    global _explicit, _disabled, _cached, _env_checked
    with _lock:
        _explicit, _disabled, _cached, _env_checked = None, False, None, False


def current_live() -> Live | None:
    """The tracing of this process, or None when runs are not traced."""
    if _explicit is not None:
        return _explicit
    if _disabled:
        return None
    if _env_checked and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _env_provider:
        return None  # no provider set and none asked for: the common case, without the API's environment lookup
    provider = trace.get_tracer_provider()
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    return _find(provider)


def run_created(store: Store, first: RunStarted) -> None:
    """A run's journal was created with ``first``: its trace starts (when runs are traced)."""
    live = current_live()
    if live is not None:
        live.started(store, first)


def _find(provider: Any) -> Live | None:
    global _cached, _env_checked
    with _lock:
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider) and not _env_checked:
            _env_checked = True
            provider = _from_environment() or provider
        live: Live | None = None
        if not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            from agentkeel.observe.live import Live  # made only when runs are traced

            live = Live(provider, metrics.get_meter_provider(), capture_content=_capture(None))
        _cached = (trace.get_tracer_provider(), live)
        return live


def _capture(setting: bool | None) -> bool:
    if setting is not None:
        return setting
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in TRUE


def _from_environment() -> Any:
    """The provider the standard variables ask for (set up and installed globally), or None."""
    global _auto
    _auto = from_environment()
    if _auto is None:
        return None
    log.info("tracing runs to %s", _auto.endpoint)
    return _auto.provider


def finish(timeout_s: float = 2.0) -> str | None:
    """At the end of a command: send what the providers set up from the environment still hold, within
    ``timeout_s``; a sentence for the person when something could not be sent (None otherwise, and when the
    application set up its own providers: their end is the application's)."""
    global _auto
    auto, _auto = _auto, None
    return auto.finish(timeout_s) if auto is not None else None
