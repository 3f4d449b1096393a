"""``agentkeel.switches``: kill switches from Python, and the pure helpers a driver asks before each call."""

from __future__ import annotations

import pytest

from agentkeel import ConfigError, Killed, MemoryStore
from agentkeel.core.events import RunStarted
from agentkeel.core.state import replay
from agentkeel.stores.base import RunRow, Switch
from agentkeel.switches import active_switches, disabled_message, disabled_tool, kill, killed, revive

AT = 14 * 3600 + 2 * 60  # 14:02 UTC


def switch(scope: str, target: str = "", *, by: str = "ops@desk", reason: str = "fraud investigation") -> Switch:
    return Switch(scope=scope, target=target, by=by, reason=reason, at=AT)  # type: ignore[arg-type]


async def test_kill_sets_a_switch_that_revive_lifts() -> None:
    store = MemoryStore()
    refund = await kill(store, tool="refund", by="ops@desk", reason="fraud investigation")
    assert (refund.scope, refund.target, refund.by, refund.reason) == (
        "tool",
        "refund",
        "ops@desk",
        "fraud investigation",
    )
    everything = await kill(store, everything=True, by="sre", reason="provider outage")
    assert await active_switches(store) == [refund, everything]
    assert await revive(store, tool="refund") is True
    assert await revive(store, tool="refund") is False
    assert await revive(store, everything=True) is True
    assert await active_switches(store) == []


async def test_a_killed_agent_starts_no_run_until_revived() -> None:
    store = MemoryStore()
    await kill(store, agent="support", by="ops@desk", reason="bad prompt")
    first = RunStarted(at=1.0, run_id="r1", agent="support", task="t", model="scripted")
    with pytest.raises(Killed, match="agent 'support' is disabled by ops@desk"):
        await store.create_run(first, RunRow.of(replay([first])), owner="a", lease_s=30.0)
    await revive(store, agent="support")
    await store.create_run(first, RunRow.of(replay([first])), owner="a", lease_s=30.0)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "name exactly one of tool=, agent= or everything=True; got none"),
        ({"tool": "refund", "agent": "support"}, "got tool='refund', agent='support'"),
        ({"tool": "refund", "everything": True}, "got tool='refund', everything=True"),
        ({"tool": " "}, "the tool to switch off needs a name"),
    ],
)
async def test_kill_names_exactly_one_target(given: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await kill(MemoryStore(), by="ops", reason="why", **given)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        await revive(MemoryStore(), **given)  # type: ignore[arg-type]


async def test_kill_needs_who_and_why() -> None:
    with pytest.raises(ConfigError, match=r"needs who sets it \(by=\) and why \(reason=\)"):
        await kill(MemoryStore(), tool="refund", by="ops", reason=" ")


def test_a_tool_is_disabled_by_its_own_switch_first_then_by_one_that_stops_its_agent() -> None:
    on_tool, on_agent, on_all = switch("tool", "refund"), switch("agent", "support"), switch("all")
    assert disabled_tool([], "refund", "support") is None
    assert disabled_tool([switch("tool", "lookup")], "refund", "support") is None
    assert disabled_tool([on_agent, on_tool], "refund", "support") is on_tool
    assert disabled_tool([on_agent], "refund", "support") is on_agent
    assert disabled_tool([on_agent], "refund", "billing") is None
    assert disabled_tool([on_agent, on_all], "lookup", "billing") is on_all


def test_an_agent_is_killed_by_a_switch_on_it_or_on_everything() -> None:
    on_tool, on_agent, on_all = switch("tool", "support"), switch("agent", "support"), switch("all")
    assert killed([on_tool], "support") is None
    assert killed([on_tool, on_agent], "support") is on_agent
    assert killed([on_agent], "billing") is None
    assert killed([on_agent, on_all], "support") is on_all
    assert killed((s for s in [on_all]), "billing") is on_all  # any iterable


def test_the_model_reads_who_disabled_the_tool_since_when_why_and_what_to_do() -> None:
    assert disabled_message(switch("tool", "refund"), "refund") == (
        "The tool refund is disabled by ops@desk since 14:02 UTC: fraud investigation. Do not call it again; tell "
        "the user that refund is unavailable right now and continue without it."
    )
    assert disabled_message(switch("agent", "support", by="lead", reason="bad prompt"), "lookup").startswith(
        "The tool lookup is disabled (with all of agent support's tools) by lead since 14:02 UTC: bad prompt."
    )
    assert "disabled (with every tool) by ops@desk" in disabled_message(switch("all"), "lookup")
