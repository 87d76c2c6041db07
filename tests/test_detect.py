"""Change detection: known state + observations → changes → events. Pure, so tested exhaustively."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orderwatch._detect import (
    KnownOrder,
    NewOrder,
    Transition,
    detect_changes,
    events_for,
    settled,
)
from orderwatch._models import KNOWN_STATUSES, Order


def order(n: int, status: str = "Created") -> Order:
    return Order(id=f"id-{n}", number=n, status=status)


def known(n: int, status: str, since: float = 100.0) -> KnownOrder:
    return KnownOrder(order=order(n, status), status_since=since, since_exact=True, anchor=n)


def test_an_unknown_order_is_new() -> None:
    assert detect_changes({}, [order(1)]) == [NewOrder(order(1))]


def test_a_known_order_in_the_same_status_is_no_change() -> None:
    assert detect_changes({"id-1": known(1, "Payed")}, [order(1, "Payed")]) == []


def test_a_status_change_is_one_transition_carrying_the_previous_state() -> None:
    before = known(1, "Payed")
    [change] = detect_changes({"id-1": before}, [order(1, "ReadyForDelivery")])
    assert change == Transition(order(1, "ReadyForDelivery"), before)
    assert change.previous_status == "Payed"


def test_a_backward_move_is_reported_as_observed() -> None:
    [change] = detect_changes({"id-1": known(1, "Payed")}, [order(1, "Created")])
    assert isinstance(change, Transition)
    assert (change.previous_status, change.order.status) == ("Payed", "Created")


def test_order_moved_twice_between_polls_is_reported_as_one_change() -> None:
    changes = detect_changes(
        {"id-1": known(1, "Created")}, [order(1, "Payed"), order(1, "ReadyForDelivery")]
    )
    assert len(changes) == 1
    assert changes[0].order.status == "ReadyForDelivery"


def test_an_order_seen_twice_on_shifted_pages_is_new_once() -> None:
    assert detect_changes({}, [order(5), order(4), order(5)]) == [
        NewOrder(order(4)),
        NewOrder(order(5)),
    ]


def test_new_orders_are_silent_during_the_first_sync_and_transitions_are_not() -> None:
    changes = [NewOrder(order(2)), Transition(order(1, "Payed"), known(1, "Created"))]
    events = events_for(changes, announce_new=False, after_gap=False, now=200.0)
    assert [e.kind for e in events] == ["status_changed"]
    events = events_for(changes, announce_new=True, after_gap=False, now=200.0)
    assert [e.kind for e in events] == ["created", "status_changed"]


def test_events_after_a_gap_say_so_and_carry_the_time_in_the_previous_status() -> None:
    changes = [Transition(order(1, "Payed"), known(1, "Created", since=50.0))]
    [event] = events_for(changes, announce_new=True, after_gap=True, now=200.0)
    assert event.after_gap
    assert event.previous_since == 50.0
    assert event.detected_at == 200.0


statuses = st.sampled_from([*KNOWN_STATUSES, "Canceled", "OnHold"])


@given(
    before=st.dictionaries(st.integers(0, 30), statuses, max_size=20),
    observations=st.lists(st.tuples(st.integers(0, 40), statuses), max_size=60),
)
def test_changes_equal_the_net_observable_changes(
    before: dict[int, str], observations: list[tuple[int, str]]
) -> None:
    """For any state and any sequence of observations (repeats, shifts), one change per order
    whose last observed status differs from the remembered one, and one per unknown order."""
    state = {f"id-{n}": known(n, s) for n, s in before.items()}
    changes = detect_changes(state, [order(n, s) for n, s in observations])
    last = dict(observations)
    expected = {n for n, s in last.items() if n not in before or before[n] != s}
    assert {c.order.number for c in changes} == expected
    assert len(changes) == len(expected)
    for change in changes:
        assert change.order.status == last[change.order.number]
        if isinstance(change, Transition):
            assert change.previous_status == before[change.order.number]
        else:
            assert change.order.number not in before


def test_an_order_shown_once_in_another_status_is_not_settled() -> None:
    remembered = {"id-1": "Payed", "id-2": "Payed", "id-3": "Payed"}
    observed = [order(1, "Payed"), order(2, "Delivered"), order(3, "Payed"), order(2, "Payed")]
    observed.append(order(4, "Created"))  # unknown: never settled, it is new
    assert settled(remembered, observed) == {"id-1", "id-3"}


@given(
    before=st.dictionaries(st.integers(0, 30), statuses, max_size=20),
    observations=st.lists(st.tuples(st.integers(0, 40), statuses), max_size=60),
)
def test_reading_only_unsettled_orders_whole_detects_the_same_changes(
    before: dict[int, str], observations: list[tuple[int, str]]
) -> None:
    """The poller's shortcut: glance at statuses, read whole only the orders not settled, and
    detect over the rest of the observations. It finds exactly what the full reading finds."""
    state = {f"id-{n}": known(n, s) for n, s in before.items()}
    observed = [order(n, s) for n, s in observations]
    unchanged = settled({i: k.order.status for i, k in state.items()}, observed)
    partial = {i: k for i, k in state.items() if i not in unchanged}
    shortcut = detect_changes(partial, [o for o in observed if o.id not in unchanged])
    assert shortcut == detect_changes(state, observed)


def test_during_the_first_sync_only_orders_above_its_head_are_announced() -> None:
    changes = [NewOrder(order(100)), NewOrder(order(101)), NewOrder(order(99))]
    events = events_for(changes, announce_new=False, after_gap=False, now=1.0, newer_than=100)
    assert [e.order.number for e in events] == [101]
