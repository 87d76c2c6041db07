"""Summaries: when a route's daily or weekly summary is due, what it counts, what it says. Pure.

A :class:`SummarySchedule` (``every = "day"`` or ``"week"``, weeks starting on Monday, ``at``
in ``timezone``) names the moments a summary is due. A summary covers the time since the
previous one (or one period, the first time): orders that came in, transitions counted by the
new status, orders delivered and cancelled with their totals, orders open now by status, the
stuck ones (with who acknowledged them), and the time from ``Created`` to ``Delivered`` (median
and p95) of the orders delivered in the period whose creation orderwatch saw.

The caller reads the period's events from the state and passes the clock; nothing here does.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from orderwatch._detect import Event, KnownOrder
from orderwatch._messages import format_duration, render_problem, template_environment
from orderwatch._models import FINAL_STATUSES, KNOWN_STATUSES
from orderwatch._silences import Ack

__all__ = [
    "StuckOrder",
    "Summary",
    "SummarySchedule",
    "SummaryTemplates",
    "due_period",
    "summarize",
    "summary_context",
    "summary_template_problem",
    "summary_text",
]


@dataclass(frozen=True, slots=True)
class SummarySchedule:
    """``every`` day or week (Mondays) at ``at`` in ``zone``."""

    every: Literal["day", "week"]
    at: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, every: str, at: str, timezone: str) -> SummarySchedule:
        """Raises ValueError with a readable reason."""
        if every not in {"day", "week"}:
            raise ValueError('every must be "day" or "week"')
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", at)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError('at must be a time of day like "09:00"')
        return cls(every, time(int(match[1]), int(match[2])), ZoneInfo(timezone))  # type: ignore[arg-type]

    def _moment(self, day: date) -> float:
        return datetime.combine(day, self.at, tzinfo=self.zone).timestamp()

    def last_due(self, now: float) -> float:
        """The latest moment a summary was due at or before ``now``."""
        today = datetime.fromtimestamp(now, UTC).astimezone(self.zone).date()
        if self.every == "week":
            today -= timedelta(days=today.weekday())
        step = timedelta(days=7 if self.every == "week" else 1)
        moment = self._moment(today)
        while moment > now:
            today -= step
            moment = self._moment(today)
        return moment

    def next_due(self, now: float) -> float:
        """The first moment a summary is due after ``now``."""
        last = self.last_due(now)
        day = datetime.fromtimestamp(last, UTC).astimezone(self.zone).date()
        return self._moment(day + timedelta(days=7 if self.every == "week" else 1))

    def previous(self, moment: float) -> float:
        """The due moment one period before ``moment`` (itself a due moment)."""
        day = datetime.fromtimestamp(moment, UTC).astimezone(self.zone).date()
        return self._moment(day - timedelta(days=7 if self.every == "week" else 1))


def due_period(
    schedule: SummarySchedule, last_end: float | None, now: float
) -> tuple[float, float] | None:
    """The period ``(start, end)`` whose summary is due ``now``, given the end of the last one
    sent (``None``: never); None when nothing is due. Several periods missed while the daemon
    was stopped make one summary, since the last one sent: sent once, not once each."""
    end = schedule.last_due(now)
    if last_end is None:
        return None  # the first start only sets the clock going: summaries start from here
    if last_end >= end:
        return None
    return last_end, end


@dataclass(frozen=True, slots=True)
class StuckOrder:
    """An open order reported stuck, and who acknowledged it, if anyone."""

    number: int
    status: str
    since: float
    ack: Ack | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """What a summary counts, for the period ``start`` … ``end``."""

    start: float
    end: float
    new_orders: int = 0
    transitions: Mapping[str, int] = field(default_factory=dict)  # new status → count
    delivered: int = 0
    delivered_total: Decimal = Decimal(0)
    cancelled: int = 0
    cancelled_total: Decimal = Decimal(0)
    open_now: Mapping[str, int] = field(default_factory=dict)
    stuck: Sequence[StuckOrder] = ()
    delivery_median: float | None = None
    delivery_p95: float | None = None
    delivery_measured: int = 0  # delivered orders whose creation orderwatch saw


def _p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile (an observed value, never an interpolation)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def summarize(
    *,
    start: float,
    end: float,
    events: Iterable[Event],
    created_at: Mapping[str, float],
    open_orders: Iterable[KnownOrder],
    stuck: Sequence[StuckOrder] = (),
) -> Summary:
    """Count ``events`` detected in ``start`` < t ≤ ``end``. ``created_at``: when orderwatch saw
    an order come in as new (its ``created`` event), for the orders delivered in the period."""
    new_orders = 0
    transitions: Counter[str] = Counter()
    finished: dict[str, dict[str, Event]] = {status: {} for status in FINAL_STATUSES}
    for event in events:
        if not start < event.detected_at <= end:
            continue
        if event.kind == "created":
            new_orders += 1
        elif event.kind == "status_changed":
            transitions[event.order.status] += 1
        else:
            continue
        if event.order.status in FINAL_STATUSES:
            finished[event.order.status][event.order.id] = event
    delivered, cancelled = finished["Delivered"], finished["Cancelled"]
    durations = [
        event.detected_at - created_at[order_id]
        for order_id, event in delivered.items()
        if order_id in created_at and created_at[order_id] <= event.detected_at
    ]
    open_now = Counter(known.order.status for known in open_orders)

    def total(found: Mapping[str, Event]) -> Decimal:
        return sum((e.order.total or Decimal(0) for e in found.values()), Decimal(0))

    return Summary(
        start=start,
        end=end,
        new_orders=new_orders,
        transitions=dict(_by_known_status(transitions)),
        delivered=len(delivered),
        delivered_total=total(delivered),
        cancelled=len(cancelled),
        cancelled_total=total(cancelled),
        open_now=dict(_by_known_status(open_now)),
        stuck=tuple(sorted(stuck, key=lambda s: s.since)),
        delivery_median=statistics.median(durations) if durations else None,
        delivery_p95=_p95(durations) if durations else None,
        delivery_measured=len(durations),
    )


def _by_known_status(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """The documented statuses in their lifecycle order, then any unknown ones by name."""
    order = {status: n for n, status in enumerate(KNOWN_STATUSES)}
    return sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


# -- what it says ---------------------------------------------------------------------------


def _money(total: Decimal) -> str:
    text = f"{total:,.2f}".replace(",", " ").removesuffix(".00")
    return f"{text} ₽"


def _local(moment: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(moment, UTC).astimezone(zone)


def _span(summary: Summary, zone: ZoneInfo) -> str:
    start, end = _local(summary.start, zone), _local(summary.end, zone)
    if end - start <= timedelta(days=1, hours=1) and start.time() == end.time():
        return f"{start:%a %d %b %H:%M} to {end:%a %d %b %H:%M}"
    return f"{start:%d %b %Y %H:%M} to {end:%d %b %Y %H:%M}"


_duration = format_duration


def summary_text(summary: Summary, schedule: SummarySchedule, *, markdown: bool) -> tuple[str, str]:
    """The default ``(title, body)``; Markdown (bold headings, lists) where ``markdown``. A
    daily summary stays "Daily" when it covers days the daemon missed (its period says so)."""
    zone = schedule.zone
    kind = "Weekly" if schedule.every == "week" else "Daily"
    end = _local(summary.end, zone)
    title = (
        f"{kind} summary to {end:%a %d %b %H:%M}: {summary.new_orders} new, "
        f"{summary.delivered} delivered, {sum(summary.open_now.values())} open"
    )
    bold = (lambda text: f"**{text}**") if markdown else (lambda text: text)
    bullet = "- " if markdown else "  "
    lines = [f"{bold('Period')}: {_span(summary, zone)} ({zone.key})", ""]
    lines.append(f"{bold('New orders')}: {summary.new_orders}")
    lines.append(
        f"{bold('Delivered')}: {summary.delivered} ({_money(summary.delivered_total)}); "
        f"{bold('cancelled')}: {summary.cancelled} ({_money(summary.cancelled_total)})"
    )
    if summary.transitions:
        lines.append(f"{bold('Transitions by new status')}:")
        lines += [f"{bullet}{status}: {n}" for status, n in summary.transitions.items()]
    else:
        lines.append(f"{bold('Transitions')}: none")
    open_total = sum(summary.open_now.values())
    lines.append(f"{bold('Open now')}: {open_total}")
    lines += [f"{bullet}{status}: {n}" for status, n in summary.open_now.items()]
    if summary.delivery_median is not None and summary.delivery_p95 is not None:
        lines.append(
            f"{bold('Created → Delivered')}: median {_duration(summary.delivery_median)}, "
            f"p95 {_duration(summary.delivery_p95)} ({summary.delivery_measured} orders)"
        )
    if summary.stuck:
        lines.append(f"{bold('Stuck')}: {len(summary.stuck)}")
        for item in summary.stuck:
            spent = _duration(summary.end - item.since)
            who = f", {item.ack.describe()}" if item.ack else ""
            lines.append(f"{bullet}#{item.number} in {item.status} for {spent}{who}")
    else:
        lines.append(f"{bold('Stuck')}: none")
    return title, "\n".join(lines)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def summary_context(
    summary: Summary, schedule: SummarySchedule, *, markdown: bool
) -> dict[str, Any]:
    """The variables of ``summary_title`` and ``summary_body`` (listed in notifications.md)."""
    title, body = summary_text(summary, schedule, markdown=markdown)
    return {
        "start": _iso(summary.start),
        "end": _iso(summary.end),
        "new_orders": summary.new_orders,
        "transitions": dict(summary.transitions),
        "delivered": summary.delivered,
        "delivered_total": str(summary.delivered_total),
        "cancelled": summary.cancelled,
        "cancelled_total": str(summary.cancelled_total),
        "open_now": dict(summary.open_now),
        "open_total": sum(summary.open_now.values()),
        "stuck": [
            {
                "number": s.number,
                "status": s.status,
                "since": _iso(s.since),
                "stuck_for": _duration(summary.end - s.since),
                "acknowledged_by": None if s.ack is None else (s.ack.by or ""),
                "ack_comment": None if s.ack is None else s.ack.comment,
            }
            for s in summary.stuck
        ],
        "delivery_median_seconds": summary.delivery_median,
        "delivery_p95_seconds": summary.delivery_p95,
        "delivery_median": None
        if summary.delivery_median is None
        else _duration(summary.delivery_median),
        "delivery_p95": None if summary.delivery_p95 is None else _duration(summary.delivery_p95),
        "default_title": title,
        "default_body": body,
    }


class SummaryTemplates:
    """A route's ``summary_title``/``summary_body``; orderwatch's text where one is not set.
    Markdown where the route's ``format`` is ``markdown`` or ``html`` (apprise converts it)."""

    def __init__(
        self, title: str | None, body: str | None, fmt: str, schedule: SummarySchedule
    ) -> None:
        env = template_environment(fmt)
        self._title = None if title is None else env.from_string(title)
        self._body = None if body is None else env.from_string(body)
        self._markdown = fmt != "text"
        self._schedule = schedule

    def render(self, summary: Summary) -> tuple[str, str]:
        title, body = summary_text(summary, self._schedule, markdown=self._markdown)
        if self._title is None and self._body is None:
            return title, body
        context = summary_context(summary, self._schedule, markdown=self._markdown)
        return (
            title if self._title is None else self._title.render(context).strip(),
            body if self._body is None else self._body.render(context).strip(),
        )


def summary_template_problem(source: str, *, fmt: str = "text") -> str | None:
    """Why ``source`` cannot serve as a ``summary_title``/``summary_body``; else None."""
    sample = Summary(start=1_700_000_000.0, end=1_700_086_400.0, new_orders=3)
    daily = SummarySchedule.parse("day", "09:00", "UTC")
    context = summary_context(sample, daily, markdown=fmt != "text")
    return render_problem(source, fmt, [context])
