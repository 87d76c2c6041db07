"""The courier: durable delivery with retries, per-destination order, dead letters."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from orderwatch._detect import NewOrder, events_for
from orderwatch._metrics import Metrics
from orderwatch._models import Order
from orderwatch._outbox import Courier, retry_delay
from orderwatch._sinks import Destination
from orderwatch._store import Store

pytestmark = pytest.mark.anyio

A = Destination(route="ops", key="a", masked="json://a", url="json://a.invalid/")
B = Destination(route="mail", key="b", masked="mailto://b", url="mailto://b.invalid")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSender:
    """Records sends; destinations in ``failing`` refuse."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failing: set[str] = set()

    async def __call__(self, destination: Destination, title: str, body: str) -> str | None:
        if destination.key in self.failing:
            return "HTTP 503"
        self.sent.append((destination.key, title))
        return None


def seed(store: Store, numbers: list[int], now: float) -> None:
    for n in numbers:
        change = NewOrder(Order(id=f"id-{n}", number=n, status="Created"))
        [event] = events_for([change], announce_new=True, after_gap=False, now=now)
        store.record([], [change], [(event, [("ops", "a"), ("mail", "b")])], known={}, now=now)


def make(tmp_path: Path) -> tuple[Store, Courier, FakeSender, Clock, Metrics]:
    store, sender, clock, metrics = Store.open(tmp_path / "s.db"), FakeSender(), Clock(), Metrics()
    courier = Courier(store, [A, B], metrics, clock=clock, sender=sender, rng=random.Random(1))
    return store, courier, sender, clock, metrics


def counter(metrics: Metrics, route: str, outcome: str) -> float:
    return metrics.notifications.labels(route=route, outcome=outcome)._value.get()


async def test_every_delivery_goes_out_once_and_is_marked_sent(tmp_path: Path) -> None:
    store, courier, sender, clock, metrics = make(tmp_path)
    seed(store, [1, 2], clock.now)
    assert await courier.deliver_due() is None
    assert sorted(sender.sent) == [
        ("a", "Order #1: new order (Created)"),
        ("a", "Order #2: new order (Created)"),
        ("b", "Order #1: new order (Created)"),
        ("b", "Order #2: new order (Created)"),
    ]
    await courier.deliver_due()
    assert len(sender.sent) == 4
    assert counter(metrics, "ops", "sent") == 2


async def test_a_failing_destination_keeps_its_order_and_does_not_delay_others(
    tmp_path: Path,
) -> None:
    store, courier, sender, clock, metrics = make(tmp_path)
    sender.failing.add("a")
    seed(store, [1, 2, 3], clock.now)
    next_due = await courier.deliver_due()
    assert [t for k, t in sender.sent if k == "b"] == [
        f"Order #{n}: new order (Created)" for n in (1, 2, 3)
    ]
    assert next_due is not None
    assert clock.now + 0.5 <= next_due <= clock.now + 4
    assert counter(metrics, "ops", "failed") == 1  # only the head of the queue was tried
    sender.failing.clear()
    clock.now = next_due
    await courier.deliver_due()
    assert [t for k, t in sender.sent if k == "a"] == [
        f"Order #{n}: new order (Created)" for n in (1, 2, 3)
    ]
    assert store.queue_counts() == {"pending": 0, "dead": 0}


async def test_a_delivery_older_than_max_age_becomes_a_dead_letter(tmp_path: Path) -> None:
    store, courier, sender, clock, metrics = make(tmp_path)
    sender.failing.add("a")
    seed(store, [1], clock.now)
    await courier.deliver_due()
    clock.now += 24 * 3600
    await courier.deliver_due()
    assert store.queue_counts() == {"pending": 0, "dead": 1}
    assert counter(metrics, "ops", "dead") == 1
    assert metrics.notification_queue.labels(state="dead")._value.get() == 1


async def test_a_removed_destination_dead_letters_its_deliveries(tmp_path: Path) -> None:
    store, _, sender, clock, metrics = make(tmp_path)
    seed(store, [1], clock.now)
    courier = Courier(store, [B], metrics, clock=clock, sender=sender)
    await courier.deliver_due()
    assert [k for k, _ in sender.sent] == ["b"]
    assert store.queue_counts()["dead"] == 1


def test_retry_delays_grow_to_an_hour_with_jitter() -> None:
    rng = random.Random(3)
    delays = [retry_delay(n, rng) for n in range(1, 20)]
    assert 1.0 <= delays[0] <= 2.0
    assert all(d <= 3600 for d in delays)
    assert delays[-1] >= 1800
