"""The outbox: pending, sent, dead and silenced deliveries, disabled webhooks, and who delivers
what.

- A delivery leaves ``pending`` only through :meth:`Deliveries.mark_sent` (after the
  destination accepted it) or :meth:`Deliveries.mark_dead`. A crash at any moment leaves it
  pending.
- Several instances share one outbox: each destination is delivered by one instance at a time,
  the holder of its claim (:meth:`Deliveries.claim`), so that a route's pace, its digests and
  its order hold across instances. A claim expires unless renewed: a dead instance's
  destinations are taken over then.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from orderwatch._store._base import DATABASE_NOW as _NOW
from orderwatch._store._base import Database
from orderwatch._store._records import Delivery, delivery_from_row

__all__ = ["Deliveries", "SharedDeliveries"]

_DELIVERY_SELECT: Final = (
    "SELECT d.route, d.destination, d.attempts, d.next_attempt_at, d.held, d.state, "
    "d.last_error, coalesce(d.age_from, e.detected_at) AS age_from, e.* "
    "FROM deliveries AS d JOIN events AS e ON e.seq = d.event_seq "
)


def _selection(event_id: str | None, route: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if event_id is not None:
        clauses.append("event_seq = (SELECT seq FROM events WHERE id = ?)")
        params.append(event_id)
    if route is not None:
        clauses.append("route = ?")
        params.append(route)
    return (" AND ".join(clauses) or "1 = 1"), params


class Deliveries(Database):
    def pending_deliveries(self, limit: int = 1000) -> list[Delivery]:
        """Pending deliveries, oldest event first within each destination."""
        rows = self._query(
            _DELIVERY_SELECT + "WHERE d.state = 'pending' "
            "ORDER BY d.destination, d.event_seq LIMIT ?",
            (limit,),
        )
        return [delivery_from_row(row) for row in rows]

    def pending_deliveries_for(self, destination_key: str, limit: int = 1000) -> list[Delivery]:
        """One destination's pending deliveries, oldest event first."""
        rows = self._query(
            _DELIVERY_SELECT + "WHERE d.state = 'pending' AND d.destination = ? "
            "ORDER BY d.event_seq LIMIT ?",
            (destination_key, limit),
        )
        return [delivery_from_row(row) for row in rows]

    def pending_destinations(self) -> list[str]:
        """The keys of the destinations that have pending deliveries."""
        rows = self._query("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")
        return [row["destination"] for row in rows]

    def deliveries(self, states: Collection[str] = ("pending", "dead")) -> list[Delivery]:
        """Deliveries in ``states``, in detection order (for ``orderwatch outbox list``)."""
        marks = ",".join("?" * len(states))
        rows = self._query(
            _DELIVERY_SELECT + f"WHERE d.state IN ({marks}) ORDER BY d.event_seq, d.route",
            list(states),
        )
        return [delivery_from_row(row) for row in rows]

    def _update(self, deliveries: Sequence[Delivery], sql: str, values: Sequence[object]) -> None:
        with self._transaction():
            self._executemany(
                f"{sql} WHERE event_seq = ? AND destination = ? AND state = 'pending'",
                [(*values, d.stored.seq, d.destination_key) for d in deliveries],
            )

    def mark_sent(self, deliveries: Sequence[Delivery], *, now: float) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, last_error = NULL, "
            "done_at = ?",
            (now,),
        )

    def mark_dead(self, deliveries: Sequence[Delivery], error: str, *, now: float) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?, "
            "done_at = ?",
            (error, now),
        )

    def mark_silenced(self, deliveries: Sequence[Delivery], silence: int, *, now: float) -> None:
        """Record deliveries as silenced (by silence ``silence``) instead of sending them."""
        self._update(
            deliveries,
            "UPDATE deliveries SET state = 'silenced', silenced_by = ?, done_at = ?",
            (silence, now),
        )

    def mark_retry(
        self, deliveries: Sequence[Delivery], error: str, *, next_attempt_at: float
    ) -> None:
        self._update(
            deliveries,
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?",
            (error, next_attempt_at),
        )

    def requeue(self, *, event_id: str | None = None, route: str | None = None, now: float) -> int:
        """Make matching pending or dead deliveries due now, their age limit starting again."""
        where, params = _selection(event_id, route)
        with self._transaction():
            return self._execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, age_from = ?, "
                f"done_at = NULL WHERE state IN ('pending', 'dead') AND {where}",
                (now, now, *params),
            )

    def drop(self, *, event_id: str | None = None, route: str | None = None) -> int:
        """Delete matching pending or dead deliveries (their events stay in the history)."""
        where, params = _selection(event_id, route)
        with self._transaction():
            return self._execute(
                f"DELETE FROM deliveries WHERE state IN ('pending', 'dead') AND {where}", params
            )

    def disable_webhook(self, destination_key: str, name: str, reason: str, *, now: float) -> int:
        """Record webhook ``destination_key`` as disabled; dead-letter its pending deliveries."""
        with self._transaction():
            self._execute(
                "INSERT INTO disabled_webhooks (destination, name, reason, disabled_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET name = excluded.name,"
                " reason = excluded.reason, disabled_at = excluded.disabled_at",
                (destination_key, name, reason, now),
            )
            return self._execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?, done_at = ? "
                "WHERE destination = ? AND state = 'pending'",
                (reason, now, destination_key),
            )

    def disabled_webhooks(self) -> dict[str, tuple[str, str, float]]:
        """``destination key → (name, reason, since)`` for every disabled webhook."""
        rows = self._query("SELECT * FROM disabled_webhooks ORDER BY name")
        return {r["destination"]: (r["name"], r["reason"], r["disabled_at"]) for r in rows}

    def forget_disabled_except(self, destination_keys: Collection[str]) -> None:
        """A webhook whose configuration changed is enabled again: forget stale entries."""
        marks = ",".join("?" * len(destination_keys)) or "NULL"
        with self._transaction():
            self._execute(
                f"DELETE FROM disabled_webhooks WHERE destination NOT IN ({marks})",
                list(destination_keys),
            )

    def make_pending_due(self, now: float) -> int:
        """Make every pending delivery due now (at start: the operator may have fixed things)."""
        with self._transaction():
            return self._execute(
                "UPDATE deliveries SET next_attempt_at = ? "
                "WHERE state = 'pending' AND held = 0 AND next_attempt_at > ?",
                (now, now),
            )

    def queue_counts(self) -> dict[str, int]:
        # One count per state, each through its partial index: sent rows are never scanned.
        return {
            state: self._query(f"SELECT count(*) AS n FROM deliveries WHERE state = '{state}'")[0][
                "n"
            ]
            for state in ("pending", "dead")
        }

    def silenced_count(self) -> int:
        return int(
            self._query("SELECT count(*) AS n FROM deliveries WHERE state = 'silenced'")[0]["n"]
        )

    # -- claims: one instance delivers a destination at a time -------------------------------

    def claim(self, destination_key: str, holder: str, *, ttl: float) -> bool:
        """Claim (or renew the claim on) destination ``destination_key`` for ``ttl`` seconds;
        False when another holder's claim on it has not expired. A single-instance store always
        grants."""
        del destination_key, holder, ttl
        return True

    def release_claims(self, holder: str, destination_keys: Collection[str] = ()) -> None:
        """Give up ``holder``'s claims (on ``destination_keys``, or all): another instance may
        deliver them at once."""
        del holder, destination_keys


class SharedDeliveries(Deliveries):
    """Claims in the ``destination_claims`` table of a database several instances share."""

    def claim(self, destination_key: str, holder: str, *, ttl: float) -> bool:
        # A conditional upsert: taken when free, renewed by its holder, taken over once expired.
        with self._transaction():
            return bool(
                self._query(
                    "INSERT INTO destination_claims (destination, holder, expires_at) "
                    f"VALUES (?, ?, {_NOW} + ?) "
                    "ON CONFLICT (destination) DO UPDATE SET holder = excluded.holder, "
                    "expires_at = excluded.expires_at "
                    "WHERE destination_claims.holder = excluded.holder "
                    f"OR destination_claims.expires_at <= {_NOW} "
                    "RETURNING holder",
                    (destination_key, holder, ttl),
                )
            )

    def release_claims(self, holder: str, destination_keys: Collection[str] = ()) -> None:
        marks = ",".join("?" * len(destination_keys))
        where = f" AND destination IN ({marks})" if destination_keys else ""
        with self._transaction():
            self._execute(
                f"DELETE FROM destination_claims WHERE holder = ?{where}",
                (holder, *destination_keys),
            )
