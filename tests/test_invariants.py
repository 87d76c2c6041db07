"""The invariant checker itself must catch what it is there to catch."""

from __future__ import annotations

from orderwatch._sandbox import WorldChange

from .invariants import Delivered, violations

INITIAL = {1: "Created", 2: "Payed"}
HISTORY = [
    WorldChange("a", 1, "Created", "Payed"),
    WorldChange("a", 1, "Payed", "ReadyForDelivery"),
    WorldChange("c", 3, None, "Created"),
]
NOW = {1: "ReadyForDelivery", 2: "Payed", 3: "Created"}


def test_net_changes_and_new_orders_pass() -> None:
    delivered = [
        Delivered("e1", "order.status_changed", 1, "Created", "ReadyForDelivery"),
        Delivered("e2", "order.created", 3, None, "Created"),
    ]
    assert violations(INITIAL, HISTORY, NOW, delivered, complete=True) == []


def test_a_change_that_did_not_happen_is_caught() -> None:
    delivered = [Delivered("e1", "order.status_changed", 2, "Payed", "Cancelled")]
    assert "#2: Payed → Cancelled never happened" in violations(
        INITIAL, HISTORY, NOW, delivered, complete=False
    )
    backwards = [Delivered("e1", "order.status_changed", 1, "ReadyForDelivery", "Created")]
    assert violations(INITIAL, HISTORY, NOW, backwards, complete=False)


def test_a_missing_change_and_a_missing_new_order_are_caught() -> None:
    found = violations(INITIAL, HISTORY, NOW, [], complete=True)
    assert "#1: announcements end at Created, the order is ReadyForDelivery" in found
    assert "#3: a new order never announced" in found


def test_duplicates_with_two_ids_are_caught_but_a_redelivered_id_is_not() -> None:
    one = Delivered("e1", "order.created", 3, None, "Created")
    assert violations(INITIAL, HISTORY, NOW, [one, one], complete=False) == []
    two = Delivered("e2", "order.created", 3, None, "Created")
    assert "#3: None → Created announced 2 times" in violations(
        INITIAL, HISTORY, NOW, [one, two], complete=False
    )


def test_an_order_of_the_first_sync_announced_as_new_is_caught() -> None:
    wrong = [Delivered("e1", "order.created", 2, None, "Payed")]
    assert "#2: announced as new but existed at the first sync" in violations(
        INITIAL, HISTORY, NOW, wrong, complete=False
    )
