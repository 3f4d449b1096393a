"""What model calls cost: USD per million tokens, per model. Extend it with ``PriceTable.with_prices``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agentkeel.core.messages import Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    """Defaults to the input price."""
    cache_write: float | None = None
    """Tokens written to the provider's cache; defaults to the input price (Anthropic charges 1.25x input)."""


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
    "anthropic:claude-sonnet-4-5": Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
    "anthropic:claude-sonnet-4-0": Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
    "anthropic:claude-haiku-4-5": Price(input=1.0, output=5.0, cache_read=0.1, cache_write=1.25),
    "anthropic:claude-opus-4-5": Price(input=5.0, output=25.0, cache_read=0.5, cache_write=6.25),
    "anthropic:claude-opus-4-1": Price(input=15.0, output=75.0, cache_read=1.5, cache_write=18.75),
    "anthropic:claude-opus-4-0": Price(input=15.0, output=75.0, cache_read=1.5, cache_write=18.75),
}


_DATED = re.compile(r"-(?:20\d{6}|\d{4}-\d{2}-\d{2})$")
"""A snapshot date at the end of a model id: -20251001 or -2024-08-06."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceTable:
    prices: dict[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def with_prices(self, **prices: Price) -> PriceTable:
        return PriceTable(prices={**self.prices, **prices})

    def price(self, model: str) -> Price | None:
        """The model's price; for a dated id (``claude-haiku-4-5-20251001``) the undated one's; else its
        provider's (a ``provider`` key); else None."""
        found = self.prices.get(model)
        if found is None:
            undated = _DATED.sub("", model)
            found = self.prices.get(undated) if undated != model else None
        return found or self.prices.get(model.split(":", 1)[0])

    def cost(self, model: str, usage: Usage) -> float:
        """The cost in USD; 0 for a model the table does not know (``keel runs`` shows the tokens anyway)."""
        return cost_of(self.price(model), usage)


def cost_of(price: Price | None, usage: Usage) -> float:
    """What ``usage`` costs at ``price`` (0 without a price)."""
    if price is None or (price.input == 0.0 and price.output == 0.0):
        return 0.0
    read, written = usage.cache_read_tokens, usage.cache_write_tokens
    read_price = price.input if price.cache_read is None else price.cache_read
    write_price = price.input if price.cache_write is None else price.cache_write
    plain = usage.input_tokens - read - written
    return (
        plain * price.input + read * read_price + written * write_price + usage.output_tokens * price.output
    ) / 1_000_000
