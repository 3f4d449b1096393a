"""A run killed (SIGKILL, a real process) at any journal boundary or inside any tool resumes to exactly the outcome
of a run that never crashed: the same conversation and answer, every side effect once, no journaled model turn
asked for again.

The boundaries are measured, not listed: ``harness.survey`` runs the scenario once and counts its appends and the
crash points inside its tools, so a change in how the engine commits changes the kill points with it.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import harness
import pytest
import world

from agentkeel.core.state import replay

pytestmark = pytest.mark.crash

DESK = harness.survey("desk")


def test_the_survey_matches_a_real_uncrashed_run(desk_baseline: harness.Baseline) -> None:
    assert desk_baseline.appends == DESK.appends
    assert len(desk_baseline.journal) == DESK.lengths[-1]
    # Parallel reads, a rejected call, an idempotent write (three calls) and a reconcilable one.
    assert DESK.appends >= 10
    assert Counter(tool for tool, _ in desk_baseline.effects) == {"issue_refund": 3, "send_email": 1}


@pytest.mark.parametrize("kill", DESK.kill_points)
async def test_a_run_killed_at_any_point_resumes_to_the_uncrashed_outcome(
    kill: str, tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    expected = desk_baseline
    died = harness.run_worker(tmp_path, kill=kill)
    assert died.killed, f"the worker was to die at {kill} but exited {died.returncode}:\n{died.stderr}"

    at_death = await harness.journal(tmp_path)
    length = DESK.length_at(kill)
    if length is not None:  # it died exactly at the boundary: the journal is the uncrashed one, cut there
        assert len(at_death) == length
    assert harness.normalised_journal(at_death) == expected.journal[: len(at_death)]
    asked = [step for _, step in world.model_requests(tmp_path)]
    pending = set(asked) - harness.journaled_steps(at_death)
    assert len(pending) <= 1, f"more than one model turn requested and lost: {pending}"

    result = await harness.resume_in_process(tmp_path)

    assert result.status == "completed", result
    assert result.output == expected.output
    final = await harness.journal(tmp_path)
    assert final[: len(at_death)] == at_death, "the resume rewrote the journal it found"
    assert harness.outcome_of(replay(final)) == expected.outcome
    assert harness.normalised_journal(final) == expected.journal
    assert world.effect_counts(tmp_path) == expected.effects
    requested = Counter(step for _, step in world.model_requests(tmp_path))
    assert requested == {step: 1 + (step in pending) for step in range(1, expected.steps + 1)}


async def test_a_resume_in_a_fresh_process_after_a_kill_inside_a_write(
    tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    expected = desk_baseline
    died = harness.run_worker(tmp_path, kill="tool:3.1:effect")
    assert died.killed
    resumed = harness.run_worker(tmp_path, mode="resume", clock_offset=3600)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.outcome["status"] == "completed"
    final = await harness.journal(tmp_path)
    assert harness.normalised_journal(final) == expected.journal
    assert world.effect_counts(tmp_path) == expected.effects
    # The process that died sent the email; the one that resumed asked the mail log instead of sending again.
    ran = world.Ledger(tmp_path / world.LEDGER_FILE).invocations()
    assert [pid for tool, _, _, _, pid in ran if tool == "send_email"] == [died.pid]
    assert {call for tool, call, _, _, pid in ran if pid == resumed.pid} == {"3.2", "4.1", "4.2"}


def _random_point(rng: random.Random, done: set[str]) -> str:
    """A kill point for the next process, first or resuming: an early boundary of its own appends, or a crash
    point inside a tool call that has not finished yet (``done`` holds the finished calls)."""
    inside = [point for point in DESK.checkpoints if point.partition(":")[0] not in done]
    if inside and rng.random() < 0.4:
        return f"tool:{rng.choice(inside)}"
    return f"{rng.choice(('before', 'after'))}:{rng.randint(1, 3)}"


@pytest.mark.parametrize("seed", [3, 17, 2024])
async def test_repeated_kills_at_random_points_until_the_run_ends(
    seed: int, tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    expected = desk_baseline
    rng = random.Random(seed)
    max_kills = 8
    kills = 0
    lost: Counter[int] = Counter()  # model turns requested by a process that died before journaling them
    journaled: set[int] = set()
    done: set[str] = set()
    for process in range(max_kills + 1):
        kill = _random_point(rng, done) if process < max_kills else None
        ended = harness.run_worker(
            tmp_path, mode="run" if process == 0 else "resume", kill=kill, clock_offset=3600 * process
        )
        events = await harness.journal(tmp_path)
        asked = [step for pid, step in world.model_requests(tmp_path) if pid == ended.pid]
        assert not set(asked) & journaled, f"process {process} asked again for journaled turns {asked}"
        assert len(asked) == len(set(asked)), f"process {process} asked twice for a turn: {asked}"
        unjournaled = set(asked) - harness.journaled_steps(events)
        assert unjournaled <= {max(asked, default=0)}
        if not ended.killed:
            assert ended.returncode == 0, ended.stderr
            assert not unjournaled
            break
        kills += 1
        lost.update(unjournaled)
        journaled = harness.journaled_steps(events)
        done = {call for call, record in replay(events).calls.items() if record.status == "finished"}

    assert kills >= 4, f"seed {seed} killed only {kills} processes: the test proves little"
    final = await harness.journal(tmp_path)
    assert 1 <= sum(1 for event in final if event.kind == "run_resumed") <= kills
    assert harness.outcome_of(replay(final)) == expected.outcome
    assert harness.normalised_journal(final) == expected.journal
    assert world.effect_counts(tmp_path) == expected.effects
    requested = Counter(step for _, step in world.model_requests(tmp_path))
    assert requested == {step: 1 + lost[step] for step in range(1, expected.steps + 1)}
