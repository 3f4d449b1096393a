"""The lease keeper renews a driver's lease while a call outlasts it, and lets go when the run ends."""

from __future__ import annotations

import asyncio

from agentkeel import Agent, MemoryStore, ScriptedModel, call, reply, tool


class WatchedStore(MemoryStore):
    """Tells when a lease was renewed."""

    def __init__(self) -> None:
        super().__init__()
        self.renewed = asyncio.Event()
        self.renewals: list[tuple[str, str, bool]] = []

    async def renew_lease(self, run_id: str, owner: str) -> bool:
        held = await super().renew_lease(run_id, owner)
        self.renewals.append((run_id, owner, held))
        self.renewed.set()
        return held


async def test_a_call_longer_than_the_lease_keeps_it_and_the_run_lets_go_at_the_end() -> None:
    store = WatchedStore()

    @tool
    async def slow_report() -> str:
        await store.renewed.wait()  # returns only once the keeper renewed the lease during this call
        return "report"

    agent = Agent(
        name="slow",
        model=ScriptedModel([call("slow_report"), reply("done")]),
        tools=[slow_report],
        store=store,
        lease_s=0.03,
    )
    result = await agent.run("go")
    assert result.status == "completed"
    assert store.renewals and all(held for _, _, held in store.renewals)
    assert "r" not in store._leases and result.run_id not in store._leases  # released at the end
