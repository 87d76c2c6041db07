"""Stuck orders: which open orders have stayed too long in a status. Pure.

A rule ``(status, after, repeat)`` fires an ``order.stuck`` event when an order has been in
``status`` for longer than ``after`` (measured from when orderwatch saw it enter the status, or
first saw it), then every ``repeat`` while it stays there, unless someone acknowledged that stay
(``orderwatch ack``, the ack page) and the acknowledgement has not expired. The state that makes
this survive a restart (alerts sent, time of the last one, acknowledgements) is in the state file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orderwatch._detect import Event, KnownOrder
from orderwatch._silences import Ack, active_ack

__all__ = ["StuckRule", "stuck_events"]


@dataclass(frozen=True, slots=True)
class StuckRule:
    status: str
    after: float
    repeat: float | None = None


def stuck_events(
    open_orders: Iterable[KnownOrder],
    rules: Sequence[StuckRule],
    now: float,
    acks: Sequence[Ack] = (),
) -> list[Event]:
    """The ``stuck`` events due ``now``: a first alert, or a reminder ``repeat`` after the last.
    An order whose stay in its status is acknowledged (``acks``, until they expire) gets none."""
    by_status = {rule.status: rule for rule in rules}
    events: list[Event] = []
    for known in open_orders:
        rule = by_status.get(known.order.status)
        if rule is None or now - known.status_since < rule.after:
            continue
        if active_ack(acks, known.order.id, known.order.status, known.status_since, now):
            continue
        if known.stuck_alerts:
            last = known.stuck_last if known.stuck_last is not None else known.status_since
            if rule.repeat is None or now - last < rule.repeat:
                continue
        events.append(
            Event(
                kind="stuck",
                order=known.order,
                previous_status=None,
                previous_since=known.status_since,
                previous_since_exact=known.since_exact,
                detected_at=now,
                after_gap=False,
                reminder=known.stuck_alerts,
            )
        )
    return events
