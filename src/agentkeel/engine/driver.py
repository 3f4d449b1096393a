"""The driver: performs the core's decisions for one run and journals every outcome before moving on.

The loop is ``next_action(state)`` → perform → ``commit(events)``: fold the events into the state, then append
them to the journal. Nothing acts on the new state before the append returns, and if the append fails the driver
stops (the error propagates), so no effect ever follows from a state the journal does not hold. Commits per
step: the model's response together with the intents of the calls it asked for, then each call's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkeel.core.calls import CallRecord
from agentkeel.core.decide import CallModel, Done, Finish, RecoverCalls, cancelled, finish_if_answered, next_action
from agentkeel.core.events import (
    Event,
    ModelResponded,
    ModelRetrying,
    RunEnded,
    RunPaused,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.messages import ModelRequest, ModelResponse, ToolCall, ToolSchema
from agentkeel.core.state import RunState
from agentkeel.engine.lease_keeper import LeaseKeeper
from agentkeel.engine.model_call import ModelFailure, call_model
from agentkeel.engine.tool_runner import OnRetry, ToolOutcome, result_text, run_tool
from agentkeel.errors import ModelError
from agentkeel.models.base import Model
from agentkeel.pricing import PriceTable, cost_of
from agentkeel.stores.base import CancelRequest, RunRow, Store
from agentkeel.tools.schema import takes_context
from agentkeel.tools.tool import Reconciled, RetryPolicy, Tool, ToolContext
from agentkeel.tools.validate import MAX_DEPTH, ValidCall, nested_deeper_than, validate_call

ROW_REFRESH_S = 0.5
"""How stale a live run's figures (steps, tokens, cost) may be in listings such as ``keel runs``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DriveConfig:
    """What the driver needs from the agent."""

    instructions: str
    model: Model
    tools: Mapping[str, Tool]
    schemas: tuple[ToolSchema, ...]
    prices: PriceTable
    lease_s: float
    model_retry: RetryPolicy = field(default_factory=RetryPolicy)
    deps: Any = None


class Driver:
    """Drives one run to its end or to a pause. Holds the run's lease while it does."""

    def __init__(
        self,
        *,
        config: DriveConfig,
        store: Store,
        state: RunState,
        owner: str,
        keeper: LeaseKeeper,
        cancel: CancelRequest | None = None,
    ) -> None:
        self._keeper = keeper
        self._config = config
        self._store = store
        self.state = state
        self._owner = owner
        self._cancel = cancel
        """A pending cancel request: honoured before the next model call, tool call or recovery."""
        self._drive_start = time.monotonic()
        self._active_before = state.active_s
        self._commit_lock = asyncio.Lock()  # concurrent tool calls commit one at a time, in sequence order
        self._concurrent = False  # whether tool calls are running side by side (the lock is needed only then)
        self._price = config.prices.price(config.model.name)
        self._no_context = self._context("", "", 1)
        self._row_status = ""  # the run row as last written: its status, and when
        self._row_written = 0.0

    async def drive(self) -> RunState:
        self._keeper.hold(self.state.run_id, self._owner)
        try:
            while True:
                action = next_action(self.state, driven_s=self._driven_s() if self.state.timeout_s else 0.0)
                if self._cancel is not None and not isinstance(action, Done):
                    await self._end_cancelled()
                    return self.state
                if isinstance(action, CallModel):  # the common case first
                    await self._step(action.step)
                elif isinstance(action, RecoverCalls):
                    await self._recover(action.calls)
                elif isinstance(action, Finish):
                    await self._end(action.status, action.reason, action.output, action.error)
                    return self.state
                else:  # Done, Wait
                    return self.state
        finally:
            self._keeper.drop(self.state.run_id)
            with contextlib.suppress(Exception):
                await self._store.release_lease(self.state.run_id, self._owner)

    # -- steps ----------------------------------------------------------------------------------------------

    async def _step(self, step: int) -> None:
        request = ModelRequest(
            instructions=self._config.instructions, messages=self.state.conversation(), tools=self._config.schemas
        )
        started = time.perf_counter()
        answer = await call_model(
            self._config.model,
            request,
            policy=self._config.model_retry,
            remaining_s=self._remaining_s,
            on_retry=self._journal_model_retry,
        )
        if isinstance(answer, ModelFailure):
            if not answer.deadline:  # a deadline: the next decision ends the run failed(timeout)
                await self._end("failed", "model_error", self.state.last_model_text, answer.message)
            return
        response = answer
        checks = [validate_call(call, self._config.tools) for call in response.tool_calls]
        for check in checks:
            if isinstance(check, ToolFailure):  # a call that validated is shallow enough: check only the others
                response = _journalable(response)
                break
        now = time.time()
        cost = cost_of(self._price, response.usage)
        events: list[Event] = [
            ModelResponded(at=now, step=step, response=response, latency_s=time.perf_counter() - started, cost_usd=cost)
        ]
        answered = finish_if_answered(response)
        if answered is not None:
            events.append(RunEnded(at=now, status="completed", output=answered.output))
            await self._commit(events)
            return
        runnable = self._plan_calls(step, response.tool_calls, checks, events, now)
        await self._commit(events, listed=not runnable)
        await self._execute(runnable)

    async def _journal_model_retry(self, attempt: int, error: ModelError, delay: float) -> None:
        step = self.state.steps_completed + 1
        retrying = ModelRetrying(
            at=time.time(), step=step, attempt=attempt, error_kind=error.kind, message=error.message, delay_s=delay
        )
        await self._commit([retrying], listed=False)

    def _plan_calls(
        self,
        step: int,
        calls: Sequence[ToolCall],
        checks: list[ValidCall | ToolFailure],
        events: list[Event],
        now: float,
    ) -> list[tuple[str, ToolCall, ValidCall, str]]:
        """A valid call is journaled as started, an invalid one as finished with its error."""
        runnable: list[tuple[str, ToolCall, ValidCall, str]] = []
        for index, call in enumerate(calls):
            checked = checks[index]
            call_id = f"{step}.{index + 1}"
            if isinstance(checked, ToolFailure):
                events.append(
                    ToolCallFinished(
                        at=now,
                        call=call_id,
                        tool_call_id=call.id,
                        name=call.name,
                        content=checked.message,
                        error=checked,
                        attempts=0,
                    )
                )
                continue
            key = f"{self.state.run_id}:{call_id}"
            events.append(
                ToolCallStarted(
                    at=now,
                    call=call_id,
                    tool_call_id=call.id,
                    name=call.name,
                    arguments=checked.json_arguments,
                    idempotency_key=key,
                )
            )
            runnable.append((call_id, call, checked, key))
        return runnable

    async def _execute(self, runnable: list[tuple[str, ToolCall, ValidCall, str]]) -> None:
        if len(runnable) > 1 and all(valid.tool.effect == "read" for _, _, valid, _ in runnable):
            self._concurrent = True
            try:
                await asyncio.gather(*(self._run_call(c, tc.id, v, k, attempt=1) for c, tc, v, k in runnable))
            finally:
                self._concurrent = False
            return
        for call_id, call, valid, key in runnable:
            await self._run_call(call_id, call.id, valid, key, attempt=1)

    async def _run_call(self, call_id: str, tool_call_id: str, valid: ValidCall, key: str, *, attempt: int) -> None:
        if self._cancel is not None:
            failure = ToolFailure(kind="skipped", message=f"{valid.tool.name} was not run: the run was cancelled.")
            outcome = ToolOutcome(content=failure.message, failure=failure, attempts=0)
        else:
            tool = valid.tool
            # A tool that takes no context reads none: only the attempt number matters, and it is 1.
            ctx = self._context(call_id, key, attempt) if tool.takes_ctx or attempt != 1 else self._no_context
            on_retry = self._retry_journal(call_id) if tool.retry.retries else _no_retries
            outcome = await run_tool(valid, ctx, on_retry=on_retry)
        await self._commit([_finished(call_id, tool_call_id, valid.tool.name, outcome)])

    def _context(self, call_id: str, key: str, attempt: int) -> ToolContext:
        return ToolContext(
            run_id=self.state.run_id,
            call=call_id,
            idempotency_key=key,
            attempt=attempt,
            agent=self.state.agent,
            deps=self._config.deps,
        )

    def _retry_journal(self, call_id: str) -> OnRetry:
        async def journal_retry(failed_attempt: int, failure: ToolFailure, delay: float) -> None:
            retrying = ToolCallRetrying(
                at=time.time(), call=call_id, attempt=failed_attempt, error=failure, delay_s=delay
            )
            await self._commit([retrying], listed=False)

        return journal_retry

    # -- recovery after a crash -----------------------------------------------------------------------------

    async def _recover(self, calls: tuple[CallRecord, ...]) -> None:
        """Resolve interrupted calls by their tools' contracts; pause for a person where none applies."""
        attention: list[str] = []
        for record in calls:
            tool = self._config.tools[record.name]
            valid = ValidCall(
                tool=tool, arguments=tool.arguments.model_validate(record.arguments), json_arguments=record.arguments
            )
            if record.retry_authorized or tool.safe_to_repeat:
                why = (
                    "authorized" if record.retry_authorized else tool.effect if tool.effect == "read" else "idempotent"
                )
                await self._rerun(record, valid, why)
                continue
            if tool.reconcile_fn is not None:
                found = await self._reconcile(tool, record, valid)
                if isinstance(found, Reconciled) and found.happened:
                    outcome = ToolOutcome(content=result_text(found.result), result=found.result, attempts=0)
                    await self._commit([_finished(record.call, record.tool_call_id, tool.name, outcome)])
                    continue
                if isinstance(found, Reconciled):
                    await self._rerun(record, valid, "reconciled")
                    continue
            attention.append(record.call)
        if attention:
            listed = ", ".join(f"{c} ({self.state.calls[c].name})" for c in attention)
            detail = (
                f"interrupted write call(s) {listed} may or may not have taken effect. Check, then run "
                f"`keel resolve {self.state.run_id} CALL --result JSON` (it happened), `--retry` (run it again) "
                "or `--skip` (tell the agent it did not run)"
            )
            await self._commit(
                [RunPaused(at=time.time(), reason="needs_attention", detail=detail, calls=tuple(attention))]
            )

    async def _rerun(self, record: CallRecord, valid: ValidCall, why: str) -> None:
        attempt = record.attempts + 1
        await self._commit([ToolCallResumed(at=time.time(), call=record.call, attempt=attempt, why=why)], listed=False)
        await self._run_call(record.call, record.tool_call_id, valid, record.idempotency_key, attempt=attempt)

    async def _reconcile(self, tool: Tool, record: CallRecord, valid: ValidCall) -> Reconciled | None:
        hook = tool.reconcile_fn
        assert hook is not None
        ctx = self._context(record.call, record.idempotency_key, record.attempts + 1)
        args = (ctx,) if takes_context(hook) else ()  # the hook's own signature says whether it wants ctx
        try:
            found = hook(*args, **valid.kwargs)
            if asyncio.iscoroutine(found):
                found = await found
        except Exception:
            return None  # a person decides
        return found if isinstance(found, Reconciled) else None

    # -- journal --------------------------------------------------------------------------------------------

    async def _commit(self, events: list[Event], *, listed: bool = True) -> None:
        """Fold the events into the state and append them (see the module's docstring for why that order is safe)."""
        if self._concurrent:  # tool calls side by side: their commits go one at a time, in sequence order
            async with self._commit_lock:
                await self._commit_now(events, listed)
        else:
            await self._commit_now(events, listed)

    async def _commit_now(self, events: list[Event], listed: bool) -> None:
        state = self.state
        after = state.last_seq
        for event in events:
            state.apply(event)
        row = None
        if state.status != self._row_status or listed:
            # The run row (for listings) is rewritten when the status changes, else at most every ROW_REFRESH_S.
            now = time.monotonic()
            if state.status != self._row_status or now - self._row_written >= ROW_REFRESH_S:
                row = RunRow.of(state)
                self._row_status, self._row_written = state.status, now
        cancel = await self._store.append(state.run_id, self._owner, after, events, row)
        if cancel is not None and self._cancel is None:
            self._cancel = cancel

    async def _end(self, status: str, reason: str, output: str, error: str) -> None:
        await self._commit(
            [RunEnded(at=time.time(), status=status, reason=reason, output=output, error=error)]  # type: ignore[arg-type]
        )

    async def _end_cancelled(self) -> None:
        cancel = self._cancel
        assert cancel is not None
        await self._commit([cancelled(self.state, by=cancel.by, why=cancel.reason, at=time.time())])

    # -- time -----------------------------------------------------------------------------------------------

    def _driven_s(self) -> float:
        return self._active_before + (time.monotonic() - self._drive_start)

    def _remaining_s(self) -> float | None:
        if self.state.timeout_s is None:
            return None
        return max(0.0, self.state.timeout_s - self._driven_s())


def _journalable(response: ModelResponse) -> ModelResponse:
    """Arguments nested past what the journal can read back are kept as JSON text (validation then refuses
    them with a message the model can act on), so that a model's output can never make a journal unreadable."""
    calls = tuple(_shallow(call) for call in response.tool_calls)
    if all(new is old for new, old in zip(calls, response.tool_calls, strict=True)):
        return response
    return dataclasses.replace(response, tool_calls=calls)


def _shallow(call: ToolCall) -> ToolCall:
    if not (isinstance(call.arguments, dict) and nested_deeper_than(call.arguments)):
        return call
    try:
        arguments = json.dumps(call.arguments)
    except (ValueError, RecursionError):
        arguments = f"(arguments nested more than {MAX_DEPTH} levels deep)"
    return ToolCall(id=call.id, name=call.name, arguments=arguments)


async def _no_retries(attempt: int, failure: ToolFailure, delay: float) -> None:
    raise AssertionError("a tool without retries was retried")  # run_tool retries only up to tool.retry.retries


def _finished(call_id: str, tool_call_id: str, name: str, outcome: ToolOutcome) -> ToolCallFinished:
    return ToolCallFinished(
        at=time.time(),
        call=call_id,
        tool_call_id=tool_call_id,
        name=name,
        content=outcome.content,
        result=outcome.result,
        error=outcome.failure,
        attempts=outcome.attempts,
        latency_s=outcome.latency_s,
    )
