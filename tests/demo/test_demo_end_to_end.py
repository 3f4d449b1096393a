"""``keel demo`` from a fresh directory, in a real process, with the default store; and the example agent."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentkeel.core.events import RunResumed, RunStarted, ToolCallFinished, ToolCallRetrying, ToolCallStarted
from agentkeel.stores.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from openai_server import FakeOpenAI, calls, function_call, text

ANSI = re.compile(r"\x1b\[")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_desk.py"


def keel(cwd: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KEEL_STORE", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "agentkeel.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def journals(db: Path) -> dict[str, list[Any]]:
    async def load() -> dict[str, list[Any]]:
        store = SQLiteStore(db)
        try:
            rows = await store.list_runs(limit=100)
            return {row.task: await store.load(row.run_id) for row in rows}
        finally:
            await store.close()

    return asyncio.run(load())


@pytest.mark.crash
def test_the_demo_runs_end_to_end_and_proves_the_refund_happened_once(tmp_path: Path) -> None:
    demo = keel(tmp_path, "demo")

    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert not ANSI.search(out)
    assert "The model is scripted" in out
    assert "--model openai:gpt-4.1-mini" in out and "OPENAI_BASE_URL" in out
    assert "the worker was killed (SIGKILL) inside issue_refund" in out
    assert "Refunds for #1005 in the shop: 1. The journal: call 2.1 issue_refund started, no outcome." in out
    assert "Proof: refunds for order #1005 in the shop's database: 1." in out
    assert "keel show" in out and "keel runs" in out

    assert "paused(awaiting_approval)" in out and "Proof: refunds for order #1007 in the shop's database: 1," in out
    assert "Evidence, in the journal: loop detected (repeated_error)" in out
    assert "Figures: the run would spend about $" in out
    assert re.search(r"^  keel rollback \w+ --reason 'the customer withdrew her refund request'", out, re.M)
    assert "↩ call 2.1 undone: " in out
    assert "Proof: order #1003 in the shop's database: 1 refund, 1 voided (R-3 ($64.50) by void V-1" in out
    for number in range(1, 10):
        assert f"Ticket {number}/9: " in out

    # the default store, in the working directory, holds the nine runs, each ended as its ticket says
    runs = journals(tmp_path / ".keel" / "keel.db")
    assert len(runs) == 9
    ended = {task: (journal[-1].kind, journal[-1].status, journal[-1].reason) for task, journal in runs.items()}
    assert sorted(ended.values()) == sorted(
        [("run_ended", "completed", "")] * 6
        + [("run_ended", "failed", "loop_detected"), ("run_ended", "failed", "budget_exceeded:cost_usd")]
        + [("run_ended", "rolled_back", "rolled_back")]
    )
    summary = out[out.index("This demo's runs") :]
    assert summary.count("completed") == 6 and summary.count("rolled_back") == 1
    assert "failed(loop_detected)" in summary and "failed(budget_exceeded:cost_usd)" in summary

    flaky = next(j for task, j in runs.items() if "#1002" in task)
    assert [e.attempt for e in flaky if isinstance(e, ToolCallRetrying)] == [1, 2]
    assert [e.attempts for e in flaky if isinstance(e, ToolCallFinished) and e.name == "track_shipment"] == [3]

    corrected = next(j for task, j in runs.items() if "order 1003" in task)
    outcomes = [(e.error.kind if e.error else "ok") for e in corrected if isinstance(e, ToolCallFinished)]
    assert outcomes == ["invalid_arguments", "ok"]

    crashed = next(j for task, j in runs.items() if "#1005" in task)
    kinds = [e.kind for e in crashed]
    refund_started = next(
        i for i, e in enumerate(crashed) if isinstance(e, ToolCallStarted) and e.name == "issue_refund"
    )
    resumed = next(i for i, e in enumerate(crashed) if isinstance(e, RunResumed))
    assert kinds[refund_started + 1] == "run_resumed"  # the worker died between the intent and the outcome
    refund_finished = next(
        i for i, e in enumerate(crashed) if isinstance(e, ToolCallFinished) and e.name == "issue_refund"
    )
    assert refund_finished > resumed and crashed[refund_finished].error is None
    with sqlite3.connect(tmp_path / ".keel" / "demo" / "shop.db") as shop:
        assert shop.execute("SELECT count(*) FROM refunds WHERE order_id = '#1005'").fetchone()[0] == 1
        assert shop.execute("SELECT count(*) FROM escalations WHERE order_id = '#1004'").fetchone()[0] == 1
        assert shop.execute("SELECT count(*) FROM refunds WHERE order_id = '#1007'").fetchone()[0] == 1
        assert shop.execute("SELECT count(*) FROM refunds").fetchone()[0] == 3
        # the rolled-back refund stays on record, voided once; the others stand
        voided = shop.execute("SELECT order_id FROM refunds JOIN refund_voids USING (refund_id)").fetchall()
        assert voided == [("#1003",)]
    rolled = next(j for task, j in runs.items() if "wool throw" in task)
    kinds = [e.kind for e in rolled]
    assert kinds.index("run_ended") < kinds.index("compensation_finished") < len(kinds) - 1

    # and the runs can be explored
    shown = keel(tmp_path, "show", crashed[0].run_id)
    assert shown.returncode == 0
    assert "after a resume" in shown.stdout


def test_an_unknown_model_provider_is_refused_cleanly(tmp_path: Path) -> None:
    demo = keel(tmp_path, "demo", "--model", "acme:large")

    assert demo.returncode == 2
    assert demo.stdout == ""
    assert demo.stderr.startswith("error: model 'acme:large': unknown provider 'acme'")
    assert "Traceback" not in demo.stderr
    assert len(demo.stderr.strip().splitlines()) == 1


def desk_turns() -> list[Any]:
    """What a real model might answer on the nine tickets, turn by turn (on ticket 5, the worker's two turns,
    then the turn after the resume; on ticket 6, two turns, the approval, then the turn after it; the rollback of
    ticket 9 asks the model nothing). This model does not spiral or run away: it asks the customer, and lists the
    customer's orders."""

    def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
        return function_call(call_id, name, arguments)

    refused = {"order_id": "#1004", "amount_usd": 45.0, "reason": "kettle stopped working"}
    return [
        calls(call("call_11", "get_order", order_id="#1001"), content="Let me look that up."),
        text("Hi Ana, your brass desk lamp is on its way with Parcelo (PX-771203)."),
        calls(call("call_21", "get_order", order_id="#1002")),
        calls(call("call_22", "track_shipment", order_id="#1002")),
        text("Hi Ben, the label was unreadable; it was relabelled today and arrives tomorrow."),
        calls(call("call_31", "get_order", order_id="1003")),
        calls(call("call_32", "get_order", order_id="#1003")),
        text("Hi Chloé, your wool throw was delivered."),
        calls(call("call_41", "get_order", order_id="#1004"), call("call_42", "read_policy", topic="refunds")),
        calls(call("call_43", "issue_refund", **refused)),
        calls(call("call_44", "escalate_to_human", order_id="#1004", summary="Kettle failed outside the window.")),
        text("Hi Dev, a colleague will reply within a working day."),
        calls(call("call_51", "get_order", order_id="#1005")),
        calls(call("call_52", "issue_refund", order_id="#1005", amount_usd=249.0, reason="cracked screen")),
        text("Hi Eva, I've refunded $249.00 for your monitor."),
        calls(call("call_61", "get_order", order_id="#1007")),
        calls(call("call_62", "issue_refund", order_id="#1007", amount_usd=389.0, reason="gas lift failed")),
        text("Hi Femi, a supervisor approved your refund of $389.00."),
        calls(call("call_71", "get_order", order_id="#1060")),
        text("Hi Ana, I can't find order #1060: could you check the number, or tell me your email?"),
        calls(call("call_81", "get_customer_orders", email="ben@example.com")),
        text("Hi Ben, your grinder (#1002) and reading glasses (#1234) are both on their way."),
        calls(call("call_91", "get_order", order_id="#1003")),
        calls(call("call_92", "issue_refund", order_id="#1003", amount_usd=64.5, reason="pulled thread")),
        text("Hi Chloé, I've refunded $64.50 for your wool throw."),
    ]


@pytest.mark.crash
def test_the_demo_with_a_real_model_lets_it_drive_and_still_proves_one_refund(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        server.queue(*desk_turns())
        env = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test", "NO_PROXY": "127.0.0.1"}
        demo = keel(tmp_path, "demo", "--model", "openai:test-model", env_extra=env)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "The model is openai:test-model" in out and "The model is scripted" not in out
    assert "the worker was killed (SIGKILL) inside issue_refund" in out
    assert "Proof: refunds for order #1005 in the shop's database: 1." in out
    assert (server.pending, server.unexpected, len(server.requests)) == (0, 0, 25)
    assert "keel approve " in out and " 2.1 --model openai:test-model" in out
    assert "The model changed course by itself" in out and "The model did not run away" in out

    assert "Proof: order #1003 in the shop's database: 1 refund, 1 voided" in out

    runs = journals(tmp_path / ".keel" / "keel.db")
    assert len(runs) == 9
    for task, journal in runs.items():
        assert isinstance(journal[0], RunStarted) and journal[0].model == "openai:test-model"
        rolled_back = "wool throw" in task
        assert journal[-1].kind == "run_ended"
        assert journal[-1].status == ("rolled_back" if rolled_back else "completed")
    corrected = next(j for task, j in runs.items() if "order 1003" in task)
    outcomes = [(e.error.kind if e.error else "ok") for e in corrected if isinstance(e, ToolCallFinished)]
    assert outcomes == ["invalid_arguments", "ok"]
    # the turn after the resume saw the refund's receipt, from the second run of issue_refund (same key)
    [after_resume] = [m for m in server.requests[14].body["messages"] if m.get("tool_call_id") == "call_52"]
    assert json.loads(after_resume["content"])["refund_id"] == "R-1"
    with sqlite3.connect(tmp_path / ".keel" / "demo" / "shop.db") as shop:
        assert shop.execute("SELECT count(*) FROM refunds WHERE order_id = '#1005'").fetchone()[0] == 1
        assert shop.execute("SELECT count(*) FROM refunds WHERE order_id = '#1007'").fetchone()[0] == 1
        assert shop.execute("SELECT count(*) FROM refund_voids").fetchone()[0] == 1


def test_the_demo_needs_a_store_two_processes_share(tmp_path: Path) -> None:
    demo = keel(tmp_path, "demo", "--store", "memory://")

    assert demo.returncode == 2
    assert "its store must be shared between processes: use a SQLite URL" in demo.stderr


def test_the_example_agent_runs_offline_from_the_command_line(tmp_path: Path) -> None:
    result = keel(tmp_path, "run", f"{EXAMPLE}:agent", "Where is order #1234?")

    assert result.returncode == 0, result.stderr
    assert "Hi Ben, your reading glasses (order #1234) shipped on" in result.stdout
    assert (tmp_path / ".keel" / "examples" / "shop.db").exists()
    assert (tmp_path / ".keel" / "keel.db").exists()


def test_the_worker_dies_by_sigkill_after_recording_the_refund(tmp_path: Path) -> None:
    from agentkeel.demo.shop import Shop

    shop = Shop.fresh(tmp_path / "shop.db")
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentkeel.demo.worker",
            "--store",
            f"sqlite:///{tmp_path / 'keel.db'}",
            "--shop",
            str(shop.path),
            "--run-id",
            "r-worker",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode == -signal.SIGKILL, worker.stderr
    assert shop.refund_count("#1005") == 1
    journal = journals(tmp_path / "keel.db")
    [events] = journal.values()
    assert events[-1].kind == "tool_call_started" and events[-1].name == "issue_refund"
