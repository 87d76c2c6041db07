"""The outbox courier: delivers pending deliveries, retries failures, gives up on stale ones.

Retry rules, all here: a failed delivery is tried again after an exponential backoff with
jitter (about 2 s, 4 s, 8 s … capped at one hour) until its event is older than ``max_age``
(24 h by default: a stale alert is noise); then it is a dead letter, logged and counted.
Deliveries to one destination go out in the order their events were detected, so a failing
destination holds back only its own queue; the others go on.
A delivery is marked sent only after apprise reported success; a send that has started is
finished and recorded even during shutdown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import groupby
from typing import Final

import anyio

from orderwatch._messages import render
from orderwatch._metrics import Metrics
from orderwatch._sinks import Destination, send
from orderwatch._store import Delivery, Store

__all__ = ["Courier", "retry_delay"]

log = logging.getLogger("orderwatch.notify")

DEFAULT_MAX_AGE: Final = 24 * 3600.0
_MAX_DELAY: Final = 3600.0
_IDLE_CHECK: Final = 60.0

Send = Callable[[Destination, str, str], Awaitable[str | None]]


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before the next try of a delivery that has failed ``attempts`` times (≥ 1)."""
    base = min(_MAX_DELAY, 2.0 ** min(attempts, 20))
    return base * rng.uniform(0.5, 1.0)


class Courier:
    """Delivers what the store holds pending, in a loop woken by :meth:`wake`."""

    def __init__(
        self,
        store: Store,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
        sender: Send = send,
        rng: random.Random | None = None,
    ) -> None:
        self._store, self._metrics = store, metrics
        self._destinations = {d.key: d for d in destinations}
        self._max_age, self._clock, self._send = max_age, clock, sender
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = anyio.Event()
        self._failing: set[str] = set()

    def configure(self, destinations: Sequence[Destination]) -> None:
        """Use ``destinations`` from now on (a reload)."""
        self._destinations = {d.key: d for d in destinations}

    def wake(self) -> None:
        """New deliveries were committed: look at the outbox now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever; sleeps until woken or until the next retry is due.

        What was pending when the daemon stopped is tried at once on start.
        """
        self._store.make_pending_due(self._clock())
        while True:
            next_due = await self.deliver_due()
            wait = _IDLE_CHECK if next_due is None else max(0.0, next_due - self._clock())
            with anyio.move_on_after(min(wait, _IDLE_CHECK)):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def deliver_due(self) -> float | None:
        """Send every due delivery once; return when the earliest remaining one is due."""
        pending = self._store.pending_deliveries()
        now = self._clock()
        async with anyio.create_task_group() as group:
            for _, queue in groupby(pending, key=lambda d: d.destination):
                group.start_soon(self._deliver_queue, list(queue), now)
        self._metrics.set_queue(self._store.queue_counts())
        heads: dict[str, float] = {}  # a queue is due when its oldest delivery is
        for delivery in self._store.pending_deliveries():
            heads.setdefault(delivery.destination, delivery.next_attempt_at)
        return min(heads.values(), default=None)

    async def _deliver_queue(self, queue: list[Delivery], now: float) -> None:
        for delivery in queue:
            if delivery.next_attempt_at > now:
                return  # later events wait behind this one: order is kept per destination
            destination = self._destinations.get(delivery.destination)
            if destination is None:
                self._store.mark_dead(delivery, "destination no longer configured", now=now)
                self._metrics.notifications.labels(route=delivery.route, outcome="dead").inc()
                log.warning(
                    "notify: dropped a message for route %r: its destination is no longer "
                    "configured",
                    delivery.route,
                )
                continue
            # A send that started is finished and recorded, even when shutdown is under way.
            with anyio.CancelScope(shield=True):
                delivered = await self._deliver(destination, delivery)
            if not delivered:
                return

    async def _deliver(self, destination: Destination, delivery: Delivery) -> bool:
        title, body = render(delivery.stored.event)
        error = await self._send(destination, title, body)
        now = self._clock()
        route = destination.route
        if error is None:
            self._store.mark_sent(delivery, now=now)
            self._metrics.notifications.labels(route=route, outcome="sent").inc()
            if destination.key in self._failing:
                self._failing.discard(destination.key)
                log.info("notify: %s (%s) accepts messages again", route, destination.masked)
            return True
        self._metrics.notifications.labels(route=route, outcome="failed").inc()
        if now - delivery.stored.event.detected_at >= self._max_age:
            self._store.mark_dead(delivery, error, now=now)
            self._metrics.notifications.labels(route=route, outcome="dead").inc()
            log.error(
                "notify: gave up on %r for %s (%s) after %d tries: %s",
                title,
                route,
                destination.masked,
                delivery.attempts + 1,
                error,
            )
            return True
        delay = retry_delay(delivery.attempts + 1, self._rng)
        self._store.mark_retry(delivery, error, next_attempt_at=now + delay)
        if destination.key not in self._failing:
            self._failing.add(destination.key)
            log.warning(
                "notify: %s (%s) failed: %s; retrying with backoff",
                route,
                destination.masked,
                error,
            )
        return False
