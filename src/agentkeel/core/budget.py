"""Run budgets: limits on what a run may spend, checked *before* each call so that no call starts unaffordable.

Pure: the figures come in (``Spend.of(state)``, the driven time the runner measured), a verdict comes out.

How each limit is checked (``spent`` is what the run has used, ``needed`` what the next call would add):

    steps, model_calls       a model call opens step N+1: refused when spent + 1 > limit (limit N allows N calls)
    tool_calls, per_tool     a tool call: refused when spent + 1 > limit; a tool's own limit leaves the others free
    input/output/total       a model call: refused when spent + estimate > limit (input estimated from the prompt
      tokens                 at four characters a token; output: the request's max_output_tokens, else
                             ``Budget.output_reserve_tokens``)
    cost_usd                 a model call: refused when spent + estimated cost > limit, the estimate priced at the
                             model's input and output prices (cache discounts and surcharges ignored). Without
                             a price (None) the cost cannot be estimated: only the settled cost counts, and a
                             call is refused once it reaches the limit. A free model (price 0) is never refused.
    seconds                  any call: refused when the driven time (summed over resumes) has reached the limit;
                             how long a call will take is not estimated.

A limit only stops calls that would add to it: a tool call is never refused for tokens. Refusals are reported
in this order: seconds, steps, model_calls, tool_calls, tool_calls:<tool>, input, output, total tokens, cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

from agentkeel.core.state import RunState
from agentkeel.errors import ConfigError


class TokenPrice(Protocol):
    """USD per million tokens; ``agentkeel.pricing.Price`` is one (the core does not import it)."""

    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...


_EXAMPLES = {"steps": "20", "model_calls": "20", "tool_calls": "50", "input_tokens": "200_000"}
_EXAMPLES |= {"output_tokens": "20_000", "total_tokens": "250_000", "cost_usd": "0.5", "seconds": "300"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """What one run may spend (None: no limit). Give it to ``Agent(budget=Budget(...))``."""

    steps: int | None = None
    """Model turns (a turn and the tool calls it asked for is one step)."""
    model_calls: int | None = None
    """Model calls, retries of one call not counted twice."""
    tool_calls: int | None = None
    """Tool calls started, over every tool."""
    per_tool: Mapping[str, int] = field(default_factory=dict)
    """Tool name -> the most calls of that tool (0 forbids it)."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    """Input and output tokens together."""
    cost_usd: float | None = None
    """USD, priced by the agent's price table (``Agent(prices=PriceTable().with_prices(...))``)."""
    seconds: float | None = None
    """Seconds the run is driven, summed over every process that drove it (not the time it spent paused)."""
    wrap_up: bool = False
    """On exhaustion, give the model one final turn without tools to write its answer (that turn may go past
    the limit by what one call costs), then end the run failed(budget_exceeded:<which>)."""
    output_reserve_tokens: int = 1024
    """Output tokens a model call is assumed to use when the request sets no ``max_output_tokens``."""

    def __post_init__(self) -> None:
        for name, example in _EXAMPLES.items():
            _check_limit(name, getattr(self, name), example, integer=name not in ("cost_usd", "seconds"))
        if not isinstance(self.per_tool, Mapping):
            raise ConfigError(f"Budget(per_tool=...) takes a dict of tool name -> most calls, not {self.per_tool!r}")
        for tool, limit in self.per_tool.items():
            if not isinstance(tool, str) or isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ConfigError(
                    f"Budget(per_tool={{{tool!r}: {limit!r}}}): give each tool's name and the most calls it may "
                    "get as a whole number, e.g. Budget(per_tool={'search': 5}) (0 forbids the tool)"
                )
        object.__setattr__(self, "per_tool", dict(self.per_tool))  # the caller's dict may change later
        if not isinstance(self.wrap_up, bool):
            raise ConfigError(f"Budget(wrap_up={self.wrap_up!r}) takes True or False")
        reserve = self.output_reserve_tokens
        if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 1:
            raise ConfigError(
                f"Budget(output_reserve_tokens={reserve!r}) must be a positive whole number of tokens: the output "
                "a model call is assumed to use when the request sets no max_output_tokens (default 1024)"
            )

    def __repr__(self) -> str:
        set_fields = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != f.default and not (f.name == "per_tool" and not self.per_tool)
        ]
        return f"Budget({', '.join(set_fields)})"


def _check_limit(name: str, value: object, example: str, *, integer: bool) -> None:
    if value is None:
        return
    kind = "whole number" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        problem = f"is not a {kind}"
    elif not math.isfinite(value):
        problem = "is not a finite number"
    elif value < 0:
        problem = "is negative"
    else:
        return
    raise ConfigError(
        f"Budget({name}={value!r}) {problem}: give the most the run may use as a non-negative {kind}, "
        f"e.g. Agent(budget=Budget({name}={example})), or None for no limit"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Spend:
    """What a run has used (for a parent, its children's calls, tokens and cost too)."""

    steps: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    """Tool calls started (calls refused before they could start cost nothing and are not counted)."""
    per_tool: Mapping[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    """Driven time."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @staticmethod
    def of(state: RunState, *, driven_s: float | None = None) -> Spend:
        """A run's own spend, from its journal's figures; ``driven_s``: the time measured now (else the
        journal's, which stops at the last event)."""
        return Spend(
            steps=state.steps_completed,
            model_calls=state.model_calls,
            tool_calls=sum(state.tool_counts.values()),
            per_tool=dict(state.tool_counts),
            input_tokens=state.input_tokens,
            output_tokens=state.output_tokens,
            cost_usd=state.cost_usd,
            seconds=state.active_s if driven_s is None else driven_s,
        )

    @staticmethod
    def model_call(*, input_tokens: int, output_tokens: int, cost_usd: float) -> Spend:
        """What one model call used (its reported usage and cost): one step, one call."""
        return Spend(steps=1, model_calls=1, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd)

    @staticmethod
    def tool_call(tool: str) -> Spend:
        return Spend(tool_calls=1, per_tool={tool: 1})

    def plus(self, other: Spend) -> Spend:
        per_tool = dict(self.per_tool)
        for tool, count in other.per_tool.items():
            per_tool[tool] = per_tool.get(tool, 0) + count
        sums = {name: getattr(self, name) + getattr(other, name) for name in _SUMMED}
        return Spend(per_tool=per_tool, **sums)

    def charged_up(self) -> Spend:
        """What this spend adds to an ancestor's: its calls, tokens and cost. Steps and seconds stay the run's
        own (a parent's driven time already covers the time its children run; summing parallel children's
        would count the same second several times)."""
        return replace(self, steps=0, seconds=0.0)


_CHECKED: tuple[str, ...] = ("steps", "model_calls", "tool_calls", "per_tool")
_CHECKED += ("input_tokens", "output_tokens", "total_tokens", "cost_usd")  # the order refusals are reported in
_SUMMED = ("steps", "model_calls", "tool_calls", "input_tokens", "output_tokens", "cost_usd", "seconds")


@dataclass(frozen=True, kw_only=True, slots=True)
class Exceeded:
    """A call refused: the limit it would cross, what was spent, what the call would have added."""

    which: str
    """``steps``, ``model_calls``, ``tool_calls``, ``tool_calls:<tool>``, ``input_tokens``, ``output_tokens``,
    ``total_tokens``, ``cost_usd`` or ``seconds``."""
    limit: float
    spent: float
    needed: float
    """What the refused call would have added (an estimate for tokens and cost; 0 when unknown)."""
    call: str = "model call"
    """The refused call: ``model call`` or ``call to <tool>``."""
    ledger: str = ""
    """The run whose budget ran out when it is an ancestor of the calling run (its ledger's name), else empty."""

    @property
    def reason(self) -> str:
        return f"budget_exceeded:{self.which}"

    def sentence(self) -> str:
        """For the operator: whose limit, the figures, what to change."""
        who = f"run {self.ledger!r}, which this run's calls are charged to," if self.ledger else "the run"
        which, limit, spent, needed = self.which, self.limit, self.spent, self.needed
        setting = f"{which}=..."
        if which == "seconds":
            what = f"{who} has been driven for {spent:.1f}s, its limit is {limit:g}s"
        elif which == "cost_usd":
            about = f"about {_usd(needed)}" if needed else "an unknown amount (the model has no price)"
            what = f"{who} would spend {about} on its next {self.call}, with {_usd(spent)} of its {_usd(limit)} spent"
        elif which.endswith("_tokens"):
            kind = which.removesuffix("_tokens")
            what = (
                f"{who}'s next {self.call} would use about {needed:,.0f} {kind} tokens, with {spent:,.0f} of its "
                f"{limit:,.0f} spent"
            )
        elif which.startswith("tool_calls:"):
            tool = which.partition(":")[2]
            what = f"{who} has called {tool} {spent:,.0f} times, its limit"
            setting = f"per_tool={{{tool!r}: ...}}"
        else:
            done = {"steps": "taken {} steps", "model_calls": "made {} model calls", "tool_calls": "made {} tool calls"}
            what = f"{who} has {done[which].format(f'{spent:,.0f}')}, its limit"
        return f"{what} ({self.reason}); raise the limit with Agent(budget=Budget({setting}))"

    def refusal(self) -> str:
        """What the model reads when a tool call is refused: the run goes on."""
        if self.which.startswith("tool_calls:"):
            tool = self.which.partition(":")[2]
            return (
                f"{tool} was not run: this run may call it at most {self.limit:g} times, and it has. Do not call "
                f"it again; use the other tools, or answer with what you have."
            )
        return (
            f"This call was not run: this run may make at most {self.limit:g} tool calls, and it has. Answer with "
            "what you have, and say what is left undone."
        )

    def for_model(self) -> str:
        """What the model reads before its wrap-up turn (``Budget.wrap_up``)."""
        return f"This run has reached its budget ({self.which}). This is your last turn and you cannot call " + (
            "tools: give your best final answer now from what you have so far, and say what is left undone."
        )


_NO_LIMITS = Budget()


def _usd(amount: float) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def check(
    budget: Budget, spent: Spend, needed: Spend, *, call: str = "model call", cost_known: bool = True
) -> Exceeded | None:
    """The first limit the call (adding ``needed``) would cross, or None. ``cost_known``: whether
    ``needed.cost_usd`` is an estimate (False: the model has no price; the call is refused once spent reaches
    the limit)."""
    if budget.seconds is not None and spent.seconds >= budget.seconds:
        return Exceeded(which="seconds", limit=budget.seconds, spent=spent.seconds, needed=0.0, call=call)
    for which in _CHECKED:
        if which == "per_tool":
            figures = [
                (f"tool_calls:{t}", budget.per_tool.get(t), spent.per_tool.get(t, 0), n)
                for t, n in needed.per_tool.items()
            ]
        else:
            figures = [(which, getattr(budget, which), getattr(spent, which), getattr(needed, which))]
        for name, limit, used, more in figures:
            unknown_cost = name == "cost_usd" and not cost_known and needed.model_calls > 0
            if limit is not None and ((more > 0 and used + more > limit) or (unknown_cost and used >= limit)):
                return Exceeded(which=name, limit=limit, spent=used, needed=more, call=call)
    return None


def estimate_model_call(
    budget: Budget | None, *, input_tokens: int, max_output_tokens: int | None, price: TokenPrice | None
) -> Spend:
    """What a model call would spend: one step, one call, the prompt's tokens, the most output it may write
    (``max_output_tokens``, else ``budget.output_reserve_tokens``) and their cost at ``price`` (0 without one)."""
    reserve = (budget or _NO_LIMITS).output_reserve_tokens
    output_tokens = max_output_tokens if max_output_tokens is not None else reserve
    cost = 0.0 if price is None else (input_tokens * price.input + output_tokens * price.output) / 1_000_000
    return Spend.model_call(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)


def before_model_call(
    budget: Budget, spent: Spend, *, input_tokens: int, max_output_tokens: int | None, price: TokenPrice | None
) -> Exceeded | None:
    """Whether a model call fits: None, or the limit it would cross (see the module's table)."""
    needed = estimate_model_call(budget, input_tokens=input_tokens, max_output_tokens=max_output_tokens, price=price)
    return check(budget, spent, needed, cost_known=price is not None)


def before_tool_call(budget: Budget, spent: Spend, tool: str) -> Exceeded | None:
    """Whether one more call of ``tool`` fits."""
    return check(budget, spent, Spend.tool_call(tool), call=f"call to {tool}")
