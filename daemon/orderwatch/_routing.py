"""Routing: which destinations an event goes to, and when. Pure functions over plain data.

A route (apprise URLs, for people) or a webhook (for machines) matches an event by the event's
new ``status``, its previous status (``from_statuses``) and its type (``events``); no filter
means everything. For a route, a matched event is due after ``group_wait`` (so that a burst can
become one digest), or, during its quiet hours, at their end (held, then sent as one digest),
unless its status is listed as ``urgent``. A webhook's delivery is due at once.

Once due, a route's waiting deliveries go as one digest when there are more than
``digest_threshold`` of them or any was held for quiet hours; otherwise one message each.
Webhooks never get a digest, and watcher notices and summaries are never part of one.

A transition out of a status an order was reported stuck in (a resolution) also goes to every
destination that got the stuck alert, whatever its filters: whoever was told of the problem
is told it is over. A disabled webhook gets nothing.

Events that concern no order (``watcher`` notices, ``summary``) pass status filters. A summary
goes to the route ``[[notify.summaries]]`` names and nowhere else; a notice that a route or
webhook is failing goes to the others.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Final, Protocol, TypeVar
from zoneinfo import ZoneInfo

from orderwatch._detect import NO_ORDER_KINDS, Event, EventKind

__all__ = [
    "Filters",
    "QuietHours",
    "RoutePolicy",
    "parse_duration",
    "plan_delivery",
    "recipients",
    "sends_as_digest",
    "sent_alone",
]


class Recipient(Protocol):
    """What routing needs of a destination: its key, its route's (or webhook's) name and its
    filters' verdict."""

    @property
    def key(self) -> str: ...

    @property
    def route(self) -> str: ...

    def accepts(self, event: Event) -> bool: ...


R = TypeVar("R", bound=Recipient)


def recipients(
    event: Event, destinations: Sequence[R], *, disabled: Container[str], alerted: Collection[str]
) -> list[R]:
    """Who is told of ``event``: the destinations that accept it and, for a resolution, those
    among ``alerted`` (the keys that got the order's stuck alert); never a ``disabled`` one.
    A summary goes to its own route alone, whatever the route's filters; a notice that a route
    or webhook is failing goes to every *other* one."""
    return [d for d in destinations if d.key not in disabled and _told(event, d, alerted)]


def _told(event: Event, destination: Recipient, alerted: Collection[str]) -> bool:
    about = event.note.about if event.note is not None else None
    if event.kind == "summary":
        return destination.route == about
    if about is not None and destination.route == about:
        return False  # it would not hear that it fails
    return destination.accepts(event) or (event.resolves_stuck and destination.key in alerted)


def sent_alone(event: Event) -> bool:
    """Whether ``event`` always goes as a message of its own, never in a digest: a watcher
    notice or a summary (its text is made already, and a digest would bury it)."""
    return event.note is not None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"90s"``, ``"2h"``, ``"1h30m"``, ``"1d"``.

    Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError('must be a duration such as 30, "90s", "2h" or "1d"')  # noqa: TRY004
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION.findall(text)
        if parts and _DURATION.sub("", text).strip() == "":
            return sum(float(number) * _UNITS[unit.lower()] for number, unit in parts)
    raise ValueError('must be a duration such as 30, "90s", "2h" or "1d"')


@dataclass(frozen=True, slots=True)
class Filters:
    """An event matches when it passes every filter that is set (None: no filter)."""

    statuses: frozenset[str] | None = None
    from_statuses: frozenset[str] | None = None
    events: frozenset[EventKind] | None = None

    def accepts(self, kind: str, status: str, previous_status: str | None) -> bool:
        if self.events is not None and kind not in self.events:
            return False
        if kind in NO_ORDER_KINDS:  # they concern no order: status filters pass them
            return True
        if self.statuses is not None and status not in self.statuses:
            return False
        return self.from_statuses is None or previous_status in self.from_statuses


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, e.g. 22:00-08:00 in Europe/Moscow (it may span midnight)."""

    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, window: str, timezone: str) -> QuietHours:
        """Raises ValueError with a readable reason."""
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", window)
        if not match:
            raise ValueError('must look like "22:00-08:00"')
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise ValueError('must be two different times of day, like "22:00-08:00"')
        return cls(time(h1, m1), time(h2, m2), ZoneInfo(timezone))

    def end_of_quiet(self, moment: float) -> float | None:
        """If ``moment`` (Unix time) falls in the window, when the window ends; else None."""
        local = datetime.fromtimestamp(moment, UTC).astimezone(self.zone)
        clock = local.time().replace(tzinfo=None)
        spans_midnight = self.start > self.end
        inside = (
            (clock >= self.start or clock < self.end)
            if spans_midnight
            else self.start <= clock < self.end
        )
        if not inside:
            return None
        end_day = local.date()
        if spans_midnight and clock >= self.start:
            end_day += timedelta(days=1)
        end = datetime.combine(end_day, self.end, tzinfo=self.zone)
        return end.timestamp()


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """When a route's matched events go out. Webhooks use the defaults: at once, one by one."""

    group_wait: float = 0.0
    digest_threshold: int | None = None  # None: never a digest (webhooks)
    quiet_hours: QuietHours | None = None
    urgent: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """When a delivery is first due, and whether it is held for the end of quiet hours."""

    due_at: float
    held: bool


def plan_delivery(policy: RoutePolicy, status: str, now: float) -> DeliveryPlan:
    """The first due time of a delivery of an event (new status ``status``) detected ``now``."""
    if policy.quiet_hours is not None and status not in policy.urgent:
        quiet_end = policy.quiet_hours.end_of_quiet(now)
        if quiet_end is not None:
            return DeliveryPlan(due_at=quiet_end, held=True)
    return DeliveryPlan(due_at=now + policy.group_wait, held=False)


def sends_as_digest(policy: RoutePolicy, waiting: int, *, held: bool) -> bool:
    """Whether ``waiting`` due deliveries to one destination (none of them :func:`sent_alone`)
    go as one digest: more than the policy's ``digest_threshold``, or any ``held`` for quiet
    hours. Never a single delivery, never with no threshold (webhooks)."""
    if waiting < 2 or policy.digest_threshold is None:
        return False
    return held or waiting > policy.digest_threshold
