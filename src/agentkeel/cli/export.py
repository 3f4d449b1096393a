"""``keel export``: send runs' traces to an OpenTelemetry backend over OTLP/HTTP, after the fact.

The spans are derived from the journals (``observe/spans.py``), so what arrives is what a live trace of the same
runs would have been, ids included; a run still in progress is sent as it stands, its open spans ended at its
last event. Each run goes with its subagents' runs, as one trace.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer
from rich.text import Text

from agentkeel.cli import exits
from agentkeel.cli.app import JsonOption, StoreOption, _execute, _opened, app
from agentkeel.cli.exits import UsageProblem
from agentkeel.cli.lookup import find_run
from agentkeel.cli.render import Output, plural
from agentkeel.cli.since import parse_since
from agentkeel.observe.export import RunSpans, destination, otlp_exporter, send, tree_spans
from agentkeel.stores.base import RunRow, Store

_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


async def _chosen(
    store: Store, run_ids: list[str], all_runs: bool, since: float | None, agent: str | None
) -> list[tuple[str, Any]]:
    """The runs to send, each with its journal when it was read already; a run whose parent is chosen too goes
    with its parent."""
    if not all_runs:
        found = [await find_run(store, given) for given in run_ids]
        return [(run_id, events) for run_id, events in found]
    rows: list[RunRow] = await store.list_runs(limit=None, agent=agent, since=since)
    chosen = {row.run_id for row in rows}
    rows.sort(key=lambda row: row.created_at)
    return [(row.run_id, None) for row in rows if row.parent_id is None or row.parent_id not in chosen]


@app.command()
def export(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RUN_ID",
            help="Runs to send (ids or unique prefixes); each goes with its subagents.",
            show_default=False,
        ),
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Send every run of the store (narrow it with --since, --agent).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="With --all: runs started in the last 30m, 24h, 7d, 2w..., or since an ISO date or time "
            "(2026-05-01; local time unless it has an offset).",
            show_default=False,
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", help="With --all: only the runs of this agent (with their subagents).", show_default=False
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="The OTLP/HTTP endpoint (a base URL gets /v1/traces). Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "
            "else OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318. Headers come from "
            "OTEL_EXPORTER_OTLP_HEADERS.",
            show_default=False,
        ),
    ] = None,
    content: Annotated[
        bool,
        typer.Option(
            "--content",
            help=f"Include the task, prompts, answers, tool arguments and results (also with {_CAPTURE}=true). "
            "They may hold personal data.",
        ),
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send runs' traces to an OpenTelemetry backend (OTLP/HTTP): one trace per run and its subagents.

    Needs the otel extra (pip install 'agentkeel\\[otel]'). A run still in progress is sent as it stands."""
    out = Output(as_json=as_json)

    async def work() -> int:
        given = run_ids or []
        if given and all_runs:
            raise UsageProblem("give run ids or --all, not both")
        if not given and not all_runs:
            raise UsageProblem("say which runs to send: RUN_ID... (`keel runs` lists them), or --all")
        if (since is not None or agent is not None) and not all_runs:
            raise UsageProblem("--since and --agent choose among all runs: use them with --all")
        after = parse_since(since, time.time()) if since is not None else None
        to = destination(endpoint)
        exporter = otlp_exporter(to)  # before reading anything: a missing extra says so at once
        capture = content or os.environ.get(_CAPTURE, "").strip().lower() in ("1", "true", "yes", "on")
        sent: list[RunSpans] = []
        async with _opened(store) as opened:
            seen: set[str] = set()
            for run_id, events in await _chosen(opened, given, all_runs, after, agent):
                if run_id in seen:
                    continue
                for run in await tree_spans(opened, run_id, events, capture_content=capture):
                    if run.run_id not in seen:
                        seen.add(run.run_id)
                        sent.append(run)
        spans = [span for run in sent for span in run.spans]
        try:
            if spans:
                send(spans, exporter, to=to)
        finally:
            exporter.shutdown()
        _report(out, sent, len(spans), to.url, to.source)
        return exits.OK

    _execute(out, work)


def _report(out: Output, sent: list[RunSpans], spans: int, url: str, source: str) -> None:
    if out.as_json:
        out.json(
            {
                "endpoint": url,
                "endpoint_from": source,
                "spans": spans,
                "runs": [
                    {
                        "run_id": run.run_id,
                        "agent": run.agent,
                        "status": run.status,
                        "parent_id": run.parent_id,
                        "trace_id": f"{run.trace_id:032x}",
                        "spans": len(run.spans),
                    }
                    for run in sent
                ],
            }
        )
        return
    if not sent:
        out.note("no run matches: nothing was sent")
        return
    where = "" if source == "default" else f" (from {source})"
    out.print(f"exported {plural(len(sent), 'run')}, {plural(spans, 'span')} to {url}{where}")
    for run in sent:
        line = Text.assemble(
            f"  {run.run_id}  ", (run.agent, "bold"), f"  {run.status}  {plural(len(run.spans), 'span')}"
        )
        line.append(f"  subagent of {run.parent_id}" if run.parent_id else f"  trace {run.trace_id:032x}", style="dim")
        out.print(line)
