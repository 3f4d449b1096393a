"""``write_note``: the agent's scratchpad, a built-in tool whose notes live in the run's state.

A note is a fact the agent wants to keep while older tool results are shortened to digests (see
``core/compaction.py``): the notes reach the model verbatim at every turn. The engine treats a call of this tool
specially: with its ``ToolCallFinished`` it journals ``NoteWritten(key, value)`` (built by :func:`note_event`),
so the notes are a fold over the journal and survive compaction and resume.

The tool is declared ``effect="read"``: the contract's ``effect`` is about the world outside the run, and a note
changes only the run's own journal, in the same commit as the call's outcome, so a retried or resumed call cannot
write it twice. It also means that gates meant for write tools never hold the agent's note-taking. It is
``inline``: it does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentkeel.core.events import NoteWritten
from agentkeel.errors import ToolError
from agentkeel.tools.tool import Tool, tool

NOTES_TOOL_NAME = "write_note"
MAX_KEY_CHARS = 100
MAX_VALUE_CHARS = 4_000


def write_note(key: str, value: str) -> str:
    """Save a fact you will need later in your notes. Older tool results are shortened to brief digests as the
    conversation grows, but your notes are shown to you in full at every turn: write down the figures, names,
    ids and conclusions you must not lose. Writing to an existing key replaces that note.

    Args:
        key: A short name for the note, like "orders checked" (at most 100 characters).
        value: The fact to keep, self-contained (at most 4,000 characters).
    """
    key, value = checked_note(key, value)
    return f"Saved note {key!r} ({len(value):,} chars); it stays visible to you at every turn."


def checked_note(key: str, value: str) -> tuple[str, str]:
    """The note as it is kept (the key stripped of surrounding spaces), or a ``ToolError`` the model can act on."""
    key = key.strip()
    if not key:
        raise ToolError('write_note: the key is empty; give the note a short name, like "orders checked".')
    if len(key) > MAX_KEY_CHARS:
        raise ToolError(
            f"write_note: the key has {len(key):,} characters; use a short name of at most {MAX_KEY_CHARS} "
            "and put the content in value."
        )
    if not value.strip():
        raise ToolError("write_note: the value is empty; write the fact you want to keep.")
    if len(value) > MAX_VALUE_CHARS:
        raise ToolError(
            f"write_note: the value has {len(value):,} characters, over the limit of {MAX_VALUE_CHARS:,}; keep "
            "only the facts you need, or split them across several keys."
        )
    return key, value


def notes_tool() -> Tool:
    """The built-in ``write_note`` tool (a new :class:`Tool` each call: tools are plain configuration)."""
    return tool(name=NOTES_TOOL_NAME, effect="read", inline=True)(write_note)


def note_event(arguments: Mapping[str, Any], at: float) -> NoteWritten:
    """The journal event for a successful ``write_note`` call with these (validated) arguments."""
    key, value = arguments.get("key"), arguments.get("value")
    if not isinstance(key, str) or not isinstance(value, str):
        raise ToolError("write_note takes two strings: key and value.")
    key, value = checked_note(key, value)
    return NoteWritten(at=at, key=key, value=value)
