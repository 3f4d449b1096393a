"""The cost of tracing a run (`python -m bench.tracing`).

The per-step figure of ``bench.engine_overhead`` (an agent, a zero-latency scripted model, a trivial tool), in
four settings measured in the same rounds:

* **off**: no OpenTelemetry SDK configured (the default): the engine checks once per commit;
* **no-op exporter**: the SDK's ``TracerProvider`` with a batch processor whose exporter drops everything (the cost
  of making the spans);
* **OTLP**: a batch processor exporting over OTLP/HTTP to a receiver on 127.0.0.1 that reads and drops each request
  (the cost of the real thing, encoding and sending on the SDK's thread);
* **OTLP + metrics**: the same, with the run metrics recorded into an SDK ``MeterProvider``.

Each on the in-memory store (the engine alone: the harshest ratio) and on SQLite (the default store). The target
is **on ≤ 1.3x off**, per store. Medians over rounds; every setting runs in every round, so noise hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentkeel import MemoryStore, SQLiteStore
from agentkeel.observe import setup
from bench.engine_overhead import bench_agent, time_agent_run
from bench.report import machine, source

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.3
SETTINGS = ("off", "noop", "otlp", "otlp_metrics")


class _Sink(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def receiver() -> Iterator[str]:
    """An OTLP/HTTP endpoint on 127.0.0.1 that accepts and drops what it is sent."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def tracing(setting: str, endpoint: str) -> Iterator[Callable[[], None]]:
    """Configure agentkeel's tracing for one setting; yields a flush (so exporting is paid inside the round)."""
    if setting == "off":  # the default: no provider set, nothing in the environment
        setup.reset()
        try:
            yield lambda: None
        finally:
            setup.reset()
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    exporter: SpanExporter
    if setting == "noop":
        exporter = Drop()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    meters: Any = None
    if setting == "otlp_metrics":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    setup.configure(tracer_provider=provider, meter_provider=meters)
    try:
        yield provider.force_flush
    finally:
        setup.reset()
        provider.shutdown()
        if meters is not None:
            meters.shutdown()


async def one(setting: str, store_kind: str, steps: int, tmp: Path, endpoint: str) -> float:
    """µs per step of one run."""
    store = MemoryStore() if store_kind == "memory" else SQLiteStore(tmp / f"{setting}-{time.monotonic_ns()}.db")
    agent = bench_agent(steps=steps, store=store)
    with tracing(setting, endpoint) as flush:
        gc.collect()
        started = time.perf_counter()
        await time_agent_run(agent, steps)
        flush()
        elapsed = time.perf_counter() - started
    await store.close()
    return elapsed / (steps + 1) * 1e6


def measure(*, steps: int, rounds: int, warmup: int = 1) -> dict[str, Any]:
    samples: dict[str, list[float]] = {f"{store}_{s}": [] for store in ("memory", "sqlite") for s in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="agentkeel-tracing-") as tmp, receiver() as endpoint:
        for index in range(warmup + rounds):
            for key in samples:
                store_kind, setting = key.split("_", 1)
                value = asyncio.run(one(setting, store_kind, steps, Path(tmp), endpoint))
                if index >= warmup:
                    samples[key].append(value)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    ratios = {
        f"{store}_{s}_ratio": medians[f"{store}_{s}"] / medians[f"{store}_off"]
        for store in ("memory", "sqlite")
        for s in SETTINGS[1:]
    }
    return {"steps": steps, "rounds": rounds, "us_per_step": medians, "ratios": ratios}


def render(figures: dict[str, Any]) -> str:
    medians, ratios = figures["us_per_step"], figures["ratios"]
    lines = [f"Tracing overhead: µs per step, median of {figures['rounds']} rounds of {figures['steps']} steps"]
    names = {"off": "off", "noop": "on, no-op exporter", "otlp": "on, batch OTLP/HTTP", "otlp_metrics": "+ metrics"}
    for store in ("memory", "sqlite"):
        for setting in SETTINGS:
            value = medians[f"{store}_{setting}"]
            ratio = "" if setting == "off" else f"  {ratios[f'{store}_{setting}_ratio']:.2f}x off"
            lines.append(f"  {store:<7} {names[setting]:<22} {value:8.1f}{ratio}")
    traced = ("noop", "otlp")  # the target is the tracing's; metrics are reported beside it
    worst = {store: max(ratios[f"{store}_{s}_ratio"] for s in traced) for store in ("memory", "sqlite")}
    for store, ratio in worst.items():
        verdict = "PASS" if ratio <= TARGET else "MISS"
        lines.append(
            f"  {store}: tracing on/off, worst of no-op and OTLP, {ratio:.2f}x (target <= {TARGET}x) {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 steps, 1 round")
    args = parser.parse_args(argv)
    steps, rounds = (5, 1) if args.quick else (args.steps, args.rounds)
    figures = measure(steps=steps, rounds=rounds)
    print(render(figures))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tracing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({**figures, "machine": machine(), "source": source()}, indent=2))
    print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
