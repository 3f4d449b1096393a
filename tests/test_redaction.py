"""Secrets never reach a journal, a run listing, a log or the console: planted in the task, the model's text, tool
arguments, tool results and errors, a provider's error message and a secret-typed tool parameter, none of them is
in the store's file or in what `keel show` prints, and each is replaced by the marker."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from agentkeel import Agent, ModelResponse, RunResult, ScriptedModel, ToolCall, ToolError, call, reply, tool
from agentkeel.cli.app import app
from agentkeel.core.events import Event, ToolCallFinished
from agentkeel.redaction import MARKER, Redactor, add_secret, configure_redaction, logger
from agentkeel.stores.sqlite import SQLiteStore

OPENAI_KEY = "sk-proj-4f9Tq2LmZx8Rw1Vb7Nc3Kd6Hs0Jy5Pa"
AWS_KEY = "AKIAQ3EGVZ7MXK2PLR4T"
PASSWORD = "correct horse battery staple"  # declared secret by its parameter's type
CARD = "4111-1111-1111-1111"  # matched by the application's own pattern
TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PLANTED = (OPENAI_KEY, AWS_KEY, PASSWORD, CARD, TOKEN)


@pytest.fixture(autouse=True)
def fresh_redactor() -> Iterator[None]:
    configure_redaction(patterns=[r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"])
    yield
    configure_redaction()


def test_built_in_shapes_the_environment_and_values_are_replaced_in_text_and_json() -> None:
    red = Redactor(values=["hunter2hunter2"])
    text = f"key {OPENAI_KEY}, aws {AWS_KEY}, Authorization: Bearer abcdefghijklmnop1234, dsn postgresql://u:pw@h/db"
    assert (
        red.text(text) == f"key {MARKER}, aws {MARKER}, Authorization: Bearer {MARKER}, dsn postgresql://{MARKER}@h/db"
    )
    assert red.text("nothing to hide in here: sk-short, ask-me") == "nothing to hide in here: sk-short, ask-me"
    encoded = json.dumps({"a": 'say "hunter2hunter2"', "b": [OPENAI_KEY]}).encode()
    assert json.loads(red.json_bytes(encoded)) == {"a": f'say "{MARKER}"', "b": [MARKER]}


def test_a_value_with_characters_json_escapes_is_found_inside_json_too() -> None:
    red = Redactor(patterns=[], values=['pa"ss\\word!'])
    encoded = json.dumps({"note": 'the password is pa"ss\\word! ok'}).encode()
    assert json.loads(red.json_bytes(encoded)) == {"note": f"the password is {MARKER} ok"}


def test_short_values_are_ignored_and_a_bad_pattern_is_a_clear_error() -> None:
    red = Redactor(patterns=[], values=["abc"])
    assert red.text("abc abc") == "abc abc"
    with pytest.raises(ValueError, match="not a regular expression"):
        Redactor(patterns=["(unclosed"])


def test_the_environment_s_secret_variables_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-live-0123456789")
    monkeypatch.setenv("ACME_REGION", "eu-west-1-long-enough")
    red = configure_redaction()
    assert red.text("acme-live-0123456789 in eu-west-1-long-enough") == f"{MARKER} in eu-west-1-long-enough"


def test_log_records_of_the_package_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    add_secret("s3cr3t-value-42")
    log = logger("agentkeel.test")
    with caplog.at_level(logging.INFO, logger="agentkeel.test"):
        log.info("handler failed: %s", f"login with s3cr3t-value-42 and {OPENAI_KEY}")
    assert caplog.records[-1].getMessage() == f"handler failed: login with {MARKER} and {MARKER}"


def secret_tools(seen: list[str]) -> list[Any]:
    @tool
    def read_config(name: str) -> dict[str, str]:
        """Read a service's configuration."""
        return {"service": name, "api_key": OPENAI_KEY, "aws": AWS_KEY}

    @tool
    def charge(card: str, amount: float) -> str:
        """Charge a card."""
        raise ToolError(f"card {card} declined; retry with token {TOKEN}")

    @tool(effect="write", idempotent=True)
    def login(user: str, password: SecretStr) -> str:
        """Log in to the vendor portal."""
        seen.append(password.get_secret_value())
        return f"logged in as {user}"

    return [read_config, charge, login]


async def planted_run(path: Path, seen: list[str]) -> RunResult:
    """A run that meets a secret at every turn."""
    store = SQLiteStore(path)
    model = ScriptedModel(
        [
            call("read_config", name="billing"),
            ModelResponse(
                text=f"The key is {OPENAI_KEY}; charging now.",
                tool_calls=(ToolCall(id="", name="charge", arguments={"card": CARD, "amount": 5.0}),),
                stop_reason="tool_use",
            ),
            call("login", user="ops", password=PASSWORD),
            reply(f"Done. For the record: {AWS_KEY} and {CARD}."),
        ]
    )
    agent = Agent(name="redact", model=model, tools=secret_tools(seen), store=store)
    result = await agent.run(f"Use {OPENAI_KEY} to check billing, then log in.")
    await store.close()
    return result


def test_planted_secrets_reach_neither_the_sqlite_file_nor_keel_show(tmp_path: Path) -> None:
    seen: list[str] = []
    path = tmp_path / "keel.db"
    result = asyncio.run(planted_run(path, seen))

    assert result.status == "completed"
    assert seen == [PASSWORD]  # the tool got the real value
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("keel.db-*"))
    for secret in PLANTED:
        assert secret.encode() not in raw, f"{secret} reached the database file"
    assert MARKER.encode() in raw

    with sqlite3.connect(path) as db:
        task = db.execute("SELECT task FROM keel_runs").fetchone()[0]
    assert task == f"Use {MARKER} to check billing, then log in."

    journal = asyncio.run(load(path, result.run_id))
    failed = [e for e in journal if isinstance(e, ToolCallFinished) and e.error is not None]
    assert failed and MARKER in failed[0].content  # the error's token, replaced

    for command in (["show", result.run_id], ["show", result.run_id, "--json"], ["runs"]):
        shown = CliRunner().invoke(app, [*command, "--store", f"sqlite:///{path}"])
        assert shown.exit_code == 0, shown.output
        assert MARKER in shown.output
        for secret in PLANTED:
            assert secret not in shown.output, f"keel {' '.join(command)} printed {secret}"


async def load(path: Path, run_id: str) -> list[Event]:
    store = SQLiteStore(path)
    try:
        return await store.load(run_id)
    finally:
        await store.close()


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the engine catches it)."""


async def test_a_secret_argument_that_did_not_survive_a_crash_is_asked_for_again(tmp_path: Path, clock: Any) -> None:
    store = SQLiteStore(tmp_path / "keel.db", clock=clock)
    received: list[str] = []
    crash = [True]

    @tool(effect="write", idempotent=True)
    async def login(user: str, password: SecretStr) -> str:
        """Log in to the vendor portal."""
        if crash[0]:
            crash[0] = False
            raise Crash()  # the process dies while the call runs
        received.append(password.get_secret_value())
        return f"logged in as {user}"

    script = [call("login", user="ops", password=PASSWORD), call("login", user="ops", password=PASSWORD), reply("in")]
    agent = Agent(name="portal", model=ScriptedModel(script), tools=[login], store=store, lease_s=30.0)
    with pytest.raises(Crash):
        await agent.run("Log in to the portal.", run_id="r-secret")
    clock.now += 31.0  # the dead process's lease runs out

    result = await agent.resume("r-secret")
    journal = await store.load("r-secret")
    await store.close()

    assert result.status == "completed"
    assert received == [PASSWORD]  # never the marker: the second call, with the value given again
    refused = next(e for e in journal if isinstance(e, ToolCallFinished))
    assert refused.error is not None and refused.error.kind == "invalid_arguments"
    assert "'password' is secret" in refused.content and "Call login again with 'password'" in refused.content
