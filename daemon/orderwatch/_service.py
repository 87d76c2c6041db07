"""The daemon: the poll loop, the courier, the lease keeper, the console's clock and the
listeners in one anyio task group.

- :func:`build_parts` builds what the daemon is made of (state, API client, webhook sender,
  courier, dispatch, poller, console, leadership, metrics listener, ack page) from one
  configuration, and closes it again.
- It polls while it leads (``_leadership``): always, on a state file only it may open; on a
  database several instances share, while it holds the lease, standing by otherwise. The
  console (watcher notices, summaries) runs only on the leader; every instance delivers and
  serves the ack page.
- SIGTERM or SIGINT stops it: no new cycle or send starts, sends already under way finish and
  are recorded, the state file is closed, and :meth:`Service.run` returns, within
  :data:`STOP_TIMEOUT` seconds.
- SIGHUP reloads routes, webhooks, ``notify`` settings, stuck-order alerts and poll settings from
  the same file, keeping state and pending deliveries; an invalid file is rejected with its
  reasons logged, and the running configuration stays. Changes to ``[api]``, ``[state]``,
  ``[metrics]``, ``[web]`` and ``[log]`` need a restart (said in the log).
- Every poll's outcome and every send's go to the console (:mod:`_console`), which announces
  outages and summaries; its clock checks what is due every :data:`_CONSOLE_TICK` seconds.
- Under systemd it speaks sd_notify: ``READY=1`` once the first cycle has finished, ``STATUS=``
  after each cycle, ``WATCHDOG=1`` from the poll loop itself, ``RELOADING=1``, ``STOPPING=1``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Final

import anyio
import httpx
import stamina.instrumentation

from orderwatch._acklink import AckLinks
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._console import Console, StateDesk
from orderwatch._detect import Event
from orderwatch._dispatch import DisabledWebhooks, Dispatcher
from orderwatch._exceptions import (
    ApiError,
    ConfigError,
    CredentialsError,
    LeadershipLostError,
    StateError,
    StateUnavailableError,
    first_orderwatch_error,
)
from orderwatch._leadership import Leadership
from orderwatch._logging import redactor
from orderwatch._metrics import Health, Metrics, MetricsServer
from orderwatch._outbox import Courier
from orderwatch._pacing import Pacer
from orderwatch._planner import next_interval
from orderwatch._poller import Poller
from orderwatch._quota import RequestLedger, ledger_path
from orderwatch._settings import Settings, load_settings
from orderwatch._sinks import Destination, destinations_for, secrets_in
from orderwatch._store import Store, open_store, url_secrets
from orderwatch._stuck import StuckRule
from orderwatch._systemd import SystemdNotifier
from orderwatch._watcher import api_failure_reason
from orderwatch._web import AckPage, WebServer
from orderwatch._webhooks import WebhookSender

__all__ = ["STOP_TIMEOUT", "Service", "ServiceOptions", "build_parts", "run_service"]

log = logging.getLogger("orderwatch")

_CONSOLE_TICK: Final = 15.0  # seconds between checks for due notices and summaries
_MAX_NAP: Final = 5.0  # the loop wakes at least this often while it waits (watchdog, reload)
_RESTART_SECTIONS: Final = ("api", "state", "metrics", "web", "log")
# How long a stop may take, in seconds: a send already under way is finished and recorded, and a
# webhook's may use its whole 15 s timeout (_webhooks.TIMEOUT). The systemd unit's
# TimeoutStopSec and the container stop timeout in docs/deploy.md give the daemon this long.
STOP_TIMEOUT: Final = 20.0


def stuck_rules(settings: Settings) -> list[StuckRule]:
    return [StuckRule(r.status, r.after, r.repeat) for r in settings.alerts.stuck]


def pacer_for(settings: Settings) -> Pacer | None:
    """The request budget's pacer, with its ledger beside the state file (no budget: None)."""
    poll = settings.poll
    if poll.budget is None:
        return None
    ledger = RequestLedger(poll.budget, ledger_path(settings.state.path))
    shortest = poll.min_interval or poll.interval / 60  # the fastest any unit is fetched
    return Pacer(poll.budget, poll.interval, shortest, ledger)


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
        first = first_orderwatch_error(group)
        if first is None:
            raise
        raise first from None


@dataclass(frozen=True, slots=True)
class Parts:
    """What a running daemon is made of, built from one configuration by :func:`build_parts`."""

    store: Store
    api: OrdersApi
    webhooks: WebhookSender
    courier: Courier
    disabled: DisabledWebhooks
    dispatch: Dispatcher
    poller: Poller
    console: Console
    metrics_server: MetricsServer | None
    leadership: Leadership
    web: WebServer | None
    pacer: Pacer | None = None  # the request budget (poll.budget)


def ack_links(settings: Settings) -> Callable[[Event], str | None] | None:
    """The maker of the ack link a stuck alert carries; None without ``[web]`` (no link)."""
    if settings.web is None:
        return None
    return AckLinks(settings.web.public_url, settings.web.secret.get_secret_value()).for_event


def destinations_of(
    settings: Settings, disabled: DisabledWebhooks, links: Callable[[Event], str | None] | None
) -> list[Destination]:
    """The destinations of ``settings`` (stuck alerts carry ``links``); their credentials join
    the log redactor, and a webhook disabled (410 Gone) stays so only while its configuration
    is unchanged."""
    destinations = destinations_for(settings.notify, links)
    redactor.add(*secrets_in(destinations))
    disabled.keep_only([d.key for d in destinations if d.kind == "webhook"])
    return destinations


@asynccontextmanager
async def build_parts(
    settings: Settings,
    options: ServiceOptions,
    *,
    metrics: Metrics,
    health: Health,
    notifier: SystemdNotifier,
    on_stop: Callable[[], None] = lambda: None,
) -> AsyncIterator[Parts]:
    """Open the state, the metrics listener and the API client, and wire the courier, the
    poller and the lease keeper to them; on exit the lease is released first, then everything
    is closed again, the state last. ``on_stop`` is called on the way out, once the API client
    is closed and before the rest is; nothing is called (or logged as stopped) when the state
    itself cannot be opened.

    On a database several instances share, the poller, the courier and the lease keeper each
    have a connection of their own: a renewal never waits behind a poll, and the courier's
    commits are never part of the poller's. On a file, one store serves all three.

    Raises :class:`~orderwatch.OrderwatchError` for what the daemon cannot run with (an unusable
    state file, a metrics port in use).
    """

    def observe_api(endpoint: str, code: str, seconds: float) -> None:
        metrics.observe_api(endpoint, code, seconds)
        notifier.watchdog()  # every answered request is the loop making progress

    def on_page() -> None:
        health.last_progress = time.time()
        notifier.watchdog()

    def open_state(*, exclusive: bool = False) -> Store:
        return open_store(
            settings.state.location,
            exclusive=exclusive,
            idle_timeout=settings.ha.lease,
            application=f"orderwatch {settings.ha.instance}",
        )

    async with AsyncExitStack() as stack:
        store = open_state(exclusive=True)
        stack.callback(log.info, "orderwatch stopped")
        stack.callback(store.close)
        courier_store = lease_store = store
        if store.shared:
            health.lease = settings.ha.lease
            courier_store = open_state()
            stack.callback(courier_store.close)
            lease_store = open_state()
            stack.callback(lease_store.close)
        webhooks = WebhookSender()
        stack.push_async_callback(_close_shielded, webhooks)
        stack.callback(on_stop)
        disabled = DisabledWebhooks(courier_store)
        destinations = destinations_of(settings, disabled, ack_links(settings))
        for name, reason, _ in store.disabled_webhooks().values():
            log.warning("notify: webhook %s stays %s", name, reason)
        server = None
        if settings.metrics.address is not None:
            host, port = settings.metrics.address
            server = MetricsServer(host, port, metrics.registry, health)
            stack.callback(server.close)
            options.on_metrics_port(server.port)
            log.info("metrics on http://%s:%d/metrics", host, server.port)
            if host not in {"127.0.0.1", "localhost", "::1"}:
                log.warning("metrics: listening on %s, reachable beyond this machine", host)
        web = _ack_page(settings)
        if web is not None:
            stack.callback(web.close)
        pacer = pacer_for(settings)
        if pacer is not None:
            stack.callback(pacer.ledger.close)
        api = await stack.enter_async_context(
            OrdersApi(
                settings.api,
                transport=options.transport,
                retry=options.retry,
                observe=observe_api,
                on_secret=redactor.add,
                on_malformed=lambda e: metrics.malformed_responses.labels(endpoint=e).inc(),
                before_request=None if pacer is None else pacer.ledger.acquire,
            )
        )
        leadership = Leadership(
            lease_store,
            instance=settings.ha.instance,
            lease=settings.ha.lease,
            interval=settings.poll.interval,
            metrics=metrics,
            health=health,
        )
        # First on the way out: a standby takes over at once.
        stack.push_async_callback(leadership.release)
        dispatch = Dispatcher(
            store,
            destinations,
            disabled=disabled,
            stuck_rules=stuck_rules(settings),
            # the courier is built last (it reports to the console): woken once it exists
            on_committed=lambda _: courier.wake(),
        )
        poller = Poller(
            api,
            store,
            dispatch,
            metrics,
            announce_initial=settings.notify.initial,
            on_page=on_page,
            concurrency=settings.api.concurrency,
            reconcile=settings.poll.full_sync_interval,
            pacer=pacer,
        )
        console = Console(store, settings, destinations, dispatch, on_blind=poller.mark_gap)
        courier = Courier(
            courier_store,
            destinations,
            metrics,
            webhooks=webhooks,
            disabled=disabled,
            claims=(leadership.holder, settings.ha.lease) if store.shared else None,
            on_outcome=lambda d, error: _as_leader(
                leadership, partial(console.delivery_outcome, d, error)
            ),
        )
        log.info(
            "orderwatch started: watching %s every %gs, %d destinations, state %s%s",
            settings.api.base_url,
            settings.poll.interval,
            len(destinations),
            store.location,
            f", instance {settings.ha.instance}" if store.shared else "",
        )
        yield Parts(
            store,
            api,
            webhooks,
            courier,
            disabled,
            dispatch,
            poller,
            console,
            server,
            leadership,
            web,
            pacer,
        )


def _ack_page(settings: Settings) -> WebServer | None:
    """The ack page's listener, with ``[web]`` and a ``web.listen`` address."""
    if settings.web is None or settings.web.address is None:
        return None
    host, port = settings.web.address
    page = AckPage(StateDesk(settings.state.location), settings.web.secret.get_secret_value())
    web = WebServer(host, port, page)
    log.info("ack page on http://%s:%d/ack/… for %s", host, web.port, settings.web.public_url)
    return web


async def _as_leader(leadership: Leadership, action: Callable[[], Awaitable[None]]) -> None:
    """Run a console ``action`` only while this instance leads: the watcher's state and the
    summaries are the leader's. A write that finds a newer leader's epoch stands it down."""
    if not leadership.leader:
        return
    try:
        await action()
    except LeadershipLostError as error:
        log.warning("%s", error)
        leadership.lost()
    except StateUnavailableError:
        pass  # the lease keeper says so, once per streak


async def _console_clock(console: Console, leadership: Leadership) -> None:
    """Watcher notices and summaries fall due between polls too."""
    while True:
        await anyio.sleep(_CONSOLE_TICK)
        await _as_leader(leadership, console.tick)


async def _close_shielded(webhooks: WebhookSender) -> None:
    with anyio.CancelScope(shield=True):
        await webhooks.aclose()


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
        self.parts: Parts | None = None  # while :meth:`run` runs
        self._last_poll = "not yet"
        self._early_signal: int | None = None
        self._stopping = False
        self._interval = settings.poll.interval
        self._ready = False  # READY=1 sent (after a first cycle, or once standing by)
        self._pending = 0  # deliveries pending, as last counted

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
        secrets = (
            settings.api.client_secret,
            settings.api.token,
            None if settings.web is None else settings.web.secret,
        )
        redactor.add(*(s.get_secret_value() for s in secrets if s is not None))
        if settings.state.url is not None:
            redactor.add(*url_secrets(settings.state.url.get_secret_value()))
        self.metrics.lifecycle.state("starting")
        async with build_parts(
            settings,
            options,
            metrics=self.metrics,
            health=self.health,
            notifier=self.notifier,
            on_stop=self._begin_stopping,
        ) as parts:
            self.parts = parts
            try:
                async with anyio.create_task_group() as group:
                    if options.handle_signals:
                        group.start_soon(self._handle_signals, group.cancel_scope)
                    group.start_soon(parts.leadership.run)
                    group.start_soon(parts.courier.run)
                    group.start_soon(self._poll_forever, parts)
                    group.start_soon(_console_clock, parts.console, parts.leadership)
            finally:
                self.parts = None

    # -- the poll loop ----------------------------------------------------------------------

    async def _poll_forever(self, parts: Parts) -> None:
        """Poll while this instance leads; stand by (keeping the shared gauges fresh) while
        another does."""
        leadership, store, poller = parts.leadership, parts.store, parts.poller
        while True:
            while not leadership.leader:
                await self._stand_by(parts)
            epoch = await leadership.wait_elected()
            store.fence(leadership.holder, epoch)
            async with anyio.create_task_group() as term:

                async def end_of_term(scope: anyio.CancelScope) -> None:
                    await leadership.wait_deposed()
                    scope.cancel()

                term.start_soon(end_of_term, term.cancel_scope)
                try:
                    if store.shared:  # another leader may have moved the state on meanwhile
                        await store.call(poller.resume)
                        await parts.console.resume()
                    await self._poll_as_leader(parts)
                except LeadershipLostError as error:
                    log.warning("%s", error)
                    leadership.lost()
                except StateUnavailableError:
                    # Nothing of the cycle was recorded. The lease keeper logs the streak and
                    # stands down if the lease runs out; else the next term tries again.
                    await anyio.sleep(self.settings.poll.interval)
                term.cancel_scope.cancel()

    async def _stand_by(self, parts: Parts) -> None:
        """One interval as a standby: the shared gauges read from the state, as the leader's."""
        store = parts.store
        self.metrics.lifecycle.state("running")
        try:
            counts, oldest, queue = await store.call(
                lambda: (store.status_counts(), store.oldest_open_since(), store.queue_counts())
            )
        except StateUnavailableError:
            pass  # the lease keeper says so, once per streak
        else:
            self.metrics.set_order_counts(counts)
            self.metrics.set_oldest_open(oldest)
            self.metrics.set_queue(queue)
            self._pending = queue["pending"]
            if not self._ready:
                self.notifier.ready("standing by")
                self._ready = True
        with anyio.move_on_after(self.settings.poll.interval):
            await parts.leadership.wait_elected()

    async def _poll_as_leader(self, parts: Parts) -> None:
        api, store, poller = parts.api, parts.store, parts.poller
        failing: str | None = None
        while True:
            started = anyio.current_time()
            requests_before = api.requests_made
            first_sync_done = await store.call(lambda: store.first_sync_done)
            self.metrics.lifecycle.state("running" if first_sync_done else "syncing")
            outcome, changed = "ok", False
            try:
                report = await poller.cycle()
            except (LeadershipLostError, StateUnavailableError):
                raise  # the term ends: _poll_forever decides what comes next
            except StateError as error:
                self.health.store_error = str(error)
                raise
            except ApiError as error:
                outcome = "failed"
                await parts.console.poll_outcome(api_failure_reason(error))
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
                await parts.console.poll_outcome(None)
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
            self.metrics.poll_requests.observe(api.requests_made - requests_before)
            await self._cycle_done(parts, started, outcome)
            self._interval = self._next_wait(
                parts, changed=changed, elapsed=anyio.current_time() - started
            )
            await self._wait_for_next_cycle(started)

    async def _cycle_done(self, parts: Parts, started: float, outcome: str) -> None:
        """Count a cycle that ended with ``outcome``, and say so to metrics and systemd."""
        store = parts.store
        self.metrics.poll_cycles.inc()
        self.metrics.poll_cycle_duration.observe(anyio.current_time() - started)
        oldest, queue = await store.call(lambda: (store.oldest_open_since(), store.queue_counts()))
        self.metrics.set_oldest_open(oldest)
        self.metrics.set_queue(queue)
        self._pending = queue["pending"]
        self._last_poll = f"{datetime.now().astimezone():%H:%M:%S} {outcome}"
        status = self._status_line(parts)
        if not self._ready:
            self.notifier.ready(status)
            self._ready = True
        else:
            self.notifier.status(status)

    def _status_line(self, parts: Parts) -> str:
        open_count = parts.poller.open_count if parts.leadership.leader else 0
        return (
            f"tracking {open_count} open orders; last poll {self._last_poll}; "
            f"{self._pending} deliveries pending"
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

    def _next_wait(self, parts: Parts, *, changed: bool, elapsed: float) -> float:
        """Seconds from the start of the cycle that just ended (``elapsed`` ago) to the next:
        when the budget's next unit falls due (counted from now), else as ``poll.interval``
        and ``poll.min_interval`` say."""
        if parts.pacer is not None:
            return elapsed + parts.pacer.wait(time.time())
        poll = self.settings.poll
        return next_interval(
            self._interval, changed=changed, interval=poll.interval, min_interval=poll.min_interval
        )

    def _rebudget(self, new: Settings, parts: Parts) -> None:
        """A reload's ``poll.budget`` and ``poll.interval`` for a running pacer; turning the
        budget on or off takes a restart (the client's ledger is set up at start)."""
        pacer = parts.pacer
        if (new.poll.budget is None) != (pacer is None):
            log.warning("reload: turning poll.budget on or off takes effect at restart")
            return
        if pacer is not None and new.poll.budget is not None:
            pacer.budget = pacer.ledger.per_hour = new.poll.budget
            pacer.floor_period = new.poll.interval
            pacer.shortest = new.poll.min_interval or new.poll.interval / 60
            self.metrics.poll_budget.set(new.poll.budget)

    # -- signals ----------------------------------------------------------------------------

    async def _handle_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            if self._early_signal is not None:  # it came while the daemon was starting
                name = signal.Signals(self._early_signal).name
                log.info("%s received during start: stopping", name)
                self._begin_stopping()
                scope.cancel()
                return
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                log.info("%s received: stopping", signal.Signals(signum).name)
                self._begin_stopping()
                scope.cancel()
                return

    def _begin_stopping(self) -> None:
        """Tell metrics and systemd, once, that the daemon is stopping."""
        if not self._stopping:
            self._stopping = True
            self.metrics.lifecycle.state("stopping")
            self.notifier.stopping()

    def reload(self) -> None:
        """Apply ``[notify]``, ``[alerts]`` and ``[poll]`` from the config file again.

        Routes and webhooks (a changed webhook is enabled again), ``notify.initial``,
        ``notify.watcher_after``, summaries, stuck-order alerts, ``poll.interval``,
        ``poll.min_interval`` and ``poll.full_sync_interval`` take effect at once; state and
        pending deliveries stay. A file that does not validate changes nothing. Other sections
        are compared and reported as needing a restart.
        """
        parts = self.parts
        path = self.options.config_path
        if parts is None:
            log.warning("reload: the daemon is not running")
            return
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
            try:
                # [web] needs a restart: the links stay those of the running configuration
                destinations = destinations_of(new, parts.disabled, ack_links(self.settings))
            except StateUnavailableError as error:  # a shared database: nothing was applied
                log.error("reload rejected: %s; the running configuration stays", error)  # noqa: TRY400
                return
            parts.dispatch.configure(destinations, stuck_rules(new))
            parts.poller.configure(
                announce_initial=new.notify.initial, reconcile=new.poll.full_sync_interval
            )
            parts.courier.configure(destinations)
            self._rebudget(new, parts)
            parts.courier.wake()
            self.health.interval = new.poll.interval
            stale = [n for n in _RESTART_SECTIONS if getattr(new, n) != getattr(self.settings, n)]
            self.settings = self.settings.model_copy(
                update={"notify": new.notify, "poll": new.poll, "alerts": new.alerts}
            )
            parts.console.configure(self.settings, destinations)
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
            self.notifier.ready(self._status_line(parts))
