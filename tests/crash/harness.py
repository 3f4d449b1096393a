"""The crash tests' worker: a process that drives the world's run and kills itself on cue; and the test side.

Run as a script, this module drives one run of a scenario (``world.py``) and SIGKILLs its own process at the
point it is told (``--kill``). The run's store is a SQLite file in the run's directory, unless the directory's
``store.url`` names another (the tests put a PostgreSQL URL there to run the same scenarios on PostgreSQL):

* ``after_create``: right after the run's first event commits, before the first model call;
* ``before:N`` / ``after:N``: right before the Nth journal append of this process, or right after it commits;
* ``tool:CALL:PHASE``: inside a tool, on entry (``enter``, before any effect) or right after its effect is
  recorded and before it returns (``effect``).

``--mode rollback`` rolls the run back (``Agent.rollback``) instead of running it: the same kill points then count
the rollback's appends, and ``tool:CALL:PHASE`` is inside the compensation of call CALL.

``--gate CALL:PHASE`` instead stops inside a tool, prints ``gate CALL PHASE`` and waits for a line on stdin: the
tests use it to hold a live driver exactly where they want it, without sleeping.

Imported, it gives the tests what they need around the worker: starting and gating it, resuming its run in the
test's own process, reading its journal, normalising a run for comparison, surveying a scenario's kill points,
and the reference an uncrashed run leaves behind.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import world

from agentkeel import LeaseLost, MemoryStore, RunBusy, RunResult, RunState, SQLiteStore, Store
from agentkeel.core.events import Event
from agentkeel.core.state import replay

HERE = Path(__file__).resolve()


# -- killing on cue ---------------------------------------------------------------------------------------


def die() -> None:
    """SIGKILL this process: no cleanup, no finally blocks, no flushing of anything not yet written."""
    os.kill(os.getpid(), signal.SIGKILL)


class KillingStore:
    """A store that counts this process's appends and kills the process at the boundary it is told."""

    def __init__(self, inner: Store, kill: str | None) -> None:
        self._inner = inner
        self._kill = kill
        self.url = inner.url
        self.appends = 0

    async def create_run(self, first: Any, row: Any, *, owner: str, lease_s: float) -> None:
        await self._inner.create_run(first, row, owner=owner, lease_s=lease_s)
        if self._kill == "after_create":
            die()

    async def append(self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: Any) -> Any:
        self.appends += 1
        if self._kill == f"before:{self.appends}":
            die()
        cancel = await self._inner.append(run_id, owner, after_seq, events, row)
        if self._kill == f"after:{self.appends}":
            die()
        return cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def tool_checkpoint(kill: str | None, gate: str | None) -> world.Checkpoint:
    """The checkpoint of a worker: die at ``tool:CALL:PHASE``; at ``CALL:PHASE``, wait for a line on stdin."""
    passed: set[str] = set()

    async def checkpoint(call: str, phase: str) -> None:
        if kill == f"tool:{call}:{phase}":
            die()
        if gate == f"{call}:{phase}" and gate not in passed:
            passed.add(gate)
            print(f"gate {call} {phase}", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

    return checkpoint


async def _work(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(args.dir)
    inner = open_store(directory, clock_offset=args.clock_offset)
    store = KillingStore(inner, args.kill)
    agent = world.build_agent(
        args.scenario, directory, store, checkpoint=tool_checkpoint(args.kill, args.gate), lease_s=args.lease_s
    )
    try:
        if args.mode == "run":
            result = await agent.run(world.TASK, run_id=world.RUN_ID)
        elif args.mode == "rollback":  # roll back the (ended) run: the kill points count this process's appends
            result = await agent.rollback(world.RUN_ID, by=ROLLBACK_BY, reason=ROLLBACK_REASON)
        else:
            result = await agent.resume(world.RUN_ID)
    except (LeaseLost, RunBusy) as exc:
        return {"error": type(exc).__name__, "message": str(exc), "appends": store.appends}
    finally:
        await inner.close()
    return {"status": result.status, "reason": result.reason, "output": result.output, "appends": store.appends}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive the crash tests' run, and die where told.")
    parser.add_argument("--dir", required=True, help="holds the store, the ledger and the model log")
    parser.add_argument("--scenario", choices=sorted(world.SCENARIOS), default="desk")
    parser.add_argument("--mode", choices=("run", "resume", "rollback"), default="run")
    parser.add_argument("--kill", default=None, help="after_create | before:N | after:N | tool:CALL:PHASE")
    parser.add_argument("--gate", default=None, help="CALL:PHASE: wait there for a line on stdin")
    parser.add_argument("--clock-offset", type=float, default=0.0, help="seconds added to the store's lease clock")
    parser.add_argument("--lease-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    outcome = asyncio.run(_work(args))
    print(json.dumps(outcome), flush=True)
    return 3 if "error" in outcome else 0


ROLLBACK_BY = "crash-test"
ROLLBACK_REASON = "the customer withdrew"


# -- the test side ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Exit:
    """How a worker process ended."""

    pid: int
    returncode: int
    outcome: dict[str, Any]
    """The worker's JSON report (empty when it was killed)."""
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def worker_command(directory: Path, **options: Any) -> list[str]:
    command = [sys.executable, str(HERE), "--dir", str(directory)]
    for name, value in options.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def start_worker(directory: Path, **options: Any) -> subprocess.Popen[str]:
    """Start a worker; its stdin is a pipe, for the gate."""
    return subprocess.Popen(
        worker_command(directory, **options),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_at_gate(process: subprocess.Popen[str], call: str, phase: str) -> None:
    """Block until the worker stands at its gate (it says so on stdout)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != f"gate {call} {phase}":
        process.kill()
        _, stderr = process.communicate(timeout=60)
        raise AssertionError(f"the worker never reached {call}:{phase}; it said {line!r}; stderr:\n{stderr}")


def finish_worker(process: subprocess.Popen[str], *, release: bool = False) -> Exit:
    """Let a gated worker go on (``release``) and wait for its end."""
    stdout, stderr = process.communicate("go\n" if release else None, timeout=60)
    lines = stdout.strip().splitlines()
    outcome = json.loads(lines[-1]) if process.returncode != -signal.SIGKILL and lines else {}
    return Exit(pid=process.pid, returncode=process.returncode, outcome=outcome, stderr=stderr)


def run_worker(directory: Path, **options: Any) -> Exit:
    """Run a worker to its end (or its death) and report how it ended."""
    return finish_worker(start_worker(directory, **options))


async def resume_in_process(
    directory: Path, scenario: str = "desk", *, clock_offset: float = 3600.0, checkpoint: world.Checkpoint | None = None
) -> RunResult:
    """Resume the run from this process, with a lease clock ``clock_offset`` seconds ahead (past a dead
    driver's lease, so the takeover is legitimate without waiting for it)."""
    store = open_store(directory, clock_offset=clock_offset)
    try:
        return await world.build_agent(scenario, directory, store, checkpoint=checkpoint).resume(world.RUN_ID)
    finally:
        await store.close()


STORE_URL_FILE = "store.url"
"""In a run's directory, the URL of its store when that is not the SQLite file beside the ledger."""


def open_store(directory: Path, *, clock_offset: float = 0.0) -> Store:
    """The run's store as another process sees it; ``clock_offset`` moves its lease clock into the future."""
    named = directory / STORE_URL_FILE
    if named.exists():
        from agentkeel.stores.postgres import PostgresStore

        return PostgresStore(named.read_text().strip(), clock=lambda: time.time() + clock_offset)
    return SQLiteStore(directory / world.STORE_FILE, clock=lambda: time.time() + clock_offset)


async def journal(directory: Path) -> list[Event]:
    store = open_store(directory)
    try:
        return await store.load(world.RUN_ID)
    finally:
        await store.close()


async def state(directory: Path) -> RunState:
    return replay(await journal(directory))


def journaled_steps(events: Sequence[Event]) -> set[int]:
    return {event.step for event in events if event.kind == "model_responded"}


_TIMINGS = frozenset({"at", "latency_s", "attempts", "owner"})


def normalised_journal(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The journal without what legitimately differs between an uncrashed run and a resumed one: the times,
    the attempt counters, the ``run_resumed`` markers of the processes that took over, and the
    ``tool_call_resumed`` markers of the interrupted calls they ran again."""
    return [
        {key: value for key, value in dataclasses.asdict(event).items() if key not in _TIMINGS}
        for event in events
        if event.kind not in ("run_resumed", "tool_call_resumed")
    ]


def outcome_of(run: RunState) -> dict[str, Any]:
    """Everything a run's state says about its outcome, without timings (the conversation included)."""
    return {
        "status": run.status,
        "reason": run.reason,
        "output": run.output,
        "steps": run.steps_completed,
        "model_calls": run.model_calls,
        "tool_calls": run.tool_calls,
        "tool_errors": run.tool_errors,
        "usage": run.usage,
        "notes": run.notes,
        "attention": run.attention,
        "messages": [dataclasses.asdict(message) for message in run.messages],
        "calls": {
            call: (
                record.name,
                record.arguments,
                record.idempotency_key,
                record.status,
                record.finished.content if record.finished else None,
                record.finished.result if record.finished else None,
            )
            for call, record in run.calls.items()
        },
    }


@dataclass(frozen=True, kw_only=True)
class Survey:
    """Where an uncrashed run of a scenario can be killed."""

    lengths: tuple[int, ...]
    """The journal's length after its creation (1), then after each append."""
    checkpoints: tuple[str, ...]
    """``CALL:PHASE`` for every crash point inside a tool the run passes."""

    @property
    def appends(self) -> int:
        return len(self.lengths) - 1

    @property
    def kill_points(self) -> list[str]:
        boundaries = [f"{when}:{n}" for n in range(1, self.appends + 1) for when in ("before", "after")]
        return ["after_create", *boundaries, *(f"tool:{point}" for point in self.checkpoints)]

    def length_at(self, kill: str) -> int | None:
        """How long the journal is when the first process dies at a boundary (None inside a tool)."""
        if kill == "after_create":
            return 1
        when, _, n = kill.partition(":")
        if when == "before":
            return self.lengths[int(n) - 1]
        if when == "after":
            return self.lengths[int(n)]
        return None


def survey(scenario: str) -> Survey:
    """Run the scenario once, uncrashed and in memory, measuring its appends and the crash points in its tools."""
    passed: list[str] = []
    lengths = [1]

    class Measuring(KillingStore):
        async def append(self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: Any) -> Any:
            cancel = await super().append(run_id, owner, after_seq, events, row)
            lengths.append(after_seq + len(events))
            return cancel

    async def note(call: str, phase: str) -> None:
        passed.append(f"{call}:{phase}")

    async def go(directory: Path) -> None:
        result = await world.build_agent(scenario, directory, Measuring(MemoryStore(), None), checkpoint=note).run(
            world.TASK, run_id=world.RUN_ID
        )
        assert result.status == "completed", result

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(go(Path(directory)))
    return Survey(lengths=tuple(lengths), checkpoints=tuple(dict.fromkeys(passed)))


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What an uncrashed run of a scenario leaves behind; every crashed-and-resumed run must leave the same."""

    output: str
    outcome: dict[str, Any]
    """``outcome_of`` its final state: the conversation, the calls, the counts."""
    journal: list[dict[str, Any]]
    """``normalised_journal`` of its journal."""
    effects: Counter[tuple[str, str]]
    """Each ``(tool, idempotency key)`` that took effect, and how often (once each)."""
    steps: int
    appends: int


def uncrashed(directory: Path, scenario: str) -> Baseline:
    """Run the scenario in a worker process that nothing kills, and take down what it leaves behind."""
    ended = run_worker(directory, scenario=scenario)
    assert ended.returncode == 0, ended.stderr
    assert ended.outcome["status"] == "completed", ended.outcome
    events = asyncio.run(journal(directory))
    final = replay(events)
    effects = world.effect_counts(directory)
    assert set(effects.values()) <= {1}, f"the uncrashed run repeated an effect: {effects}"
    requested = Counter(step for _, step in world.model_requests(directory))
    assert requested == Counter(range(1, final.steps_completed + 1)), requested
    return Baseline(
        output=ended.outcome["output"],
        outcome=outcome_of(final),
        journal=normalised_journal(events),
        effects=effects,
        steps=final.steps_completed,
        appends=ended.outcome["appends"],
    )


# -- rollback ---------------------------------------------------------------------------------------------


async def run_in_process(directory: Path, scenario: str) -> RunResult:
    """Run the scenario to its end, uncrashed, from this process."""
    store = open_store(directory)
    try:
        return await world.build_agent(scenario, directory, store).run(world.TASK, run_id=world.RUN_ID)
    finally:
        await store.close()


async def rollback_in_process(directory: Path, scenario: str, *, clock_offset: float = 3600.0) -> RunResult:
    """Roll the run back from this process, with a lease clock ``clock_offset`` seconds ahead (see
    ``resume_in_process``)."""
    store = open_store(directory, clock_offset=clock_offset)
    try:
        agent = world.build_agent(scenario, directory, store)
        return await agent.rollback(world.RUN_ID, by=ROLLBACK_BY, reason=ROLLBACK_REASON)
    finally:
        await store.close()


def rollback_journal(events: Sequence[Event]) -> list[dict[str, Any]]:
    """``normalised_journal``, and also without the attempt counters of compensations and the
    ``compensation_started`` of an attempt that was interrupted and started again (the rollback's counterpart of
    ``tool_call_resumed``): what an uncrashed rollback and a crashed-and-resumed one must both leave."""
    kept = normalised_journal(events)
    out: list[dict[str, Any]] = []
    for event in kept:
        if event["kind"] == "compensation_started":
            event.pop("attempt")
        last = out[-1] if out else None
        if (
            last is not None
            and last["kind"] == event["kind"] == "compensation_started"
            and last["call"] == event["call"]
        ):
            out.pop()  # the interrupted attempt: the run_resumed between them is gone already
        out.append(event)
    return out


@dataclass(frozen=True, kw_only=True)
class RollbackSurvey(Survey):
    """Where a rollback of a scenario's ended run can be killed: ``lengths`` starts at the ended run's journal,
    and there is no creation to die after."""

    @property
    def kill_points(self) -> list[str]:
        return [point for point in super().kill_points if point != "after_create"]


def survey_rollback(scenario: str) -> RollbackSurvey:
    """Run the scenario once and roll it back, uncrashed and in memory, measuring the rollback's appends and the
    crash points inside its compensations (the run's own are not counted)."""
    passed: list[str] = []
    lengths: list[int] = []

    class Measuring(KillingStore):
        async def append(self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: Any) -> Any:
            cancel = await super().append(run_id, owner, after_seq, events, row)
            lengths.append(after_seq + len(events))
            return cancel

    async def note(call: str, phase: str) -> None:
        passed.append(f"{call}:{phase}")

    async def go(directory: Path) -> None:
        memory = MemoryStore()
        ran = await world.build_agent(scenario, directory, memory).run(world.TASK, run_id=world.RUN_ID)
        assert ran.status == "completed", ran
        lengths.append(len(await memory.load(world.RUN_ID)))
        agent = world.build_agent(scenario, directory, Measuring(memory, None), checkpoint=note)
        undone = await agent.rollback(world.RUN_ID, by=ROLLBACK_BY, reason=ROLLBACK_REASON)
        assert undone.status == "rolled_back", undone

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(go(Path(directory)))
    return RollbackSurvey(lengths=tuple(lengths), checkpoints=tuple(dict.fromkeys(passed)))


if __name__ == "__main__":
    sys.exit(main())
