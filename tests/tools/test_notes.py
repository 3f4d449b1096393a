"""``write_note``: the built-in scratchpad tool, its validation messages and the event the engine journals."""

from __future__ import annotations

import pytest

from agentkeel import Tool, ToolError
from agentkeel.core.events import NoteWritten, RunStarted
from agentkeel.core.state import replay
from agentkeel.tools.notes import MAX_KEY_CHARS, MAX_VALUE_CHARS, NOTES_TOOL_NAME, note_event, notes_tool


def test_the_tool_is_a_quick_read_tool_named_write_note() -> None:
    notes = notes_tool()
    assert isinstance(notes, Tool)
    assert notes.name == NOTES_TOOL_NAME == "write_note"
    assert (notes.effect, notes.safe_to_repeat, notes.inline) == ("read", True, True)
    assert "compacted" in notes.description or "shortened" in notes.description
    assert notes.schema.parameters["required"] == ["key", "value"]
    assert "100 characters" in notes.schema.parameters["properties"]["key"]["description"]
    assert notes_tool() is not notes  # a fresh tool each time: no shared module state


def test_a_note_is_confirmed_to_the_model() -> None:
    assert notes_tool()("orders checked", "1-10: all shipped") == (
        "Saved note 'orders checked' (17 chars); it stays visible to you at every turn."
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("", "x", r"the key is empty; give the note a short name"),
        ("   ", "x", r"the key is empty"),
        ("k" * (MAX_KEY_CHARS + 1), "x", r"the key has 101 characters; use a short name of at most 100"),
        ("k", "", r"the value is empty; write the fact you want to keep"),
        ("k", "v" * (MAX_VALUE_CHARS + 1), r"the value has 4,001 characters, over the limit of 4,000"),
    ],
)
def test_a_bad_note_gets_a_message_the_model_can_act_on(key: str, value: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        notes_tool()(key, value)


def test_the_limits_are_inclusive() -> None:
    notes_tool()("k" * MAX_KEY_CHARS, "v" * MAX_VALUE_CHARS)


def test_note_event_builds_the_journal_event_and_the_fold_keeps_the_note() -> None:
    event = note_event({"key": " totals ", "value": "$1,204.50 over 10 orders"}, at=12.5)
    assert event == NoteWritten(at=12.5, key="totals", value="$1,204.50 over 10 orders")
    state = replay(
        [
            RunStarted(at=1.0, run_id="r", agent="a", task="t", model="scripted"),
            event,
            note_event({"key": "totals", "value": "replaced"}, at=13.0),
        ]
    )
    assert state.notes == {"totals": "replaced"}


def test_note_event_refuses_arguments_the_tool_would_refuse() -> None:
    with pytest.raises(ToolError, match="the key is empty"):
        note_event({"key": "", "value": "x"}, at=1.0)
    with pytest.raises(ToolError, match="two strings: key and value"):
        note_event({"key": "k"}, at=1.0)
