"""What the driver consults before each call: the budget, the loop tracker, the kill switches, the context policy.

``Controls`` holds each mechanism's live part for one run (the ledger, the tracker, the switches seen) and turns
its verdicts into the events to journal. It performs nothing itself: the driver commits what it returns, so the
order of the journal stays the driver's (see ``driver.py``). Every part is rebuilt from the journal when a run
resumes, so a limit, an intervention or a compaction survives the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkeel.core.budget import Budget, Exceeded, Spend
from agentkeel.core.compaction import ContextPolicy, compacted_view, estimate_tokens, plan_compaction
from agentkeel.core.events import ContextCompacted, Event, Intervened, RunEnded, ToolFailure
from agentkeel.core.loops import LoopPolicy, LoopTracker
from agentkeel.core.messages import Message, ModelRequest, ToolSchema, Usage
from agentkeel.core.state import RunState
from agentkeel.core.tokens import estimate_input_tokens
from agentkeel.gates import Rule
from agentkeel.ledger import Ledger, Reservation
from agentkeel.models.base import Model
from agentkeel.patterns.supervisor import children_spend
from agentkeel.pricing import Price, PriceTable, cost_of
from agentkeel.stores.base import CancelRequest, Store, Switch
from agentkeel.switches import disabled_tool, killed
from agentkeel.tools.tool import RetryPolicy, Tool


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
    gates: tuple[Rule, ...] = ()
    budget: Budget | None = None
    loops: LoopPolicy | None = None
    context: ContextPolicy | None = None
    rollback_on: frozenset[str] = frozenset()
    max_parallel: int = 4
    parent_ledger: Ledger | None = None
    """A subagent's run charges its supervisor's budget too (every ancestor's)."""
    deps: Any = None

    @property
    def has_secrets(self) -> bool:
        """Whether a tool takes a secret parameter (then the redactor learns each call's secrets)."""
        return any(tool.secret_params for tool in self.tools.values())


_NONE: list[Switch] = []  # shared, never changed: reload() replaces it


class Controls:
    """One run's budget, loop tracker, kill switches and context policy, as the driver consults them."""

    def __init__(self, config: DriveConfig, state: RunState, driven_s: Callable[[], float]) -> None:
        self.price: Price | None = config.prices.price(config.model.name)
        self._context = config.context
        self._loop_policy = config.loops
        self.loops: LoopTracker | None = None
        """Made when the run's first call finishes (a run parked on its model holds none)."""
        self.ledger: Ledger | None = None
        if config.budget is not None or config.parent_ledger is not None:
            spent = Spend.of(state, driven_s=driven_s()).plus(children_spend(state))
            self.ledger = Ledger(config.budget, spent, parent=config.parent_ledger, name=state.run_id, clock=driven_s)
        self.switches: list[Switch] = _NONE
        self.switch_version = 0
        """The store's kill-switch version when they were last read."""

    # -- budget ---------------------------------------------------------------------------------------------

    def reserve_model_call(self, state: RunState, request: ModelRequest, final: bool) -> Reservation | Event:
        """A reservation for the model call, or, when the run cannot afford it, the event that says what happens
        instead: ``Intervened`` (``Budget(wrap_up=True)``: one last turn without tools comes next) or the end."""
        ledger = self.ledger
        assert ledger is not None
        reserved: Reservation | Exceeded
        budget = ledger.budget
        if state.tools_spent and not final and budget is not None and budget.tool_calls is not None:
            # the model wanted a tool call past the run's limit: the run is done
            reserved = Exceeded(which="tool_calls", limit=budget.tool_calls, spent=state.tool_calls, needed=1)
        else:
            reserved = ledger.reserve_model_call(
                input_tokens=estimate_input_tokens(request),
                max_output_tokens=request.max_output_tokens,
                price=self.price,
                wrap_up=final,
            )
        if isinstance(reserved, Reservation):
            return reserved
        now = time.time()
        if ledger.budget is not None and ledger.budget.wrap_up and not state.final_turn:
            return Intervened(
                at=now,
                rule="budget",
                message=reserved.for_model(),
                evidence=reserved.sentence(),
                final=True,
                final_reason=reserved.reason,
            )
        return RunEnded(
            at=now, status="failed", reason=reserved.reason, output=state.last_model_text, error=reserved.sentence()
        )

    def settle_model_call(self, reserved: Reservation | None, usage: Usage | None) -> None:
        """The call returned (``usage``) or failed (``None``): the estimate gives way to what was used."""
        if self.ledger is None or reserved is None:
            return
        if usage is None:
            self.ledger.release(reserved)
            return
        actual = Spend.model_call(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost_usd=cost_of(self.price, usage)
        )
        self.ledger.settle(reserved, actual=actual)

    def afford(self, tool: str) -> ToolFailure | None:
        """Before a tool call starts: ``None`` (it may: it is charged now), or why not, for the model: the tool's
        own limit (``over_budget``: the run goes on), or the run's (``budget_spent``: the run ends before its next
        model call)."""
        if self.ledger is None:
            return None
        reserved = self.ledger.reserve_tool_call(tool)
        if isinstance(reserved, Reservation):
            self.ledger.settle(reserved)
            return None
        if reserved.which == "tool_calls":  # the run's limit, not one tool's
            return ToolFailure(kind="budget_spent", message=reserved.refusal())
        return ToolFailure(kind="over_budget", message=reserved.refusal())

    # -- loops ----------------------------------------------------------------------------------------------

    def observe(self, state: RunState, events: Sequence[Event]) -> None:
        """Tell the loop tracker about the calls that just finished."""
        if self._loop_policy is None:
            return
        loops = self.loops
        if loops is None:
            if any(event.kind == "tool_call_finished" for event in events):
                self.loops = LoopTracker.of(state, self._loop_policy)  # the state holds these events already
            return
        for event in events:
            if event.kind == "tool_call_finished":
                record = state.calls.get(event.call)
                if record is None:
                    loops.observe_rejected(event)
                else:
                    loops.observe(record)

    def loop_check(self, state: RunState) -> Event | None:
        """Before a model call: ``None``, or, when the run goes round, ``Intervened`` (the model is told) or, if
        it went on after being told, its end ``failed(loop_detected)`` with the evidence."""
        if self._loop_policy is None:
            return None
        loops = self.loops
        if loops is None:
            if not state.calls and not state.tool_errors:
                return None  # no call has finished: no rule can trip
            loops = self.loops = LoopTracker.of(state, self._loop_policy)  # a resumed run: rebuilt once
        loops.end_step(state.steps_completed)
        verdict = loops.verdict(state.interventions)
        if verdict is None:
            return None
        now = time.time()
        if verdict.fail:
            error = f"loop detected ({verdict.rule}): {verdict.evidence}"
            return RunEnded(at=now, status="failed", reason="loop_detected", output=state.last_model_text, error=error)
        loops.reset(verdict.rule)
        return Intervened(at=now, rule=verdict.rule, message=verdict.message, evidence=verdict.evidence)

    # -- context --------------------------------------------------------------------------------------------

    def compaction(self, state: RunState) -> ContextCompacted | None:
        """Before a model call: the compaction to journal when the conversation has grown past the policy's
        threshold (judged by the prompt size the model reported last), else ``None``."""
        policy = self._context
        if policy is None or state.last_input_tokens <= policy.max_tokens:
            return None  # the common case, in O(1): the prompt is within bounds
        conversation = state.conversation()
        upto = plan_compaction(
            conversation, upto=state.compacted_upto, prompt_tokens=state.last_input_tokens, policy=policy
        )
        if upto is None:
            return None
        view = compacted_view(conversation, upto=upto, notes=state.notes, digest_chars=policy.digest_chars)
        return ContextCompacted(
            at=time.time(), upto=upto, tokens_before=state.last_input_tokens, tokens_after=estimate_tokens(view)
        )

    def view(self, state: RunState) -> Sequence[Message]:
        """What the model sees: the conversation, older tool results as digests past the journaled compaction,
        and the notes."""
        policy = self._context
        conversation = state.conversation()
        if policy is None or (not state.compacted_upto and not state.notes):
            return conversation  # the common case: the view stays incremental
        return compacted_view(
            conversation,
            upto=state.compacted_upto,
            notes=state.notes,
            digest_chars=policy.digest_chars,
            memo=state.memo,
        )

    # -- kill switches --------------------------------------------------------------------------------------

    async def reload(self, store: Store) -> None:
        """The store's switch version changed (an append said so): read the switches again."""
        self.switch_version, self.switches = await store.switches()

    def disabled(self, tool: str, agent: str) -> Switch | None:
        return disabled_tool(self.switches, tool, agent) if self.switches else None

    def stop_request(self, agent: str) -> CancelRequest | None:
        """A switch that stops the run's agent (or everything), as a cancel request."""
        if not self.switches:
            return None
        switch = killed(self.switches, agent)
        return None if switch is None else CancelRequest(by=switch.by, reason=switch.reason, at=switch.at)
