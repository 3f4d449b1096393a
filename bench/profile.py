"""``python -m bench --profile memory|minimal|sqlite``: where one agentkeel step's time goes, under cProfile.

``memory`` and ``sqlite`` profile the suite's runs (``ScriptedModel``, an async tool); ``minimal`` swaps in
``MinimalModel`` to show the engine alone. Profiling slows Python code down unevenly (calls cost most), so the
figures rank the costs; the suite measures them.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import tempfile
from pathlib import Path

from agentkeel import Agent
from bench.engine_overhead import memory_agent, sqlite_agent, time_agent_run

TOP = 40


def profile(where: str, *, steps: int) -> str:
    with tempfile.TemporaryDirectory(prefix="agentkeel-profile-") as tmp, asyncio.Runner() as runner:

        def make() -> Agent:
            if where == "sqlite":
                return sqlite_agent(steps, Path(tmp) / "keel.db")
            return memory_agent(steps, minimal=where == "minimal")

        runner.run(time_agent_run(make(), steps))  # warm-up: imports, caches, the schema
        unprofiled = runner.run(time_agent_run(make(), steps))
        agent = make()
        profiler = cProfile.Profile()
        profiler.enable()
        elapsed = runner.run(time_agent_run(agent, steps))
        profiler.disable()
    stats = pstats.Stats(profiler)
    return _table(stats, steps, where, elapsed, unprofiled)


def _table(stats: pstats.Stats, steps: int, where: str, elapsed: float, unprofiled: float) -> str:
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if cumtime > elapsed * 1.05:
            continue  # the event loop's own frames, counted once per nesting
        rows.append((cumtime, tottime, calls, _where(filename, line, name)))
    rows.sort(reverse=True)
    out = io.StringIO()
    out.write(
        f"agentkeel, {where}: {steps} steps in {elapsed * 1e3:.1f} ms under cProfile "
        f"({elapsed * 1e6 / steps:.0f} µs/step; {unprofiled * 1e6 / steps:.0f} µs/step without it)\n\n"
    )
    out.write(f"{'cum µs/step':>12}{'own µs/step':>12}{'calls/step':>12}  function\n")
    for cumtime, tottime, calls, label in rows[:TOP]:
        out.write(f"{cumtime * 1e6 / steps:>12.1f}{tottime * 1e6 / steps:>12.1f}{calls / steps:>12.1f}  {label}\n")
    out.write(f"\n{'own µs/step':>12}{'calls/step':>12}  function (by own time)\n")
    for _, tottime, calls, label in sorted(rows, key=lambda row: row[1], reverse=True)[:TOP]:
        out.write(f"{tottime * 1e6 / steps:>12.1f}{calls / steps:>12.1f}  {label}\n")
    return out.getvalue()


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    path = Path(filename)
    parts = path.parts
    if "agentkeel" in parts:
        short = "/".join(parts[parts.index("agentkeel") :])
    elif "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        short = path.name
    return f"{short}:{line}({name})"
