"""The daemon: the poll loop, the courier and the metrics listener in one anyio task group.

- SIGTERM or SIGINT stops it: no new cycle or send starts, sends already under way finish and
  are recorded, the state file is closed, and :meth:`Service.run` returns.
- SIGHUP reloads routes, webhooks, ``notify`` settings, stuck-order alerts and poll settings from
  the same file, keeping state and pending deliveries; an invalid file is rejected with its
  reasons logged, and the running configuration stays. Changes to ``[api]``, ``[state]``,
  ``[metrics]`` and ``[log]`` need a restart (said in the log).
- Under systemd it speaks sd_notify: ``READY=1`` once the first cycle has finished, ``STATUS=``
  after each cycle, ``WATCHDOG=1`` from the poll loop itself, ``RELOADING=1``, ``STOPPING=1``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import anyio
import httpx
import stamina.instrumentation

from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._exceptions import (
    ApiError,
    ConfigError,
    CredentialsError,
    LeadershipLostError,
    OrderwatchError,
    StateError,
    StateUnavailableError,
)
from orderwatch._leadership import Leadership
from orderwatch._logging import redactor
from orderwatch._metrics import Health, Metrics, MetricsServer
from orderwatch._outbox import Courier
from orderwatch._planner import next_interval
from orderwatch._poller import Poller
from orderwatch._settings import Settings, load_settings
from orderwatch._sinks import Destination, destinations_for, secrets_in
from orderwatch._store import Store, open_store, url_secrets
from orderwatch._stuck import StuckRule
from orderwatch._systemd import SystemdNotifier
from orderwatch._webhooks import WebhookSender

__all__ = ["Service", "ServiceOptions", "run_service"]

log = logging.getLogger("orderwatch")

_MAX_NAP: Final = 5.0  # the loop wakes at least this often while it waits (watchdog, reload)
_RESTART_SECTIONS: Final = ("api", "state", "metrics", "log")


def stuck_rules(settings: Settings) -> list[StuckRule]:
    return [StuckRule(r.status, r.after, r.repeat) for r in settings.alerts.stuck]


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Knobs for embedding the daemon (the demo, tests); the defaults are the daemon's."""

    config_path: Path | None = None
    transport: httpx.AsyncBaseTransport | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    handle_signals: bool = True
    on_metrics_port: Callable[[int], None] = lambda _: None


async def run_service(settings: Settings, options: ServiceOptions | None = None) -> None:
    """Run the daemon until a signal (or cancellation) stops it. See :class:`Service`."""
    try:
        await Service(settings, options or ServiceOptions()).run()
    except BaseExceptionGroup as group:
        # A task's OrderwatchError is the one-line story the user needs, not the group.
        first = _first_orderwatch_error(group)
        if first is None:
            raise
        raise first from None


def _first_orderwatch_error(group: BaseExceptionGroup[BaseException]) -> OrderwatchError | None:
    for error in group.exceptions:
        if isinstance(error, OrderwatchError):
            return error
        if isinstance(error, BaseExceptionGroup):
            found = _first_orderwatch_error(error)
            if found is not None:
                return found
    return None


class Service:
    """One running daemon.

    :meth:`run` raises :class:`~orderwatch.OrderwatchError` for what it cannot run with (an
    unusable state file, a metrics port in use); everything upstream is logged and retried.
    """

    def __init__(self, settings: Settings, options: ServiceOptions) -> None:
        self.settings = settings
        self.options = options
        self.notifier = SystemdNotifier()
        self.metrics = Metrics()
        self.health = Health(settings.poll.interval)
        self._last_poll = "not yet"
        self._early_signal: int | None = None
        self._interval = settings.poll.interval
        self._ready = False

    def _catch_early_signals(self) -> None:
        """Until the signal receiver runs, remember a SIGTERM/SIGINT instead of dying of it."""

        def remember(signum: int, _: object) -> None:
            self._early_signal = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, remember)

    async def run(self) -> None:
        settings, options = self.settings, self.options
        if options.handle_signals:
            self._catch_early_signals()
        stamina.instrumentation.set_on_retry_hooks([])  # the client logs retries once per streak
        destinations = destinations_for(settings.notify)
        self._redact_secrets(destinations)
        self.metrics.lifecycle.state("starting")

        application = f"orderwatch {settings.ha.instance}"
        store = open_store(
            settings.state.location,
            exclusive=True,
            idle_timeout=settings.ha.lease,
            application=application,
        )
        stores = [store]
        webhooks = WebhookSender()
        server = None
        self.leadership: Leadership | None = None
        try:
            courier_store, lease_store = self._more_stores(stores)
            store.forget_disabled_except([d.key for d in destinations if d.kind == "webhook"])
            disabled = set(store.disabled_webhooks())
            for name, reason, _ in store.disabled_webhooks().values():
                log.warning("notify: webhook %s stays %s", name, reason)
            server = self._serve_metrics()
            self.leadership = leadership = Leadership(
                lease_store,
                instance=settings.ha.instance,
                lease=settings.ha.lease,
                interval=settings.poll.interval,
                metrics=self.metrics,
                health=self.health,
            )
            async with OrdersApi(
                settings.api,
                transport=options.transport,
                retry=options.retry,
                observe=self._observe_api,
                on_secret=redactor.add,
                on_malformed=lambda e: self.metrics.malformed_responses.labels(endpoint=e).inc(),
            ) as api:
                self.api, self.store = api, store
                self._disabled = disabled
                self.courier = Courier(
                    courier_store,
                    destinations,
                    self.metrics,
                    webhooks=webhooks,
                    disabled=disabled,
                    claims=(leadership.holder, settings.ha.lease) if store.shared else None,
                )
                self.poller: Poller | None = None
                self._log_start(store, len(destinations))
                async with anyio.create_task_group() as group:
                    if options.handle_signals:
                        group.start_soon(self._handle_signals, group.cancel_scope)
                    group.start_soon(leadership.run)
                    group.start_soon(self.courier.run)
                    group.start_soon(self._poll_forever)
        finally:
            self.metrics.lifecycle.state("stopping")
            self.notifier.stopping()
            if self.leadership is not None:
                await self.leadership.release()
            if server is not None:
                server.close()
            with anyio.CancelScope(shield=True):
                await webhooks.aclose()
            for opened in stores:
                opened.close()
            log.info("orderwatch stopped")

    def _redact_secrets(self, destinations: list[Destination]) -> None:
        settings = self.settings
        api_secrets = (settings.api.client_secret, settings.api.token)
        redactor.add(*(s.get_secret_value() for s in api_secrets if s is not None))
        if settings.state.url is not None:
            redactor.add(*url_secrets(settings.state.url.get_secret_value()))
        redactor.add(*secrets_in(destinations))

    def _log_start(self, store: Store, destinations: int) -> None:
        settings = self.settings
        log.info(
            "orderwatch started: watching %s every %gs, %d destinations, state %s%s",
            settings.api.base_url,
            settings.poll.interval,
            destinations,
            store.location,
            f", instance {settings.ha.instance}" if store.shared else "",
        )

    def _more_stores(self, opened: list[Store]) -> tuple[Store, Store]:
        """The courier's and the lease keeper's store, beside the poller's (``opened[0]``; new
        ones are appended). On a shared database each has a connection of its own: a renewal
        never waits behind a poll, and the courier's commits are never part of the poller's.
        On a file, the one store serves all."""
        state, lease = self.settings.state, self.settings.ha.lease
        if not opened[0].shared:
            return opened[0], opened[0]
        self.health.lease = lease
        application = f"orderwatch {self.settings.ha.instance}"
        opened.extend(
            open_store(state.location, idle_timeout=lease, application=application)
            for _ in range(2)
        )
        return opened[1], opened[2]

    def _serve_metrics(self) -> MetricsServer | None:
        address = self.settings.metrics.address
        if address is None:
            return None
        host, port = address
        server = MetricsServer(host, port, self.metrics.registry, self.health)
        self.options.on_metrics_port(server.port)
        log.info("metrics on http://%s:%d/metrics", host, server.port)
        if host not in {"127.0.0.1", "localhost", "::1"}:
            log.warning("metrics: listening on %s, reachable beyond this machine", host)
        return server

    # -- the poll loop ----------------------------------------------------------------------

    def _observe_api(self, endpoint: str, code: str, seconds: float) -> None:
        self.metrics.observe_api(endpoint, code, seconds)
        self.notifier.watchdog()  # every answered request is the loop making progress

    def _on_page(self) -> None:
        self.health.last_progress = time.time()
        self.notifier.watchdog()

    def _make_poller(self) -> Poller:
        """A poller for a new term as leader: it reads the shared state afresh."""
        settings = self.settings
        return Poller(
            self.api,
            self.store,
            destinations_for(settings.notify),
            self.metrics,
            announce_initial=settings.notify.initial,
            on_committed=lambda _: self.courier.wake(),
            on_page=self._on_page,
            stuck_rules=stuck_rules(settings),
            concurrency=settings.api.concurrency,
            reconcile=settings.poll.full_sync_interval,
            disabled=self._disabled,
        )

    async def _poll_forever(self) -> None:
        """Poll while this instance leads; stand by (keeping the shared gauges fresh) while
        another does."""
        assert self.leadership is not None  # noqa: S101 - run() sets it before this starts
        leadership = self.leadership
        while True:
            while not leadership.leader:
                await self._stand_by()
            epoch = await leadership.wait_elected()
            self.store.fence(leadership.holder, epoch)
            self.poller = self._make_poller()
            async with anyio.create_task_group() as term:

                async def end_of_term(scope: anyio.CancelScope) -> None:
                    await leadership.wait_deposed()
                    scope.cancel()

                term.start_soon(end_of_term, term.cancel_scope)
                try:
                    await self._poll_as_leader()
                except LeadershipLostError as error:
                    log.warning("%s", error)
                    leadership.lost()
                except StateUnavailableError:
                    # Nothing of the cycle was recorded. The lease keeper logs the streak and
                    # stands down if the lease runs out; else a fresh poller tries again.
                    await anyio.sleep(self.settings.poll.interval)
                term.cancel_scope.cancel()
            self.poller = None

    async def _stand_by(self) -> None:
        """One interval as a standby: the shared gauges read from the state, as the leader's."""
        assert self.leadership is not None  # noqa: S101
        self.metrics.lifecycle.state("running")
        try:
            counts, oldest, queue = await self.store.call(
                lambda: (
                    self.store.status_counts(),
                    self.store.oldest_open_since(),
                    self.store.queue_counts(),
                )
            )
        except StateUnavailableError:
            pass  # the lease keeper says so, once per streak
        else:
            self.metrics.set_order_counts(counts)
            self.metrics.set_oldest_open(oldest)
            self.metrics.set_queue(queue)
            if not self._ready:
                self.notifier.ready("standing by")
                self._ready = True
        with anyio.move_on_after(self.settings.poll.interval):
            await self.leadership.wait_elected()

    async def _poll_as_leader(self) -> None:
        failing: str | None = None
        while True:
            poller = self.poller
            assert poller is not None  # noqa: S101 - set for the term
            started = anyio.current_time()
            requests_before = self.api.requests_made
            outcome, changed = "ok", False
            try:
                self.metrics.lifecycle.state("running" if self.store.baseline_done else "syncing")
                report = await poller.cycle()
            except (LeadershipLostError, StateUnavailableError):
                raise
            except StateError as error:
                self.health.store_error = str(error)
                raise
            except ApiError as error:
                outcome = "failed"
                if failing != str(error):
                    if isinstance(error, CredentialsError):
                        log.error("%s", error)  # noqa: TRY400 - the message is the whole story
                    else:
                        log.warning("poll failed: %s; trying again next cycle", error)
                failing = str(error)
            else:
                if failing is not None:
                    log.info("poll succeeded again")
                failing = None
                changed = bool(report.new_orders or report.transitions)
                now = time.time()
                self.health.last_success = now
                self.metrics.last_successful_poll.set(now)
                self.metrics.lifecycle.state("running")
                log.log(
                    logging.INFO if report.events else logging.DEBUG,
                    "poll: %d requests, %d new orders, %d transitions, %d open",
                    report.requests,
                    report.new_orders,
                    report.transitions,
                    poller.open_count,
                )
            self.metrics.poll_cycles.inc()
            self.metrics.poll_cycle_duration.observe(anyio.current_time() - started)
            self.metrics.poll_requests.observe(self.api.requests_made - requests_before)
            self.metrics.set_oldest_open(self.store.oldest_open_since())
            queue = self.store.queue_counts()
            self.metrics.set_queue(queue)
            self._last_poll = f"{datetime.now().astimezone():%H:%M:%S} {outcome}"
            status = self._status_line(queue["pending"])
            if not self._ready:
                self.notifier.ready(status)
                self._ready = True
            else:
                self.notifier.status(status)
            poll = self.settings.poll
            self._interval = next_interval(
                self._interval,
                changed=changed,
                interval=poll.interval,
                min_interval=poll.min_interval,
            )
            await self._wait_for_next_cycle(started)

    def _status_line(self, pending: int) -> str:
        open_count = 0 if self.poller is None else self.poller.open_count
        return (
            f"tracking {open_count} open orders; last poll {self._last_poll}; "
            f"{pending} deliveries pending"
        )

    async def _wait_for_next_cycle(self, started: float) -> None:
        while True:
            self.notifier.watchdog()
            remaining = (
                started + min(self._interval, self.settings.poll.interval) - anyio.current_time()
            )
            if remaining <= 0:
                return
            nap = min(remaining, _MAX_NAP, self.notifier.watchdog_interval or _MAX_NAP)
            await anyio.sleep(nap)

    # -- signals ----------------------------------------------------------------------------

    async def _handle_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            if self._early_signal is not None:  # it came while the daemon was starting
                name = signal.Signals(self._early_signal).name
                log.info("%s received during start: stopping", name)
                self.metrics.lifecycle.state("stopping")
                self.notifier.stopping()
                scope.cancel()
                return
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                log.info("%s received: stopping", signal.Signals(signum).name)
                self.metrics.lifecycle.state("stopping")
                self.notifier.stopping()
                scope.cancel()
                return

    def reload(self) -> None:
        """Apply ``[notify]``, ``[alerts]`` and ``[poll]`` from the config file again."""
        path = self.options.config_path
        if path is None:
            log.warning("reload: no configuration file to read again")
            return
        self.notifier.reloading()
        try:
            new = load_settings(path)
        except ConfigError as error:
            for problem in error.problems:
                log.error("reload rejected: %s", problem)  # noqa: TRY400 - no traceback wanted
            log.error("reload rejected: the running configuration stays")  # noqa: TRY400
        else:
            destinations = destinations_for(new.notify)
            redactor.add(*secrets_in(destinations))
            self.store.forget_disabled_except([d.key for d in destinations if d.kind == "webhook"])
            self.courier.disabled.intersection_update(self.store.disabled_webhooks())
            if self.poller is not None:
                self.poller.configure(
                    destinations,
                    announce_initial=new.notify.initial,
                    stuck_rules=stuck_rules(new),
                    reconcile=new.poll.full_sync_interval,
                )
            self.courier.configure(destinations)
            self.courier.wake()
            self.health.interval = new.poll.interval
            stale = [n for n in _RESTART_SECTIONS if getattr(new, n) != getattr(self.settings, n)]
            self.settings = self.settings.model_copy(
                update={"notify": new.notify, "poll": new.poll, "alerts": new.alerts}
            )
            log.info(
                "configuration reloaded: %d routes, %d webhooks, %d destinations, every %gs",
                len(new.notify.routes),
                len(new.notify.webhooks),
                len(destinations),
                new.poll.interval,
            )
            if stale:
                log.warning("reload: changes to [%s] take effect at restart", "], [".join(stale))
        finally:
            self.notifier.ready(self._status_line(self.store.queue_counts()["pending"]))
