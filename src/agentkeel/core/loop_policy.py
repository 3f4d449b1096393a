"""``LoopPolicy``: when a run counts as going round in circles (the rules are explained in ``loops.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from agentkeel.errors import ConfigError

RULES = ("repeated_error", "repeated_call", "no_progress")
"""The rules, in the order a verdict looks for them (the most specific first)."""

DEFAULT_MESSAGE = (
    "{summary} Do not make these calls again: change your approach (other arguments, another tool), or answer "
    "with what you know."
)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoopPolicy:
    """When a run is going round in circles, and what happens then. ``None`` turns a rule off."""

    repeated_call: int | None = 5
    """The same tool, arguments and outcome this many times within the last 2N calls trips the rule."""
    repeated_error: int | None = 3
    """The same tool failing with the same error this many times within the last 3N calls trips the rule."""
    no_progress: int | None = 8
    """This many steps in a row with no tool result the run had not seen before trips the rule."""
    interventions: int = 1
    """Messages the model gets per rule; the rule's next trip fails the run (0: fail at the first trip)."""
    message: str = DEFAULT_MESSAGE
    """What the model reads when a rule trips. Placeholders: ``{summary}`` (what the model did, in a sentence
    addressed to it), ``{evidence}`` (the calls, for the operator) and ``{rule}`` (the rule's name)."""

    def __post_init__(self) -> None:
        for name in ("repeated_call", "repeated_error", "no_progress"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 2):
                raise ConfigError(
                    f"LoopPolicy({name}={value!r}) is not a count: give a whole number of 2 or more (how many "
                    "repeats trip the rule), or None to turn the rule off."
                )
        if type(self.interventions) is not int or self.interventions < 0:
            raise ConfigError(
                f"LoopPolicy(interventions={self.interventions!r}) is not a count: give a whole number of 0 or "
                "more (the messages the model gets per rule before the run fails; 0 fails it at once)."
            )
        if not isinstance(self.message, str) or not self.message.strip():
            raise ConfigError(
                f"LoopPolicy(message={self.message!r}) is empty: give the sentence the model reads when it loops."
            )
        try:
            self.message.format(rule="", summary="", evidence="")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"LoopPolicy(message=...) cannot be formatted ({exc!r}): it may use only the placeholders "
                "{summary}, {evidence} and {rule}; write a literal brace twice ({{ or }})."
            ) from None


@dataclass(frozen=True, kw_only=True, slots=True)
class LoopVerdict:
    """A rule tripped: speak to the model, or end the run."""

    rule: str
    """``repeated_call``, ``repeated_error`` or ``no_progress``."""
    evidence: str
    """For the operator: the calls (ids such as ``3.1``), the tool, its arguments (shortened), how many times."""
    message: str
    """What the model reads (``LoopPolicy.message`` formatted); empty when ``fail`` is true."""
    fail: bool
    """The model was already told as often as the policy allows: end the run ``failed(loop_detected)``."""
