"""The ``Store`` port: where journals, run rows and leases live.

The engine speaks only this protocol; SQL and its dialects stay in the adapters (``sqlite.py``, ``memory.py``,
``postgres.py``). Rules every backend keeps, checked by the shared store test suite:

* ``append`` is atomic: all the events and the run row, or nothing. It fails with ``LeaseLost`` (and writes
  nothing) unless the caller holds the run's lease and knows the journal's length.
* Sequence numbers are dense and start at 1 with ``run_started``; ``load`` returns the events in order.
* A lease belongs to one owner until it expires; ``acquire_lease`` by another owner before then raises
  ``RunBusy``.
* Kill switches live in the store, beside a version that every set or clear moves on. An append reads that version
  in the same statement as its fence (``Signals``), so a driver learns of a new switch before its next call; a
  switch on an agent (or on everything) also writes a cancel request into each of its runs that has not ended,
  and ``create_run`` refuses (``Killed``) a run of a disabled agent, both in the same transaction as the write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from agentkeel.core.events import Event, RunStarted
from agentkeel.core.state import RunState
from agentkeel.errors import ConfigError
from agentkeel.redaction import redactor

SwitchScope = Literal["tool", "agent", "all"]
SCOPES: tuple[SwitchScope, ...] = ("tool", "agent", "all")

DEFAULT_LEASE_S = 30.0


@dataclass(kw_only=True, slots=True)
class RunRow:
    """A run's summary, kept beside its journal for listings (``keel runs``). Derived from the state."""

    run_id: str
    agent: str
    status: str
    reason: str
    task: str
    model: str
    steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    created_at: float
    updated_at: float
    parent_id: str | None = None
    agent_ref: str = ""

    @classmethod
    def of(cls, state: RunState) -> RunRow:
        return cls(
            run_id=state.run_id,
            agent=state.agent,
            status=state.status,
            reason=state.reason,
            task=_listed_task(state),
            model=state.model,
            steps=state.steps_completed,
            input_tokens=state.input_tokens,
            output_tokens=state.output_tokens,
            cost_usd=state.cost_usd,
            created_at=state.started_at,
            updated_at=state.updated_at,
            parent_id=state.parent_id,
            agent_ref=state.agent_ref,
        )


def _listed_task(state: RunState) -> str:
    """The task as listings show it: redacted, then cut (once a run: a row is rewritten at every status change)."""
    listed = state.memo.get("listed_task")
    if listed is None:
        listed = state.memo["listed_task"] = redactor().text(state.task)[:500]
    return str(listed)


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCounts:
    """How one run's calls of one tool ended: how many finished, and how many of those with an error.

    Counted per run, not per tool, so that a reader can attribute the calls to the task each run belongs to (a
    subagent's calls count towards its supervisor's task) without the store knowing what a task is."""

    run_id: str
    tool: str
    calls: int
    """Its ``tool_call_finished`` events: a call finishes once (the fold refuses a second)."""
    failures: int
    """Those that carry an error (any ``FailureKind``: the figure ``RunResult.tool_errors`` counts)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelRequest:
    """Someone asked for a run to stop."""

    by: str
    reason: str
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Switch:
    """A kill switch in force: a tool, an agent or everything disabled, by whom, why, since when."""

    scope: SwitchScope
    target: str
    """The tool's or the agent's name; ``""`` for ``all``."""
    by: str
    reason: str
    at: float

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"a kill switch's scope is tool, agent or all, not {self.scope!r}")
        if (self.scope == "all") != (self.target == ""):
            raise ConfigError(
                f"a kill switch on {self.scope} {'takes no name' if self.scope == 'all' else 'needs a name'}: "
                f"got {self.target!r}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class Signals:
    """What an append learns besides that it committed: requests from outside the run's driver."""

    cancel: CancelRequest | None = None
    """A pending cancel request of the run."""
    switches: int = 0
    """The store's kill-switch version: it changes whenever a switch is set or cleared (0: never was)."""


NO_SIGNALS = Signals()


def signals(cancel: CancelRequest | None, switches: int) -> Signals:
    """The answer of an append; without a cancel request, a shared object per version (nothing to allocate)."""
    return _quiet(switches) if cancel is None else Signals(cancel=cancel, switches=switches)


@lru_cache(maxsize=4)
def _quiet(switches: int) -> Signals:
    return NO_SIGNALS if switches == 0 else Signals(switches=switches)


def blocking_switch(switches: Iterable[Switch], agent: str) -> Switch | None:
    """The switch that stops ``agent``: one on everything, else one on the agent."""
    on_agent = None
    for switch in switches:
        if switch.scope == "all":
            return switch
        if switch.scope == "agent" and switch.target == agent:
            on_agent = switch
    return on_agent


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """Who drives a run, until when."""

    run_id: str
    owner: str
    expires_at: float
    lease_s: float
    """How long the lease lasts from each renewal."""


class Store(Protocol):
    """Journals, run rows and leases. Every method is safe to call from several processes at once."""

    url: str
    """Where the store lives (passwords masked), for messages."""

    async def create_run(self, first: RunStarted, row: RunRow, *, owner: str, lease_s: float) -> None:
        """Write a new run's first event and row, leased to ``owner``; ``Killed`` (and nothing written) if a switch
        on everything or on the run's agent is in force."""
        ...

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> Signals:
        """Append events as numbers ``after_seq + 1, ...`` (with the row they lead to) atomically, if ``owner``
        holds the lease and the journal has exactly ``after_seq`` events; otherwise raise ``LeaseLost`` and write
        nothing. ``row`` (None: unchanged) keeps listings current; the lease is renewed by ``acquire_lease``.

        Returns the run's pending cancel request, if any, and the kill-switch version, read in the same statement,
        so that the engine learns of them without another round trip.
        """
        ...

    async def load(self, run_id: str) -> list[Event]:
        """A run's journal in order; ``RunNotFound`` if there is none."""
        ...

    async def list_runs(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        agent: str | None = None,
        since: float | None = None,
    ) -> list[RunRow]:
        """The most recent runs first: at most ``limit`` (None: all), only those in ``status``, of ``agent``, and
        created at or after ``since`` (seconds since the epoch), when given."""
        ...

    async def tool_outcomes(self, *, since: float | None = None, agent: str | None = None) -> list[ToolCounts]:
        """The outcomes of the tool calls of the runs ``list_runs(since=since, agent=agent, limit=None)`` lists, per
        run and tool (pairs with no finished call are left out), in no particular order. Counted where the journals
        are, from the ``tool_call_finished`` events, so that no journal is read into the caller."""
        ...

    async def acquire_lease(self, run_id: str, owner: str, lease_s: float) -> Lease:
        """Take or renew the run's lease; ``RunBusy`` if another owner holds an unexpired one."""
        ...

    async def renew_lease(self, run_id: str, owner: str) -> bool:
        """Extend ``owner``'s lease by its length from now; False (and nothing written) if it is not the owner's."""
        ...

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease up (a no-op if ``owner`` does not hold it)."""
        ...

    async def request_cancel(self, run_id: str, request: CancelRequest) -> None:
        """Ask the run's driver to stop before its next call."""
        ...

    async def set_switch(self, switch: Switch) -> int:
        """Put a kill switch in force (replacing one on the same target) and return the new switch version. A
        switch on an agent, or on everything, also asks each of those runs that has not ended to stop (an earlier
        cancel request stands), in the same transaction."""
        ...

    async def clear_switch(self, scope: str, target: str) -> bool:
        """Lift a kill switch; False (and the version unchanged) if none was in force on that target."""
        ...

    async def switches(self) -> tuple[int, list[Switch]]:
        """The switch version and the switches in force, oldest first."""
        ...

    async def close(self) -> None: ...


async def commit_events(store: Store, state: RunState, owner: str, events: Sequence[Event]) -> Signals:
    """Fold ``events`` into ``state`` and append them, with the run row they lead to, as ``owner``. (The driver
    has its own version that rewrites the row less often.)"""
    after = state.last_seq
    for event in events:
        state.apply(event)
    signals = await store.append(state.run_id, owner, after, events, RunRow.of(state))
    from agentkeel.observe.setup import current_live  # observe imports the stores' types

    live = current_live()
    if live is not None:
        await live.committed(store, state.run_id, after, events)
    return signals


def run_filters(
    *, status: str | None, agent: str | None, mark: str, since: float | None = None, table: str = ""
) -> tuple[str, list[str | float]]:
    """The WHERE clause of a run listing and its parameters, with the dialect's placeholder ``mark``; ``table``
    qualifies the columns (``"r."``) when the listing joins another table."""
    wanted: list[tuple[str, str | float]] = [
        (f"{table}{column} {operator} {mark}", value)
        for column, operator, value in (("status", "=", status), ("agent", "=", agent), ("created_at", ">=", since))
        if value is not None
    ]
    clause = " AND ".join(condition for condition, _ in wanted)
    return (f"WHERE {clause}" if clause else ""), [value for _, value in wanted]


def run_matches(row: RunRow, *, status: str | None, agent: str | None, since: float | None) -> bool:
    """Whether a run row passes a listing's filters (the in-memory twin of ``run_filters``)."""
    return (
        (status is None or row.status == status)
        and (agent is None or row.agent == agent)
        and (since is None or row.created_at >= since)
    )
