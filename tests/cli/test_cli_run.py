"""``keel run``: loading an agent from a file or a module, running it, the outcome and its exit code."""

from __future__ import annotations

import json
from pathlib import Path

from keel_harness import Keel

from agentkeel.core.events import RunStarted

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_desk.py"

LOOPING = """
from agentkeel import Agent, ScriptedModel, call, tool


@tool
def ping() -> str:
    \"\"\"Ping.\"\"\"
    return "pong"


agent = Agent(name="looper", model=ScriptedModel(lambda request: call("ping")), tools=[ping], max_steps=2)
"""


def test_run_the_example_agent_answers_and_journals_the_run(keel: Keel) -> None:
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1234?")

    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert "reading glasses (order #1234) shipped" in result.stdout
    [run_id] = keel.run_ids()
    assert run_id in result.stdout
    first = keel.events(run_id)[0]
    assert isinstance(first, RunStarted)
    assert first.agent_ref == f"{EXAMPLE}:agent"  # absolute, so that resume works from any directory


def test_run_records_an_absolute_reference_for_a_relative_path(keel: Keel) -> None:
    keel.mailer()
    result = keel("run", "mailer.py:agent", "mail Ana")

    assert result.exit_code == 0, result.output
    first = keel.events(keel.run_ids()[0])[0]
    assert first.agent_ref == f"{keel.root / 'mailer.py'}:agent"
    assert keel.outbox() == [f"{first.run_id}:1.1 ana@example.com"]


def test_run_loads_an_agent_from_a_module_path(keel: Keel) -> None:
    keel.write("desk_module.py", LOOPING.replace("max_steps=2", "max_steps=3"))
    result = keel("run", "desk_module:agent", "ping until it stops")

    assert result.exit_code == 1, result.output  # the agent never answers: failed(max_steps_exceeded)
    first = keel.events(keel.run_ids()[0])[0]
    assert first.agent_ref == "desk_module:agent"


def test_run_json_prints_the_result_as_json(keel: Keel) -> None:
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1005?", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["run_id"] == keel.run_ids()[0]
    assert data["steps"] == 2
    assert data["usage"]["total_tokens"] == data["usage"]["input_tokens"] + data["usage"]["output_tokens"] > 0
    assert "was delivered on" in data["output"]


def test_a_failed_run_exits_1_with_its_reason(keel: Keel) -> None:
    keel.write("looper.py", LOOPING)
    result = keel("run", "looper.py:agent", "ping")

    assert result.exit_code == 1
    assert "failed(max_steps_exceeded)" in result.stdout
    assert "Agent(max_steps=2)" in result.stdout


def test_a_missing_file_is_a_one_line_usage_error(keel: Keel) -> None:
    result = keel("run", "nowhere.py:agent", "task")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no file 'nowhere.py'" in result.stderr
    assert "FILE.py:NAME" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_path_without_py_suggests_the_file(keel: Keel) -> None:
    keel.mailer()
    result = keel("run", "./mailer:agent", "task")

    assert result.exit_code == 2
    assert "did you mean ./mailer.py?" in result.stderr


def test_a_missing_name_lists_the_agents_in_the_file(keel: Keel) -> None:
    keel.mailer()
    result = keel("run", "mailer.py:agnet", "task")

    assert result.exit_code == 2
    assert "mailer.py has no 'agnet'" in result.stderr
    assert "write mailer.py:agent" in result.stderr


def test_a_name_that_is_not_an_agent_says_what_it_is(keel: Keel) -> None:
    keel.mailer()
    result = keel("run", "mailer.py:send_email", "task")

    assert result.exit_code == 2
    assert "'send_email' in mailer.py is a Tool, not an Agent" in result.stderr
    assert "the agents in it: agent" in result.stderr


def test_a_reference_without_a_name_shows_the_form(keel: Keel) -> None:
    result = keel("run", "mailer.py", "task")

    assert result.exit_code == 2
    assert "write FILE.py:NAME or module:NAME" in result.stderr


def test_a_missing_module_is_a_usage_error(keel: Keel) -> None:
    result = keel("run", "no_such_module_here:agent", "task")

    assert result.exit_code == 2
    assert "no module 'no_such_module_here'" in result.stderr


def test_a_file_that_raises_while_loading_names_the_error_and_the_line(keel: Keel) -> None:
    keel.write("broken.py", "x = 1\nraise ValueError('the config is missing')\n")
    result = keel("run", "broken.py:agent", "task")

    assert result.exit_code == 2
    assert "loading broken.py failed: ValueError: the config is missing" in result.stderr
    assert "broken.py:2" in result.stderr
    assert "Traceback" not in result.output


def test_a_syntax_error_names_the_line(keel: Keel) -> None:
    keel.write("typo.py", "agent = (\n")
    result = keel("run", "typo.py:agent", "task")

    assert result.exit_code == 2
    assert "typo.py has a syntax error at line 1" in result.stderr


def test_an_agent_misconfigured_in_its_file_reports_the_configuration_error(keel: Keel) -> None:
    keel.write("remote.py", "from agentkeel import Agent\nagent = Agent(name='r', model='nosuch:model')\n")
    result = keel("run", "remote.py:agent", "task")

    assert result.exit_code == 2
    assert "loading remote.py: model 'nosuch:model': unknown provider 'nosuch'" in result.stderr


def test_an_empty_task_is_a_usage_error(keel: Keel) -> None:
    result = keel("run", f"{EXAMPLE}:agent", "   ")

    assert result.exit_code == 2
    assert "the task must be a non-empty string" in result.stderr
    assert keel.run_ids() == []


def test_a_bad_store_url_is_a_usage_error(keel: Keel) -> None:
    result = keel("run", f"{EXAMPLE}:agent", "Where is #1234?", "--store", "mysql://db/keel")

    assert result.exit_code == 2
    assert "unknown scheme 'mysql'" in result.stderr


def test_the_store_option_wins_over_the_environment(keel: Keel, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = keel("run", f"{EXAMPLE}:agent", "Where is order #1234?", "--store", f"sqlite:///{other}")

    assert result.exit_code == 0, result.output
    assert other.exists()
    assert keel.run_ids() == []  # nothing in the KEEL_STORE store
