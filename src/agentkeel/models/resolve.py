"""From a model setting (a ``Model`` or a ``provider:name`` string) to a ``Model``.

Providers are imported only when named, so that their SDKs stay optional extras:

* ``openai:<model>``: any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio); the base URL
  from ``OPENAI_BASE_URL``, the key from ``OPENAI_API_KEY``. Extra: ``agentkeel[openai]``.
* ``anthropic:<model>``: Anthropic's Messages API; the key from ``ANTHROPIC_API_KEY``. Extra:
  ``agentkeel[anthropic]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from agentkeel.errors import ConfigError
from agentkeel.models.base import Model

PROVIDERS: dict[str, tuple[str, str, str]] = {
    # provider: (module, factory, the extra that installs its SDK)
    "openai": ("agentkeel.models.openai_provider", "OpenAIModel", "openai"),
    "anthropic": ("agentkeel.models.anthropic_provider", "AnthropicModel", "anthropic"),
}


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
    if provider not in PROVIDERS:
        raise ConfigError(f"model {model!r}: unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    module_name, factory, extra = PROVIDERS[provider]
    module = _import_provider(module_name, provider, extra)
    made: Model = getattr(module, factory)(name)
    return made


def _import_provider(module_name: str, provider: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == extra:
            raise ConfigError(f"the {provider} provider needs its SDK: pip install 'agentkeel[{extra}]'") from exc
        raise
