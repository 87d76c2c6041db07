"""What concerns no one order: the watcher's notices and the summaries, and what a summary
reads (the events of a period, when orders came in).

- :meth:`Notes.record_notes` commits notices with their deliveries and the meta values that
  say they were made, at once.
- :meth:`Notes.record_summary` commits that a summary covers a period, with its deliveries, only
  when the period recorded so far ends earlier (a conditional update): of two instances that
  both find a summary due, one records and sends it, the other finds it done.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from orderwatch._detect import Event
from orderwatch._store._orders import Orders
from orderwatch._store._records import StoredEvent, Target, event_from_row

__all__ = ["Notes"]


class Notes(Orders):
    def record_notes(
        self, deliveries: Sequence[tuple[Event, Sequence[Target]]], *, meta: Mapping[str, str]
    ) -> list[StoredEvent]:
        """Commit events that concern no order (watcher notices) with their deliveries and the
        ``meta`` values that say they were made, at once and durably: they are sent like any
        other event, and a restart neither loses nor repeats them."""
        with self._transaction():
            self._executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(key, str(value)) for key, value in meta.items()],
            )
            return self._insert_events(deliveries) if deliveries else []

    def events_between(self, start: float, end: float) -> list[Event]:
        """The order events (new orders, transitions) detected in ``start`` < t ≤ ``end``."""
        rows = self._query(
            "SELECT * FROM events WHERE detected_at > ? AND detected_at <= ? "
            "AND kind IN ('created', 'status_changed') ORDER BY seq",
            (start, end),
        )
        return [event_from_row(row) for row in rows]

    def created_at(self, order_ids: Collection[str]) -> dict[str, float]:
        """When orderwatch saw each of ``order_ids`` come in as a new order (its ``created``
        event), for those it saw come in."""
        if not order_ids:
            return {}
        marks = ",".join("?" * len(order_ids))
        rows = self._tuples(
            f"SELECT order_id, min(detected_at) FROM events WHERE kind = 'created' "
            f"AND order_id IN ({marks}) GROUP BY order_id",
            list(order_ids),
        )
        return dict(rows)

    def summary_sent(self, summary: str) -> float | None:
        """The end of the period of the last summary ``summary`` committed; None: never."""
        rows = self._query("SELECT period_end FROM summaries_sent WHERE summary = ?", (summary,))
        return float(rows[0]["period_end"]) if rows else None

    def record_summary(
        self, summary: str, period_end: float, deliveries: Sequence[tuple[Event, Sequence[Target]]]
    ) -> list[StoredEvent] | None:
        """Commit that ``summary`` covers up to ``period_end``, with its deliveries (if any), at
        once: a restart neither loses nor repeats it. None, and nothing written, when a period
        ending as late or later is recorded already (another instance made this summary)."""
        with self._transaction():
            if not self._query(
                "INSERT INTO summaries_sent (summary, period_end) VALUES (?, ?) "
                "ON CONFLICT (summary) DO UPDATE SET period_end = excluded.period_end "
                "WHERE summaries_sent.period_end < excluded.period_end RETURNING summary",
                (summary, period_end),
            ):
                return None
            return self._insert_events(deliveries) if deliveries else []
