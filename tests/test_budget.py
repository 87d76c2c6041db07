"""The budget's allocation: a pure function from units and their worth to fetches an hour."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderwatch._budget import (
    HEAD,
    OpenOrder,
    Unit,
    allocate,
    allowance,
    choose,
    floor_budget,
    next_due,
    units_for,
)
from orderwatch._models import KNOWN_STATUSES, is_final

WORTHS = st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=60)
PERIODS = st.floats(min_value=10, max_value=24 * 3600)


def as_units(worths: list[float]) -> list[Unit]:
    return [Unit(f"page:{i + 2}", w) for i, w in enumerate(worths)]


def test_square_root_rule_without_a_binding_floor() -> None:
    """One head page changing 100/h and nine pages 1/h: f ∝ √Λ, as refresh-model.md says."""
    units = [Unit(HEAD, 100.0), *(Unit(f"page:{i}", 1.0) for i in range(2, 11))]
    schedule = allocate(units, 190.0, floor_period=24 * 3600)
    assert schedule.rates[HEAD] == pytest.approx(100.0, rel=1e-6)
    assert schedule.rates["page:2"] == pytest.approx(10.0, rel=1e-6)
    fixed = 10 * 109 / (2 * 190.0) / 109 * 3600  # every unit 19 times an hour
    assert schedule.expected_delay / fixed == pytest.approx(19**2 / (10 * 109), rel=1e-6)


def test_the_floor_lifts_slow_units_and_the_rest_is_water_filled() -> None:
    units = [Unit(HEAD, 100.0), *(Unit(f"page:{i}", 0.01) for i in range(2, 11))]
    schedule = allocate(units, 120.0, floor_period=300)  # floor: 12/h each
    assert schedule.rates["page:5"] == pytest.approx(12.0)
    assert schedule.rates[HEAD] == pytest.approx(120.0 - 9 * 12.0)
    assert not schedule.floor_wins


def test_a_budget_below_the_floor_keeps_the_floor_and_says_so() -> None:
    units = as_units([5.0, 1.0, 0.0])
    schedule = allocate(units, 20.0, floor_period=60)  # floor alone: 180/h
    assert schedule.floor_wins
    assert set(schedule.rates.values()) == {60.0}
    assert floor_budget(3, 60) == 180.0


def test_no_unit_is_fetched_faster_than_the_ceiling() -> None:
    units = as_units([100.0, 1.0])
    schedule = allocate(units, 1000.0, floor_period=3600, max_rate=120.0)
    assert schedule.rates == {"page:2": 120.0, "page:3": 120.0}


def test_nothing_to_fetch_plans_nothing() -> None:
    schedule = allocate([], 100.0, floor_period=60)
    assert schedule.spend == 0
    assert schedule.expected_delay == 0


@given(WORTHS, st.floats(min_value=1, max_value=1e6), PERIODS)
def test_never_over_budget_and_the_floor_always_kept(
    worths: list[float], budget: float, period: float
) -> None:
    schedule = allocate(as_units(worths), budget, floor_period=period)
    floor = 3600 / period
    assert all(rate >= floor * (1 - 1e-9) for rate in schedule.rates.values())
    if floor_budget(len(worths), period) <= budget:
        assert schedule.spend <= budget * (1 + 1e-9)
        assert not schedule.floor_wins
    else:
        assert schedule.floor_wins


@given(WORTHS, st.floats(min_value=1, max_value=1e6), PERIODS)
def test_a_unit_worth_more_is_never_fetched_less_often(
    worths: list[float], budget: float, period: float
) -> None:
    schedule = allocate(as_units(worths), budget, floor_period=period)
    ranked = sorted(schedule.rates.items(), key=lambda item: schedule.worth[item[0]])
    rates = [rate for _, rate in ranked]
    assert all(b >= a * (1 - 1e-9) for a, b in itertools.pairwise(rates))


@given(WORTHS, st.floats(min_value=1, max_value=1e5))
def test_the_budget_is_spent_when_some_unit_can_use_it(worths: list[float], budget: float) -> None:
    """Water-filling leaves nothing on the table: the allocation is the constrained optimum."""
    schedule = allocate(as_units(worths), budget, floor_period=24 * 3600)
    if any(w > 0 for w in worths) and floor_budget(len(worths), 24 * 3600) < budget:
        assert schedule.spend == pytest.approx(budget, rel=1e-6)


@given(
    st.lists(st.floats(min_value=0.01, max_value=1e3), min_size=2, max_size=30),
    st.floats(min_value=1, max_value=1e4),
)
def test_square_root_beats_fixed_interval_for_the_same_requests(
    worths: list[float], budget: float
) -> None:
    """Cauchy-Schwarz: (Σ√Λ)² ≤ N ΣΛ, so the model's delay is never worse than fixed."""
    units = as_units(worths)
    schedule = allocate(units, budget, floor_period=1e9)
    fixed = allocate([Unit(u.key, 1.0) for u in units], budget, floor_period=1e9)
    fixed_delay = math.fsum(
        w / (2 * fixed.rates[u.key]) for u, w in zip(units, worths, strict=True)
    )
    assert schedule.expected_delay <= 3600 * fixed_delay / math.fsum(worths) * (1 + 1e-9)


ORDERS = st.lists(
    st.builds(
        OpenOrder,
        id=st.uuids().map(str),
        status=st.sampled_from(KNOWN_STATUSES),
        index=st.none() | st.integers(min_value=0, max_value=400),
    ),
    max_size=80,
    unique_by=lambda o: o.id,
)


@given(ORDERS, st.floats(min_value=0, max_value=100))
def test_units_show_every_open_order_once_and_never_a_final_one(
    orders: list[OpenOrder], arrivals: float
) -> None:
    rates = dict.fromkeys(KNOWN_STATUSES, 1.0)
    units = units_for(orders, rates, arrivals)
    shown = [order_id for unit in units for order_id in unit.orders]
    assert sorted(shown) == sorted(o.id for o in orders if not is_final(o.status))
    assert units[0].key == HEAD
    assert units[0].worth == pytest.approx(arrivals + len(units[0].orders))
    assert all(u.worth == pytest.approx(len(u.orders)) for u in units[1:])


def test_a_lone_order_is_a_status_request_and_a_crowded_page_a_page() -> None:
    orders = [
        OpenOrder("a", "Payed", 3),  # page 1: the head
        OpenOrder("b", "Created", 45),  # page 3, with c
        OpenOrder("c", "ReadyForDelivery", 50),
        OpenOrder("d", "AwaitingCertificateAssignment", 900),  # alone on page 46
        OpenOrder("e", "Delivered", 901),  # final: never a unit
        OpenOrder("f", "Payed", None),  # place unknown
    ]
    rates = {"Created": 10.0, "Payed": 2.0, "ReadyForDelivery": 0.5}
    units = {u.key: u for u in units_for(orders, rates, arrivals=30.0)}
    assert set(units) == {HEAD, "page:3", "status:d", "status:f"}
    assert units[HEAD].worth == 32.0
    assert units["page:3"].worth == 10.5
    assert units["status:d"].worth == 0.0  # a status with no learned rate is worth nothing


def test_a_cycle_fetches_what_falls_due_by_the_middle_of_the_next_one() -> None:
    units = [Unit(HEAD, 100.0), Unit("page:2", 1.0, ("a", "b")), Unit("status:c", 0.0, ("c",))]
    schedule = allocate(units, 120.0, floor_period=600)
    seen = {HEAD: 990.0, "a": 900.0, "b": 400.0, "c": 995.0}
    head_interval = schedule.interval(HEAD)
    chosen = choose(units, schedule, seen, 990.0 + head_interval, cycle=head_interval)
    assert [u.key for u in chosen.units] == [HEAD, "page:2"]  # page:2 is due by b (seen at 400)
    fresh = dict.fromkeys(seen, 990.0)
    assert next_due(units, schedule, fresh, 990.0) == pytest.approx(head_interval)
    # page:2 is overdue, but waits for the head walk that places it, up to its floor
    assert next_due(units, schedule, seen, 990.0) == pytest.approx(10.0)


def test_when_the_hour_is_spent_only_the_floor_is_fetched_and_that_is_counted() -> None:
    units = [Unit(HEAD, 100.0), Unit("page:2", 1.0, ("a", "b")), Unit("status:c", 1.0, ("c",))]
    schedule = allocate(units, 120.0, floor_period=600)
    seen = {HEAD: 0.0, "a": 0.0, "b": 0.0, "c": 550.0}
    chosen = choose(units, schedule, seen, 590.0, cycle=30.0, allowance=0)
    assert {u.key for u in chosen.units} == {HEAD, "page:2"}  # both would pass the floor
    assert (chosen.forced, chosen.deferred) == (2, 0)
    none = choose(
        units, schedule, {HEAD: 0.0, "a": 0.0, "b": 0.0, "c": 0.0}, 200.0, cycle=30.0, allowance=0
    )
    assert none.units == ()
    assert none.deferred >= 1


def test_a_page_waits_for_the_head_walk_that_places_it() -> None:
    """Arrivals shift every page: fetched without the head walk that measures them, a page
    misses the orders that moved (each then costs a ``/status``). A ``/status`` needs no walk."""
    units = [Unit(HEAD, 100.0), Unit("page:2", 10.0, ("a", "b")), Unit("status:c", 10.0, ("c",))]
    schedule = allocate(units, 200.0, floor_period=3600)
    head_every, page_every = schedule.interval(HEAD), schedule.interval("page:2")
    now = 10_000.0
    seen = {HEAD: now - head_every / 4, "a": now - page_every, "b": now - page_every}
    seen["c"] = now - schedule.interval("status:c")
    alone = choose(units, schedule, seen, now, cycle=1.0)
    assert [u.key for u in alone.units] == ["status:c"]
    assert alone.deferred == 0  # the page is not put off: its chance is the next walk
    seen["c"] = now
    assert next_due(units, schedule, seen, now) == pytest.approx(head_every * 3 / 4)
    seen[HEAD] = now - head_every
    walked = choose(units, schedule, seen, now, cycle=1.0)
    assert [u.key for u in walked.units] == [HEAD, "page:2"]


def test_a_page_about_to_pass_the_floor_brings_the_head_walk_even_over_budget() -> None:
    units = [Unit(HEAD, 100.0), Unit("page:2", 0.0, ("a", "b"))]
    schedule = allocate(units, 200.0, floor_period=600)
    seen = {HEAD: 590.0, "a": 10.0, "b": 0.0}
    assert next_due(units, schedule, seen, 595.0) == pytest.approx(5.0)  # page:2's floor
    chosen = choose(units, schedule, seen, 595.0, cycle=10.0, allowance=0)
    assert [u.key for u in chosen.units] == [HEAD, "page:2"]
    assert chosen.forced == 2


@given(
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=20),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=60, max_value=3600),
    st.floats(min_value=1, max_value=60),
    st.integers(min_value=0, max_value=3),
)
def test_no_unit_waits_past_the_floor_plus_one_cycle_and_pages_ride_with_the_head(
    worths: list[float], arrivals: float, period: float, cycle: float, allowance: int
) -> None:
    """Cycles every ``cycle`` seconds with little or no allowance left: every unit is still
    fetched within the floor period plus one cycle, and a page only in a cycle that walks
    the head."""
    units = [
        Unit(HEAD, arrivals),
        *(Unit(u.key, u.worth, (f"o{i}",)) for i, u in enumerate(as_units(worths))),
    ]
    schedule = allocate(units, floor_budget(len(units), period) * 2, floor_period=period)
    seen: dict[str, float] = {}
    now, longest = 0.0, 0.0
    while now < 3 * period:
        chosen = choose(units, schedule, seen, now, cycle=cycle, allowance=allowance).units
        assert any(u.key == HEAD for u in chosen) or not any(u.key != HEAD for u in chosen)
        for unit in chosen:
            seen[unit.orders[0] if unit.orders else HEAD] = now
        longest = max(
            longest, *(now - seen.get(k, 0.0) for k in (HEAD, *(u.orders[0] for u in units[1:])))
        )
        now += cycle
    assert longest <= period + cycle


def test_the_allowance_keeps_room_for_the_floor_reads_the_coming_hour_needs() -> None:
    """A first sync spent 1,000 of 1,200 at minute 0; 160 pages fall due at the floor (30 min)
    together: until they are read, only 40 requests are free, not 200."""
    now = 600.0  # minute 10

    def still_counted(at: float) -> int:
        return 1000 if at < 3600 else 0  # the first sync's minute leaves the window at 60

    deadlines = [1800.0] * 160
    assert allowance(1200, still_counted, deadlines, 1800, now) == 40
    # Nothing counted any more: room for the floor's reads, each page twice in the hour.
    assert allowance(1200, lambda at: 0, [now + 1800] * 160, 1800, now) == 1200 - 160 * 2
    # A floor that cannot fit whatever the cycle does: negative.
    assert allowance(1200, still_counted, [1800.0] * 300, 1800, now) < 0


@given(
    st.integers(0, 1500),
    st.lists(st.floats(min_value=0, max_value=7200), max_size=50),
    st.floats(min_value=60, max_value=7200),
)
def test_the_allowance_is_never_more_than_what_the_hour_has_left(
    spent: int, deadlines: list[float], floor_period: float
) -> None:
    room = allowance(1200, lambda at: spent, deadlines, floor_period, 0.0)
    assert room <= 1200 - spent
    assert (room == 1200 - spent) == (not deadlines or min(deadlines) > 3600)
