"""``keel resume``, ``keel resolve`` and ``keel cancel``: continuing runs, a person's decisions, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from keel_harness import MAILER, Keel

from agentkeel.core.events import RunResumed, ToolCallFinished

CRASHING_MAILER = MAILER.replace(
    '        box.write(f"{ctx.idempotency_key} {to}\\n")\n',
    '        box.write(f"{ctx.idempotency_key} {to}\\n")\n'
    "    if len(OUTBOX.read_text().splitlines()) == 1:  # the first email ever: the process dies right after it\n"
    "        import os, signal\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n",
)


@pytest.mark.crash
def test_an_interrupted_write_pauses_for_a_person_and_resolve_completes_it(keel: Keel) -> None:
    assert CRASHING_MAILER != MAILER
    keel.write("mailer.py", CRASHING_MAILER)
    env = {**os.environ, "KEEL_STORE": keel.store_url}
    killed = subprocess.run(
        [sys.executable, "-m", "agentkeel.cli", "run", "mailer.py:agent", "mail Ana"],
        cwd=keel.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [run_id] = keel.run_ids()
    assert len(keel.outbox()) == 1  # the email went out; the journal never heard of it

    busy = keel("resume", run_id)  # the dead process's lease has not expired
    assert busy.exit_code == 5
    assert f"run {run_id} is being driven by" in busy.stderr

    keel.expire_leases(run_id)
    paused = keel("resume", run_id[:13])
    assert paused.exit_code == 3
    assert "paused(needs_attention)" in paused.stdout
    assert 'call 1.1: send_email {"to": "ana@example.com", "body": "hi"}' in paused.stdout
    assert f"keel resolve {run_id} 1.1 --result JSON | --retry | --skip" in paused.stdout
    assert keel("resume", run_id).exit_code == 3  # still waiting, and it lets go of the run each time

    done = keel("resolve", run_id, "1.1", "--result", '{"sent": true}')
    assert done.exit_code == 0, done.output
    assert "completed" in done.stdout and "Sent." in done.stdout
    assert "recorded: call 1.1 (send_email) marked done with the given result" in done.stderr
    assert len(keel.outbox()) == 1  # nobody sent it twice
    finished = [e for e in keel.events(run_id) if isinstance(e, ToolCallFinished)]
    assert [(e.call, e.result, bool(e.resolved_by)) for e in finished] == [("1.1", {"sent": True}, True)]
    assert "resolved by" in keel("show", run_id).stdout


def test_resume_continues_a_crashed_run_with_its_recorded_agent(keel: Keel) -> None:
    ref = keel.mailer()
    run_id = keel.interrupted_run(agent_ref=ref)

    assert keel("resume", run_id).exit_code == 3
    retried = keel("resolve", run_id, "1.1", "--retry")

    assert retried.exit_code == 0, retried.output
    assert keel.outbox() == [f"{run_id}:1.1 ana@example.com"]  # run again, with the call's own key
    assert "allowed to run again" in retried.stderr


def test_resolve_skip_tells_the_agent_it_did_not_run(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())
    keel("resume", run_id)

    skipped = keel("resolve", run_id, "1.1", "--skip", "--json")

    assert skipped.exit_code == 0
    assert json.loads(skipped.stdout)["status"] == "completed"
    assert keel.outbox() == []
    [finished] = [e for e in keel.events(run_id) if isinstance(e, ToolCallFinished)]
    assert finished.error is not None and finished.error.kind == "skipped"


def test_resolve_with_invalid_json_records_nothing(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())
    keel("resume", run_id)
    before = len(keel.events(run_id))

    result = keel("resolve", run_id, "1.1", "--result", "{sent: true}")

    assert result.exit_code == 2
    assert "--result is not valid JSON" in result.stderr
    assert "--result '{\"sent\": true}'" in result.stderr
    assert len(keel.events(run_id)) == before


@pytest.mark.parametrize(
    ("flags", "said"),
    [([], "you gave none"), (["--retry", "--skip"], "you gave --retry and --skip"), (["--result", "1", "--skip"], "")],
)
def test_resolve_takes_exactly_one_decision(keel: Keel, flags: list[str], said: str) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())

    result = keel("resolve", run_id, "1.1", *flags)

    assert result.exit_code == 2
    assert "choose exactly one of --result JSON (it happened), --retry (run it again), --skip" in result.stderr
    assert said in result.stderr


def test_resolve_a_call_that_is_not_waiting(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())
    keel("resume", run_id)

    result = keel("resolve", run_id, "1.7", "--skip")

    assert result.exit_code == 2
    assert "call '1.7' is not waiting for a decision (calls waiting: 1.1" in result.stderr


def test_resolve_no_resume_records_and_leaves_the_run_paused(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())
    keel("resume", run_id)

    recorded = keel("resolve", run_id, "1.1", "--result", '"sent by hand"', "--no-resume")

    assert recorded.exit_code == 0
    assert f"continue it with `keel resume {run_id}`" in recorded.stderr
    assert json.loads(keel("runs", "--json").stdout)[0]["status"] == "paused"
    resumed = keel("resume", run_id)
    assert resumed.exit_code == 0
    assert "Sent." in resumed.stdout


def test_with_two_interrupted_calls_the_run_resumes_after_the_last_decision(keel: Keel) -> None:
    run_id = keel.interrupted_run(
        agent_ref=keel.mailer(),
        arguments=({"to": "ana@example.com", "body": "a"}, {"to": "ben@example.com", "body": "b"}),
    )
    keel("resume", run_id)

    first = keel("resolve", run_id, "1.1", "--skip")
    assert first.exit_code == 3
    assert "still waits for decisions about: 1.2" in first.stderr
    assert f"keel resolve {run_id} 1.2" in first.stdout

    second = keel("resolve", run_id, "1.2", "--retry")
    assert second.exit_code == 0, second.output
    assert keel.outbox() == [f"{run_id}:1.2 ben@example.com"]


def test_resume_of_a_run_without_an_agent_reference_asks_for_one(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref="")

    missing = keel("resume", run_id)
    assert missing.exit_code == 2
    assert "pass --agent FILE.py:NAME" in missing.stderr

    given = keel("resume", run_id, "--agent", keel.mailer())
    assert given.exit_code == 3
    assert "resolve" in given.stdout

    resolved = keel("resolve", run_id, "1.1", "--skip")  # it resumes, so it needs the agent too
    assert resolved.exit_code == 2
    assert "pass --agent" in resolved.stderr
    assert keel("runs", "--status", "paused", "--json").stdout.count(run_id) == 1  # nothing was recorded


def test_resume_with_an_agent_that_does_not_fit(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref="")
    keel.write(
        "other.py", "from agentkeel import Agent, ScriptedModel\nagent = Agent(name='other', model=ScriptedModel([]))\n"
    )

    result = keel("resume", run_id, "--agent", "other.py:agent")

    assert result.exit_code == 2
    assert "belongs to agent 'mailer', not 'other'" in result.stderr


def test_resume_while_another_process_holds_the_run_is_busy(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer(), hold_lease=True)

    resumed = keel("resume", run_id)
    resolved = keel("resolve", run_id, "1.1", "--skip")

    assert resumed.exit_code == 5
    assert "being driven by dead-host:1" in resumed.stderr
    assert resolved.exit_code in (2, 5)  # not waiting yet (the run was never paused) or busy
    assert not [e for e in keel.events(run_id) if isinstance(e, RunResumed)]


def test_resume_of_an_ended_run_reports_it_without_loading_the_agent(keel: Keel) -> None:
    keel.mailer()
    assert keel("run", "mailer.py:agent", "mail Ana").exit_code == 0
    [run_id] = keel.run_ids()
    (keel.root / "mailer.py").unlink()

    result = keel("resume", run_id)

    assert result.exit_code == 0
    assert "has already ended: nothing to resume" in result.stderr
    assert "Sent." in result.stdout


def test_cancel_ends_an_idle_run_and_resume_reports_the_cancellation(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer())
    keel("resume", run_id)

    cancelled = keel("cancel", run_id[:14], "--reason", "sent by hand")

    assert cancelled.exit_code == 0
    assert f"cancelled run {run_id}: sent by hand" in cancelled.stdout
    assert json.loads(keel("runs", "--status", "cancelled", "--json").stdout)[0]["run_id"] == run_id
    assert keel("resume", run_id).exit_code == 4
    again = keel("cancel", run_id)
    assert again.exit_code == 2
    assert "has already ended (cancelled(cancelled)): there is nothing to cancel" in again.stderr
    assert "cancelled by" in keel("show", run_id).stdout


def test_cancel_of_a_run_another_process_drives_leaves_a_request_for_its_driver(keel: Keel) -> None:
    run_id = keel.interrupted_run(agent_ref=keel.mailer(), hold_lease=True)

    result = keel("cancel", run_id)

    assert result.exit_code == 0
    assert "is being driven by another process: it stops before its next model or tool call" in result.stdout
    assert json.loads(keel("runs", "--json").stdout)[0]["status"] == "running"
    keel.expire_leases(run_id)
    resumed = keel("resume", run_id)  # the next driver calls nothing: it ends the run, or pauses it for a person
    assert resumed.exit_code in (3, 4), resumed.output
    assert keel.outbox() == []
    if resumed.exit_code == 3:
        assert keel("cancel", run_id).exit_code == 0
    assert json.loads(keel("runs", "--json").stdout)[0]["status"] == "cancelled"
