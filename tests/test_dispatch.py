"""Dispatch against a real state file: who gets each event and when, stuck reminders, and the
one set of disabled webhooks that the courier fills and dispatch obeys."""

from __future__ import annotations

from pathlib import Path

from orderwatch._detect import NewOrder, Transition, events_for
from orderwatch._dispatch import DisabledWebhooks, Dispatcher
from orderwatch._models import Order
from orderwatch._routing import Filters, RoutePolicy
from orderwatch._sinks import Destination
from orderwatch._store import Store, StoredEvent, open_store
from orderwatch._stuck import StuckRule

OPS = Destination(route="ops", key="ops", masked="json://…", url="json://127.0.0.1:1/")
SLOW = Destination(
    route="slow",
    key="slow",
    masked="json://…",
    url="json://127.0.0.1:2/",
    policy=RoutePolicy(group_wait=60.0),
)
HOOK = Destination(
    route="erp", key="hook", masked="https://…", url="https://erp.test/", kind="webhook"
)
STUCK_ONLY = Destination(
    route="stuck",
    key="stuck",
    masked="json://…",
    url="json://127.0.0.1:3/",
    filters=Filters(events=frozenset({"stuck"})),
)


def created(store: Store, number: int, status: str, now: float) -> None:
    change = NewOrder(Order(f"id-{number}", number, status))
    store.record({}, [change], [], anchors_before={}, now=now)


def test_each_target_carries_its_routes_delivery_plan(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    dispatch = Dispatcher(store, [OPS, SLOW, HOOK])
    [event] = events_for(
        [NewOrder(Order("id-1", 1, "Created"))], announce_new=True, after_gap=False, now=100.0
    )
    [(_, targets)] = dispatch.plan([event], 100.0)
    assert [(t.route, t.due_at) for t in targets] == [
        ("ops", 100.0),
        ("slow", 160.0),
        ("erp", 100.0),
    ]
    store.close()


def test_a_webhook_disabled_by_a_410_gets_nothing_until_its_configuration_changes(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "s.db")
    disabled = DisabledWebhooks(store)
    dispatch = Dispatcher(store, [OPS, HOOK], disabled=disabled)
    [event] = events_for(
        [NewOrder(Order("id-1", 1, "Created"))], announce_new=True, after_gap=False, now=1.0
    )
    disabled.disable("hook", "erp", "disabled: the receiver answered 410 Gone", now=1.0)
    assert [t.route for _, ts in dispatch.plan([event], 1.0) for t in ts] == ["ops"]
    assert "hook" in DisabledWebhooks(store)  # kept in the state file
    disabled.keep_only(["hook-with-a-new-secret"])
    assert "hook" not in disabled
    assert [t.route for _, ts in dispatch.plan([event], 1.0) for t in ts] == ["ops", "erp"]
    store.close()


def test_stuck_reminders_are_recorded_announced_and_their_resolution_reaches_the_alerted(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "s.db")
    announced: list[StoredEvent] = []
    rule = StuckRule("AwaitingCertificateAssignment", after=3600, repeat=None)
    dispatch = Dispatcher(
        store, [OPS, STUCK_ONLY], stuck_rules=[rule], on_committed=announced.extend
    )
    created(store, 7, "AwaitingCertificateAssignment", now=0.0)
    assert dispatch.remind_stuck(now=3599.0) == 0
    assert dispatch.remind_stuck(now=3600.0) == 1
    assert dispatch.remind_stuck(now=7200.0) == 0  # no repeat configured
    [alert] = announced
    assert alert.event.kind == "stuck"
    known = store.lookup(["id-7"])["id-7"]
    change = Transition(Order("id-7", 7, "Delivered"), known)
    [resolution] = events_for([change], announce_new=True, after_gap=False, now=8000.0)
    assert resolution.resolves_stuck
    [(_, targets)] = dispatch.plan([resolution], 8000.0)
    assert sorted(t.route for t in targets) == ["ops", "stuck"]
    store.close()
