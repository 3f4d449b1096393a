"""Kill switches: disable a tool, an agent or everything at run time, for every process that uses the store.

A switch lives in the store (``Store.set_switch``), so a worker on another machine learns of it at its next
append: every append answers with the store's switch version (``Signals.switches``), and a driver that sees the
version change reloads the switches before its next call. What a switch does there:

* on a tool: a call of that tool is not made; the model gets ``disabled_message`` as the call's result (a sentence
  it can act on) and the run goes on without it;
* on an agent, or on everything: its runs that have not ended get a cancel request (written with the switch, in
  the same transaction) and end ``cancelled`` with who and why; ``create_run`` refuses its new runs (``Killed``).

``kill`` and ``revive`` are the Python face of ``keel kill``; ``disabled_tool``, ``killed`` and
``disabled_message`` are pure, for the driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from agentkeel.errors import ConfigError
from agentkeel.stores.base import Store, Switch, SwitchScope, blocking_switch


async def kill(
    store: Store,
    *,
    tool: str | None = None,
    agent: str | None = None,
    everything: bool = False,
    by: str,
    reason: str,
) -> Switch:
    """Disable ``tool``, ``agent`` or ``everything`` (exactly one) in every process using ``store``, until
    ``revive``. ``by`` and ``reason`` reach the journal of each run the switch stops, and the model's message."""
    scope, target = _target(tool, agent, everything)
    if not by.strip() or not reason.strip():
        raise ConfigError("a kill switch needs who sets it (by=) and why (reason=), for the journals it ends up in")
    switch = Switch(scope=scope, target=target, by=by, reason=reason, at=time.time())
    await store.set_switch(switch)
    return switch


async def revive(store: Store, *, tool: str | None = None, agent: str | None = None, everything: bool = False) -> bool:
    """Lift the switch on ``tool``, ``agent`` or ``everything`` (exactly one); False if none was in force.

    Runs that a switch on their agent already cancelled stay cancelled; new runs start again."""
    scope, target = _target(tool, agent, everything)
    return await store.clear_switch(scope, target)


async def active_switches(store: Store) -> list[Switch]:
    """The switches in force, oldest first."""
    _, switches = await store.switches()
    return switches


def killed(switches: Iterable[Switch], agent: str) -> Switch | None:
    """The switch that stops ``agent``'s runs, if any: one on everything, else one on the agent."""
    return blocking_switch(switches, agent)


def disabled_tool(switches: Iterable[Switch], tool: str, agent: str) -> Switch | None:
    """The switch that keeps ``agent`` from calling ``tool``, if any: one on the tool, else one that stops the
    agent (so that a driver checking tools alone still makes no call of a killed agent)."""
    switches = list(switches)
    for switch in switches:
        if switch.scope == "tool" and switch.target == tool:
            return switch
    return killed(switches, agent)


def disabled_message(switch: Switch, tool: str) -> str:
    """What the model reads instead of ``tool``'s result: who disabled it, since when, why, and what to do."""
    since = time.strftime("%H:%M UTC", time.gmtime(switch.at))
    widely = {"tool": "", "agent": f" (with all of agent {switch.target}'s tools)", "all": " (with every tool)"}
    return (
        f"The tool {tool} is disabled{widely[switch.scope]} by {switch.by} since {since}: {switch.reason}. "
        f"Do not call it again; tell the user that {tool} is unavailable right now and continue without it."
    )


def _target(tool: str | None, agent: str | None, everything: bool) -> tuple[SwitchScope, str]:
    chosen: list[tuple[SwitchScope, str]] = []
    if tool is not None:
        chosen.append(("tool", tool))
    if agent is not None:
        chosen.append(("agent", agent))
    if everything:
        chosen.append(("all", ""))
    if len(chosen) != 1:
        given = ", ".join(f"{scope}={name!r}" if scope != "all" else "everything=True" for scope, name in chosen)
        raise ConfigError(f"name exactly one of tool=, agent= or everything=True; got {given or 'none'}")
    scope, target = chosen[0]
    if scope != "all" and not target.strip():
        raise ConfigError(f"the {scope} to switch off needs a name: got {target!r}")
    return scope, target
