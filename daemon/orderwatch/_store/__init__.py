"""The state store: one interface (:class:`Store`), two backends.

- :class:`SqliteStore`: one SQLite file, the embedded default, one daemon at a time.
- ``PostgresStore`` (``_postgres``): a PostgreSQL database several instances share, through
  psycopg 3, imported only when a ``postgresql://`` store is opened.

The store is split by concern, each written once in portable SQL over a backend's primitives
(``_base``): ``_schema`` (schema versions and migrations), ``_orders`` (orders and events),
``_notes`` (watcher notices and summaries), ``_acks`` (acknowledgements and silences),
``_deliveries`` (the outbox and delivery claims), ``_meta`` (meta values), ``_lease`` (the
leader lease and its fencing epoch), ``_migrate`` (a state file into PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

from orderwatch._store._interface import Store
from orderwatch._store._lease import Lease, decide_lease
from orderwatch._store._records import Delivery, StoredEvent, Target
from orderwatch._store._schema import MIGRATIONS, SCHEMA_VERSION
from orderwatch._store._sqlite import SqliteStore
from orderwatch._store._url import masked_url, url_problem, url_secrets

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Delivery",
    "Lease",
    "SqliteStore",
    "Store",
    "StoredEvent",
    "Target",
    "decide_lease",
    "masked_url",
    "open_store",
    "url_problem",
    "url_secrets",
]


def open_store(
    location: Path | str,
    *,
    readonly: bool = False,
    exclusive: bool = False,
    idle_timeout: float = 30.0,
    application: str = "orderwatch",
) -> Store:
    """Open the store at ``location``: a ``postgresql://`` URL, else a SQLite file's path.

    ``exclusive`` (the daemon, SQLite): refuse a file another daemon uses. ``idle_timeout``
    (PostgreSQL): how long a transaction may sit idle before the server ends the session;
    ``application``: how the server's session list names the connection.
    """
    if isinstance(location, str) and location.startswith(("postgresql:", "postgres:")):
        from orderwatch._store._postgres import PostgresStore  # noqa: PLC0415 - optional driver

        return PostgresStore.open(
            location, readonly=readonly, idle_timeout=idle_timeout, application=application
        )
    return SqliteStore.open(Path(location), readonly=readonly, exclusive=exclusive)
