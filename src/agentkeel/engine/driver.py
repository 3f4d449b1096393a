"""The driver: performs the core's decisions for one run and journals every outcome before moving on.

The loop is ``next_action(state)`` → perform → ``commit(events)`` (``run_journal.py``: fold the events into the
state, then append them; nothing with an effect acts on a state the journal does not hold). Commits per step: the
model's response together with the intents of the calls it asked for, then each call's outcome.

A step whose calls are all reads commits once. A read changes nothing outside the run, so its intent need not be
durable before it runs: the response, the intents and the outcomes go in one append after the reads. Should the
process die meanwhile, the journal ends at the step before and the model is asked again (the response was never
journaled, so no journaled model call repeats). Reads still under way after ``READ_GRACE_S`` (``read_grace.py``)
have what is held written at once, so that a slow read shows as under way and a crash repeats no model call from
long ago. One commit instead of two a step halves what concurrent runs wait for on a durable store (a bench run
of four reads: 5 appends instead of 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from agentkeel.core.calls import Approval, CallRecord
from agentkeel.core.decide import (
    CallModel,
    Compensate,
    Done,
    Finish,
    Pause,
    RecoverCalls,
    RunApproved,
    cancelled,
    finish_if_answered,
    next_action,
)
from agentkeel.core.events import (
    CompensationFinished,
    CompensationStarted,
    Event,
    ModelResponded,
    ModelRetrying,
    RunEnded,
    RunPaused,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.messages import ModelRequest, ModelResponse
from agentkeel.core.state import RunState
from agentkeel.engine.controls import Controls, DriveConfig
from agentkeel.engine.lease_keeper import LeaseKeeper
from agentkeel.engine.model_call import ModelFailure, call_model
from agentkeel.engine.planning import Runnable, journalable, plan_calls, preview_calls
from agentkeel.engine.rollback import compensation_tool, rollback_event
from agentkeel.engine.rollback import due as rollback_due
from agentkeel.engine.run_journal import RunJournal
from agentkeel.engine.tool_runner import OnRetry, ToolOutcome, finished_event, no_retries, result_text, run_tool
from agentkeel.errors import ModelError
from agentkeel.ledger import Reservation
from agentkeel.observe.setup import current_live
from agentkeel.patterns.supervisor import delegate, waiting_detail
from agentkeel.pricing import cost_of
from agentkeel.stores.base import CancelRequest, Store
from agentkeel.switches import disabled_message
from agentkeel.tools.notes import note_event, write_note
from agentkeel.tools.schema import takes_context
from agentkeel.tools.secrets import learn_secrets, lost_secret
from agentkeel.tools.tool import Reconciled, Tool, ToolContext
from agentkeel.tools.validate import ValidCall, validate_call


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
        self._drive_start = time.monotonic()
        self._active_before = state.active_s
        self._no_context = self._context("", "", 1)
        self._controls = Controls(config, state, self._driven_s)
        self._journal = RunJournal(store=store, state=state, owner=owner, controls=self._controls, cancel=cancel)
        self._commit = self._journal.commit
        self._delegations: asyncio.Semaphore | None = None  # a supervisor's children side by side (made when needed)
        self._waiting_children: list[str] = []

    async def drive(self) -> RunState:
        self._keeper.hold(self.state.run_id, self._owner)
        try:
            while True:
                action = next_action(self.state, driven_s=self._driven_s() if self.state.timeout_s else 0.0)
                if self._journal.cancel is not None and not isinstance(action, Done) and not self.state.rolling_back:
                    await self._end_cancelled()  # (a rollback is not cancelled: undoing is the safe direction)
                    continue
                if isinstance(action, CallModel):  # the common case first
                    told = None if action.final else self._controls.loop_check(self.state)
                    if told is not None:  # going round: the model is told, or the run ends
                        await self._commit([told], listed=False)
                        continue
                    await self._step(action.step, action.final)
                elif isinstance(action, RecoverCalls):
                    await self._recover(action.calls)
                elif isinstance(action, RunApproved):
                    await self._run_approved(action.calls)
                elif isinstance(action, Pause):
                    await self._commit(
                        [RunPaused(at=time.time(), reason=action.reason, detail=action.detail, calls=action.calls)]
                    )
                    return self.state
                elif isinstance(action, Compensate):
                    await self._compensate(action.call, action.attempt)
                elif isinstance(action, Finish):
                    await self._end(action.status, action.reason, action.output, action.error)
                elif isinstance(action, Done) and (why := rollback_due(self.state, self._config.rollback_on)):
                    started = rollback_event(self.state, self._config.tools, by="policy", why=why)
                    if started is None:
                        return self.state  # nothing took effect: nothing to undo
                    await self._commit([started])
                else:  # Done, Wait
                    return self.state
        finally:
            self._keeper.drop(self.state.run_id)
            self._journal.close()
            live = current_live()
            if live is not None:
                live.forget(self._store, self.state.run_id)
            with contextlib.suppress(Exception):
                await self._store.release_lease(self.state.run_id, self._owner)

    # -- steps ----------------------------------------------------------------------------------------------

    async def _step(self, step: int, final: bool) -> None:
        controls = self._controls
        compacted = controls.compaction(self.state)
        if compacted is not None:
            await self._commit([compacted], listed=False)
        request = ModelRequest(
            instructions=self._config.instructions,
            messages=controls.view(self.state),
            tools=() if final else self._config.schemas,  # the last turn (a budget ran out): an answer only
        )
        reserved = None
        if controls.ledger is not None:
            afforded = controls.reserve_model_call(self.state, request, final)
            if not isinstance(afforded, Reservation):  # the run ends, or its last turn comes next
                await self._commit([afforded], listed=False)
                return
            reserved = afforded
        started = time.perf_counter()
        answer = await call_model(
            self._config.model,
            request,
            policy=self._config.model_retry,
            remaining_s=self._remaining_s,
            on_retry=self._journal_model_retry,
        )
        if isinstance(answer, ModelFailure):
            controls.settle_model_call(reserved, None)
            if not answer.deadline:  # a deadline: the next decision ends the run failed(timeout)
                await self._end("failed", "model_error", self.state.last_model_text, answer.message)
            return
        response = answer
        controls.settle_model_call(reserved, response.usage)
        if final:
            await self._end_final_turn(step, response, started)
            return
        checks = [validate_call(call, self._config.tools) for call in response.tool_calls]
        if self._config.has_secrets:
            learn_secrets(checks)  # before the response, which holds them, is journaled
        for check in checks:
            if isinstance(check, ToolFailure):  # a call that validated is shallow enough: check only the others
                response = journalable(response)
                break
        now = time.time()
        cost = cost_of(controls.price, response.usage)
        events: list[Event] = [
            ModelResponded(at=now, step=step, response=response, latency_s=time.perf_counter() - started, cost_usd=cost)
        ]
        state = self.state
        answered = finish_if_answered(response)
        if answered is not None:
            left = state.plan[state.plan_done :] if state.mode == "apply" else []
            if left:  # an approved plan the agent did not carry out in full
                listed = ", ".join(f"{p.name}({json.dumps(p.arguments, ensure_ascii=False)})" for p in left)
                error = f"the agent answered before making the planned call(s) {listed}"
                events.append(
                    RunEnded(at=now, status="failed", reason="plan_incomplete", output=answered.output, error=error)
                )
            else:
                events.append(RunEnded(at=now, status="completed", output=answered.output))
            await self._commit(events)
            return
        previews = None
        if state.mode == "dry_run":
            previews = await preview_calls(
                checks, lambda i: self._context(f"{step}.{i + 1}", f"{state.run_id}:{step}.{i + 1}", 1)
            )
        runnable = plan_calls(
            state.run_id,
            step,
            response.tool_calls,
            checks,
            self._config.gates,
            events,
            now,
            controls.afford,
            previews=previews,
            plan=state.plan if state.mode == "apply" else (),
            plan_done=state.plan_done,
        )
        if runnable and _reads_only(runnable):
            await self._reads_step(events, runnable)
            return
        await self._commit(events, listed=not runnable)
        await self._execute(runnable)
        await self._pause_for_children()

    async def _reads_step(self, events: list[Event], runnable: list[Runnable]) -> None:
        """Reads only: the response, the intents and the outcomes in one append (see the module's docstring)."""
        journal = self._journal
        journal.hold(events)
        try:
            await self._execute(runnable)
        except BaseException:
            await journal.settle(append=False)
            raise
        await journal.settle(append=True)

    async def _end_final_turn(self, step: int, response: ModelResponse, started: float) -> None:
        """The last turn a budget granted is over: the run fails with its answer as the partial result."""
        now = time.time()
        responded = ModelResponded(
            at=now,
            step=step,
            response=response,
            latency_s=time.perf_counter() - started,
            cost_usd=cost_of(self._controls.price, response.usage),
        )
        reason = self.state.final_turn
        detail = f"its budget ran out ({reason}); the agent's last turn, without tools, is the partial result"
        ended = RunEnded(at=now, status="failed", reason=reason, output=response.text, error=detail)
        await self._commit([responded, ended])

    async def _journal_model_retry(self, attempt: int, error: ModelError, delay: float) -> None:
        step = self.state.steps_completed + 1
        retrying = ModelRetrying(
            at=time.time(), step=step, attempt=attempt, error_kind=error.kind, message=error.message, delay_s=delay
        )
        await self._commit([retrying], listed=False)

    async def _execute(self, runnable: list[Runnable]) -> None:
        if len(runnable) > 1 and all(r.valid.tool.effect == "read" for r in runnable):
            self._journal.concurrent = True
            try:
                await asyncio.gather(*(self._run_runnable(r) for r in runnable))
            finally:
                self._journal.concurrent = False
            return
        for r in runnable:
            await self._run_runnable(r)

    async def _run_runnable(self, r: Runnable) -> None:
        await self._run_call(r.call, r.tool_call_id, r.valid, r.key, attempt=1)

    async def _run_approved(self, approvals: tuple[Approval, ...]) -> None:
        """Approved calls start now, each with the arguments as approved, then run like any call."""
        for approval in approvals:
            requested = approval.requested
            tool = self._config.tools[requested.name]
            arguments = approval.arguments if approval.arguments is not None else requested.arguments
            valid = ValidCall(tool=tool, arguments=tool.arguments.model_validate(arguments), json_arguments=arguments)
            refusal = self._controls.afford(requested.name)
            if refusal is not None:
                outcome = ToolOutcome(content=refusal.message, failure=refusal, attempts=0)
                await self._commit([finished_event(requested.call, requested.tool_call_id, requested.name, outcome)])
                continue
            started = ToolCallStarted(
                at=time.time(),
                call=requested.call,
                tool_call_id=requested.tool_call_id,
                name=requested.name,
                arguments=arguments,
                idempotency_key=requested.idempotency_key,
            )
            await self._commit([started])
            await self._run_call(requested.call, requested.tool_call_id, valid, requested.idempotency_key, attempt=1)

    async def _run_call(self, call_id: str, tool_call_id: str, valid: ValidCall, key: str, *, attempt: int) -> None:
        switch = self._controls.disabled(valid.tool.name, self.state.agent)
        lost = lost_secret(valid) if valid.tool.secret_params else None
        if self._journal.cancel is not None:
            failure = ToolFailure(kind="skipped", message=f"{valid.tool.name} was not run: the run was cancelled.")
            outcome = ToolOutcome(content=failure.message, failure=failure, attempts=0)
        elif lost is not None:
            outcome = ToolOutcome(content=lost.message, failure=lost, attempts=0)
        elif switch is not None:  # a kill switch: the model is told, the run goes on without the tool
            message = disabled_message(switch, valid.tool.name)
            outcome = ToolOutcome(content=message, failure=ToolFailure(kind="disabled", message=message), attempts=0)
        elif valid.tool.subagent is not None:  # a supervisor's delegation: a child run
            if self._delegations is None:
                self._delegations = asyncio.Semaphore(self._config.max_parallel)
            async with self._delegations:
                started = time.perf_counter()
                done = await delegate(
                    valid.tool.subagent,
                    self._store,
                    parent=self.state,
                    call=call_id,
                    task=valid.kwargs["task"],
                    ledger=self._controls.ledger,
                    deps=None,  # a subagent works with its own deps
                )
            if done.paused:  # the child waits for a person: so does this run, its call left open
                self._waiting_children.append(call_id)
                return
            latency = time.perf_counter() - started
            outcome = ToolOutcome(content=done.content, result=done.result, failure=done.failure, latency_s=latency)
        else:
            tool = valid.tool
            # A tool that takes no context reads none: only the attempt number matters, and it is 1.
            ctx = self._context(call_id, key, attempt) if tool.takes_ctx or attempt != 1 else self._no_context
            on_retry = self._retry_journal(call_id) if tool.retry.retries else no_retries
            outcome = await run_tool(valid, ctx, on_retry=on_retry)
        finished = finished_event(call_id, tool_call_id, valid.tool.name, outcome)
        if valid.tool.fn is write_note and outcome.failure is None:  # the scratchpad: the note with its outcome
            await self._commit([note_event(valid.json_arguments, finished.at), finished])
            return
        await self._commit([finished])

    async def _pause_for_children(self) -> None:
        """Delegations whose children paused for a person pause this run too (their calls stay open)."""
        if not self._waiting_children:
            return
        calls, self._waiting_children = tuple(sorted(self._waiting_children)), []
        detail = waiting_detail(self.state, calls)
        await self._commit([RunPaused(at=time.time(), reason="waiting_for_subagent", detail=detail, calls=calls)])

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
                    await self._commit([finished_event(record.call, record.tool_call_id, tool.name, outcome)])
                    continue
                if isinstance(found, Reconciled):
                    await self._rerun(record, valid, "reconciled")
                    continue
            attention.append(record.call)
        if not attention:
            await self._pause_for_children()  # a resumed delegation whose child still waits
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

    async def _compensate(self, call: str, attempt: int) -> None:
        """Undo one call (a rollback): its compensation runs like a call, journaled before and after."""
        record = self.state.calls[call]
        tool = self._config.tools.get(record.name)
        finished = record.finished
        if tool is None or tool.compensation_fn is None or finished is None:
            message = (
                f"{record.name} declares no compensation: undo call {call} by hand, or leave it "
                f"(keel resolve {self.state.run_id} {call} --result JSON | --skip)"
            )
            failure = ToolFailure(kind="no_compensation", message=message)
            await self._commit([CompensationFinished(at=time.time(), call=call, content=message, error=failure)])
            return
        await self._commit([CompensationStarted(at=time.time(), call=call, attempt=attempt)])
        undo = compensation_tool(tool, finished.result)
        arguments = tool.arguments.model_validate(record.arguments)
        valid = ValidCall(tool=undo, arguments=arguments, json_arguments=record.arguments)
        ctx = self._context(call, f"{record.idempotency_key}:undo", attempt)
        outcome = await run_tool(valid, ctx, on_retry=no_retries)
        done = CompensationFinished(
            at=time.time(), call=call, content=outcome.content, result=outcome.result, error=outcome.failure
        )
        await self._commit([done])

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

    async def _end(self, status: str, reason: str, output: str, error: str) -> None:
        await self._commit(
            [RunEnded(at=time.time(), status=status, reason=reason, output=output, error=error)]  # type: ignore[arg-type]
        )

    async def _end_cancelled(self) -> None:
        cancel = self._journal.cancel
        assert cancel is not None
        await self._commit([cancelled(self.state, by=cancel.by, why=cancel.reason, at=time.time())])

    # -- time -----------------------------------------------------------------------------------------------

    def _driven_s(self) -> float:
        return self._active_before + (time.monotonic() - self._drive_start)

    def _remaining_s(self) -> float | None:
        if self.state.timeout_s is None:
            return None
        return max(0.0, self.state.timeout_s - self._driven_s())


def _reads_only(runnable: list[Runnable]) -> bool:
    """Whether every call is a read that delegates to no subagent: the step commits once."""
    for r in runnable:
        tool = r.valid.tool
        if tool.effect != "read" or tool.subagent is not None:
            return False
    return True
