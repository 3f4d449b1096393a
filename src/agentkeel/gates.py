"""Approval gates: rules that hold a tool call for a person's decision, or refuse it outright.

>>> agent = Agent(..., gates=[
...     deny("delete_account", why="accounts are closed by the back office"),
...     require_approval("refund", when=lambda args: args["amount"] > 100, why="refunds above $100"),
...     require_approval(effect="write"),
... ])

A rule matches a call by tool name (any tool when none is named), by the tool's effect, and by a predicate on the
validated arguments (a dict of JSON values). ``deny`` rules win over ``require_approval`` rules. The decision is
made once, when the model asks for the call, and journaled with the reason: a resumed run honours what was
decided, even if the rules changed since. A predicate that raises holds the call for a person (a gate fails
closed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentkeel.errors import ConfigError
from agentkeel.tools.tool import Effect, Tool

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """One gate. Build it with :func:`require_approval` or :func:`deny`."""

    action: Literal["approve", "deny"]
    """``approve``: the call waits for a person; ``deny``: the call is refused and the model told why."""
    tools: frozenset[str] = frozenset()
    """The tools it covers; empty: every tool."""
    effect: Effect | None = None
    """Only tools with this effect (``"write"``: every tool that changes the world)."""
    when: Predicate | None = None
    """Only calls whose validated arguments make this true."""
    why: str = ""
    """What the person deciding (or the model, for ``deny``) reads."""

    def matches(self, tool: Tool, arguments: dict[str, Any]) -> bool:
        if self.tools and tool.name not in self.tools:
            return False
        if self.effect is not None and tool.effect != self.effect:
            return False
        return self.when is None or bool(self.when(arguments))

    def reason(self, tool: Tool) -> str:
        if self.why:
            return self.why
        if self.effect is not None and not self.tools:
            return f"{self.effect} tools need {'approval' if self.action == 'approve' else 'to be refused'}"
        return f"{tool.name} {'needs approval' if self.action == 'approve' else 'is not allowed'}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Gated:
    """What the gates decided for one call."""

    action: Literal["approve", "deny"]
    why: str


def require_approval(*tools: str, effect: Effect | None = None, when: Predicate | None = None, why: str = "") -> Rule:
    """Calls of these tools (every tool when none is named) wait for a person's ``keel approve``."""
    return _rule("approve", tools, effect, when, why)


def deny(*tools: str, effect: Effect | None = None, when: Predicate | None = None, why: str = "") -> Rule:
    """Calls of these tools (every tool when none is named) are refused; the model reads ``why``."""
    return _rule("deny", tools, effect, when, why)


def gate(rules: Sequence[Rule], tool: Tool, arguments: dict[str, Any]) -> Gated | None:
    """The decision for one validated call: deny, hold for approval, or ``None`` (it runs)."""
    held: Gated | None = None
    for rule in rules:
        try:
            matched = rule.matches(tool, arguments)
        except Exception as exc:  # a gate fails closed: a person decides
            if held is None:
                held = Gated(
                    action="approve",
                    why=f"an approval rule for {tool.name} raised {type(exc).__name__}: {exc}; a person decides",
                )
            continue
        if not matched:
            continue
        if rule.action == "deny":
            return Gated(action="deny", why=rule.reason(tool))
        if held is None:
            held = Gated(action="approve", why=rule.reason(tool))
    return held


def check_rules(agent: str, rules: Sequence[Rule], tools: Sequence[str]) -> tuple[Rule, ...]:
    """The agent's gates, checked once when it is built: every tool a rule names must be one of its tools."""
    if isinstance(rules, Rule) or not isinstance(rules, Sequence):
        raise ConfigError(f"agent {agent!r}: gates must be a list of rules, e.g. gates=[require_approval('refund')]")
    for rule in rules:
        if not isinstance(rule, Rule):
            raise ConfigError(
                f"agent {agent!r}: {rule!r} is not a gate; build gates with require_approval(...) or deny(...)"
            )
        unknown = sorted(rule.tools - set(tools))
        if unknown:
            raise ConfigError(
                f"agent {agent!r}: a gate names tool(s) {', '.join(unknown)}, which the agent does not have "
                f"(its tools: {', '.join(tools) or 'none'})"
            )
    return tuple(rules)


def _rule(
    action: Literal["approve", "deny"],
    tools: tuple[str, ...],
    effect: Effect | None,
    when: Predicate | None,
    why: str,
) -> Rule:
    for name in tools:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a gate's tools are named by strings, e.g. require_approval('refund'), not {name!r}")
    if effect not in (None, "read", "write"):
        raise ConfigError(f"a gate's effect is 'read' or 'write', not {effect!r}")
    if when is not None and not callable(when):
        raise ConfigError(f"a gate's when= takes a function of the arguments (a dict), not {when!r}")
    return Rule(action=action, tools=frozenset(tools), effect=effect, when=when, why=why)
