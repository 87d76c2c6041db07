"""Summaries: when they are due, what they count, what they say. Pure, on a fixed clock."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from orderwatch._detect import Event, KnownOrder
from orderwatch._models import Order
from orderwatch._silences import Ack
from orderwatch._summary import (
    StuckOrder,
    SummarySchedule,
    due_period,
    summarize,
    summary_context,
    summary_text,
)

MOSCOW = ZoneInfo("Europe/Moscow")
DAILY = SummarySchedule.parse("day", "09:00", "Europe/Moscow")


def moscow(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 1, day, hour, minute, tzinfo=MOSCOW).timestamp()  # Jan 5 2026: a Monday


def test_a_daily_summary_is_due_at_its_time_in_its_zone() -> None:
    daily = SummarySchedule.parse("day", "09:00", "Europe/Moscow")
    assert daily.last_due(moscow(6, 8, 59)) == moscow(5, 9)
    assert daily.last_due(moscow(6, 9)) == moscow(6, 9)
    assert daily.next_due(moscow(6, 9)) == moscow(7, 9)
    assert daily.previous(moscow(6, 9)) == moscow(5, 9)


def test_a_weekly_summary_is_due_on_mondays() -> None:
    weekly = SummarySchedule.parse("week", "09:00", "Europe/Moscow")
    assert weekly.last_due(moscow(11, 23)) == moscow(5, 9)  # Sunday the 11th → Monday the 5th
    assert weekly.last_due(moscow(12, 9, 1)) == moscow(12, 9)
    assert weekly.next_due(moscow(5, 8)) == moscow(5, 9)


@pytest.mark.parametrize(("every", "at"), [("month", "09:00"), ("day", "9"), ("day", "24:00")])
def test_a_bad_schedule_says_why(every: str, at: str) -> None:
    with pytest.raises(ValueError, match=r"every|at must"):
        SummarySchedule.parse(every, at, "UTC")


def order(number: int, status: str, total: int = 1000) -> Order:
    return Order(f"id-{number}", number, status, total=Decimal(total))


def event(
    kind: str,
    number: int,
    status: str,
    at: float,
    previous: str | None = None,
    *,
    total: int = 1000,
) -> Event:
    return Event(kind, order(number, status, total), previous, None, False, at, False)  # type: ignore[arg-type]


START, END = moscow(5, 9), moscow(6, 9)


def test_a_summary_counts_the_period_and_only_the_period() -> None:
    events = [
        event("created", 1, "Created", START - 60),  # before: not counted
        event("created", 2, "Created", START + 60),
        event("created", 3, "Created", START + 120),
        event("status_changed", 2, "Payed", START + 600, "Created"),
        event("status_changed", 2, "Delivered", START + 4200, "Payed", total=2200),
        event("status_changed", 3, "Cancelled", START + 900, "Created", total=500),
        event("status_changed", 1, "Delivered", START + 7200, "Created", total=1500),
        event("stuck", 4, "Payed", START + 100),  # not a transition
        event("status_changed", 5, "Payed", END + 1, "Created"),  # after: not counted
    ]
    created_at = {"id-1": START - 60, "id-2": START + 60}
    open_orders = [
        KnownOrder(order(6, "Payed"), START, True, None),
        KnownOrder(order(7, "Created"), END - 1, True, None),
    ]
    ack = Ack("id-6", 6, "Payed", START, END - 5, float("inf"), by="Anna")
    summary = summarize(
        start=START,
        end=END,
        events=events,
        created_at=created_at,
        open_orders=open_orders,
        stuck=[StuckOrder(6, "Payed", START, ack)],
    )
    assert summary.new_orders == 2
    assert dict(summary.transitions) == {"Payed": 1, "Delivered": 2, "Cancelled": 1}
    assert list(summary.transitions) == ["Payed", "Delivered", "Cancelled"]  # lifecycle order
    assert (summary.delivered, summary.delivered_total) == (2, Decimal(3700))
    assert (summary.cancelled, summary.cancelled_total) == (1, Decimal(500))
    assert dict(summary.open_now) == {"Created": 1, "Payed": 1}
    assert summary.delivery_measured == 2
    assert summary.delivery_median == ((4200 - 60) + (7200 + 60)) / 2


def test_p95_is_an_observed_value_by_nearest_rank() -> None:
    events = [
        event("status_changed", n, "Delivered", START + 1000 + n, "Payed") for n in range(1, 21)
    ]
    created_at = {f"id-{n}": START for n in range(1, 21)}
    summary = summarize(start=START, end=END, events=events, created_at=created_at, open_orders=[])
    assert summary.delivery_p95 == 1019.0  # the 19th of 20
    assert summary.delivery_median == 1010.5


def test_the_default_text_is_markdown_only_where_the_route_allows_it() -> None:
    events = [event("created", 2, "Created", START + 60)]
    ack = Ack("id-6", 6, "Payed", START, END - 5, float("inf"), by="Anna", comment="calling")
    summary = summarize(
        start=START,
        end=END,
        events=events,
        created_at={},
        open_orders=[],
        stuck=[StuckOrder(6, "Payed", START, ack)],
    )
    title, markdown = summary_text(summary, DAILY, markdown=True)
    _, plain = summary_text(summary, DAILY, markdown=False)
    assert title == "Daily summary to Tue 06 Jan 09:00: 1 new, 0 delivered, 0 open"
    assert "**New orders**: 1" in markdown and "**" not in plain
    assert '#6 in Payed for 1d 0h, acknowledged by Anna ("calling")' in plain
    context = summary_context(summary, DAILY, markdown=False)
    assert context["stuck"][0]["acknowledged_by"] == "Anna"
    assert context["default_body"] == plain


def test_a_summary_is_due_once_per_period_and_missed_periods_make_one() -> None:
    daily = SummarySchedule.parse("day", "09:00", "Europe/Moscow")
    assert due_period(daily, None, moscow(6, 10)) is None  # the first start only starts the clock
    assert due_period(daily, moscow(6, 9), moscow(6, 23)) is None  # sent already
    assert due_period(daily, moscow(6, 9), moscow(7, 9)) == (moscow(6, 9), moscow(7, 9))
    # stopped from the 6th to the 9th: one summary, since the last one sent
    assert due_period(daily, moscow(6, 9), moscow(9, 12)) == (moscow(6, 9), moscow(9, 9))
