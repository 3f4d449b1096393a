"""What model calls cost: USD per million tokens, per model. Extend it with ``PriceTable.with_prices``."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentkeel.core.messages import Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    """Defaults to the input price."""


DEFAULT_PRICES: dict[str, Price] = {
    "scripted": Price(input=0.0, output=0.0),
    "openai:gpt-4.1": Price(input=2.0, output=8.0, cache_read=0.5),
    "openai:gpt-4.1-mini": Price(input=0.4, output=1.6, cache_read=0.1),
    "openai:gpt-4.1-nano": Price(input=0.1, output=0.4, cache_read=0.025),
    "openai:gpt-4o": Price(input=2.5, output=10.0, cache_read=1.25),
    "openai:gpt-4o-mini": Price(input=0.15, output=0.6, cache_read=0.075),
    "openai:gpt-5": Price(input=1.25, output=10.0, cache_read=0.125),
    "openai:gpt-5-mini": Price(input=0.25, output=2.0, cache_read=0.025),
    "openai:gpt-5-nano": Price(input=0.05, output=0.4, cache_read=0.005),
    "anthropic:claude-sonnet-4-5": Price(input=3.0, output=15.0, cache_read=0.3),
    "anthropic:claude-haiku-4-5": Price(input=1.0, output=5.0, cache_read=0.1),
    "anthropic:claude-opus-4-1": Price(input=15.0, output=75.0, cache_read=1.5),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceTable:
    prices: dict[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def with_prices(self, **prices: Price) -> PriceTable:
        return PriceTable(prices={**self.prices, **prices})

    def price(self, model: str) -> Price | None:
        """The model's price, or its provider's (a ``provider`` key), or None."""
        return self.prices.get(model) or self.prices.get(model.split(":", 1)[0])

    def cost(self, model: str, usage: Usage) -> float:
        """The cost in USD; 0 for a model the table does not know (``keel runs`` shows the tokens anyway)."""
        return cost_of(self.price(model), usage)


def cost_of(price: Price | None, usage: Usage) -> float:
    """What ``usage`` costs at ``price`` (0 without a price)."""
    if price is None or (price.input == 0.0 and price.output == 0.0):
        return 0.0
    cached = usage.cache_read_tokens
    cache_price = price.input if price.cache_read is None else price.cache_read
    return (
        (usage.input_tokens - cached) * price.input + cached * cache_price + usage.output_tokens * price.output
    ) / 1_000_000
