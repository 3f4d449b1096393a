"""The examples in examples/ run as their docstrings say, offline."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

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


def load(name: str) -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLES / name))


async def test_the_extraction_pipeline_validates_and_asks_again() -> None:
    pipeline = load("pipelines.py")["extraction"].with_store("memory://")
    result = await pipeline.run("Invoice INV-2041 from Northwind Ltd, due 2026-12-15. Total: EUR 1,250.00")
    assert result.status == "completed"
    assert json.loads(result.output) == {
        "number": "INV-2041",
        "supplier": "Northwind Ltd",
        "currency": "EUR",
        "total": 1250.0,
        "due": "2026-12-15",
    }
    assert result.model_calls == 2  # "eur" was refused by the schema, then corrected


async def test_the_digest_summarises_50_documents_then_combines_them() -> None:
    pipeline = load("pipelines.py")["digest"].with_store("memory://")
    documents = [f"Report {n}: figure {n} moved. More detail follows." for n in range(50)]
    result = await pipeline.run(documents)
    assert result.status == "completed" and result.output.startswith("50 documents read; the main points: Report 0")
    assert result.model_calls == 51
    state = replay(await pipeline.store.load(result.run_id))
    assert state.steps["documents[49].summary"] == "Report 49: figure 49 moved"


@pytest.mark.parametrize(
    ("ticket", "branch"),
    [
        ("I was charged twice for order #1005", "billing"),
        ("My parcel was never delivered", "shipping"),
        ("Do you sell gift cards?", "other"),
    ],
)
async def test_the_router_runs_only_the_branch_it_picked(ticket: str, branch: str) -> None:
    pipeline = load("pipelines.py")["router"].with_store("memory://")
    result = await pipeline.run(ticket)
    routed = json.loads(result.output)
    assert routed["branch"] == branch
    steps = replay(await pipeline.store.load(result.run_id)).steps
    assert [key for key in steps if key in {"billing", "shipping"}] == ([branch] if branch != "other" else [])
