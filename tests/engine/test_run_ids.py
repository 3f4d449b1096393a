"""Run ids: sortable by time, and a drawn id the store already holds is drawn again (a chosen one is not)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from agentkeel import Agent, Pipeline, PipelineContext, RunIdTaken, ScriptedModel, Store, reply
from agentkeel.agent import ID_DRAWS, new_run_id


def test_a_run_id_is_milliseconds_then_32_random_bits() -> None:
    first, second = new_run_id(), new_run_id()
    assert re.fullmatch(r"[0-9a-f]{19}", first)
    assert first[:11] <= second[:11]  # sortable by creation time
    assert len({new_run_id()[11:] for _ in range(1_000)}) > 990


def drawn(monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> Iterator[str]:
    queue = iter(ids)
    for module in ("agentkeel.agent", "agentkeel.patterns.pipeline"):
        monkeypatch.setattr(f"{module}.new_run_id", lambda: next(queue))
    return queue


async def test_a_drawn_id_already_taken_is_drawn_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(name="a", model=ScriptedModel([reply("one")]), store=store)
    await agent.run("first", run_id="same")
    drawn(monkeypatch, ["same", "other"])  # two runs of one millisecond drew the same random part
    second = await agent.run("second")
    assert (second.run_id, second.status) == ("other", "completed")
    assert {row.run_id for row in await store.list_runs()} == {"same", "other"}


async def test_a_chosen_id_already_taken_is_refused(store: Store) -> None:
    agent = Agent(name="a", model=ScriptedModel([reply("one"), reply("two")]), store=store)
    await agent.run("first", run_id="mine")
    with pytest.raises(RunIdTaken, match="a run with id 'mine' already exists"):
        await agent.run("second", run_id="mine")
    assert [row.run_id for row in await store.list_runs()] == ["mine"]


async def test_the_draws_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent(name="a", model=ScriptedModel([reply("one")]), store=store)
    await agent.run("first", run_id="same")
    drawn(monkeypatch, ["same"] * (ID_DRAWS + 1))
    with pytest.raises(RunIdTaken):
        await agent.run("second")


async def test_a_pipeline_draws_again_too(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    async def flow(ctx: PipelineContext, data: object) -> object:
        return data

    pipeline = Pipeline(name="p", flow=flow, model=ScriptedModel([]), store=store)
    await pipeline.run({"n": 1}, run_id="same")
    drawn(monkeypatch, ["same", "next"])
    assert (await pipeline.run({"n": 2})).run_id == "next"
