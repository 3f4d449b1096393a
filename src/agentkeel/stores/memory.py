"""An in-memory store: for tests and for runs that need no durability. Same rules as every store."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from agentkeel.core.events import TERMINAL_STATUSES, Event, RunStarted
from agentkeel.errors import Killed, LeaseLost, RunBusy, RunIdTaken, RunNotFound
from agentkeel.stores.base import (
    CancelRequest,
    Lease,
    RunRow,
    Signals,
    Switch,
    ToolCounts,
    blocking_switch,
    run_matches,
    signals,
)


class MemoryStore:
    """Keeps everything in this process; lost when it exits."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.url = "memory://"
        self._clock = clock
        self._journals: dict[str, list[Event]] = {}
        self._rows: dict[str, RunRow] = {}
        self._leases: dict[str, Lease] = {}
        self._cancels: dict[str, CancelRequest] = {}
        self._switches: dict[tuple[str, str], Switch] = {}
        self._switch_version = 0

    async def create_run(self, first: RunStarted, row: RunRow, *, owner: str, lease_s: float) -> None:
        if first.run_id in self._journals:
            raise RunIdTaken(first.run_id, self.url)
        stop = blocking_switch(self._switches.values(), row.agent)
        if stop is not None:
            raise Killed(stop, row.agent)
        self._journals[first.run_id] = [first]
        self._rows[first.run_id] = row
        self._leases[first.run_id] = Lease(
            run_id=first.run_id, owner=owner, expires_at=self._clock() + lease_s, lease_s=lease_s
        )

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> Signals:
        journal = self._journals.get(run_id)
        if journal is None:
            raise RunNotFound(run_id, self.url)
        lease = self._leases.get(run_id)
        if lease is None or lease.owner != owner or len(journal) != after_seq:
            raise LeaseLost(run_id, owner)
        journal.extend(events)
        if row is not None:
            self._rows[run_id] = row
        return signals(self._cancels.get(run_id), self._switch_version)

    async def load(self, run_id: str) -> list[Event]:
        return list(self._journal(run_id))

    async def list_runs(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        agent: str | None = None,
        since: float | None = None,
    ) -> list[RunRow]:
        rows = [row for row in self._rows.values() if run_matches(row, status=status, agent=agent, since=since)]
        rows.sort(key=lambda row: row.created_at, reverse=True)
        return rows if limit is None else rows[:limit]

    async def tool_outcomes(self, *, since: float | None = None, agent: str | None = None) -> list[ToolCounts]:
        counts: dict[tuple[str, str], list[int]] = {}
        for run_id, row in self._rows.items():
            if not run_matches(row, status=None, agent=agent, since=since):
                continue
            for event in self._journals[run_id]:
                if event.kind == "tool_call_finished":
                    tally = counts.setdefault((run_id, event.name), [0, 0])
                    tally[0] += 1
                    tally[1] += event.error is not None
        return [
            ToolCounts(run_id=run_id, tool=tool, calls=calls, failures=failures)
            for (run_id, tool), (calls, failures) in counts.items()
        ]

    async def acquire_lease(self, run_id: str, owner: str, lease_s: float) -> Lease:
        self._journal(run_id)
        now = self._clock()
        held = self._leases.get(run_id)
        if held is not None and held.owner != owner and held.expires_at > now:
            raise RunBusy(run_id, held.owner, held.expires_at - now)
        lease = Lease(run_id=run_id, owner=owner, expires_at=now + lease_s, lease_s=lease_s)
        self._leases[run_id] = lease
        return lease

    async def renew_lease(self, run_id: str, owner: str) -> bool:
        held = self._leases.get(run_id)
        if held is None or held.owner != owner:
            return False
        self._leases[run_id] = Lease(
            run_id=run_id, owner=owner, expires_at=self._clock() + held.lease_s, lease_s=held.lease_s
        )
        return True

    async def release_lease(self, run_id: str, owner: str) -> None:
        held = self._leases.get(run_id)
        if held is not None and held.owner == owner:
            del self._leases[run_id]

    async def request_cancel(self, run_id: str, request: CancelRequest) -> None:
        self._journal(run_id)
        self._cancels.setdefault(run_id, request)

    async def set_switch(self, switch: Switch) -> int:
        self._switches[switch.scope, switch.target] = switch
        if switch.scope != "tool":
            request = CancelRequest(by=switch.by, reason=switch.reason, at=switch.at)
            for run_id, row in self._rows.items():
                if row.status not in TERMINAL_STATUSES and (switch.scope == "all" or row.agent == switch.target):
                    self._cancels.setdefault(run_id, request)
        self._switch_version += 1
        return self._switch_version

    async def clear_switch(self, scope: str, target: str) -> bool:
        if self._switches.pop((scope, target), None) is None:
            return False
        self._switch_version += 1
        return True

    async def switches(self) -> tuple[int, list[Switch]]:
        return self._switch_version, sorted(self._switches.values(), key=lambda switch: switch.at)

    async def close(self) -> None:
        return None

    def _journal(self, run_id: str) -> list[Event]:
        journal = self._journals.get(run_id)
        if journal is None:
            raise RunNotFound(run_id, self.url)
        return journal
