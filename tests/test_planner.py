"""The planner's choices, exactly: given positions → the expected requests."""

from __future__ import annotations

from orderwatch._models import Order, OrderPage
from orderwatch._planner import (
    RefreshPlan,
    Straggler,
    arrivals_from_sightings,
    head_walk_continues,
    missing_from_page,
    plan_refresh,
)


def page(numbers: list[int], total_pages: int = 10) -> OrderPage:
    orders = tuple(Order(id=f"id-{n}", number=n, status="Created") for n in numbers)
    return OrderPage(orders=orders, total_pages=total_pages, current_page=None)


def test_walk_goes_on_while_the_oldest_order_on_the_page_is_new() -> None:
    assert head_walk_continues(page([20, 19]), 1, oldest_is_new=True, full_walk=False)
    assert not head_walk_continues(page([20, 19]), 1, oldest_is_new=False, full_walk=False)


def test_a_full_walk_goes_to_the_last_page_and_stops_there() -> None:
    assert head_walk_continues(page([20, 19]), 3, oldest_is_new=False, full_walk=True)
    assert not head_walk_continues(
        page([2, 1], total_pages=3), 3, oldest_is_new=True, full_walk=True
    )


def test_an_empty_page_ends_the_walk() -> None:
    assert not head_walk_continues(page([]), 2, oldest_is_new=True, full_walk=True)


def test_arrivals_come_from_the_first_order_with_a_known_anchor() -> None:
    assert arrivals_from_sightings([(0, None), (3, 1), (4, 0)]) == 2
    assert arrivals_from_sightings([(0, None)]) is None


def test_two_stragglers_on_one_page_cost_one_page_request() -> None:
    plan = plan_refresh([Straggler("a", 40), Straggler("b", 45)], arrivals=0)
    assert plan == RefreshPlan(pages={3: ("a", "b")}, statuses=())
    assert plan.requests == 1


def test_a_lone_straggler_costs_one_status_request() -> None:
    plan = plan_refresh([Straggler("a", 40), Straggler("b", 95)], arrivals=0)
    assert plan == RefreshPlan(pages={}, statuses=("a", "b"))


def test_arrivals_shift_predicted_pages() -> None:
    plan = plan_refresh([Straggler("a", 15), Straggler("b", 18)], arrivals=5)
    assert plan.pages == {2: ("a", "b")}


def test_stragglers_without_a_known_place_are_asked_by_status() -> None:
    plan = plan_refresh([Straggler("a", None), Straggler("b", None)], arrivals=0)
    assert plan.statuses == ("a", "b")


def test_a_page_predicted_past_the_end_is_never_requested() -> None:
    plan = plan_refresh([Straggler("a", 200), Straggler("b", 201)], arrivals=0, total_pages=3)
    assert plan == RefreshPlan(pages={}, statuses=("a", "b"))


def test_expected_orders_missing_from_a_fetched_page_fall_back_to_status() -> None:
    assert missing_from_page(["id-5", "id-9"], page([6, 5, 4])) == ["id-9"]


def test_the_interval_shortens_after_changes_and_doubles_back_when_quiet() -> None:
    from orderwatch._planner import next_interval

    assert next_interval(30, changed=True, interval=30, min_interval=None) == 30
    assert next_interval(30, changed=True, interval=30, min_interval=5) == 5
    waits = [5.0]
    for _ in range(4):
        waits.append(next_interval(waits[-1], changed=False, interval=30, min_interval=5))
    assert waits == [5, 10, 20, 30, 30]


def test_the_slow_full_walk_covers_every_page_once_per_period_without_bursts() -> None:
    from orderwatch._planner import reconcile_pages

    day = 86400.0
    # 5,000 pages over a day, a cycle every 30 s: about two pages a cycle
    pages, cursor, started = reconcile_pages(
        1, 5000, started=0.0, now=0.0, full_sync_interval=day, skip=set()
    )
    assert (pages, cursor) == ([1], 2)
    pages, cursor, _ = reconcile_pages(
        cursor, 5000, started=started, now=30.0, full_sync_interval=day, skip=set()
    )
    assert pages == [2]
    pages, cursor, _ = reconcile_pages(
        cursor, 5000, started=started, now=60.0, full_sync_interval=day, skip={4}
    )
    assert pages == [3]  # page 4 was read anyway this cycle
    # a three-page list is re-read once a day, not every cycle
    assert reconcile_pages(2, 3, started=0.0, now=30.0, full_sync_interval=day, skip=set())[0] == []
    assert reconcile_pages(2, 3, started=0.0, now=day / 3, full_sync_interval=day, skip=set())[
        0
    ] == [2]
    done = reconcile_pages(4, 3, started=0.0, now=day - 1, full_sync_interval=day, skip=set())
    assert done == ([], 4, 0.0)
    assert reconcile_pages(4, 3, started=0.0, now=day, full_sync_interval=day, skip=set()) == (
        [1],
        2,
        day,
    )
