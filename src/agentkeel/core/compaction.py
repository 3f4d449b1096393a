"""Bounded context: what the model sees of a long run, while the journal keeps everything.

Past a token threshold, the older tool results reach the model as short digests; the task, the agent's notes and
the recent steps stay verbatim. Two pure functions share the work:

* :func:`plan_compaction` decides *when* and *how far*: it returns a new boundary (journaled by the engine as
  ``ContextCompacted(upto=...)``) or ``None``;
* :func:`compacted_view` builds the messages a model request carries from the conversation, the boundary and
  the notes.

Rules, and why:

* The boundary is an index into the conversation: the tool results of ``messages[1:upto]`` are digested.
  It always falls on an assistant message (the start of a step), so no tool call is ever parted from its
  results: providers reject a result whose call they cannot see, and a call without its result.
* The boundary only moves forward, and in jumps: once past the threshold, everything but the last
  ``keep_recent_steps`` steps is compacted at once, and the prompt then grows again until the next jump. Between
  jumps the prompt's prefix does not change, so provider prompt caches keep hitting.
* Messages are never dropped, only tool results shortened: the model still sees every call it made, with its
  arguments (its own trail of decisions, usually short), and the call ids stay paired.
* The notes come last, as one user message, because they change whenever the agent writes one: placed after the
  task they would invalidate the cached prefix of the whole conversation at every note; at the end they cost
  only their own tokens (and they are what the model reads right before it decides).
* The view is a function of (messages, upto, notes, digest_chars) only, so a resumed run sends the same prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentkeel.core.messages import Message, ToolResultMessage, UserMessage
from agentkeel.core.tokens import CHARS_PER_TOKEN, message_chars
from agentkeel.errors import ConfigError

NOTES_HEADER = "Your notes so far (they stay verbatim when older tool results are shortened):"
_MEMO_KEY = "compaction.prefix"


@dataclass(frozen=True, kw_only=True, slots=True)
class ContextPolicy:
    """When to compact a run's context, and how much of it stays verbatim."""

    max_tokens: int = 60_000
    """Compact when the estimated prompt (the messages the model would get) passes this many tokens."""
    keep_recent_steps: int = 4
    """The last N steps (a model turn and its tool results each) stay verbatim; at least 1, so that the model
    always reads the results of its last calls whole."""
    digest_chars: int = 160
    """How many characters of a compacted tool result its digest keeps (0: only its size)."""

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens, 1)
        _check_int("keep_recent_steps", self.keep_recent_steps, 1)
        _check_int("digest_chars", self.digest_chars, 0)


def _check_int(field: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"ContextPolicy.{field} must be an integer of at least {least}, not {value!r}")


def plan_compaction(messages: Sequence[Message], *, upto: int, prompt_tokens: int, policy: ContextPolicy) -> int | None:
    """The new compaction boundary, or ``None`` to leave the context as it is.

    ``upto`` is the current boundary (``RunState.compacted_upto``) and ``prompt_tokens`` the estimated size of the
    prompt the model would get now (with that boundary). A boundary is returned only when the prompt passes
    ``policy.max_tokens`` and moving it would shorten at least one tool result; it is the start of the
    ``policy.keep_recent_steps``-th step from the end.
    """
    if prompt_tokens <= policy.max_tokens:
        return None
    boundary = _recent_steps_start(messages, policy.keep_recent_steps)
    if boundary is None or boundary <= upto:
        return None
    for index in range(max(upto, 1), boundary):
        message = messages[index]
        if message.kind == "tool_result" and _shortens(message.content, policy.digest_chars):
            return boundary
    return None  # nothing in the span would get shorter: journaling a compaction would be noise


def _recent_steps_start(messages: Sequence[Message], steps: int) -> int | None:
    """The index of the assistant message that opens the ``steps``-th step from the end (None: fewer steps)."""
    seen = 0
    for index in range(len(messages) - 1, 0, -1):
        if messages[index].kind == "assistant":
            seen += 1
            if seen == steps:
                return index
    return None


def compacted_view(
    messages: Sequence[Message],
    *,
    upto: int,
    notes: Mapping[str, str],
    digest_chars: int = 160,
    memo: dict[str, Any] | None = None,
) -> list[Message]:
    """The conversation as the model sees it: the task, the older steps with their tool results digested, the
    recent steps verbatim, then the notes (if any) as one user message.

    ``digest_chars`` must be the policy's (the same on every call of a run). ``memo`` is a cache the caller keeps
    for this conversation (``RunState.memo``): the digested prefix is built once and extended when the boundary
    moves, so a step costs the length of the view, not of the history.
    """
    upto = min(upto, len(messages))
    if upto <= 1:
        view = list(messages)
    else:
        view = _prefix(messages, upto, digest_chars, memo)
        view.extend(messages[upto:])
    if notes:
        view.append(notes_message(notes))
    return view


def _prefix(messages: Sequence[Message], upto: int, digest_chars: int, memo: dict[str, Any] | None) -> list[Message]:
    """``messages[:upto]`` with their tool results digested (a new list: the caller may extend it)."""
    cached: tuple[int, int, list[Message]] | None = memo.get(_MEMO_KEY) if memo is not None else None
    if cached is not None and cached[0] == digest_chars and cached[1] <= upto and cached[2][0] is messages[0]:
        built, start = cached[2], cached[1]
    else:
        built, start = [messages[0]], 1
    for index in range(start, upto):
        message = messages[index]
        built.append(digest(message, digest_chars) if message.kind == "tool_result" else message)
    if memo is not None:
        memo[_MEMO_KEY] = (digest_chars, upto, built)
    return list(built)


def digest(message: ToolResultMessage, digest_chars: int) -> ToolResultMessage:
    """The message with its content replaced by its first ``digest_chars`` characters (whitespace folded) and its
    size; unchanged when the digest would not be shorter."""
    content = message.content
    if not _shortens(content, digest_chars):
        return message
    head = " ".join(content[: digest_chars * 2].split())[:digest_chars]
    text = f"[compacted: {head}… ({len(content):,} chars in the journal)]"
    return ToolResultMessage(call_id=message.call_id, name=message.name, content=text, is_error=message.is_error)


def _shortens(content: str, digest_chars: int) -> bool:
    # The digest adds ~45 characters of framing; below that margin it would save nothing.
    return len(content) > digest_chars + 64


def notes_message(notes: Mapping[str, str]) -> UserMessage:
    """The notes, verbatim, sorted by key: a function of their content alone, however the mapping was built."""
    lines = [NOTES_HEADER, *(f"- {key}: {notes[key]}" for key in sorted(notes))]
    return UserMessage(text="\n".join(lines))


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Four characters a token, counted the way ``ScriptedModel`` counts a prompt's messages."""
    return sum(message_chars(message) for message in messages) // CHARS_PER_TOKEN
