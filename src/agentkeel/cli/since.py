"""``--since``: the start of a window of runs, as an operator writes it."""

from __future__ import annotations

import re
from datetime import datetime

from agentkeel.cli.exits import UsageProblem

_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
EXAMPLES = (
    "a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time (2025-06-01, 2025-06-01T09:30, "
    "2025-06-01T09:30+02:00)"
)


def is_duration(text: str) -> bool:
    """Whether ``--since`` was given as a duration back from now (rather than a date)."""
    return _DURATION.fullmatch(text.strip().lower()) is not None


def parse_since(text: str, now: float) -> float:
    """The window's start, in seconds since the epoch: ``now`` less a duration (``30m``, ``24h``, ``7d``), or an
    ISO date or time (without a time zone: local time, as the operator reads a clock)."""
    given = text.strip()
    found = _DURATION.fullmatch(given.lower())
    if found is not None:
        return now - float(found[1]) * _UNITS[found[2]]
    try:
        return datetime.fromisoformat(given).timestamp()
    except ValueError:
        pass
    raise UsageProblem(f"--since {text!r} is neither a duration nor a date: use {EXAMPLES}")
