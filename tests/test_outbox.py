"""The courier: durable delivery with retries, per-destination order, digests, quiet hours,
dead letters, webhooks that go away."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from orderwatch._detect import Event, NewOrder, Note, Transition, events_for
from orderwatch._dispatch import DisabledWebhooks
from orderwatch._messages import MessageTemplates
from orderwatch._metrics import Metrics
from orderwatch._models import Order
from orderwatch._outbox import Courier, due_batch, retry_delay
from orderwatch._routing import RoutePolicy
from orderwatch._silences import Silence
from orderwatch._sinks import Destination
from orderwatch._store import Store, Target, open_store
from orderwatch._webhooks import SendOutcome

from .conftest import round_trips

pytestmark = pytest.mark.anyio

A = Destination(route="ops", key="a", masked="json://a", url="json://a.invalid/")
B = Destination(route="mail", key="b", masked="mailto://b", url="mailto://b.invalid")
HOOK = Destination(
    route="erp", key="w", masked="https://erp.invalid/", url="https://erp.invalid/",
    kind="webhook", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", max_age=72 * 3600,
)  # fmt: skip


class Clock:
    """Virtual time: it moves only when a test moves it, and ends the courier's sleeps then."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._alarms: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        alarm = (self.now + seconds, anyio.Event())
        self._alarms.append(alarm)
        await alarm[1].wait()

    @property
    def alarms(self) -> list[float]:
        """When the sleeping workers wake, earliest first."""
        return sorted(end for end, _ in self._alarms)

    def move_to(self, moment: float) -> None:
        self.now = moment
        for alarm in [a for a in self._alarms if a[0] <= moment]:
            self._alarms.remove(alarm)
            alarm[1].set()


class FakeSender:
    """Records apprise sends; destinations in ``failing`` refuse."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.failing: set[str] = set()

    async def __call__(self, destination: Destination, title: str, body: str) -> str | None:
        if destination.key in self.failing:
            return "HTTP 503"
        self.sent.append((destination.key, title, body))
        return None

    def titles(self, key: str) -> list[str]:
        return [t for k, t, _ in self.sent if k == key]


class FakeWebhooks:
    def __init__(self) -> None:
        self.outcomes: list[SendOutcome] = []
        self.sent: list[str] = []

    async def send(self, destination: Destination, body: bytes, event_id: str) -> SendOutcome:
        outcome = self.outcomes.pop(0) if self.outcomes else SendOutcome()
        if outcome.ok:
            self.sent.append(event_id)
        return outcome


def seed(store: Store, numbers: list[int], now: float, targets: list[Target] | None = None) -> None:
    for n in numbers:
        change = NewOrder(Order(id=f"id-{n}", number=n, status="Created"))
        [event] = events_for([change], announce_new=True, after_gap=False, now=now)
        chosen = targets or [Target("ops", "a", now), Target("mail", "b", now)]
        store.record({}, [change], [(event, chosen)], anchors_before={}, now=now)


def make(
    tmp_path: Path, destinations: list[Destination] | None = None
) -> tuple[Store, Courier, FakeSender, Clock, Metrics, FakeWebhooks]:
    store, sender, clock, metrics = open_store(tmp_path / "s.db"), FakeSender(), Clock(), Metrics()
    webhooks = FakeWebhooks()
    courier = Courier(
        store, destinations or [A, B, HOOK], metrics, clock=clock, sleep=clock.sleep,
        sender=sender, webhooks=webhooks, rng=random.Random(1),  # type: ignore[arg-type]
    )  # fmt: skip
    return store, courier, sender, clock, metrics, webhooks


@asynccontextmanager
async def delivering(courier: Courier) -> AsyncIterator[None]:
    """The courier's real loop, running until the block ends; ready once it waits for work."""
    async with anyio.create_task_group() as group:
        group.start_soon(courier.run)
        await anyio.wait_all_tasks_blocked()
        yield
        group.cancel_scope.cancel()


async def settled(courier: Courier) -> None:
    """New deliveries were committed: let the courier act on them until it waits again."""
    courier.wake()
    await anyio.wait_all_tasks_blocked()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


def counter(metrics: Metrics, route: str, outcome: str) -> float:
    return metrics.notifications.labels(route=route, outcome=outcome)._value.get()


def one(numbers: list[int]) -> list[str]:
    return [f"Order #{n}: new order (Created)" for n in numbers]


async def test_every_delivery_goes_out_once_and_is_marked_sent(tmp_path: Path) -> None:
    store, courier, sender, clock, metrics, _ = make(tmp_path)
    seed(store, [1, 2], clock.now)
    async with delivering(courier):
        await until(lambda: len(sender.sent) == 4, "four sends")
        await settled(courier)
    assert sender.titles("a") == one([1, 2])
    assert sender.titles("b") == one([1, 2])
    assert len(sender.sent) == 4
    assert store.queue_counts() == {"pending": 0, "dead": 0}
    assert counter(metrics, "ops", "sent") == 2
    assert metrics.notification_latency._sum.get() == 0  # the fake clock did not move


async def test_nothing_is_sent_before_what_it_announces_is_synced_to_disk(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, _, _ = make(tmp_path, [A])
    journal: list[str] = []
    store._db.set_trace_callback(
        lambda sql: journal.append(sql) if sql.startswith("PRAGMA synchronous") else None
    )
    inner = sender.__call__

    async def noting(destination: Destination, title: str, body: str) -> str | None:
        journal.append(f"send {title}")
        return await inner(destination, title, body)

    courier._send = noting
    seed(store, [1], clock.now, [Target("ops", "a", clock.now)])
    async with delivering(courier):
        await until(lambda: len(journal) == 3, "the send")
    # The event was committed without an fsync; the send waited for one.
    assert journal == [
        "PRAGMA synchronous = NORMAL",
        "PRAGMA synchronous = FULL",
        "send Order #1: new order (Created)",
    ]


async def test_a_failing_destination_keeps_its_order_and_does_not_delay_others(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, metrics, _ = make(tmp_path)
    sender.failing.add("a")
    seed(store, [1, 2, 3], clock.now)
    async with delivering(courier):
        await until(lambda: sender.titles("b") == one([1, 2, 3]), "b's three messages")
        [next_due] = clock.alarms  # a's worker waits for its retry; b's is done
        assert clock.now + 0.5 <= next_due <= clock.now + 4
        assert counter(metrics, "ops", "failed") == 1  # only the head of the queue was tried
        sender.failing.clear()
        clock.move_to(next_due)
        await until(lambda: sender.titles("a") == one([1, 2, 3]), "a's three messages")
    assert store.queue_counts() == {"pending": 0, "dead": 0}


async def test_a_delivery_older_than_max_age_becomes_a_dead_letter(tmp_path: Path) -> None:
    store, courier, sender, clock, metrics, _ = make(tmp_path)
    sender.failing.add("a")
    seed(store, [1], clock.now)
    async with delivering(courier):
        await until(lambda: len(clock.alarms) == 1, "a's retry to be scheduled")
        clock.move_to(clock.now + 24 * 3600)
        dead = metrics.notification_queue.labels(state="dead")
        await until(lambda: dead._value.get() == 1, "the dead letter to be counted")
    assert store.queue_counts() == {"pending": 0, "dead": 1}
    assert counter(metrics, "ops", "dead") == 1


async def test_a_removed_destination_dead_letters_its_deliveries(tmp_path: Path) -> None:
    store, _, sender, clock, metrics, _ = make(tmp_path)
    seed(store, [1], clock.now)
    courier = Courier(store, [B], metrics, clock=clock, sleep=clock.sleep, sender=sender)
    async with delivering(courier):
        await until(lambda: store.queue_counts()["pending"] == 0, "both deliveries settled")
    assert [k for k, _, _ in sender.sent] == ["b"]
    assert store.queue_counts()["dead"] == 1


def test_retry_delays_grow_to_an_hour_with_jitter() -> None:
    rng = random.Random(3)
    delays = [retry_delay(n, rng) for n in range(1, 20)]
    assert 1.0 <= delays[0] <= 2.0
    assert all(d <= 3600 for d in delays)
    assert delays[-1] >= 1800


DIGESTING = Destination(
    route="ops", key="a", masked="json://a", url="json://a.invalid/",
    policy=RoutePolicy(group_wait=10, digest_threshold=5),
)  # fmt: skip


async def test_more_than_the_threshold_waiting_become_one_digest(tmp_path: Path) -> None:
    store, courier, sender, clock, metrics, _ = make(tmp_path, [DIGESTING])
    async with delivering(courier):
        seed(store, list(range(1, 61)), clock.now, [Target("ops", "a", clock.now + 10)])
        await settled(courier)
        assert sender.sent == []  # group_wait has not passed
        clock.move_to(clock.now + 10)
        await until(lambda: len(sender.sent) == 1, "the digest")
    [(_key, title, body)] = sender.sent
    assert title == "60 new orders"
    assert body.splitlines()[0] == "new order (Created): 60"
    assert body.splitlines()[-1].endswith("#20 and 40 more")
    assert counter(metrics, "ops", "sent") == 60


async def test_at_most_the_threshold_go_one_by_one_at_one_a_second(tmp_path: Path) -> None:
    store, courier, sender, clock, _, _ = make(tmp_path, [DIGESTING])
    seed(store, [1, 2, 3], clock.now, [Target("ops", "a", clock.now)])
    started = anyio.current_time()
    async with delivering(courier):
        await until(lambda: len(sender.sent) == 3, "three messages")
    assert sender.titles("a") == one([1, 2, 3])
    assert anyio.current_time() - started >= 1.9  # three messages, one a second


async def test_events_arriving_within_group_wait_join_the_first_ones_batch(tmp_path: Path) -> None:
    store, courier, sender, clock, _, _ = make(tmp_path, [DIGESTING])
    async with delivering(courier):
        seed(store, [1], clock.now, [Target("ops", "a", clock.now + 10)])
        await settled(courier)
        clock.move_to(clock.now + 8)
        seed(store, [2, 3, 4, 5, 6, 7], clock.now, [Target("ops", "a", clock.now + 10)])
        await settled(courier)
        clock.move_to(clock.now + 2)
        await until(lambda: len(sender.sent) == 1, "the digest")
    assert [t for _, t, _ in sender.sent] == ["7 new orders"]


async def test_held_deliveries_wait_for_quiet_hours_to_end_and_urgent_ones_do_not(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, _, _ = make(tmp_path, [DIGESTING])
    quiet_end = clock.now + 3600
    async with delivering(courier):
        seed(store, [1, 2], clock.now, [Target("ops", "a", quiet_end, held=True)])
        seed(store, [3], clock.now, [Target("ops", "a", clock.now)])  # urgent: not held
        await settled(courier)
        assert sender.titles("a") == one([3])
        clock.move_to(quiet_end)
        await until(lambda: len(sender.sent) == 2, "the held ones")
    assert sender.titles("a")[1:] == ["2 new orders"]  # held ones come as one digest


async def test_templates_shape_single_messages_and_digests(tmp_path: Path) -> None:
    custom = Destination(
        route="ops", key="a", masked="json://a", url="json://a.invalid/",
        policy=RoutePolicy(digest_threshold=1),
        templates=MessageTemplates(
            title="#{{ number }} is {{ status }}", body="event {{ event_type }}",
            digest_title="{{ count }} things", digest_body="{% for e in events %}{{ e.number }} {% endfor %}",
        ),
    )  # fmt: skip
    store, courier, sender, clock, _, _ = make(tmp_path, [custom])
    async with delivering(courier):
        seed(store, [1], clock.now, [Target("ops", "a", clock.now)])
        await settled(courier)
        seed(store, [2, 3], clock.now, [Target("ops", "a", clock.now)])
        courier.wake()
        await until(lambda: len(sender.sent) == 2, "the digest")
    assert [(t, b) for _, t, b in sender.sent] == [
        ("#1 is Created", "event created"),
        ("2 things", "2 3"),
    ]


async def test_a_webhook_gets_one_post_per_event_and_honours_retry_after(tmp_path: Path) -> None:
    store, courier, _, clock, metrics, webhooks = make(tmp_path)
    webhooks.outcomes = [SendOutcome(error="HTTP 429", retry_after=120.0)]
    seed(store, [1, 2], clock.now, [Target("erp", "w", clock.now)])
    async with delivering(courier):
        await until(lambda: len(clock.alarms) == 1, "the retry to be scheduled")
        [retry_at, _] = [d.next_attempt_at for d in store.pending_deliveries()]
        assert retry_at >= clock.now + 120
        clock.move_to(retry_at - 1)
        await settled(courier)
        assert webhooks.sent == []  # not a second before Retry-After allows
        clock.move_to(retry_at)
        await until(lambda: len(webhooks.sent) == 2, "both posts")
    assert counter(metrics, "erp", "sent") == 2


async def test_a_webhook_answering_410_is_disabled_and_its_queue_dead_lettered(
    tmp_path: Path,
) -> None:
    store, courier, _, clock, metrics, webhooks = make(tmp_path)
    webhooks.outcomes = [SendOutcome(error="HTTP 410 Gone", gone=True)]
    seed(store, [1, 2, 3], clock.now, [Target("erp", "w", clock.now)])
    async with delivering(courier):
        await until(lambda: store.queue_counts()["dead"] == 3, "the queue dead-lettered")
    assert "w" in DisabledWebhooks(store)
    assert store.queue_counts() == {"pending": 0, "dead": 3}
    [(name, reason, _)] = store.disabled_webhooks().values()
    assert (name, reason) == ("erp", "disabled: the receiver answered 410 Gone")
    assert counter(metrics, "erp", "dead") == 3


async def test_webhooks_keep_their_deliveries_for_72_hours(tmp_path: Path) -> None:
    store, courier, _, clock, _, webhooks = make(tmp_path)
    webhooks.outcomes = [SendOutcome(error="HTTP 500")] * 3
    seed(store, [1], clock.now, [Target("erp", "w", clock.now)])
    async with delivering(courier):
        await settled(courier)
        clock.move_to(clock.now + 48 * 3600)
        await settled(courier)
        assert [d.attempts for d in store.pending_deliveries()] == [2]  # tried again, kept
        clock.move_to(clock.now + 24 * 3600)
        await until(lambda: store.queue_counts()["dead"] == 1, "the dead letter")
    assert store.queue_counts() == {"pending": 0, "dead": 1}


def test_due_batch_waits_for_the_head_then_takes_the_queue(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    seed(store, [1, 2], 0.0, [Target("ops", "a", 10.0)])
    queue = store.pending_deliveries()
    assert due_batch(queue, 5.0) == []
    assert len(due_batch(queue, 10.0)) == 2


async def test_a_resolving_transition_says_so(tmp_path: Path) -> None:
    from orderwatch._detect import KnownOrder

    store, courier, sender, clock, _, _ = make(tmp_path, [A])
    before = KnownOrder(
        Order("id-9", 9, "AwaitingCertificateAssignment"), 0.0, True, 0, stuck_alerts=2
    )
    [event] = events_for(
        [Transition(Order("id-9", 9, "Delivered"), before)],
        announce_new=True,
        after_gap=False,
        now=clock.now,
    )
    store.record(
        {}, [], [(event, [Target("ops", "a", clock.now)])], anchors_before={}, now=clock.now
    )
    async with delivering(courier):
        await until(lambda: len(sender.sent) == 1, "the message")
    [(_, title, body)] = sender.sent
    assert title == "Order #9: AwaitingCertificateAssignment → Delivered"
    assert "This resolves the alert that it was stuck in AwaitingCertificateAssignment." in body


async def test_on_a_shared_database_no_round_trip_of_the_courier_blocks_the_event_loop(
    postgres_url: str,
) -> None:
    """Claims, queue reads, syncs, settling a send and dead-lettering a destination no longer
    configured all run in the store's worker thread."""
    store, sender, clock = open_store(postgres_url), FakeSender(), Clock()
    seed(store, [1, 2], clock.now, [Target("ops", "a", clock.now), Target("gone", "x", clock.now)])
    courier = Courier(
        store, [A], Metrics(), clock=clock, sleep=clock.sleep, sender=sender,
        claims=("me#1", 5.0),
    )  # fmt: skip
    watcher = open_store(postgres_url)  # the test's own looks, on the event loop
    blocking = round_trips(store)
    async with anyio.create_task_group() as group:
        group.start_soon(courier.run)
        drained = {"pending": 0, "dead": 2}
        await until(lambda: watcher.queue_counts() == drained, "the queue drained")
        group.cancel_scope.cancel()
    assert sender.titles("a") == one([1, 2])
    assert blocking
    assert not any(blocking)
    watcher.close()
    store.close()


async def test_a_watcher_notice_goes_alone_and_the_burst_beside_it_still_becomes_a_digest(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, _, _ = make(tmp_path, [DIGESTING])
    seed(store, list(range(1, 11)), clock.now, [Target("ops", "a", clock.now)])
    text = Note("api_recovered", "orderwatch sees the Orders API again", "It was blind for 6m.")
    notice = Event.about("watcher", text, clock.now)
    store.record_notes([(notice, [Target("ops", "a", clock.now)])], meta={})
    async with delivering(courier):
        await until(lambda: len(sender.sent) == 2, "the notice and the digest")
    assert sender.titles("a") == ["orderwatch sees the Orders API again", "10 new orders"]
    assert sender.sent[0][2] == "It was blind for 6m."


async def test_a_silence_records_route_deliveries_as_silenced_but_never_holds_back_webhooks(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, metrics, webhooks = make(tmp_path)
    store.add_silence(Silence(id=0, ends_at=clock.now + 3600, statuses=frozenset({"Created"})))
    seed(store, [1], clock.now, [Target("ops", "a", clock.now), Target("erp", "w", clock.now)])
    async with delivering(courier):
        await until(lambda: len(webhooks.sent) == 1, "the webhook's post")
        await until(lambda: store.queue_counts()["pending"] == 0, "the route's delivery settled")
    assert sender.sent == []
    assert counter(metrics, "ops", "silenced") == 1
    assert counter(metrics, "erp", "silenced") == 0
    assert store.silenced_count() == 1
