"""The gate in front of redaction says "maybe" exactly when the data holds an anchor or a known value, wherever it
sits (first byte, last byte, across any boundary), and redacting gives what running every value and every pattern
on the data unconditionally gives: the gate only ever skips work that would have changed nothing."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkeel.redaction import (
    BUILTIN_PATTERNS,
    MARKER,
    Redactor,
    add_secret,
    configure_redaction,
    redactor,
)

PATTERNS: list[str | tuple[str, str]] = [*BUILTIN_PATTERNS, ("ZQV-", r"\bZQV-\d{6}\b")]
ANCHORS = [pattern[0] for pattern in PATTERNS if isinstance(pattern, tuple)]
VALUES = [
    "hunter2hunter2",  # only characters every event holds, but 'h'
    'pa"ss\\word!',  # JSON escapes it: two forms to find in JSON
    "line one\nline two\ttab",  # control characters, escaped too
    "Zürich-Geheimnis-42",  # non-ASCII: multi-byte in UTF-8
    "ÆØÅ-token-Ω-0042",
    "aaaaaaaaaa",  # one character only: no second key
    "ordered_status",  # nothing but the letters of the events' keys
    "  spaced  out  ",
    "xoxo-not-slack-just-kisses",  # holds an anchor itself
    "日本語のひみつです",
]
CREDENTIALS = [
    "sk-proj-4f9Tq2LmZx8Rw1Vb7Nc3Kd6Hs0Jy5Pa",
    "AKIAQ3EGVZ7MXK2PLR4T",
    "ASIAQ3EGVZ7MXK2PLR4T",
    "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "github_pat_" + "A1b2" * 11,
    "xoxb-1234567890-abcdef",
    "AIza" + "Sy0123456789abcdefghijklmnopqrstuvw",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Authorization: Bearer abcdefghijklmnop1234",
    "-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----",
    "postgresql://user:pw@db.example/app",
    "ZQV-123456",
]
# Bits of the literals without the literals: they put the gate's keys in the data, and it must still say no.
NEAR_MISSES = [
    *(anchor[:-1] for anchor in ANCHORS),
    *(anchor[1:] for anchor in ANCHORS),
    *(value[:-1] for value in VALUES),
    *(value[1:] for value in VALUES),
    "gh",
    "hg",
    "g h",
    "ghx_",
    "github_pa",
    "xo",
    "Earer ",
    "eyj",
    "EyJ",
    "PRIVATE KEY----",
    ":/",
    "/ /",
    "AKIa",
    "ASIa",
    "aIza",
    "ZQV",
]
NEAR_MISSES = [miss for miss in NEAR_MISSES if not any(literal in miss for literal in [*ANCHORS, *VALUES])]
FRAGMENTS = [
    '{"kind":"model_responded","at":1795514591.3350208,"step":1,',
    '"response":{"text":"","tool_calls":[{"id":"","name":"lookup_order","arguments":{"order_id":"#0000"}}],',
    '"stop_reason":"tool_use","usage":{"input_tokens":0,"output_tokens":0},"model":""},',
    '"latency_s":9.867999779089587e-6,"cost_usd":0.0}',
    '"content":"{\\"order_id\\":\\"#0001\\",\\"status\\":\\"shipped\\"}",',
    '"task":"Look the order up, then tell me.",',
    "The quick brown fox jumps over the lazy dog. ",
    "I think All of it shipped (mostly); see https-less links and a/b paths. ",
    "\\n",
    "\\u00e9t\\u00e9",
    "éàü—€",
    "日本",
    "\t",
    " ",
    ":",
    "-",
    "_",
    '"',
]
INSERTS = [*ANCHORS, *VALUES, *CREDENTIALS, *NEAR_MISSES]


@pytest.fixture(autouse=True)
def fresh_redactor() -> Iterator[None]:
    configure_redaction()
    yield
    configure_redaction()


def make() -> Redactor:
    return Redactor(patterns=PATTERNS, values=VALUES)


def byte_literals(red: Redactor) -> list[bytes]:
    """Everything the gate stands for, in bytes: the anchors, and each value as it is and as JSON escapes it."""
    forms = {value.encode() for value in VALUES} | {
        json.dumps(value, ensure_ascii=False)[1:-1].encode() for value in VALUES
    }
    assert set(red._value_bytes) == forms
    return [anchor.encode() for anchor in ANCHORS] + sorted(forms)


def maybe(gate: Callable[[bytes], bool] | None, data: bytes) -> bool:
    return gate is None or gate(data)


def maybe_text(gate: Callable[[str], bool] | None, text: str) -> bool:
    return gate is None or gate(text)


def reference_json(red: Redactor, data: bytes) -> bytes:
    """What redaction gives without any gate or anchor test: every value, then every pattern, on everything (in the
    redactor's order of values, longest first)."""
    marker = MARKER.encode()
    for value in red._value_bytes:
        data = data.replace(value, marker)
    for pattern in PATTERNS:
        expression = pattern[1] if isinstance(pattern, tuple) else pattern
        data = re.sub(expression.encode(), marker, data)
    return data


def reference_text(red: Redactor, text: str) -> str:
    for value in red._values:
        text = text.replace(value, MARKER)
    for pattern in PATTERNS:
        text = re.sub(pattern[1] if isinstance(pattern, tuple) else pattern, MARKER, text)
    return text


def insert(data: str, inserts: Sequence[tuple[str, int]]) -> str:
    for literal, at in inserts:
        at %= len(data) + 1
        data = data[:at] + literal + data[at:]
    return data


def check(red: Redactor, text: str) -> None:
    data = text.encode()
    holds = any(literal in data for literal in byte_literals(red))
    assert maybe(red._gate, data) is holds, data
    assert red.json_bytes(data) == reference_json(red, data)
    if not holds:
        assert red.json_bytes(data) is data

    holds_text = any(literal in text for literal in [*ANCHORS, *VALUES])
    assert maybe_text(red._gate_text, text) is holds_text, text
    assert red.text(text) == reference_text(red, text)


RED = make()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=40),
    st.lists(st.tuples(st.sampled_from(INSERTS), st.integers(0, 5000)), max_size=4),
)
def test_the_gate_says_maybe_exactly_when_a_literal_occurs_and_redaction_is_unchanged(
    fragments: list[str], inserts: list[tuple[str, int]]
) -> None:
    check(RED, insert("".join(fragments), inserts))


BASE = "".join(FRAGMENTS) * 3  # ~1.6 KB, no literal in it


def test_data_without_a_literal_gets_a_no() -> None:
    assert not any(literal in BASE.encode() for literal in byte_literals(RED))
    assert RED._gate is not None and not RED._gate(BASE.encode())
    assert RED._gate_text is not None and not RED._gate_text(BASE)
    check(RED, BASE)


@pytest.mark.parametrize("literal", [*ANCHORS, *VALUES, *CREDENTIALS])
def test_each_literal_is_found_first_last_alone_and_across_every_boundary(literal: str) -> None:
    check(RED, literal)
    check(RED, literal + BASE)
    check(RED, BASE + literal)
    size = len(literal.encode())
    for chunk in (8, 16, 32, 64, 128, 256, 512, 1024):
        for offset in {1, size // 2, size - 1}:  # the literal straddles the end of a chunk
            at = chunk - offset
            check(RED, BASE[:at] + literal + BASE[at:])


@pytest.mark.parametrize("miss", NEAR_MISSES)
def test_a_near_miss_is_no_literal(miss: str) -> None:
    text = BASE[:100] + miss + BASE[100:]
    assert not any(literal in text for literal in [*ANCHORS, *VALUES]), miss
    check(RED, text)


def test_many_values_sharing_keys_and_first_characters_are_each_found() -> None:
    pairs = itertools.product("ghxJ/-I KSéZ日_oa", repeat=2)
    values = [f"{first}{last}-value-{n:03d}" for n, (first, last) in enumerate(pairs) if n % 5 == 0]
    red = Redactor(values=values)
    assert red._gate is not None and red._gate_text is not None
    literals = [anchor.encode() for anchor, _ in BUILTIN_PATTERNS] + list(red._value_bytes)
    for value in values:
        for text in (value, BASE + value, value + BASE, BASE[:33] + value + BASE[33:]):
            assert red._gate(text.encode()) and red._gate_text(text)
            assert MARKER in red.text(text) and MARKER.encode() in red.json_bytes(text.encode())
        for miss in (value[:-1], value[1:]):
            data = (BASE[:50] + miss + BASE[50:]).encode()
            assert red._gate(data) is any(literal in data for literal in literals)


def test_a_value_added_at_run_time_is_caught() -> None:
    red = make()
    secret = "Late-Secret-€-7"
    data = json.dumps({"text": f"here: {secret}!"}, ensure_ascii=False).encode()
    assert red._gate is not None and not red._gate(data)
    assert red.json_bytes(data) is data and red.text(secret) == secret

    red.add_value(secret)
    assert red.json_bytes(data) == json.dumps({"text": f"here: {MARKER}!"}).encode()
    assert red.text(f"a {secret} b") == f"a {MARKER} b"

    add_secret(secret)  # the process's redactor, as a tool's secret argument is learned
    assert redactor().json_bytes(data) == json.dumps({"text": f"here: {MARKER}!"}).encode()
    assert redactor().text(secret) == MARKER


def test_a_pattern_added_at_run_time_is_caught_with_or_without_an_anchor() -> None:
    red = make()
    assert red._gate is not None and red._gate_text is not None
    red.add_pattern(("QJX", r"QJX\d+"))
    assert red.json_bytes(b'{"a":"id QJX42"}') == b'{"a":"id ' + MARKER.encode() + b'"}'
    assert red._gate is not None  # still gated: the new anchor is one more key

    card = b'{"note":"card 4111-1111-1111-1111"}'  # no anchor, no value: the gate alone would let it through
    assert red.json_bytes(card) is card
    red.add_pattern(r"\b\d{4}-\d{4}-\d{4}-\d{4}\b")
    assert red._gate is None and red._gate_text is None  # a pattern without an anchor runs on everything
    assert red.json_bytes(card) == b'{"note":"card ' + MARKER.encode() + b'"}'
    assert red.text("card 4111-1111-1111-1111") == f"card {MARKER}"

    configured = configure_redaction(patterns=[r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"])
    assert configured._gate is None
    assert configured.json_bytes(card) == b'{"note":"card ' + MARKER.encode() + b'"}'


def test_with_nothing_to_find_data_is_returned_as_it_is() -> None:
    red = Redactor(patterns=[], values=[])
    data = b'{"text":"sk-proj-4f9Tq2LmZx8Rw1Vb7Nc3Kd6Hs0Jy5Pa"}'
    assert red.json_bytes(data) is data and red.text("AKIAQ3EGVZ7MXK2PLR4T") == "AKIAQ3EGVZ7MXK2PLR4T"
