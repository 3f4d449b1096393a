"""``keel kill`` and ``keel switches``: switches set, lifted and listed; a killed agent's run refused; sentences."""

from __future__ import annotations

import json

import pytest
from keel_harness import ANSI, Keel


def test_kill_disables_a_tool_and_switches_lists_it(keel: Keel) -> None:
    result = keel("kill", "--tool", "refund", "--reason", "fraud investigation", "--by", "ops@desk")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("disabled tool refund (by ops@desk: fraud investigation): its calls return")
    assert "`keel kill --clear --tool refund` enables it again" in result.stdout
    listed = keel("switches")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["SCOPE", "TARGET", "BY", "AGE", "REASON"]
    assert lines[1].split()[:3] == ["tool", "refund", "ops@desk"]
    assert lines[1].split()[4] == "ago" and lines[1].endswith("fraud investigation")
    assert not ANSI.search(listed.stdout)  # piped: plain text


def test_switches_json_lists_every_switch_in_force(keel: Keel) -> None:
    keel("kill", "--agent", "support", "--reason", "bad prompt", "--by", "lead")
    keel("kill", "--all", "--reason", "provider outage", "--by", "sre")

    rows = json.loads(keel("switches", "--json").stdout)

    assert [(row["scope"], row["target"], row["by"], row["reason"]) for row in rows] == [
        ("agent", "support", "lead", "bad prompt"),
        ("all", "", "sre", "provider outage"),
    ]
    assert all(isinstance(row["at"], float) for row in rows)
    assert "(everything)" in keel("switches").stdout


def test_by_defaults_to_the_os_user(keel: Keel) -> None:
    keel("kill", "--tool", "refund", "--reason", "fraud")
    [row] = json.loads(keel("switches", "--json").stdout)
    assert row["by"].strip()


def test_no_switches_says_how_to_set_one(keel: Keel) -> None:
    result = keel("switches")
    assert result.exit_code == 0
    assert "no kill switches in force: `keel kill --tool NAME | --agent NAME | --all --reason TEXT`" in result.stdout
    assert json.loads(keel("switches", "--json").stdout) == []


def test_a_killed_agent_starts_no_run_until_the_switch_is_cleared(keel: Keel) -> None:
    keel.mailer()
    killed = keel("kill", "--agent", "mailer", "--reason", "sends twice", "--by", "ops@desk")
    assert "its runs that have not ended stop before their next call and end cancelled" in killed.stdout

    refused = keel("run", "mailer.py:agent", "mail Ana")

    assert refused.exit_code == 4
    assert "agent 'mailer' is disabled by ops@desk since" in refused.stderr
    assert "(sends twice), so no new run of 'mailer' starts; `keel kill --clear --agent mailer`" in refused.stderr
    assert "Traceback" not in refused.output and keel.run_ids() == []

    cleared = keel("kill", "--clear", "--agent", "mailer")
    assert cleared.exit_code == 0
    assert cleared.stdout.startswith("enabled agent mailer again: new runs start")
    assert keel("run", "mailer.py:agent", "mail Ana").exit_code == 0
    assert keel("switches", "--json").stdout.strip() == "[]"


def test_kill_all_refuses_every_agent(keel: Keel) -> None:
    keel.mailer()
    keel("kill", "--all", "--reason", "provider outage", "--by", "sre")
    refused = keel("run", "mailer.py:agent", "mail Ana")
    assert refused.exit_code == 4
    assert "every agent is disabled by sre" in refused.stderr and "`keel kill --clear --all`" in refused.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--reason", "x"), "choose exactly one of --tool NAME, --agent NAME or --all; you gave none"),
        (("--tool", "a", "--agent", "b", "--reason", "x"), "you gave --tool a and --agent b"),
        (("--tool", "a", "--all", "--reason", "x"), "you gave --tool a and --all"),
        (("--tool", "", "--reason", "x"), "--tool needs a name, e.g. --tool refund"),
        (("--tool", "refund"), "say why with --reason TEXT"),
        (("--clear", "--tool", "refund"), "no kill switch on tool refund is in force: `keel switches` lists"),
    ],
)
def test_kill_explains_what_to_type(keel: Keel, args: tuple[str, ...], said: str) -> None:
    result = keel("kill", *args)

    assert result.exit_code == 2
    assert said in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_the_commands_are_listed_in_help(keel: Keel) -> None:
    out = keel("--help").stdout
    assert "kill" in out and "switches" in out
