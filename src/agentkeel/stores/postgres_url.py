"""A PostgreSQL URL as the store and the bus take it: libpq's settings, plus ``schema`` and ``pool_max`` of ours.

``postgresql://user:password@host:5432/db?schema=keel&pool_max=10&sslmode=require``: ``schema`` is created when
missing and used through the connections' ``search_path``; ``pool_max`` caps the connections; every other query
parameter goes to libpq. The password never appears in a message (``masked``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agentkeel.errors import ConfigError

CONNECT_TIMEOUT_S = 10
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where to connect and how."""

    url: str
    """The URL with its password hidden, for messages."""
    schema: str | None
    pool_max: int
    conninfo: str
    """libpq's connection string."""


def postgres_target(
    url: str,
    *,
    what: str,
    application_name: str,
    default_pool_max: int,
    schema: str | None = None,
    pool_max: int | None = None,
) -> PostgresTarget:
    """Parse ``url`` (``what`` names it in messages: "store", "bus"); ``schema`` and ``pool_max`` win over the
    URL's."""
    conninfo, options = _split_url(url)
    shown = masked(url)
    schema = schema if schema is not None else options.get("schema")
    if schema is not None and not _SCHEMA.fullmatch(schema):
        raise ConfigError(
            f"{what} URL {shown}: schema {schema!r} must be a lowercase name of letters, digits and underscores "
            "(e.g. ?schema=keel)"
        )
    connections = _pool_max(pool_max if pool_max is not None else options.get("pool_max"), default_pool_max)
    if connections is None:
        raise ConfigError(
            f"{what} URL {shown}: pool_max must be a whole number of connections, 1 or more (e.g. {default_pool_max})"
        )
    return PostgresTarget(
        url=shown,
        schema=schema,
        pool_max=connections,
        conninfo=_conninfo(conninfo, schema, shown, what=what, application_name=application_name),
    )


def masked(url: str) -> str:
    """The URL with its password hidden, for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urlencode(
        [(key, "***" if key == "password" else value) for key, value in parse_qsl(parts.query, keep_blank_values=True)],
        quote_via=quote,
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL without our own options, and those options."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in ("schema", "pool_max")}
    libpq = [(key, value) for key, value in query if key not in ours]
    return urlunsplit(parts._replace(query=urlencode(libpq, quote_via=quote))), ours  # libpq reads "+" as "+"


def _conninfo(url: str, schema: str | None, shown: str, *, what: str, application_name: str) -> str:
    """libpq's connection string: the URL's settings, the schema as the search path, and sensible defaults."""
    try:
        given: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"{what} URL {shown} is not a PostgreSQL URL libpq accepts: {exc}") from exc
    given.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    given.setdefault("application_name", application_name)
    if schema is not None:
        given["options"] = f"{given.get('options') or ''} -c search_path={schema}".strip()
    return make_conninfo("", **given)


def _pool_max(value: int | str | None, default: int) -> int | None:
    if value is None:
        return default
    if not str(value).isdigit() or int(value) < 1:
        return None
    return int(value)
