"""A research → writer → editor → validator chain on the bus, with no orchestrator, runnable offline:

    python examples/bus_chain.py                     # or: python examples/bus_chain.py redis://127.0.0.1:6379/0
    keel bus --bus sqlite:///.keel/examples/bus.db   # the topics, each agent's group, nothing pending
    keel runs                                        # the four runs: bus-researcher-<id>, bus-writer-<id>, ...
    keel show <run id>                               # one of them: the researcher's shows its read_notes call

Each agent subscribes to one topic and answers on the next one (``agent_handler``):

    research.requested → researcher → research.done → writer → draft.done → editor → edited.done → validator
    → validated

Nobody calls the agents in turn: each reply keeps the request's correlation id, which ties the four runs together.
A run's id comes from the message it answers (``bus-<agent>-<message id>``), so a message delivered twice (its
consumer died before acknowledging it) resumes or reads the same run instead of starting another. The models are
scripted and deterministic; the runs go to the default store (``.keel/keel.db``), the messages to
``.keel/examples/bus.db``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentkeel import Agent, ModelRequest, ModelResponse, ScriptedModel, Store, ToolResultMessage, call, reply, tool
from agentkeel.bus import Bus, Handler, Message, Route, Worker, open_bus, route_workers

DEFAULT_BUS = "sqlite:///.keel/examples/bus.db"
REQUEST = "Why does the sea have tides?"
FINAL_TOPIC = "validated"
MAX_WORDS = 80
STAGES = (  # (topic it reads, agent, topic it answers on)
    ("research.requested", "researcher", "research.done"),
    ("research.done", "writer", "draft.done"),
    ("draft.done", "editor", "edited.done"),
    ("edited.done", "validator", FINAL_TOPIC),
)

NOTES = {
    "tides": [
        "the moon's gravity pulls the ocean into a bulge on the side facing it",
        "a second bulge forms on the far side, where the pull is weakest",
        "the earth turns under both bulges, so most coasts get two high tides a day",
        "the sun adds a smaller pull: spring tides when it lines up with the moon, neap tides when it does not",
    ],
    "seasons": ["the earth's axis is tilted by 23.4 degrees", "each hemisphere leans towards the sun for half a year"],
}


@tool
def read_notes(subject: str) -> str:
    """Read the library's notes on a subject, one fact a line.

    Args:
        subject: One word, e.g. tides.
    """
    facts = NOTES.get(subject.lower())
    if facts is None:
        return f"No notes on {subject!r}; there are notes on: {', '.join(sorted(NOTES))}."
    return "\n".join(facts)


def task_of(request: ModelRequest) -> str:
    return request.messages[0].text  # type: ignore[union-attr]


def research(request: ModelRequest) -> ModelResponse:
    """The researcher: the notes on the subject the question names, then the facts found, one a line."""
    seen = [m for m in request.messages if isinstance(m, ToolResultMessage)]
    if not seen:
        words = re.findall(r"[a-z]+", task_of(request).lower())
        subject = next((word for word in words if word in NOTES), words[-1] if words else "nothing")
        return call("read_notes", subject=subject)
    return reply(f"Question: {task_of(request)}\nFindings:\n" + seen[-1].content)


def write(request: ModelRequest) -> ModelResponse:
    """The writer: one sentence per finding, the question as the title."""
    question, _, findings = task_of(request).partition("\nFindings:\n")
    title = question.removeprefix("Question: ").strip()
    sentences = [f"{fact[:1].upper()}{fact[1:]}." for fact in findings.splitlines() if fact.strip()]
    return reply(f"{title}\n\n" + "  ".join(sentences))


def edit(request: ModelRequest) -> ModelResponse:
    """The editor: single spaces, no colons in the body, whole sentences up to 80 words."""
    title, _, body = task_of(request).partition("\n\n")
    sentences = re.findall(r"[^.]+\.", re.sub(r"\s+", " ", body.replace(": ", ", ")))
    kept: list[str] = []
    for sentence in (s.strip() for s in sentences):
        if len(" ".join([*kept, sentence]).split()) > MAX_WORDS:
            break
        kept.append(sentence)
    return reply(f"{title}\n\n{' '.join(kept)}")


def validate(request: ModelRequest) -> ModelResponse:
    """The validator: a title, a body that names the moon, ends a sentence and keeps to 80 words."""
    text = task_of(request)
    title, _, body = text.partition("\n\n")
    problems = [
        problem
        for problem, failed in (
            ("no title", not title.strip()),
            ("the moon is not mentioned", "moon" not in body.lower()),
            ("the body does not end a sentence", not body.endswith(".")),
            (f"over {MAX_WORDS} words", len(body.split()) > MAX_WORDS),
        )
        if failed
    ]
    if problems:
        return reply("REJECTED: " + "; ".join(problems))
    return reply(f"APPROVED\n\n{text}")


SCRIPTS = {"researcher": research, "writer": write, "editor": edit, "validator": validate}
TOOLS = {"researcher": [read_notes]}


def agents(store: Store | str | None = None) -> dict[str, Agent]:
    """The four agents (in the default store, or ``store``)."""
    return {
        name: Agent(name=name, model=ScriptedModel(script), tools=TOOLS.get(name, []), store=store)
        for name, script in SCRIPTS.items()
    }


def previous_output(message: Message) -> str:
    """A stage's task: the previous stage's output (the request itself for the researcher)."""
    payload = message.payload
    if isinstance(payload, dict) and isinstance(payload.get("output"), str):
        return str(payload["output"])
    return payload if isinstance(payload, str) else str(payload)


def routes(team: Mapping[str, Agent] | None = None) -> list[Route]:
    """Each agent on its topic, answering on the next (``keel bus work examples/bus_chain.py:routes``)."""
    team = team if team is not None else agents()
    return [Route(topic, team[name], reply=reply_to, task=previous_output) for topic, name, reply_to in STAGES]


def workers(bus: Bus, team: Mapping[str, Agent]) -> list[Worker]:
    """One worker per agent, in a group of its own (the agent's name), subscribed to its topic."""
    return route_workers(bus, routes(team))


@dataclass
class Chain:
    """What one request went through: the request, the final message and each stage's run id."""

    request: Message
    final: Message | None = None
    run_ids: dict[str, str] = field(default_factory=dict)
    """Agent name → its run's id, in the order of the stages."""

    @property
    def text(self) -> str:
        return previous_output(self.final) if self.final is not None else ""


class Watcher:
    """Reads the reply topics in a group of its own (it drives nothing) and notes the runs of one request."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.done = asyncio.Event()

    def subscriptions(self) -> dict[str, Handler]:
        return {reply_to: self._noter(name) for _, name, reply_to in STAGES}

    def _noter(self, name: str) -> Handler:
        async def note(message: Message) -> None:
            if message.correlation_id != self.chain.request.correlation_id:
                return  # another request's, on a bus used before
            self.chain.run_ids[name] = str(message.payload["run_id"])
            if message.topic == FINAL_TOPIC:
                self.chain.final = message
                self.done.set()

        return note


async def run_chain(
    bus: Bus,
    request: str = REQUEST,
    *,
    store: Store | str | None = None,
    timeout_s: float = 30.0,
    block_s: float = 0.1,
) -> Chain:
    """Publish ``request`` on ``research.requested`` and follow it to the validator's answer."""
    chain = Chain(request=await bus.publish("research.requested", request))
    return await follow(bus, chain, agents(store), timeout_s=timeout_s, block_s=block_s)


async def follow(
    bus: Bus, chain: Chain, team: Mapping[str, Agent], *, timeout_s: float = 30.0, block_s: float = 0.1
) -> Chain:
    """Run one worker per agent until the validator's answer to ``chain.request`` arrives (at most ``timeout_s``:
    TimeoutError), then stop them."""
    watcher = Watcher(chain)
    stop = asyncio.Event()
    running = [*workers(bus, team), Worker(bus, watcher.subscriptions(), group="chain-watcher")]
    async with asyncio.TaskGroup() as tasks:
        for worker in running:
            tasks.create_task(worker.run(stop, block_s=block_s))
        try:
            await asyncio.wait_for(watcher.done.wait(), timeout_s)
        finally:
            stop.set()  # every worker notices within block_s
    chain.run_ids = {name: chain.run_ids[name] for _, name, _ in STAGES if name in chain.run_ids}
    return chain


async def amain(url: str) -> Chain:
    bus = open_bus(url)
    try:
        return await run_chain(bus)
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else DEFAULT_BUS
    chain = asyncio.run(amain(url))
    print(chain.text)
    print()
    print(f"correlation id: {chain.request.correlation_id} (bus: {url})")
    for name, run_id in chain.run_ids.items():
        print(f"  {name:10} {run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
