"""``Agent``: configuration in one place, and the calls that run, resume and inspect its runs."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import secrets
import socket
import time
from collections.abc import Collection, Sequence
from typing import Any

from agentkeel.core.budget import Budget
from agentkeel.core.compaction import ContextPolicy
from agentkeel.core.events import Event, PlannedCall, RunMode, RunResumed, RunStarted
from agentkeel.core.loops import LoopPolicy
from agentkeel.core.state import RunState, replay
from agentkeel.engine.controls import DriveConfig
from agentkeel.engine.driver import Driver
from agentkeel.engine.lease_keeper import LeaseKeeper
from agentkeel.engine.operator import approve_call, reject_call
from agentkeel.engine.rollback import check_policy, rollback_event
from agentkeel.errors import ConfigError, JournalError, ResolveError, RunBusy, RunIdTaken
from agentkeel.gates import Rule, check_rules
from agentkeel.ledger import Ledger
from agentkeel.models.base import Model
from agentkeel.models.resolve import resolve_model
from agentkeel.observe.ids import check_traceparent, current_traceparent
from agentkeel.observe.setup import run_created
from agentkeel.patterns.supervisor import check_supervisor, children_waiting
from agentkeel.pricing import PriceTable
from agentkeel.result import RunResult
from agentkeel.stores.base import DEFAULT_LEASE_S, CancelRequest, RunRow, Store, commit_events
from agentkeel.stores.open import open_store
from agentkeel.tools.tool import RetryPolicy, Tool
from agentkeel.tools.validate import validated_arguments

DEFAULT_MODEL_RETRY = RetryPolicy(retries=4, backoff_s=0.5, max_backoff_s=30.0)
DEFAULT_LOOPS = LoopPolicy()
"""Spirals are caught by default: the same call and result 5 times, the same error 3 times, 8 steps with nothing new."""
DEFAULT_CONTEXT = ContextPolicy()
"""Past about 60,000 prompt tokens, older tool results reach the model as digests (the journal keeps them)."""


class Agent:
    """An agent: a name, instructions, a model, tools and limits. Configuration only; runs live in the store.

    >>> agent = Agent(name="support", instructions="...", model=ScriptedModel([...]), tools=[get_order_status])
    >>> result = agent.run_sync("Where is order #1234?")
    """

    def __init__(
        self,
        *,
        name: str,
        model: Model | str,
        instructions: str = "",
        tools: Sequence[Tool] = (),
        max_steps: int = 25,
        timeout: float | None = None,
        store: Store | str | None = None,
        prices: PriceTable | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        model_retry: RetryPolicy | None = None,
        gates: Sequence[Rule] = (),
        budget: Budget | None = None,
        loops: LoopPolicy | None = DEFAULT_LOOPS,
        context: ContextPolicy | None = DEFAULT_CONTEXT,
        rollback_on: Collection[str] | str | None = None,
        subagents: Sequence[Agent] = (),
        max_parallel: int = 4,
        description: str = "",
        deps: Any = None,
        ref: str = "",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("Agent(name=...) must be a non-empty string: it names the agent's runs")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"agent {name!r}: max_steps must be a positive integer, not {max_steps!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"agent {name!r}: timeout must be a positive number of seconds, not {timeout!r}")
        if lease_s <= 0:
            raise ConfigError(f"agent {name!r}: lease_s must be positive, not {lease_s!r}")
        self.name = name
        self.instructions = instructions
        self.model = resolve_model(model)
        self.tools = _index_tools(name, tools)
        self.description = description
        """What the agent is for, in a sentence: a supervisor's delegation tool tells its model."""
        self.subagents = tuple(subagents)
        """The agents this one delegates to (a supervisor): one ``delegate_to_<name>`` tool each."""
        if self.subagents:
            for delegation in check_supervisor(name, self.tools, list(self.subagents)):
                self.tools[delegation.name] = delegation
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ConfigError(f"agent {name!r}: max_parallel must be a positive whole number, not {max_parallel!r}")
        self.max_parallel = max_parallel
        """How many delegations of one step run at once."""
        self._schemas = tuple(t.schema for t in self.tools.values())  # one tuple: models may cache by identity
        self.max_steps = max_steps
        self.timeout = float(timeout) if timeout is not None else None
        self.prices = prices or PriceTable()
        self.lease_s = lease_s
        self.gates = check_rules(name, gates, list(self.tools))
        """Approval gates: which calls wait for a person, which are refused (``require_approval``, ``deny``)."""
        for setting, value, kind, example in (
            ("budget", budget, Budget, "Budget(cost_usd=0.50, steps=40)"),
            ("loops", loops, LoopPolicy, "LoopPolicy(repeated_call=8)"),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"agent {name!r}: {setting} must be a {example} or None, not {value!r}")
        self.budget = budget
        """Limits on what a run may spend (steps, calls, tokens, cost, time), checked before each call."""
        self.loops = loops
        """How spirals are caught: an intervention message to the model, then ``failed(loop_detected)``."""
        if context is not None and not isinstance(context, ContextPolicy):
            raise ConfigError(
                f"agent {name!r}: context must be a ContextPolicy (e.g. ContextPolicy(max_tokens=30_000)) or None, "
                f"not {context!r}"
            )
        self.context = context
        """How the conversation is kept within bounds (older tool results as digests past a threshold); ``None``:
        the model always gets the whole history."""
        self.rollback_on = check_policy(name, rollback_on)
        """When a run rolls itself back: ``"failure"`` and/or ``"cancel"`` (the compensations of its write calls)."""
        self.model_retry = model_retry or DEFAULT_MODEL_RETRY
        """How transient model failures (rate limits, server errors, timeouts) are retried; each is journaled."""
        self.deps = deps
        """Handed to tools as ``ctx.deps`` (a database handle, a client, ...) unless ``run(deps=...)`` overrides it."""
        self.ref = ref
        """Where ``keel resume`` can load this agent from (``file.py:name``); set by ``keel run``."""
        self._store_setting = store
        self._store: Store | None = None
        self._keeper: LeaseKeeper | None = None
        self._config: DriveConfig | None = None
        self._settings: dict[str, Any] = {
            "name": name,
            "model": self.model,
            "instructions": instructions,
            "tools": list(tools),
            "max_steps": max_steps,
            "timeout": timeout,
            "store": store,
            "prices": prices,
            "lease_s": lease_s,
            "model_retry": model_retry,
            "gates": gates,
            "budget": budget,
            "loops": loops,
            "context": context,
            "rollback_on": rollback_on,
            "subagents": subagents,
            "max_parallel": max_parallel,
            "description": description,
            "deps": deps,
            "ref": ref,
        }

    def replace(self, **changes: Any) -> Agent:
        """A copy of this agent with some settings changed, e.g. ``agent.replace(store="memory://")``."""
        unknown = set(changes) - set(self._settings)
        if unknown:
            raise ConfigError(
                f"Agent has no setting(s) {', '.join(sorted(unknown))}; known: {', '.join(self._settings)}"
            )
        return Agent(**{**self._settings, **changes})

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model.name!r}, tools={list(self.tools)})"

    @property
    def store(self) -> Store:
        """The store this agent's runs live in (opened on first use)."""
        if self._store is None:
            setting = self._store_setting
            self._store = setting if setting is not None and not isinstance(setting, str) else open_store(setting)
        return self._store

    # -- running --------------------------------------------------------------------------------------------

    async def run(
        self,
        task: str,
        *,
        deps: Any = None,
        run_id: str | None = None,
        dry_run: bool = False,
        trace_parent: str | None = None,
    ) -> RunResult:
        """Run the agent on a task until it answers, fails, is cancelled or pauses for a person.

        ``dry_run=True``: read tools run for real, write tools only preview what they would do (``@tool.preview``);
        the run's ``plan`` lists those write calls, for a person to approve and ``apply``. ``trace_parent`` (a W3C
        traceparent) nests the run's trace under that span; by default under the caller's active OpenTelemetry
        span, if any."""
        if not isinstance(task, str) or not task.strip():
            raise ConfigError(f"agent {self.name!r}: the task must be a non-empty string")
        check_traceparent(trace_parent)
        mode: RunMode = "dry_run" if dry_run else "normal"
        return await self._start(task, deps=deps, run_id=run_id, mode=mode, trace_parent=trace_parent)

    async def apply(
        self, plan_of: str, *, by: str = "python", deps: Any = None, run_id: str | None = None
    ) -> RunResult:
        """Approve the plan of a dry run as a whole and carry it out: a new run of the same task that may make
        exactly the planned write calls, in order, with their arguments (any other write call is refused, with a
        message the model can act on); it fails ``plan_incomplete`` if the agent stops before the plan is done."""
        planned = replay(await self.store.load(plan_of))
        if planned.mode != "dry_run" or planned.status != "completed":
            shown = f"{planned.status}({planned.reason})" if planned.reason else planned.status
            raise ResolveError(
                f"run {plan_of} is not a finished dry run (it is a {planned.mode} run, {shown}): only the plan of a "
                "completed dry run can be applied (`keel run --dry-run ...`)"
            )
        if not planned.plan:
            raise ResolveError(f"the dry run {plan_of} planned no write call: there is nothing to apply")
        return await self._start(
            planned.task, deps=deps, run_id=run_id, mode="apply", plan=tuple(planned.plan), plan_of=plan_of, by=by
        )

    async def _start(
        self,
        task: str,
        *,
        deps: Any,
        run_id: str | None,
        mode: RunMode,
        plan: tuple[PlannedCall, ...] = (),
        plan_of: str | None = None,
        by: str = "",
        parent_id: str | None = None,
        parent_ledger: Ledger | None = None,
        trace_parent: str | None = None,
    ) -> RunResult:
        owner = new_owner()
        first = RunStarted(
            at=time.time(),
            run_id=run_id or new_run_id(),
            agent=self.name,
            task=task,
            model=self.model.name,
            instructions=self.instructions,
            max_steps=self.max_steps,
            timeout_s=self.timeout,
            tools=tuple(self.tools),
            agent_ref=self.ref,
            mode=mode,
            plan=plan,
            plan_of=plan_of,
            approved_by=by,
            parent_id=parent_id,
            trace_parent=trace_parent or current_traceparent(),
        )
        state = await create_new_run(self.store, first, owner=owner, lease_s=self.lease_s, chosen=run_id is not None)
        return RunResult.of(await self._driver(state, owner, deps, parent_ledger=parent_ledger).drive())

    async def start_child(
        self, task: str, *, run_id: str, parent_id: str, ledger: Ledger | None, deps: Any = None, trace_parent: str
    ) -> RunResult:
        """A subagent's run for a supervisor's delegation (``patterns/supervisor.py``): it charges ``ledger`` and
        nests in the trace under ``trace_parent`` (the delegation's span)."""
        return await self._start(
            task,
            deps=deps,
            run_id=run_id,
            mode="normal",
            parent_id=parent_id,
            parent_ledger=ledger,
            trace_parent=trace_parent,
        )

    async def resume_child(self, run_id: str, *, ledger: Ledger | None, deps: Any = None) -> RunResult:
        """Resume a subagent's run from its supervisor's delegation, charging ``ledger``."""
        return await self._resume(run_id, deps=deps, parent_ledger=ledger)

    async def resume(self, run_id: str, *, deps: Any = None) -> RunResult:
        """Continue a run whose process died (or that a person unpaused): nothing journaled happens again.

        Raises ``RunBusy`` while another live process drives it.
        """
        return await self._resume(run_id, deps=deps)

    async def _resume(self, run_id: str, *, deps: Any, parent_ledger: Ledger | None = None) -> RunResult:
        owner = new_owner()
        try:
            await self.store.acquire_lease(run_id, owner, self.lease_s)
        except RunBusy:
            state = replay(await self.store.load(run_id))
            if state.terminal:  # its driver died between the end and letting go
                return RunResult.of(state)
            raise
        try:
            state = replay(await self.store.load(run_id))  # one read, under the lease: nobody appends meanwhile
            # a supervisor waiting on subagents goes on once they are decided: resuming it resumes them
            decided = bool(state.waiting_on) and not await children_waiting(self.store, state)
            if not decided and (state.terminal or (state.status == "paused" and state.waiting)):
                await self.store.release_lease(run_id, owner)  # nothing to drive: a person acts next
                return RunResult.of(state)
            self._check_fits(state)
            cancel = (await commit_events(self.store, state, owner, [RunResumed(at=time.time(), owner=owner)])).cancel
        except BaseException:
            await self.store.release_lease(run_id, owner)
            raise
        return RunResult.of(await self._driver(state, owner, deps, cancel, parent_ledger=parent_ledger).drive())

    def run_sync(self, task: str, *, deps: Any = None, run_id: str | None = None, dry_run: bool = False) -> RunResult:
        """``run`` for scripts: runs its own event loop."""
        return asyncio.run(self.run(task, deps=deps, run_id=run_id, dry_run=dry_run))

    def resume_sync(self, run_id: str, *, deps: Any = None) -> RunResult:
        return asyncio.run(self.resume(run_id, deps=deps))

    async def rollback(
        self, run_id: str, *, by: str = "python", reason: str = "rolled back on request", deps: Any = None
    ) -> RunResult:
        """Undo a run's effects: the compensations of its finished write calls, the last first. The run ends
        ``rolled_back``, or ``paused(rollback_incomplete)`` listing what could not be undone (called again, it
        tries the failed compensations once more). Raises ``RunBusy`` while a process drives the run."""
        owner = new_owner()
        await self.store.acquire_lease(run_id, owner, self.lease_s)
        try:
            state = replay(await self.store.load(run_id))
            self._check_fits(state)
            if state.status == "rolled_back":
                raise ResolveError(f"run {run_id} is already rolled back")
            if state.open_calls:
                raise ResolveError(
                    f"run {run_id} has interrupted calls ({', '.join(state.open_calls)}): resolve them first "
                    f"(`keel resolve {run_id} CALL ...`), so that the rollback knows whether they took effect"
                )
            retry = state.status == "paused" and state.reason == "rollback_incomplete"
            started: Event | None
            if state.rolling_back and not retry:  # a rollback a crash interrupted: it goes on where it stopped
                started = RunResumed(at=time.time(), owner=owner)
            else:
                started = rollback_event(state, self.tools, by=by, why=reason, retry_failed=retry)
            if started is None:
                raise ResolveError(f"run {run_id} has no finished write call to undo")
            signals = await commit_events(self.store, state, owner, [started])
        except BaseException:
            await self.store.release_lease(run_id, owner)
            raise
        return RunResult.of(await self._driver(state, owner, deps, signals.cancel).drive())

    async def approve(
        self, run_id: str, call: str, *, args: dict[str, Any] | None = None, by: str = "python"
    ) -> RunState:
        """Approve a gated call, optionally with edited arguments (validated against the tool's schema first).
        ``resume`` then runs it."""
        state = await self.state(run_id)
        approval = state.approvals.get(call)
        if args is not None and approval is not None and approval.name in self.tools:
            args = validated_arguments(self.tools[approval.name], args)
        return await approve_call(self.store, run_id, call, by=by, arguments=args)

    async def reject(self, run_id: str, call: str, *, reason: str, by: str = "python") -> RunState:
        """Reject a gated call: the model is told why when the run resumes; the call never runs."""
        return await reject_call(self.store, run_id, call, by=by, reason=reason)

    async def state(self, run_id: str) -> RunState:
        """A run's state, rebuilt from its journal."""
        return replay(await self.store.load(run_id))

    # -- internals ------------------------------------------------------------------------------------------

    def _driver(
        self,
        state: RunState,
        owner: str,
        deps: Any,
        cancel: CancelRequest | None = None,
        *,
        parent_ledger: Ledger | None = None,
    ) -> Driver:
        config = self._config if deps is None and parent_ledger is None else None
        if config is None or config.instructions != state.instructions:
            config = self._drive_config(state.instructions, deps, parent_ledger)
            if deps is None and parent_ledger is None:
                self._config = config  # every run of the agent shares it
        if self._keeper is None:
            self._keeper = LeaseKeeper(self.store, self.lease_s)
        return Driver(config=config, store=self.store, state=state, owner=owner, keeper=self._keeper, cancel=cancel)

    def _drive_config(self, instructions: str, deps: Any, parent_ledger: Ledger | None) -> DriveConfig:
        return DriveConfig(
            instructions=instructions,
            model=self.model,
            tools=self.tools,
            schemas=self._schemas,
            prices=self.prices,
            lease_s=self.lease_s,
            model_retry=self.model_retry,
            gates=self.gates,
            budget=self.budget,
            loops=self.loops,
            context=self.context,
            rollback_on=self.rollback_on,
            max_parallel=self.max_parallel,
            parent_ledger=parent_ledger,
            deps=self.deps if deps is None else deps,
        )

    def _check_fits(self, state: RunState) -> None:
        """A run resumes only with an agent that has every tool it called."""
        if state.agent != self.name:
            raise JournalError(
                f"run {state.run_id} belongs to agent {state.agent!r}, not {self.name!r}: resume it with that agent"
            )
        missing = sorted({call.name for call in state.calls.values()} - set(self.tools))
        if missing:
            raise JournalError(
                f"run {state.run_id} called tool(s) {', '.join(missing)}, which agent {self.name!r} no longer has: "
                "resume it with an agent that has them"
            )


def _index_tools(agent: str, tools: Sequence[Tool]) -> dict[str, Tool]:
    if isinstance(tools, Tool) or not isinstance(tools, Sequence):
        raise ConfigError(f"agent {agent!r}: tools must be a list of tools, e.g. tools=[get_order_status]")
    indexed: dict[str, Tool] = {}
    for item in tools:
        if not isinstance(item, Tool):
            what = getattr(item, "__name__", repr(item))
            raise ConfigError(f"agent {agent!r}: {what} is not a tool; decorate it with @tool")
        if item.name in indexed:
            raise ConfigError(f"agent {agent!r}: two tools are named {item.name!r}; tool names must be unique")
        indexed[item.name] = item
    return indexed


def new_run_id() -> str:
    """Sortable by creation time: 11 hex digits of milliseconds, then 8 random ones (32 bits: runs started in the
    same millisecond, in any process, rarely draw the same; ``create_new_run`` draws again when they do)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


ID_DRAWS = 5
"""How many ids ``create_new_run`` draws for a run before it gives up (each a 2^-32 chance of a collision)."""


async def create_new_run(store: Store, first: RunStarted, *, owner: str, lease_s: float, chosen: bool) -> RunState:
    """Create the run ``first`` starts, and return its state. An id drawn by ``new_run_id`` (not ``chosen`` by the
    caller) that the store already holds is drawn again; a chosen one is the caller's to change (``RunIdTaken``)."""
    for draw in range(1, ID_DRAWS + 1):
        state = replay([first])
        try:
            await store.create_run(first, RunRow.of(state), owner=owner, lease_s=lease_s)
        except RunIdTaken:
            if chosen or draw == ID_DRAWS:
                raise
            first = dataclasses.replace(first, run_id=new_run_id())
            continue
        run_created(store, first)
        return state
    raise AssertionError("unreachable: the last draw returns or raises")


def new_owner() -> str:
    """Who drives a run: host, process and a token (two drivers in one process are two owners)."""
    return f"{_process()}:{secrets.token_hex(2)}"


@functools.cache
def _process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
