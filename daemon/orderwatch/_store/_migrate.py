"""Moving a SQLite state file into an empty PostgreSQL database, row for row.

Everything moves: orders (with their stuck-alert timers and list anchors), events with their
ids and sequence numbers (watcher notices and summaries among them), pending, sent, dead and
silenced deliveries, disabled webhooks, acknowledgements, silences, the periods summaries
covered, meta values (the first sync's completion and the watcher's state among them). So the
daemon on PostgreSQL continues where the file left off: no new first sync, nothing announced
again, pending deliveries still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from orderwatch._exceptions import StateError
from orderwatch._store._postgres import PostgresStore
from orderwatch._store._sqlite import SqliteStore

__all__ = ["migrate_to_postgres"]

# Table → columns, in an order that satisfies the foreign keys.
_TABLES: Final = {
    "meta": "key, value",
    "orders": "id, number, status, is_final, status_since, since_exact, first_seen, anchor, "
    "created_date, participant_login, total, stuck_alerts, stuck_last",
    "events": "seq, id, kind, order_id, previous_status, status, previous_since, "
    "previous_since_exact, detected_at, after_gap, order_json, resolves_stuck, reminder, "
    "acknowledged, note_json",
    "deliveries": "event_seq, route, destination, state, attempts, next_attempt_at, last_error, "
    "done_at, held, age_from, silenced_by",
    "disabled_webhooks": "destination, name, reason, disabled_at",
    "acks": "order_id, number, status, since, at, until, by, comment",
    "silences": "id, statuses, orders, routes, events, created_at, ends_at, comment, created_by",
    "summaries_sent": "summary, period_end",
}


@dataclass(frozen=True, slots=True)
class Migrated:
    """What moved."""

    orders: int
    events: int
    pending: int
    dead: int
    stuck_timers: int
    webhook_states: int
    acks: int
    silences: int


def migrate_to_postgres(path: Path, url: str) -> Migrated:
    """Copy the state file at ``path`` into the empty database at ``url`` in one transaction.

    The file is opened as the daemon opens it (migrated to the current schema, and refused
    while a daemon uses it); the database must hold no orderwatch data yet.
    """
    source = SqliteStore.open(path, exclusive=True)
    try:
        target = PostgresStore.open(url)
        try:
            taken = target.row_count()
            if taken:
                raise StateError(
                    f"state migrate: {target.location} is not empty ({taken} rows of orders, "
                    "events or meta values): migrate into an empty database"
                )
            with target._transaction():  # noqa: SLF001 - one durable transaction, not pipelined
                for table, columns in _TABLES.items():
                    target.copy_rows(table, columns, source.rows(table, columns))
                target.restart_sequences()
            counts = target.queue_counts()
            return Migrated(
                orders=sum(target.status_counts().values()),
                events=target.event_count(),
                pending=counts["pending"],
                dead=counts["dead"],
                stuck_timers=sum(k.stuck_alerts > 0 for k in target.open_orders()),
                webhook_states=len(target.disabled_webhooks()),
                acks=len(target.acks()),
                silences=len(target.silences()),
            )
        finally:
            target.close()
    finally:
        source.close()
