"""The outbox courier: delivers pending deliveries, retries failures, gives up on stale ones.

Rules, all here:

- Each destination has its own worker and queue, in the order events were detected, so a
  failing or slow destination holds back only itself.
- A route's queue goes out once its oldest delivery is due (``group_wait`` after detection, or
  the end of quiet hours for a held one): as one digest or one message each, as
  ``_routing.sends_as_digest`` decides (watcher notices and summaries each alone:
  ``_routing.sent_alone``), never more than one message a second per route. Webhooks get one
  POST per event.
- A due delivery to a route that an active silence matches (``_silences.matching_silence``) is
  recorded as silenced and counted, not sent. Webhooks are never silenced.
- A failure is tried again after an exponential backoff with jitter (about 2 s, 4 s, 8 s …
  capped at one hour) or after the destination's ``Retry-After``, until the delivery is older
  than its age limit (``notify.max_age`` for routes, 72 h for webhooks): then it is a dead
  letter, logged and counted. A webhook answering 410 Gone is disabled until its configuration
  changes.
- A delivery is marked sent only after the destination accepted it; a send that has started is
  finished and recorded even during shutdown.
- Instances sharing a database each run a courier: a destination's worker first claims it
  (``claims``: this instance's holder name and the claim's length), renews the claim while it
  works and releases it when its queue is empty; a destination claimed elsewhere is left to its
  holder, and looked at again once that claim may have expired. While the database cannot be
  reached nothing is sent (nothing could be recorded). On a shared database every store call
  runs in a worker thread (:meth:`~orderwatch._store.Store.call`): a round trip never blocks
  the event loop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial
from itertools import groupby
from typing import Final

import anyio

from orderwatch._dispatch import DisabledWebhooks
from orderwatch._exceptions import StateUnavailableError
from orderwatch._metrics import Metrics
from orderwatch._ratelimit import RateLimiter
from orderwatch._routing import sends_as_digest, sent_alone
from orderwatch._silences import matching_silence
from orderwatch._sinks import Destination, send
from orderwatch._store import Delivery, Store
from orderwatch._webhooks import SendOutcome, WebhookSender, payload

__all__ = ["Courier", "due_batch", "retry_delay"]

log = logging.getLogger("orderwatch.notify")

_MAX_DELAY: Final = 3600.0
_IDLE_CHECK: Final = 60.0
_ROUTE_RATE: Final = 1.0  # messages a second a route may send (Slack's limit)

SendApprise = Callable[[Destination, str, str], Awaitable[str | None]]


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before the next try of a delivery that has failed ``attempts`` times (≥ 1)."""
    base = min(_MAX_DELAY, 2.0 ** min(attempts, 20))
    return base * rng.uniform(0.5, 1.0)


def due_batch(queue: Sequence[Delivery], now: float) -> list[Delivery]:
    """What a destination's queue may send ``now``: nothing until its oldest waiting delivery is
    due, then everything waiting. A held delivery (quiet hours) waits for its own time without
    holding back those behind it (urgent ones)."""
    waiting = [d for d in queue if not (d.held and d.next_attempt_at > now)]
    if not waiting or waiting[0].next_attempt_at > now:
        return []
    return waiting


def next_due(queue: Sequence[Delivery]) -> float | None:
    """When a destination's queue can next send: its first waiting delivery's time, or a held
    one's (the end of quiet hours), whichever comes first."""
    times = [d.next_attempt_at for d in queue if d.held]
    head = next((d for d in queue if not d.held), None)
    if head is not None:
        times.append(head.next_attempt_at)
    return min(times, default=None)


class Courier:
    """Delivers what the store holds pending: one worker per destination, woken by :meth:`wake`.

    ``clock`` tells the time and ``sleep`` lets it pass: a test hands in a virtual clock.
    """

    def __init__(
        self,
        store: Store,
        destinations: Sequence[Destination],
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        sender: SendApprise = send,
        webhooks: WebhookSender | None = None,
        rng: random.Random | None = None,
        disabled: DisabledWebhooks | None = None,
        claims: tuple[str, float] | None = None,
        on_outcome: Callable[[Destination, str | None], Awaitable[None]] | None = None,
    ) -> None:
        """``claims`` (instances sharing a database): this instance's holder name and how long
        its claim on a destination lasts unless renewed."""
        self._store, self._metrics = store, metrics
        self._claims = claims
        self._held: set[str] = set()
        self._destinations = {d.key: d for d in destinations}
        self._clock, self._sleep, self._send = clock, sleep, sender
        self._webhooks = webhooks
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._disabled = disabled if disabled is not None else DisabledWebhooks(store)
        self._wake = anyio.Event()
        self._failing: set[str] = set()
        self._pace: dict[str, RateLimiter] = {}
        self._workers: set[str] = set()
        self._on_outcome = on_outcome  # every send's result (None: accepted), for the watcher

    def configure(self, destinations: Sequence[Destination]) -> None:
        """Use ``destinations`` from now on (a reload)."""
        self._destinations = {d.key: d for d in destinations}

    def wake(self) -> None:
        """New deliveries were committed: look at the outbox now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever. What was pending when the daemon stopped is tried at once."""
        store = self._store
        # Shared: look again once another instance's claim may have expired.
        idle = _IDLE_CHECK if self._claims is None else self._claims[1]
        started = False
        failing = False
        async with anyio.create_task_group() as group:
            if self._claims is not None:
                group.start_soon(self._keep_claims)
            while True:
                try:
                    if not started:
                        await store.call(partial(store.make_pending_due, self._clock()))
                        started = True
                    for key in await store.call(store.pending_destinations):
                        if key not in self._workers:
                            self._workers.add(key)
                            group.start_soon(self._worker, key)
                    self._metrics.set_queue(await store.call(store.queue_counts))
                    failing = False
                except StateUnavailableError:
                    failing = True  # the lease keeper logs it, once a streak
                with anyio.move_on_after(min(idle, 1.0) if failing else idle):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _keep_claims(self) -> None:
        """Renew this instance's claims while their workers run (a send may outlast one)."""
        assert self._claims is not None  # noqa: S101 - started only with claims
        holder, ttl = self._claims
        while True:
            await anyio.sleep(ttl / 3)
            for key in list(self._held):
                with suppress(StateUnavailableError):
                    if not await self._store.call(partial(self._store.claim, key, holder, ttl=ttl)):
                        self._held.discard(key)

    async def _claim(self, key: str) -> bool:
        if self._claims is None:
            return True
        holder, ttl = self._claims
        if await self._store.call(partial(self._store.claim, key, holder, ttl=ttl)):
            self._held.add(key)
            return True
        self._held.discard(key)
        return False

    async def _worker(self, key: str) -> None:
        store = self._store
        try:
            while await self._claim(key):
                queue = await store.call(partial(store.pending_deliveries_for, key))
                if not queue:
                    return
                await self._deliver_queue(key, queue, self._clock())
                due = next_due(await store.call(partial(store.pending_deliveries_for, key)))
                if due is None:
                    return
                await self._sleep(min(max(due - self._clock(), 0.05), _IDLE_CHECK))
        except StateUnavailableError:
            return  # nothing could be recorded: the next look at the outbox starts it again
        finally:
            self._workers.discard(key)
            with anyio.CancelScope(shield=True), suppress(StateUnavailableError):
                if key in self._held and self._claims is not None:
                    self._held.discard(key)
                    await store.call(partial(store.release_claims, self._claims[0], [key]))
                self._metrics.set_queue(await store.call(store.queue_counts))

    async def _deliver_queue(self, key: str, queue: list[Delivery], now: float) -> None:
        destination = self._destinations.get(key)
        if destination is None or key in self._disabled:
            reason = "destination no longer configured" if destination is None else "disabled"
            await self._store.call(partial(self._dead, queue, reason, now))
            log.warning(
                "notify: dropped %d message(s) for %r: its destination is %s",
                len(queue), queue[0].route, reason,
            )  # fmt: skip
            return
        batch = await self._store.call(
            partial(self._unsilenced, destination, due_batch(queue, now), now)
        )
        if not batch:
            return
        alone = [d for d in batch if sent_alone(d.stored.event)]
        batch = [d for d in batch if not sent_alone(d.stored.event)]
        for delivery in alone:
            if not await self._attempt(destination, [delivery]):
                return
        if sends_as_digest(destination.policy, len(batch), held=any(d.held for d in batch)):
            await self._attempt(destination, batch)
            return
        for delivery in batch:
            if not await self._attempt(destination, [delivery]):
                return

    def _unsilenced(
        self, destination: Destination, batch: list[Delivery], now: float
    ) -> list[Delivery]:
        """Record the deliveries an active silence matches as silenced; the rest go out.
        Webhooks are never silenced: machines must see everything."""
        if destination.kind != "apprise" or not batch:
            return batch
        silences = self._store.silences(active_at=now)
        if not silences:
            return batch
        kept: list[Delivery] = []
        for delivery in batch:
            event = delivery.stored.event
            silence = matching_silence(
                silences,
                route=destination.route,
                kind=event.kind,
                status=None if event.note else event.order.status,
                number=None if event.note else event.order.number,
                now=now,
            )
            if silence is None:
                kept.append(delivery)
                continue
            self._store.mark_silenced([delivery], silence.id, now=now)
            self._metrics.notifications.labels(route=destination.route, outcome="silenced").inc()
        return kept

    async def _attempt(self, destination: Destination, batch: list[Delivery]) -> bool:
        if destination.kind == "apprise":
            pace = self._pace.setdefault(destination.route, RateLimiter(_ROUTE_RATE))
            await pace.acquire()
        # Nothing goes out before what it announces is on disk: lost in a power cut after the
        # send, the change would be observed and announced again.
        await self._store.call(self._store.sync)
        # A send that started is finished and recorded, even when shutdown is under way.
        with anyio.CancelScope(shield=True):
            outcome = await self._send_batch(destination, batch)
            delivered = await self._store.call(partial(self._settle, destination, batch, outcome))
        if self._on_outcome is not None:  # on the event loop: the console's
            await self._on_outcome(destination, outcome.error)
        return delivered

    async def _send_batch(self, destination: Destination, batch: list[Delivery]) -> SendOutcome:
        if destination.kind == "webhook":
            assert self._webhooks is not None  # noqa: S101 - the service always passes one
            stored = batch[0].stored
            return await self._webhooks.send(
                destination, payload(stored.event, stored.id), stored.id
            )
        templates = destination.templates
        if len(batch) == 1:
            title, body = templates.render(batch[0].stored.event, batch[0].stored.id)
        else:
            title, body = templates.render_digest([(d.stored.event, d.stored.id) for d in batch])
        return SendOutcome(error=await self._send(destination, title, body))

    def _settle(
        self, destination: Destination, batch: list[Delivery], outcome: SendOutcome
    ) -> bool:
        """Settle ``batch`` by ``outcome``: sent, tried again later, or dead. True when nothing
        of it is left to retry (the queue may go on)."""
        now = self._clock()
        route = destination.route
        if outcome.ok:
            self._store.mark_sent(batch, now=now)
            self._metrics.notifications.labels(route=route, outcome="sent").inc(len(batch))
            for delivery in batch:
                self._metrics.notification_latency.observe(now - delivery.stored.event.detected_at)
            if destination.key in self._failing:
                self._failing.discard(destination.key)
                log.info("notify: %s (%s) accepts messages again", route, destination.masked)
            return True
        error = outcome.error or "failed"
        self._metrics.notifications.labels(route=route, outcome="failed").inc(len(batch))
        if outcome.gone:
            killed = self._disabled.disable(
                destination.key, route, "disabled: the receiver answered 410 Gone", now=now
            )
            self._metrics.notifications.labels(route=route, outcome="dead").inc(killed)
            log.error(
                "notify: webhook %s (%s) answered 410 Gone: disabled until its configuration "
                "changes; %d pending message(s) dead-lettered",
                route, destination.masked, killed,
            )  # fmt: skip
            return False
        expired = [d for d in batch if now - d.age_from >= destination.max_age]
        if expired:
            self._dead(expired, error, now)
            log.error(
                "notify: gave up on %d message(s) for %s (%s) older than %s: %s",
                len(expired), route, destination.masked,
                f"{destination.max_age / 3600:g}h", error,
            )  # fmt: skip
        retry = [d for d in batch if d not in expired]
        if retry:
            delay = retry_delay(retry[0].attempts + 1, self._rng)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            self._store.mark_retry(retry, error, next_attempt_at=now + delay)
        if destination.key not in self._failing:
            self._failing.add(destination.key)
            log.warning(
                "notify: %s (%s) failed: %s; retrying with backoff",
                route,
                destination.masked,
                error,
            )
        return not retry

    def _dead(self, deliveries: list[Delivery], error: str, now: float) -> None:
        self._store.mark_dead(deliveries, error, now=now)
        for route, items in groupby(deliveries, key=lambda d: d.route):
            self._metrics.notifications.labels(route=route, outcome="dead").inc(len(list(items)))
