"""Change detection: what orderwatch knew of some orders + what the API showed → changes, events.

Pure functions over plain data: no HTTP, no SQL, no clock (``now`` is an argument). The rules:

- an order the state does not know is a :class:`NewOrder`;
- a known order whose observed status differs from the remembered one is a :class:`Transition`,
  whatever the direction (nothing promises statuses only move forward);
- anything else is no change. An order observed twice in one batch counts once, as its last
  observation: one event per order per observed change, never more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from orderwatch._models import Order

__all__ = [
    "EVENT_KINDS",
    "NO_ORDER_KINDS",
    "Change",
    "Event",
    "EventKind",
    "KnownOrder",
    "NewOrder",
    "Note",
    "Transition",
    "detect_changes",
    "events_for",
    "settled",
]

# The one list of event kinds. "watcher" (the watcher's own notices) and "summary" (a route's
# summary) concern no one order: they carry a Note instead, and their ``order`` is NO_ORDER.
EventKind = Literal["created", "status_changed", "stuck", "watcher", "summary"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = get_args(EventKind)
NO_ORDER_KINDS: Final[frozenset[EventKind]] = frozenset({"watcher", "summary"})


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """What the state remembers of an order.

    ``status_since`` is when orderwatch saw the order enter ``order.status`` (or first saw it,
    when ``since_exact`` is false). ``anchor`` is the order's list index minus the arrivals
    counter at the time it was seen: its index now is predicted as ``anchor + arrivals``.
    """

    order: Order
    status_since: float
    since_exact: bool
    anchor: int | None
    stuck_alerts: int = 0
    stuck_last: float | None = None


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order the state did not know."""

    order: Order


@dataclass(frozen=True, slots=True)
class Transition:
    """A known order observed in another status than the remembered one."""

    order: Order
    previous: KnownOrder

    @property
    def previous_status(self) -> str:
        return self.previous.order.status


Change = NewOrder | Transition


@dataclass(frozen=True, slots=True)
class Note:
    """The message of an event that concerns no order: a watcher notice (``case`` is one of
    ``_watcher.WATCHER_CASES``) or a summary (``case`` is ``"summary"``); ``data`` is what a
    webhook receives beside it. ``about`` is the route (or webhook) it concerns: a summary's
    own route, or the one a ``destination_*`` notice is about."""

    case: str
    title: str
    body: str
    data: dict[str, object] = field(default_factory=dict)
    about: str | None = None


NO_ORDER: Final = Order(id="", number=0, status="")


@dataclass(frozen=True, slots=True)
class Event:
    """Something to announce. ``previous_since`` is when the previous status was first seen.

    ``after_gap`` marks a change observed across a stop of the daemon: statuses the order went
    through while nobody watched may be missing. ``resolves_stuck``: a transition out of a
    status the order had been reported stuck in. For a ``stuck`` event ``previous_since`` is
    when the order entered its current status and ``reminder`` counts the alerts before it.
    """

    kind: EventKind
    order: Order
    previous_status: str | None
    previous_since: float | None
    previous_since_exact: bool
    detected_at: float
    after_gap: bool
    resolves_stuck: bool = False
    reminder: int = 0
    acknowledged: str | None = None  # "acknowledged by Anna at …", for stuck alerts' ends
    note: Note | None = None

    @classmethod
    def about(cls, kind: EventKind, note: Note, now: float) -> Event:
        """An event that concerns no order (a watcher notice, a summary)."""
        return cls(
            kind,
            NO_ORDER,
            previous_status=None,
            previous_since=None,
            previous_since_exact=False,
            detected_at=now,
            after_gap=False,
            note=note,
        )


def detect_changes(known: Mapping[str, KnownOrder], observed: Iterable[Order]) -> list[Change]:
    """The changes between ``known`` and ``observed``, one per order at most, in observation order.

    ``known`` must hold every observed id the state knows; an id missing from it is new.
    """
    latest: dict[str, Order] = {}
    for order in observed:
        latest.pop(order.id, None)  # a repeated id moves to its last observation's place
        latest[order.id] = order
    changes: list[Change] = []
    for order_id, order in latest.items():
        before = known.get(order_id)
        if before is None:
            changes.append(NewOrder(order))
        elif before.order.status != order.status:
            changes.append(Transition(order, before))
    return changes


def settled(remembered: Mapping[str, str], observed: Iterable[Order]) -> set[str]:
    """The observed ids whose every observation shows the status ``remembered`` (id → status)
    holds: no change can be detected for them, so their full records need not be read.
    Pass :func:`detect_changes` the rest, with the full records of the known ones among them.
    """
    seen: set[str] = set()
    differing: set[str] = set()
    for order in observed:
        status = remembered.get(order.id)
        if status is not None:
            (seen if status == order.status else differing).add(order.id)
    return seen - differing


def events_for(
    changes: Sequence[Change],
    *,
    announce_new: bool,
    after_gap: bool,
    now: float,
    newer_than: int | None = None,
) -> list[Event]:
    """The events to announce for ``changes``.

    Every transition is announced. A new order is announced when ``announce_new`` is true, or
    when its number is above ``newer_than`` (during the first sync: the newest order when it
    began, so that orders arriving while it walks are announced, and older ones are not).
    """
    events: list[Event] = []
    for change in changes:
        if isinstance(change, Transition):
            events.append(
                Event(
                    kind="status_changed",
                    order=change.order,
                    previous_status=change.previous_status,
                    previous_since=change.previous.status_since,
                    previous_since_exact=change.previous.since_exact,
                    detected_at=now,
                    after_gap=after_gap,
                    resolves_stuck=change.previous.stuck_alerts > 0,
                )
            )
        elif announce_new or (newer_than is not None and change.order.number > newer_than):
            events.append(
                Event(
                    kind="created",
                    order=change.order,
                    previous_status=None,
                    previous_since=None,
                    previous_since_exact=False,
                    detected_at=now,
                    after_gap=False,
                )
            )
    return events
