"""Pipelines: deterministic workflows with LLM steps, for work that needs no agent.

A pipeline is an async function of a context and an input; every step it takes through the context is journaled
under a key (``StepFinished``) before the next one starts, so a resumed pipeline runs the function again and
the finished steps return their journaled results at once: no model call is repeated, no finished item of a map
is processed again. The steps:

* ``ctx.llm(key, prompt)``: one model call, its text.
* ``ctx.extract(key, Schema, text)``: typed extraction; the answer is validated against a pydantic model, and on
  a validation error the model is asked again with the errors (``attempts`` in all).
* ``ctx.classify(key, text, labels)``: one of fixed labels (an answer that is not one is asked again).
* ``ctx.map(key, items, fn, limit=)``: ``fn(item_ctx, item)`` for every item, at most ``limit`` at once; each
  item's steps are journaled under ``key[i]``.
* ``ctx.step(key, fn)``: any other work (a lookup, a computation), journaled the same way.

Keys must be stable from one execution of the function to the next: name steps by what they are, not by a
counter that could shift. Budgets work as for agents (``Pipeline(budget=Budget(...))``: checked before each
model call); a step that raises ends the run ``failed(step_error)`` with what it raised; ``keel show`` lists the
steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from agentkeel.agent import create_new_run, new_owner, new_run_id
from agentkeel.core.budget import Budget, Exceeded, Spend
from agentkeel.core.events import Event, RunEnded, RunResumed, RunStarted, StepFinished
from agentkeel.core.messages import ModelRequest, ModelResponse, UserMessage
from agentkeel.core.state import RunState, replay
from agentkeel.core.tokens import estimate_input_tokens
from agentkeel.engine.lease_keeper import LeaseKeeper
from agentkeel.engine.model_call import ModelFailure, call_model
from agentkeel.errors import ConfigError, JournalError, KeelError, ModelError
from agentkeel.ledger import Ledger, Reservation
from agentkeel.models.base import Model
from agentkeel.models.resolve import resolve_model
from agentkeel.observe.ids import check_traceparent, current_traceparent
from agentkeel.pricing import PriceTable, cost_of
from agentkeel.result import RunResult
from agentkeel.stores.base import DEFAULT_LEASE_S, CancelRequest, Store, commit_events
from agentkeel.stores.open import open_store
from agentkeel.tools.tool import RetryPolicy

T = TypeVar("T")
S = TypeVar("S", bound=BaseModel)
Flow = Callable[["PipelineContext", Any], Awaitable[Any]]


class StepFailed(KeelError):
    """A step could not produce its result (the model failed, an extraction never validated): the run ends
    ``failed(<reason>)`` with this message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Stopped(Exception):
    """The run must stop before its next step (a budget, a cancel request)."""

    def __init__(self, ending: RunEnded) -> None:
        super().__init__(ending.error)
        self.ending = ending


class Pipeline:
    """A deterministic workflow with LLM steps, journaled like an agent's run. See the module's docstring."""

    def __init__(
        self,
        *,
        name: str,
        flow: Flow,
        model: Model | str,
        store: Store | str | None = None,
        budget: Budget | None = None,
        prices: PriceTable | None = None,
        model_retry: RetryPolicy | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        max_parallel: int = 8,
        ref: str = "",
    ) -> None:
        if not name.strip():
            raise ConfigError("Pipeline(name=...) must be a non-empty string: it names the pipeline's runs")
        if not callable(flow):
            raise ConfigError(f"pipeline {name!r}: flow must be an async function (ctx, input) -> output")
        if max_parallel < 1:
            raise ConfigError(f"pipeline {name!r}: max_parallel must be 1 or more, not {max_parallel!r}")
        self.name = name
        self.flow = flow
        self.model = resolve_model(model)
        self.budget = budget
        self.prices = prices or PriceTable()
        self.model_retry = model_retry or RetryPolicy(retries=4, backoff_s=0.5, max_backoff_s=30.0)
        self.lease_s = lease_s
        self.max_parallel = max_parallel
        self.ref = ref
        """Where ``keel resume`` can load this pipeline from (``file.py:name``); set by ``keel run``."""
        self._store_setting = store
        self._store: Store | None = None
        self._keeper: LeaseKeeper | None = None

    def with_store(self, store: Store | str, *, ref: str | None = None) -> Pipeline:
        """A copy of this pipeline on another store (and, from ``keel run``, with its reference)."""
        return Pipeline(
            name=self.name,
            flow=self.flow,
            model=self.model,
            store=store,
            budget=self.budget,
            prices=self.prices,
            model_retry=self.model_retry,
            lease_s=self.lease_s,
            max_parallel=self.max_parallel,
            ref=self.ref if ref is None else ref,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            setting = self._store_setting
            self._store = setting if setting is not None and not isinstance(setting, str) else open_store(setting)
        return self._store

    async def run(self, data: Any, *, run_id: str | None = None, trace_parent: str | None = None) -> RunResult:
        """Run the pipeline on ``data`` (JSON values) to its end; ``trace_parent`` as for ``Agent.run``."""
        check_traceparent(trace_parent)
        try:
            task = json.dumps(to_jsonable_python(data), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pipeline {self.name!r}: its input must be JSON values: {exc}") from exc
        first = RunStarted(
            at=time.time(),
            run_id=run_id or new_run_id(),  # drawn again by create_new_run if taken
            agent=self.name,
            task=task,
            model=self.model.name,
            mode="pipeline",
            agent_ref=self.ref,
            trace_parent=trace_parent or current_traceparent(),
        )
        owner = new_owner()
        state = await create_new_run(self.store, first, owner=owner, lease_s=self.lease_s, chosen=run_id is not None)
        return RunResult.of(await self._drive(state, owner))

    async def resume(self, run_id: str) -> RunResult:
        """Continue a pipeline whose process died: its finished steps are not run again."""
        owner = new_owner()
        await self.store.acquire_lease(run_id, owner, self.lease_s)
        try:
            state = replay(await self.store.load(run_id))
            if state.terminal:
                await self.store.release_lease(run_id, owner)
                return RunResult.of(state)
            if state.mode != "pipeline" or state.agent != self.name:
                raise JournalError(f"run {run_id} is not a run of pipeline {self.name!r}: resume it with its own")
            await commit_events(self.store, state, owner, [RunResumed(at=time.time(), owner=owner)])
        except BaseException:
            await self.store.release_lease(run_id, owner)
            raise
        return RunResult.of(await self._drive(state, owner))

    def run_sync(self, data: Any, *, run_id: str | None = None) -> RunResult:
        return asyncio.run(self.run(data, run_id=run_id))

    async def _drive(self, state: RunState, owner: str) -> RunState:
        if self._keeper is None:
            self._keeper = LeaseKeeper(self.store, self.lease_s)
        self._keeper.hold(state.run_id, owner)
        ctx = PipelineContext(self, state, owner, "")
        try:
            try:
                output = await self.flow(ctx, json.loads(state.task))
            except _Stopped as stop:
                ending = stop.ending
            except StepFailed as exc:
                ending = RunEnded(at=time.time(), status="failed", reason=exc.reason, error=str(exc))
            except (KeelError, asyncio.CancelledError):
                raise
            except Exception as exc:
                error = f"a step raised {type(exc).__name__}: {exc}"
                ending = RunEnded(at=time.time(), status="failed", reason="step_error", error=error)
            else:
                text = output if isinstance(output, str) else json.dumps(to_jsonable_python(output, fallback=str))
                ending = RunEnded(at=time.time(), status="completed", output=text)
            await ctx.commit([ending])
            return state
        finally:
            self._keeper.drop(state.run_id)
            with contextlib.suppress(Exception):  # else the next owner takes the lease when it expires
                await self.store.release_lease(state.run_id, owner)


class PipelineContext:
    """What a pipeline's function takes its steps through (one per map item, sharing the run)."""

    def __init__(self, pipeline: Pipeline, state: RunState, owner: str, prefix: str, shared: Any = None) -> None:
        self._pipeline = pipeline
        self.state = state
        self._owner = owner
        self._prefix = prefix
        if shared is None:
            ledger = None
            if pipeline.budget is not None:
                ledger = Ledger(pipeline.budget, Spend.of(state), name=state.run_id)
            shared = _Shared(asyncio.Lock(), ledger, asyncio.Semaphore(pipeline.max_parallel))
        self._shared = shared

    @property
    def run_id(self) -> str:
        return self.state.run_id

    async def step(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once, journaled under ``key``; a resumed run gets the journaled result instead."""
        full = self._key(key)
        if full in self.state.steps:
            return self.state.steps[full]  # type: ignore[no-any-return]
        started = time.perf_counter()
        value = await fn()
        await self.commit([_finished(full, value, Spend(), started)])
        return value

    async def llm(self, key: str, prompt: str, *, instructions: str = "", max_output_tokens: int | None = None) -> str:
        """One model call; its text."""
        full = self._key(key)
        if full in self.state.steps:
            return str(self.state.steps[full])
        started = time.perf_counter()
        response, spend = await self._ask(prompt, instructions, max_output_tokens, None)
        await self.commit([_finished(full, response.text, spend, started)])
        return response.text

    async def extract(self, key: str, schema: type[S], text: str, *, instructions: str = "", attempts: int = 3) -> S:
        """The fields of ``schema`` found in ``text``, validated; an invalid answer is asked again with the
        validation errors, up to ``attempts`` times in all."""
        full = self._key(key)
        if full in self.state.steps:
            return schema.model_validate(self.state.steps[full])
        started = time.perf_counter()
        spent = Spend()
        prompt = (
            f"Extract the fields of {schema.__name__} from the text below and answer with one JSON object that "
            f"matches this JSON schema, nothing else.\n\nSchema: {json.dumps(schema.model_json_schema())}\n\n"
            f"Text:\n{text}"
        )
        problem = ""
        for _ in range(attempts):
            asked = prompt if not problem else f"{prompt}\n\nYour last answer was not valid: {problem} Answer again."
            response, used = await self._ask(asked, instructions, None, schema.model_json_schema())
            spent = spent.plus(used)
            try:
                value = schema.model_validate_json(response.text)
            except ValidationError as exc:
                problem = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'the answer'}: {e['msg']}" for e in exc.errors()[:8]
                )
                continue
            await self.commit([_finished(full, value.model_dump(mode="json"), spent, started)])
            return value
        raise StepFailed(
            "extraction_failed",
            f"step {full!r}: the model's answer did not match {schema.__name__} after {attempts} attempts "
            f"(last: {problem})",
        )

    async def classify(self, key: str, text: str, labels: Sequence[str], *, instructions: str = "") -> str:
        """One of ``labels`` for ``text``; an answer that is not one of them is asked again (3 times in all)."""
        if not labels:
            raise ConfigError(f"classify {key!r}: give the labels to choose from")
        choices = ", ".join(labels)
        prompt = f"Answer with exactly one of these labels, nothing else: {choices}.\n\nText:\n{text}"

        full = self._key(key)
        if full in self.state.steps:
            return str(self.state.steps[full])
        started, spent, answer = time.perf_counter(), Spend(), ""
        for _ in range(3):
            response, used = await self._ask(prompt, instructions, 16, None)
            spent = spent.plus(used)
            answer = response.text.strip().strip(".").strip()
            for label in labels:
                if answer.lower() == label.lower():
                    await self.commit([_finished(full, label, spent, started)])
                    return label
        raise StepFailed("classification_failed", f"step {full!r}: {answer!r} is not one of the labels {choices}")

    async def map(
        self, key: str, items: Sequence[Any], fn: Callable[[PipelineContext, Any], Awaitable[T]], *, limit: int = 0
    ) -> list[T]:
        """``fn(item_ctx, item)`` for each item, at most ``limit`` at once (the pipeline's ``max_parallel`` by
        default); each item's steps are journaled under ``key[i]``, so a resumed map skips finished items."""
        gate = asyncio.Semaphore(limit) if limit else self._shared.parallel

        async def one(index: int, item: Any) -> T:
            async with gate:
                sub = PipelineContext(
                    self._pipeline, self.state, self._owner, f"{self._key(key)}[{index}].", self._shared
                )
                return await fn(sub, item)

        try:  # a failing item stops its siblings: nothing of the map is journaled after the run's end
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, item)) for i, item in enumerate(items)]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    # -- internals ------------------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        if not key or "[" in key:
            raise ConfigError(f"step key {key!r}: give each step a plain, stable name (brackets are for map items)")
        return f"{self._prefix}{key}"

    async def _ask(
        self, prompt: str, instructions: str, max_output_tokens: int | None, schema: dict[str, Any] | None
    ) -> tuple[ModelResponse, Spend]:
        pipeline, ledger = self._pipeline, self._shared.ledger
        request = ModelRequest(
            instructions=instructions,
            messages=[UserMessage(text=prompt)],
            max_output_tokens=max_output_tokens,
            output_schema=schema,
        )
        price = pipeline.prices.price(pipeline.model.name)
        reserved: Reservation | None = None
        if ledger is not None:
            afforded = ledger.reserve_model_call(
                input_tokens=estimate_input_tokens(request), max_output_tokens=max_output_tokens, price=price
            )
            if isinstance(afforded, Exceeded):
                raise _Stopped(
                    RunEnded(at=time.time(), status="failed", reason=afforded.reason, error=afforded.sentence())
                )
            reserved = afforded
        answer = await call_model(
            pipeline.model, request, policy=pipeline.model_retry, remaining_s=lambda: None, on_retry=_no_journal
        )
        if isinstance(answer, ModelFailure):
            if ledger is not None and reserved is not None:
                ledger.release(reserved)
            raise StepFailed("model_error", answer.message)
        usage = answer.usage
        spend = Spend.model_call(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=cost_of(price, usage)
        )
        if ledger is not None and reserved is not None:
            ledger.settle(reserved, actual=spend)
        return answer, spend

    async def commit(self, events: list[Event]) -> None:
        async with self._shared.lock:  # map items commit one at a time, in the order they finish
            signals = await commit_events(self._pipeline.store, self.state, self._owner, events)
        cancel: CancelRequest | None = signals.cancel
        if cancel is not None and not self.state.terminal:
            error = f"cancelled by {cancel.by}: {cancel.reason}"
            raise _Stopped(RunEnded(at=time.time(), status="cancelled", reason="cancelled", error=error, by=cancel.by))


class _Shared:
    """What the contexts of one run share: the commit lock, the budget, the map limit."""

    def __init__(self, lock: asyncio.Lock, ledger: Ledger | None, parallel: asyncio.Semaphore) -> None:
        self.lock = lock
        self.ledger = ledger
        self.parallel = parallel


def _finished(key: str, value: Any, spend: Spend, started: float) -> StepFinished:
    return StepFinished(
        at=time.time(),
        key=key,
        result=to_jsonable_python(value, fallback=str),
        model_calls=spend.model_calls,
        input_tokens=spend.input_tokens,
        output_tokens=spend.output_tokens,
        cost_usd=spend.cost_usd,
        latency_s=time.perf_counter() - started,
    )


async def _no_journal(attempt: int, error: ModelError, delay: float) -> None:
    """A pipeline's model retries are not journaled one by one (the step's result is)."""


__all__ = ["Pipeline", "PipelineContext", "StepFailed"]
