"""One process drives a run at a time. A live driver's lease refuses a second resume; a dead driver's lease holds
until it expires and then anyone may take the run over; a driver that lost its lease writes nothing more.

The drivers here are real processes held inside a tool by a gate (a line on stdin), so that the test knows where
they stand without sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import harness
import pytest
import world

from agentkeel import LeaseLost, RunBusy

pytestmark = pytest.mark.crash

LEASE_S = 60.0
"""Long enough that no lease of a live worker expires during a test, however slow the machine."""


def _refund_runs(directory: Path) -> list[int]:
    """The processes that ran the body of the refund of call 2.1."""
    invocations = world.Ledger(directory / world.LEDGER_FILE).invocations()
    return [pid for tool, call, _, _, pid in invocations if (tool, call) == ("issue_refund", "2.1")]


async def test_a_live_driver_refuses_a_second_resume_naming_itself(
    tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    driver = harness.start_worker(tmp_path, gate="2.1:enter", lease_s=LEASE_S)
    try:
        harness.wait_at_gate(driver, "2.1", "enter")
        before = await harness.journal(tmp_path)

        with pytest.raises(RunBusy) as refused:
            await harness.resume_in_process(tmp_path, clock_offset=0.0)

        busy = refused.value
        assert f":{driver.pid}:" in busy.owner
        assert str(busy).startswith(f"run {world.RUN_ID} is being driven by {busy.owner}; its lease expires in")
        assert 0 < busy.expires_in_s <= LEASE_S
        assert await harness.journal(tmp_path) == before
    finally:
        ended = harness.finish_worker(driver, release=True)

    assert ended.returncode == 0, ended.stderr
    assert ended.outcome["status"] == "completed"
    again = await harness.resume_in_process(tmp_path, clock_offset=0.0)  # ended: nothing to drive, no lease needed
    assert (again.status, again.output) == ("completed", desk_baseline.output)
    assert harness.normalised_journal(await harness.journal(tmp_path)) == desk_baseline.journal
    assert world.effect_counts(tmp_path) == desk_baseline.effects
    assert Counter(step for _, step in world.model_requests(tmp_path)) == Counter(range(1, desk_baseline.steps + 1))


async def test_a_dead_drivers_lease_holds_until_it_expires_then_another_process_takes_over(
    tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    driver = harness.start_worker(tmp_path, gate="2.1:effect", lease_s=LEASE_S)
    harness.wait_at_gate(driver, "2.1", "effect")  # the refund happened; its outcome is not journaled
    driver.kill()
    died = harness.finish_worker(driver)
    assert died.killed

    for clock_offset in (0.0, LEASE_S / 2):  # now, and halfway through the lease
        with pytest.raises(RunBusy, match=f"being driven by .*:{died.pid}:"):
            await harness.resume_in_process(tmp_path, clock_offset=clock_offset)
    assert not any(event.kind == "run_resumed" for event in await harness.journal(tmp_path))

    taken = await harness.resume_in_process(tmp_path, clock_offset=LEASE_S + 1)

    assert (taken.status, taken.output) == ("completed", desk_baseline.output)
    assert harness.normalised_journal(await harness.journal(tmp_path)) == desk_baseline.journal
    assert world.effect_counts(tmp_path) == desk_baseline.effects
    # The refund's body ran twice, in two processes, with one idempotency key: the provider refunded once.
    assert len(_refund_runs(tmp_path)) == 2


async def test_a_driver_that_lost_its_lease_to_another_process_writes_nothing(
    tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    stale = harness.start_worker(tmp_path, gate="2.1:enter", lease_s=LEASE_S)
    try:
        harness.wait_at_gate(stale, "2.1", "enter")
        # Another process whose clock says the lease ran out (a stalled driver looks dead) takes the run over.
        taken = await harness.resume_in_process(tmp_path, clock_offset=3600)
        assert taken.status == "completed", taken
        settled = await harness.journal(tmp_path)
    finally:
        ended = harness.finish_worker(stale, release=True)

    assert ended.returncode == 3, ended.stderr
    assert ended.outcome["error"] == "LeaseLost"
    assert str(ended.pid) in ended.outcome["message"]
    assert await harness.journal(tmp_path) == settled
    assert harness.normalised_journal(settled) == desk_baseline.journal
    assert world.effect_counts(tmp_path) == desk_baseline.effects
    assert len(_refund_runs(tmp_path)) == 2  # both ran the refund; its key made the second one harmless


async def test_two_drivers_in_one_process_the_one_that_lost_its_lease_writes_nothing(
    tmp_path: Path, desk_baseline: harness.Baseline
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold(call: str, phase: str) -> None:
        if (call, phase) == ("2.1", "enter") and not arrived.is_set():
            arrived.set()
            await release.wait()

    first_store = harness.open_store(tmp_path)
    first = world.build_agent("desk", tmp_path, first_store, checkpoint=hold, lease_s=LEASE_S)
    driving = asyncio.create_task(first.run(world.TASK, run_id=world.RUN_ID))
    try:
        await arrived.wait()
        with pytest.raises(RunBusy):
            await harness.resume_in_process(tmp_path, clock_offset=LEASE_S / 2)
        taken = await harness.resume_in_process(tmp_path, clock_offset=LEASE_S + 1)
        assert taken.status == "completed", taken
        settled = await harness.journal(tmp_path)
        release.set()
        with pytest.raises(LeaseLost, match=world.RUN_ID):
            await driving
    finally:
        release.set()
        await asyncio.gather(driving, return_exceptions=True)
        await first_store.close()

    assert await harness.journal(tmp_path) == settled
    assert harness.normalised_journal(settled) == desk_baseline.journal
    assert world.effect_counts(tmp_path) == desk_baseline.effects
