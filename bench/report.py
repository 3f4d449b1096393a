"""Medians, ratios against the targets, the table on screen and the JSON file with the raw figures."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.suite import FIGURES, Settings


@dataclass(frozen=True, kw_only=True)
class Target:
    """``figure`` ≤ ``limit`` x ``baseline`` (or ≤ ``limit`` in the figure's unit when there is no baseline)."""

    label: str
    figure: str
    limit: float
    baseline: str | None = None


TARGETS = (
    Target(label="in memory, async tool ≤ 3x floor A", figure="memory_async_us", baseline="floor_a_us", limit=3.0),
    Target(label="durable ≤ 1.5x floor B", figure="sqlite_write_us", baseline="floor_b_us", limit=1.5),
    Target(label="resume of a {resume_steps:,}-step run ≤ 100 ms", figure="resume_ms", limit=100.0),
)


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }


def source() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes on top of it (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, env=env, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "changed": None}
    return {"commit": commit, "changed": bool(changes.strip())}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(samples: dict[str, list[float]], settings: Settings) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for figure in FIGURES:
        values = samples[figure.key]
        figures[figure.key] = {
            "label": figure.label.format(**asdict(settings)),
            "unit": figure.unit,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "floor": figure.floor,
            "samples": values,
        }
    for entry in figures.values():
        floor = entry["floor"]
        entry["vs_floor"] = entry["median"] / figures[floor]["median"] if floor else None
    return figures


def verdicts(figures: dict[str, dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    results = []
    for target in TARGETS:
        value = figures[target.figure]["median"]
        if target.baseline is None:
            ratio = None
            passed = value <= target.limit
        else:
            ratio = value / figures[target.baseline]["median"]
            passed = ratio <= target.limit
        label = target.label.format(**asdict(settings))
        results.append(
            {**asdict(target), "label": label, "value": value, "ratio": ratio, "verdict": "PASS" if passed else "MISS"}
        )
    return results


def report(samples: dict[str, list[float]], settings: Settings, *, date: str) -> dict[str, Any]:
    figures = summarise(samples, settings)
    return {
        "date": date,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": machine(),
        "source": source(),
        "settings": asdict(settings),
        "figures": figures,
        "targets": verdicts(figures, settings),
    }


def render(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        f"agentkeel bench, {result['date']}: {settings['steps']} steps a run, resume of "
        f"{settings['resume_steps']:,} steps, median of {settings['rounds']} rounds after {settings['warmup']} "
        "warm-up",
        _machine_line(result["machine"]),
        _source_line(result["source"]),
        "",
        f"{'figure':<46}{'median':>9}{'min':>9}{'max':>9}  {'unit':<8}{'x floor':>8}",
    ]
    for figure in result["figures"].values():
        ratio = f"{figure['vs_floor']:.2f}x" if figure["vs_floor"] is not None else ""
        lines.append(
            f"{figure['label']:<46}{figure['median']:>9.1f}{figure['min']:>9.1f}{figure['max']:>9.1f}  "
            f"{figure['unit']:<8}{ratio:>8}"
        )
    lines += ["", f"{'target':<46}{'value':>9}  verdict"]
    for target in result["targets"]:
        value = f"{target['ratio']:.2f}x" if target["ratio"] is not None else f"{target['value']:.1f} ms"
        lines.append(f"{target['label']:<46}{value:>9}  {target['verdict']}")
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    """The figures and the targets as Markdown tables, for docs/benchmarks.md."""
    lines = ["| figure | median | min | max | unit | x floor |", "| --- | ---: | ---: | ---: | --- | ---: |"]
    for figure in result["figures"].values():
        ratio = f"{figure['vs_floor']:.2f}x" if figure["vs_floor"] is not None else ""
        lines.append(
            f"| {figure['label']} | {figure['median']:.1f} | {figure['min']:.1f} | {figure['max']:.1f} "
            f"| {figure['unit']} | {ratio} |"
        )
    lines += ["", "| target | value | verdict |", "| --- | ---: | --- |"]
    for target in result["targets"]:
        value = f"{target['ratio']:.2f}x" if target["ratio"] is not None else f"{target['value']:.1f} ms"
        lines.append(f"| {target['label']} | {value} | **{target['verdict']}** |")
    return "\n".join(lines)


def _source_line(info: dict[str, Any]) -> str:
    if not info["commit"]:
        return "source: not a git checkout"
    return f"source: commit {info['commit'][:12]}{' with uncommitted changes' if info['changed'] else ''}"


def _machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['nproc']} CPUs, {info['implementation']} {info['python']}, SQLite {info['sqlite']}, "
        f"{info['platform']}"
    )
