"""The README's examples are code a newcomer copies: every Python block must run as written, on its own, and do
what the text around it says."""

from __future__ import annotations

import asyncio
import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentkeel.core.events import ContextCompacted, Intervened, RunEnded, ToolCallFinished, ToolCallStarted

README = Path(__file__).resolve().parents[1] / "README.md"

Namespace = dict[str, Any]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run_block(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Namespace:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "example.py"
    script.write_text(block)
    return runpy.run_path(str(script), run_name="__main__")


def journal(namespace: Namespace) -> list[Any]:
    return asyncio.run(namespace["agent"].store.load(namespace["result"].run_id))


def thirty_seconds(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert result.status == "completed"
    assert result.output == "Order #1234 has shipped."
    assert result.steps == 3
    assert result.tool_errors == 1  # the bad argument, corrected after the actionable error
    assert (tmp_path / ".keel" / "keel.db").exists()
    assert "completed" in out


def approval_gate(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert (result.status, result.output) == ("completed", "Refunded $250.")
    kinds = [event.kind for event in journal(namespace)]
    assert kinds.index("approval_requested") < kinds.index("run_paused") < kinds.index("call_approved")
    assert kinds.index("call_approved") < kinds.index("tool_call_started")  # it ran only once approved
    assert out.startswith("paused awaiting_approval\n")
    assert out.endswith("completed Refunded $250.\n")


def budget(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert (result.status, result.reason) == ("failed", "budget_exceeded:cost_usd")
    assert 0 < result.cost_usd <= 0.02
    assert re.match(
        r"the run would spend about \$0\.01\d\d on its next model call, with \$0\.00\d\d of its \$0\.0200",
        result.detail,
    )
    assert "failed budget_exceeded:cost_usd" in out


def loops(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert (result.status, result.reason, result.steps) == ("failed", "loop_detected", 6)
    events = journal(namespace)
    [told] = [i for i, event in enumerate(events) if isinstance(event, Intervened)]
    assert events[told].rule == "repeated_error"
    assert sum(isinstance(event, ToolCallStarted) for event in events[:told]) == 3  # told after the third failure
    assert isinstance(events[-1], RunEnded) and "(calls 4.1, 5.1, 6.1)" in events[-1].error
    assert "failed loop_detected" in out


def kill_switch(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert (result.status, result.output) == ("completed", "Email is unavailable right now; I'll send it later.")
    [finished] = [event for event in journal(namespace) if isinstance(event, ToolCallFinished)]
    assert finished.error is not None and finished.error.kind == "disabled"
    assert "a bulk-mail incident" in finished.content
    assert "agent 'mailer' is disabled by ops" in out
    assert asyncio.run(namespace["agent"].store.switches())[1] == []  # both switches lifted again


def bounded_context(namespace: Namespace, tmp_path: Path, out: str) -> None:
    result = namespace["result"]
    assert (result.status, result.output) == ("completed", "Revenue was up 12% on the year.")
    assert any(isinstance(event, ContextCompacted) for event in journal(namespace))
    state = asyncio.run(namespace["agent"].state(result.run_id))
    assert state.notes == {"revenue": "up 12% on the year (page 1)"}
    assert state.compacted_upto > 1


def dry_run(namespace: Namespace, tmp_path: Path, out: str) -> None:
    applied = namespace["applied"]
    assert (applied.status, applied.mode) == ("completed", "apply")
    assert namespace["refunds"] == [("#1007", 389.0)]  # once: the dry run wrote nothing
    assert out.startswith("issue_refund {'would_refund': 389.0, 'to': 'card ending 4242'}\n")


def rollback(namespace: Namespace, tmp_path: Path, out: str) -> None:
    assert (namespace["done"].status, namespace["undone"].status) == ("completed", "rolled_back")
    assert namespace["bank"] == {}
    kinds = [event.kind for event in asyncio.run(namespace["agent"].store.load(namespace["done"].run_id))]
    assert kinds.count("compensation_finished") == 2 and kinds[-1] == "run_ended"


def tracing(namespace: Namespace, tmp_path: Path, out: str) -> None:
    from agentkeel.observe import setup

    setup.reset()  # the block configured this process's tracing
    assert namespace["result"].status == "completed"
    names = sorted(span.name for span in namespace["exporter"].get_finished_spans())
    assert out.splitlines()[0] == str(names)
    assert names == [
        "chat scripted",
        "chat scripted",
        "execute_tool get_order",
        "invoke_agent desk",
        "step 1",
        "step 2",
    ]


CHECKS: dict[str, Callable[[Namespace, Path, str], None]] = {
    'reply("Order #1234 has shipped.")': thirty_seconds,
    "require_approval(": approval_gate,
    "budget=Budget(": budget,
    "loops=LoopPolicy(": loops,
    "await kill(": kill_switch,
    "context=ContextPolicy(": bounded_context,
    "dry_run=True": dry_run,
    ".compensate": rollback,
    "configure(tracer_provider=": tracing,
}
"""Each block's check, found by a phrase only that block holds."""


def check_for(block: str) -> Callable[[Namespace, Path, str], None]:
    found = [check for phrase, check in CHECKS.items() if phrase in block]
    assert len(found) == 1, f"give this README block one check in tests/test_readme.py:\n{block[:300]}"
    return found[0]


def test_the_readme_opens_with_the_30_second_example_and_every_block_has_a_check() -> None:
    blocks = python_blocks()
    assert len(blocks) == len(CHECKS)
    assert check_for(blocks[0]) is thirty_seconds
    assert [check_for(block) for block in blocks[1:]] == list(CHECKS.values())[1:]


@pytest.mark.parametrize("number", range(len(CHECKS)))
def test_the_readme_block_runs_and_does_what_it_says(
    number: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    block = python_blocks()[number]
    check = check_for(block)
    namespace = run_block(block, tmp_path, monkeypatch)
    check(namespace, tmp_path, capsys.readouterr().out)
