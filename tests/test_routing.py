"""Routing decisions, durations, quiet hours and stuck-order rules. Pure, so tested exactly."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from orderwatch._detect import Event, EventKind, KnownOrder, Note
from orderwatch._models import Order
from orderwatch._routing import (
    Filters,
    QuietHours,
    RoutePolicy,
    parse_duration,
    plan_delivery,
    recipients,
    sends_as_digest,
    sent_alone,
)
from orderwatch._stuck import StuckRule, stuck_events

MOSCOW = ZoneInfo("Europe/Moscow")


def at(hour: int, minute: int = 0, day: int = 10) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=MOSCOW).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("45", 45.0),
        ("90s", 90.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
    ],
)
def test_durations_read_as_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2 hours", "h", True, None, "5x"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(text)


def test_no_filter_matches_everything_and_each_filter_narrows() -> None:
    assert Filters().accepts("created", "Created", None)
    assert Filters(statuses=frozenset({"Cancelled"})).accepts(
        "status_changed", "Cancelled", "Payed"
    )
    assert not Filters(statuses=frozenset({"Cancelled"})).accepts(
        "status_changed", "Delivered", "Payed"
    )
    from_payed = Filters(from_statuses=frozenset({"Payed"}))
    assert from_payed.accepts("status_changed", "Cancelled", "Payed")
    assert not from_payed.accepts("status_changed", "Cancelled", "Created")
    assert not from_payed.accepts("created", "Payed", None)
    stuck_only = Filters(events=frozenset({"stuck"}))
    assert stuck_only.accepts("stuck", "AwaitingCertificateAssignment", None)
    assert not stuck_only.accepts("status_changed", "Delivered", "Payed")


def test_quiet_hours_spanning_midnight_end_the_next_morning() -> None:
    quiet = QuietHours.parse("22:00-08:00", "Europe/Moscow")
    assert quiet.end_of_quiet(at(23, 30)) == at(8, 0, day=11)
    assert quiet.end_of_quiet(at(3, 0)) == at(8, 0)
    assert quiet.end_of_quiet(at(8, 0)) is None
    assert quiet.end_of_quiet(at(21, 59)) is None


def test_quiet_hours_within_a_day() -> None:
    quiet = QuietHours.parse("12:00-13:30", "Europe/Moscow")
    assert quiet.end_of_quiet(at(12, 15)) == at(13, 30)
    assert quiet.end_of_quiet(at(13, 30)) is None


@pytest.mark.parametrize("window", ["22-08", "25:00-08:00", "08:00-08:00", "abc"])
def test_malformed_quiet_hours_are_refused(window: str) -> None:
    with pytest.raises(ValueError, match="must"):
        QuietHours.parse(window, "UTC")


def test_a_delivery_is_due_after_group_wait_or_held_until_quiet_hours_end() -> None:
    policy = RoutePolicy(
        group_wait=10, digest_threshold=5,
        quiet_hours=QuietHours.parse("22:00-08:00", "Europe/Moscow"), urgent=frozenset({"Cancelled"}),
    )  # fmt: skip
    noon = at(12)
    assert (
        plan_delivery(policy, "Payed", noon).due_at,
        plan_delivery(policy, "Payed", noon).held,
    ) == (noon + 10, False)
    night = at(23)
    held = plan_delivery(policy, "Payed", night)
    assert (held.due_at, held.held) == (at(8, day=11), True)
    urgent = plan_delivery(policy, "Cancelled", night)
    assert (urgent.due_at, urgent.held) == (night + 10, False)


def known(status: str, since: float, alerts: int = 0, last: float | None = None) -> KnownOrder:
    return KnownOrder(
        Order(f"id-{status}", 1, status), since, True, 0, stuck_alerts=alerts, stuck_last=last
    )


def test_a_stuck_alert_fires_after_the_threshold_then_every_repeat() -> None:
    rules = [StuckRule("AwaitingCertificateAssignment", after=7200, repeat=21600)]
    order = known("AwaitingCertificateAssignment", since=0.0)
    assert stuck_events([order], rules, now=7199) == []
    [first] = stuck_events([order], rules, now=7200)
    assert (first.kind, first.reminder, first.previous_since) == ("stuck", 0, 0.0)
    alerted = known("AwaitingCertificateAssignment", 0.0, alerts=1, last=7200.0)
    assert stuck_events([alerted], rules, now=7200 + 21599) == []
    [reminder] = stuck_events([alerted], rules, now=7200 + 21600)
    assert reminder.reminder == 1


def test_without_repeat_a_stuck_order_is_reported_once() -> None:
    rules = [StuckRule("Payed", after=60)]
    assert len(stuck_events([known("Payed", 0.0)], rules, now=100)) == 1
    assert stuck_events([known("Payed", 0.0, alerts=1, last=100.0)], rules, now=10**9) == []


def test_orders_in_other_statuses_are_never_stuck() -> None:
    assert stuck_events([known("Created", 0.0)], [StuckRule("Payed", after=1)], now=10**9) == []


ROUTE = RoutePolicy(group_wait=10, digest_threshold=5)


@pytest.mark.parametrize(
    ("waiting", "held", "digest"),
    [
        (5, False, False),  # at the threshold: one message each
        (6, False, True),  # above it: one digest
        (2, True, True),  # held for quiet hours: a digest, however few
        (1, True, False),  # a lone delivery is never a digest
    ],
)
def test_a_route_digests_above_its_threshold_or_after_quiet_hours(
    waiting: int, held: bool, digest: bool
) -> None:
    assert sends_as_digest(ROUTE, waiting, held=held) is digest


def test_a_webhook_never_gets_a_digest() -> None:
    assert not sends_as_digest(RoutePolicy(), 100, held=True)


class Dest:
    def __init__(
        self, key: str, statuses: set[str] | None = None, events: set[EventKind] | None = None
    ) -> None:
        self.key = self.route = key
        self.filters = Filters(
            statuses=None if statuses is None else frozenset(statuses),
            events=None if events is None else frozenset(events),
        )

    def accepts(self, event: Event) -> bool:
        return self.filters.accepts(event.kind, event.order.status, event.previous_status)

    def __repr__(self) -> str:
        return self.key


def moved(status: str, *, resolves_stuck: bool) -> Event:
    return Event(
        kind="status_changed",
        order=Order("id-1", 1, status),
        previous_status="AwaitingCertificateAssignment",
        previous_since=0.0,
        previous_since_exact=True,
        detected_at=10.0,
        after_gap=False,
        resolves_stuck=resolves_stuck,
    )


def test_an_event_goes_to_the_destinations_that_accept_it_and_never_to_a_disabled_one() -> None:
    ops, delivered_only, hook = Dest("ops"), Dest("d", {"Delivered"}), Dest("hook")
    chosen = recipients(
        moved("Cancelled", resolves_stuck=False),
        [ops, delivered_only, hook],
        disabled={"hook"},
        alerted=(),
    )
    assert chosen == [ops]


def test_a_resolution_also_goes_to_whoever_got_the_stuck_alert_whatever_its_filters() -> None:
    ops, stuck_only, other = Dest("ops"), Dest("stuck", {"Nothing"}), Dest("o", {"Nothing"})
    destinations = [ops, stuck_only, other]
    resolution = moved("Delivered", resolves_stuck=True)
    assert recipients(resolution, destinations, disabled=(), alerted={"stuck"}) == [ops, stuck_only]
    plain = moved("Delivered", resolves_stuck=False)
    assert recipients(plain, destinations, disabled=(), alerted={"stuck"}) == [ops]
    assert recipients(resolution, destinations, disabled={"stuck"}, alerted={"stuck"}) == [ops]


def note(kind: EventKind, about: str | None = None) -> Event:
    return Event.about(kind, Note("case", "title", "body", {}, about), 10.0)


def test_watcher_notices_pass_status_filters_but_not_event_filters() -> None:
    everything, cancelled_only = Dest("ops"), Dest("c", {"Cancelled"})
    orders_only = Dest("o", events={"created", "status_changed"})
    destinations = [everything, cancelled_only, orders_only]
    chosen = recipients(note("watcher"), destinations, disabled=(), alerted=())
    assert chosen == [everything, cancelled_only]


def test_a_failing_destination_s_notice_goes_to_every_other_one() -> None:
    ops, chat, hook = Dest("ops"), Dest("chat"), Dest("hook")
    notice = note("watcher", about="chat")
    assert recipients(notice, [ops, chat, hook], disabled=(), alerted=()) == [ops, hook]


def test_a_summary_goes_to_its_own_route_alone_whatever_its_filters() -> None:
    ops, chat = Dest("ops", {"Cancelled"}, {"stuck"}), Dest("chat")
    summary = note("summary", about="ops")
    assert recipients(summary, [ops, chat], disabled=(), alerted=()) == [ops]


def test_notices_and_summaries_are_sent_alone_and_order_events_may_share_a_digest() -> None:
    assert sent_alone(note("watcher"))
    assert sent_alone(note("summary", about="ops"))
    assert not sent_alone(moved("Delivered", resolves_stuck=True))
