"""Tool parameters typed ``pydantic.SecretStr``: their values are known to the redactor before the model's response
is journaled, and a call whose secret did not survive a restart is refused with a message the model can act on.

The journal keeps ``**********`` (pydantic's rendering of a secret) or the redaction marker in their place, so a
call rebuilt from the journal (a resumed run, an approval decided in another process) has no value to pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

from agentkeel.core.failures import ToolFailure
from agentkeel.redaction import MARKER, redactor
from agentkeel.tools.validate import ValidCall

_SHORTEST = 4
"""A declared secret is redacted from 4 characters up (a PIN); shorter ones would blank ordinary text."""
_GONE = ("**********", MARKER)


def learn_secrets(checks: Iterable[object]) -> None:
    """Tell the redactor the secret arguments of validated calls, before anything that holds them is written."""
    for check in checks:
        if not isinstance(check, ValidCall) or not check.tool.secret_params:
            continue
        for name in check.tool.secret_params:
            value = getattr(check.arguments, name, None)
            if isinstance(value, SecretStr):
                redactor().add_value(value.get_secret_value(), min_length=_SHORTEST)


def lost_secret(valid: ValidCall) -> ToolFailure | None:
    """A refusal when a secret argument of the call was rebuilt from the journal (where it is not kept)."""
    for name in valid.tool.secret_params:
        value = getattr(valid.arguments, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value() in _GONE:
            return ToolFailure(
                kind="invalid_arguments",
                message=f"{valid.tool.name} was not run: its argument {name!r} is secret, so it is not kept in the "
                "run's journal, and the run was resumed (or approved) in another process since it was given. "
                f"Call {valid.tool.name} again with {name!r}.",
            )
    return None
