"""The sandbox's simulated shop day: the scenario the request budget is judged on."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from orderwatch._models import is_final
from orderwatch._sandbox import DayPace, ShopDay

HOUR = 3600.0


def day(pace: DayPace | None = None) -> ShopDay:
    return ShopDay(seed=3, orders=2000, pace=pace or DayPace(), clock=lambda: 0.0)


def test_the_day_is_the_same_for_the_same_seed() -> None:
    first, second = day(), day()
    assert first.advance_to(6 * HOUR) == second.advance_to(6 * HOUR)


def test_orders_arrive_at_the_head_busier_in_working_hours() -> None:
    world = day()
    night = [c for c in world.advance_to(6 * HOUR) if c.previous is None]
    world.advance_to(10 * HOUR)
    work = [c for c in world.advance_to(16 * HOUR) if c.previous is None]
    assert len(work) > 2.5 * len(night)
    assert world.newest_first[0].number == max(o.number for o in world.newest_first)


def test_each_status_is_left_after_a_time_whose_mean_depends_on_the_status() -> None:
    world = day(DayPace(arrivals_per_day=4000))
    entered: dict[tuple[str, str], float] = {}
    stays: dict[str, list[float]] = {}
    for change in world.advance_to(24 * HOUR):
        if change.previous is not None and (change.order_id, change.previous) in entered:
            start = entered[(change.order_id, change.previous)]
            stays.setdefault(change.previous, []).append(change.at - start)
        entered[(change.order_id, change.status)] = change.at
    pace = DayPace()
    for status in ("Created", "Payed", "ReadyForDelivery"):
        assert statistics.mean(stays[status]) == pytest.approx(pace.mean_dwell(status), rel=0.15)


def test_some_are_cancelled_and_a_long_tail_stays_open_for_days() -> None:
    world = day()
    changes = world.advance_to(24 * HOUR)
    kinds = Counter(c.status for c in changes if c.previous is not None)
    assert kinds["Cancelled"] > 0
    old = world.newest_first[len(world.newest_first) // 2 :]
    assert sum(not is_final(o.status) for o in old) > 50


def test_halving_the_dwell_times_halves_the_mean_stay() -> None:
    assert DayPace(dwell_scale=0.5).mean_dwell("Payed") == DayPace().mean_dwell("Payed") / 2


def test_an_order_added_by_hand_leaves_created_on_the_days_schedule() -> None:
    """The ``shift`` fault adds orders outside the schedule; they move on like any arrival."""
    world = day()
    added = world.add_order()
    assert world.newest_first[0] is added
    world.advance_to(6 * HOUR)
    assert added.status != "Created"
