"""The ``Store`` port: where journals, run rows and leases live.

The engine speaks only this protocol; SQL and its dialects stay in the adapters (``sqlite.py``, ``memory.py``,
``postgres.py``). Rules every backend keeps, checked by the shared store test suite:

* ``append`` is atomic: all the events and the run row, or nothing. It fails with ``LeaseLost`` (and writes
  nothing) unless the caller holds the run's lease and knows the journal's length.
* Sequence numbers are dense and start at 1 with ``run_started``; ``load`` returns the events in order.
* A lease belongs to one owner until it expires; ``acquire_lease`` by another owner before then raises
  ``RunBusy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agentkeel.core.events import Event, RunStarted
from agentkeel.core.state import RunState

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
            task=state.task[:500],
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


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelRequest:
    """Someone asked for a run to stop."""

    by: str
    reason: str
    at: float


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
        """Write a new run's first event and row, leased to ``owner``."""
        ...

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> CancelRequest | None:
        """Append events as numbers ``after_seq + 1, ...`` (with the row they lead to) atomically, if ``owner``
        holds the lease and the journal has exactly ``after_seq`` events; otherwise raise ``LeaseLost`` and write
        nothing. ``row`` (None: unchanged) keeps listings current; the lease is renewed by ``acquire_lease``.

        Returns a pending cancel request, if any, so that the engine learns of it without another round trip.
        """
        ...

    async def load(self, run_id: str) -> list[Event]:
        """A run's journal in order; ``RunNotFound`` if there is none."""
        ...

    async def list_runs(self, *, limit: int = 50, status: str | None = None, agent: str | None = None) -> list[RunRow]:
        """The most recent runs first."""
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

    async def close(self) -> None: ...


async def commit_events(store: Store, state: RunState, owner: str, events: Sequence[Event]) -> CancelRequest | None:
    """Fold ``events`` into ``state`` and append them, with the run row they lead to, as ``owner``. (The driver
    has its own version that rewrites the row less often.)"""
    after = state.last_seq
    for event in events:
        state.apply(event)
    return await store.append(state.run_id, owner, after, events, RunRow.of(state))


def run_filters(*, status: str | None, agent: str | None, mark: str) -> tuple[str, list[str]]:
    """The WHERE clause of a run listing and its parameters, with the dialect's placeholder ``mark``."""
    wanted = [(column, value) for column, value in (("status", status), ("agent", agent)) if value is not None]
    clause = " AND ".join(f"{column} = {mark}" for column, _ in wanted)
    return (f"WHERE {clause}" if clause else ""), [value for _, value in wanted]
