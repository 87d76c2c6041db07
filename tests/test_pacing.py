"""The pacer: the budget's memory between cycles, around the pure allocation."""

from __future__ import annotations

import logging
import math

import pytest

from orderwatch._budget import HEAD
from orderwatch._pacing import Pacer, plan_summary
from orderwatch._quota import RequestLedger

T0 = 1_800_000_000.0


def pacer(budget: float = 120.0, floor_period: float = 600.0) -> Pacer:
    return Pacer(budget, floor_period, shortest=10.0, ledger=RequestLedger(budget, None))


OPEN = {
    "head-1": ("Created", 0),
    "deep-1": ("AwaitingCertificateAssignment", 400),
    "deep-2": ("AwaitingCertificateAssignment", 401),
    "lone": ("ReadyForDelivery", 900),
}


def test_the_first_plan_fetches_everything_and_then_only_what_falls_due() -> None:
    p = pacer()
    first = p.plan(OPEN, arrivals=0, now=T0)
    assert first.walk_head
    assert first.orders == set(OPEN)
    # Ten hours of fifty orders ready for delivery, none leaving: that status is slow.
    p.observed(
        T0 - 36000, (), head_walked=False, counts={"ReadyForDelivery": 50}, exits={}, arrivals=0
    )
    p.observed(T0, OPEN, head_walked=True, counts={}, exits={}, arrivals=0)
    p.plan(OPEN, arrivals=0, now=T0)
    later = p.plan(OPEN, arrivals=0, now=T0 + p.wait(T0))
    assert {"deep-1", "deep-2"} <= later.orders  # two orders, worth the most: due first
    assert "lone" not in later.orders  # worth almost nothing: at the floor


def test_the_learner_follows_what_cycles_observe() -> None:
    p = pacer()
    p.plan(OPEN, arrivals=0, now=T0)
    p.observed(T0, OPEN, head_walked=True, counts={"Created": 10}, exits={}, arrivals=0)
    p.observed(
        T0 + 3600,
        OPEN,
        head_walked=True,
        counts={"Created": 10},
        exits={"Created": 40},
        arrivals=100,
    )
    assert p.learner.exit_rate("Created") > 3
    assert p.learner.arrival_rate > 50


def test_when_the_floor_needs_more_than_the_budget_it_wins_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = pacer(budget=12.0, floor_period=300.0)  # the head alone needs 12/h
    with caplog.at_level(logging.WARNING, logger="orderwatch"):
        plan = p.plan(OPEN, arrivals=0, now=T0)
        again = p.plan(OPEN, arrivals=0, now=T0 + 1)
    assert plan.floor_wins and again.floor_wins
    assert caplog.text.count("more than poll.budget") == 1
    assert p.ledger.per_hour == 3 * 12  # head, page 21, the lone order: the ledger lets them


def test_status_groups_pages_by_depth() -> None:
    p = pacer()
    p.plan(OPEN, arrivals=0, now=T0)
    assert p.schedule is not None
    groups = {g: n for g, n, _, _ in plan_summary(p.schedule, p.units)}
    assert groups == {"head (page 1 on)": 1, "pages 11-100": 1, "/status requests": 1}
    assert HEAD in p.schedule.rates


def test_after_the_head_walk_pages_are_placed_by_the_arrivals_it_measured() -> None:
    """Planned before the walk, the two orders are page 20; five new orders later they are
    page 21: one request, not a page and a ``/status`` each for what moved."""
    p = pacer()
    open_orders = {
        "head-1": ("Created", 0),
        "deep-1": ("AwaitingCertificateAssignment", 398),
        "deep-2": ("AwaitingCertificateAssignment", 399),
    }
    before = p.plan(open_orders, arrivals=0, now=T0)
    assert before.walk_head
    assert "page:20" in {unit.key for unit in before.units}
    after = p.after_walk(open_orders, arrivals=5, now=T0 + 1, shown={"head-1"})
    assert after.walk_head
    assert [unit.key for unit in after.units] == ["page:21"]  # the head is not walked twice
    assert after.orders == {"deep-1", "deep-2"}


def test_an_order_placed_on_the_head_that_the_walk_did_not_show_is_looked_at() -> None:
    """Deleted by the shop, or its place was wrong: the walk read page 1 without it, so it is
    looked up on its own (else it would wait until arrivals push it off the head)."""
    p = pacer()
    open_orders = {"head-1": ("Created", 0), "head-2": ("Payed", 3)}
    p.plan(open_orders, arrivals=0, now=T0)
    after = p.after_walk(open_orders, arrivals=0, now=T0 + 1, shown={"head-1"})
    assert after.orders == {"head-2"}
    assert p.seen == {"head-1": T0 + 1, HEAD: T0 + 1}


def test_an_order_counts_as_seen_when_its_cycle_started() -> None:
    """A unit is never thought fresher than it is: what a cycle showed is dated by its start,
    so the floor (``poll.interval``) is kept from the moment the order was really read."""
    p = pacer()
    p.plan(OPEN, arrivals=0, now=T0)
    after = p.after_walk(OPEN, arrivals=0, now=T0 + 20, shown={"head-1"}, seen_at=T0)
    assert p.seen["head-1"] == T0 and p.seen[HEAD] == T0
    assert after.orders >= {"deep-1", "deep-2", "lone"}  # never seen: due
    p.observed(T0 + 30, set(OPEN), head_walked=True, counts={}, exits={}, arrivals=0, seen_at=T0)
    assert set(p.seen.values()) == {T0}


def test_when_a_first_sync_spent_the_hour_the_floor_wins_over_it_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,200 an hour; a first sync made 1,199 requests. The three units due at the floor cannot
    fit in what is left: the cycle that reads them is not held by the ledger, with a WARNING."""
    p = pacer(budget=1200.0, floor_period=600.0)
    p.ledger.record(T0, 1199)
    p.observed(T0, set(OPEN), head_walked=True, counts={}, exits={}, arrivals=0, walked_all=True)
    with caplog.at_level(logging.WARNING, logger="orderwatch"):
        due = p.plan(OPEN, arrivals=0, now=T0 + 600)
        again = p.plan(OPEN, arrivals=0, now=T0 + 601)
    assert due.forced == 2 and {u.key for u in due.units} == {HEAD, "page:21", "status:lone"}
    assert p.ledger.per_hour == math.inf  # the floor wins over the spent hour
    assert again.forced == 2  # nothing was read in between: still due
    assert caplog.text.count("leave no room for the") == 1  # once an hour


def test_with_room_for_the_floor_the_ledger_holds_the_budget_and_keeps_the_room() -> None:
    """1,150 spent: 50 left, of which the floor's reads in the coming hour (three units every
    ten minutes, 18) are kept; the cycle may spend the rest."""
    p = pacer(budget=1200.0, floor_period=600.0)
    p.ledger.record(T0, 1150)
    p.observed(T0, set(OPEN), head_walked=True, counts={}, exits={}, arrivals=0)
    plan = p.plan(OPEN, arrivals=0, now=T0 + 600)
    assert plan.forced == 0 and len(plan.units) == 3
    assert p.ledger.per_hour == 1200
    room, feasible = p._room(T0 + 600, p.wait(T0 + 600))
    assert feasible and 0 < room <= 50 - 15


def test_without_a_full_walk_in_the_hour_the_ledger_holds_the_budget_even_for_the_floor() -> None:
    """The hour was spent by ordinary cycles: the floor's reads wait for room in the ledger
    rather than spend past the budget."""
    p = pacer(budget=1200.0, floor_period=600.0)
    p.ledger.record(T0, 1199)
    p.observed(T0, set(OPEN), head_walked=True, counts={}, exits={}, arrivals=0)
    due = p.plan(OPEN, arrivals=0, now=T0 + 600)
    assert due.forced == 2
    assert p.ledger.per_hour == 1200
