"""Acknowledgements of stuck orders and silences of routes (the rules: ``_silences``)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any

from orderwatch._silences import Ack, Silence
from orderwatch._store._base import Database

__all__ = ["Acks"]


def _ack(row: Any) -> Ack:  # noqa: ANN401 - a row by column name, either driver's
    until = math.inf if row["until"] is None else row["until"]
    return Ack(
        row["order_id"],
        row["number"],
        row["status"],
        row["since"],
        row["at"],
        until,
        row["by"],
        row["comment"],
    )


def _listed(values: frozenset[str] | frozenset[int] | None) -> str | None:
    return None if values is None else json.dumps(sorted(values))


def _read(text: str | None) -> frozenset[Any] | None:
    return None if text is None else frozenset(json.loads(text))


class Acks(Database):
    def add_ack(self, ack: Ack) -> None:
        """Record ``ack`` (a second one for the same episode replaces the first)."""
        with self._transaction():
            self._execute(
                "INSERT INTO acks (order_id, number, status, since, at, until, by, comment) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id, status, since) "
                "DO UPDATE SET number = excluded.number, at = excluded.at, "
                "until = excluded.until, by = excluded.by, comment = excluded.comment",
                (
                    ack.order_id,
                    ack.number,
                    ack.status,
                    ack.since,
                    ack.at,
                    None if ack.until == math.inf else ack.until,
                    ack.by,
                    ack.comment,
                ),
            )

    def acks(self, order_ids: Collection[str] | None = None) -> list[Ack]:
        """Acknowledgements of open orders (of ``order_ids`` only, if given), newest last."""
        rows = self._query(
            "SELECT a.* FROM acks AS a JOIN orders AS o ON o.id = a.order_id "
            "WHERE o.is_final = 0 ORDER BY a.at"
        )
        found = [_ack(row) for row in rows]
        return found if order_ids is None else [a for a in found if a.order_id in order_ids]

    def ack_of_episode(self, order_id: str, status: str, since: float) -> Ack | None:
        """The latest acknowledgement of one stuck episode, expired or not."""
        rows = self._query(
            "SELECT * FROM acks WHERE order_id = ? AND status = ? AND abs(since - ?) < 0.001 "
            "ORDER BY at DESC LIMIT 1",
            (order_id, status, since),
        )
        return _ack(rows[0]) if rows else None

    def add_silence(self, silence: Silence) -> int:
        """Record ``silence``; its id."""
        with self._transaction():
            [row] = self._query(
                "INSERT INTO silences (statuses, orders, routes, events, created_at, ends_at, "
                "comment, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    _listed(silence.statuses),
                    _listed(silence.orders),
                    _listed(silence.routes),
                    _listed(silence.events),
                    silence.created_at,
                    silence.ends_at,
                    silence.comment,
                    silence.created_by,
                ),
            )
        return int(row["id"])

    def silences(self, *, active_at: float | None = None) -> list[Silence]:
        """Every silence, or those still active at ``active_at``, oldest first."""
        rows = self._query(
            "SELECT * FROM silences WHERE ends_at > ? ORDER BY id",
            (-math.inf if active_at is None else active_at,),
        )
        return [
            Silence(
                id=r["id"],
                ends_at=r["ends_at"],
                statuses=_read(r["statuses"]),
                orders=_read(r["orders"]),
                routes=_read(r["routes"]),
                events=_read(r["events"]),
                comment=r["comment"],
                created_at=r["created_at"],
                created_by=r["created_by"],
            )
            for r in rows
        ]

    def expire_silence(self, silence: int, *, now: float) -> bool:
        """End silence ``silence`` now; False when there is no such active silence."""
        with self._transaction():
            changed = self._execute(
                "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?", (now, silence, now)
            )
        return changed > 0
