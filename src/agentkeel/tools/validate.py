"""Checking a model's tool call before anything runs, and the messages that tell the model how to fix it.

Whatever the model sends (an unknown name, JSON that does not parse, wrong types, missing or extra fields,
megabytes of text) ends here as either validated arguments or a :class:`ToolFailure` whose message says what
was wrong, what was expected and how to call again. Nothing raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from agentkeel.core.events import ToolFailure
from agentkeel.core.messages import ToolCall
from agentkeel.core.record import record
from agentkeel.errors import ResolveError
from agentkeel.tools.tool import Tool

MAX_ECHO = 120
"""How much of a bad value is quoted back to the model."""

MAX_DEPTH = 64
"""How deeply arguments may nest: much deeper values cannot be journaled as JSON and read back."""


@record
class ValidCall:
    """A call that may run: its tool, its validated arguments, and the same arguments as JSON values."""

    tool: Tool
    arguments: BaseModel
    json_arguments: dict[str, Any]

    @property
    def kwargs(self) -> dict[str, Any]:
        """The validated arguments by parameter name, for the call (read-only: do not modify)."""
        return self.arguments.__dict__


def validate_call(call: ToolCall, tools: Mapping[str, Tool]) -> ValidCall | ToolFailure:
    """Validate one call against the agent's tools."""
    tool = tools.get(call.name)
    if tool is None:
        return ToolFailure(kind="unknown_tool", message=unknown_tool_message(call.name, tools))
    raw: Any = call.arguments
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError) as exc:
            return ToolFailure(
                kind="invalid_arguments",
                message=f"The arguments for {tool.name} are not valid JSON ({_short(str(exc))}); send one JSON "
                f"object with the fields {_fields_hint(tool)}.",
            )
    if nested_deeper_than(raw, MAX_DEPTH):
        return ToolFailure(
            kind="invalid_arguments",
            message=f"The arguments for {tool.name} nest more than {MAX_DEPTH} levels deep; send one flat JSON "
            f"object with the fields {_fields_hint(tool)}.",
        )
    if not isinstance(raw, dict):
        return ToolFailure(
            kind="invalid_arguments",
            message=f"The arguments for {tool.name} must be a JSON object with the fields {_fields_hint(tool)}, "
            f"not {type(raw).__name__} {_echo(raw)}.",
        )
    try:
        arguments = tool.arguments.__pydantic_validator__.validate_python(raw)
    except ValidationError as exc:
        return ToolFailure(kind="invalid_arguments", message=invalid_arguments_message(tool, exc))
    except RecursionError:
        return ToolFailure(kind="invalid_arguments", message=f"The arguments for {tool.name} are nested too deeply.")
    # str, int, float and bool values are JSON as they are
    plain = tool.plain_arguments
    json_arguments = dict(arguments.__dict__) if plain else to_jsonable_python(arguments, fallback=str)
    return ValidCall(tool=tool, arguments=arguments, json_arguments=json_arguments)


def unknown_tool_message(name: str, tools: Mapping[str, Tool]) -> str:
    valid = ", ".join(sorted(tools)) or "(none: answer without tools)"
    return f"There is no tool named {_echo(name)}. Valid tools: {valid}. Call one of them by its exact name."


def invalid_arguments_message(tool: Tool, exc: ValidationError) -> str:
    properties: dict[str, Any] = tool.schema.parameters.get("properties", {})
    problems: list[str] = []
    for error in exc.errors(include_url=False)[:8]:
        location = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        field = str(error["loc"][0]) if error["loc"] else ""
        kind = error["type"]
        if kind == "missing":
            problems.append(f"{location} is missing; expected {_expected(properties.get(field, {}))}")
        elif kind == "extra_forbidden":
            names = ", ".join(properties) or "none"
            problems.append(f"{location} is not a parameter of {tool.name} (its parameters: {names})")
        else:
            nested = len(error["loc"]) > 1 or field not in properties
            expected = error["msg"][:1].lower() + error["msg"][1:] if nested else _expected(properties[field])
            problems.append(f"{location} was {_echo(error.get('input'))}; expected {expected}")
    more = len(exc.errors()) - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return f"Invalid arguments for {tool.name}: " + "; ".join(problems) + f". Fix them and call {tool.name} again."


def _expected(prop: Mapping[str, Any], *, described: bool = True) -> str:
    if not prop:
        return "a value"
    parts: list[str] = []
    if "enum" in prop:
        parts.append("one of " + ", ".join(json.dumps(v) for v in prop["enum"]))
    elif "const" in prop:
        parts.append(f"exactly {json.dumps(prop['const'])}")
    else:
        kind = prop.get("type")
        if kind is None and "anyOf" in prop:
            kinds = [str(option.get("type", "value")) for option in prop["anyOf"]]
            parts.append(" or ".join(_article(k) for k in kinds))
        else:
            parts.append(_article(str(kind or "value")))
    if "pattern" in prop:
        parts.append(f"matching the pattern {prop['pattern']}")
    bounds = [
        f"{word} {prop[key]}"
        for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
        if key in prop
    ]
    bounds += [
        word.format(prop[key])
        for key, word in (("minLength", "at least {} characters"), ("maxLength", "at most {} characters"))
        if key in prop
    ]
    if bounds:
        parts.append(" and ".join(bounds))
    if prop.get("format"):
        parts.append(f"in {prop['format']} format")
    text = " ".join(parts)
    examples = prop.get("examples")
    if isinstance(examples, list) and examples:
        text += f", for example {json.dumps(examples[0])}"
    if described and prop.get("description"):
        text += f" ({str(prop['description']).strip().rstrip('.')})"
    return text


def _article(kind: str) -> str:
    names = {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "array": "a list",
        "object": "an object",
        "null": "null",
    }
    return names.get(kind, f"a {kind}")


def _fields_hint(tool: Tool) -> str:
    properties: dict[str, Any] = tool.schema.parameters.get("properties", {})
    if not properties:
        return "(none: send {})"
    return ", ".join(f"{name} ({_expected(prop, described=False)})" for name, prop in properties.items())


def nested_deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON value nests deeper than ``limit`` (the journal keeps nothing deeper)."""
    kind = type(value)
    if kind is dict:
        for item in value.values():
            if type(item) in _CONTAINERS:
                break
        else:
            return False  # the common case: a flat object
    elif kind not in _CONTAINERS:
        return False
    stack: list[tuple[Any, int]] = [(value, 0)]  # iterative: the value may be nested past the recursion limit
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((item, depth + 1) for item in node)
    return False


_CONTAINERS = (dict, list, tuple)


def _echo(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return _short(text)


def _short(text: str) -> str:
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text)} characters)"


def validated_arguments(tool: Tool, arguments: Any) -> dict[str, Any]:
    """A person's (edited) arguments for a call, validated against the tool's schema, as JSON values.

    Raises ``ResolveError`` with what is wrong, in the words the model would get.
    """
    checked = validate_call(ToolCall(id="edited", name=tool.name, arguments=arguments), {tool.name: tool})
    if isinstance(checked, ToolFailure):
        raise ResolveError(f"the edited arguments do not fit {tool.name}: {checked.message}")
    return checked.json_arguments
