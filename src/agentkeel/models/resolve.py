"""From a model setting (a ``Model`` or a ``provider:name`` string) to a ``Model``."""

from __future__ import annotations

from agentkeel.errors import ConfigError
from agentkeel.models.base import Model

_PROVIDERS = ("openai", "anthropic")


def resolve_model(model: Model | str) -> Model:
    if not isinstance(model, str):
        if not isinstance(model, Model):
            raise ConfigError(
                f"model must be a Model (e.g. ScriptedModel([...])) or a 'provider:name' string, got {model!r}"
            )
        return model
    provider, _, name = model.partition(":")
    if not name or not provider:
        raise ConfigError(f"model {model!r}: write it as provider:name, e.g. openai:gpt-4.1-mini")
    if provider in _PROVIDERS:
        raise ConfigError(
            f"model {model!r}: the {provider} provider is not part of this version of agentkeel yet; "
            "pass a ScriptedModel, or any object with a `name` and an async `respond(request)` method"
        )
    raise ConfigError(f"model {model!r}: unknown provider {provider!r}; known: {', '.join(_PROVIDERS)}")
