"""Pipelines: typed extraction re-asked with its validation errors, map-reduce with a limit, classify-and-route;
every step journaled, so a resumed pipeline runs no finished step again; budgets as for agents."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from agentkeel import Budget, ModelRequest, ModelResponse, ScriptedModel, Store, reply
from agentkeel.core.state import replay
from agentkeel.patterns.pipeline import Pipeline, PipelineContext


class Crash(BaseException):
    """The process dies."""


class Invoice(BaseModel):
    number: str
    total: float


def prompt_of(request: ModelRequest) -> str:
    return request.messages[-1].text  # type: ignore[union-attr]


async def test_extraction_is_validated_and_reasked_with_the_errors(store: Store) -> None:
    asked: list[str] = []

    def model(request: ModelRequest) -> ModelResponse:
        asked.append(prompt_of(request))
        if len(asked) == 1:
            return reply('{"number": "INV-7", "total": "a lot"}')  # not a number
        return reply('{"number": "INV-7", "total": 120.5}')

    async def flow(ctx: PipelineContext, document: str) -> dict[str, Any]:
        invoice = await ctx.extract("invoice", Invoice, document)
        return invoice.model_dump()

    result = await Pipeline(name="invoices", flow=flow, model=ScriptedModel(model), store=store).run("Invoice INV-7")
    assert result.status == "completed" and json.loads(result.output) == {"number": "INV-7", "total": 120.5}
    assert len(asked) == 2 and "total: Input should be a valid number" in asked[1]
    assert '"required": ["number", "total"]' in asked[0]  # the schema is in the prompt
    state = replay(await store.load(result.run_id))
    assert state.steps == {"invoice": {"number": "INV-7", "total": 120.5}} and state.model_calls == 2


async def test_an_extraction_that_never_validates_fails_the_run_with_the_reason(store: Store) -> None:
    async def flow(ctx: PipelineContext, document: str) -> Any:
        return await ctx.extract("invoice", Invoice, document, attempts=2)

    result = await Pipeline(name="invoices", flow=flow, model=ScriptedModel([reply("no idea")] * 2), store=store).run(
        "?"
    )
    assert (result.status, result.reason) == ("failed", "extraction_failed")
    assert "after 2 attempts" in result.detail


async def test_map_reduce_runs_items_side_by_side_within_the_limit(store: Store) -> None:
    running, most = 0, 0

    async def model(request: ModelRequest) -> ModelResponse:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)  # the other items get their turn
        running -= 1
        text = prompt_of(request)
        if text.startswith("Combine"):
            return reply(f"{text.count('summary of')} summaries combined")
        return reply(f"summary of {text.split()[-1]}")

    async def summarise(ctx: PipelineContext, doc: str) -> str:
        return await ctx.llm("summary", f"Summarise {doc}")

    async def flow(ctx: PipelineContext, docs: list[str]) -> str:
        summaries = await ctx.map("docs", docs, summarise, limit=4)
        return await ctx.llm("reduce", "Combine: " + "; ".join(summaries))

    docs = [f"doc-{n}" for n in range(50)]
    result = await Pipeline(name="digest", flow=flow, model=ScriptedModel(model), store=store).run(docs)
    assert (result.status, result.output) == ("completed", "50 summaries combined")
    assert 1 < most <= 4
    state = replay(await store.load(result.run_id))
    assert state.steps["docs[7].summary"] == "summary of doc-7" and len(state.steps) == 51


async def test_a_resumed_pipeline_runs_no_finished_step_again(store: Store, clock: Any) -> None:
    calls: list[str] = []
    crash_at = {"n": 6}

    def model(request: ModelRequest) -> ModelResponse:
        text = prompt_of(request)
        calls.append(text)
        if len(calls) == crash_at["n"]:
            crash_at["n"] = -1
            raise Crash()
        return reply(f"ok {text}")

    async def item(ctx: PipelineContext, doc: str) -> str:
        return await ctx.llm("summary", doc)

    async def flow(ctx: PipelineContext, docs: list[str]) -> str:
        done = await ctx.map("docs", docs, item, limit=1)  # one at a time: a deterministic crash point
        return await ctx.llm("reduce", " | ".join(done))

    def pipeline() -> Pipeline:
        return Pipeline(name="digest", flow=flow, model=ScriptedModel(model), store=store)

    docs = [f"d{n}" for n in range(8)]
    with pytest.raises(Crash):
        await pipeline().run(docs, run_id="p1")
    journaled = replay(await store.load("p1")).steps
    assert "docs[5].summary" not in journaled and len(journaled) >= 5  # d5's call died before its step was journaled
    missing = [doc for n, doc in enumerate(docs) if f"docs[{n}].summary" not in journaled]
    clock.advance(60)
    before = len(calls)
    result = await pipeline().resume("p1")
    assert result.status == "completed"
    reduce = " | ".join(f"ok {doc}" for doc in docs)
    assert calls[before:] == [*missing, reduce]  # only what was not journaled is asked again
    assert result.output == f"ok {reduce}"


async def test_classify_and_route_picks_one_fixed_branch(store: Store) -> None:
    answers = iter(["Shipping?", "shipping"])  # not a label, then a label

    def model(request: ModelRequest) -> ModelResponse:
        text = prompt_of(request)
        if text.startswith("Answer with exactly one"):
            return reply(next(answers))
        return reply(f"drafted: {text}")

    async def flow(ctx: PipelineContext, ticket: str) -> str:
        label = await ctx.classify("route", ticket, ["billing", "shipping", "other"])
        branches = {
            "billing": lambda: ctx.llm("billing", f"Billing reply to {ticket}"),
            "shipping": lambda: ctx.llm("shipping", f"Shipping reply to {ticket}"),
            "other": lambda: ctx.step("other", lambda: _const("escalated")),
        }
        return await branches[label]()

    result = await Pipeline(name="router", flow=flow, model=ScriptedModel(model), store=store).run("Where is my box?")
    assert result.output == "drafted: Shipping reply to Where is my box?"
    state = replay(await store.load(result.run_id))
    assert state.steps["route"] == "shipping" and "billing" not in state.steps


async def _const(value: str) -> str:
    return value


async def test_a_budget_stops_a_pipeline_before_the_call_it_cannot_afford(store: Store) -> None:
    async def item(ctx: PipelineContext, doc: str) -> str:
        return await ctx.llm("summary", doc)

    async def flow(ctx: PipelineContext, docs: list[str]) -> list[str]:
        return await ctx.map("docs", docs, item, limit=1)

    seen: list[str] = []

    def model(request: ModelRequest) -> ModelResponse:
        seen.append(prompt_of(request))
        return reply("ok")

    pipeline = Pipeline(name="digest", flow=flow, model=ScriptedModel(model), store=store, budget=Budget(model_calls=3))
    result = await pipeline.run([f"d{n}" for n in range(10)])
    assert (result.status, result.reason) == ("failed", "budget_exceeded:model_calls")
    assert seen == ["d0", "d1", "d2"]


async def test_a_failing_item_ends_the_run_and_stops_its_siblings(store: Store) -> None:
    async def model(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0)
        return reply("ok")

    async def item(ctx: PipelineContext, n: int) -> str:
        if n == 3:
            raise ValueError("document 3 is corrupt")
        return await ctx.llm("summary", f"doc {n}")

    async def flow(ctx: PipelineContext, items: list[int]) -> list[str]:
        return await ctx.map("docs", items, item, limit=2)

    result = await Pipeline(name="digest", flow=flow, model=ScriptedModel(model), store=store).run(list(range(10)))
    assert (result.status, result.reason) == ("failed", "step_error")
    assert "ValueError: document 3 is corrupt" in result.detail
    events = await store.load(result.run_id)
    assert events[-1].kind == "run_ended"  # nothing journaled after the end
    assert len(replay(events).steps) < 10
