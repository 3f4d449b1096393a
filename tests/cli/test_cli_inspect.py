"""``keel runs`` and ``keel show``: the listing, the tree, JSON, run-id prefixes, plain output when piped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keel_harness import ANSI, Keel

from agentkeel.cli.app import app

FLAKY = """
from agentkeel import Agent, ScriptedModel, ToolContext, call, calls, reply, tool


@tool(retries=2, retry_on=(ConnectionError,), backoff=0.001)
def lookup(ctx: ToolContext, order_id: str) -> dict:
    \"\"\"Look an order up (its service drops the first connection).\"\"\"
    if ctx.attempt == 1:
        raise ConnectionError("connection reset by the order service")
    return {"order_id": order_id, "status": "shipped"}


script = [
    calls(("lookup", {"order_id": 1234}), text="Checking."),
    call("lookup", order_id="#1234"),
    reply("Order #1234 has shipped."),
]
agent = Agent(name="flaky", model=ScriptedModel(script), tools=[lookup])
"""


@pytest.fixture
def flaky(keel: Keel) -> str:
    """The id of a completed run with a rejected call, a retried call and an answer."""
    keel.write("flaky.py", FLAKY)
    result = keel("run", "flaky.py:agent", "Where is order #1234?")
    assert result.exit_code == 0, result.output
    return keel.run_ids()[0]


def test_runs_lists_id_agent_status_steps_tokens_cost_and_age(keel: Keel, flaky: str) -> None:
    keel.mailer()
    assert keel("run", "mailer.py:agent", "mail Ana").exit_code == 0
    interrupted = keel.interrupted_run(agent_ref=f"{keel.root / 'mailer.py'}:agent")
    keel("resume", interrupted)  # pauses it: needs_attention

    result = keel("runs")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "AGENT", "STATUS", "STEPS", "TOKENS", "COST", "AGE", "TASK"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(keel.run_ids())
    assert rows[flaky][1:4] == ["flaky", "completed", "3"]
    assert rows[interrupted][1:4] == ["mailer", "paused(needs_attention)", "1"]
    assert rows[interrupted][4:6] == ["50", "$0.0000"]
    assert rows[flaky][6].endswith("s") and rows[flaky][7] == "ago"  # seconds ago
    # aligned columns: every row's status starts where the header's does
    column = lines[0].index("STATUS")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:])


def test_runs_filters_by_status_and_agent_and_limits(keel: Keel, flaky: str) -> None:
    keel.mailer()
    assert keel("run", "mailer.py:agent", "mail Ana").exit_code == 0
    assert keel("run", "mailer.py:agent", "mail Ben").exit_code == 0

    by_agent = json.loads(keel("runs", "--agent", "mailer", "--json").stdout)
    assert [row["agent"] for row in by_agent] == ["mailer", "mailer"]
    assert by_agent[0]["task"] == "mail Ben"  # most recent first
    assert json.loads(keel("runs", "--status", "failed", "--json").stdout) == []
    assert len(json.loads(keel("runs", "--limit", "1", "--json").stdout)) == 1


def test_runs_json_is_a_list_of_rows(keel: Keel, flaky: str) -> None:
    result = keel("runs", "--json")

    assert result.exit_code == 0
    [row] = json.loads(result.stdout)
    assert row["run_id"] == flaky
    assert (row["status"], row["steps"], row["agent"]) == ("completed", 3, "flaky")
    assert row["tokens"] == row["input_tokens"] + row["output_tokens"] > 0


def test_runs_rejects_an_unknown_status(keel: Keel) -> None:
    result = keel("runs", "--status", "done")

    assert result.exit_code == 2
    assert "use one of running, paused, completed, failed, cancelled" in result.stderr


def test_runs_in_an_empty_store_says_how_to_start_one(keel: Keel) -> None:
    result = keel("runs")

    assert result.exit_code == 0
    assert "no runs yet" in result.stdout


def test_show_draws_each_step_with_its_calls_retries_errors_and_the_end(keel: Keel, flaky: str) -> None:
    result = keel("show", flaky)

    assert result.exit_code == 0
    out = result.stdout
    assert f"run {flaky}  flaky  completed  3 steps" in out
    assert "task: Where is order #1234?" in out
    assert "step 1" in out and "step 2" in out and "step 3" in out
    assert "“Checking.”" in out
    assert "1.1 lookup (not run)" in out
    assert "invalid_arguments: Invalid arguments for lookup: order_id was 1234" in out
    assert '2.1 lookup {"order_id": "#1234"}' in out
    assert "attempt 1 failed exception builtins.ConnectionError" not in out  # builtins are named plainly
    assert "attempt 1 failed exception ConnectionError: lookup failed with ConnectionError" in out
    assert '→ {"order_id": "#1234", "status": "shipped"} · 2 attempts' in out
    assert "ended completed" in out
    assert out.rstrip().endswith("Order #1234 has shipped.")
    # the retry sits under the call, the call under its step
    lines = out.splitlines()
    step2 = next(i for i, line in enumerate(lines) if "step 2" in line)
    call = next(i for i, line in enumerate(lines) if "2.1 lookup" in line)
    retry = next(i for i, line in enumerate(lines) if "attempt 1 failed" in line)
    assert step2 < call < retry


def test_show_json_dumps_every_event(keel: Keel, flaky: str) -> None:
    result = keel("show", flaky, "--json")

    assert result.exit_code == 0
    events = json.loads(result.stdout)
    assert [e["kind"] for e in events] == [
        "run_started",
        "model_responded",
        "tool_call_finished",
        "model_responded",
        "tool_call_started",
        "tool_call_retrying",
        "tool_call_finished",
        "model_responded",
        "run_ended",
    ]
    assert events[0]["run_id"] == flaky
    assert events[5]["error"]["exception_type"] == "ConnectionError"


def test_show_marks_an_interrupted_call(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref="")

    out = keel("show", run_id).stdout

    assert "1.1 send_email" in out
    assert "no outcome journaled: still running, or its process died" in out


def test_a_unique_prefix_finds_the_run(keel: Keel, flaky: str) -> None:
    result = keel("show", flaky[:12], "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["run_id"] == flaky


def test_an_ambiguous_prefix_lists_the_candidates(keel: Keel, flaky: str) -> None:
    keel.mailer()
    assert keel("run", "mailer.py:agent", "mail Ana").exit_code == 0
    ids = keel.run_ids()
    first, second = ids
    prefix = first[: next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)]
    assert prefix  # ids start with the time: two runs a moment apart share a prefix

    for command in (["show", prefix], ["resume", prefix], ["cancel", prefix], ["resolve", prefix, "1.1", "--skip"]):
        result = keel(*command)
        assert result.exit_code == 2, command
        assert f"{prefix!r} is the start of 2 run ids" in result.stderr
        assert all(run_id in result.stderr for run_id in ids)


def test_an_unknown_run_exits_5(keel: Keel) -> None:
    for command in (["show", "zzz"], ["resume", "zzz"], ["cancel", "zzz"], ["resolve", "zzz", "1.1", "--skip"]):
        result = keel(*command)
        assert result.exit_code == 5, command
        assert "no run 'zzz'" in result.stderr
        assert "keel runs" in result.stderr


def test_piped_output_has_no_ansi_codes(keel: Keel, flaky: str) -> None:
    outputs = [keel("runs"), keel("show", flaky), keel("show", "nope"), keel("run", "x.py:agent", "t")]

    for result in outputs:
        assert result.stdout or result.stderr
        assert not ANSI.search(result.output), result.output


def test_a_forced_terminal_gets_colour_and_a_table(keel: Keel, flaky: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counterpart of the test above: the same commands do style a terminal's output."""
    monkeypatch.setenv("FORCE_COLOR", "1")

    runs = keel("runs")
    error = keel("show", "nope")

    assert ANSI.search(runs.stdout)
    assert "─" in runs.stdout  # a Rich table's rule
    assert ANSI.search(error.stderr)


def test_help_documents_the_exit_codes() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})

    assert result.exit_code == 0
    for line in ("0  completed", "1  the run failed", "3  paused", "4  cancelled", "5  busy"):
        assert line in result.stdout


def test_an_internal_error_is_one_line_with_a_hint(keel: Keel, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr("agentkeel.cli.app.find_run", broken)
    result = keel("show", "anything")

    assert result.exit_code == 70
    assert result.stderr.strip().splitlines() == [
        "error: internal error: RuntimeError: the disk is on fire (a bug in agentkeel; KEEL_DEBUG=1 shows the "
        "traceback)"
    ]


def test_docs_list_the_same_exit_codes() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |"):
        assert code in docs


RATE_LIMITED = """
from agentkeel import Agent, ModelError, ModelRequest, ModelResponse, RetryPolicy, reply


class RateLimited:
    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls == 1:
            raise ModelError("429 slow down", retryable=True, kind="rate_limit", retry_after_s=0.0)
        return reply("Fine now.")


agent = Agent(name="limited", model=RateLimited(), model_retry=RetryPolicy(retries=2, backoff_s=0.0))
"""


def test_show_draws_a_model_retry_and_a_call_run_again_after_a_crash(keel: Keel) -> None:
    keel.write("limited.py", RATE_LIMITED)
    assert keel("run", "limited.py:agent", "hello").exit_code == 0
    shown = keel("show", keel.run_ids()[0])
    assert "step 1: model attempt 1 failed rate_limit: 429 slow down · retrying in 0s" in shown.output

    idempotent = keel.write("mailer_idem.py", keel_mailer_idempotent())
    run_id = keel.interrupted_run(agent_ref=f"{idempotent}:agent")
    assert keel("resume", run_id).exit_code == 0
    shown = keel("show", run_id)
    assert "↺ interrupted: runs again as attempt 1 (idempotent, same key)" in shown.output


def keel_mailer_idempotent() -> str:
    from keel_harness import MAILER

    return MAILER.replace('@tool(effect="write")', '@tool(effect="write", idempotent=True)')
