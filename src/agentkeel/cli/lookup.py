"""Finding a run by its id or by a unique prefix of it (``keel show 0190f3``)."""

from __future__ import annotations

from agentkeel.cli.exits import UsageProblem
from agentkeel.core.events import Event
from agentkeel.errors import RunNotFound
from agentkeel.stores.base import Store

SCAN_LIMIT = 100_000
"""How many of the most recent runs a prefix is matched against."""

SHOWN = 8
"""How many candidates an ambiguous prefix lists."""


async def find_run(store: Store, given: str) -> tuple[str, list[Event]]:
    """The run's full id and its journal. ``RunNotFound`` if nothing matches; ``UsageProblem`` if several do."""
    given = given.strip()
    if not given:
        raise UsageProblem("the run id is empty: `keel runs` lists the runs and their ids")
    try:
        return given, await store.load(given)
    except RunNotFound:
        pass
    rows = await store.list_runs(limit=SCAN_LIMIT)
    matches = [row for row in rows if row.run_id.startswith(given)]
    if not matches:
        raise RunNotFound(given, store.url)
    if len(matches) > 1:
        listed = ", ".join(f"{row.run_id} ({row.agent}, {row.status})" for row in matches[:SHOWN])
        more = f" and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
        raise UsageProblem(
            f"{given!r} is the start of {len(matches)} run ids: {listed}{more}; type more of the id to choose one"
        )
    run_id = matches[0].run_id
    return run_id, await store.load(run_id)
