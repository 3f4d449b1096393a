"""``keel bus``: topics, lag and dead letters of a bus, as text and as JSON."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentkeel.bus import SQLiteBus
from agentkeel.cli.app import app
from agentkeel.gc_tuning import YOUNG_THRESHOLD


def keel(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def bus_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite bus with one dead letter on ``invoices``, one message pending and one not yet delivered."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEL_BUS", raising=False)
    path = tmp_path / "bus.db"

    async def fill() -> None:
        bus = SQLiteBus(path)
        for n in range(3):
            await bus.publish("invoices", {"n": n})
        first = await bus.consume("invoices", "parsers", "p1")
        assert first is not None
        await bus.dead_letter(first, "parsers", "ValueError: no invoice number")
        await bus.consume("invoices", "parsers", "p1")
        await bus.publish("alerts", "disk full")
        await bus.close()

    asyncio.run(fill())
    return f"sqlite:///{path}"


def test_keel_bus_lists_topics_with_pending_lag_and_dead(bus_url: str) -> None:
    result = keel("bus", "--bus", bus_url)
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert lines == [
        ["TOPIC", "GROUP", "MESSAGES", "PENDING", "LAG", "DEAD"],
        ["alerts", "-", "1", "0", "0", "0"],
        ["invoices", "parsers", "3", "1", "1", "1"],
    ]
    rows = json.loads(keel("bus", "--bus", bus_url, "--json").output)
    assert rows[1] == {"topic": "invoices", "group": "parsers", "messages": 3, "pending": 1, "lag": 1, "dead": 1}


def test_keel_bus_dead_shows_each_dead_letter_with_its_error(bus_url: str) -> None:
    result = keel("bus", "--bus", bus_url, "--dead", "invoices")
    assert result.exit_code == 0, result.output
    assert "group parsers  after 1 attempt(s)" in result.output
    assert "error: ValueError: no invoice number" in result.output
    assert 'payload: {"n": 0}' in result.output
    [letter] = json.loads(keel("bus", "--bus", bus_url, "--dead", "invoices", "--json").output)
    assert letter["headers"]["error"] == "ValueError: no invoice number"
    assert keel("bus", "--bus", bus_url, "--dead", "alerts").output.strip() == "no dead letters on alerts"


def test_keel_bus_on_an_empty_bus_and_a_bad_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEL_BUS", raising=False)
    assert keel("bus").output.strip() == "no topics yet on sqlite:///.keel/bus.db"
    result = keel("bus", "--bus", "kafka://broker")
    assert result.exit_code != 0
    assert "unknown scheme 'kafka'" in result.output


EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_publish_then_work_runs_the_chain_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's agents keep their runs in ./.keel/keel.db
    monkeypatch.delenv("KEEL_BUS", raising=False)
    url = f"sqlite:///{tmp_path / 'chain.db'}"

    sent = keel("bus", "publish", "research.requested", "Why does the sea have tides?", "--bus", url, "--json")
    assert sent.exit_code == 0, sent.output
    request = json.loads(sent.output)
    assert (request["topic"], request["payload"]) == ("research.requested", "Why does the sea have tides?")

    served = keel("bus", "work", f"{EXAMPLES / 'bus_chain.py'}:routes", "--until-idle", "2", "--bus", url)
    assert served.exit_code == 0, served.output
    assert "serving research.requested → researcher → research.done" in served.output
    assert "handled 4 message(s)" in served.output
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # a server tunes the collector for its many runs

    async def final() -> list[Any]:
        bus = SQLiteBus(tmp_path / "chain.db")
        try:
            message = await bus.consume("validated", "reader", "me")
            return [message.correlation_id, message.payload["output"]] if message else []
        finally:
            await bus.close()

    correlation, output = asyncio.run(final())
    assert correlation == request["correlation_id"]  # the four replies kept the request's piece of work
    assert output.startswith("APPROVED") and "moon" in output

    topics = {(row["topic"], row["group"]): row for row in json.loads(keel("bus", "--bus", url, "--json").output)}
    for topic, group in [("research.requested", "researcher"), ("edited.done", "validator")]:
        assert (topics[(topic, group)]["pending"], topics[(topic, group)]["lag"]) == (0, 0)


def test_publish_reads_json_or_text_and_refuses_a_bad_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    structured = json.loads(keel("bus", "publish", "orders", '{"id": 7}', "--bus", url, "--json").output)
    assert structured["payload"] == {"id": 7}
    joined = keel("bus", "publish", "orders", "plain words", "--bus", url, "--correlation-id", "work-1", "--json")
    assert json.loads(joined.output)["correlation_id"] == "work-1"
    bad = keel("bus", "publish", "orders", "x", "--header", "novalue", "--bus", url)
    assert bad.exit_code == 2 and "--header takes KEY=VALUE" in bad.output


def test_work_names_what_is_wrong_with_a_routes_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    missing = keel("bus", "work", f"{EXAMPLES / 'bus_chain.py'}:nothing", "--until-idle", "1", "--bus", url)
    assert missing.exit_code == 2 and "has no 'nothing'" in missing.output
    wrong = keel("bus", "work", f"{EXAMPLES / 'bus_chain.py'}:STAGES", "--until-idle", "1", "--bus", url)
    assert wrong.exit_code == 2 and "not a list of Route objects" in wrong.output


def test_dead_letters_are_shown_without_the_secrets_they_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    key = "sk-proj-Zq81mXv02LpW7tYc4Rb9Kd3Hs6Jn5Fa"
    path = tmp_path / "bus.db"

    async def fill() -> None:
        bus = SQLiteBus(path)
        await bus.publish("invoices", {"note": f"retry with {key}"})
        message = await bus.consume("invoices", "parsers", "p1")
        assert message is not None
        await bus.dead_letter(message, "parsers", f"AuthError: key {key} refused")
        await bus.close()

    asyncio.run(fill())
    for extra in ([], ["--json"]):
        shown = keel("bus", "--dead", "invoices", "--bus", f"sqlite:///{path}", *extra)
        assert shown.exit_code == 0, shown.output
        assert key not in shown.output and "[REDACTED]" in shown.output


def test_trim_removes_old_settled_messages_and_says_what_it_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEL_BUS", raising=False)
    path = tmp_path / "bus.db"
    url = f"sqlite:///{path}"
    month_ago = time.time() - 30 * 86_400

    async def fill() -> None:
        bus = SQLiteBus(path, clock=lambda: month_ago)  # a month of history
        for n in range(3):
            await bus.publish("invoices", {"n": n})
        first = await bus.consume("invoices", "parsers", "p1")
        assert first is not None
        await bus.dead_letter(first, "parsers", "ValueError: no invoice number")
        second = await bus.consume("invoices", "parsers", "p1")
        assert second is not None
        await bus.ack(second, "parsers")
        await bus.consume("invoices", "parsers", "p1")  # the third stays pending
        await bus.publish("alerts", "disk full")  # nobody reads alerts yet
        await bus.close()

    asyncio.run(fill())
    result = keel("bus", "trim", "--older-than", "7d", "--bus", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("removed 2 messages, 2 handled records from before ")
    assert lines[1].startswith("kept 2 older messages still needed: pending, not yet delivered")
    assert "never removed, whatever their age" in lines[1]
    assert lines[2] == "dead letters kept: --dead removes those older than the cut-off too"
    assert len(json.loads(keel("bus", "--bus", url, "--dead", "invoices", "--json").output)) == 1

    trimmed = json.loads(keel("bus", "trim", "--older-than", "7d", "--dead", "--bus", url, "--json").output)
    assert {key: trimmed[key] for key in ("messages", "handled", "dead_letters", "kept")} == {
        "messages": 0,
        "handled": 0,
        "dead_letters": 1,
        "kept": 2,
    }
    assert trimmed["before"] == pytest.approx(time.time() - 7 * 86_400, abs=60)
    rows = json.loads(keel("bus", "--bus", url, "--json").output)
    assert [(row["topic"], row["messages"], row["pending"], row["lag"], row["dead"]) for row in rows] == [
        ("alerts", 1, 0, 0, 0),
        ("invoices", 1, 1, 0, 0),
    ]


def test_trim_refuses_an_age_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = keel("bus", "trim", "--older-than", "a week", "--bus", f"sqlite:///{tmp_path / 'bus.db'}")
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --older-than takes a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time "
        "(2025-06-01, 2025-06-01T09:30, 2025-06-01T09:30+02:00): got 'a week'"
    ]
    assert not (tmp_path / "bus.db").exists()  # refused before opening the bus
