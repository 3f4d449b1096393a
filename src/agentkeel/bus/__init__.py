"""The message bus: specialised agents subscribe to topics and publish their outputs, with no orchestrator.

``Bus`` is the port (``base.py``); ``MemoryBus``, ``SQLiteBus`` (durable, the default), ``RedisBus``
(``redis_streams.py``, several machines) and ``PostgresBus`` (``postgres.py``, the PostgreSQL store's database) are
its backends; ``Worker`` is the consumer loop (``worker.py``); ``Route`` declares which agent answers which topic,
and ``serve`` runs the workers of routes (``keel bus work``). ``RedisBus`` and ``PostgresBus`` need optional
drivers, so they are imported from their modules (or opened by URL, ``open_bus``), not from here.
"""

from agentkeel.bus.base import Bus, DeadLetter, Message, Outgoing, TopicStats, TrimReport, dead_topic
from agentkeel.bus.memory import MemoryBus
from agentkeel.bus.open import DEFAULT_BUS_URL, default_bus_url, open_bus
from agentkeel.bus.routes import Route, route_workers, serve
from agentkeel.bus.sqlite import SQLiteBus
from agentkeel.bus.worker import Handler, Worker, agent_handler, message_task

__all__ = [
    "DEFAULT_BUS_URL",
    "Bus",
    "DeadLetter",
    "Handler",
    "MemoryBus",
    "Message",
    "Outgoing",
    "Route",
    "SQLiteBus",
    "TopicStats",
    "TrimReport",
    "Worker",
    "agent_handler",
    "dead_topic",
    "default_bus_url",
    "message_task",
    "open_bus",
    "route_workers",
    "serve",
]
