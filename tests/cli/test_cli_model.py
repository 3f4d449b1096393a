"""``--model``: ``keel run``, ``keel resume`` and ``keel resolve`` with a real provider in place of the agent's
model, against a local OpenAI-compatible server (``OPENAI_BASE_URL``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from keel_harness import Keel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from openai_server import FakeOpenAI, calls, function_call, text, unauthorized

from agentkeel.core.events import RunStarted

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_desk.py"
ANSWER = "Hi Ben, your reading glasses (order #1234) are on their way with Parcelo."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    for name in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
        yield fake
    assert fake.unexpected == 0, f"{fake.unexpected} request(s) more than the test expected"


def test_run_the_example_agent_with_an_openai_compatible_model(keel: Keel, server: FakeOpenAI) -> None:
    server.queue(calls(function_call("call_1", "get_order", {"order_id": "#1234"})), text(ANSWER))
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1234?", "--model", "openai:test-model")

    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert ANSWER in result.stdout
    first = keel.events(keel.run_ids()[0])[0]
    assert isinstance(first, RunStarted) and first.model == "openai:test-model"
    sent = server.requests[1].body
    assert sent["model"] == "test-model"
    [tool_result] = [m for m in sent["messages"] if m["role"] == "tool"]
    assert tool_result["tool_call_id"] == "call_1"
    assert json.loads(tool_result["content"])["order_id"] == "#1234"
    assert server.requests[0].headers["authorization"] == "Bearer no-key-needed"  # a local server needs no key


def test_a_refused_key_fails_the_run_and_says_which_variable_to_set(keel: Keel, server: FakeOpenAI) -> None:
    server.queue(unauthorized())
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1234?", "--model", "openai:test-model")

    assert result.exit_code == 1
    assert "failed(model_error)" in result.stdout
    assert "OPENAI_API_KEY" in result.stdout


def test_an_unknown_provider_is_a_usage_error_before_anything_runs(keel: Keel) -> None:
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1234?", "--model", "acme:large")

    assert result.exit_code == 2
    assert "unknown provider 'acme'" in result.stderr
    assert keel.run_ids() == []


def test_resume_and_resolve_continue_a_run_with_the_given_model(keel: Keel, server: FakeOpenAI) -> None:
    mailer = keel.mailer()
    resumed = keel.interrupted_run(agent_ref=mailer)
    resolved = keel.interrupted_run(agent_ref=mailer)
    server.queue(text("Sent, and the model says so."), text("Recorded and sent."))
    for run_id in (resumed, resolved):  # recovery pauses them for a person before any model call
        assert keel("resume", run_id, "--model", "openai:test-model").exit_code == 3

    recorded = keel("resolve", resumed, "1.1", "--result", '{"sent": true}', "--no-resume")
    assert recorded.exit_code == 0, recorded.output
    outcome = keel("resume", resumed, "--model", "openai:test-model")
    assert outcome.exit_code == 0, outcome.output
    assert "Sent, and the model says so." in outcome.stdout

    outcome = keel("resolve", resolved, "1.1", "--result", '{"sent": true}', "--model", "openai:test-model")
    assert outcome.exit_code == 0, outcome.output
    assert "Recorded and sent." in outcome.stdout

    for request in server.requests:
        [tool_result] = [m for m in request.body["messages"] if m["role"] == "tool"]
        assert (tool_result["tool_call_id"], json.loads(tool_result["content"])) == ("call_1_1", {"sent": True})
    assert keel.outbox() == []  # the interrupted send_email never ran again: a person said it happened


def test_without_the_openai_sdk_the_error_names_the_extra(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "sys.modules['openai'] = None  # as if it were not installed\n"
        "from agentkeel.cli.app import main\n"
        f"sys.argv = ['keel', 'run', {str(EXAMPLE) + ':agent'!r}, 'Where is #1234?', '--model', 'openai:gpt-4.1']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: the openai provider needs its SDK: pip install 'agentkeel[openai]'"
