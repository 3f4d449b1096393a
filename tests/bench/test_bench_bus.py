"""``python -m bench.bus`` reports throughput and latency percentiles per backend (timings not checked)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bus


def test_the_bus_bench_reports_every_figure_per_backend(tmp_path: Path) -> None:
    figures = bus.measure(count=40, latency_count=20, interval_ms=0.0, repeats=1)
    assert {"memory", "sqlite", "redis"} == set(figures)
    measured = {kind: figure for kind, figure in figures.items() if "skipped" not in figure}
    assert {"memory", "sqlite"} <= set(measured)  # Redis: measured when reachable, else a reason
    for kind, figure in measured.items():
        assert figure["msgs_per_s"] > 0, kind
        assert 0 < figure["p50_ms"] <= figure["p95_ms"] <= figure["p99_ms"], kind
        assert len(figure["msgs_per_s_samples"]) == len(figure["latency_samples"]) == 1, kind
    if "skipped" in figures["redis"]:
        assert "Redis" in figures["redis"]["skipped"]
    rendered = bus.render(figures)
    assert "msgs/s" in rendered and "p99" in rendered


def test_the_bus_bench_writes_its_figures_as_json(tmp_path: Path) -> None:
    out = tmp_path / "bus.json"
    args = ["--messages", "20", "--latency-messages", "10", "--interval-ms", "0", "--repeats", "1", "--redis", ""]
    assert bus.main([*args, "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["figures"]["memory"]["msgs_per_s"] > 0
    assert written["figures"]["redis"] == {"skipped": "not asked for (--redis '')"}
    assert {"nproc", "python"} <= set(written["machine"])
