"""``python -m bench --quick`` runs end to end and reports every figure and every target (timings not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {
    "floor_a_us",
    "floor_b_us",
    "memory_async_us",
    "memory_sync_us",
    "memory_inline_us",
    "memory_minimal_us",
    "memory_long_us",
    "sqlite_async_us",
    "sqlite_write_us",
    "resume_load_ms",
    "resume_replay_ms",
    "resume_load_replay_ms",
    "resume_ms",
}
TARGETS = {"memory_async_us", "sqlite_write_us", "resume_ms"}


def test_quick_bench_reports_every_figure_and_target(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(out.read_text(encoding="utf-8"))

    assert set(result["figures"]) == FIGURES
    rounds = result["settings"]["rounds"]
    for key, figure in result["figures"].items():
        assert len(figure["samples"]) == rounds, key
        assert all(value > 0 for value in figure["samples"]), key
        assert figure["min"] <= figure["median"] <= figure["max"], key
    assert {target["figure"] for target in result["targets"]} == TARGETS
    assert {target["verdict"] for target in result["targets"]} <= {"PASS", "MISS"}
    assert {"nproc", "cpu", "python", "sqlite"} <= set(result["machine"])
    for label in ("floor A", "floor B", "resume", "verdict"):
        assert label in completed.stdout


def test_the_fanout_bench_reports_both_stores() -> None:
    from bench import fanout

    figures = fanout.measure(repeats=1)
    assert set(figures) == {"memory", "sqlite"}
    for figure in figures.values():
        assert figure["wall_s"] >= fanout.IDEAL_S  # no run can beat four 50 ms turns in a row
    assert "fan-out: a supervisor delegating to 10 subagents" in fanout.render(figures)


def test_the_tracing_bench_measures_every_setting_on_both_stores() -> None:
    from bench import tracing

    figures = tracing.measure(steps=3, rounds=1, warmup=0)
    assert set(figures["us_per_step"]) == {f"{s}_{t}" for s in ("memory", "sqlite") for t in tracing.SETTINGS}
    assert all(value > 0 for value in figures["us_per_step"].values())
    assert set(figures["ratios"]) == {f"{s}_{t}_ratio" for s in ("memory", "sqlite") for t in tracing.SETTINGS[1:]}
    text = tracing.render(figures)
    assert "on, batch OTLP/HTTP" in text and "target <= 1.3x" in text
