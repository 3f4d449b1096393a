"""Many runs at once: N concurrent runs of 5 steps, every model turn taking 50 ms (`python -m bench.concurrency`).

The ideal wall time is 5 x 50 ms = 0.25 s whatever N is: the model latencies overlap and the engine's own work
should hide inside them. The figure is the measured wall time and its ratio to that ideal, per store, plus the
memory a run holds while it is parked (waiting on its model), measured with tracemalloc in a separate pass. The
``floor`` row is the event loop alone (the same tasks sleeping, no agent): what asyncio costs for the workload.

Each store is measured in up to three set-ups, alternated round by round: ``default`` (the interpreter as it comes),
``tune_gc`` (one process after ``agentkeel.tune_gc()``, as ``keel bus work`` runs) and ``2 processes`` (the runs
split between two tuned processes on the same store, started together: what the machine's second core adds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from agentkeel import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    Store,
    call,
    open_store,
    reply,
    restore_gc,
    tool,
    tune_gc,
)
from bench.report import machine, source

STEPS = 5
LATENCY_S = 0.05
IDEAL_S = STEPS * LATENCY_S
TARGETS = {"memory": 1.3, "sqlite": 2.0, "postgres": 2.0}
PARKED_KB_TARGET = 10.0
SETUPS = ("default", "tune_gc", "2 processes")
PROCESSES = 2
RESULTS = Path(__file__).resolve().parent / "results"


@tool
async def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"order_id": order_id, "status": "shipped"}


class SlowModel:
    """Four tool calls then an answer, each turn after ``latency_s``; counts the runs parked inside it."""

    name = "scripted"

    def __init__(self, latency_s: float, parked_target: int = 0) -> None:
        self.latency_s = latency_s
        self.parked = 0
        self.parked_target = parked_target
        self.all_parked = asyncio.Event()
        self.release = asyncio.Event()
        self.turns: list[tuple[int, float]] | None = None
        """When set (``--timeline``): each turn's step (0-4) and when it began (``time.monotonic``)."""

    async def respond(self, request: ModelRequest) -> ModelResponse:
        done = (len(request.messages) - 1) // 2
        if self.turns is not None:
            self.turns.append((done, time.monotonic()))
        if self.parked_target:
            self.parked += 1
            if self.parked == self.parked_target:
                self.all_parked.set()
            await self.release.wait()
            self.parked -= 1
        else:
            await asyncio.sleep(self.latency_s)
        if done < STEPS - 1:
            return call("lookup_order", order_id=f"#{done:04d}")
        return reply("All shipped.")


def store_url(kind: str, tmp: Path) -> str:
    """Where a fresh store of the kind lives (PostgreSQL: a fresh schema, dropped by ``drop_schema``)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'{uuid.uuid4().hex}.db'}"
    url = os.environ.get("KEEL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}schema=bench_{uuid.uuid4().hex[:8]}"


def make_store(kind: str, tmp: Path) -> Store:
    """A fresh store of the kind (PostgreSQL: a fresh schema, dropped by ``drop_schema``)."""
    return open_store(store_url(kind, tmp))


async def drive_runs(agent: Agent, runs: int, label: str = "") -> tuple[float, float, float]:
    """Start ``runs`` runs together; when they started and ended (``time.monotonic``, comparable across processes)
    and the CPU time the process spent meanwhile."""
    started, cpu = time.monotonic(), time.process_time()
    results = await asyncio.gather(*(agent.run(f"task {label}{n}") for n in range(runs)))
    ended, cpu = time.monotonic(), time.process_time() - cpu
    bad = [r for r in results if r.status != "completed" or r.steps != STEPS]
    if bad:
        raise RuntimeError(f"{len(bad)} of {runs} runs did not complete in {STEPS} steps: {bad[0]}")
    return started, ended, cpu


async def wall_time(
    kind: str, runs: int, tmp: Path, *, tuned: bool = False, turns: list[tuple[int, float]] | None = None
) -> tuple[float, float]:
    """The wall time of ``runs`` runs started together in this process, and its CPU time. The store is opened (and
    migrated) before the clock starts, as a service's is before its runs arrive; ``turns`` collects when each model
    turn began, relative to the start."""
    store = make_store(kind, tmp)
    model = SlowModel(LATENCY_S)
    model.turns = turns
    agent = Agent(name="many", model=model, tools=[lookup_order], store=store)
    await store.list_runs(limit=1)  # connected and migrated before the clock starts (as in `2 processes`)
    replaced = tune_gc() if tuned else None
    try:
        started, ended, cpu = await drive_runs(agent, runs)
        if turns is not None:
            turns[:] = [(step, at - started) for step, at in turns]
    finally:
        if replaced is not None:
            restore_gc(replaced)
        await store.close()
        if kind == "postgres":
            await drop_schema(store)
    return ended - started, cpu


def processes_wall_time(kind: str, runs: int, tmp: Path, processes: int = PROCESSES) -> tuple[float, float]:
    """``runs`` runs split between ``processes`` tuned processes on one store, started together: the wall time from
    the first start to the last end, and the CPU time of the processes together."""
    url = store_url(kind, tmp)
    if kind != "memory":  # created (and migrated) once, before the processes share it
        asyncio.run(_touch(url))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    spans = context.Queue()
    children = [
        context.Process(target=_share_of_runs, args=(url, runs // processes, f"{n}-", barrier, spans))
        for n in range(processes)
    ]
    try:
        for child in children:
            child.start()
        try:
            got = [spans.get(timeout=120) for _ in children]
        except queue.Empty:
            codes = ", ".join(str(child.exitcode) for child in children)
            raise RuntimeError(f"a process gave no answer within 120 s (exit codes: {codes})") from None
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        if kind == "postgres":
            asyncio.run(drop_schema(open_store(url)))
    failed = [span for span in got if isinstance(span, str)]
    if failed:
        raise RuntimeError(f"a process failed: {failed[0]}")
    return max(end for _, end, _ in got) - min(start for start, _, _ in got), sum(cpu for _, _, cpu in got)


async def _touch(url: str) -> None:
    store = open_store(url)
    try:
        await store.list_runs(limit=1)
    finally:
        await store.close()


def _share_of_runs(url: str, runs: int, label: str, barrier: Any, spans: Any) -> None:
    async def share() -> tuple[float, float, float]:
        store = open_store(url)  # memory://: each process its own
        agent = Agent(name="many", model=SlowModel(LATENCY_S), tools=[lookup_order], store=store)
        await store.list_runs(limit=1)  # connected before the clock starts
        tune_gc()
        barrier.wait()
        try:
            return await drive_runs(agent, runs, label)
        finally:
            await store.close()

    try:
        spans.put(asyncio.run(share()))
    except BaseException as exc:  # the parent reports it
        spans.put(f"{type(exc).__name__}: {exc}")


async def floor_time(runs: int) -> float:
    """The event loop alone: ``runs`` tasks that each sleep ``STEPS`` times ``LATENCY_S`` and do nothing else. What
    asyncio itself costs for the workload, measured in the same process: no runtime can go below it."""

    async def idle() -> None:
        for _ in range(STEPS):
            await asyncio.sleep(LATENCY_S)

    started = time.perf_counter()
    await asyncio.gather(*(idle() for _ in range(runs)))
    return time.perf_counter() - started


async def drop_schema(store: Store) -> None:
    import psycopg

    schema = getattr(store, "schema", None)
    if not schema:
        return
    url = os.environ.get("KEEL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def parked_bytes(runs: int) -> float:
    """Bytes a run holds while parked on its model, in memory, engine and store included."""
    model = SlowModel(0.0, parked_target=runs)
    agent = Agent(name="parked", model=model, tools=[lookup_order], store=MemoryStore())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(agent.run(f"task {n}")) for n in range(runs)]
    await model.all_parked.wait()
    gc.collect()
    during = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    model.release.set()
    await asyncio.gather(*tasks)
    return (during - before) / runs


def measure(kinds: list[str], runs_list: list[int], repeats: int) -> dict[str, Any]:
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agentkeel-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for runs in runs_list:
            floors = []
            for _ in range(repeats):
                gc.collect()
                floors.append(asyncio.run(floor_time(runs)))
            floor = statistics.median(floors)
            figures.append(
                {"store": "floor", "runs": runs, "wall_s": floor, "samples": floors, "x_ideal": floor / IDEAL_S}
            )
            print(f"  {'floor':8} {runs:>6,} runs: {floor:.3f} s ({floor / IDEAL_S:.2f}x ideal)", file=sys.stderr)
            for kind in kinds:
                setups = [s for s in SETUPS if s != "2 processes" or runs <= 1000]
                samples: dict[str, list[float]] = {setup: [] for setup in setups}
                cpus: dict[str, list[float]] = {setup: [] for setup in setups}
                for _ in range(repeats):  # the set-ups alternate, so that drift on a shared machine hits each alike
                    for setup in setups:
                        gc.collect()
                        wall, cpu = one_sample(kind, setup, runs, tmp)
                        samples[setup].append(wall)
                        cpus[setup].append(cpu)
                for setup in setups:
                    median = statistics.median(samples[setup])
                    cpu_us = statistics.median(cpus[setup]) / runs * 1e6
                    figures.append(
                        {
                            "store": kind,
                            "setup": setup,
                            "runs": runs,
                            "wall_s": median,
                            "samples": samples[setup],
                            "cpu_us_per_run": cpu_us,
                            "cpu_samples": cpus[setup],
                            "x_ideal": median / IDEAL_S,
                            "target": TARGETS[kind] if runs == 1000 else None,
                        }
                    )
                    print(
                        f"  {kind:8} {setup:12} {runs:>6,} runs: {median:.3f} s ({median / IDEAL_S:.2f}x ideal), "
                        f"CPU {cpu_us:.0f} µs a run",
                        file=sys.stderr,
                    )
    parked = asyncio.run(parked_bytes(1000))
    return {"figures": figures, "parked_bytes_per_run": parked}


def timeline(kinds: list[str], runs: int) -> str:
    """When the runs' model turns begin, step by step, in one tuned process: the first, the median and the last run
    to reach each step. Runs that share nothing stay spread out, and one run's store work hides inside another's
    model turn; runs whose writes share transactions are gathered again at every write, and each step then costs a
    model turn *plus* the whole cohort's work (``--timeline``)."""
    lines = [f"when the model turns of {runs:,} runs begin (ms after the start; tune_gc, one process):"]
    with tempfile.TemporaryDirectory(prefix="agentkeel-bench-") as tmp_name:
        for kind in kinds:
            turns: list[tuple[int, float]] = []
            gc.collect()
            wall, _ = asyncio.run(wall_time(kind, runs, Path(tmp_name), tuned=True, turns=turns))
            lines.append(f"  {kind} (wall {wall * 1000:.0f} ms)")
            for step in range(STEPS):
                began = sorted(at * 1000 for s, at in turns if s == step)
                median = began[len(began) // 2]
                lines.append(f"    step {step + 1}: first {began[0]:6.1f}  median {median:6.1f}  last {began[-1]:6.1f}")
    return "\n".join(lines)


def one_sample(kind: str, setup: str, runs: int, tmp: Path) -> tuple[float, float]:
    """Wall time and CPU time (a PostgreSQL server's own excluded) of one sample of a set-up."""
    if setup == "2 processes":
        return processes_wall_time(kind, runs, tmp)
    return asyncio.run(wall_time(kind, runs, tmp, tuned=setup == "tune_gc"))


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{STEPS} steps a run, {LATENCY_S * 1000:.0f} ms a model turn: ideal wall time {IDEAL_S:.2f} s",
        f"{'store':10}{'set-up':13}{'runs':>8}{'wall s':>10}{'x ideal':>10}{'CPU µs/run':>12}  target",
    ]
    for figure in result["figures"]:
        target = figure.get("target")
        verdict = "" if target is None else f"≤ {target}x {'PASS' if figure['x_ideal'] <= target else 'MISS'}"
        lines.append(
            f"{figure['store']:10}{figure.get('setup', ''):13}{figure['runs']:>8,}{figure['wall_s']:>10.3f}"
            f"{figure['x_ideal']:>10.2f}{_cpu(figure):>12}  {verdict}"
        )
    kb = result["parked_bytes_per_run"] / 1024
    verdict = "PASS" if kb <= PARKED_KB_TARGET else "MISS"
    lines.append(f"memory per parked run: {kb:.1f} KB (≤ {PARKED_KB_TARGET:.0f} KB {verdict})")
    return "\n".join(lines)


def _cpu(figure: dict[str, Any]) -> str:
    cpu = figure.get("cpu_us_per_run")
    return "" if cpu is None else f"{cpu:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="memory,sqlite,postgres", help="comma-separated: memory,sqlite,postgres")
    parser.add_argument("--runs", default="1000,10000", help="comma-separated run counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--timeline", action="store_true", help="print when each step's model turns begin (one tuned sample), only"
    )
    args = parser.parse_args(argv)
    kinds = [kind for kind in args.stores.split(",") if kind]
    if "postgres" in kinds and not _postgres_reachable():
        print("  postgres: no server at 127.0.0.1:5432 (KEEL_BENCH_POSTGRES), skipped", file=sys.stderr)
        kinds.remove("postgres")
    if args.timeline:
        print(timeline(kinds, int(args.runs.split(",")[0])))
        return 0
    result = measure(kinds, [int(n) for n in args.runs.split(",")], args.repeats)
    result.update(machine=machine(), source=source(), date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    print(render(result))
    out = args.out or RESULTS / f"concurrency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"raw figures: {out}")
    return 0


def _postgres_reachable() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
