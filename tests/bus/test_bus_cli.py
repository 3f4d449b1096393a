"""``keel bus``: topics, lag and dead letters of a bus, as text and as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agentkeel.bus import SQLiteBus
from agentkeel.cli.app import app


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
