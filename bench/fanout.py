"""A supervisor fanning out to 10 subagents at once (`python -m bench.fanout`).

Every model turn takes 50 ms (``asyncio.sleep``). The supervisor delegates to 10 subagents in one step, each of
which makes one tool call and answers (2 turns), then the supervisor answers: its 2 turns plus the longest branch
make the ideal wall time, 4 x 50 ms = 0.2 s, whatever the number of branches (with ``max_parallel`` at least as
large). The figure is the measured wall time against that ideal, on the in-memory store and on SQLite, median of
5 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agentkeel import Agent, MemoryStore, ModelRequest, ModelResponse, SQLiteStore, Store, call, calls, reply, tool
from bench.report import machine, source

BRANCHES = 10
LATENCY_S = 0.05
IDEAL_S = 4 * LATENCY_S
TARGET = 1.5
RESULTS = Path(__file__).resolve().parent / "results"


@tool
async def lookup(item: str) -> str:
    """Look an item up."""
    return f"{item}: in stock"


class Slow:
    """A scripted model whose every turn takes ``LATENCY_S``."""

    name = "scripted"

    def __init__(self, turns: Any) -> None:
        self.turns = turns

    async def respond(self, request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(LATENCY_S)
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        result: ModelResponse = self.turns(request, turn)
        return result


def worker_turn(request: ModelRequest, turn: int) -> ModelResponse:
    if turn == 0:
        return call("lookup", item=request.messages[0].text)  # type: ignore[union-attr]
    return reply("found it")


def lead_turn(request: ModelRequest, turn: int) -> ModelResponse:
    if turn == 0:
        return calls(*(("delegate_to_worker", {"task": f"item {n}"}) for n in range(BRANCHES)))
    return reply("all found")


async def wall_time(store: Store) -> float:
    worker = Agent(name="worker", model=Slow(worker_turn), tools=[lookup])
    lead = Agent(name="lead", model=Slow(lead_turn), subagents=[worker], max_parallel=BRANCHES, store=store)
    started = time.perf_counter()
    result = await lead.run("find every item")
    elapsed = time.perf_counter() - started
    if result.status != "completed":
        raise RuntimeError(f"the fan-out run did not complete: {result}")
    return elapsed


def measure(repeats: int = 5) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="agentkeel-fanout-") as tmp:
        for kind in ("memory", "sqlite"):
            samples = []
            for _ in range(repeats):
                store: Store = MemoryStore() if kind == "memory" else SQLiteStore(Path(tmp) / f"{uuid.uuid4().hex}.db")
                samples.append(asyncio.run(wall_time(store)))
            median = statistics.median(samples)
            figures[kind] = {"wall_s": median, "samples": samples, "x_ideal": median / IDEAL_S}
    return figures


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"fan-out: a supervisor delegating to {BRANCHES} subagents at once, {LATENCY_S * 1000:.0f} ms a model turn: "
        f"ideal {IDEAL_S:.2f} s (its 2 turns and the longest branch's 2)",
    ]
    for kind, figure in figures.items():
        verdict = "PASS" if figure["x_ideal"] <= TARGET else "MISS"
        lines.append(f"  {kind:8} {figure['wall_s']:.3f} s  {figure['x_ideal']:.2f}x ideal  (≤ {TARGET}x {verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    figures = measure(args.repeats)
    print(render(figures))
    out = RESULTS / f"fanout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures, "machine": machine(), "source": source()}, indent=2) + "\n")
    print(f"raw figures: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
