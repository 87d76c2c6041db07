"""What the store hands out and takes in, and how a row becomes one (the same for both backends)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from orderwatch._detect import Change, Event, KnownOrder, NewOrder, Note
from orderwatch._models import Order, is_final

__all__ = [
    "KNOWN_COLUMNS",
    "Delivery",
    "StoredEvent",
    "Target",
    "delivery_from_row",
    "event_from_row",
    "known_from_row",
    "note_json",
    "order_json",
    "order_rows",
]


@dataclass(frozen=True, slots=True)
class Target:
    """Where and when one event is to be delivered. ``destination_key`` is the destination's
    ``key`` (a hash, never its URL); the tables call it ``destination``."""

    route: str
    destination_key: str
    due_at: float
    held: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event with the identity the store gave it (``id`` is stable across retries)."""

    seq: int
    id: str
    event: Event


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of one event to one destination. ``age_from`` starts its age limit."""

    stored: StoredEvent
    route: str
    destination_key: str
    attempts: int
    next_attempt_at: float
    held: bool = False
    age_from: float = 0.0
    state: str = "pending"
    last_error: str | None = None


def order_json(order: Order) -> str:
    return json.dumps(
        {
            "id": order.id,
            "number": order.number,
            "status": order.status,
            "createdDate": order.created_date,
            "participantLogin": order.participant_login,
            "total": None if order.total is None else str(order.total),
        }
    )


def _order_from_json(text: str) -> Order:
    data = json.loads(text)
    total = data.get("total")
    return Order(
        id=data["id"],
        number=data["number"],
        status=data["status"],
        created_date=data.get("createdDate"),
        participant_login=data.get("participantLogin"),
        total=None if total is None else Decimal(total),
    )


KNOWN_COLUMNS: Final = (
    "id, number, status, created_date, participant_login, total, status_since, since_exact, "
    "anchor, stuck_alerts, stuck_last"
)


def _note(text: str | None) -> Note | None:
    if not text:
        return None
    data = json.loads(text)
    return Note(
        data["case"], data["title"], data["body"], data.get("data") or {}, data.get("about")
    )


def note_json(note: Note | None) -> str | None:
    """How an event's note is stored (None: the event concerns an order)."""
    if note is None:
        return None
    return json.dumps(
        {
            "case": note.case,
            "title": note.title,
            "body": note.body,
            "data": note.data,
            "about": note.about,
        },
        ensure_ascii=False,
    )


def event_from_row(row: Any) -> Event:  # noqa: ANN401 - a row by column name, either driver's
    return Event(
        kind=row["kind"],
        order=_order_from_json(row["order_json"]),
        previous_status=row["previous_status"],
        previous_since=row["previous_since"],
        previous_since_exact=bool(row["previous_since_exact"]),
        detected_at=row["detected_at"],
        after_gap=bool(row["after_gap"]),
        resolves_stuck=bool(row["resolves_stuck"]),
        reminder=row["reminder"],
        acknowledged=row["acknowledged"],
        note=_note(row["note_json"]),
    )


def delivery_from_row(row: Any) -> Delivery:  # noqa: ANN401 - a row by column name, either driver's
    return Delivery(
        stored=StoredEvent(seq=row["seq"], id=row["id"], event=event_from_row(row)),
        route=row["route"],
        destination_key=row["destination"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        held=bool(row["held"]),
        age_from=row["age_from"],
        state=row["state"],
        last_error=row["last_error"],
    )


def known_from_row(row: Sequence[Any]) -> KnownOrder:
    """A row of ``KNOWN_COLUMNS`` (a plain tuple where speed counts: one per order a page)."""
    (order_id, number, status, created, login, total, since, exact, anchor, alerts, last) = row
    return KnownOrder(
        Order(order_id, number, status, created, login, None if total is None else Decimal(total)),
        since,
        bool(exact),
        anchor,
        alerts,
        last,
    )


def order_rows(
    changes: Sequence[Change], anchors: Mapping[str, int], now: float
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The parameters of the INSERTs (new orders) and UPDATEs (transitions) ``changes`` need."""
    inserts: list[tuple[object, ...]] = []
    updates: list[tuple[object, ...]] = []
    for change in changes:
        order = change.order
        fields = (
            order.number,
            order.status,
            int(is_final(order.status)),
            order.created_date,
            order.participant_login,
            None if order.total is None else str(order.total),
        )
        if isinstance(change, NewOrder):
            inserts.append((*fields, order.id, now, now, anchors.get(order.id)))
        else:
            updates.append((*fields, now, anchors.get(order.id), order.id))
    return inserts, updates
