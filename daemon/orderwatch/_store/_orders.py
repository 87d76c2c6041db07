"""Orders and events: what the state knows of each order, and the events its changes caused.

:meth:`Orders.record` commits, in one transaction, the orders a batch observed, the events its
changes caused and one pending delivery per event and destination. Nothing is sent before that
commit returns. Final orders stay stored but are never loaded as a group.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence

from orderwatch._detect import Change, Event, KnownOrder
from orderwatch._store._base import Database
from orderwatch._store._records import (
    KNOWN_COLUMNS,
    StoredEvent,
    Target,
    known_from_row,
    note_json,
    order_json,
    order_rows,
)

__all__ = ["Orders"]


class Orders(Database):
    _unsynced: bool = False  # events committed since the last fsync (SQLite)

    def lookup(self, ids: Collection[str]) -> dict[str, KnownOrder]:
        """The known orders among ``ids``."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._tuples(f"SELECT {KNOWN_COLUMNS} FROM orders WHERE id IN ({marks})", ids)
        return {row[0]: known_from_row(row) for row in rows}

    def glance(self, ids: Collection[str]) -> dict[str, tuple[str, int | None]]:
        """Status and list anchor of the known orders among ``ids``: enough to tell which need
        a full :meth:`lookup` (see :func:`~orderwatch._detect.settled`), for a third of it."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._tuples(f"SELECT id, status, anchor FROM orders WHERE id IN ({marks})", ids)
        return {order_id: (status, anchor) for order_id, status, anchor in rows}

    def glance_ahead(self, pages: Sequence[Collection[str]]) -> None:
        """A hint, inside a :meth:`batch`: the orders of ``pages`` (none on two of them) are
        about to be glanced at and looked up page after page, each page's orders written only
        after their own lookup. Where a read is a round trip (PostgreSQL) they are read at once;
        a file has nothing to gain."""
        del pages

    def open_orders(self) -> list[KnownOrder]:
        """Every order not in a final status, newest first."""
        rows = self._tuples(
            f"SELECT {KNOWN_COLUMNS} FROM orders WHERE is_final = 0 ORDER BY number DESC"
        )
        return [known_from_row(row) for row in rows]

    def open_anchors(self) -> dict[str, int | None]:
        """Id → list anchor of every open order: what a cycle's planning needs, and no more."""
        return dict(self._tuples("SELECT id, anchor FROM orders WHERE is_final = 0"))

    def open_statuses(self) -> dict[str, tuple[str, int | None]]:
        """Id → (status, list anchor) of every open order: what the request budget plans with."""
        rows = self._tuples("SELECT id, status, anchor FROM orders WHERE is_final = 0")
        return {order_id: (status, anchor) for order_id, status, anchor in rows}

    def oldest_open_since(self) -> dict[str, float]:
        """For each open status, when its longest-waiting order entered it."""
        rows = self._query(
            "SELECT status, min(status_since) AS since FROM orders WHERE is_final = 0 "
            "GROUP BY status"
        )
        return {row["status"]: row["since"] for row in rows}

    def status_counts(self) -> dict[str, int]:
        rows = self._query("SELECT status, count(*) AS n FROM orders GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    def record(
        self,
        anchors: Mapping[str, int],
        changes: Sequence[Change],
        deliveries: Sequence[tuple[Event, Sequence[Target]]],
        *,
        anchors_before: Mapping[str, int | None],
        now: float,
        arrivals: int | None = None,
    ) -> list[StoredEvent]:
        """Commit one observed batch at once: orders, events, and their pending deliveries.

        ``anchors`` holds the list anchor of each order seen where its position could be told;
        ``anchors_before`` the anchor the state had for each of those it knew (:meth:`glance`):
        only moved ones are written. ``deliveries`` pairs each event with its targets. A
        ``stuck`` event also counts as an alert sent for its order; a transition clears that
        count.
        """
        changed = {change.order.id for change in changes}
        moved = [
            (anchor, order_id)
            for order_id, anchor in anchors.items()
            if order_id not in changed and order_id in anchors_before
            if anchors_before[order_id] != anchor
        ]
        if not (changes or moved or deliveries or arrivals is not None):
            return []  # an unchanged page: nothing to write, no transaction to open
        stored: list[StoredEvent] = []
        inserts, updates = order_rows(changes, anchors, now)
        with self._transaction(durable=False):  # sync() before they are sent
            if inserts:
                self._executemany(
                    "INSERT INTO orders (number, status, is_final, created_date, "
                    "participant_login, total, id, status_since, since_exact, first_seen, "
                    "anchor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    inserts,
                )
            if updates:
                self._executemany(
                    "UPDATE orders SET number = ?, status = ?, is_final = ?, created_date = ?,"
                    " participant_login = ?, total = ?, status_since = ?, since_exact = 1,"
                    " anchor = coalesce(?, anchor), stuck_alerts = 0, stuck_last = NULL"
                    " WHERE id = ?",
                    updates,
                )
            if moved:
                self._executemany("UPDATE orders SET anchor = ? WHERE id = ?", moved)
            if deliveries:
                stored = self._insert_events(deliveries)
            stuck = [(e.detected_at, e.order.id) for e, _ in deliveries if e.kind == "stuck"]
            if stuck:
                self._executemany(
                    "UPDATE orders SET stuck_alerts = stuck_alerts + 1, stuck_last = ? "
                    "WHERE id = ?",
                    stuck,
                )
            if arrivals is not None:
                self._execute(
                    "INSERT INTO meta (key, value) VALUES ('arrivals', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(arrivals),),
                )
        if stored:
            self._unsynced = True
        return stored

    def set_anchors(self, anchors: Sequence[tuple[str, int]]) -> None:
        """Record list anchors learned after the orders themselves were committed."""
        if anchors:
            with self._transaction(durable=False):
                self._executemany(
                    "UPDATE orders SET anchor = ? WHERE id = ?",
                    [(anchor, order_id) for order_id, anchor in anchors],
                )

    def _insert_events(
        self, deliveries: Sequence[tuple[Event, Sequence[Target]]]
    ) -> list[StoredEvent]:
        """Insert events and their deliveries, two statements however many."""
        seqs = self._reserve_event_seqs(len(deliveries))
        stored = [
            StoredEvent(seq=seq, id=str(uuid.uuid4()), event=event)
            for seq, (event, _) in zip(seqs, deliveries, strict=True)
        ]
        self._executemany(
            "INSERT INTO events (seq, id, kind, order_id, previous_status, status, "
            "previous_since, previous_since_exact, detected_at, after_gap, order_json, "
            "resolves_stuck, reminder, acknowledged, note_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    item.seq,
                    item.id,
                    item.event.kind,
                    item.event.order.id,
                    item.event.previous_status,
                    item.event.order.status,
                    item.event.previous_since,
                    int(item.event.previous_since_exact),
                    item.event.detected_at,
                    int(item.event.after_gap),
                    order_json(item.event.order),
                    int(item.event.resolves_stuck),
                    item.event.reminder,
                    item.event.acknowledged,
                    note_json(item.event.note),
                )
                for item in stored
            ],
        )
        rows = [
            (item.seq, t.route, t.destination_key, t.due_at, int(t.held), t.due_at)
            for item, (_, targets) in zip(stored, deliveries, strict=True)
            for t in targets
        ]
        if rows:
            self._executemany(
                "INSERT INTO deliveries (event_seq, route, destination, state, next_attempt_at,"
                " held, age_from) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                rows,
            )
        return stored

    def order_by_number(self, number: int) -> KnownOrder | None:
        rows = self._tuples(f"SELECT {KNOWN_COLUMNS} FROM orders WHERE number = ?", (number,))
        return known_from_row(rows[0]) if rows else None

    def stuck_recipients(self, order_id: str) -> set[tuple[str, str]]:
        """``(route, destination key)`` of every live delivery of a stuck alert for ``order_id``."""
        rows = self._query(
            "SELECT DISTINCT d.route, d.destination FROM events AS e JOIN deliveries AS d "
            "ON d.event_seq = e.seq WHERE e.order_id = ? AND e.kind = 'stuck' "
            "AND d.state != 'dead'",
            (order_id,),
        )
        return {(row["route"], row["destination"]) for row in rows}

    def export(self) -> Iterable[dict[str, object]]:
        """Every order with its status history (events), oldest order first, for JSON lines.

        Holds no secret: the state never stores URLs or credentials.
        """
        orders = self._query(
            "SELECT id, number, status, created_date, participant_login, total, first_seen, "
            "status_since FROM orders ORDER BY number"
        )
        for order in orders:
            history = self._query(
                "SELECT id, kind, previous_status, status, detected_at, after_gap FROM events "
                "WHERE order_id = ? ORDER BY seq",
                (order["id"],),
            )
            yield {
                "id": order["id"],
                "number": order["number"],
                "status": order["status"],
                "createdDate": order["created_date"],
                "participantLogin": order["participant_login"],
                "total": order["total"],
                "first_seen": order["first_seen"],
                "status_since": order["status_since"],
                "history": [
                    {
                        "event_id": event["id"],
                        "type": event["kind"],
                        "previous_status": event["previous_status"],
                        "status": event["status"],
                        "detected_at": event["detected_at"],
                        "after_gap": bool(event["after_gap"]),
                    }
                    for event in history
                ],
            }
