"""Live tracing: the spans and metrics of runs, emitted as their events are committed.

Spans are not made while the engine works: they are derived from the journal (``observe/spans.py``), one
``SpanBuilder`` per run, fed each batch of events right after it is durable. So a live trace and a later
``keel export`` of the same run are the same spans with the same ids, and a run that crashed and resumed reads as
one trace: the resuming process primes a builder with the stored journal (the spans that ended before the crash
were emitted by the dead process) and the spans still open then (the run, the step, a call in flight) end with
their original start times.

A span is handed to OpenTelemetry when it ends, with its recorded start and end times and the ids derived from
the run: an SDK ``TracerProvider`` (the user's, with its processors, exporters, sampler and resource) gets it as a
finished ``ReadableSpan`` through its span processors (``_Direct``). Any other provider gets ``start_span``/``end``
calls, with its own ids: the spans then do not nest.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Status, StatusCode

from agentkeel.core.events import Event, RunEnded, RunPaused, RunStarted
from agentkeel.observe.metrics import RunMetrics
from agentkeel.observe.otel_terms import sampled_context, span_kind
from agentkeel.observe.spans import SpanBuilder, SpanRecord
from agentkeel.redaction import logger, redactor

if TYPE_CHECKING:
    from agentkeel.stores.base import Store

log = logger("agentkeel.observe")
_EMPTY = otel_context.Context()


class Live:
    """Emits finished spans and their metrics through a tracer provider and a meter provider."""

    def __init__(self, provider: Any, meter_provider: Any, *, capture_content: bool) -> None:
        from importlib.metadata import version

        __version__ = version("agentkeel")
        self.provider = provider
        self.capture_content = capture_content
        self._tracer = provider.get_tracer("agentkeel", __version__)
        self._direct = _Direct.of(provider, __version__, content=capture_content)
        if self._direct is None:
            log.warning(
                "tracing through %s, which is not the OpenTelemetry SDK's TracerProvider: spans keep the provider's "
                "own ids, so they do not nest (a run's spans are not joined to its run); use the SDK's provider",
                type(provider).__name__,
            )
        self._metrics = RunMetrics(meter_provider.get_meter("agentkeel", __version__)) if meter_provider else None
        self._builders: weakref.WeakKeyDictionary[Any, dict[str, SpanBuilder]] = weakref.WeakKeyDictionary()
        self._priming: dict[str, asyncio.Lock] = {}
        self._broken: set[str] = set()
        """Runs whose tracing failed in this process: said once, not retried at every commit."""

    # -- runs -----------------------------------------------------------------------------------------------

    def started(self, store: Store, first: RunStarted) -> None:
        """A run was created with ``first`` as its journal."""
        try:
            builder = SpanBuilder(capture_content=self.capture_content)
            self._runs(store)[first.run_id] = builder
            self.emit(builder.feed(first))
        except Exception as exc:  # tracing never fails a run
            self._failed(store, first.run_id, exc)

    async def committed(self, store: Store, run_id: str, after: int, events: Sequence[Event]) -> None:
        """``events`` were appended to ``run_id`` after its ``after`` first events."""
        if run_id in self._broken:
            return
        try:
            runs = self._runs(store)
            builder = runs.get(run_id)
            if builder is None:
                builder = await self._prime(store, runs, run_id, after)
            for event in events:
                self.emit(builder.feed(event))
            last = events[-1] if events else None
            if isinstance(last, RunEnded | RunPaused):  # the run leaves this process (a resume primes again)
                runs.pop(run_id, None)
        except Exception as exc:  # tracing never fails a run: the run goes on untraced in this process
            self._failed(store, run_id, exc)

    def _failed(self, store: Store, run_id: str, exc: Exception) -> None:
        self.forget(store, run_id)
        if len(self._broken) > 10_000:
            self._broken.clear()
        self._broken.add(run_id)
        self._priming.pop(run_id, None)
        log.warning("tracing run %s stopped in this process: %s: %s", run_id, type(exc).__name__, exc)

    def forget(self, store: Store, run_id: str) -> None:
        """The process stops driving ``run_id`` (its driver exits): its open spans are left to whoever resumes."""
        runs = self._builders.get(store)
        if runs is not None:
            runs.pop(run_id, None)

    def _runs(self, store: Store) -> dict[str, SpanBuilder]:
        runs = self._builders.get(store)
        if runs is None:
            runs = self._builders[store] = {}
        return runs

    async def _prime(self, store: Store, runs: dict[str, SpanBuilder], run_id: str, after: int) -> SpanBuilder:
        lock = self._priming.setdefault(run_id, asyncio.Lock())
        async with lock:
            builder = runs.get(run_id)
            if builder is None:
                builder = SpanBuilder(capture_content=self.capture_content)
                for event in (await store.load(run_id))[:after]:  # emitted by the process that committed them
                    builder.feed(event)
                runs[run_id] = builder
        self._priming.pop(run_id, None)
        return builder

    # -- spans ----------------------------------------------------------------------------------------------

    def emit(self, records: Iterable[SpanRecord]) -> None:
        """Hand finished spans to OpenTelemetry (and record their metrics). A failure of the provider's code is
        logged, never raised: tracing does not fail the work it traces."""
        try:
            for record in records:
                self._emit(record)
                if self._metrics is not None:
                    self._metrics.record(record)
        except Exception as exc:
            log.warning("a span could not be handed to OpenTelemetry: %s: %s", type(exc).__name__, exc)

    def _emit(self, record: SpanRecord) -> None:
        if self._direct is not None:
            self._direct.emit(record)
            return
        if record.parent_id is None:
            parent = _EMPTY
        else:
            nest = sampled_context(record.trace_id, record.parent_id)
            parent = trace.set_span_in_context(NonRecordingSpan(nest), _EMPTY)
        red = redactor()
        span = self._tracer.start_span(
            record.name,
            context=parent,
            kind=span_kind(record.kind),
            attributes=red.attributes(record.attributes),
            start_time=record.start_ns,
        )
        for event in record.events:
            span.add_event(event.name, red.attributes(event.attributes), event.time_ns)
        if record.error is not None:
            span.set_status(Status(StatusCode.ERROR, red.text(record.error)))
        span.end(end_time=record.end_ns)


class _Direct:
    """The SDK's provider, fed finished spans directly: a span made by ``start_span`` and ended at once costs
    about twice as much (its attributes are copied and checked one by one, locks taken, processors called twice),
    and ours are finished and checked already. The provider's sampler decides per trace, its processors (and so
    its exporters) get every sampled span, with its resource."""

    def __init__(self, processor: Any, resource: Any, sampler: Any, version: str, *, content: bool) -> None:
        from agentkeel.observe.sdk_spans import SpanMaker

        self._processor = processor
        self._sampler = sampler
        self._all = sampler is None or sampler.get_description().startswith("ParentBased{root:AlwaysOnSampler")
        self._decisions: dict[int, bool] = {}
        self._maker = SpanMaker(resource, version, all_attributes=content)

    @classmethod
    def of(cls, provider: Any, version: str, *, content: bool) -> _Direct | None:
        processor = getattr(provider, "_active_span_processor", None)
        if processor is None or not hasattr(processor, "on_end"):
            return None
        resource, sampler = getattr(provider, "_resource", None), getattr(provider, "sampler", None)
        return cls(processor, resource, sampler, version, content=content)

    def _sampled(self, record: SpanRecord) -> bool:
        if self._all:
            return True
        decided = self._decisions.get(record.trace_id)
        if decided is None:  # as the trace's root would be: the same answer for every span of the trace
            result = self._sampler.should_sample(None, record.trace_id, record.name)
            decided = bool(result.decision.is_sampled())
            if len(self._decisions) > 10_000:
                self._decisions.clear()
            self._decisions[record.trace_id] = decided
        return decided

    def emit(self, record: SpanRecord) -> None:
        if self._sampled(record):
            self._processor.on_end(self._maker.make(record))
