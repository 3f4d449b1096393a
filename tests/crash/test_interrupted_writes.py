"""A write that is neither idempotent nor reconcilable, killed inside, waits for a person: the run pauses as
``needs_attention`` naming the call, and goes on only as the person decides (it happened, skip it, run it again).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import harness
import pytest
import world

from agentkeel import ResolveError, resolve_call
from agentkeel.engine.operator import SKIPPED_MESSAGE, Decision

pytestmark = pytest.mark.crash

KEY = f"{world.RUN_ID}:1.1"
MANUAL = {"charge_id": "ch-by-hand", "note": "found in the card processor's dashboard"}


async def _paused_after_a_kill(directory: Path, phase: str) -> harness.RunResult:
    died = harness.run_worker(directory, scenario="charge", kill=f"tool:1.1:{phase}")
    assert died.killed, died.stderr
    return await harness.resume_in_process(directory, "charge")


@pytest.mark.parametrize(
    ("phase", "decision", "effects"),
    [
        ("effect", "result", 1),
        ("enter", "result", 0),
        ("effect", "skip", 1),
        ("enter", "skip", 0),
        ("effect", "retry", 2),
        ("enter", "retry", 1),
    ],
)
async def test_an_interrupted_write_waits_for_a_person_and_goes_on_as_decided(
    phase: str, decision: Decision, effects: int, tmp_path: Path, charge_baseline: harness.Baseline
) -> None:
    paused = await _paused_after_a_kill(tmp_path, phase)

    assert (paused.status, paused.reason) == ("paused", "needs_attention")
    assert paused.needs_attention == ("1.1",)
    assert "1.1 (charge_card)" in paused.detail
    assert f"keel resolve {world.RUN_ID} CALL" in paused.detail

    # Resuming again decides nothing: no model call, no tool call, nothing journaled.
    before = await harness.journal(tmp_path)
    again = await harness.resume_in_process(tmp_path, "charge")
    assert (again.status, again.needs_attention) == ("paused", ("1.1",))
    assert await harness.journal(tmp_path) == before

    store = harness.open_store(tmp_path, clock_offset=3600)
    try:
        await resolve_call(store, world.RUN_ID, "1.1", decision, result=MANUAL, by="ops@example.com")
    finally:
        await store.close()
    done = await harness.resume_in_process(tmp_path, "charge")

    assert done.status == "completed", done
    told = {
        "result": '{"charge_id":"ch-by-hand","note":"found in the card processor\'s dashboard"}',
        "skip": SKIPPED_MESSAGE.format(tool="charge_card"),
        "retry": charge_baseline.outcome["calls"]["1.1"][4],
    }[decision]
    assert done.output == f"charged: {told}"
    assert world.effect_counts(tmp_path)[("charge_card", KEY)] == effects
    final = harness.outcome_of(await harness.state(tmp_path))
    assert final["messages"][2] == {
        "kind": "tool_result",
        "call_id": "call_1_1",
        "name": "charge_card",
        "content": told,
        "is_error": decision == "skip",
    }
    if decision == "retry":
        assert final == charge_baseline.outcome
    requested = Counter(step for _, step in world.model_requests(tmp_path))
    assert requested == {1: 1, 2: 1}


async def test_a_person_cannot_settle_a_call_that_is_not_waiting(tmp_path: Path) -> None:
    await _paused_after_a_kill(tmp_path, "effect")
    store = harness.open_store(tmp_path, clock_offset=3600)
    try:
        with pytest.raises(ResolveError, match=r"call '9\.9' is not waiting for a decision"):
            await resolve_call(store, world.RUN_ID, "9.9", "skip", by="ops")
    finally:
        await store.close()


async def test_a_crash_during_an_authorised_retry_asks_the_person_again(tmp_path: Path) -> None:
    await _paused_after_a_kill(tmp_path, "effect")
    store = harness.open_store(tmp_path, clock_offset=3600)
    try:
        await resolve_call(store, world.RUN_ID, "1.1", "retry", by="ops")
    finally:
        await store.close()
    retried = harness.run_worker(tmp_path, scenario="charge", mode="resume", kill="tool:1.1:effect", clock_offset=7200)
    assert retried.killed
    assert world.effect_counts(tmp_path)[("charge_card", KEY)] == 2  # the first attempt, and the one authorised

    after = await harness.resume_in_process(tmp_path, "charge", clock_offset=3 * 3600)

    assert world.effect_counts(tmp_path)[("charge_card", KEY)] == 2, "the write ran again without a person"
    assert (after.status, after.needs_attention) == ("paused", ("1.1",))
