"""Costs from the price table: cache reads and writes at their own prices, dated model ids, unknown models."""

from __future__ import annotations

import pytest

from agentkeel import Price, PriceTable, Usage


def test_cache_reads_and_writes_are_charged_at_their_own_prices() -> None:
    table = PriceTable(prices={"p:m": Price(input=2.0, output=10.0, cache_read=0.2, cache_write=2.5)})
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=400_000, cache_write_tokens=100_000)
    # 500k plain at 2.0, 400k read at 0.2, 100k written at 2.5, 100k out at 10.0
    assert table.cost("p:m", usage) == pytest.approx(1.0 + 0.08 + 0.25 + 1.0)


def test_a_dated_model_id_costs_what_its_undated_name_costs() -> None:
    table = PriceTable()
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert table.cost("anthropic:claude-haiku-4-5-20251001", usage) == pytest.approx(1.0)
    assert table.cost("openai:gpt-4o-2024-08-06", usage) == pytest.approx(2.5)


def test_an_unknown_model_costs_nothing_and_a_provider_key_covers_its_models() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert PriceTable().cost("acme:secret-model", usage) == 0.0
    table = PriceTable().with_prices(acme=Price(input=1.0, output=1.0))
    assert table.cost("acme:secret-model", usage) == pytest.approx(2.0)
