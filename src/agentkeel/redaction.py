"""Secrets out of everything written: the journal, the run listing, traces, logs and so the console.

A ``Redactor`` replaces, in text, every known secret *value* and every match of a secret *pattern* with a marker
(``[REDACTED]``). It runs where data leaves the process's memory: on each event's JSON as the codec encodes it
(so every durable store, every ``keel`` command and every export reads redacted journals), on the run row's task,
on span attributes and on the ``agentkeel`` loggers' records.

What it knows:

* built-in patterns for credentials with a recognisable shape (OpenAI/Anthropic-style ``sk-`` keys, AWS access
  key ids, GitHub, Slack and Google API tokens, JWTs, bearer tokens, PEM private keys, passwords in URLs);
* the values of the process's environment variables whose names say they hold a secret (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``, ...), at least 8 characters long;
* the values of tool arguments declared secret (a parameter typed ``pydantic.SecretStr``): learned from each model
  response before it is journaled;
* what the application adds: ``configure_redaction(patterns=[...], values=[...])`` or ``add_secret(value)``.

The model keeps seeing, within the process, what it saw; a run resumed elsewhere sees the marker (the journal is
all it has), and a secret tool argument that did not survive is refused with a message that asks for it again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentkeel.redaction_gate import bytes_gate, text_gate

MARKER = "[REDACTED]"

# Each pattern stays within one JSON string: no quote and no backslash in what it matches. The anchor is a
# literal every match contains: a pattern runs only over text that holds its anchor (a substring test is ~100 times
# cheaper than a regular expression's scan).
BUILTIN_PATTERNS: tuple[tuple[str, str], ...] = (
    ("sk-", r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{19,}"),  # OpenAI, Anthropic (sk-ant-...), OpenAI-compatible servers
    ("AKIA", r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    ("ASIA", r"\bASIA[0-9A-Z]{16}\b"),
    *((f"gh{kind}_", rf"\bgh{kind}_[A-Za-z0-9]{{36,}}\b") for kind in "pousr"),  # GitHub tokens
    ("github_pat_", r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
    ("xox", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    ("AIza", r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google API keys
    ("eyJ", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWTs
    ("earer ", r"(?<=[Bb]earer )[A-Za-z0-9._~+/\-]{16,}=*"),  # Authorization: Bearer <token>
    ("PRIVATE KEY-----", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^\"]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ("://", r"(?<=://)[^/\s:@\"\\]+:[^/\s@\"\\]+(?=@)"),  # user:password@ in URLs
)
_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY)$|PASSWORD", re.I)
_MIN_VALUE = 8


class Redactor:
    """Secret values and patterns, and the marker that replaces them. Thread-safe to extend."""

    def __init__(
        self,
        *,
        patterns: Iterable[str | tuple[str, str]] = BUILTIN_PATTERNS,
        values: Iterable[str] = (),
        marker: str = MARKER,
    ) -> None:
        self.marker = marker
        self._marker_bytes = marker.encode()
        self._lock = threading.Lock()
        self._text: tuple[tuple[str | None, re.Pattern[str]], ...] = ()
        self._bytes: tuple[tuple[bytes | None, re.Pattern[bytes]], ...] = ()
        self._values: tuple[str, ...] = ()
        self._value_bytes: tuple[bytes, ...] = ()
        self._gate: Callable[[bytes], bool] | None = None
        self._gate_text: Callable[[str], bool] | None = None
        """Whether data holds any anchor or value (``None``: no gate, every pattern runs). Most data holds none,
        and then a few character lookups are most of what it costs (``redaction_gate.py``)."""
        with self._lock:
            for pattern in patterns:
                self._add_pattern(pattern)
            for value in values:
                self._add_value(value, _MIN_VALUE)
            self._make_gate()

    def add_pattern(self, pattern: str | tuple[str, str]) -> None:
        """Redact every match of a regular expression, or of ``(anchor, expression)`` where ``anchor`` is a
        literal every match contains (the expression then runs only on text that holds it). It is matched
        against JSON text too: keep it within one string, i.e. free of quotes."""
        with self._lock:
            self._add_pattern(pattern)
            self._make_gate()

    def add_value(self, value: str, *, min_length: int = _MIN_VALUE) -> None:
        """Redact every occurrence of this exact text (a value shorter than ``min_length`` is ignored: it would
        blank ordinary words)."""
        with self._lock:
            if self._add_value(value, min_length):
                self._make_gate()

    def _add_pattern(self, pattern: str | tuple[str, str]) -> None:
        anchor, expression = pattern if isinstance(pattern, tuple) else (None, pattern)
        try:
            compiled = re.compile(expression)
        except re.error as exc:
            raise ValueError(f"redaction pattern {expression!r} is not a regular expression: {exc}") from exc
        self._text = (*self._text, (anchor, compiled))
        self._bytes = (*self._bytes, (anchor.encode() if anchor else None, re.compile(expression.encode())))

    def _add_value(self, value: str, min_length: int) -> bool:
        if not isinstance(value, str) or len(value) < max(1, min_length) or value == self.marker:
            return False
        if value in self._values:
            return False
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]  # as it appears inside a JSON string
        self._values = tuple(sorted({*self._values, value}, key=len, reverse=True))
        forms = {*self._value_bytes, value.encode(), escaped.encode()}
        self._value_bytes = tuple(sorted(forms, key=len, reverse=True))
        return True

    def _make_gate(self) -> None:
        anchors = [anchor for anchor, _ in self._bytes]
        if any(anchor is None for anchor in anchors):  # a pattern without an anchor runs on everything
            self._gate = self._gate_text = None
            return
        literals = {*(a for a in anchors if a is not None), *self._value_bytes}
        self._gate = bytes_gate(literals) if literals else None
        texts = {*(a.decode() for a in anchors if a is not None), *self._values}
        self._gate_text = text_gate(texts) if texts else None

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by the marker."""
        if not text:
            return text
        gate = self._gate_text
        if gate is not None and not gate(text):
            return text
        for value in self._values:
            if value in text:
                text = text.replace(value, self.marker)
        for anchor, pattern in self._text:
            if anchor is None or anchor in text:
                text = pattern.sub(self.marker, text)
        return text

    def json_bytes(self, data: bytes) -> bytes:
        """Encoded JSON with every secret inside its strings replaced by the marker."""
        gate = self._gate
        if gate is not None and not gate(data):
            return data
        if not self._bytes and not self._value_bytes:
            return data
        marker = self._marker_bytes
        for value in self._value_bytes:
            if value in data:
                data = data.replace(value, marker)
        for anchor, pattern in self._bytes:
            if anchor is None or anchor in data:
                data = pattern.sub(marker, data)
        return data

    def attributes(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Span (or log) attributes with every secret in their text replaced."""
        return {key: self.text(value) if isinstance(value, str) else value for key, value in values.items()}


def environment_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The values of the environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    return [value for name, value in env.items() if _SECRET_NAME.search(name) and len(value) >= _MIN_VALUE]


_redactor = Redactor(values=environment_secrets())


def redactor() -> Redactor:
    """The process's redactor (used by the codec, the run rows, the tracing and the logs)."""
    return _redactor


def configure_redaction(
    *, patterns: Iterable[str] = (), values: Iterable[str] = (), builtin: bool = True, marker: str = MARKER
) -> Redactor:
    """Replace the process's redactor: the built-in patterns (unless ``builtin=False``) and the environment's
    secrets, plus ``patterns`` and ``values``."""
    global _redactor
    _redactor = Redactor(
        patterns=[*(BUILTIN_PATTERNS if builtin else ()), *patterns],
        values=[*environment_secrets(), *values],
        marker=marker,
    )
    return _redactor


def add_secret(value: str) -> None:
    """Redact this value from now on (a credential the application obtained at run time)."""
    _redactor.add_value(value)


class RedactingFilter(logging.Filter):
    """Redacts a log record's message (with its arguments merged in) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _redactor.text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def logger(name: str) -> logging.Logger:
    """The package's logger ``name``, whose records are redacted (a logger's filters are its own: each of ours
    gets one)."""
    found = logging.getLogger(name)
    if not any(isinstance(existing, RedactingFilter) for existing in found.filters):
        found.addFilter(RedactingFilter())
    return found
