"""From a typed Python function to an argument model and a JSON schema for the model.

Parameter descriptions come from the docstring (Google ``Args:`` sections or Sphinx ``:param x:`` lines) or from
``Annotated[..., Field(description=...)]``; the first paragraph of the docstring describes the tool.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from agentkeel.errors import ConfigError

CONTEXT_PARAMETER = "ctx"

_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:\S+\s+)?(\w+):\s*(.*)$")
_GOOGLE_ARG = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The tool's description and a description for each parameter."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    lines = text.splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section = ""
    current = ""
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1), ""
            continue
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            continue
        if section in ("Args", "Arguments", "Parameters"):
            google = _GOOGLE_ARG.match(line)
            if google:
                current = google.group(1)
                params[current] = google.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
            continue
        if section or line.strip().startswith(":"):
            continue
        summary.append(line)
    description = "\n".join(summary).strip()
    return description, params


def takes_context(fn: Callable[..., Any]) -> bool:
    """Whether the function's first parameter is the run context (named ``ctx``)."""
    parameters = list(inspect.signature(fn).parameters.values())
    return bool(parameters) and parameters[0].name == CONTEXT_PARAMETER


def build_arguments_model(fn: Callable[..., Any], name: str, param_docs: dict[str, str]) -> type[BaseModel]:
    """A pydantic model of the function's parameters (the context excluded); extra arguments are refused."""
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a forward reference that cannot be resolved
        raise ConfigError(f"tool {name!r}: cannot read the type hints of {fn.__qualname__}: {exc}") from exc
    fields: dict[str, Any] = {}
    for index, parameter in enumerate(signature.parameters.values()):
        if index == 0 and parameter.name == CONTEXT_PARAMETER:
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ConfigError(
                f"tool {name!r}: *{parameter.name} / **{parameter.name} cannot be described to a model; "
                "give each argument its own typed parameter"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigError(f"tool {name!r}: parameter {parameter.name!r} is positional-only; tools take keywords")
        if parameter.name not in hints:
            raise ConfigError(
                f"tool {name!r}: parameter {parameter.name!r} has no type annotation; a tool's parameters are typed "
                f"so that the model's arguments can be validated (e.g. `{parameter.name}: str`)"
            )
        default: Any = ... if parameter.default is inspect.Parameter.empty else parameter.default
        description = param_docs.get(parameter.name)
        if isinstance(default, FieldInfo):
            fields[parameter.name] = (hints[parameter.name], default)
        elif description:
            fields[parameter.name] = (hints[parameter.name], Field(default, description=description))
        else:
            fields[parameter.name] = (hints[parameter.name], default)
    model_name = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", name) if part) + "Arguments"
    try:
        return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    except Exception as exc:
        raise ConfigError(f"tool {name!r}: its parameters cannot be validated: {exc}") from exc


def json_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON schema the model sees: an object with typed, described properties, no pydantic titles."""
    try:
        schema = model.model_json_schema()
    except Exception as exc:
        raise ConfigError(
            f"tool {name!r}: a parameter's type cannot be described in JSON schema ({exc}); "
            "use JSON-friendly types (str, int, float, bool, lists, dicts, enums, pydantic models)"
        ) from exc
    _drop_titles(schema)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def _drop_titles(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            node.pop("title")
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _drop_titles(prop)
            else:
                _drop_titles(value)
    elif isinstance(node, list):
        for item in node:
            _drop_titles(item)
