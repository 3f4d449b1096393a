"""The examples in examples/ run as their docstrings say, offline."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from agentkeel.core.state import replay

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def test_the_supervisor_researches_then_hands_the_refund_to_the_refunder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    example = runpy.run_path(str(EXAMPLES / "supervisor.py"))
    lead = example["agent"].replace(store="memory://")
    result = await lead.run("Order #1005 arrived with a cracked screen. Can I get my money back?")
    assert result.status == "completed"
    assert result.output.startswith("Sorry about the damage! Refund R-1 of $249.00 for order #1005")
    children = {row.agent: row for row in await lead.store.list_runs() if row.parent_id == result.run_id}
    assert set(children) == {"researcher", "refunder"}
    refunder = replay(await lead.store.load(children["refunder"].run_id))
    assert [record.name for record in refunder.calls.values()] == ["issue_refund"]
    assert example["SHOP"].refund_count("#1005") == 1
    assert "issue_refund" not in lead.tools  # the supervisor holds read tools only


async def test_the_supervisor_asks_for_the_order_number_when_it_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lead = runpy.run_path(str(EXAMPLES / "supervisor.py"))["agent"].replace(store="memory://")
    result = await lead.run("My screen arrived cracked.")
    assert (result.status, result.output) == (
        "completed",
        "Happy to help! What is your order number? It looks like #1234.",
    )
