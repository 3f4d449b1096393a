"""A rollback killed (SIGKILL, a real process) at any journal boundary or inside any compensation ends, once
recovered, exactly as a rollback that never crashed: the run ``rolled_back``, its journal the uncrashed rollback's
(extended, never rewritten), every effect voided once in the outside world.

The run is the ``undo`` scenario (the desk's conversation, its write tools compensated: ``world.py``), driven to
its end uncrashed; then a worker rolls it back and dies at the kill point. The recovery is what an operator would
do: a run that died before its ``rollback_started`` committed is still ``completed``, so it is rolled back again;
after that it is ``rolling_back`` (or already ``rolled_back``) and ``resume`` continues it.

The kill points are measured (``harness.survey_rollback``): every append of the rollback process, and the entry
and the after-effect point of each compensation.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import pytest
import world

from agentkeel.core.events import Event
from agentkeel.core.state import replay

pytestmark = pytest.mark.crash

UNDO = harness.survey_rollback("undo")
COMPENSATIONS = frozenset(world.UNDOS.values())


@dataclass(frozen=True, kw_only=True)
class RollbackBaseline:
    """What an uncrashed run of the ``undo`` scenario and its uncrashed rollback leave behind."""

    output: str
    ended: int
    """The journal's length when the run had ended (before the rollback)."""
    journal: list[dict[str, Any]]
    """``harness.rollback_journal`` of the whole journal."""
    effects: Counter[tuple[str, str]]
    appends: int
    """The rollback process's appends."""
    order: tuple[str, ...]
    """The calls undone, in the order their compensations ran."""


def _baseline(directory: Path, scenario: str) -> RollbackBaseline:
    ran = harness.run_worker(directory, scenario=scenario)
    assert ran.returncode == 0 and ran.outcome["status"] == "completed", (ran.outcome, ran.stderr)
    ended = len(asyncio.run(harness.journal(directory)))
    undone = harness.run_worker(directory, scenario=scenario, mode="rollback")
    assert undone.returncode == 0, undone.stderr
    assert undone.outcome["status"] == "rolled_back", undone.outcome
    events = asyncio.run(harness.journal(directory))
    started = [event for event in events if event.kind == "rollback_started"]
    assert len(started) == 1
    return RollbackBaseline(
        output=ran.outcome["output"],
        ended=ended,
        journal=harness.rollback_journal(events),
        effects=world.effect_counts(directory),
        appends=undone.outcome["appends"],
        order=started[0].calls,
    )


@pytest.fixture(scope="module")
def undo_baseline(tmp_path_factory: pytest.TempPathFactory) -> RollbackBaseline:
    return _baseline(tmp_path_factory.mktemp("baseline-undo"), "undo")


@pytest.fixture(scope="module")
def sloppy_baseline(tmp_path_factory: pytest.TempPathFactory) -> RollbackBaseline:
    """The same, with compensations that ignore their key (uncrashed, each still voids once)."""
    return _baseline(tmp_path_factory.mktemp("baseline-undo-sloppy"), "undo_sloppy")


def assert_each_effect_voided_once(directory: Path) -> None:
    """Every write that took effect has exactly one void in the ledger, under its key plus ``:undo``; nothing
    else was voided, and nothing took effect twice."""
    effects = world.Ledger(directory / world.LEDGER_FILE).effects()
    done = Counter((effect.tool, effect.key) for effect in effects if effect.tool in world.UNDOS)
    assert set(done.values()) == {1}, f"a write took effect twice: {done}"
    voids = Counter((effect.tool, effect.key) for effect in effects if effect.tool in COMPENSATIONS)
    wanted = Counter({(world.UNDOS[tool], f"{key}:undo"): 1 for tool, key in done})
    assert voids == wanted, f"not every effect voided exactly once: voided {dict(voids)}, wanted {dict(wanted)}"


def _started_attempts(events: list[Event]) -> dict[str, list[int]]:
    attempts: dict[str, list[int]] = {}
    for event in events:
        if event.kind == "compensation_started":
            attempts.setdefault(event.call, []).append(event.attempt)
    return attempts


def test_the_survey_matches_a_real_uncrashed_rollback(undo_baseline: RollbackBaseline) -> None:
    expected = undo_baseline
    assert UNDO.lengths[0] == expected.ended
    assert expected.appends == UNDO.appends
    assert len(expected.journal) == UNDO.lengths[-1]
    # The four write calls, last first: each compensation journaled before and after, between the rollback's
    # start and its end.
    assert expected.order == ("4.2", "4.1", "3.1", "2.1")
    tail = [(event["kind"], event.get("call")) for event in expected.journal[expected.ended :]]
    pairs = [(kind, call) for call in expected.order for kind in ("compensation_started", "compensation_finished")]
    assert tail == [("rollback_started", None), *pairs, ("run_ended", None)]
    assert UNDO.appends == 2 + 2 * len(expected.order)
    assert UNDO.checkpoints == tuple(f"{call}:{phase}" for call in expected.order for phase in ("enter", "effect"))
    assert Counter(tool for tool, _ in expected.effects) == {
        "issue_refund": 3,
        "send_email": 1,
        "void_refund": 3,
        "recall_email": 1,
    }
    ended = [event for event in expected.journal if event["kind"] == "run_ended"]
    assert [(event["status"], event["output"]) for event in ended] == [
        ("completed", expected.output),
        ("rolled_back", expected.output),
    ]


async def _kill_a_rollback_and_recover(
    directory: Path, scenario: str, kill: str, expected: RollbackBaseline
) -> tuple[list[Event], list[Event], harness.Exit]:
    """Run the scenario uncrashed, kill a rollback worker at ``kill``, recover; the journals at death and at the
    end, and the dead worker. Asserts what holds whatever the compensations do to the outside world."""
    ran = await harness.run_in_process(directory, scenario)
    assert ran.status == "completed", ran
    before = await harness.journal(directory)
    assert len(before) == expected.ended

    died = harness.run_worker(directory, scenario=scenario, mode="rollback", kill=kill)
    assert died.killed, f"the worker was to die at {kill} but exited {died.returncode}:\n{died.stderr}"

    at_death = await harness.journal(directory)
    length = UNDO.length_at(kill)
    if length is not None:  # it died exactly at the boundary: the journal is the uncrashed one, cut there
        assert len(at_death) == length
    assert at_death[: len(before)] == before, "the rollback rewrote the run's journal"
    assert harness.rollback_journal(at_death) == expected.journal[: len(at_death)]
    dead = replay(at_death)
    if dead.status == "completed":  # it died before the rollback was journaled: roll back again
        assert len(at_death) == len(before) and kill == "before:1"
        result = await harness.rollback_in_process(directory, scenario)
    else:  # a rollback is under way (or done): resume continues it
        assert dead.status in ("rolling_back", "rolled_back"), dead.status
        result = await harness.resume_in_process(directory, scenario)

    assert (result.status, result.reason, result.output) == ("rolled_back", "rolled_back", expected.output)
    final = await harness.journal(directory)
    assert final[: len(at_death)] == at_death, "the recovery rewrote the journal it found"
    assert harness.rollback_journal(final) == expected.journal
    return at_death, final, died


@pytest.mark.parametrize("kill", UNDO.kill_points)
async def test_a_rollback_killed_at_any_point_recovers_to_the_uncrashed_rollback(
    kill: str, tmp_path: Path, undo_baseline: RollbackBaseline
) -> None:
    expected = undo_baseline
    at_death, final, died = await _kill_a_rollback_and_recover(tmp_path, "undo", kill, expected)

    dead = replay(at_death)
    interrupted = {call for call, undo in dead.rollback.items() if undo.status == "started"}
    assert len(interrupted) <= 1, interrupted
    if kill.startswith("tool:"):
        assert interrupted == {kill.split(":")[1]}
    kinds = [event.kind for event in final]
    assert kinds.count("rollback_started") == 1
    assert Counter(event.call for event in final if event.kind == "compensation_finished") == Counter(expected.order)
    # An interrupted compensation ran again as attempt 2 under the same key; every other one once.
    assert _started_attempts(final) == {call: [1, 2] if call in interrupted else [1] for call in expected.order}
    assert [event.status for event in final if event.kind == "run_ended"] == ["completed", "rolled_back"]
    assert replay(final).status == "rolled_back"

    assert world.effect_counts(tmp_path) == expected.effects
    assert_each_effect_voided_once(tmp_path)

    # Who ran which compensation: the dead worker those it reached; this process the ones not finished at its
    # death, each once, with the attempt after the journaled ones and the same key.
    ran = [row for row in world.Ledger(tmp_path / world.LEDGER_FILE).invocations() if row[0] in COMPENSATIONS]
    here = os.getpid()
    assert {pid for *_, pid in ran} <= {died.pid, here}
    finished_at_death = {call for call, undo in dead.rollback.items() if undo.status == "done"}
    assert [(call, attempt) for _, call, _, attempt, pid in ran if pid == here] == [
        (call, dead.rollback[call].attempts + 1 if call in dead.rollback else 1)
        for call in expected.order
        if call not in finished_at_death
    ]
    assert all(key == f"{world.RUN_ID}:{call}:undo" for _, call, key, _, _ in ran)
    reached = {call for _, call, _, _, pid in ran if pid == died.pid}
    assert finished_at_death <= reached
    # A void is the dead worker's when it got past its ledger write; the rerun then found it by key.
    voided_by = {
        effect.key.split(":")[1]: effect.pid
        for effect in world.Ledger(tmp_path / world.LEDGER_FILE).effects()
        if effect.tool in COMPENSATIONS
    }
    assert voided_by == {
        call: died.pid if call in reached and kill != f"tool:{call}:enter" else here for call in expected.order
    }


async def test_a_compensation_that_ignores_its_key_is_caught_voiding_twice(
    tmp_path: Path, sloppy_baseline: RollbackBaseline
) -> None:
    """The check that matters is the outside world's: a compensation that does not honour its idempotency key,
    killed after its effect, voids twice on the rerun, while the journal alone looks exactly right."""
    kill = "tool:4.2:effect"
    _, final, died = await _kill_a_rollback_and_recover(tmp_path, "undo_sloppy", kill, sloppy_baseline)

    assert set(sloppy_baseline.effects.values()) == {1}  # uncrashed, the sloppy undo voids once
    assert _started_attempts(final)["4.2"] == [1, 2]
    voids = world.Ledger(tmp_path / world.LEDGER_FILE).effects()
    assert [(effect.key, effect.pid) for effect in voids if effect.tool == "void_refund"][:2] == [
        (f"{world.RUN_ID}:4.2:undo", died.pid),
        (f"{world.RUN_ID}:4.2:undo", os.getpid()),
    ]
    with pytest.raises(AssertionError, match="not every effect voided exactly once"):
        assert_each_effect_voided_once(tmp_path)
