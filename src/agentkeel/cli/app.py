"""The ``keel`` commands. Each one opens the store, does one thing, prints it and exits with a code that says
the outcome (``exits.py``). Errors end as one red sentence on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer

from agentkeel.agent import Agent
from agentkeel.cli import exits
from agentkeel.cli.exits import UsageProblem
from agentkeel.cli.load import EXAMPLE, load_agent, load_runnable
from agentkeel.cli.lookup import find_run
from agentkeel.cli.render import Output, print_outcome, print_runs
from agentkeel.cli.tree import events_json, run_tree
from agentkeel.core.state import RunState, replay
from agentkeel.engine.operator import Decision, cancel_run, resolve_call
from agentkeel.errors import KeelError
from agentkeel.observe.setup import finish as finish_telemetry
from agentkeel.patterns.pipeline import Pipeline
from agentkeel.result import RunResult
from agentkeel.stores.base import Store
from agentkeel.stores.open import DEFAULT_STORE_URL, default_store_url, open_store

STATUSES = ("running", "paused", "completed", "failed", "cancelled", "rolling_back", "rolled_back")
_STATUS_LIST = ", ".join(STATUSES)

app = typer.Typer(
    name="keel",
    help="agentkeel: run LLM agents whose runs survive their process. Inspect, resume, resolve and cancel runs.",
    epilog=exits.EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="KEEL_STORE",
        show_default=False,
        help="Where runs live: sqlite:///path.db, postgresql://user@host/db?schema=keel or memory://. "
        f"Default: {DEFAULT_STORE_URL}.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
AgentOption = Annotated[
    str | None,
    typer.Option("--agent", help="Load the agent from FILE.py:NAME or module:NAME instead of the run's own reference."),
]
RunArgument = Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.", show_default=False)]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        show_default=False,
        help="Use this model instead of the agent's: provider:name, e.g. openai:gpt-4.1-mini (OPENAI_BASE_URL and "
        "OPENAI_API_KEY say where and with which key).",
    ),
]


def main() -> None:
    """The console-script entry point."""
    # An exporter's retries are the SDK's warnings; a command says once, at its end, what was not sent.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    logging.getLogger("opentelemetry.sdk").setLevel(logging.CRITICAL)
    app(prog_name="keel")


# -- plumbing ---------------------------------------------------------------------------------------------


def _execute(out: Output, work: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a command's work, turn its outcome or error into an exit code, and exit."""
    try:
        code = asyncio.run(work())
    except KeelError as exc:
        out.error(str(exc))
        code = exits.for_error(exc)
    except KeyboardInterrupt:
        out.error("interrupted: a run that was being driven can be continued with `keel resume RUN_ID`")
        code = exits.INTERRUPTED
    except Exception as exc:
        if os.environ.get("KEEL_DEBUG"):
            out.err.print(traceback.format_exc(), markup=False)
        out.error(f"internal error: {type(exc).__name__}: {exc} (a bug in agentkeel; KEEL_DEBUG=1 shows the traceback)")
        code = exits.INTERNAL
    unsent = finish_telemetry()  # traces set up from OTEL_* variables: sent within a bound, or said so once
    if unsent is not None:
        out.note(unsent)
    raise typer.Exit(code)


@asynccontextmanager
async def _opened(url: str | None) -> AsyncIterator[Store]:
    store = open_store(url)
    try:
        yield store
    finally:
        await store.close()


def _operator() -> str:
    """Who acts, for the journal: the OS user name."""
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers)
        return os.environ.get("USER") or "operator"


async def _waiting_calls(store: Store, result: RunResult) -> dict[str, str]:
    """A description of each call waiting for a decision: its id, tool and arguments."""
    if not result.needs_attention:
        return {}
    state = replay(await store.load(result.run_id))
    return {call: _describe_call(state, call) for call in result.needs_attention}


def _describe_call(state: RunState, call: str) -> str:
    record = state.calls.get(call)
    if record is None:
        return f"call {call}"
    return f"call {call}: {record.name} {json.dumps(record.arguments, ensure_ascii=False)}"


async def _show_outcome(out: Output, store: Store, result: RunResult, agent: str) -> int:
    # the follow-up commands name the store when it is not the one they would open by themselves
    where = "" if store.url in (default_store_url(), f"sqlite:///{default_store_url()}") else f" --store {store.url}"
    print_outcome(out, result, agent=agent, calls=await _waiting_calls(store, result), where=where)
    return exits.for_status(result.status)


# -- commands ---------------------------------------------------------------------------------------------


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="FILE.py:AGENT", help=f"Where the agent is, e.g. {EXAMPLE}.")],
    task: Annotated[str, typer.Argument(help="The task, in quotes.")],
    model: ModelOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Run read tools, only preview write tools: print the plan to approve."),
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run an agent on a task and print the outcome (the run is journaled in the store)."""
    out = Output(as_json=as_json)

    async def work() -> int:
        found, ref = load_runnable(target)
        if isinstance(found, Pipeline):  # a pipeline's input: JSON if it parses, else the text itself
            async with _opened(store) as opened:
                pipeline = found.with_store(opened, ref=ref)
                result = await pipeline.run(_pipeline_input(task))
                return await _show_outcome(out, opened, result, pipeline.name)
        agent = _with_model(found, model)  # before the store opens: a wrong model name changes nothing
        async with _opened(store) as opened:
            agent = agent.replace(ref=ref, store=opened)
            result = await agent.run(task, dry_run=dry_run)
            return await _show_outcome(out, opened, result, agent.name)

    _execute(out, work)


@app.command()
def resume(
    run_id: RunArgument,
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Continue a run whose process died, or that a person unpaused. Nothing journaled happens again."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            state = replay(events)
            if state.terminal:
                out.note(f"run {found} has already ended: nothing to resume")
                return await _show_outcome(out, opened, RunResult.of(state), state.agent)
            if state.mode == "pipeline":
                pipeline, _ = load_runnable(agent or state.agent_ref)
                if not isinstance(pipeline, Pipeline):
                    raise UsageProblem(f"run {found} is a pipeline's run: point --agent at the Pipeline object")
                result = await pipeline.with_store(opened).resume(found)
                return await _show_outcome(out, opened, result, state.agent)
            loaded = _agent_for(state, agent, model)
            result = await loaded.replace(store=opened).resume(found)
            return await _show_outcome(out, opened, result, state.agent)

    _execute(out, work)


def _agent_for(state: RunState, override: str | None, model: str | None) -> Agent:
    ref = override or state.agent_ref
    if not ref:
        raise UsageProblem(
            f"run {state.run_id} does not say where its agent {state.agent!r} is defined (it was not started with "
            "`keel run`): pass --agent FILE.py:NAME"
        )
    agent, _ = load_agent(ref)
    return _with_model(agent, model)


def _pipeline_input(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _with_model(agent: Agent, model: str | None) -> Agent:
    """The agent with ``--model`` in place of its own model (a ``provider:name`` string, resolved here so that a
    wrong name or a missing SDK is reported before anything runs)."""
    return agent if model is None else agent.replace(model=model)


@app.command()
def resolve(
    run_id: RunArgument,
    call: Annotated[str, typer.Argument(help="The interrupted call, e.g. 2.1 (keel show lists them).")],
    result: Annotated[
        str | None, typer.Option("--result", help="It happened: its result as JSON, e.g. '{\"sent\": true}'.")
    ] = None,
    retry: Annotated[bool, typer.Option("--retry", help="Run it again.")] = False,
    skip: Annotated[bool, typer.Option("--skip", help="Tell the agent it did not run.")] = False,
    no_resume: Annotated[bool, typer.Option("--no-resume", help="Record the decision; do not resume.")] = False,
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide about an interrupted write call of a paused(needs_attention) run, then resume the run."""
    out = Output(as_json=as_json)

    async def work() -> int:
        decision, value = _decision(result, retry, skip)
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            before = replay(events)
            others = [c for c in before.attention if c != call]
            will_resume = not no_resume and not others and call in before.attention
            loaded = _agent_for(before, agent, model) if will_resume else None  # fail before recording anything
            by = _operator()
            after = await resolve_call(opened, found, call, decision, result=value, by=by)
            out.note(f"recorded: call {call} ({before.calls[call].name}) {_DONE[decision]}, by {by}")
            if others:
                out.note(f"run {found} still waits for decisions about: {', '.join(after.attention)}")
                return await _show_outcome(out, opened, RunResult.of(after), after.agent)
            if loaded is None:
                out.note(f"the run stays paused: continue it with `keel resume {found}`")
                return exits.OK
            outcome = await loaded.replace(store=opened).resume(found)
            return await _show_outcome(out, opened, outcome, after.agent)

    _execute(out, work)


_DONE: dict[Decision, str] = {
    "result": "marked done with the given result",
    "retry": "allowed to run again",
    "skip": "skipped",
}


def _decision(result: str | None, retry: bool, skip: bool) -> tuple[Decision, Any]:
    chosen = [name for name, given in (("--result", result is not None), ("--retry", retry), ("--skip", skip)) if given]
    if len(chosen) != 1:
        said = f"you gave {' and '.join(chosen)}" if chosen else "you gave none"
        raise UsageProblem(
            f"choose exactly one of --result JSON (it happened), --retry (run it again), --skip (it did not run); "
            f"{said}"
        )
    if retry:
        return "retry", None
    if skip:
        return "skip", None
    assert result is not None
    try:
        return "result", json.loads(result)
    except json.JSONDecodeError as exc:
        raise UsageProblem(
            f"--result is not valid JSON ({exc.msg} at character {exc.pos + 1}): quote it for the shell, e.g. "
            "--result '{\"sent\": true}' or --result '\"done\"'"
        ) from exc


@app.command()
def cancel(
    run_id: RunArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the journal.")] = "cancelled with keel cancel",
    store: StoreOption = None,
) -> None:
    """Cancel a run: an idle one ends now; a live driver stops before its next model or tool call."""
    out = Output()

    async def work() -> int:
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            state = replay(events)
            if state.terminal:
                shown = f"{state.status}({state.reason})" if state.reason else state.status
                raise UsageProblem(f"run {found} has already ended ({shown}): there is nothing to cancel")
            after = await cancel_run(opened, found, by=_operator(), reason=reason)
            if after.status == "cancelled":
                out.print(f"cancelled run {found}: {reason}")
            else:
                out.print(
                    f"run {found} is being driven by another process: it stops before its next model or tool call"
                )
            return exits.OK

    _execute(out, work)


@app.command()
def runs(
    status: Annotated[str | None, typer.Option("--status", help=f"Only runs in this status: {_STATUS_LIST}.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only the runs of the agent with this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, most recent first.")] = 20,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the most recent runs: id, agent, status(reason), steps, tokens, cost, age."""
    out = Output(as_json=as_json)

    async def work() -> int:
        if status is not None and status not in STATUSES:
            raise UsageProblem(f"--status {status!r} is not a status: use one of {', '.join(STATUSES)}")
        async with _opened(store) as opened:
            print_runs(out, await opened.list_runs(limit=limit, status=status, agent=agent))
        return exits.OK

    _execute(out, work)


@app.command()
def show(run_id: RunArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show a run step by step: model calls, tool calls with arguments, results, errors, retries and timings."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            _, events = await find_run(opened, run_id)
        if as_json:
            out.json(events_json(events))
        else:
            out.show(run_tree(events))
        return exits.OK

    _execute(out, work)


@app.command()
def demo(
    store: StoreOption = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="scripted (offline), or provider:name, e.g. openai:gpt-4.1-mini: the real model handles the same "
            "tickets.",
        ),
    ] = "scripted",
) -> None:
    """A support desk handles nine tickets: retries, a corrected argument, a crash and resume, an approval, a spiral
    stopped, a budget, a refund rolled back."""
    out = Output()

    async def work() -> int:
        from agentkeel.demo.run import run_demo  # the demo's code loads only for the demo

        return await run_demo(out, store_url=store, model=model)

    _execute(out, work)


from agentkeel.cli import approvals as _approvals  # noqa: E402,F401  (its commands register on ``app``)
from agentkeel.cli import bus as _bus  # noqa: E402,F401  (registers `keel bus` on app)
from agentkeel.cli import control as _control  # noqa: E402,F401  (its commands register on ``app``)
from agentkeel.cli import export as _export  # noqa: E402,F401  (registers `keel export` on app)
from agentkeel.cli import plans as _plans  # noqa: E402,F401  (registers `keel plan` and `keel apply` on app)
from agentkeel.cli import rollback as _rollback  # noqa: E402,F401  (registers `keel rollback` on app)
from agentkeel.cli import stats as _stats  # noqa: E402,F401  (registers `keel stats` on app)
