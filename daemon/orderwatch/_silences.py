"""Silences and acknowledgements: which deliveries are held back, which reminders stop. Pure.

- A :class:`Silence` matches a delivery to a *route* when every matcher it sets matches
  (``status``, ``order``, ``route``, ``event``; several values of one matcher: any of them) and
  it has not expired. A matching delivery is recorded as silenced instead of being sent.
  Webhooks are never silenced: machines must see everything.
- An :class:`Ack` stops the stuck reminders of one order for one *episode* (the order's stay in
  one status, named by the status and when orderwatch saw it enter it) until it expires. When
  the order leaves the status, the episode is over and so is the acknowledgement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Ack", "Silence", "active_ack", "matching_silence"]


@dataclass(frozen=True, slots=True)
class Silence:
    """``None`` for a matcher that is not set; a silence sets at least one."""

    id: int
    ends_at: float
    statuses: frozenset[str] | None = None
    orders: frozenset[int] | None = None
    routes: frozenset[str] | None = None
    events: frozenset[str] | None = None
    comment: str | None = None
    created_at: float = 0.0
    created_by: str | None = None

    def matches(self, *, route: str, kind: str, status: str | None, number: int | None) -> bool:
        checks = (
            (self.statuses, status),
            (self.orders, number),
            (self.routes, route),
            (self.events, kind),
        )
        return all(wanted is None or value in wanted for wanted, value in checks)

    def active(self, now: float) -> bool:
        return now < self.ends_at

    def describe(self) -> str:
        """``status=Cancelled order=3048`` — the matchers in the CLI's words."""
        parts = [
            f"{name}={','.join(str(v) for v in sorted(values))}"
            for name, values in (
                ("status", self.statuses),
                ("order", self.orders),
                ("route", self.routes),
                ("event", self.events),
            )
            if values is not None
        ]
        return " ".join(parts)


def matching_silence(
    silences: Iterable[Silence],
    *,
    route: str,
    kind: str,
    status: str | None,
    number: int | None,
    now: float,
) -> Silence | None:
    """The first active silence that holds back a delivery of this event to route ``route``."""
    for silence in silences:
        if silence.active(now) and silence.matches(
            route=route, kind=kind, status=status, number=number
        ):
            return silence
    return None


@dataclass(frozen=True, slots=True)
class Ack:
    """Someone is handling order ``order_id``, stuck in ``status`` since ``since``."""

    order_id: str
    number: int
    status: str
    since: float
    at: float
    until: float
    by: str | None = None
    comment: str | None = None

    def covers(self, status: str, since: float, now: float) -> bool:
        """Whether it still silences the order's reminders: same episode, not expired."""
        return self.status == status and abs(self.since - since) < 0.001 and now < self.until

    def describe(self) -> str:
        """``acknowledged by Anna`` (or ``acknowledged``), with the comment if there is one."""
        text = f"acknowledged by {self.by}" if self.by else "acknowledged"
        return text + (f' ("{self.comment}")' if self.comment else "")

    def describe_when(self) -> str:
        """``acknowledged by Anna at 2026-01-05 10:02 UTC ("on it")``."""
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = f"acknowledged by {self.by}" if self.by else "acknowledged"
        return f"{text} at {when}" + (f' ("{self.comment}")' if self.comment else "")


def active_ack(
    acks: Iterable[Ack], order_id: str, status: str, since: float, now: float
) -> Ack | None:
    """The acknowledgement that covers this order's current episode, if any."""
    for ack in acks:
        if ack.order_id == order_id and ack.covers(status, since, now):
            return ack
    return None
